"""topk_threshold / magnitude_mask / magnitude_prune_tensors_ against torch and the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.nn.utils import prune as tprune

import pyquant
from pyquant import ops
from pyquant import reference as R

SIZES = [1, 2, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 4099]
# Above 2^20 elements the op takes its sampled one-pass route; below, the two-pass radix.
BIG = (1 << 20) + 37


def kth_torch(x: torch.Tensor, k: int) -> float:
    a = x.reshape(-1).abs()
    return float(torch.kthvalue(a, a.numel() - k + 1).values)


def ks_for(n):
    return sorted({k for k in (1, 2, n // 10, n // 2, n - 1, n) if 1 <= k <= n})


@pytest.mark.parametrize("n", SIZES)
def test_threshold_matches_kthvalue(isa, threads, n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g)
    for k in ks_for(n):
        assert ops.topk_threshold(x, k) == kth_torch(x, k)


@pytest.mark.parametrize("kind", ["randn", "sorted", "scaled", "few_values", "zeros_70pct"])
def test_threshold_large_both_routes(isa, threads, kind):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BIG, generator=g)
    if kind == "sorted":  # one task holds all candidates: exercises the fallback with 2 threads
        x = torch.sort(x).values
    elif kind == "scaled":  # magnitudes over 12 decades
        x = x * torch.logspace(-6, 6, BIG)
    elif kind == "few_values":  # heavy ties: candidate buffer overflows -> exact radix
        x = torch.randint(-3, 4, (BIG,), generator=g).float()
    elif kind == "zeros_70pct":
        x = torch.where(torch.rand(BIG, generator=g) < 0.7, torch.zeros(()), x)
    for k in [1, BIG // 10, BIG // 2, BIG - 5, BIG]:
        assert ops.topk_threshold(x, k) == kth_torch(x, k), k
    for amount in (0.1, 0.5, 0.9):
        m = ops.magnitude_mask(x, amount)
        assert int(m.sum()) == BIG - round(amount * BIG)
        assert torch.equal(m, R.magnitude_mask(x, BIG - round(amount * BIG)))


def test_threshold_global_list_no_concat(isa, threads):
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(37, 5, generator=g), torch.empty(0), torch.randn(1, generator=g),
          torch.randn(4096, generator=g) * 3, torch.empty(0, 4)]
    cat = torch.cat([t.reshape(-1) for t in xs])
    n = cat.numel()
    for k in ks_for(n):
        assert ops.topk_threshold(xs, k) == kth_torch(cat, k)
    assert ops.topk_threshold(tuple(xs), 5) == kth_torch(cat, 5)


def test_threshold_edge_k(isa):
    x = torch.tensor([-3.0, 1.0, 2.0, -0.5])
    assert ops.topk_threshold(x, 0) == math.inf
    assert ops.topk_threshold(x, 4) == 0.5
    assert ops.topk_threshold(x, 1) == 3.0
    assert ops.topk_threshold(torch.tensor([-7.25]), 1) == 7.25
    assert ops.topk_threshold([], 0) == math.inf
    assert ops.topk_threshold(torch.empty(0), 0) == math.inf
    with pytest.raises(ValueError, match="k must be in"):
        ops.topk_threshold([], 1)
    with pytest.raises(ValueError, match="k must be in"):
        ops.topk_threshold(x, 5)
    with pytest.raises(ValueError, match="k must be in"):
        ops.topk_threshold(x, -1)
    with pytest.raises(TypeError, match="k must be an int"):
        ops.topk_threshold(x, 1.0)


def test_threshold_numpy_and_nd(isa):
    a = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    assert ops.topk_threshold(a, 7) == kth_torch(torch.from_numpy(a), 7)


@pytest.mark.parametrize("n", [1, 9, 33, 5000, BIG])
def test_inf_raises(isa, threads, n):
    # A weight holding +-Inf is broken; ranking it would hide that (issue 3: NaN/Inf -> ValueError).
    for bad in (math.inf, -math.inf):
        x = torch.randn(n)
        x[n // 2] = bad
        before = x.clone()
        with pytest.raises(ValueError, match="NaN or Inf"):
            ops.topk_threshold(x, 1)
        with pytest.raises(ValueError, match="NaN or Inf"):
            ops.magnitude_mask([torch.randn(7), x], 0.5)
        assert torch.equal(x, before)


@pytest.mark.parametrize("n", [1, 9, 33, 5000, BIG])
def test_nan_raises(isa, threads, n):
    x = torch.randn(n)
    x[n // 2] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        ops.topk_threshold(x, 1)
    with pytest.raises(ValueError, match="NaN"):
        ops.topk_threshold(x, 0)  # checked whatever k is
    with pytest.raises(ValueError, match="NaN"):
        ops.magnitude_mask([torch.randn(10), x], 0.5)
    y = x.clone()
    with pytest.raises(ValueError, match="NaN"):
        ops.magnitude_prune_tensors_(y, 0.5)
    assert torch.equal(y.isnan(), x.isnan()) and torch.equal(y[~y.isnan()], x[~x.isnan()]), \
        "a failed prune must not modify x"


def test_type_and_value_errors():
    with pytest.raises(TypeError, match="float32"):
        ops.topk_threshold(torch.randn(4, dtype=torch.float64), 1)
    with pytest.raises(TypeError, match="mixes dtypes"):
        ops.topk_threshold([torch.randn(4), torch.randn(4, dtype=torch.float64)], 1)
    with pytest.raises(TypeError, match="mixes devices"):
        ops.topk_threshold([torch.randn(4), torch.empty(4, device="meta")], 1)
    with pytest.raises(TypeError, match="mixes devices"):
        ops.magnitude_mask([torch.randn(4), torch.empty(4, device="meta")], 0.5)
    with pytest.raises(ValueError, match="contiguous"):
        ops.topk_threshold(torch.randn(4, 4).t(), 1)
    with pytest.raises(TypeError, match="torch.Tensor or numpy"):
        ops.topk_threshold([[1.0, 2.0]], 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ops.magnitude_mask(torch.randn(4), 1.5)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        ops.magnitude_mask(torch.randn(4), 5)
    with pytest.raises(TypeError, match="amount"):
        ops.magnitude_mask(torch.randn(4), True)


@pytest.mark.parametrize("n", [10, 11, 101, 1000])
@pytest.mark.parametrize("amount", [0.0, 0.05, 0.25, 0.35, 0.5, 0.95, 1.0, 0, 3, 10])
def test_pruning_count_matches_torch(n, amount):
    if isinstance(amount, int) and amount > n:
        return
    assert ops.pruning_count(amount, n) == tprune._compute_nparams_toprune(amount, n)


@pytest.mark.parametrize("amount", [0.0, 0.1, 0.5, 0.83, 1.0, 7])
def test_mask_equals_torch_l1_unstructured(isa, threads, amount):
    w = torch.randn(64, 33, generator=torch.Generator().manual_seed(5))
    assert w.abs().unique().numel() == w.numel()  # no ties: torch's mask is unique
    lin = torch.nn.Linear(33, 64)
    with torch.no_grad():
        lin.weight.copy_(w)
    tprune.l1_unstructured(lin, "weight", amount)
    assert torch.equal(ops.magnitude_mask(w, amount), lin.weight_mask.bool())


@pytest.mark.parametrize("amount", [0.2, 0.9, 100])
def test_list_mask_equals_torch_global_unstructured(isa, threads, amount):
    g = torch.Generator().manual_seed(6)
    layers = [torch.nn.Linear(17, 9), torch.nn.Linear(64, 31), torch.nn.Conv2d(3, 5, 3)]
    with torch.no_grad():
        for i, m in enumerate(layers):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (i + 1))
    ws = [m.weight.detach().clone() for m in layers]
    tprune.global_unstructured([(m, "weight") for m in layers],
                               pruning_method=tprune.L1Unstructured, amount=amount)
    masks = ops.magnitude_mask(ws, amount)
    for m, mk, w in zip(layers, masks, ws):
        assert mk.shape == w.shape and mk.dtype == torch.bool
        assert torch.equal(mk, m.weight_mask.bool())


@pytest.mark.parametrize("case", ["all_equal", "all_zero", "pm_zero", "many_zeros", "two_values"])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 70001])
def test_exact_counts_under_ties(isa, threads, case, n):
    g = torch.Generator().manual_seed(n)
    if case == "all_equal":
        x = torch.full((n,), -1.5)
        x[::3] = 1.5
    elif case == "all_zero":
        x = torch.zeros(n)
    elif case == "pm_zero":
        x = torch.where(torch.rand(n, generator=g) < 0.5, -0.0, 0.0)
    elif case == "many_zeros":
        x = torch.where(torch.rand(n, generator=g) < 0.8, torch.zeros(()), torch.randn(n, generator=g))
    else:
        x = torch.where(torch.rand(n, generator=g) < 0.5, 2.0, -1.0)
    for amount in (0.0, 0.3, 0.5, 0.77, 1.0):
        keep = n - round(amount * n)
        m = ops.magnitude_mask(x, amount)
        assert int(m.sum()) == keep
        assert torch.equal(m, R.magnitude_mask(x, keep))  # ties kept in index order
        y = x.clone()
        kept = ops.magnitude_prune_tensors_(y, amount)
        assert kept == [keep]
        assert torch.equal(y, torch.where(m, x, torch.zeros(())))


def test_prune_tensors_in_place_global(isa, threads):
    g = torch.Generator().manual_seed(8)
    xs = [torch.randn(100, 7, generator=g), torch.randn(3, generator=g), torch.randn(999, generator=g)]
    masks = ops.magnitude_mask(xs, 0.6)
    ys = [x.clone() for x in xs]
    kept = ops.magnitude_prune_tensors_(ys, 0.6)
    assert kept == [int(m.sum()) for m in masks]
    for x, y, m in zip(xs, ys, masks):
        assert torch.equal(y, torch.where(m, x, torch.zeros(())))


@settings(max_examples=200, deadline=None)
@given(
    x=arrays(np.float32, st.integers(0, 300),
             elements=st.floats(width=32, allow_nan=False, allow_infinity=False,
                                allow_subnormal=True) | st.sampled_from([0.0, -0.0, 1e-45, 3.0])),
    frac=st.floats(0.0, 1.0),
    isa_name=st.sampled_from(pyquant.supported_isas()),
    nthreads=st.sampled_from([1, 2]),
)
def test_property_matches_reference(x, frac, isa_name, nthreads):
    pyquant.set_isa(isa_name)
    pyquant.set_num_threads(nthreads)
    try:
        t = torch.from_numpy(x)
        n = t.numel()
        k = int(round(frac * n))
        expected = math.inf if k == 0 else kth_torch(t, k)
        assert ops.topk_threshold(t, k) == expected
        m = ops.magnitude_mask(t, n - k)
        assert torch.equal(m, R.magnitude_mask(t, k))
        if k:  # the threshold semantics: at least k at or above, fewer than k strictly above
            a = t.abs()
            assert int((a >= expected).sum()) >= k > int((a > expected).sum())
    finally:
        pyquant.set_isa(pyquant.supported_isas()[-1])
        pyquant.set_num_threads(1)


def test_sample_that_misses_falls_back_exactly(isa, threads):
    # Zero exactly the blocks the one-pass route samples (256 blocks of 256 elements spread
    # over x): its bracket then predicts a threshold of 0 and misses; the exact radix select
    # must take over and give the same answers.
    n = BIG
    x = torch.randn(n, generator=torch.Generator().manual_seed(11))
    for b in range(256):
        start = b * (n - 256) // 255
        x[start:start + 256] = 0.0
    for k in [1, n // 3, n - 70000, n]:
        assert ops.topk_threshold(x, k) == kth_torch(x, k)
    m = ops.magnitude_mask([x[: n // 2], x[n // 2:]], 0.5)
    assert torch.equal(torch.cat(m), R.magnitude_mask(x, n - round(0.5 * n)))


def test_mask_out_buffers(isa):
    g = torch.Generator().manual_seed(12)
    xs = [torch.randn(10, 3, generator=g), torch.randn(50, generator=g)]
    outs = [torch.ones(10, 3, dtype=torch.bool), torch.ones(50, dtype=torch.bool)]
    res = ops.magnitude_mask(xs, 0.7, out=outs)
    assert res[0] is outs[0] and res[1] is outs[1]
    expected = ops.magnitude_mask(xs, 0.7)
    assert all(torch.equal(a, b) for a, b in zip(outs, expected))
    one = torch.zeros(50, dtype=torch.bool)
    assert ops.magnitude_mask(xs[1], 10, out=one) is one and int(one.sum()) == 40
    with pytest.raises(TypeError, match="out"):
        ops.magnitude_mask(xs[1], 10, out=torch.zeros(50, dtype=torch.uint8))
    with pytest.raises(ValueError, match="out must have 50"):
        ops.magnitude_mask(xs[1], 10, out=torch.zeros(49, dtype=torch.bool))
    with pytest.raises(ValueError, match="out must hold 2"):
        ops.magnitude_mask(xs, 10, out=[outs[0]])
