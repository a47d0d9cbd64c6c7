"""sparse_pack / sparse_linear / sparse_q8_accumulate against pyquant.reference on every ISA."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch

import pyquant
from pyquant import ops, prune
from pyquant import reference as R


def _pruned(n, k, sparsity, seed=0, empty_row=True, dense_row=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    w[torch.rand(n, k, generator=g) < sparsity] = 0.0
    if empty_row and n > 2:
        w[1] = 0.0
    if dense_row and n > 3:
        w[2] = torch.randn(k, generator=g)  # 100% dense row
    return w


def _assert_close_f32(y, x, w, b):
    """fp32 tolerance: 1e-5 of sum |x||w| (the scale of a reordered float32 sum's error)."""
    ref = R.sparse_linear(x, w, b)
    bound = 1e-5 * (x.abs().to(torch.float64) @ w.abs().to(torch.float64).T)
    if b is not None:
        bound = bound + 1e-5 * b.abs().to(torch.float64)
    err = (y.to(torch.float64) - ref.to(torch.float64)).abs()
    assert bool((err <= bound + 1e-12).all()), float((err - bound).max())


SHAPES = [(1, 1), (13, 17), (37, 53), (64, 300), (9, 2500)]
# 64, 65, 97, 130: several 32-column panels and their tails.
MS = list(range(1, 10)) + [31, 32, 33, 64, 65, 70, 97, 130]


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("m", MS)
def test_f32_matches_reference(isa, n, k, m):
    w = _pruned(n, k, 0.8, seed=n * 31 + k)
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, k, generator=g)
    b = torch.randn(n, generator=g)
    p = ops.sparse_pack(w)
    _assert_close_f32(ops.sparse_linear(x, p, b), x, w, b)
    _assert_close_f32(ops.sparse_linear(x, p), x, w, None)


# 50%: M >= 64 runs 64-column panels (weights >= 1/6 dense); 90%: 32-column ones only.
@pytest.mark.parametrize("sparsity", [0.5, 0.9])
@pytest.mark.parametrize("m", [1, 5, 33, 64, 150])
def test_f32_threads_and_blocks(isa, threads, m, sparsity):
    w = _pruned(301, 777, sparsity, seed=3)
    x = torch.randn(m, 777)
    b = torch.randn(301)
    plain = ops.sparse_pack(w, k_block=None)
    blocked = ops.sparse_pack(w, k_block=64)
    assert blocked.num_blocks == 13 and plain.num_blocks == 1
    _assert_close_f32(ops.sparse_linear(x, plain, b), x, w, b)
    _assert_close_f32(ops.sparse_linear(x, blocked, b), x, w, b)


def _assert_mm_close(y, w, b):
    """sparse_mm against W @ b in float64, the bound of _assert_close_f32."""
    ref = w.to(torch.float64) @ b.to(torch.float64)
    bound = 1e-5 * (w.abs().to(torch.float64) @ b.abs().to(torch.float64))
    assert y.shape == ref.shape
    assert bool(((y.to(torch.float64) - ref).abs() <= bound + 1e-12).all())


# b is the panel at 8, 32 and 64 (at 50%, one 64-column panel); the others copy 32-column slabs
# (64-column ones at 50%) of b. y is the kernel's tile in place except for a last panel of
# a width that is not a multiple of 8 (M = 2, 7, 31, 33, 65, 97), which goes through a tile.
@pytest.mark.parametrize("sparsity", [0.5, 0.85])
@pytest.mark.parametrize("m", [0, 1, 2, 7, 8, 31, 32, 33, 40, 64, 65, 97, 128])
@pytest.mark.parametrize("k_block", [None, 24])
def test_sparse_mm_matches_dense(isa, threads, m, k_block, sparsity):
    w = _pruned(301, 203, sparsity, seed=m)
    b = torch.randn(203, m, generator=torch.Generator().manual_seed(m))
    p = ops.sparse_pack(w, k_block=k_block)
    _assert_mm_close(ops.sparse_mm(p, b), w, b)
    out = torch.full((301, m), float("nan"))
    assert ops.sparse_mm(p, b, out=out) is out  # every element written, no NaN left
    _assert_mm_close(out, w, b)
    if m:  # the op torch.sparse.mm defines, on the same weight
        torch.testing.assert_close(out, torch.sparse.mm(w.to_sparse_csr(), b),
                                   rtol=1e-5, atol=1e-5)


# A b whose rows do not start on cache lines (a view 4 floats into a buffer) is copied into
# the panel rather than used in place (M = 32, and 64 with 64-column panels at 50%).
@pytest.mark.parametrize("sparsity", [0.5, 0.85])
@pytest.mark.parametrize("m", [8, 32, 64])
def test_sparse_mm_b_off_cache_lines(isa, threads, m, sparsity):
    w = _pruned(301, 203, sparsity, seed=m)
    buf = torch.randn(203 * m + 4, generator=torch.Generator().manual_seed(m))
    b = buf[4:].view(203, m)
    assert b.data_ptr() % 64 != 0
    p = ops.sparse_pack(w)
    _assert_mm_close(ops.sparse_mm(p, b), w, b)


def test_sparse_mm_wide_k_inf_and_bad_inputs(isa):
    # int32 indices (K > 65536), and an Inf in b reaching only the rows that hold its column.
    w = torch.zeros(3, 70000)
    w[0, 69999] = 2.0
    w[1, 5] = 1.0
    b = torch.ones(70000, 32)
    b[69999, 3] = float("inf")
    p = ops.sparse_pack(w)
    assert p.col_idx.dtype == torch.int32
    y = ops.sparse_mm(p, b)
    assert float(y[0, 3]) == float("inf") and float(y[0, 2]) == 2.0
    assert bool((y[1] == 1.0).all()) and bool((y[2] == 0.0).all())
    empty = ops.sparse_pack(torch.zeros(5, 0))  # K = 0: every path writes zeros
    for m in (1, 32, 40):
        out = torch.full((5, m), float("nan"))
        assert bool((ops.sparse_mm(empty, torch.zeros(0, m), out=out) == 0).all())
    p = ops.sparse_pack(_pruned(6, 8, 0.5))
    with pytest.raises(ValueError, match=r"b must be \[in_features=8, M\]"):
        ops.sparse_mm(p, torch.randn(4, 8))
    with pytest.raises(ValueError, match="b must be contiguous"):
        ops.sparse_mm(p, torch.randn(3, 8).T)
    with pytest.raises(TypeError, match="b must have dtype"):
        ops.sparse_mm(p, torch.randn(8, 3).double())
    with pytest.raises(ValueError, match="out must have shape"):
        ops.sparse_mm(p, torch.randn(8, 3), out=torch.empty(3, 6))
    b = torch.randn(8, 8)
    with pytest.raises(ValueError, match="out .* b"):
        ops.sparse_mm(ops.sparse_pack(_pruned(8, 8, 0.5)), b, out=b)
    with pytest.raises(TypeError, match="float32 pack"):
        ops.sparse_mm(ops.sparse_pack(_pruned(6, 8, 0.5), dtype=torch.int8), torch.randn(8, 3))


def test_int32_indices_for_wide_k(isa):
    k = 70000  # > 65536: int32 column indices
    w = torch.zeros(3, k)
    w[0, [0, 65535, 65536, 69999]] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w[2, 40000] = -1.5
    p = ops.sparse_pack(w)
    assert p.col_idx.dtype == torch.int32 and p.bytes_per_nonzero == 8
    x = torch.randn(5, k)
    _assert_close_f32(ops.sparse_linear(x, p), x, w, None)
    _assert_close_f32(ops.sparse_linear(x[:1], p), x[:1], w, None)
    q = ops.sparse_pack(w, dtype=torch.int8)
    xq = torch.randint(0, 256, (4, k), dtype=torch.uint8)
    zp = torch.randint(0, 256, (4,), dtype=torch.int32)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(), R.sparse_q8_accumulate(xq, zp, wq))


def test_uint16_indices_above_32767(isa):
    w = torch.zeros(2, 65536)
    w[0, [32767, 32768, 65535]] = torch.tensor([1.0, -2.0, 0.5])
    p = ops.sparse_pack(w)
    assert p.col_idx.dtype == torch.int16 and p.bytes_per_nonzero == 6
    assert torch.equal(p.to_dense(), w)
    x = torch.randn(3, 65536)
    _assert_close_f32(ops.sparse_linear(x, p), x, w, None)


def test_m1_gathers_split_uint16_indices_above_32767(gather_isa):
    # M = 1 rows long enough for the vector steps (16 and 8 entries, then the masked tail), with
    # columns in every 16-bit lane of a 64-bit index load landing above 32767 (AVX2 splits four
    # uint16 indices out of one load), fp32 and int8.
    g = torch.Generator().manual_seed(3)
    w = torch.zeros(4, 65536)
    for row, n in enumerate((8, 23, 40, 61)):
        cols = torch.randperm(32768, generator=g)[:n] + 32768
        cols[::5] = torch.randperm(32768, generator=g)[: cols[::5].numel()]  # a few low ones
        w[row, cols] = torch.randn(n, generator=g)
    p = ops.sparse_pack(w, rows=1)
    assert p.col_idx.dtype == torch.int16
    x = torch.randn(1, 65536, generator=g)
    _assert_close_f32(ops.sparse_linear(x, p), x, w, None)
    q = ops.sparse_pack(w, dtype=torch.int8, rows=1)
    xq = torch.randint(0, 256, (1, 65536), dtype=torch.uint8, generator=g)
    zp = torch.randint(0, 256, (1,), dtype=torch.int32, generator=g)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(), R.sparse_q8_accumulate(xq, zp, wq))


def test_all_zero_weight_gives_bias(isa):
    w = torch.zeros(7, 11)
    b = torch.randn(7)
    for dtype in (torch.float32, torch.int8):
        p = ops.sparse_pack(w, dtype=dtype)
        assert p.nnz == 0
        for m in (1, 3, 40):
            assert torch.equal(ops.sparse_linear(torch.randn(m, 11), p, b), b.expand(m, 7))


def test_leading_dims_out_and_empty_batch(isa):
    w = _pruned(10, 12, 0.5)
    p = ops.sparse_pack(w)
    x = torch.randn(2, 3, 12)
    out = torch.empty(2, 3, 10)
    y = ops.sparse_linear(x, p, out=out)
    assert y is out
    _assert_close_f32(y.reshape(6, 10), x.reshape(6, 12), w, None)
    assert ops.sparse_linear(torch.randn(0, 12), p).shape == (0, 10)


def test_pack_layout_and_to_dense():
    w = _pruned(20, 30, 0.7)
    p = ops.sparse_pack(w)
    assert p.nnz == int((w != 0).sum()) and torch.equal(p.to_dense(), w)
    assert p.row_ptr[-1] == p.nnz and p.values.dtype == torch.float32
    assert p.nbytes == 21 * 8 + p.nnz * 6
    q = ops.sparse_pack(w, dtype=torch.int8)
    assert bool(((q.row_ptr[1:] - q.row_ptr[:-1]) % 2 == 0).all())  # pairs
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    assert torch.allclose(q.to_dense(), wq * q.scale[:, None])
    assert q.bytes_per_nonzero == 4 and "int8" in repr(q)


def test_blocked_layout_is_block_major_and_round_trips():
    w = _pruned(23, 100, 0.6, seed=4)
    for dtype in (torch.float32, torch.int8):
        p = ops.sparse_pack(w, dtype=dtype, k_block=32)
        assert p.num_blocks == 4 and p.k_block == 32 and p.block_ptr.shape == (4, 24)
        bp = p.block_ptr
        assert int(bp[0, 0]) == 0 and int(bp[-1, -1]) == p.nnz
        assert torch.equal(bp[1:, 0], bp[:-1, -1])  # blocks follow each other in the stream
        cols = p.col_idx.long() & 0xFFFF
        for r in range(23):
            runs = [cols[int(bp[b, r]):int(bp[b, r + 1])] for b in range(4)]
            # a row's runs in block order are its columns, ascending (int8 pads repeat one)
            row = torch.cat(runs)
            assert bool((row[1:] >= row[:-1]).all())
            for b, run in enumerate(runs):
                if dtype == torch.int8:  # int8: block b holds block b's columns, in pairs
                    assert bool(((run >= 32 * b) & (run < 32 * b + 32)).all())
                    assert run.numel() % 2 == 0
                else:  # fp32: boundaries moved to whole kernel steps, at most 4 entries away
                    if b < 3:
                        assert run.numel() % 8 == 0 or sum(x.numel() for x in runs[b + 1:]) == 0
                    assert abs(sum(x.numel() for x in runs[:b + 1]) -
                               int((row < 32 * b + 32).sum())) <= 4
        counts = (bp[:, 1:] - bp[:, :-1]).sum(0)
        assert torch.equal(counts, p.row_ptr[1:] - p.row_ptr[:-1])
        ref = ops.sparse_pack(w, dtype=dtype, k_block=None)
        assert torch.equal(p.to_dense(), ref.to_dense())
        assert "int8" in repr(p) or dtype == torch.float32


def test_auto_k_block():
    from pyquant.ops_sparse import auto_k_block
    n = k = 4096
    assert auto_k_block(n, k, 0) is None and auto_k_block(0, k, 5) is None
    assert auto_k_block(n, k, n * k // 100) is None  # 99%: one block
    kb90 = auto_k_block(n, k, n * k // 10)
    kb50 = auto_k_block(n, k, n * k // 2)
    assert kb50 == 512 and kb90 is not None and 512 <= kb90 < k and kb90 & (kb90 - 1) == 0
    # The same panel bytes per run: int8 pairs read half an fp32 entry's panel row, quads a
    # quarter, so their blocks are 2x and 4x longer.
    assert auto_k_block(n, k, n * k // 10, "pairs") == 2 * kb90
    assert auto_k_block(n, k, n * k // 5, "quads") == 4 * auto_k_block(n, k, n * k // 5)
    assert auto_k_block(n, k, n * k // 10, "quads") is None
    with pytest.raises(KeyError):
        auto_k_block(n, k, 5, "int4")
    # rows=1: one block for every kind (the M = 1 kernels read x from L1 at any K).
    for kind in ("f32", "pairs", "quads"):
        assert auto_k_block(n, k, n * k // 10, kind, rows=1) is None
    # rows >= 2, fp32: the shortest power of two >= 512 whose runs hold >= 20 entries.
    long_rule = functools.partial(auto_k_block, short_blocks=False)
    assert long_rule(n, k, n * k // 10, rows=32) == 512  # 51 entries per run
    assert long_rule(n, k, n * k // 20, rows=2) == 512  # 25.6
    assert long_rule(n, k, n * k // 100, rows=256) == 2048  # 20.5 (1024: 10.2)
    assert long_rule(n, k, n * k // 400, rows=32) is None  # 4096 = K
    assert long_rule(n, k, n * k // 2, rows=32) == 512
    # With short blocks (AMD), 128 columns where their runs hold >= 24 entries, else as above.
    short_rule = functools.partial(auto_k_block, short_blocks=True)
    assert short_rule(n, k, n * k // 2, rows=32) == 128  # 64 entries per run
    assert short_rule(n, k, n * k // 5, rows=256) == 128  # 25.6
    assert short_rule(n, k, n * k * 3 // 20, rows=32) == 512  # 85%: 19.2 at 128
    assert short_rule(n, k, n * k // 10, rows=32) == 512
    assert short_rule(n, k, n * k // 2, rows=1) is None
    assert short_rule(n, k, n * k // 2) == long_rule(n, k, n * k // 2) == 512  # rows None
    assert short_rule(n, k, n * k // 2, "pairs", rows=32) == long_rule(n, k, n * k // 2, "pairs",
                                                                       rows=32)
    assert short_rule(96, 128, 96 * 64, rows=32) is None  # 128 = K: one block
    # The default follows this CPU: short blocks on AMD only.
    amd = pyquant.cpu_info()["vendor"] == "AuthenticAMD"
    assert auto_k_block(n, k, n * k // 2, rows=32) == (128 if amd else 512)
    # int8 keeps its panel-bytes rule at any rows >= 2.
    assert auto_k_block(n, k, n * k // 10, "pairs", rows=32) == 2 * kb90
    # Every default pack's block size is what auto_k_block says for its kind of entries.
    w = _pruned(64, 2048, 0.5, empty_row=False, dense_row=False)
    assert ops.sparse_pack(w).k_block == auto_k_block(64, 2048, int((w != 0).sum()))
    pairs = ops.sparse_pack(w, dtype=torch.int8, block=1)
    assert pairs.k_block == auto_k_block(64, 2048, pairs.nnz, "pairs") == 512
    wq = torch.randn(64, 2048, generator=torch.Generator().manual_seed(0))
    quads = ops.sparse_pack(wq * prune.block_mask(wq, 0.5), dtype=torch.int8)
    assert quads.is_quads and quads.k_block == auto_k_block(64, 2048, quads.nnz, "quads") == 1024


@pytest.mark.parametrize("dtype", [torch.float32, torch.int8])
def test_pack_rows_hint(dtype):
    # rows tunes only the K blocks: the same weight, the same results at every M.
    w = _pruned(48, 4096, 0.9, empty_row=True, dense_row=True)
    one = ops.sparse_pack(w, dtype=dtype, rows=1)
    many = ops.sparse_pack(w, dtype=dtype, rows=32)
    default = ops.sparse_pack(w, dtype=dtype)
    assert one.block_ptr is None and one.k_block == 0
    # Density ~0.116. fp32, rows=32: the smallest power of two >= 512 whose runs hold ~20
    # entries (512: ~59); default: ~100 entries per run (1024). int8 pairs, either way: the
    # power of two nearest ~200 entries per run (200 / 0.115 = 1740 -> 2048).
    if dtype == torch.float32:
        assert many.k_block == 512 and default.k_block == 1024
    else:
        assert many.k_block == 2048 and default.k_block == 2048
    assert torch.equal(one.to_dense(), default.to_dense())
    assert torch.equal(many.to_dense(), default.to_dense())
    g = torch.Generator().manual_seed(3)
    for m in (1, 5, 40):
        x = torch.randn(m, 4096, generator=g)
        ref = ops.sparse_linear(x, default)
        for p in (one, many):
            y = ops.sparse_linear(x, p)
            if dtype == torch.int8:
                assert torch.equal(y, ref)  # exact int32 sums, same epilogue
            else:
                _assert_close_f32(y, x, w, None)
    for bad in (0, -1, True, 2.0, "1"):
        with pytest.raises(ValueError, match="rows"):
            ops.sparse_pack(w, dtype=dtype, rows=bad)


@pytest.mark.parametrize("k_block", [8, 24, 64])
@pytest.mark.parametrize("m", [1, 2, 7, 8, 9, 31, 32, 33])
def test_blocked_matches_reference(isa, m, k_block):
    # Block sizes that leave runs of every length 0..17 (tails of the 16- and 8-wide steps).
    w = _pruned(37, 203, 0.8, seed=m + k_block)
    x = torch.randn(m, 203)
    b = torch.randn(37)
    p = ops.sparse_pack(w, k_block=k_block)
    assert p.num_blocks == -(-203 // k_block)
    _assert_close_f32(ops.sparse_linear(x, p, b), x, w, b)
    q = ops.sparse_pack(w, dtype=torch.int8, k_block=k_block)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    xq = torch.randint(0, 256, (m, 203), dtype=torch.uint8)
    zp = torch.randint(0, 256, (m,), dtype=torch.int32)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(),
                       R.sparse_q8_accumulate(xq, zp, wq))


def test_spmv_tail_next_to_inf_entries(gather_isa):
    # The masked tail step of the M = 1 kernel reads the next run's entries: an Inf there (in
    # x at their columns) must not reach this row's sum.
    w = torch.zeros(3, 40)
    w[0, :5] = 1.0  # a 5-entry run: a masked tail
    w[1, 30:40] = 2.0
    w[2, 20:39] = 3.0
    x = torch.ones(1, 40)
    x[0, 30:] = float("inf")
    for kb in (None, 8):
        p = ops.sparse_pack(w, k_block=kb)
        y = ops.sparse_linear(x, p)
        assert float(y[0, 0]) == 5.0 and float(y[0, 1]) == float("inf")


@pytest.mark.parametrize("n,k", SHAPES + [(70, 4100)])
@pytest.mark.parametrize("sparsity", [0.3, 0.9])
@pytest.mark.parametrize("k_block", [None, 40])
def test_m1_kernels_match_reference(gather_isa, n, k, sparsity, k_block):
    # Both M = 1 gather kernels (fp32 and int8 pairs) whichever the CPU picks by default: runs
    # of every length around the 16 / 32-entry steps, one K block or several.
    w = _pruned(n, k, sparsity, seed=n + k)
    g = torch.Generator().manual_seed(k)
    x = torch.randn(1, k, generator=g)
    b = torch.randn(n, generator=g)
    _assert_close_f32(ops.sparse_linear(x, ops.sparse_pack(w, rows=1, k_block=k_block), b),
                      x, w, b)
    q = ops.sparse_pack(w, dtype=torch.int8, rows=1, k_block=k_block)
    assert not q.is_quads  # the pair kernel (qs16_spmv_csr)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    xq = torch.randint(0, 256, (1, k), dtype=torch.uint8, generator=g)
    zp = torch.randint(0, 256, (1,), dtype=torch.int32, generator=g)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(),
                       R.sparse_q8_accumulate(xq, zp, wq))


# ------------------------------------------------------------------ int8


def _q8_setup(n, k, m, seed):
    w = _pruned(n, k, 0.75, seed=seed)
    q = ops.sparse_pack(w, dtype=torch.int8)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    g = torch.Generator().manual_seed(seed)
    xq = torch.randint(0, 256, (m, k), dtype=torch.uint8, generator=g)
    zp = torch.randint(0, 256, (m,), dtype=torch.int32, generator=g)
    return w, q, wq, xq, zp


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("m", [1, 2, 7, 8, 9, 16, 24, 31, 33])
def test_q8_accumulators_bit_exact(isa, n, k, m):
    _, q, wq, xq, zp = _q8_setup(n, k, m, seed=n + k + m)
    acc = ops.sparse_q8_accumulate(xq, zp, q)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.long(), R.sparse_q8_accumulate(xq, zp, wq))


def test_q8_accumulators_blocked_and_threads(isa, threads):
    _, q, wq, xq, zp = _q8_setup(130, 900, 45, seed=5)
    w = q.to_dense()
    qb = ops.sparse_pack(w, dtype=torch.int8, k_block=100)
    assert qb.num_blocks == 9
    ref = R.sparse_q8_accumulate(xq, zp, wq)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(), ref)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, qb).long(), ref)


def test_q8_no_overflow_at_the_int32_limit(isa):
    # The worst case the pack allows: one fully dense row of +-127 against (x_q - zp) = +-255.
    from pyquant.ops_sparse import _MAX_INT8_ROW_NNZ
    k = _MAX_INT8_ROW_NNZ // 2 * 2  # even: no pad entry
    w = torch.ones(2, k)
    w[1] = -1.0
    q = ops.sparse_pack(w, dtype=torch.int8)
    xq = torch.tensor([[255] * k, [0] * k], dtype=torch.uint8)
    zp = torch.tensor([0, 255], dtype=torch.int32)
    acc = ops.sparse_q8_accumulate(xq, zp, q)
    ref = R.sparse_q8_accumulate(xq, zp, torch.round(w / q.scale[:, None]))
    assert int(ref.abs().max()) > 2**31 - 2**22  # really near the limit
    assert torch.equal(acc.long(), ref)
    # One more nonzero per row could overflow: refused at pack time.
    with pytest.raises(ValueError, match="int32"):
        ops.sparse_pack(torch.ones(1, k + 2), dtype=torch.int8)


@pytest.mark.parametrize("m", [1, 3, 32, 33])
def test_q8_linear_matches_reference(isa, threads, m):
    w, q, wq, _, _ = _q8_setup(50, 70, m, seed=11)
    x = torch.randn(m, 70) * 3
    b = torch.randn(50)
    y = ops.sparse_linear(x, q, b)
    ref = R.sparse_linear_q8(x, wq, q.scale, b)
    # Integer part exact; the float epilogue may contract into an FMA: a few ulps.
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5)
    # And the quantization error vs the fp32 product is what int8 predicts.
    assert (y - R.sparse_linear(x, w, b)).abs().max() < 0.05 * R.sparse_linear(x, w, b).abs().max()


# ------------------------------------------------------------------ validation


def test_bad_inputs():
    w = _pruned(6, 8, 0.5)
    p = ops.sparse_pack(w)
    with pytest.raises(TypeError, match="w must have dtype"):
        ops.sparse_pack(w.double())
    with pytest.raises(ValueError, match="w must be 2-d"):
        ops.sparse_pack(w.reshape(-1))
    with pytest.raises(ValueError, match="w must be finite"):
        ops.sparse_pack(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="contiguous"):
        ops.sparse_pack(w.T)
    with pytest.raises(TypeError, match="dtype"):
        ops.sparse_pack(w, dtype=torch.float16)
    with pytest.raises(ValueError, match="k_block"):
        ops.sparse_pack(w, k_block=3)
    with pytest.raises(TypeError, match="packed must be a SparsePacked"):
        ops.sparse_linear(torch.randn(2, 8), w)
    with pytest.raises(TypeError, match="x must have dtype"):
        ops.sparse_linear(torch.randn(2, 8).double(), p)
    with pytest.raises(ValueError, match="in_features=8"):  # packed-vs-input mismatch
        ops.sparse_linear(torch.randn(2, 9), p)
    with pytest.raises(ValueError, match="in_features=8"):
        ops.sparse_linear(torch.tensor(1.0), p)
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.sparse_linear(torch.randn(2, 8), p, torch.randn(7))
    with pytest.raises(TypeError, match="bias must have dtype"):
        ops.sparse_linear(torch.randn(2, 8), p, torch.randn(6).double())
    with pytest.raises(ValueError, match="out must have shape"):
        ops.sparse_linear(torch.randn(2, 8), p, out=torch.empty(2, 5))
    with pytest.raises(ValueError, match="x must be contiguous"):
        ops.sparse_linear(torch.randn(8, 2).T, p)
    q = ops.sparse_pack(w, dtype=torch.int8)
    with pytest.raises(ValueError, match="x contains NaN"):
        ops.sparse_linear(torch.tensor([[float("nan")] * 8]), q)
    with pytest.raises(TypeError, match="int8 pack"):
        ops.sparse_q8_accumulate(torch.zeros(1, 8, dtype=torch.uint8),
                                 torch.zeros(1, dtype=torch.int32), p)
    with pytest.raises(ValueError, match="zero_point must be in"):
        ops.sparse_q8_accumulate(torch.zeros(1, 8, dtype=torch.uint8),
                                 torch.full((1,), 300, dtype=torch.int32), q)


def test_corrupt_packs_are_rejected():
    p = ops.sparse_pack(_pruned(6, 8, 0.5))
    bad_idx = p.col_idx.clone()
    bad_idx[0] = 8
    with pytest.raises(ValueError, match="index >= k"):
        dataclasses.replace(p, col_idx=bad_idx)
    bad_ptr = p.row_ptr.clone()
    bad_ptr[2], bad_ptr[3] = bad_ptr[3], bad_ptr[2] - 1
    with pytest.raises(ValueError, match="non-decreasing"):
        dataclasses.replace(p, row_ptr=bad_ptr)
    with pytest.raises(ValueError, match="row_ptr must be 1-d"):
        dataclasses.replace(p, row_ptr=p.row_ptr[:-1].clone())
    with pytest.raises(ValueError, match="values has"):
        dataclasses.replace(p, values=p.values[:-1].clone())
    with pytest.raises(TypeError, match="values must have dtype"):
        dataclasses.replace(p, values=p.values.double())
    q = ops.sparse_pack(_pruned(6, 8, 0.5), dtype=torch.int8)
    with pytest.raises(ValueError, match=r"\[-127, 127\]"):
        dataclasses.replace(q, values=q.values * 2)
    with pytest.raises(ValueError, match="scale must be finite"):
        dataclasses.replace(q, scale=-q.scale)


def test_kernel_names_in_cpu_info(gather_isa):
    isa, hw_gather = gather_isa
    info = pyquant.cpu_info()
    names = info["kernels"]
    suffix = isa if isa not in ("avx512vnni", "amx") else "avx512"
    assert names["f32_spmm_csr"] == f"f32_spmm_csr__{suffix}"
    # VNNI (and AMX, which has no sparse use) take the vpdpwssd int8 kernel.
    q8_suffix = "avx512vnni" if isa in ("avx512vnni", "amx") else suffix
    assert names["qs16_spmm_csr"] == f"qs16_spmm_csr__{q8_suffix}"
    # M = 1, fp32 and int8 pairs: the AVX-512 gather kernels from AVX-512 up where the hardware
    # gather is fast (or hw_gather=True), else (AMD, or hw_gather=False) the AVX2 insert-gather
    # ones; the quad one needs VNNI.
    hw = info["features"]["fast_gather"] if hw_gather is None else hw_gather
    avx512_up = isa not in ("scalar", "avx2")
    assert info["hw_gather"] == (hw and avx512_up)
    gather_suffix = suffix if hw or not avx512_up else "avx2"
    assert names["f32_spmv_csr"] == f"f32_spmv_csr__{gather_suffix}"
    assert names["qs16_spmv_csr"] == f"qs16_spmv_csr__{gather_suffix}"
    assert names.get("qu8x4_spmv_csr") == ("qu8x4_spmv_csr__avx512vnni"
                                           if isa in ("avx512vnni", "amx") else None)
    assert names.get("qu8x4_spmm_tiles") == ("qu8x4_spmm_tiles__avx512vnni"
                                             if isa in ("avx512vnni", "amx") else None)
    assert names["f32_tile_transpose"] == f"f32_tile_transpose__{suffix}"
    assert names["f32_panel_pack"] == f"f32_panel_pack__{suffix}"
    q_epilogue = "avx512" if isa in ("avx512", "avx512vnni", "amx") else "scalar"
    assert names["qs32_f32_tile_transpose"] == f"qs32_f32_tile_transpose__{q_epilogue}"
