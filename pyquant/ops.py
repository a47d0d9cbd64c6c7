"""Typed wrappers over the native kernels.

Every op takes torch tensors (or numpy arrays), returns torch tensors, validates its input
before any work and raises ``TypeError`` (wrong dtype) or ``ValueError`` (anything else) with a
message that names the argument. Conversions to the kernels are zero-copy; ``out=`` lets a
caller reuse a buffer (fresh outputs above ~32 MB page-fault on every call).

Semantics are ONNX's QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear:
``q = saturate(round_half_to_even(x / scale) + zero_point)`` with a true float32 division, and
``x = (q - zero_point) * scale``. Zero points are returned as int32 tensors.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from pyquant import _C, _alloc, _runtime

__all__ = ["choose_qparams", "dequantize", "dynamic_quantize", "quantize"]

TensorLike = Union[torch.Tensor, np.ndarray]
_QRANGE = {torch.int8: (-128, 127), torch.uint8: (0, 255)}
_MODE_PER_TENSOR, _MODE_PER_AXIS, _MODE_BLOCKED = 0, 1, 2


# ----------------------------------------------------------------------------- validation


def _as_tensor(x: TensorLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        try:
            return torch.from_numpy(x)
        except TypeError as err:  # object, string, ... arrays
            raise TypeError(f"{name} has a numpy dtype torch cannot take ({x.dtype}): {err}") from None
        except ValueError as err:  # negative strides
            raise ValueError(f"{name} cannot be viewed as a tensor (copy it first): {err}") from None
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN / Inf in the floating tensor t: its min and max are finite (both propagate NaN).
    One pass and two scalars, where ``torch.isfinite(t).all()`` writes a bool tensor as large
    as t (4096 x 4096 float32: 4.7 against 66 ms, mostly page faults)."""
    if t.numel() == 0:
        return True
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def _check_cpu(t: torch.Tensor, name: str) -> None:
    """Scalars and small parameter tensors (scale, zero points) are read on the host: a tensor
    on another device ('meta' has no data at all) gets a ValueError, not torch's RuntimeError."""
    if not t.is_cpu:
        raise ValueError(f"{name} must be on the CPU, got device {t.device}")


def _byte_range(t: torch.Tensor) -> Tuple[int, int]:
    start = t.data_ptr()
    return start, start + t.numel() * t.element_size()


def _check_disjoint(outs: Sequence[Tuple[torch.Tensor, str]],
                    others: Sequence[Tuple[Optional[torch.Tensor], str]] = ()) -> None:
    """ValueError if an output buffer shares memory with an input or with another output.

    Kernels read their inputs while writing their outputs (and a failed call must leave its
    inputs untouched), so an ``out=`` that aliases an input would silently corrupt both.
    Every tensor here is contiguous, so its bytes are one interval; empty tensors hold none.
    """
    spans = [(*_byte_range(t), True, name) for t, name in outs if t is not None and t.numel()]
    if not spans:
        return
    spans += [(*_byte_range(t), False, name) for t, name in others
              if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel()]
    # One sweep in address order (lists of hundreds of tensors stay cheap): a span overlaps an
    # earlier one iff it starts before that one's end; only pairs involving an output matter.
    spans.sort(key=lambda s: s[0])
    far_out = far_any = None  # (end, name) of the furthest-reaching output / any span so far
    for start, end, is_out, name in spans:
        if far_out is not None and start < far_out[0]:
            raise ValueError(f"{far_out[1]} overlaps {name} in memory: pass a separate buffer")
        if is_out and far_any is not None and start < far_any[0]:
            raise ValueError(f"{name} overlaps {far_any[1]} in memory: pass a separate buffer")
        if is_out and (far_out is None or end > far_out[0]):
            far_out = (end, name)
        if far_any is None or end > far_any[0]:
            far_any = (end, name)


def _check_input(x: torch.Tensor, name: str, dtypes: Sequence[torch.dtype]) -> None:
    if x.dtype not in dtypes:
        want = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name} must have dtype {want}, got {x.dtype}")
    if not x.is_cpu:  # 0.1 us; x.device.type builds a device object (0.5 us)
        raise ValueError(f"{name} must be on the CPU, got device {x.device}")
    if not x.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous()), got strides {x.stride()}")


def _check_qdtype(dtype: torch.dtype) -> None:
    if dtype not in _QRANGE:
        raise TypeError(f"dtype must be torch.int8 or torch.uint8, got {dtype}")


def _normalize_axis(axis: int, ndim: int) -> int:
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis must be in [{-ndim}, {ndim - 1}] for a {ndim}-d input, got {axis}")
    return axis % ndim


def _scale_tensor(scale, name: str = "scale") -> torch.Tensor:
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        s = torch.tensor(float(scale), dtype=torch.float32)
    else:
        s = _as_tensor(scale, name)
        _check_cpu(s, name)
        if not s.is_floating_point():
            raise TypeError(f"{name} must be a float or a floating-point tensor, got {s.dtype}")
        s = s.detach().to(torch.float32)
    if s.numel() and not bool(torch.all(torch.isfinite(s) & (s > 0))):
        bad = s[~(torch.isfinite(s) & (s > 0))].flatten()[0].item()
        raise ValueError(f"{name} must be finite and > 0, got {bad}")
    return s.contiguous()


def _scalar_qparams(scale, zero_point, dtype: torch.dtype) -> Optional[Tuple[float, int]]:
    """(scale, zero_point) as Python numbers when both are per-tensor scalars, else None.

    The per-tensor fast path: a few microseconds of checks instead of tensor ops.
    """
    if isinstance(scale, (float, int)) and not isinstance(scale, bool):
        s = float(np.float32(scale))
    elif isinstance(scale, torch.Tensor) and scale.numel() == 1 and scale.is_floating_point():
        _check_cpu(scale, "scale")
        s = float(scale.detach().to(torch.float32))
    else:
        return None
    if isinstance(zero_point, (int, np.integer)) and not isinstance(zero_point, bool):
        zp = int(zero_point)
    elif (isinstance(zero_point, torch.Tensor) and zero_point.numel() == 1
          and not zero_point.is_floating_point() and not zero_point.is_complex()
          and zero_point.dtype != torch.bool):
        _check_cpu(zero_point, "zero_point")
        zp = int(zero_point)
    else:
        return None
    if not (math.isfinite(s) and s > 0):  # after float32 rounding: 1e-50 becomes 0
        raise ValueError(f"scale must be finite and > 0 (as float32), got {scale!r}")
    qmin, qmax = _QRANGE[dtype]
    if not qmin <= zp <= qmax:
        raise ValueError(f"zero_point must be in [{qmin}, {qmax}] for {dtype}, got {zp}")
    return s, zp


def _zero_point_tensor(zero_point, dtype: torch.dtype, like: torch.Tensor) -> Optional[torch.Tensor]:
    """int32 zero points shaped like the scale, or None when all are zero."""
    qmin, qmax = _QRANGE[dtype]
    if isinstance(zero_point, (int, np.integer)) and not isinstance(zero_point, bool):
        zp = int(zero_point)
        if not qmin <= zp <= qmax:
            raise ValueError(f"zero_point must be in [{qmin}, {qmax}] for {dtype}, got {zp}")
        return None if zp == 0 else torch.full(like.shape, zp, dtype=torch.int32)
    if isinstance(zero_point, (float, bool)):
        raise TypeError(f"zero_point must be an int or an integer tensor, got {zero_point!r}")
    z = _as_tensor(zero_point, "zero_point").detach()
    _check_cpu(z, "zero_point")
    if z.is_floating_point() or z.dtype == torch.bool or z.is_complex():
        raise TypeError(f"zero_point must be an int or an integer tensor, got {z.dtype}")
    if z.numel() == 1:
        return _zero_point_tensor(int(z.item()), dtype, like)
    if z.shape != like.shape:
        raise ValueError(f"zero_point must have the scale's shape {tuple(like.shape)}, got {tuple(z.shape)}")
    if z.numel() and (int(z.min()) < qmin or int(z.max()) > qmax):
        raise ValueError(f"zero_point must be in [{qmin}, {qmax}] for {dtype}, got values in "
                         f"[{int(z.min())}, {int(z.max())}]")
    return z.to(torch.int32).contiguous()


def _layout(shape: torch.Size, scale: torch.Tensor, axis, block_size):
    """Map (scale, axis, block_size) onto the kernel's [outer, channels, inner] view."""
    ndim = len(shape)
    if block_size is None:
        if axis is None:
            if scale.numel() != 1:
                raise ValueError(f"scale has {scale.numel()} elements: pass axis= for per-axis "
                                 "quantization, or a single scale for per-tensor")
            return _MODE_PER_TENSOR, 1, math.prod(shape), 1, 0, scale.reshape(1)
        if ndim == 0:
            raise ValueError("axis cannot be used with a 0-d input")
        a = _normalize_axis(axis, ndim)
        if scale.ndim != 1 or scale.numel() != shape[a]:
            raise ValueError(f"scale must be 1-d with {shape[a]} elements (x.shape[{axis}]) for "
                             f"per-axis quantization, got shape {tuple(scale.shape)}")
        return (_MODE_PER_AXIS, math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:]), 0, scale)
    if axis is None:
        raise ValueError("block_size needs axis= (the dimension the blocks run along)")
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if ndim == 0:
        raise ValueError("block_size cannot be used with a 0-d input")
    a = _normalize_axis(axis, ndim)
    expected = list(shape)
    expected[a] = -(-shape[a] // block_size)
    if list(scale.shape) != expected:
        raise ValueError(f"scale must have shape {tuple(expected)} for block_size={block_size} "
                         f"along axis {axis} of an input of shape {tuple(shape)}, got "
                         f"{tuple(scale.shape)}")
    return (_MODE_BLOCKED, math.prod(shape[:a]), shape[a], math.prod(shape[a + 1:]), block_size,
            scale)


_empty = _alloc.empty  # fresh outputs (pooled or on huge pages: see pyquant/_alloc.py)


def _out_tensor(out, shape, dtype, name="out") -> torch.Tensor:
    if out is None:
        return _empty(shape, dtype)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {out.dtype}")
    if not out.is_cpu:
        raise ValueError(f"{name} must be on the CPU, got device {out.device}")
    if out.shape != shape:  # torch.Size compares with tuples and Sizes alike
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if not out.is_contiguous():
        raise ValueError(f"{name} must be contiguous, got strides {out.stride()}")
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    """Zero-copy numpy view (kernels take any contiguous shape)."""
    return t.detach().numpy() if t.requires_grad else t.numpy()


# ----------------------------------------------------------------------------- ops


def quantize(x: TensorLike, scale, zero_point=0, *, axis: Optional[int] = None,
             block_size: Optional[int] = None, dtype: torch.dtype = torch.int8,
             out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Quantize float32 ``x`` to int8/uint8 (ONNX QuantizeLinear).

    ``q = saturate(round_half_to_even(x / scale) + zero_point)``; +-Inf saturate.

    Args:
        x: float32 tensor, contiguous, on the CPU.
        scale: per tensor, a positive float or a 1-element tensor; per axis (``axis`` given), a
            1-d tensor of ``x.shape[axis]`` scales; blocked (``block_size`` given), a tensor of
            x's shape with ``shape[axis]`` replaced by ``ceil(shape[axis] / block_size)``.
        zero_point: an int, or an integer tensor shaped like ``scale``; within the dtype's range.
        axis: the quantization axis for per-axis and blocked quantization.
        block_size: consecutive elements along ``axis`` that share one scale.
        dtype: ``torch.int8`` or ``torch.uint8``.
        out: optional preallocated output of x's shape and ``dtype``.

    Returns:
        The quantized tensor (``out`` if given).

    Raises:
        TypeError: x is not float32, dtype is not int8/uint8, zero_point not integer.
        ValueError: non-contiguous input, an input or out on another device, out sharing memory
            with x / scale / zero_point, mismatched shapes, scale <= 0 or not finite, zero point
            out of range, axis out of range, and x containing NaN (there is no integer for NaN;
            ``out`` is then partly written).
    """
    x = _as_tensor(x, "x")
    _check_input(x, "x", (torch.float32,))
    _check_qdtype(dtype)
    if axis is None and block_size is None:
        scalars = _scalar_qparams(scale, zero_point, dtype)
        if scalars is not None:
            y = _out_tensor(out, x.shape, dtype)
            if out is not None:
                _check_disjoint([(y, "out")], [(x, "x")])
            _runtime._sync_threads()
            _C.quantize_per_tensor(_np(x), _np(y), *scalars)
            return y
    s = _scale_tensor(scale)
    mode, outer, channels, inner, bs, s = _layout(x.shape, s, axis, block_size)
    zp = _zero_point_tensor(zero_point, dtype, s)
    y = _out_tensor(out, x.shape, dtype)
    if out is not None:
        _check_disjoint([(y, "out")], [(x, "x"), (s, "scale"), (zp, "zero_point")])
    _runtime._sync_threads()
    _C.quantize(_np(x).reshape(-1), _np(y).reshape(-1), mode, outer, channels, inner, bs,
                _np(s).reshape(-1), None if zp is None else _np(zp).reshape(-1))
    return y


def dequantize(q: TensorLike, scale, zero_point=0, *, axis: Optional[int] = None,
               block_size: Optional[int] = None, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Dequantize int8/uint8 ``q`` to float32 (ONNX DequantizeLinear): ``(q - zero_point) * scale``.

    Args and granularities are those of :func:`quantize`; ``out`` is a float32 buffer.

    Returns:
        float32 tensor of q's shape (``out`` if given).

    Raises:
        TypeError: q is not int8/uint8. ValueError: as for :func:`quantize`.
    """
    q = _as_tensor(q, "q")
    _check_input(q, "q", (torch.int8, torch.uint8))
    if axis is None and block_size is None:
        scalars = _scalar_qparams(scale, zero_point, q.dtype)
        if scalars is not None:
            y = _out_tensor(out, q.shape, torch.float32)
            if out is not None:
                _check_disjoint([(y, "out")], [(q, "q")])
            _runtime._sync_threads()
            _C.dequantize_per_tensor(_np(q), _np(y), *scalars)
            return y
    s = _scale_tensor(scale)
    mode, outer, channels, inner, bs, s = _layout(q.shape, s, axis, block_size)
    zp = _zero_point_tensor(zero_point, q.dtype, s)
    y = _out_tensor(out, q.shape, torch.float32)
    if out is not None:
        _check_disjoint([(y, "out")], [(q, "q"), (s, "scale"), (zp, "zero_point")])
    _runtime._sync_threads()
    _C.dequantize(_np(q).reshape(-1), _np(y).reshape(-1), mode, outer, channels, inner, bs,
                  _np(s).reshape(-1), None if zp is None else _np(zp).reshape(-1))
    return y


def dynamic_quantize(x: TensorLike, *, dtype: torch.dtype = torch.uint8, axis: Optional[int] = None,
                     out: Optional[torch.Tensor] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Quantize with a range read from the data (ONNX DynamicQuantizeLinear).

    uint8: ``scale = (max(x_max, 0) - min(x_min, 0)) / 255``,
    ``zero_point = saturate(round(-min(x_min, 0) / scale))``, exactly as ONNX.
    int8: symmetric, ``scale = max|x| / 127``, zero point 0. An all-zero range gets scale 1.

    Args:
        x: float32 tensor, contiguous, finite.
        dtype: ``torch.uint8`` (default, asymmetric) or ``torch.int8`` (symmetric).
        axis: None for one range over the whole tensor; else one range per slice
            ``x.select(axis, i)``. For ``axis=0`` (and any axis with only size-1 dims before it:
            per row / per token) the range is found and applied while the row is in cache: one
            pass over memory.
        out: optional preallocated quantized output.

    Returns:
        (q, scale, zero_point): q of x's shape; scale float32 and zero_point int32, 0-d per
        tensor or 1-d of ``x.shape[axis]`` per axis.

    Raises:
        TypeError: wrong dtype. ValueError: NaN or Inf in x, non-contiguous, another device,
            out sharing memory with x, axis out of range. Zero-size slices get scale 1 and
            zero point 0 (the all-zero range).
    """
    x = _as_tensor(x, "x")
    _check_input(x, "x", (torch.float32,))
    _check_qdtype(dtype)
    if axis is not None:
        if x.ndim == 0:
            raise ValueError("axis cannot be used with a 0-d input")
        a = _normalize_axis(axis, x.ndim)
    y = _out_tensor(out, x.shape, dtype)
    if out is not None:
        _check_disjoint([(y, "out")], [(x, "x")])
    _runtime._sync_threads()
    if axis is None:
        scale = torch.empty(1, dtype=torch.float32)
        zp = torch.empty(1, dtype=torch.int32)
        _C.dynamic_quantize(_np(x).reshape(-1), _np(y).reshape(-1), 1, x.numel(), _np(scale), _np(zp))
        return y, scale.reshape(()), zp.reshape(())
    rows = x.shape[a]
    if math.prod(x.shape[:a]) == 1:  # each slice is contiguous: fused range + quantize per row
        scale = torch.empty(rows, dtype=torch.float32)
        zp = torch.empty(rows, dtype=torch.int32)
        if rows:
            _C.dynamic_quantize(_np(x).reshape(-1), _np(y).reshape(-1), rows, x.numel() // rows,
                                _np(scale), _np(zp))
        return y, scale, zp
    # Strided slices: per-channel range by torch, then the per-axis kernel.
    if x.numel() == 0:  # empty slices: the all-zero range, as the fused path gives them
        zeros = torch.zeros(rows, dtype=torch.float32)
        scale, zp = _qparams_from_range(zeros, zeros, dtype, symmetric=dtype == torch.int8)
        return y, scale, zp
    if not _all_finite(x):
        raise ValueError("x contains NaN or Inf")
    dims = [d for d in range(x.ndim) if d != a]  # non-empty: some dim before a exceeds 1
    lo = torch.clamp(x.amin(dim=dims), max=0.0) if dtype == torch.uint8 else x.amin(dim=dims)
    hi = torch.clamp(x.amax(dim=dims), min=0.0) if dtype == torch.uint8 else x.amax(dim=dims)
    scale, zp = _qparams_from_range(lo, hi, dtype, symmetric=dtype == torch.int8)
    quantize(x, scale, zp, axis=a, dtype=dtype, out=y)
    return y, scale, zp


def _qparams_from_range(lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype, symmetric: bool
                        ) -> Tuple[torch.Tensor, torch.Tensor]:
    """float32 scale and int32 zero point that cover [lo, hi] (widened to include 0)."""
    qmin, qmax = _QRANGE[dtype]
    lo = torch.clamp(lo.to(torch.float32), max=0.0)
    hi = torch.clamp(hi.to(torch.float32), min=0.0)
    if symmetric:
        amax = torch.maximum(-lo, hi)
        if dtype == torch.int8:
            scale = amax / 127.0
            zp = torch.zeros_like(amax, dtype=torch.int32)
        else:  # uint8 symmetric: centred on 128
            scale = amax / 127.5
            zp = torch.full_like(amax, 128, dtype=torch.int32)
    else:
        scale = (hi - lo) / float(qmax - qmin)
        zp_f = torch.clamp(qmin - lo / torch.where(scale > 0, scale, 1.0), qmin, qmax)
        zp = torch.round(zp_f).to(torch.int32)
    zero = scale == 0
    if bool(zero.any()):
        scale = torch.where(zero, torch.ones_like(scale), scale)
        zp = torch.where(zero, torch.zeros_like(zp) + (128 if symmetric and dtype == torch.uint8 else 0), zp)
    if not bool(torch.isfinite(scale).all()):
        raise ValueError("x has a range that overflows float32")
    return scale, zp


def choose_qparams(x: TensorLike, *, dtype: torch.dtype = torch.int8, symmetric: bool = True,
                   axis: Optional[int] = None, method: str = "minmax", percentile: float = 99.99,
                   num_candidates: int = 100) -> Tuple[torch.Tensor, torch.Tensor]:
    """Analyse the distribution of ``x`` and pick a quantization range (calibration).

    Args:
        x: float32 tensor, finite.
        dtype: ``torch.int8`` or ``torch.uint8``.
        symmetric: range centred on zero (zero point 0 for int8, 128 for uint8).
        axis: None for one range, else one range per slice along ``axis`` (per channel).
        method: ``"minmax"`` (the full observed range), ``"percentile"`` (clip the tails at
            ``percentile``; outliers saturate) or ``"mse"`` (search ``num_candidates`` clipping
            ranges and keep the one with the least squared quantization error).
        percentile: for ``"percentile"``, in (0, 100].
        num_candidates: for ``"mse"``, the number of clipping ratios tried in (0, 1].

    Returns:
        (scale, zero_point): float32 and int32; 0-d, or 1-d of ``x.shape[axis]``. Feed them to
        :func:`quantize` with the same ``axis``.

    Raises:
        TypeError: wrong dtype, or symmetric / percentile / num_candidates of the wrong type.
            ValueError: empty, NaN/Inf, unknown method, bad percentile or num_candidates.
    """
    x = _as_tensor(x, "x")
    _check_input(x, "x", (torch.float32,))
    _check_qdtype(dtype)
    if x.numel() == 0:
        raise ValueError("x must not be empty")
    if not _all_finite(x):
        raise ValueError("x contains NaN or Inf")
    if method not in ("minmax", "percentile", "mse"):
        raise ValueError(f"method must be 'minmax', 'percentile' or 'mse', got {method!r}")
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be a bool, got {symmetric!r}")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.integer,
                                                                   np.floating)):
        raise TypeError(f"percentile must be a number, got {percentile!r}")
    if isinstance(num_candidates, bool) or not isinstance(num_candidates, (int, np.integer)):
        raise TypeError(f"num_candidates must be an int, got {num_candidates!r}")
    if axis is None:
        flat = x.reshape(1, -1)
    else:
        a = _normalize_axis(axis, x.ndim)
        flat = x.movedim(a, 0).reshape(x.shape[a], -1)
    if method == "minmax":
        lo, hi = flat.amin(dim=1), flat.amax(dim=1)
    elif method == "percentile":
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        lo, hi = _percentile_range(flat, percentile, symmetric)
    else:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
        lo, hi = _mse_range(flat, dtype, symmetric, num_candidates)
    scale, zp = _qparams_from_range(lo, hi, dtype, symmetric)
    if axis is None:
        return scale.reshape(()), zp.reshape(())
    return scale, zp


def _kth(values: torch.Tensor, q: float, largest: bool) -> torch.Tensor:
    """Per-row order statistic at fraction q (0..1) from the top (largest) or the bottom."""
    n = values.shape[1]
    k = min(n, max(1, int(math.ceil(q * n))))
    if largest:
        return torch.kthvalue(values, n - k + 1, dim=1).values
    return torch.kthvalue(values, k, dim=1).values


def _percentile_range(flat: torch.Tensor, percentile: float, symmetric: bool):
    p = percentile / 100.0
    if symmetric:
        amax = _kth(flat.abs(), p, largest=False)
        return -amax, amax
    tail = (1.0 - p) / 2.0
    return _kth(flat, tail, largest=False), _kth(flat, 1.0 - tail, largest=False)


def _mse_range(flat: torch.Tensor, dtype: torch.dtype, symmetric: bool, num_candidates: int):
    lo_full, hi_full = flat.amin(dim=1), flat.amax(dim=1)
    best_err = torch.full_like(lo_full, float("inf"))
    best_lo, best_hi = lo_full.clone(), hi_full.clone()
    rows = flat.shape[0]
    for i in range(num_candidates):
        ratio = (i + 1) / num_candidates
        lo, hi = lo_full * ratio, hi_full * ratio
        scale, zp = _qparams_from_range(lo, hi, dtype, symmetric)
        axis = 0 if rows > 1 else None
        s = scale if rows > 1 else scale.reshape(())
        z = zp if rows > 1 else zp.reshape(())
        q = quantize(flat, s, z, axis=axis, dtype=dtype)
        err = (dequantize(q, s, z, axis=axis) - flat).pow_(2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo = torch.where(better, lo, best_lo)
        best_hi = torch.where(better, hi, best_hi)
    return best_lo, best_hi


# ----------------------------------------------------------------------------- magnitude selection
#
# Order: elements are ranked by |x| (float32, so +0 and -0 are equal); NaN and +-Inf are rejected
# with ValueError (a weight holding one is broken, and ranking it would hide that). Several tensors passed as a list are ranked
# together (global), in flat index order: tensor 0's elements first, then tensor 1's, ...
# Ties: when elements at the threshold magnitude must be split, the ones with the lower flat
# index are kept (pruned ones are the later ties). This makes every count exact and the result
# deterministic on any thread count and ISA.

__all__ += ["magnitude_mask", "magnitude_prune_tensors_", "pruning_count", "topk_threshold"]


def _float32_list(x, name: str = "x") -> Tuple[list, bool]:
    """(list of float32 CPU contiguous tensors, whether x was a list/tuple)."""
    if isinstance(x, (list, tuple)):
        ts = [_as_tensor(t, f"{name}[{i}]") for i, t in enumerate(x)]
        if ts:
            dtypes = {t.dtype for t in ts}
            if len(dtypes) > 1:
                raise TypeError(f"{name} mixes dtypes {sorted(str(d) for d in dtypes)}: all "
                                "tensors must be torch.float32")
            devices = {t.device for t in ts}
            if len(devices) > 1:
                raise TypeError(f"{name} mixes devices {sorted(str(d) for d in devices)}: all "
                                "tensors must be on the CPU")
        for i, t in enumerate(ts):
            _check_input(t, f"{name}[{i}]", (torch.float32,))
        return ts, True
    t = _as_tensor(x, name)
    _check_input(t, name, (torch.float32,))
    return [t], False


def _flat_np(ts: list) -> list:
    return [_np(t).reshape(-1) for t in ts]


def pruning_count(amount, n: int) -> int:
    """How many of n elements ``amount`` prunes, as ``torch.nn.utils.prune`` counts them.

    Args:
        amount: a float in [0, 1] (fraction: ``round(amount * n)``, Python's round half to
            even, like ``prune._compute_nparams_toprune``) or an int in [0, n] (a count).
        n: number of elements.

    Returns:
        int in [0, n].

    Raises:
        TypeError: amount is neither int nor float (bool included).
        ValueError: amount out of range.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.integer, np.floating)):
        raise TypeError(f"amount must be an int (count) or a float (fraction), got {amount!r}")
    if isinstance(amount, (int, np.integer)):
        if not 0 <= int(amount) <= n:
            raise ValueError(f"amount (a count) must be in [0, {n}], got {int(amount)}")
        return int(amount)
    if not 0.0 <= float(amount) <= 1.0:  # also rejects NaN
        raise ValueError(f"amount (a fraction) must be in [0, 1], got {amount}")
    return int(round(float(amount) * n))


def topk_threshold(x, k: int) -> float:
    """The k-th largest magnitude |x| of a float32 tensor, or of a list of them taken together.

    Exact and multi-threaded, with no concatenation: |x| is ranked by its float bits. Above
    2^20 elements one streaming pass usually suffices (a sample brackets the threshold, the
    pass counts what lies above and collects the few keys inside the bracket into a buffer
    capped at n / 25 keys, 4% of x's bytes); when the bracket misses or the buffer would
    overflow (heavy ties, skewed data) an exact two-pass radix select on the bits takes over
    (histograms only). The answer never depends on the route, the ISA or the thread count.

    Args:
        x: float32 CPU contiguous tensor (or numpy array), or a list/tuple of them (global).
        k: int in [0, n], n the total number of elements. ``k = 0`` returns ``math.inf``:
            by convention no element is selected (an empty list with k = 0 gives inf too).

    Returns:
        float: the k-th largest |value| (``sum(|x| >= t) >= k`` and ``sum(|x| > t) < k``).

    Raises:
        TypeError: not float32, not a tensor, k not an int, or a list mixing dtypes/devices.
        ValueError: k out of range, x not on the CPU or not contiguous, or x contains NaN or Inf.
    """
    ts, _ = _float32_list(x)
    n = sum(t.numel() for t in ts)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {k!r}")
    if not 0 <= int(k) <= n:
        raise ValueError(f"k must be in [0, {n}] (the number of elements), got {int(k)}")
    _runtime._sync_threads()
    v = _C.abs_topk_threshold(_flat_np(ts), int(k))  # NaN check runs even for k = 0
    return math.inf if k == 0 else float(v)


def magnitude_mask(x, amount, *, out=None):
    """Keep-mask of magnitude pruning: True for the elements with the largest |x|.

    Prunes exactly ``pruning_count(amount, n)`` elements, the count ``torch.nn.utils.prune``
    uses (``round(amount * n)`` for a float, the number itself for an int). A list is pruned
    globally, like ``prune.global_unstructured`` with ``L1Unstructured``. Elements at the
    threshold magnitude are kept in flat index order (lower index kept first), so the count
    is exact under ties; without ties the mask equals torch's mask.

    Args:
        x: float32 CPU contiguous tensor, or a list/tuple of them (pruned together).
        amount: fraction in [0, 1] (float) or count (int) of elements to prune.
        out: optional bool tensor(s) to write into (one per input tensor, same numel,
            contiguous, CPU), e.g. the masks of the previous pruning step.

    Returns:
        torch.bool tensor shaped like x (a list of them for a list input); True = kept.
        With out=, the out tensor(s).

    Raises:
        TypeError: wrong dtype or amount type, a list mixing dtypes/devices, out not bool.
        ValueError: amount out of range, not CPU/contiguous, NaN or Inf in x, out of the wrong
            size, or an out tensor sharing memory with x or with another out tensor.
    """
    ts, is_list = _float32_list(x)
    n = sum(t.numel() for t in ts)
    k = n - pruning_count(amount, n)
    if out is None:
        masks = [torch.empty(t.shape, dtype=torch.bool) for t in ts]
    else:
        masks = list(out) if is_list else [out]
        if len(masks) != len(ts):
            raise ValueError(f"out must hold {len(ts)} tensors (one per input), got {len(masks)}")
        for i, (m, t) in enumerate(zip(masks, ts)):
            name = f"out[{i}]" if is_list else "out"
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(m).__name__}")
            _check_input(m, name, (torch.bool,))
            if m.numel() != t.numel():
                raise ValueError(f"{name} must have {t.numel()} elements, got {m.numel()}")
        _check_disjoint([(m, f"out[{i}]" if is_list else "out") for i, m in enumerate(masks)],
                        [(t, f"x[{i}]" if is_list else "x") for i, t in enumerate(ts)])
    _runtime._sync_threads()
    _C.abs_select_mask(_flat_np(ts), k, [m.numpy().reshape(-1) for m in masks])
    return masks if is_list else masks[0]


def magnitude_prune_tensors_(x, amount) -> list:
    """Magnitude pruning in place: zero the pruned elements of x, keep no mask.

    Same selection as :func:`magnitude_mask` (exact count, ties kept in flat index order),
    with no mask: the extra memory is a few histograms plus at most 4% of x's bytes (see
    :func:`topk_threshold`). Writes through the
    tensors' storage without autograd tracking: call it outside of any graph that needs x.

    Args:
        x: float32 CPU contiguous tensor, or a list/tuple of them (pruned together).
        amount: fraction in [0, 1] (float) or count (int) of elements to prune.

    Returns:
        list of int: elements kept per tensor (one entry for a single tensor); kept elements
        may already have been 0.

    Raises:
        TypeError / ValueError: as :func:`magnitude_mask`; ValueError also when two tensors of
            the list share memory (the same tensor twice, overlapping views: their elements
            would be counted twice and zeroed through each other) or a numpy array is
            read-only.
    """
    for i, a in enumerate(x if isinstance(x, (list, tuple)) else [x]):
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            raise ValueError(f"x[{i}] is a read-only numpy array: it cannot be pruned in place")
    ts, is_list = _float32_list(x)
    if is_list:
        _check_disjoint([(t, f"x[{i}]") for i, t in enumerate(ts)])
    n = sum(t.numel() for t in ts)
    k = n - pruning_count(amount, n)
    _runtime._sync_threads()
    return list(_C.abs_select_prune(_flat_np(ts), k))
# ----------------------------------------------------------------------------- sparse (issue 5)
from pyquant.ops_sparse import (SparsePacked, sparse_linear, sparse_mm,  # noqa: E402
                                sparse_pack, sparse_q8_accumulate)

__all__ += ["SparsePacked", "sparse_linear", "sparse_mm", "sparse_pack", "sparse_q8_accumulate"]
# ----------------------------------------------------------------------------- int8 GEMM

__all__ += ["int8_matmul", "pack_int8_weight", "unpack_int8_weight"]


def pack_int8_weight(w: TensorLike, *, transposed: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pack an int8 matrix into the GEMM kernels' panel layout (documented in csrc/include/pyquant/gemm.h).

    Args:
        w: int8 (or uint8, stored shifted by -128) 2-d tensor. With ``transposed=True`` (default)
            it is a Linear weight ``[N, K]`` (out_features x in_features); else ``b`` of
            ``a @ b``, ``[K, N]``.
        transposed: orientation of ``w`` as described above.

    Returns:
        (packed, col_sum): int8 tensor of ``round_up(N, 16) * round_up(K, 4)`` bytes (panels of
        16 columns, k in groups of 4, zero padded) and the int32 column sums
        (``round_up(N, 16)`` entries) used for the activation zero-point correction.

    Raises:
        TypeError: dtype not int8/uint8. ValueError: not 2-d.
    """
    w = _as_tensor(w, "w")
    _check_input(w, "w", (torch.int8, torch.uint8))
    if w.ndim != 2:
        raise ValueError(f"w must be 2-d, got shape {tuple(w.shape)}")
    n, k = (w.shape[0], w.shape[1]) if transposed else (w.shape[1], w.shape[0])
    kp, np_ = -(-k // _C.GEMM_KR) * _C.GEMM_KR, -(-n // _C.GEMM_NR) * _C.GEMM_NR
    packed = torch.empty(kp * np_, dtype=torch.int8)
    col_sum = torch.empty(np_, dtype=torch.int32)
    _C.gemm_pack_b(_np(w), bool(transposed), _np(packed), _np(col_sum))
    return packed, col_sum


def unpack_int8_weight(packed: torch.Tensor, k: int, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_int8_weight` for an int8 Linear weight: returns ``[n, k]`` int8.

    Args:
        packed: the int8 packed tensor. k, n: in_features and out_features.

    Raises:
        TypeError: packed is not an int8 tensor, k or n not ints.
        ValueError: packed not on the CPU, k or n negative, or ``packed`` does not have the
            size of an ``[n, k]`` weight.
    """
    if not isinstance(packed, torch.Tensor):
        raise TypeError(f"packed must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.int8:
        raise TypeError(f"packed must have dtype torch.int8, got {packed.dtype}")
    _check_cpu(packed, "packed")
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {v!r}")
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    kp, np_ = -(-k // _C.GEMM_KR) * _C.GEMM_KR, -(-n // _C.GEMM_NR) * _C.GEMM_NR
    if packed.numel() != kp * np_:
        raise ValueError(f"packed has {packed.numel()} elements, expected {kp * np_} for [{n}, {k}]")
    # [panel, k-group, column-in-panel, j] -> [panel, column, k-group, j] -> [N, K]
    p = packed.reshape(np_ // _C.GEMM_NR, kp // _C.GEMM_KR, _C.GEMM_NR, _C.GEMM_KR)
    w = p.permute(0, 2, 1, 3).reshape(np_, kp)
    return w[:n, :k].contiguous()


def int8_matmul(a: TensorLike, b: TensorLike, a_zero_point=0, b_zero_point=0, *,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Integer matrix product with int32 accumulation (ONNX MatMulInteger).

    ``out[m, n] = sum_k (a[m, k] - a_zero_point) * (b[k, n] - b_zero_point[n])``, exact
    (computed modulo 2^32 and therefore exact whenever the result fits int32, which is always
    the case for K <= 65793 with zero zero points).

    Args:
        a: ``[M, K]`` uint8 or int8.
        b: ``[K, N]`` int8 or uint8 (packed once per call; layers pack once at build time).
        a_zero_point: int in a's dtype range.
        b_zero_point: int, or a 1-d integer tensor of N per-column zero points, in b's range.
        out: optional int32 ``[M, N]`` buffer.

    Returns:
        int32 tensor ``[M, N]``.

    Raises:
        TypeError: wrong dtypes (zero points included). ValueError: not 2-d, K mismatch, zero
            point out of range, another device, out sharing memory with a / b / b_zero_point,
            non-contiguous, wrong b_zero_point length.
    """
    a = _as_tensor(a, "a")
    b = _as_tensor(b, "b")
    _check_input(a, "a", (torch.uint8, torch.int8))
    _check_input(b, "b", (torch.int8, torch.uint8))
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"a and b must be 2-d, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    m, k = a.shape
    if b.shape[0] != k:
        raise ValueError(f"b must have a.shape[1] = {k} rows, got shape {tuple(b.shape)}")
    n = b.shape[1]
    if isinstance(a_zero_point, (torch.Tensor, np.ndarray)):
        z = _as_tensor(a_zero_point, "a_zero_point")
        if z.is_floating_point() or z.is_complex() or z.dtype == torch.bool:
            raise TypeError(f"a_zero_point must be an int or an integer tensor, got {z.dtype}")
        _check_cpu(z, "a_zero_point")
        if z.numel() != 1:
            raise ValueError(f"a_zero_point must be a scalar, got shape {tuple(z.shape)}")
        a_zero_point = int(z.reshape(()).item())
    if not isinstance(a_zero_point, (int, np.integer)) or isinstance(a_zero_point, bool):
        raise TypeError(f"a_zero_point must be an int, got {a_zero_point!r}")
    amin, amax = _QRANGE[a.dtype]
    if not amin <= int(a_zero_point) <= amax:
        raise ValueError(f"a_zero_point must be in [{amin}, {amax}] for {a.dtype}, got {a_zero_point}")
    bmin, bmax = _QRANGE[b.dtype]
    zb = None
    if isinstance(b_zero_point, torch.Tensor) or isinstance(b_zero_point, np.ndarray):
        z = _as_tensor(b_zero_point, "b_zero_point")
        if z.is_floating_point() or z.is_complex() or z.dtype == torch.bool:
            raise TypeError(f"b_zero_point must be integer, got {z.dtype}")
        _check_cpu(z, "b_zero_point")
        if z.numel() == 1:
            b_zero_point = int(z.reshape(()).item())
        else:
            if z.shape != (n,):
                raise ValueError(f"b_zero_point must be a scalar or have shape ({n},), got {tuple(z.shape)}")
            if z.numel() and (int(z.min()) < bmin or int(z.max()) > bmax):
                raise ValueError(f"b_zero_point must be in [{bmin}, {bmax}] for {b.dtype}")
            zb = z.to(torch.int32).contiguous()
    if zb is None:
        if not isinstance(b_zero_point, (int, np.integer)) or isinstance(b_zero_point, bool):
            raise TypeError(f"b_zero_point must be an int or an integer tensor, got {b_zero_point!r}")
        if not bmin <= int(b_zero_point) <= bmax:
            raise ValueError(f"b_zero_point must be in [{bmin}, {bmax}] for {b.dtype}, got {b_zero_point}")
        if int(b_zero_point) != 0:
            zb = torch.full((n,), int(b_zero_point), dtype=torch.int32)
    y = _out_tensor(out, torch.Size((m, n)), torch.int32)
    if out is not None:
        _check_disjoint([(y, "out")], [(a, "a"), (b, "b"), (zb, "b_zero_point")])
    _runtime._sync_threads()
    packed, col_sum = pack_int8_weight(b, transposed=False)
    _C.int8_matmul(_np(a), int(a_zero_point), _np(packed), _np(col_sum), k, n,
                   b.dtype == torch.uint8, None if zb is None else _np(zb), _np(y))
    return y
