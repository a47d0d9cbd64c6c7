"""Model-level pruning: magnitude (global or per layer), structured, N:M, gradual, sensitivity.

Prunable layers are ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` and ``nn.Conv3d`` with float32
weights; only weights are pruned (biases stay), as in ``torch.nn.utils.prune``.

Two ways to prune:

* **Permanent, in place** (``magnitude_prune_``, ``structured_prune_``, ``nm_prune_``): the
  pruned weights are set to 0 and no mask is kept. ``magnitude_prune_`` runs in the native
  kernel and needs no memory the size of the weights (a few histograms and a candidate buffer
  of at most 4% of the weights' bytes).
* **Masked** (``apply_masks_``, ``GradualPruner``): a ``torch.nn.utils.parametrize``
  parametrization multiplies the weight by a bool mask buffer at every forward, so the pruned
  weights stay 0 across optimizer steps (their gradient is 0 too). Masks live in the
  ``state_dict`` (``parametrizations.weight.original`` and ``parametrizations.weight.0.mask``)
  and survive ``deepcopy``; ``load_masked_state_dict`` loads them into a fresh model;
  ``make_permanent`` bakes them in and removes the parametrization.

Counting and ties follow :func:`pyquant.ops.magnitude_mask`: ``amount`` is a fraction
(``round(amount * n)`` pruned) or an int count, exactly like ``torch.nn.utils.prune``; among
elements with equal magnitude at the threshold the lower flat index is kept (layers are taken
in ``model.named_modules()`` order for global pruning).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from pyquant import ops

__all__ = ["GradualPruner", "LayerReport", "apply_masks_", "block_mask", "block_prune_",
           "cubic_sparsity", "get_masks",
           "load_masked_state_dict", "magnitude_masks_", "magnitude_prune_", "make_permanent",
           "nm_mask", "nm_prune_", "prunable_layers", "remove", "sensitivity_analysis",
           "structured_mask", "structured_prune_"]

PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
FilterFn = Callable[[nn.Module, str], bool]


@dataclass(frozen=True)
class LayerReport:
    """What pruning did to one layer.

    Attributes:
        name: qualified module name in the model.
        shape: weight shape.
        numel: number of weights.
        kept: weights kept by the selection (not pruned).
        sparsity: fraction pruned, ``1 - kept / numel``.
    """

    name: str
    shape: Tuple[int, ...]
    numel: int
    kept: int
    sparsity: float


def _report(name: str, w: torch.Tensor, kept: int) -> LayerReport:
    n = w.numel()
    return LayerReport(name, tuple(w.shape), n, int(kept), 1.0 - kept / n if n else 0.0)


# ----------------------------------------------------------------------------- layer access


class _Mask(nn.Module):
    """Parametrization ``weight = original * mask``; the bool mask is a (saved) buffer."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask

    def extra_repr(self) -> str:
        n = self.mask.numel()
        kept = int(torch.count_nonzero(self.mask))
        return f"shape={tuple(self.mask.shape)}, kept={kept}/{n}"


def _mask_of(module: nn.Module) -> Optional[_Mask]:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, _Mask):
                return p
    return None


def _raw_weight(module: nn.Module) -> torch.Tensor:
    """The stored weight tensor (the parametrization's original when masked)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def prunable_layers(model: nn.Module, filter_fn: Optional[FilterFn] = None
                    ) -> List[Tuple[str, nn.Module]]:
    """The (name, module) pairs pruning acts on, in ``named_modules()`` order.

    Args:
        model: any module.
        filter_fn: optional ``filter_fn(module, name) -> bool`` (torchao's signature); a layer
            is pruned only where it returns True.

    Returns:
        list of (qualified name, module) for Linear/Conv1d/2d/3d layers passing the filter.
    """
    out = []
    for name, m in model.named_modules():
        if isinstance(m, PRUNABLE_TYPES) and (filter_fn is None or filter_fn(m, name)):
            out.append((name, m))
    return out


def _layers_or_raise(model, filter_fn):
    layers = prunable_layers(model, filter_fn)
    if not layers:
        raise ValueError("model has no prunable layer (Linear/Conv1d/Conv2d/Conv3d) passing "
                         "filter_fn")
    return layers


def _check_scope(scope: str) -> None:
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")


# ----------------------------------------------------------------------------- unstructured


@torch.no_grad()
def magnitude_prune_(model: nn.Module, amount, *, scope: str = "global",
                     filter_fn: Optional[FilterFn] = None) -> List[LayerReport]:
    """Zero the smallest-magnitude weights of the model's Linear/Conv layers, in place.

    Same selection as ``prune.global_unstructured(..., L1Unstructured, amount)`` (scope
    "global") or ``prune.l1_unstructured`` per layer (scope "layer"), without masks: the
    weights are overwritten and nothing the size of the weights is allocated. A layer that
    already carries a mask (``apply_masks_``) is pruned on its masked weights and its mask is
    updated, so earlier pruning is kept.

    Args:
        model: the model; its prunable weights must be float32, contiguous, on the CPU.
        amount: fraction in [0, 1] or int count of weights to prune (of all selected layers'
            weights for "global", of each layer's for "layer").
        scope: "global" (one threshold over all layers) or "layer" (each layer alone).
        filter_fn: optional ``filter_fn(module, name) -> bool`` selecting layers.

    Returns:
        list of :class:`LayerReport`, one per pruned layer.

    Raises:
        ValueError: bad scope or amount, no prunable layer, NaN or Inf in a weight.
        TypeError: a weight is not float32.
    """
    _check_scope(scope)
    layers = _layers_or_raise(model, filter_fn)
    weights = []
    for _, m in layers:
        w = _raw_weight(m)
        mask = _mask_of(m)
        if mask is not None:
            w.mul_(mask.mask)  # what the layer computes with
        weights.append(w.detach())
    if scope == "global":
        kept = ops.magnitude_prune_tensors_(weights, amount)
    else:
        kept = [ops.magnitude_prune_tensors_(w, amount)[0] for w in weights]
    for (_, m), w in zip(layers, weights):
        mask = _mask_of(m)
        if mask is not None:
            mask.mask.copy_(w != 0)  # may drop kept zeros too: they compute as pruned
    return [_report(name, w, k) for (name, _), w, k in zip(layers, weights, kept)]


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Dict[str, torch.Tensor]) -> None:
    """Attach (or replace) keep-masks on layers' weights via a parametrization.

    The layer then computes with ``weight * mask``; the stored weight is multiplied by the mask
    once too, so that later magnitude decisions see the pruned weights as 0.

    Args:
        masks: {qualified module name: bool tensor shaped like the weight, True = keep}.

    Raises:
        KeyError: a name is not a module of the model.
        ValueError: a mask's shape does not match its weight.
    """
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules:
            raise KeyError(f"no module named {name!r} in the model")
        m = modules[name]
        w = _raw_weight(m)
        if tuple(mask.shape) != tuple(w.shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, the weight has "
                             f"{tuple(w.shape)}")
        mask = mask.to(device=w.device, dtype=torch.bool)
        existing = _mask_of(m)
        if existing is None:
            parametrize.register_parametrization(m, "weight", _Mask(mask.clone()))
        else:
            existing.mask.copy_(mask)
        _raw_weight(m).mul_(mask)


def get_masks(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The masks attached by :func:`apply_masks_` / :class:`GradualPruner`, by module name."""
    return {name: p.mask for name, m in model.named_modules() if (p := _mask_of(m)) is not None}


@torch.no_grad()
def magnitude_masks_(model: nn.Module, amount, *, scope: str = "global",
                     filter_fn: Optional[FilterFn] = None) -> List[LayerReport]:
    """Magnitude pruning with masks that stay applied (for prune-then-fine-tune).

    Computes :func:`pyquant.ops.magnitude_mask` on the layers' current (masked) weights and
    attaches the masks with :func:`apply_masks_`. Weights pruned earlier are 0, hence the
    smallest, so sparsity only grows when amount grows.

    Args / Raises: as :func:`magnitude_prune_`.

    Returns:
        list of :class:`LayerReport`.
    """
    _check_scope(scope)
    layers = _layers_or_raise(model, filter_fn)
    for _, m in layers:
        if (p := _mask_of(m)) is not None:
            _raw_weight(m).mul_(p.mask)  # optimizer momentum may have moved pruned weights
    weights = [_raw_weight(m).detach() for _, m in layers]
    if all(_mask_of(m) is not None for _, m in layers):
        # Recompute into the attached mask buffers: no new mask memory per update.
        out = [_mask_of(m).mask for _, m in layers]
        if scope == "global":
            masks = ops.magnitude_mask(weights, amount, out=out)
        else:
            masks = [ops.magnitude_mask(w, amount, out=o) for w, o in zip(weights, out)]
        for w, mk in zip(weights, masks):
            w.mul_(mk)
    else:
        if scope == "global":
            masks = ops.magnitude_mask(weights, amount)
        else:
            masks = [ops.magnitude_mask(w, amount) for w in weights]
        apply_masks_(model, {name: mk for (name, _), mk in zip(layers, masks)})
    return [_report(name, w, int(torch.count_nonzero(mk)))
            for (name, _), w, mk in zip(layers, weights, masks)]


@torch.no_grad()
def make_permanent(model: nn.Module) -> int:
    """Bake every mask into its weight and remove the parametrizations.

    Returns:
        number of layers made permanent.
    """
    count = 0
    for _, m in model.named_modules():
        if _mask_of(m) is not None:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            count += 1
    return count


def remove(model: nn.Module) -> int:
    """Alias of :func:`make_permanent` (``torch.nn.utils.prune.remove`` also keeps the pruning)."""
    return make_permanent(model)


def load_masked_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                           strict: bool = True):
    """Load a state_dict saved from a masked model into a model without masks yet.

    Masks are attached wherever ``state_dict`` holds ``<layer>.parametrizations.weight.0.mask``,
    then the state is loaded.

    Returns:
        what ``model.load_state_dict`` returns.
    """
    suffix = ".parametrizations.weight.0.mask"
    masks = {k[: -len(suffix)]: v for k, v in state_dict.items() if k.endswith(suffix)}
    apply_masks_(model, masks)
    return model.load_state_dict(state_dict, strict=strict)


# ----------------------------------------------------------------------------- structured, N:M


def structured_mask(weight: torch.Tensor, amount, *, norm: str = "l1", dim: int = 0
                    ) -> torch.Tensor:
    """Keep-mask pruning whole slices (output channels/rows for dim=0) with the smallest norm.

    Same count and selection as ``prune.ln_structured(module, "weight", amount, n=1|2, dim)``:
    ``round(amount * weight.shape[dim])`` slices pruned (or an int count); equal norms at the
    threshold keep the lower index.

    Args:
        weight: float tensor.
        amount: fraction in [0, 1] or int count of slices to prune.
        norm: "l1" or "l2".
        dim: dimension whose slices are pruned (0: output channels).

    Returns:
        bool tensor shaped like weight, True = kept.

    Raises:
        ValueError: bad norm, dim or amount.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    if not -weight.ndim <= dim < weight.ndim:
        raise ValueError(f"dim must be in [{-weight.ndim}, {weight.ndim - 1}], got {dim}")
    dim %= weight.ndim
    c = weight.shape[dim]
    keep = c - ops.pruning_count(amount, c)
    w = weight.detach().movedim(dim, 0).reshape(c, -1)
    norms = w.abs().sum(1) if norm == "l1" else w.pow(2).sum(1).sqrt()
    order = torch.sort(norms, descending=True, stable=True).indices
    keep_rows = torch.zeros(c, dtype=torch.bool)
    keep_rows[order[:keep]] = True
    shape = [1] * weight.ndim
    shape[dim] = c
    return keep_rows.reshape(shape).expand(weight.shape).contiguous()


def nm_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M keep-mask: in every group of m consecutive weights along the input dimension
    (the last one after flattening all but the output dim), keep the n largest |w|.

    Ties keep the lower index. Sparse tensor cores and CPU 2:4 kernels expect this layout.

    Args:
        weight: tensor of shape (out, ...) whose per-row size is a multiple of m.
        n, m: keep n of every m (0 <= n <= m, m >= 1).

    Returns:
        bool tensor shaped like weight, True = kept.

    Raises:
        ValueError: bad n/m, or rows not a multiple of m.
    """
    if not (isinstance(m, int) and isinstance(n, int) and m >= 1 and 0 <= n <= m):
        raise ValueError(f"need ints 0 <= n <= m, m >= 1; got n={n!r}, m={m!r}")
    rows = weight.shape[0] if weight.ndim else 1
    w = weight.detach().reshape(rows, -1)
    if w.shape[1] % m:
        raise ValueError(f"each output row has {w.shape[1]} weights, not a multiple of m={m}")
    groups = w.abs().reshape(-1, m)
    order = torch.sort(groups, dim=1, descending=True, stable=True).indices
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, order[:, :n], True)
    return keep.reshape(weight.shape)


def _block_shape(block) -> Tuple[int, int]:
    """block as (rows, inputs): an int b is (1, b)."""
    if isinstance(block, int) and not isinstance(block, bool) and block >= 1:
        return 1, block
    if (isinstance(block, tuple) and len(block) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in block)):
        return block
    raise ValueError(f"block must be an int >= 1 or a (rows, inputs) pair of them, got {block!r}")


def block_mask(weight: torch.Tensor, amount, *, block=4, norm: str = "l1") -> torch.Tensor:
    """Keep-mask pruning aligned blocks of weights with the smallest norm, over the whole tensor
    (rows flattened past the output dim): ``block`` consecutive inputs of one output row, or
    ``block=(rows, inputs)`` for ``rows`` consecutive output rows x ``inputs`` inputs.

    The layouts of DeepSparse-style block pruning for int8: a ``sparse_pack(w, dtype=int8)`` of
    a 1 x 4 blocked weight runs one ``vpdpbusd`` per block on VNNI CPUs, and of a 16 x 4
    blocked one also loads each activation block once for 16 rows (``sparse_format.md``). For
    fp32, ``block=(16, 1)``: the fp32 pack is 16 x 1 tiles, run on AVX-512 CPUs with each
    activation broadcast serving 16 rows.
    ``round(amount * blocks)`` blocks pruned (or an int count); equal norms keep the lower index.

    Args:
        weight: tensor of shape (out, ...) whose per-row size is a multiple of the block's
            inputs (and out a multiple of its rows).
        amount: fraction in [0, 1] or int count of blocks to prune.
        block: block width (int >= 1), or (rows, inputs).
        norm: "l1" or "l2".

    Returns:
        bool tensor shaped like weight, True = kept.

    Raises:
        ValueError: bad block, norm or amount, or the weight's shape not a multiple of block.
    """
    br, bc = _block_shape(block)
    rows = weight.shape[0] if weight.ndim else 1
    w = weight.detach().reshape(rows, -1)
    if w.shape[1] % bc or rows % br:
        raise ValueError(f"weight of {rows} rows x {w.shape[1]} inputs is not a multiple of "
                         f"block={block}")
    # The blocks as the rows of a [blocks, br * bc] matrix: structured pruning of those rows.
    blocks = w.reshape(rows // br, br, -1, bc).transpose(1, 2).reshape(-1, br * bc)
    keep = structured_mask(blocks, amount, norm=norm)
    keep = keep.reshape(rows // br, -1, br, bc).transpose(1, 2)
    return keep.reshape(weight.shape)


def _prune_with(model, name, module, masks: bool, make_mask) -> LayerReport:
    """Prune one layer by the keep-mask make_mask(weight) builds, on top of any earlier mask."""
    w = _raw_weight(module)
    existing = _mask_of(module)
    if existing is not None:
        w.mul_(existing.mask)
    mk = make_mask(w)
    if existing is not None:
        mk &= existing.mask  # earlier pruning stays
    if masks:
        apply_masks_(model, {name: mk})
    else:
        w.mul_(mk)
        if existing is not None:
            existing.mask.copy_(mk)
    return _report(name, w, int(torch.count_nonzero(mk)))


@torch.no_grad()
def structured_prune_(model: nn.Module, amount, *, norm: str = "l1", dim: int = 0,
                      filter_fn: Optional[FilterFn] = None, masks: bool = False
                      ) -> List[LayerReport]:
    """Prune whole output channels/rows (dim=0) of every prunable layer by L1/L2 norm.

    Args:
        amount: fraction or count of slices pruned per layer.
        norm, dim: see :func:`structured_mask`.
        filter_fn: optional layer filter.
        masks: attach masks (``apply_masks_``) instead of zeroing permanently.

    Returns:
        list of :class:`LayerReport` (kept counts weights, not slices).
    """
    reports = []
    for name, m in _layers_or_raise(model, filter_fn):
        reports.append(_prune_with(model, name, m, masks,
                                   lambda w: structured_mask(w, amount, norm=norm, dim=dim)))
    return reports


@torch.no_grad()
def nm_prune_(model: nn.Module, n: int = 2, m: int = 4, *,
              filter_fn: Optional[FilterFn] = None, masks: bool = False) -> List[LayerReport]:
    """N:M pruning (e.g. 2:4) of every prunable layer whose rows are a multiple of m.

    Layers whose row size is not a multiple of m are skipped (and absent from the report).

    Args:
        n, m: keep n of every m consecutive input weights.
        filter_fn: optional layer filter.
        masks: attach masks instead of zeroing permanently.

    Returns:
        list of :class:`LayerReport`.
    """
    return _prune_row_groups(model, filter_fn, masks, m, lambda w: nm_mask(w, n, m))


def _prune_row_groups(model, filter_fn, masks: bool, block, make_mask) -> List[LayerReport]:
    """_prune_with over every prunable layer whose shape splits into blocks of `block` (an int:
    inputs, or (rows, inputs)); the others are skipped (and absent from the report)."""
    br, bc = _block_shape(block)
    reports = []
    for name, mod in _layers_or_raise(model, filter_fn):
        w = _raw_weight(mod)
        if w.numel() == 0 or (w.numel() // w.shape[0]) % bc or w.shape[0] % br:
            continue
        reports.append(_prune_with(model, name, mod, masks, make_mask))
    return reports


@torch.no_grad()
def block_prune_(model: nn.Module, amount, *, block=4, norm: str = "l1",
                 filter_fn: Optional[FilterFn] = None, masks: bool = False
                 ) -> List[LayerReport]:
    """Block pruning (aligned 1 x ``block`` groups along the input dim, or ``block=(rows,
    inputs)`` blocks, see :func:`block_mask`) of every prunable layer whose shape is a multiple
    of the block, per layer.

    Layers whose shape is not a multiple of the block are skipped (and absent from the report).

    Args:
        amount: fraction or count of blocks pruned per layer.
        block, norm: see :func:`block_mask`.
        filter_fn: optional layer filter.
        masks: attach masks instead of zeroing permanently.

    Returns:
        list of :class:`LayerReport`.
    """
    return _prune_row_groups(model, filter_fn, masks, block,
                             lambda w: block_mask(w, amount, block=block, norm=norm))


# ----------------------------------------------------------------------------- gradual schedule


def cubic_sparsity(step: int, *, final_sparsity: float, begin_step: int, end_step: int,
                   initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta (2017) cubic schedule: s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3.

    ``n dt = end_step - begin_step``; before begin_step the sparsity is initial_sparsity (0 by
    default: nothing pruned yet), after end_step it stays final_sparsity.

    Raises:
        ValueError: end_step <= begin_step, or sparsities outside [0, 1].
    """
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must be > begin_step ({begin_step})")
    for nm, v in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{nm} must be in [0, 1], got {v}")
    frac = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3


class GradualPruner:
    """Gradual magnitude pruning for a prune-then-fine-tune loop (Zhu & Gupta 2017).

    Call :meth:`step` once per optimizer step (after ``optimizer.step()``). At begin_step and
    every ``frequency`` steps until end_step it recomputes magnitude masks at the cubic
    schedule's sparsity; the masks stay applied (a parametrization) between updates, in the
    state_dict and through deepcopy. Finish with :meth:`make_permanent`.

    Args:
        model: the model to prune.
        final_sparsity: target fraction pruned at end_step.
        begin_step, end_step: schedule range (end_step > begin_step).
        frequency: steps between mask updates (dt), >= 1.
        initial_sparsity: s_i.
        scope: "global" or "layer".
        filter_fn: optional layer filter.

    Raises:
        ValueError: bad schedule or scope.
    """

    def __init__(self, model: nn.Module, final_sparsity: float, *, begin_step: int = 0,
                 end_step: int, frequency: int = 1, initial_sparsity: float = 0.0,
                 scope: str = "global", filter_fn: Optional[FilterFn] = None):
        cubic_sparsity(begin_step, final_sparsity=final_sparsity, begin_step=begin_step,
                       end_step=end_step, initial_sparsity=initial_sparsity)  # validates
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an int >= 1, got {frequency!r}")
        _check_scope(scope)
        self.model, self.final_sparsity = model, final_sparsity
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency
        self.initial_sparsity, self.scope, self.filter_fn = initial_sparsity, scope, filter_fn
        self.step_count = 0
        self.last_reports: List[LayerReport] = []

    def sparsity_at(self, step: int) -> float:
        """The schedule's target sparsity at ``step``."""
        return cubic_sparsity(step, final_sparsity=self.final_sparsity,
                              begin_step=self.begin_step, end_step=self.end_step,
                              initial_sparsity=self.initial_sparsity)

    def is_update_step(self, step: int) -> bool:
        """Whether masks are recomputed at ``step``."""
        if not self.begin_step <= step <= self.end_step:
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def step(self, step: Optional[int] = None) -> Optional[List[LayerReport]]:
        """Advance the schedule (to ``step`` if given) and update masks on update steps.

        Returns:
            the per-layer reports when masks were updated, else None.
        """
        t = self.step_count if step is None else int(step)
        self.step_count = t + 1
        if not self.is_update_step(t):
            return None
        self.last_reports = magnitude_masks_(self.model, self.sparsity_at(t), scope=self.scope,
                                             filter_fn=self.filter_fn)
        return self.last_reports

    def make_permanent(self) -> int:
        """Bake the masks into the weights and drop the parametrizations."""
        return make_permanent(self.model)


# ----------------------------------------------------------------------------- sensitivity


@torch.no_grad()
def sensitivity_analysis(model: nn.Module, metric_fn: Callable[[nn.Module], float],
                         sparsities: Sequence[float] = (0.25, 0.5, 0.75, 0.9, 0.95), *,
                         filter_fn: Optional[FilterFn] = None) -> List[dict]:
    """For each layer alone, the user's metric after magnitude-pruning it at each sparsity.

    The model is left as it was: each layer's weight is saved, pruned in place with the
    native kernel, measured, and restored (one layer's copy at a time).

    Args:
        model: the model (not modified on return).
        metric_fn: ``metric_fn(model) -> float`` (accuracy, loss, ...); called once for the
            baseline and once per (layer, sparsity).
        sparsities: fractions to try.
        filter_fn: optional layer filter.

    Returns:
        list of rows ``{"layer", "numel", "sparsity", "metric", "baseline", "delta"}``, one per
        (layer, sparsity), with ``delta = metric - baseline``; easy to turn into a DataFrame.
    """
    baseline = float(metric_fn(model))
    rows = []
    for name, m in _layers_or_raise(model, filter_fn):
        w = _raw_weight(m)
        saved = w.detach().clone()
        try:
            for s in sparsities:
                ops.magnitude_prune_tensors_(w.detach(), float(s))
                v = float(metric_fn(model))
                rows.append({"layer": name, "numel": w.numel(), "sparsity": float(s),
                             "metric": v, "baseline": baseline, "delta": v - baseline})
                w.copy_(saved)
        finally:
            w.copy_(saved)
    return rows
