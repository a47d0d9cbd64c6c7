"""``sparsify_``: swap pruned ``nn.Linear`` layers for sparse kernels where that is faster.

Cost model (documented in pyquant/sparse_format.md): per output element the dense kernel
does ``K`` multiply-adds at the dense GEMM's throughput; the sparse kernel does ``density * K``
at a lower throughput (indexed loads of the activations instead of a streamed, blocked
GEMM). So sparse is faster when ``density < e``, ``e`` = sparse per-nonzero throughput / dense
per-weight throughput, i.e. when ``sparsity > 1 - e``. ``e`` is measured once per process by
a tiny timing (a 512 x 512 layer at 90% sparsity, ``rows`` = 32 rows by default, best of
20 interleaved runs; ~30 ms; 1024 x 1024 below 8 rows, where the ~6 us call overhead would be a
large part of a 512 x 512 call)
against the layer the user would otherwise run: fp32 ``F.linear`` for the fp32 sparse kernel,
the dense int8 ``QuantLinear`` for the sparse + int8 one (on an AMX CPU dense int8 is several
times faster than fp32, which moves the break-even up), with a 1 x 4 block-pruned weight for
layers whose int8 pack stores quads (``prune.block_prune_``; VNNI runs them with a faster
kernel, so they break even at a lower sparsity), and a 16 x 4 one for layers whose quads form
16 x 4 tiles (``block=(16, 4)``, faster again). The batch matters: at one row every kernel
streams its weights once (memory bound), and the break-even moves (measured on the AMX machine:
sparse + int8 0.89 at one row against 0.93 at 32, fp32 0.5 against 0.70); pass ``rows`` for the
batch the model will run at. The break-even
sparsity is clamped to
[0.5, 0.98] so a noisy timing cannot swap dense-ish layers or refuse very sparse ones. Pass
``min_sparsity`` to skip the timing and use a fixed threshold (deterministic, what the tests
do).
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch import nn

from pyquant import ops
from pyquant.nn.quant_linear import QuantLinear
from pyquant.ops_sparse import stores_quads, stores_tiles
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
    return float((weight == 0).sum()) / max(weight.numel(), 1)


def sparsify_(model: nn.Module, *, min_sparsity: Optional[float] = None,
              filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
              quantize: bool = False, rows: int = 32) -> nn.Module:
    """Replace, in place, each ``nn.Linear`` sparse enough to run faster with sparse kernels.

    Args:
        model: the model (a bare ``nn.Linear`` cannot be swapped in place: wrap it).
        min_sparsity: swap layers whose weight has at least this fraction of exact zeros;
            None: use :func:`break_even_sparsity` (measured once on this CPU).
        filter_fn: optional ``filter_fn(module, fully_qualified_name) -> bool``; layers for
            which it returns False stay dense.
        quantize: use ``SparseQuantLinear`` (sparse + int8) instead of ``SparseLinear``.
        rows: (without min_sparsity) the batch the model will run at, for the break-even
            timing; e.g. 1 for token-by-token decoding.

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
        threshold = float(min_sparsity)
    else:
        threshold = None  # per layer: int8 packs of 1 x 4 / 16 x 4 blocks have their own
    cls = SparseQuantLinear if quantize else SparseLinear
    targets = []
    for name, mod in model.named_modules():
        for child_name, child in mod.named_children():
            if type(child) is not nn.Linear:
                continue
            fqn = f"{name}.{child_name}" if name else child_name
            if filter_fn is not None and not filter_fn(child, fqn):
                continue
            w = child.weight.detach()
            if threshold is not None:
                t = threshold
            else:
                blocked = quantize and ("tiles" if stores_tiles(w) else stores_quads(w))
                t = break_even_sparsity(quantize, blocked=blocked, rows=rows)
            if _sparsity(w) >= t:
                targets.append((mod, child_name, child))
    for parent, child_name, child in targets:
        setattr(parent, child_name, cls.from_float(child))
    return model
