"""quantize / dequantize / dynamic_quantize / choose_qparams against pyquant.reference (bit-exact),
ONNX's published examples, and PyTorch's quantized tensors, on every ISA path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pyquant
from pyquant import ops, reference

SUPPORTED_ISAS = pyquant.supported_isas()

DTYPES = [torch.int8, torch.uint8]
# Tails of the 32-wide AVX2 and 64-wide AVX-512 loops, odd primes, and sizes past the
# single-thread threshold (64K elements per task).
SIZES = [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 97, 1000, 4099, 200_003]


def _data(n, seed=0, spread=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=g) * spread


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_quantize_per_tensor_matches_reference(isa, n, dtype):
    x = _data(n, seed=n)
    zp = 3 if dtype == torch.int8 else 130
    q = ops.quantize(x, 0.0173, zp, dtype=dtype)
    assert q.dtype == dtype and q.shape == x.shape
    assert torch.equal(q, reference.quantize(x, 0.0173, zp, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_dequantize_per_tensor_matches_reference(isa, n, dtype):
    q = torch.randint(-128, 128, (n,), dtype=torch.int16).to(dtype)
    zp = -5 if dtype == torch.int8 else 200
    y = ops.dequantize(q, 0.031, zp)
    assert y.dtype == torch.float32
    assert torch.equal(y, reference.dequantize(q, 0.031, zp))


def test_round_half_to_even_and_saturation(isa):
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -128.5, -129.0,
                      1e30, -1e30, float("inf"), float("-inf"), -0.0, 0.0, 1e-45])
    q = ops.quantize(x, 1.0, 0, dtype=torch.int8)
    expected = [0, 2, 2, 0, -2, -2, 126, 127, -128, -128, 127, -128, 127, -128, 0, 0, 0]
    assert q.tolist() == expected
    qu = ops.quantize(x, 1.0, 128, dtype=torch.uint8)
    assert qu.tolist() == [min(255, max(0, e + 128)) if abs(e) < 128 else (255 if e > 0 else 0)
                           for e in expected]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((5, 7), 0), ((5, 7), 1), ((5, 7), -1), ((3, 5, 33), 1),
                                        ((3, 5, 33), 2), ((2, 3, 4, 5), 0), ((1, 70), 1),
                                        ((70, 1), 0), ((4, 1000), 1), ((300, 300), 0)])
def test_per_axis_matches_reference(isa, shape, axis, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g) * 4
    c = shape[axis]
    scale = torch.rand(c, generator=g) * 0.05 + 0.001
    lo, hi = (-128, 128) if dtype == torch.int8 else (0, 256)
    zp = torch.randint(lo, hi, (c,), generator=g, dtype=torch.int32)
    q = ops.quantize(x, scale, zp, axis=axis, dtype=dtype)
    assert torch.equal(q, reference.quantize(x, scale, zp, axis=axis, dtype=dtype))
    y = ops.dequantize(q, scale, zp, axis=axis)
    assert torch.equal(y, reference.dequantize(q, scale, zp, axis=axis))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis,block", [((4, 37), 1, 8), ((4, 64), 1, 32), ((6, 5, 9), 1, 2),
                                              ((9, 16), 0, 4), ((3, 7, 40), 2, 16), ((2, 3), 1, 5),
                                              ((8, 4096), 1, 128), ((3, 7, 40), 1, 1)])
def test_blocked_matches_reference(isa, shape, axis, block, dtype):
    g = torch.Generator().manual_seed(block)
    x = torch.randn(shape, generator=g)
    sshape = list(shape)
    sshape[axis] = -(-shape[axis] // block)
    scale = torch.rand(sshape, generator=g) * 0.02 + 0.002
    lo, hi = (-128, 128) if dtype == torch.int8 else (0, 256)
    zp = torch.randint(lo, hi, sshape, generator=g, dtype=torch.int32)
    q = ops.quantize(x, scale, zp, axis=axis, block_size=block, dtype=dtype)
    assert torch.equal(q, reference.quantize(x, scale, zp, axis=axis, block_size=block, dtype=dtype))
    y = ops.dequantize(q, scale, zp, axis=axis, block_size=block)
    assert torch.equal(y, reference.dequantize(q, scale, zp, axis=axis, block_size=block))


def test_out_buffer_is_used_and_returned(isa):
    x = _data(1000)
    out = torch.empty(1000, dtype=torch.int8)
    assert ops.quantize(x, 0.1, out=out) is out
    assert torch.equal(out, reference.quantize(x, 0.1))
    fout = torch.empty(1000)
    assert ops.dequantize(out, 0.1, out=fout) is fout


def test_numpy_input_is_accepted():
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    q = ops.quantize(x, 0.01)
    assert isinstance(q, torch.Tensor)
    assert torch.equal(q, reference.quantize(torch.from_numpy(x), 0.01))


def test_nan_raises(isa):
    x = _data(100)
    x[57] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        ops.quantize(x, 0.1)
    with pytest.raises(ValueError, match="x contains NaN"):
        ops.dynamic_quantize(x)
    with pytest.raises(ValueError, match="x contains NaN"):
        ops.dynamic_quantize(x.view(10, 10), axis=0)


def test_threads_give_identical_results(threads):
    x = _data(1_000_003, seed=7)
    assert torch.equal(ops.quantize(x, 0.02, 1), reference.quantize(x, 0.02, 1))
    q, s, z = ops.dynamic_quantize(x[:1009 * 991].view(1009, 991), axis=0)
    rq, rs, rz = reference.dynamic_quantize(x[:1009 * 991].view(1009, 991), axis=0)
    assert torch.equal(q, rq) and torch.equal(s, rs) and torch.equal(z, rz)


# ----------------------------------------------------------------------------- dynamic


def test_dynamic_quantize_onnx_examples(isa):
    # The three examples of the ONNX DynamicQuantizeLinear operator specification.
    cases = [
        ([0, 2, -3, -2.5, 1.34, 0.5], 0.0196078438, 153, [153, 255, 0, 26, 221, 179]),
        ([-1.0, -2.1, -1.3, -2.5, -3.34, -4.0], 0.0156862754, 255, [191, 121, 172, 96, 42, 0]),
        ([1, 2.1, 1.3, 2.5, 3.34, 4.0, 1.5, 2.6, 3.9, 4.0, 3.0, 2.345], 0.0156862754, 0,
         [64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149]),
    ]
    for x, scale, zp, y in cases:
        q, s, z = ops.dynamic_quantize(torch.tensor(x, dtype=torch.float32))
        assert q.tolist() == y
        assert s.item() == pytest.approx(scale, rel=1e-7)
        assert z.item() == zp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (33,), (200_003,), (7, 1), (7, 33), (300, 1000)])
def test_dynamic_quantize_matches_reference(isa, shape, dtype):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))) + 0.3
    for axis in [None, 0]:
        q, s, z = ops.dynamic_quantize(x, dtype=dtype, axis=axis)
        rq, rs, rz = reference.dynamic_quantize(x, dtype=dtype, axis=axis)
        assert torch.equal(q, rq) and torch.equal(s, rs) and torch.equal(z, rz)
        assert s.dtype == torch.float32 and z.dtype == torch.int32


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_quantize_strided_axis(isa, dtype):
    x = torch.randn(6, 50, 7)
    q, s, z = ops.dynamic_quantize(x, dtype=dtype, axis=1)
    rq, rs, rz = reference.dynamic_quantize(x, dtype=dtype, axis=1)
    assert torch.equal(q, rq) and torch.equal(s, rs) and torch.equal(z, rz)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dynamic_quantize_degenerate_ranges(isa, dtype):
    # The last two: a range so small that range / 255 underflows to 0 (found by hypothesis).
    for x in [torch.zeros(40), torch.full((40,), -2.0), torch.full((40,), 5.0), torch.zeros(0),
              torch.tensor([1e-45]), torch.tensor([1e-45, -1e-45, 0.0])]:
        q, s, z = ops.dynamic_quantize(x, dtype=dtype)
        rq, rs, rz = reference.dynamic_quantize(x, dtype=dtype)
        assert torch.equal(q, rq) and torch.equal(s, rs) and torch.equal(z, rz)
    q, s, z = ops.dynamic_quantize(torch.zeros(3, 5), dtype=dtype, axis=0)
    assert torch.equal(s, torch.ones(3)) and torch.equal(z, torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="Inf"):
        ops.dynamic_quantize(torch.tensor([1.0, float("inf")]), dtype=dtype)


# ----------------------------------------------------------------------------- vs PyTorch


def _assert_only_tie_differences(x, ours, theirs, scale, zp, qmin, qmax):
    """Where pyquant (true division) and PyTorch (multiply by 1/scale) differ, the difference
    is 1 and PyTorch's value is what multiplying by the reciprocal gives: either
    round(x * inv) + zp, or FBGEMM's round(fma(x, inv, zp)) with one rounding (exact in
    float64 for these operands). The reciprocal moved x across a rounding tie."""
    diff = (ours.to(torch.int32) - theirs.to(torch.int32))
    where = diff != 0
    assert diff.abs().max().item() <= 1
    if where.any():
        inv = 1.0 / scale
        by_mul = torch.clamp(torch.round(x * inv) + zp, qmin, qmax).to(torch.int32)
        fused = (x.double() * inv.double() + zp).float()
        by_fma = torch.clamp(torch.round(fused), qmin, qmax).to(torch.int32)
        t = theirs.to(torch.int32)
        assert bool(((by_mul == t) | (by_fma == t))[where].all())
        by_division = torch.clamp(torch.round(x / scale) + zp, qmin, qmax).to(torch.int32)
        assert torch.equal(by_division[where], ours.to(torch.int32)[where])
        # ... and they are rounding ties or next to one.
        frac = (x / scale)[where].abs() % 1.0
        assert ((frac - 0.5).abs() < 1e-4).all()
    return int(where.sum())


def test_matches_torch_quantize_per_tensor_except_reciprocal_ties(isa):
    x = torch.randn(1_000_000, generator=torch.Generator().manual_seed(1)) * 2
    # Many exact ties: multiples of scale / 2.
    scale = 0.1
    x[:1000] = torch.arange(-500, 500, dtype=torch.float32) * (scale / 2)
    ours = ops.quantize(x, scale, 10, dtype=torch.int8)
    theirs = torch.quantize_per_tensor(x, scale, 10, torch.qint8).int_repr()
    ndiff = _assert_only_tie_differences(x, ours, theirs, torch.tensor(scale, dtype=torch.float32),
                                         10, -128, 127)
    assert ndiff < 1000
    ours_u = ops.quantize(x, 0.05, 128, dtype=torch.uint8)
    theirs_u = torch.quantize_per_tensor(x, 0.05, 128, torch.quint8).int_repr()
    _assert_only_tie_differences(x, ours_u, theirs_u, torch.tensor(0.05, dtype=torch.float32),
                                 128, 0, 255)


def test_matches_torch_quantize_per_channel_except_reciprocal_ties(isa):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(256, 300, generator=g)
    scale = w.abs().amax(dim=1) / 127
    zp = torch.zeros(256, dtype=torch.int64)
    ours = ops.quantize(w, scale, zp, axis=0, dtype=torch.int8)
    theirs = torch.quantize_per_channel(w, scale.double(), zp, 0, torch.qint8).int_repr()
    _assert_only_tie_differences(w, ours, theirs, scale.view(-1, 1), 0, -128, 127)
    # Dequantize is exactly torch's.
    qt = torch.quantize_per_channel(w, scale.double(), zp, 0, torch.qint8)
    assert torch.equal(ops.dequantize(qt.int_repr(), scale, 0, axis=0), qt.dequantize())


def test_dequantize_matches_torch_exactly(isa):
    x = torch.randn(10_000)
    qt = torch.quantize_per_tensor(x, 0.03, 7, torch.quint8)
    assert torch.equal(ops.dequantize(qt.int_repr(), 0.03, 7), qt.dequantize())


# ----------------------------------------------------------------------------- property-based

_floats = st.floats(width=32, allow_nan=False, allow_infinity=True, allow_subnormal=True)


@pytest.mark.parametrize("isa_name", SUPPORTED_ISAS)
@settings(max_examples=150, deadline=None)
@given(x=arrays(np.float32, st.integers(0, 200), elements=_floats),
       scale=st.floats(min_value=float(np.float32(1e-30)), max_value=float(np.float32(1e30)), width=32),
       zp=st.integers(-128, 127), signed=st.booleans())
def test_property_quantize_roundtrip(isa_name, x, scale, zp, signed):
    pyquant.set_isa(isa_name)
    try:
        dtype = torch.int8 if signed else torch.uint8
        zp = zp if signed else zp + 128
        xt = torch.from_numpy(x)
        q = ops.quantize(xt, scale, zp, dtype=dtype)
        assert torch.equal(q, reference.quantize(xt, scale, zp, dtype=dtype))
        assert torch.equal(ops.dequantize(q, scale, zp), reference.dequantize(q, scale, zp))
    finally:
        pyquant.set_isa(SUPPORTED_ISAS[-1])


@pytest.mark.parametrize("isa_name", SUPPORTED_ISAS)
@settings(max_examples=100, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(0, 70)),
                elements=st.floats(width=32, min_value=-1e6, max_value=1e6)),
       signed=st.booleans())
def test_property_dynamic_quantize(isa_name, x, signed):
    pyquant.set_isa(isa_name)
    try:
        dtype = torch.int8 if signed else torch.uint8
        xt = torch.from_numpy(x)
        for axis in (None, 0):
            q, s, z = ops.dynamic_quantize(xt, dtype=dtype, axis=axis)
            rq, rs, rz = reference.dynamic_quantize(xt, dtype=dtype, axis=axis)
            assert torch.equal(q, rq) and torch.equal(s, rs) and torch.equal(z, rz)
    finally:
        pyquant.set_isa(SUPPORTED_ISAS[-1])


# ----------------------------------------------------------------------------- choose_qparams


def test_choose_qparams_minmax():
    x = torch.tensor([-1.0, 0.5, 3.0])
    s, z = ops.choose_qparams(x, dtype=torch.int8, symmetric=True)
    assert s.item() == pytest.approx(3.0 / 127) and z.item() == 0
    s, z = ops.choose_qparams(x, dtype=torch.uint8, symmetric=False)
    assert s.item() == pytest.approx(4.0 / 255)
    assert z.item() == round(1.0 / (4.0 / 255))
    q = ops.quantize(x, s, z, dtype=torch.uint8)
    assert q.min().item() == 0 and q.max().item() == 255


def test_choose_qparams_percentile_clips_outliers():
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    x[0] = 1000.0
    s_minmax, _ = ops.choose_qparams(x)
    s_pct, _ = ops.choose_qparams(x, method="percentile", percentile=99.9)
    assert s_minmax.item() == pytest.approx(1000.0 / 127)
    assert s_pct.item() < 5.0 / 127  # 99.9% of |N(0,1)| lies below 3.3


@pytest.mark.parametrize("axis", [None, 0])
def test_choose_qparams_mse_beats_minmax(axis):
    torch.manual_seed(3)
    # Student-t(3) tails: a few large values set the min/max range, clipping them pays.
    x = torch.distributions.StudentT(3.0).sample((16, 65536))
    errs = {}
    for method in ("minmax", "mse"):
        s, z = ops.choose_qparams(x, axis=axis, method=method)
        y = ops.dequantize(ops.quantize(x, s, z, axis=axis), s, z, axis=axis)
        errs[method] = (y - x).pow(2).sum().item()
    assert errs["mse"] < 0.8 * errs["minmax"]


def test_choose_qparams_per_axis_shapes():
    x = torch.randn(3, 8, 5)
    s, z = ops.choose_qparams(x, axis=1, dtype=torch.uint8, symmetric=False)
    assert s.shape == (8,) and z.shape == (8,) and z.dtype == torch.int32
    lo = x.movedim(1, 0).reshape(8, -1).amin(1).clamp(max=0)
    hi = x.movedim(1, 0).reshape(8, -1).amax(1).clamp(min=0)
    assert torch.allclose(s, (hi - lo) / 255)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.quantize(torch.zeros(4, dtype=torch.float64), 0.1), TypeError, "x must have dtype"),
    (lambda: ops.quantize(torch.zeros(4, dtype=torch.int8), 0.1), TypeError, "x must have dtype"),
    (lambda: ops.quantize([1.0], 0.1), TypeError, "x must be a torch.Tensor"),
    (lambda: ops.quantize(torch.zeros(4), 0.1, dtype=torch.int32), TypeError, "dtype must be"),
    (lambda: ops.quantize(torch.zeros(4, 4).t(), 0.1), ValueError, "x must be contiguous"),
    (lambda: ops.quantize(torch.zeros(4), 0.0), ValueError, "scale must be finite and > 0"),
    (lambda: ops.quantize(torch.zeros(4), -1.0), ValueError, "scale must be finite and > 0"),
    (lambda: ops.quantize(torch.zeros(4), float("nan")), ValueError, "scale must be finite"),
    (lambda: ops.quantize(torch.zeros(4), float("inf")), ValueError, "scale must be finite"),
    (lambda: ops.quantize(torch.zeros(4), 0.1, 128), ValueError, "zero_point must be in"),
    (lambda: ops.quantize(torch.zeros(4), 0.1, -1, dtype=torch.uint8), ValueError, "zero_point"),
    (lambda: ops.quantize(torch.zeros(4), 0.1, 0.5), TypeError, "zero_point must be an int"),
    (lambda: ops.quantize(torch.zeros(4, 3), torch.ones(3)), ValueError, "pass axis="),
    (lambda: ops.quantize(torch.zeros(4, 3), torch.ones(3), axis=2), ValueError, "axis must be in"),
    (lambda: ops.quantize(torch.zeros(4, 3), torch.ones(4), axis=1), ValueError, "scale must be 1-d"),
    (lambda: ops.quantize(torch.zeros(4, 3), torch.ones(3), torch.zeros(2, dtype=torch.int32),
                          axis=1), ValueError, "zero_point must have the scale's shape"),
    (lambda: ops.quantize(torch.zeros(4, 6), torch.ones(4, 2), axis=1, block_size=2), ValueError,
     r"scale must have shape \(4, 3\)"),
    (lambda: ops.quantize(torch.zeros(4, 6), torch.ones(4, 2), axis=1, block_size=3), None, None),
    (lambda: ops.quantize(torch.zeros(4, 6), torch.ones(4, 2), block_size=3), ValueError, "needs axis"),
    (lambda: ops.quantize(torch.zeros(4, 6), torch.ones(4, 2), axis=1, block_size=0), ValueError,
     "block_size must be"),
    (lambda: ops.quantize(torch.zeros(4), 0.1, out=torch.empty(4, dtype=torch.uint8)), TypeError,
     "out must have dtype"),
    (lambda: ops.quantize(torch.zeros(4), 0.1, out=torch.empty(5, dtype=torch.int8)), ValueError,
     "out must have shape"),
    (lambda: ops.dequantize(torch.zeros(4), 0.1), TypeError, "q must have dtype"),
    (lambda: ops.dequantize(torch.zeros(4, dtype=torch.int8), -0.1), ValueError, "scale"),
    (lambda: ops.dynamic_quantize(torch.zeros(4, dtype=torch.float16)), TypeError, "x must have"),
    (lambda: ops.dynamic_quantize(torch.zeros(4, 3), axis=-3), ValueError, "axis must be in"),
    (lambda: ops.choose_qparams(torch.zeros(0)), ValueError, "must not be empty"),
    (lambda: ops.choose_qparams(torch.tensor([1.0, float("nan")])), ValueError, "NaN"),
    (lambda: ops.choose_qparams(torch.zeros(3), method="kl"), ValueError, "method must be"),
    (lambda: ops.choose_qparams(torch.zeros(3), method="percentile", percentile=0), ValueError,
     "percentile must be"),
])
def test_bad_input_raises_clear_error(call, exc, match):
    if exc is None:
        call()
        return
    with pytest.raises(exc, match=match):
        call()


def test_failed_call_does_not_modify_input():
    x = torch.randn(100)
    x[3] = float("nan")
    before = x.clone()
    with pytest.raises(ValueError):
        ops.quantize(x, 0.1)
    assert torch.equal(x.isnan(), before.isnan()) and torch.equal(x.nan_to_num(), before.nan_to_num())


@pytest.mark.parametrize("scale", [0.1, 0.3, 1 / 3, 7e-3, 1e-5, 0.017300001, 3e-39, 1e38, 2.5e37])
def test_values_next_to_rounding_ties_match_true_division(isa, scale):
    # The per-tensor kernels multiply by 1/scale and fall back to the true division near a tie;
    # values at and one ulp either side of (k + 0.5) * scale probe exactly that boundary,
    # including scales whose reciprocal is not a normal float.
    s = torch.tensor(scale, dtype=torch.float32)
    k = torch.arange(-140, 140, dtype=torch.float32)
    ties = (k + 0.5) * s
    x = torch.cat([ties, torch.nextafter(ties, torch.tensor(float("inf"))),
                   torch.nextafter(ties, torch.tensor(float("-inf"))), k * s,
                   torch.randn(4099) * 200 * s]).contiguous()
    for dtype, zp in ((torch.int8, 0), (torch.int8, -7), (torch.uint8, 128)):
        assert torch.equal(ops.quantize(x, s, zp, dtype=dtype),
                           reference.quantize(x, s, zp, dtype=dtype))
