"""``sparsify_``: swap pruned ``nn.Linear`` layers for sparse kernels where that is faster.

``sparsify_`` decides per layer on this CPU (pyquant/sparse_format.md): a layer below 50%
sparsity is never swapped, one at 98% or more always, and in between the sparse layer built
from it is timed against the dense layer it would replace (fp32 ``nn.Linear`` for
``SparseLinear``, the dense int8 ``QuantLinear`` for ``SparseQuantLinear``; on an AMX CPU dense
int8 is several times faster than fp32) at the batch the model will run at (``rows``, default
32; 1 for token-by-token decoding), calls interleaved, ~20 ms a layer. Layers of the same
shape, kind (fp32 entries or 16 x 1 tiles; int8 entries, 1 x 4 quads or 16 x 4 tiles) and
sparsity (to 1%) share one timing. Pass ``min_sparsity`` to skip the timing and use a fixed threshold (deterministic, what
the tests do).

``break_even_sparsity`` is the shape-free estimate behind an earlier version of ``sparsify_``:
one 512 x 512 layer at 90% sparsity, timed once per process, gives the sparsity above which
the sparse kernel's per-nonzero cost beats the dense kernel's per-weight cost (clamped to
[0.5, 0.98]). On small layers the per-call costs dominate it, so it errs high for large layers
(here, one thread, 32 rows: 0.74-0.78 fp32 while a 4096 x 4096 fp32 layer is already 1.3x
faster sparse at 50%); it stays for a quick estimate.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import nn

from pyquant import ops
from pyquant.nn.quant_linear import QuantLinear
from pyquant.ops_sparse import may_store_f32_tiles, stores_quads_and_tiles
from pyquant.prune import block_mask
from pyquant.nn.sparse import SparseLinear, SparseQuantLinear

__all__ = ["break_even_sparsity", "sparsify_"]

_BREAK_EVEN: dict = {}


def _best_times(fns, reps: int = 20) -> list:
    """Best time of each of fns, the calls interleaved so that a drift of the machine's speed
    hits them alike (calls of 20-100 us: 5 reps, one function after the other, were noisy)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _check_rows(rows) -> int:
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be an int >= 1, got {rows!r}")
    return rows


def break_even_sparsity(quantized: bool = False, blocked=False, rows: int = 32) -> float:
    """Sparsity above which the sparse kernel beats the dense one on this CPU.

    Measured once per process and cached (see the module docstring), clamped to [0.5, 0.98].

    Args:
        quantized: calibrate the sparse + int8 kernel against the dense int8 ``QuantLinear``
            instead of the fp32 sparse kernel against ``F.linear``.
        blocked: (with quantized) True: calibrate on a 1 x 4 block-pruned weight, which int8
            packs store as quads (``prune.block_prune_``; a different kernel on VNNI CPUs);
            ``"tiles"``: on a 16 x 4 block-pruned one (``block=(16, 4)``).
        rows: the batch (rows of x per call) to calibrate at.

    Returns:
        The break-even sparsity in [0.5, 0.98].

    Raises:
        ValueError: rows is not an int >= 1, or blocked is not False, True or "tiles".
    """
    rows = _check_rows(rows)
    if not (isinstance(blocked, bool) or blocked == "tiles"):
        raise ValueError(f"blocked must be False, True or 'tiles', got {blocked!r}")
    key = (bool(quantized), blocked if quantized else False, rows)
    if key in _BREAK_EVEN:
        return _BREAK_EVEN[key]
    gen = torch.Generator().manual_seed(0)
    n = k = 512 if rows >= 8 else 1024
    w = torch.randn(n, k, generator=gen)
    if key[1]:
        w = w * block_mask(w, 0.9, block=(16, 4) if key[1] == "tiles" else 4)
    else:
        w[torch.rand(n, k, generator=gen) < 0.9] = 0.0
    density = float((w != 0).float().mean())
    x = torch.randn(rows, k, generator=gen)
    y = torch.empty(rows, n)
    packed = ops.sparse_pack(w, dtype=torch.int8 if quantized else torch.float32)
    if quantized:
        lin = nn.Linear(k, n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(w)
        dense = QuantLinear.from_float(lin)
    else:
        dense = lambda v: torch.nn.functional.linear(v, w)  # noqa: E731
    with torch.inference_mode():
        t_dense, t_sparse = _best_times([lambda: dense(x),
                                         lambda: ops.sparse_linear(x, packed, out=y)])
    # t_sparse = density * c_s, t_dense = c_d -> break-even density c_d / c_s.
    e = t_dense * density / max(t_sparse, 1e-12)
    _BREAK_EVEN[key] = float(min(0.98, max(0.5, 1.0 - e)))
    return _BREAK_EVEN[key]


def _sparsity(weight: torch.Tensor) -> float:
    # count_nonzero: ~4x faster than summing a bool mask (14 against 52 ms at 4096 x 4096)
    return 1.0 - int(torch.count_nonzero(weight)) / weight.numel() if weight.numel() else 0.0


# sparsify_ decides by timing only in between: below it a layer is never swapped, above it
# always (a noisy timing can neither swap a near-dense layer nor refuse a very sparse one).
_TIMED_RANGE = (0.5, 0.98)
_DECISIONS: dict = {}  # (layer kind, n, k, sparsity to 1%, rows) -> sparse is faster


def _kind(child: nn.Linear, quantize: bool, cls, rows: int) -> tuple:
    """(the layer's pack kind, the candidate layer or None). The int8 kinds, fp32 at one row
    (M = 1 runs the CSR kernel on tiles too) and a plainly unstructured fp32 weight (its first
    rows fail the tile pre-test, ~1 ms) are read off the weight without packing, so a layer
    already known to be slower is never packed. An fp32 weight that may be 16 x 1 tiles is
    packed here, once, and its kind read off the pack's tile view, which the layer then runs
    (reading it off the weight first cost as much as the pack: 216 against 209 ms at
    4096 x 4096, 90%)."""
    w = child.weight.detach()
    if quantize:
        quads, tiles = stores_quads_and_tiles(w)
        return ("tiles" if tiles else "quads" if quads else "pairs"), None
    if rows == 1 or not may_store_f32_tiles(w):
        return "f32", None
    candidate = cls.from_float(child, rows=rows)
    return ("f32 tiles" if candidate._packed.is_tiles else "f32"), candidate


def _sparse_is_faster(key: tuple, child: nn.Linear, candidate: nn.Module, quantize: bool,
                      rows: int) -> bool:
    """Times the built sparse layer against the dense layer it would replace (fp32 ``Linear``,
    or ``QuantLinear`` with quantize) at ``rows`` rows, calls interleaved, ~20 ms a layer."""
    if key not in _DECISIONS:
        dense = QuantLinear.from_float(child) if quantize else child
        x = torch.randn(rows, child.in_features, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            once = _best_times([lambda: dense(x), lambda: candidate(x)], reps=1)
            reps = int(min(20, max(3, 0.02 / max(sum(once), 1e-9))))
            t_dense, t_sparse = _best_times([lambda: dense(x), lambda: candidate(x)], reps)
        _DECISIONS[key] = t_sparse < t_dense
    return _DECISIONS[key]


def sparsify_(model: nn.Module, *, min_sparsity: Optional[float] = None,
              filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
              quantize: bool = False, rows: int = 32) -> nn.Module:
    """Replace, in place, each ``nn.Linear`` sparse enough to run faster with sparse kernels.

    Args:
        model: the model (a bare ``nn.Linear`` cannot be swapped in place: wrap it).
        min_sparsity: swap layers whose weight has at least this fraction of exact zeros;
            None: decide per layer on this CPU: below 50% sparsity never, from 98% always, in
            between by timing the sparse layer against the dense one at ``rows`` rows (its own
            shape and sparsity, ~20 ms a layer, shared by layers of the same shape, kind and
            sparsity).
        filter_fn: optional ``filter_fn(module, fully_qualified_name) -> bool``; layers for
            which it returns False stay dense.
        quantize: use ``SparseQuantLinear`` (sparse + int8, timed against the dense int8
            ``QuantLinear``) instead of ``SparseLinear`` (against the fp32 ``Linear``).
        rows: the batch (rows of input per call) the model will run at, e.g. 1 for
            token-by-token decoding: the sparse layers' packs are tuned for it (``rows`` of
            ``from_float``) and, without min_sparsity, the timing runs at it.

    Returns:
        ``model`` (modified in place).

    Raises:
        TypeError: model is not an nn.Module, or filter_fn is not callable.
        ValueError: min_sparsity outside [0, 1], or rows not an int >= 1.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be callable, got {type(filter_fn).__name__}")
    rows = _check_rows(rows)
    if min_sparsity is not None:
        if isinstance(min_sparsity, bool) or not isinstance(min_sparsity, (int, float)) or \
                not 0.0 <= float(min_sparsity) <= 1.0:
            raise ValueError(f"min_sparsity must be a number in [0, 1], got {min_sparsity!r}")
    # A fixed threshold is a timed range of width 0: below it never, from it always.
    lo, hi = (float(min_sparsity),) * 2 if min_sparsity is not None else _TIMED_RANGE
    cls = SparseQuantLinear if quantize else SparseLinear
    targets = []
    for name, mod in model.named_modules():
        for child_name, child in mod.named_children():
            if type(child) is not nn.Linear:
                continue
            fqn = f"{name}.{child_name}" if name else child_name
            if filter_fn is not None and not filter_fn(child, fqn):
                continue
            s = _sparsity(child.weight.detach())
            if s >= hi:
                targets.append((mod, child_name, cls.from_float(child, rows=rows)))
            elif s >= lo:
                # Layers of the same kind, shape and sparsity (to 1%) share one timing.
                kind, candidate = _kind(child, quantize, cls, rows)
                key = (kind, child.out_features, child.in_features, round(s, 2), rows)
                if _DECISIONS.get(key, True):  # a layer known to be slower is not even packed
                    if candidate is None:
                        candidate = cls.from_float(child, rows=rows)
                    if _sparse_is_faster(key, child, candidate, quantize, rows):
                        targets.append((mod, child_name, candidate))
    for parent, child_name, layer in targets:
        setattr(parent, child_name, layer)
    return model
