"""The compress pipeline: prune (gradually, with fine-tuning and optional distillation), make the
masks permanent, swap in sparse and int8 layers, and report every stage.

The pruning, quantization and sparse-layer algorithms live in ``pyquant.prune``,
``pyquant.quantize_`` and ``pyquant.sparsify_``; this module calls them only through four small
functions (``_prune_to``, ``_make_permanent``, ``_quantize``, ``_sparsify``).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable, List, Optional, Tuple

from torch import nn

from pyquant.api import Int8StaticConfig, quantize_
from pyquant.api_sparse import sparsify_
from pyquant.distill import distill as _distill
from pyquant.distill import train as _train
from pyquant.recipe import PruneRecipe, QuantizeRecipe, Recipe, SparseRecipe
from pyquant.prune import magnitude_masks_, make_permanent
from pyquant.report import EvalFn, Report, measure_latency

__all__ = ["compress", "cubic_schedule"]


# ----------------------------------------------------------------------------- the component calls
# The only places that touch the pruning, int8 and sparse APIs.


def _prune_to(model: nn.Module, sparsity: float, recipe: PruneRecipe) -> Any:
    """Prune ``model`` in place so that a fraction ``sparsity`` of its prunable weights is zero.

    ``pyquant.prune.magnitude_masks_(model, amount, scope=...)``: the
    masked variant (masks stay applied as parametrizations, so fine-tuning keeps pruned
    weights at zero; ``magnitude_prune_`` overwrites weights without masks). ``amount`` is the
    fraction of all selected weights, cumulative: earlier zeros are the smallest, so each
    larger target of the cubic schedule keeps them.
    """
    return magnitude_masks_(model, sparsity, scope=recipe.scope)


def _make_permanent(model: nn.Module) -> None:
    """Bake the pruning masks into the weights."""
    make_permanent(model)


def _quantize(model: nn.Module, recipe: QuantizeRecipe,
              calibration: Optional[Iterable]) -> nn.Module:
    """Swap Linear/Conv2d layers for int8 ``QuantLinear``/``QuantConv2d``, in place.

    ``pyquant.quantize_(model, config)``; the default config (None) is
    dynamic per-row activations with per-channel int8 weights; ``mode="static"`` uses
    ``pyquant.Int8StaticConfig(calibration_loader=[inputs...])``. Layers already swapped for
    sparse ones are no longer ``nn.Linear`` and are left alone.
    """
    if recipe.mode == "dynamic":
        return quantize_(model) or model
    if calibration is None:
        raise ValueError("static quantization needs train_loader (for calibration)")
    batches = [x for x, _ in _take(calibration, recipe.calibration_batches)]
    return quantize_(model, Int8StaticConfig(calibration_loader=batches)) or model


def _sparsify(model: nn.Module, recipe: SparseRecipe, quantize: bool) -> nn.Module:
    """Swap pruned Linear layers for sparse-kernel layers where faster, in place.

    ``pyquant.sparsify_(model, min_sparsity=..., quantize=..., rows=...)``
    (``quantize=True`` gives sparse + int8 layers). Runs before ``_quantize``, which then
    converts the layers left dense.
    """
    return sparsify_(model, min_sparsity=recipe.min_sparsity, quantize=quantize,
                     rows=recipe.rows) or model


# ----------------------------------------------------------------------------- pipeline


def _take(loader: Iterable, n: int) -> List:
    out = []
    for i, batch in enumerate(loader):
        if i >= n:
            break
        out.append(batch)
    return out


def cubic_schedule(final: float, steps: int) -> List[float]:
    """Sparsity targets of the gradual schedule of Zhu & Gupta (2017).

    ``s_k = final * (1 - (1 - k / steps) ** 3)`` for k = 1..steps: prune fast while many
    redundant weights remain, slowly near the end.

    Args:
        final: final sparsity in [0, 1).
        steps: number of pruning steps (>= 1).

    Returns:
        ``steps`` increasing targets ending exactly at ``final``.

    Raises:
        ValueError: for ``steps`` < 1 or ``final`` outside [0, 1).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= final < 1.0:
        raise ValueError(f"final must be in [0, 1), got {final}")
    return [final * (1.0 - (1.0 - k / steps) ** 3) for k in range(1, steps + 1)]


def compress(model: nn.Module, recipe: Recipe, *, train_loader: Optional[Iterable] = None,
             eval_fn: Optional[EvalFn] = None, teacher: Optional[nn.Module] = None,
             example_input: Any = None, progress: bool = True, repeats: int = 30,
             prune_hook: Optional[Callable[[nn.Module, float, PruneRecipe], Any]] = None,
             ) -> Tuple[nn.Module, Report]:
    """Apply a compression recipe to ``model`` (in place) and report every stage.

    Stages, each only when the recipe asks for it:

    1. gradual magnitude pruning to ``recipe.prune.amount`` over ``recipe.prune.steps`` cubic
       steps, each followed by ``finetune_epochs`` of fine-tuning, by distillation from the
       teacher when ``recipe.distill.enabled`` (plain cross-entropy otherwise);
    2. ``recipe.distill.epochs`` more epochs of distillation (masks still applied);
    3. masks made permanent;
    4. sparse layers swapped in (``recipe.sparse``), then int8 layers (``recipe.quantize``).

    Args:
        model: the trained model; modified in place.
        recipe: the :class:`~pyquant.recipe.Recipe`.
        train_loader: ``(inputs, labels)`` batches for fine-tuning/distillation/calibration;
            required when any of them runs.
        eval_fn: ``model -> accuracy`` in [0, 1] for the report.
        teacher: distillation teacher; default a copy of ``model`` as given.
        example_input: input for latency (original vs final, interleaved); skipped if None.
        progress: progress bars.
        repeats: timed runs for latency.
        prune_hook: replaces ``_prune_to`` (same signature), e.g. to try another pruning
            criterion; the default uses ``pyquant.prune``.

    Returns:
        ``(model, report)``: the compressed model (eval mode) and a :class:`Report` whose rows
        are ``original`` and one per stage that ran.

    Raises:
        TypeError: if ``recipe`` is not a :class:`Recipe`.
        ValueError: a stage needs ``train_loader`` and none was given.
    """
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a pyquant Recipe, got {type(recipe).__name__}")
    p, d, q, s = recipe.prune, recipe.distill, recipe.quantize, recipe.sparse
    needs_loader = (p.amount > 0 and p.finetune_epochs > 0) or d.epochs > 0 or (
        q.enabled and q.mode == "static")
    if needs_loader and train_loader is None:
        raise ValueError("this recipe fine-tunes, distills or calibrates: pass train_loader")
    original = copy.deepcopy(model).eval()
    if d.enabled and teacher is None:
        teacher = original
    prune_to = prune_hook or _prune_to
    rep = Report()
    comp = recipe.compression
    rep.add("original", original, eval_fn=eval_fn, compression=None)

    def finetune(epochs: int, desc: str) -> None:
        if epochs <= 0:
            return
        if d.enabled:
            _distill(teacher, model, train_loader, epochs=epochs, lr=recipe.lr,
                     temperature=d.temperature, alpha=d.alpha, seed=recipe.seed,
                     progress=progress)
        else:
            _train(model, train_loader, epochs=epochs, lr=recipe.lr, seed=recipe.seed,
                   progress=progress, desc=desc)

    pruned = p.amount > 0
    if pruned:
        targets = cubic_schedule(p.amount, p.steps)
        for k, target in enumerate(targets, 1):
            prune_to(model, target, p)
            finetune(p.finetune_epochs, f"fine-tune {k}/{len(targets)}")
        rep.add(f"pruned {p.amount:.0%}" + (" (distilled)" if d.enabled else ""), model,
                eval_fn=eval_fn, compression=comp)
    if d.epochs > 0:
        if not d.enabled:
            raise ValueError("distill.epochs > 0 needs distill.enabled = true")
        finetune(d.epochs, "distill")
        rep.add("distilled", model, eval_fn=eval_fn, compression=comp)
    if pruned:
        if prune_hook is None:
            _make_permanent(model)
        else:
            _bake_parametrizations(model)
    if s.enabled:
        _sparsify(model, s, quantize=q.enabled)
        rep.add("sparse layers", model, eval_fn=eval_fn, compression=comp)
    if q.enabled:
        _quantize(model, q, train_loader)
        rep.add(f"int8 ({q.mode})", model, eval_fn=eval_fn, compression=comp)
    model.eval()
    if example_input is not None:
        lat = measure_latency([original, model], example_input, repeats=repeats)
        rep.rows[0]["latency_ms"] = lat[0] * 1e3
        rep.rows[-1]["latency_ms"] = lat[1] * 1e3
        rep._recompute()
    return model, rep


def _bake_parametrizations(model: nn.Module) -> None:
    # a custom prune_hook may use torch parametrizations too: bake them in the same way
    import torch.nn.utils.parametrize as P

    for m in model.modules():
        if P.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                P.remove_parametrizations(m, name, leave_parametrized=True)
