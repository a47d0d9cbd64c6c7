"""quantize / dequantize / dynamic_quantize against PyTorch's fastest equivalents.

Run: pytest bench/bench_quantize.py --benchmark-json=bench/quantize.json
     python bench/summarize.py bench/quantize.json
"""

from __future__ import annotations

import warnings

import pytest
import torch

from pyquant import ops

warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated")
SIZES = {"1M": 1 << 20, "64M": 64 << 20}
_cache: dict = {}


def _x(n):
    if n not in _cache:
        _cache.clear()
        _cache[n] = torch.randn(n, generator=torch.Generator().manual_seed(0))
    return _cache[n]


# ----------------------------------------------------------------------------- per tensor


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", ["torch.quantize_per_tensor", "pyquant.quantize",
                                  "pyquant.quantize(out=)", "fp32 copy_(out=)"])
def test_quantize_per_tensor(record, size, impl):
    x = _x(SIZES[size])
    n = x.numel()
    if impl == "fp32 copy_(out=)":
        dst = torch.empty_like(x)
        record(f"quantize per-tensor {size}", impl, 8 * n)(dst.copy_, x)
    elif impl == "torch.quantize_per_tensor":
        record(f"quantize per-tensor {size}", impl, 5 * n)(
            torch.quantize_per_tensor, x, 0.02, 0, torch.qint8)
    elif impl == "pyquant.quantize":
        record(f"quantize per-tensor {size}", impl, 5 * n)(ops.quantize, x, 0.02)
    else:
        out = torch.empty(n, dtype=torch.int8)
        record(f"quantize per-tensor {size}", impl, 5 * n)(ops.quantize, x, 0.02, out=out)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", ["Tensor.dequantize", "pyquant.dequantize",
                                  "pyquant.dequantize(out=)", "fp32 copy_(out=)"])
def test_dequantize_per_tensor(record, size, impl):
    x = _x(SIZES[size])
    n = x.numel()
    qt = torch.quantize_per_tensor(x, 0.02, 3, torch.qint8)
    q = qt.int_repr()
    group = f"dequantize per-tensor {size}"
    if impl == "fp32 copy_(out=)":
        dst = torch.empty_like(x)
        record(group, impl, 8 * n)(dst.copy_, x)
    elif impl == "Tensor.dequantize":
        record(group, impl, 5 * n)(qt.dequantize)
    elif impl == "pyquant.dequantize":
        record(group, impl, 5 * n)(ops.dequantize, q, 0.02, 3)
    else:
        out = torch.empty(n)
        record(group, impl, 5 * n)(ops.dequantize, q, 0.02, 3, out=out)


# ----------------------------------------------------------------------------- per channel


@pytest.mark.parametrize("impl", ["torch.quantize_per_channel", "pyquant.quantize(axis=0)"])
def test_quantize_per_channel(record, impl):
    w = _x(4096 * 4096).view(4096, 4096)
    scale = w.abs().amax(dim=1) / 127
    group = "quantize per-channel 4096x4096"
    if impl == "torch.quantize_per_channel":
        s64, zp = scale.double(), torch.zeros(4096, dtype=torch.int64)
        record(group, impl)(torch.quantize_per_channel, w, s64, zp, 0, torch.qint8)
    else:
        record(group, impl)(ops.quantize, w, scale, 0, axis=0)


# ----------------------------------------------------------------------------- dynamic


def _torch_dynamic_int8_rows(x):
    scale = x.abs().amax(dim=1, keepdim=True) / 127
    return torch.clamp(torch.round(x / scale), -128, 127).to(torch.int8), scale


def _torch_dynamic_int8_rows_inplace(x, buf, out):
    scale = torch.amax(x.abs(), dim=1, keepdim=True).div_(127)
    torch.div(x, scale, out=buf)
    buf.round_().clamp_(-128, 127)
    out.copy_(buf)
    return out, scale


def _torch_dynamic_uint8_rows(x):
    lo = x.amin(dim=1, keepdim=True).clamp_(max=0)
    hi = x.amax(dim=1, keepdim=True).clamp_(min=0)
    scale = (hi - lo) / 255
    zp = torch.round(-lo / scale).clamp_(0, 255)
    return torch.clamp(torch.round(x / scale) + zp, 0, 255).to(torch.uint8), scale, zp


@pytest.mark.parametrize("impl", ["torch amax+round+clamp", "torch in-place chain",
                                  "pyquant.dynamic_quantize(axis=0)", "pyquant.quantize per-tensor"])
def test_dynamic_quantize_int8_rows(record, impl):
    x = _x(4096 * 4096).view(4096, 4096)
    group = "dynamic int8 per-row 4096x4096"
    out = torch.empty(x.shape, dtype=torch.int8)
    if impl == "torch amax+round+clamp":
        record(group, impl)(_torch_dynamic_int8_rows, x)
    elif impl == "torch in-place chain":
        record(group, impl)(_torch_dynamic_int8_rows_inplace, x, torch.empty_like(x), out)
    elif impl == "pyquant.dynamic_quantize(axis=0)":
        record(group, impl)(ops.dynamic_quantize, x, dtype=torch.int8, axis=0, out=out)
    else:
        record(group, impl)(ops.quantize, x, 0.02, out=out)


@pytest.mark.parametrize("impl", ["torch aminmax+round+clamp", "pyquant.dynamic_quantize(axis=0)"])
def test_dynamic_quantize_uint8_rows(record, impl):
    x = _x(4096 * 4096).view(4096, 4096)
    group = "dynamic uint8 per-row 4096x4096"
    if impl == "torch aminmax+round+clamp":
        record(group, impl)(_torch_dynamic_uint8_rows, x)
    else:
        out = torch.empty(x.shape, dtype=torch.uint8)
        record(group, impl)(ops.dynamic_quantize, x, dtype=torch.uint8, axis=0, out=out)
