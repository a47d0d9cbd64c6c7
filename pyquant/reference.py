"""Plain-PyTorch reference of every op: the definitions the kernels are tested against.

Written for clarity, not speed, straight from the ONNX operator definitions: a true float32
division, then round half to even (``torch.round``), then saturation.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

_QRANGE = {torch.int8: (-128, 127), torch.uint8: (0, 255)}


def _expand(param: torch.Tensor, shape, axis: Optional[int], block_size: Optional[int]) -> torch.Tensor:
    """Broadcast a per-tensor / per-axis / blocked parameter to the input's shape."""
    param = torch.as_tensor(param)
    if axis is None or param.numel() == 1:
        return param.reshape(())
    ndim = len(shape)
    axis = axis % ndim
    if block_size is None:
        view = [1] * ndim
        view[axis] = shape[axis]
        return param.reshape(view)
    return param.repeat_interleave(block_size, dim=axis).narrow(axis, 0, shape[axis])


def quantize(x: torch.Tensor, scale, zero_point=0, *, axis: Optional[int] = None,
             block_size: Optional[int] = None, dtype: torch.dtype = torch.int8) -> torch.Tensor:
    """ONNX QuantizeLinear: saturate(round_half_to_even(x / scale) + zero_point)."""
    qmin, qmax = _QRANGE[dtype]
    s = _expand(torch.as_tensor(scale, dtype=torch.float32), x.shape, axis, block_size)
    z = _expand(torch.as_tensor(zero_point), x.shape, axis, block_size).to(torch.float32)
    return torch.clamp(torch.round(x / s) + z, qmin, qmax).to(dtype)


def dequantize(q: torch.Tensor, scale, zero_point=0, *, axis: Optional[int] = None,
               block_size: Optional[int] = None) -> torch.Tensor:
    """ONNX DequantizeLinear: (q - zero_point) * scale, in float32."""
    s = _expand(torch.as_tensor(scale, dtype=torch.float32), q.shape, axis, block_size)
    z = _expand(torch.as_tensor(zero_point), q.shape, axis, block_size).to(torch.int32)
    return (q.to(torch.int32) - z).to(torch.float32) * s


def dynamic_qparams(x_min: torch.Tensor, x_max: torch.Tensor, dtype: torch.dtype
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point of ONNX DynamicQuantizeLinear (uint8) or symmetric int8."""
    x_min = x_min.to(torch.float32)
    x_max = x_max.to(torch.float32)
    if dtype == torch.uint8:
        lo = torch.clamp(x_min, max=0.0)
        hi = torch.clamp(x_max, min=0.0)
        scale = (hi - lo) / 255.0
        safe = torch.where(scale == 0, torch.ones_like(scale), scale)
        zp = torch.round(torch.clamp(0.0 - lo / safe, 0.0, 255.0)).to(torch.int32)
        return safe, torch.where(scale == 0, torch.zeros_like(zp), zp)
    amax = torch.maximum(-x_min, x_max)
    scale = amax / 127.0
    return torch.where(scale == 0, torch.ones_like(scale), scale), torch.zeros_like(scale, dtype=torch.int32)


def dynamic_quantize(x: torch.Tensor, *, dtype: torch.dtype = torch.uint8, axis: Optional[int] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ONNX DynamicQuantizeLinear (uint8) / symmetric int8, per tensor or per slice along axis."""
    if axis is None:
        x_min = x.min() if x.numel() else torch.tensor(0.0)
        x_max = x.max() if x.numel() else torch.tensor(0.0)
        scale, zp = dynamic_qparams(x_min, x_max, dtype)
        return quantize(x, scale, zp, dtype=dtype), scale, zp
    axis = axis % x.ndim
    dims = [d for d in range(x.ndim) if d != axis]
    if not dims:  # amin(dim=[]) would reduce everything
        x_min = x_max = x
    elif x.numel() == 0:
        x_min = x_max = torch.zeros(x.shape[axis])
    else:
        x_min, x_max = x.amin(dim=dims), x.amax(dim=dims)
    scale, zp = dynamic_qparams(x_min, x_max, dtype)
    return quantize(x, scale, zp, axis=axis, dtype=dtype), scale, zp


# ----------------------------------------------------------------------------- magnitude selection


def topk_threshold(x, k: int) -> float:
    """k-th largest |x| over a tensor or a list of tensors (torch.kthvalue on the |x|)."""
    flat = torch.cat([t.detach().reshape(-1).abs() for t in x]) if isinstance(x, (list, tuple)) \
        else x.detach().reshape(-1).abs()
    if k == 0:
        return float("inf")
    return float(torch.kthvalue(flat, flat.numel() - k + 1).values)


def magnitude_mask(x, k_keep: int):
    """Keep the k_keep largest |x|; ties kept in flat index order (a stable descending sort)."""
    ts = list(x) if isinstance(x, (list, tuple)) else [x]
    flat = torch.cat([t.detach().reshape(-1).abs() for t in ts])
    order = torch.sort(flat, descending=True, stable=True).indices
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order[:k_keep]] = True
    masks, pos = [], 0
    for t in ts:
        masks.append(keep[pos:pos + t.numel()].reshape(t.shape))
        pos += t.numel()
    return masks if isinstance(x, (list, tuple)) else masks[0]
# ----------------------------------------------------------------------------- sparse (issue 5)


def sparse_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
    """Dense reference of ``sparse_linear``: x @ weight^T + bias in float64, cast to float32."""
    y = x.to(torch.float64) @ weight.to(torch.float64).T
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y.to(torch.float32)


def sparse_q8_accumulate(xq: torch.Tensor, zero_point: torch.Tensor, weight_q: torch.Tensor
                         ) -> torch.Tensor:
    """int64 reference of the int8 sparse accumulators: (xq - zp[:, None]) @ weight_q^T."""
    xs = xq.to(torch.int64) - zero_point.to(torch.int64)[:, None]
    return xs @ weight_q.to(torch.int64).T


def sparse_linear_q8(x: torch.Tensor, weight_q: torch.Tensor, w_scale: torch.Tensor,
                     bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reference of the int8 sparse linear: per-row uint8 dynamic quantization of x, exact
    integer products, then acc * (x_scale * w_scale) + bias in float32."""
    x2 = x.reshape(-1, x.shape[-1])
    xq, xs, zp = dynamic_quantize(x2, dtype=torch.uint8, axis=0)
    acc = sparse_q8_accumulate(xq, zp, weight_q)
    y = acc.to(torch.float32) * (xs.to(torch.float32)[:, None] * w_scale[None, :])
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight_q.shape[0])


def int8_matmul(a: torch.Tensor, b: torch.Tensor, a_zero_point=0, b_zero_point=0) -> torch.Tensor:
    """ONNX MatMulInteger in int64, then checked to fit and cast to int32."""
    za = torch.as_tensor(a_zero_point, dtype=torch.int64)
    zb = torch.as_tensor(b_zero_point, dtype=torch.int64).reshape(-1)
    zb = zb.reshape(()) if zb.numel() == 1 else zb.reshape(1, -1)
    # int64 matmul is not implemented on every backend: do it as a broadcast sum.
    a64 = a.to(torch.int64) - za
    b64 = b.to(torch.int64) - zb
    out = (a64.unsqueeze(2) * b64.unsqueeze(0)).sum(dim=1)
    assert out.numel() == 0 or (int(out.min()) >= -2**31 and int(out.max()) < 2**31)
    return out.to(torch.int32)


def quantize_activations(x2: torch.Tensor, act: str = "per_row", static_scale: float = 1.0,
                         static_zero_point: int = 0):
    """The uint8 activation rows of QuantLinear / QuantConv2d: (q, scale [M], zero_point [M])."""
    if act == "per_row":
        q, sa, za = dynamic_quantize(x2, dtype=torch.uint8, axis=0)
    elif act == "per_row7":  # 127 levels, values clamped to <= 128 (the 7-bit kernel's range)
        lo = torch.clamp(x2.amin(dim=1), max=0.0) if x2.shape[0] else torch.zeros(0)
        hi = torch.clamp(x2.amax(dim=1), min=0.0) if x2.shape[0] else torch.zeros(0)
        s = (hi - lo) / 127.0
        sa = torch.where(s == 0, torch.ones_like(s), s)
        za = torch.round(torch.clamp(0.0 - lo / sa, 0.0, 127.0)).to(torch.int32)
        za = torch.where(s == 0, torch.zeros_like(za), za)
        q = torch.clamp(quantize(x2, sa, za, axis=0, dtype=torch.uint8), max=128)
    elif act == "per_tensor":
        q, sa, za = dynamic_quantize(x2, dtype=torch.uint8)
        sa = sa.expand(x2.shape[0])
        za = za.expand(x2.shape[0])
    else:
        sa = torch.full((x2.shape[0],), float(static_scale))
        za = torch.full((x2.shape[0],), int(static_zero_point), dtype=torch.int32)
        q = quantize(x2, static_scale, static_zero_point, dtype=torch.uint8)
    return q, sa, za


def quant_linear(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                 bias: Optional[torch.Tensor] = None, *, act: str = "per_row",
                 static_scale: float = 1.0, static_zero_point: int = 0) -> torch.Tensor:
    """What pyquant.nn.QuantLinear computes, in plain torch, with the same float operations.

    Activations are quantized to uint8 (dynamic per row / per tensor as ONNX
    DynamicQuantizeLinear, or static per tensor), multiplied exactly in integers with the int8
    weight ``[N, K]``, then ``float(acc - za * colsum) * (a_scale * w_scale) + bias``.
    """
    k = x.shape[-1]
    x2 = x.reshape(-1, k).to(torch.float32)
    q, sa, za = quantize_activations(x2, act, static_scale, static_zero_point)
    acc = torch.matmul(q.to(torch.float64), weight_q.to(torch.float64).t()).to(torch.int64)
    colsum = weight_q.to(torch.int64).sum(dim=1)
    v = (acc - za.to(torch.int64).reshape(-1, 1) * colsum.reshape(1, -1)).to(torch.int32)
    s = sa.to(torch.float32).reshape(-1, 1) * weight_scale.to(torch.float32).reshape(1, -1)
    y = v.to(torch.float32) * s
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.reshape(*x.shape[:-1], weight_q.shape[0])
