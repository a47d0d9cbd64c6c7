"""Property-based tests (hypothesis) of the ops not covered next to their own tests, on every ISA
path this CPU supports and on 1 and 2 threads: random shapes across the kernels' tile and block
tails, and values with +-0, subnormals, huge and tiny magnitudes and ties, each result compared
with pyquant.reference (bit-exact for integer results, a stated bound for float sums).

The per-tensor quantize / dynamic quantize, top-k and mask properties live in test_ops_quantize.py
and test_ops_topk.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import pyquant
from pyquant import ops
from pyquant import reference as R
from pyquant.nn import QuantLinear

ISAS = pyquant.supported_isas()

# Finite float32 with the awkward values drawn often: signed zeros, subnormals, the extremes.
_special = st.sampled_from([0.0, -0.0, 1e-45, -1e-45, 1.2e-38, 3.0e38, -3.0e38, 0.5, -0.5, 1.0])
_finite = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True) | _special
# Moderate magnitudes for float sums (products of huge values overflow any implementation).
_moderate = st.floats(width=32, min_value=-1e4, max_value=1e4, allow_subnormal=True) | _special.filter(
    lambda v: abs(v) <= 1e4)


def _on(isa_name: str, nthreads: int):
    pyquant.set_isa(isa_name)
    pyquant.set_num_threads(nthreads)


@pytest.fixture(autouse=True)
def _restore():
    threads = pyquant.get_num_threads()
    yield
    pyquant.set_isa(ISAS[-1])
    pyquant.set_num_threads(threads)


# ----------------------------------------------------------------------------- int8_matmul


@settings(max_examples=60, deadline=None)
@given(m=st.integers(0, 40), k=st.integers(1, 300), n=st.integers(1, 40),
       a_signed=st.booleans(), seven_bit=st.booleans(), extreme=st.booleans(),
       per_column=st.booleans(), seed=st.integers(0, 2**31 - 1),
       isa_name=st.sampled_from(ISAS), nthreads=st.sampled_from([1, 2]))
def test_int8_matmul_every_isa(m, k, n, a_signed, seven_bit, extreme, per_column, seed, isa_name,
                               nthreads):
    # Up to 40 rows reaches both AVX2 regimes (<= 32 rows: one panel at a time), 300 columns of
    # K the 4-quad tails; `extreme` fills with the saturating corners (255 / -128 / 127).
    _on(isa_name, nthreads)
    g = torch.Generator().manual_seed(seed)
    if a_signed:
        a = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int16).to(torch.int8)
        za = int(torch.randint(-128, 128, (), generator=g))
    else:
        hi = 129 if seven_bit else 256  # <= 128 takes the 7-bit kernel
        a = torch.randint(0, hi, (m, k), generator=g, dtype=torch.int16).to(torch.uint8)
        za = int(torch.randint(0, 256, (), generator=g))
    b = torch.randint(-128, 128, (k, n), generator=g, dtype=torch.int16).to(torch.int8)
    if extreme:
        a = torch.full_like(a, -128 if a_signed else (128 if seven_bit else 255))
        b = torch.where(torch.rand(k, n, generator=g) < 0.5, -128, 127).to(torch.int8)
    zb = (torch.randint(-128, 128, (n,), generator=g, dtype=torch.int32) if per_column
          else int(torch.randint(-128, 128, (), generator=g)))
    assert torch.equal(ops.int8_matmul(a, b, za, zb), R.int8_matmul(a, b, za, zb))


# ----------------------------------------------------------------------------- per-channel


@settings(max_examples=80, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(0, 70)), elements=_finite),
       scales=arrays(np.float32, 6, elements=st.floats(min_value=float(np.float32(1e-30)), max_value=float(np.float32(1e30)), width=32)),
       zps=arrays(np.int32, 6, elements=st.integers(-128, 127)),
       signed=st.booleans(), isa_name=st.sampled_from(ISAS))
def test_per_channel_quantize_dequantize(x, scales, zps, signed, isa_name):
    _on(isa_name, 1)
    xt = torch.from_numpy(x)
    rows = xt.shape[0]
    scale = torch.from_numpy(scales[:rows].copy())
    zp = torch.from_numpy(zps[:rows].copy())
    dtype = torch.int8 if signed else torch.uint8
    if not signed:
        zp = zp + 128
    q = ops.quantize(xt, scale, zp, axis=0, dtype=dtype)
    assert torch.equal(q, R.quantize(xt, scale, zp, axis=0, dtype=dtype))
    assert torch.equal(ops.dequantize(q, scale, zp, axis=0), R.dequantize(q, scale, zp, axis=0))


# ----------------------------------------------------------------------------- sparse


def _pruned(w: np.ndarray, keep: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(keep, w, np.float32(0.0)).astype(np.float32))


@st.composite
def _sparse_case(draw):
    m = draw(st.integers(1, 40))
    n = draw(st.integers(1, 24))
    k = draw(st.integers(1, 90))
    w = draw(arrays(np.float32, (n, k), elements=_moderate))
    keep = draw(arrays(np.bool_, (n, k)))
    x = draw(arrays(np.float32, (m, k), elements=_moderate))
    k_block = draw(st.sampled_from([None, 8, 16, 40]))
    return torch.from_numpy(x), _pruned(w, keep), k_block


@settings(max_examples=60, deadline=None)
@given(case=_sparse_case(), isa_name=st.sampled_from(ISAS), nthreads=st.sampled_from([1, 2]),
       with_bias=st.booleans())
def test_sparse_linear_f32_and_int8_accumulators(case, isa_name, nthreads, with_bias):
    _on(isa_name, nthreads)
    x, w, k_block = case
    b = torch.linspace(-2, 2, w.shape[0]) if with_bias else None
    p = ops.sparse_pack(w, k_block=k_block)
    y = ops.sparse_linear(x, p, b)
    # fp32: within 1e-5 of sum |x||w| (a reordered float32 sum), bias on top.
    ref = R.sparse_linear(x, w, b).to(torch.float64)
    bound = 1e-5 * (x.abs().double() @ w.abs().double().T) + 1e-5 * (b.abs().double() if b is not None else 0)
    assert bool(((y.double() - ref).abs() <= bound + 1e-30).all())
    # int8: the integer accumulators are exact.
    q = ops.sparse_pack(w, dtype=torch.int8, k_block=k_block)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    g = torch.Generator().manual_seed(x.numel())
    xq = torch.randint(0, 256, x.shape, generator=g, dtype=torch.int16).to(torch.uint8)
    zp = torch.randint(0, 256, (x.shape[0],), generator=g, dtype=torch.int32)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(), R.sparse_q8_accumulate(xq, zp, wq))


# ----------------------------------------------------------------------------- QuantLinear


@st.composite
def _linear_input(draw):
    m, k = draw(st.integers(0, 40)), draw(st.integers(1, 100))
    return torch.from_numpy(draw(arrays(np.float32, (m, k), elements=_moderate)))


@settings(max_examples=60, deadline=None)
@given(x=_linear_input(), n=st.integers(1, 40),
       act=st.sampled_from(["per_row", "per_row7", "per_tensor", "static"]),
       seed=st.integers(0, 2**31 - 1), isa_name=st.sampled_from(ISAS),
       nthreads=st.sampled_from([1, 2]))
def test_quant_linear_matches_reference(x, n, act, seed, isa_name, nthreads):
    _on(isa_name, nthreads)
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], n)
    config = (pyquant.Int8StaticConfig() if act == "static"
              else pyquant.Int8DynamicConfig(act=act))
    kw = dict(input_scale=0.05, input_zero_point=128) if act == "static" else {}
    q = QuantLinear.from_float(lin, config, **kw)
    extra = (dict(static_scale=float(q.input_scale), static_zero_point=int(q.input_zero_point))
             if act == "static" else {})
    want = R.quant_linear(x, q.weight_int8(), q.weight_scales(), q.bias_values(), act=act, **extra)
    assert torch.equal(q(x), want)


# ----------------------------------------------------------------------------- blocked quantize


@settings(max_examples=80, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 70), block=st.integers(1, 33),
       values=arrays(np.float32, 5 * 70, elements=_finite), signed=st.booleans(),
       seed=st.integers(0, 2**31 - 1), isa_name=st.sampled_from(ISAS))
def test_blocked_quantize_dequantize(rows, cols, block, values, signed, seed, isa_name):
    # Blocks along the last axis, the last one ragged (cols % block), scales from 1e-30 to 1e30.
    _on(isa_name, 1)
    x = torch.from_numpy(values[: rows * cols].copy()).reshape(rows, cols)
    g = torch.Generator().manual_seed(seed)
    nb = -(-cols // block)
    scale = torch.exp(torch.empty(rows, nb).uniform_(-69, 69, generator=g)).to(torch.float32)
    dtype = torch.int8 if signed else torch.uint8
    lo, hi = (-128, 128) if signed else (0, 256)
    zp = torch.randint(lo, hi, (rows, nb), generator=g, dtype=torch.int32)
    q = ops.quantize(x, scale, zp, axis=1, block_size=block, dtype=dtype)
    assert torch.equal(q, R.quantize(x, scale, zp, axis=1, block_size=block, dtype=dtype))
    assert torch.equal(ops.dequantize(q, scale, zp, axis=1, block_size=block),
                       R.dequantize(q, scale, zp, axis=1, block_size=block))


# ----------------------------------------------------------------------------- weight packing


def _pack_reference(b_kn: torch.Tensor):
    """The documented layout (csrc/include/pyquant/gemm.h) written out: B [K, N] as int8."""
    k, n = b_kn.shape
    kp, np_ = -(-k // 4) * 4, -(-n // 16) * 16
    padded = torch.zeros(kp, np_, dtype=torch.int8)
    padded[:k, :n] = b_kn
    # data[p * Kp * 16 + g * 64 + c * 4 + j] = B(4g + j, 16p + c)
    packed = padded.reshape(kp // 4, 4, np_ // 16, 16).permute(2, 0, 3, 1).reshape(-1)
    return packed, padded.to(torch.int32).sum(0)


@settings(max_examples=80, deadline=None)
@given(k=st.integers(1, 90), n=st.integers(1, 70), unsigned=st.booleans(),
       transposed=st.booleans(), seed=st.integers(0, 2**31 - 1), nthreads=st.sampled_from([1, 2]))
def test_pack_int8_weight_layout(k, n, unsigned, transposed, seed, nthreads):
    # The 4 x 16 SSE2 blocks, the ragged K and N edges and the panel split over threads.
    _on(ISAS[-1], nthreads)
    g = torch.Generator().manual_seed(seed)
    dtype = torch.uint8 if unsigned else torch.int8
    lo, hi = (0, 256) if unsigned else (-128, 128)
    b = torch.randint(lo, hi, (k, n), generator=g, dtype=torch.int16).to(dtype)
    packed, col_sum = ops.pack_int8_weight(b.T.contiguous() if transposed else b,
                                           transposed=transposed)
    signed = (b.to(torch.int16) - 128).to(torch.int8) if unsigned else b  # stored shifted
    want_packed, want_sum = _pack_reference(signed)
    assert torch.equal(packed, want_packed)
    assert torch.equal(col_sum, want_sum)


# ----------------------------------------------------------------------------- global pruning


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=4),
       values=arrays(np.float32, 1200, elements=_finite | st.sampled_from([0.25, -0.25])),
       frac=st.floats(0.0, 1.0), isa_name=st.sampled_from(ISAS), nthreads=st.sampled_from([1, 2]))
def test_global_prune_of_a_list(sizes, values, frac, isa_name, nthreads):
    # Several tensors pruned together (global magnitude pruning): exact count, ties in order.
    _on(isa_name, nthreads)
    ts, pos = [], 0
    for s in sizes:
        ts.append(torch.from_numpy(values[pos:pos + s].copy()))
        pos += s
    total = sum(sizes)
    pruned = ops.pruning_count(frac, total)  # round(amount * n), torch.nn.utils.prune's count
    masks = R.magnitude_mask([t.clone() for t in ts], total - pruned)
    kept = ops.magnitude_prune_tensors_(ts, frac)
    assert kept == [int(m.sum()) for m in masks]
    for t, m, src in zip(ts, masks, np.split(values[:total], np.cumsum(sizes)[:-1])):
        want = torch.where(m, torch.from_numpy(src.copy()), torch.zeros(()))
        assert torch.equal(t, want)


# ----------------------------------------------------------------------------- choose_qparams


@settings(max_examples=80, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 80)), elements=_moderate),
       signed=st.booleans(), per_row=st.booleans(),
       method=st.sampled_from(["minmax", "percentile", "mse"]), isa_name=st.sampled_from(ISAS))
def test_choose_qparams_properties(x, signed, per_row, method, isa_name):
    # minmax equals the dynamic-quantization rule (symmetric int8, ONNX-asymmetric uint8);
    # every method gives finite scales > 0 and zero points in range; mse's squared error is never
    # above minmax's (the full range is among its candidates).
    _on(isa_name, 1)
    xt = torch.from_numpy(x)
    dtype = torch.int8 if signed else torch.uint8
    axis = 0 if per_row else None
    s, z = ops.choose_qparams(xt, dtype=dtype, symmetric=signed, axis=axis, method=method)
    assert bool(torch.isfinite(s).all() & (s > 0).all())
    lo, hi = (-128, 127) if signed else (0, 255)
    assert bool(((z >= lo) & (z <= hi)).all())
    if method == "minmax":
        mn = xt.amin(dim=1) if per_row else xt.min()
        mx = xt.amax(dim=1) if per_row else xt.max()
        rs, rz = R.dynamic_qparams(mn, mx, dtype)
        assert torch.equal(s, rs.reshape(s.shape)) and torch.equal(z, rz.reshape(z.shape))
    if method == "mse":
        def err(scale, zp):
            q = ops.quantize(xt, scale, zp, axis=axis, dtype=dtype)
            return float((ops.dequantize(q, scale, zp, axis=axis).double() - xt.double()).pow(2).sum())
        ms, mz = ops.choose_qparams(xt, dtype=dtype, symmetric=signed, axis=axis, method="minmax")
        assert err(s, z) <= err(ms, mz) * (1 + 1e-6) + 1e-30
