"""int8_matmul (ONNX MatMulInteger) bit-exact against the int64 reference on every ISA path,
including every tile tail and the worst case that breaks vpmaddubsw-based kernels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pyquant
from pyquant import ops, reference

# Rows: 0..5 (the GEMV shapes and the 4-row AVX2 / 6-row AVX-512 tiles), 7, 13 (two tiles + tail),
# 16 (one AMX tile row), 33 (past the few-rows paths; on AMX two tile rows + 1 VNNI row), 48
# (AMX: a 32-row block and a 16-row one).
MS = [0, 1, 2, 3, 4, 5, 6, 7, 13, 16, 33, 48]
# K: odd, below/above the 4-groups, one AMX tile (64) and its tails, past the 512 k-block
# (partial sums kept between blocks).
KS = [1, 3, 4, 5, 31, 64, 65, 130, 513, 1030]
# N: odd, the 8-column AVX2 half, the 16-column panel and its tails, past the 256-column block.
NS = [1, 7, 8, 9, 15, 16, 17, 33, 263]


def _rand(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = (0, 256) if dtype == torch.uint8 else (-128, 128)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.int16).to(dtype)


@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("n", NS)
def test_u8s8_matches_reference_every_tail(isa, m, k, n):
    a = _rand((m, k), torch.uint8, m * 1000 + k)
    b = _rand((k, n), torch.int8, k * 1000 + n)
    za = (m + k) % 256
    out = ops.int8_matmul(a, b, za)
    assert out.dtype == torch.int32 and out.shape == (m, n)
    assert torch.equal(out, reference.int8_matmul(a, b, za))


@pytest.mark.parametrize("a_dtype", [torch.uint8, torch.int8])
@pytest.mark.parametrize("b_dtype", [torch.int8, torch.uint8])
@pytest.mark.parametrize("per_column", [False, True])
def test_dtypes_and_zero_points(isa, a_dtype, b_dtype, per_column):
    m, k, n = 11, 77, 45
    a, b = _rand((m, k), a_dtype, 1), _rand((k, n), b_dtype, 2)
    za = 17 if a_dtype == torch.uint8 else -9
    if per_column:
        zb = _rand((n,), b_dtype, 3)
    else:
        zb = 200 if b_dtype == torch.uint8 else -100
    out = ops.int8_matmul(a, b, za, zb)
    assert torch.equal(out, reference.int8_matmul(a, b, za, zb))


# 16, 32 and 50 rows reach the AMX tiles (fewer rows go to the VNNI kernel there).
@pytest.mark.parametrize("m", [1, 3, 4, 6, 9, 16, 32, 50])
@pytest.mark.parametrize("b_value", [-128, 127])
def test_worst_case_no_int16_saturation(isa, m, b_value):
    # 255 * -128 * 2 = -65280 saturates an int16 pair sum (vpmaddubsw); every path must be exact.
    k, n = 2048, 40
    a = torch.full((m, k), 255, dtype=torch.uint8)
    b = torch.full((k, n), b_value, dtype=torch.int8)
    out = ops.int8_matmul(a, b)
    assert torch.all(out == 255 * b_value * k)
    # Alternating signs inside every pair and quad.
    b2 = b.clone()
    b2[1::2] = -128 if b_value == 127 else 127
    assert torch.equal(ops.int8_matmul(a, b2), reference.int8_matmul(a, b2))


@pytest.mark.parametrize("m", [67, 160])
def test_large_multithreaded(isa, threads, m):
    a = _rand((m, 1100), torch.uint8, 5)
    b = _rand((1100, 300), torch.int8, 6)
    assert torch.equal(ops.int8_matmul(a, b, 128), reference.int8_matmul(a, b, 128))


@settings(max_examples=40, deadline=None)
@given(m=st.integers(0, 9), k=st.integers(1, 70), n=st.integers(1, 40), za=st.integers(0, 255),
       zb=st.integers(-128, 127), seed=st.integers(0, 2**31 - 1))
def test_hypothesis_matches_reference(m, k, n, za, zb, seed):
    a, b = _rand((m, k), torch.uint8, seed), _rand((k, n), torch.int8, seed + 1)
    assert torch.equal(ops.int8_matmul(a, b, za, zb), reference.int8_matmul(a, b, za, zb))


def test_matches_torch_int_mm():
    a = _rand((32, 64), torch.int8, 7)
    b = _rand((64, 32), torch.int8, 8)
    assert torch.equal(ops.int8_matmul(a, b), torch._int_mm(a, b))


def test_numpy_inputs_and_out():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    b = np.ones((4, 2), dtype=np.int8)
    out = torch.empty(3, 2, dtype=torch.int32)
    r = ops.int8_matmul(a, b, out=out)
    assert r is out and torch.equal(out, torch.tensor([[6, 6], [22, 22], [38, 38]], dtype=torch.int32))


def test_pack_unpack_roundtrip():
    w = _rand((37, 23), torch.int8, 9)
    packed, col_sum = ops.pack_int8_weight(w)
    assert torch.equal(ops.unpack_int8_weight(packed, 23, 37), w)
    assert torch.equal(col_sum[:37], w.to(torch.int32).sum(dim=1))
    assert torch.all(col_sum[37:] == 0)


def test_validation():
    a = torch.zeros(2, 3, dtype=torch.uint8)
    with pytest.raises(TypeError, match="a must have dtype"):
        ops.int8_matmul(a.float(), torch.zeros(3, 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="rows"):
        ops.int8_matmul(a, torch.zeros(4, 2, dtype=torch.int8))
    with pytest.raises(ValueError, match="a_zero_point"):
        ops.int8_matmul(a, torch.zeros(3, 2, dtype=torch.int8), a_zero_point=300)
    with pytest.raises(ValueError, match="b_zero_point"):
        ops.int8_matmul(a, torch.zeros(3, 2, dtype=torch.int8), b_zero_point=torch.zeros(5, dtype=torch.int32))
    with pytest.raises(ValueError, match="contiguous"):
        ops.int8_matmul(torch.zeros(3, 2, dtype=torch.uint8).t(), torch.zeros(3, 2, dtype=torch.int8))


def test_kernel_names_in_cpu_info(isa):
    assert pyquant.cpu_info()["kernels"]["qu8qs8_gemm"] == f"qu8qs8_gemm__{isa}"


# Up to 32 rows the SIMD kernels sweep one column tile at a time, above it blocks of columns
# (256 on AVX2; on VNNI ~768 KB of B, so N = 800 at K = 2051 spans two blocks of 720).
@pytest.mark.parametrize("m", [1, 3, 4, 5, 9, 32, 33, 45])
@pytest.mark.parametrize("k", [1, 5, 1030, 2051])
@pytest.mark.parametrize("n", [1, 9, 16, 17, 270, 800])
def test_7bit_activation_kernel_matches_reference(isa, m, k, n):
    # Activations <= 128 route to qu7qs8_gemm (vpmaddubsw on AVX2): same results required.
    a = torch.randint(0, 129, (m, k), generator=torch.Generator().manual_seed(k), dtype=torch.int16).to(torch.uint8)
    b = _rand((k, n), torch.int8, n)
    assert torch.equal(ops.int8_matmul(a, b, 64, 3), reference.int8_matmul(a, b, 64, 3))


@pytest.mark.parametrize("a_value", [127, 128])
@pytest.mark.parametrize("b_value", [-128, 127])
def test_7bit_worst_case_no_saturation(isa, a_value, b_value):
    # 128 * -128 * 2 = -32768 is the extreme vpmaddubsw pair sum the 7-bit kernel relies on.
    k, n = 4100, 24
    a = torch.full((5, k), a_value, dtype=torch.uint8)
    b = torch.full((k, n), b_value, dtype=torch.int8)
    assert torch.all(ops.int8_matmul(a, b) == a_value * b_value * k)
    b2 = b.clone()
    b2[1::2] = -128 if b_value == 127 else 127
    assert torch.equal(ops.int8_matmul(a, b2), reference.int8_matmul(a, b2))
