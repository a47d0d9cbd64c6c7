"""1 x 4 block sparsity for int8: prune.block_mask / block_prune_, quad packs, the quad kernel;
and 16 x 4 tiles (quads shared by 16-row groups) with their kernel.

On VNNI CPUs an int8 pack made of aligned quads runs the vpdpbusd quad kernel (the tile kernel
when its 16-row groups share the quads, M >= 2); elsewhere the pair kernel runs the same pack.
All must give the int64 reference's accumulators exactly, on every ISA level (the `isa`
fixture forces the lower ones).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import pyquant
from pyquant import ops
from pyquant import prune as pp
from pyquant import reference as R


def _block_pruned(n, k, sparsity, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    w = w * pp.block_mask(w, sparsity)
    if n > 2:
        w[1] = 0.0  # an empty row: empty runs in every K block
    return w


def _tile_pruned(n, k, sparsity, seed=0, empty_row=True):
    """A (16, 4)-block-pruned weight cut to n rows (a partial last group when n % 16)."""
    g = torch.Generator().manual_seed(seed)
    rows = -(-n // 16) * 16
    w = torch.randn(rows, k, generator=g)
    w = (w * pp.block_mask(w, sparsity, block=(16, 4)))[:n].contiguous()
    if empty_row and n > 2:
        w[1] = 0.0  # zero slots in its group's tiles (4 of 5 or 15 of 16 rows: still tiles)
    return w


# ------------------------------------------------------------------ pruning


def test_block_mask_keeps_the_largest_groups():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 32, generator=g)
    mask = pp.block_mask(w, 0.75)
    groups = mask.reshape(-1, 4)
    assert bool((groups.all(1) | ~groups.any(1)).all())  # whole groups kept or dropped
    assert int(groups.all(1).sum()) == 96 - 72
    norms = w.abs().reshape(-1, 4).sum(1)
    assert float(norms[groups.all(1)].min()) >= float(norms[~groups.all(1)].max())
    l2 = pp.block_mask(w, 10, block=8, norm="l2").reshape(-1, 8)
    assert int((~l2.all(1)).sum()) == 10
    with pytest.raises(ValueError, match="multiple of block"):
        pp.block_mask(torch.randn(3, 10), 0.5)
    with pytest.raises(ValueError, match="block must be"):
        pp.block_mask(w, 0.5, block=0)
    with pytest.raises(ValueError, match="norm"):
        pp.block_mask(w, 0.5, norm="l3")


def test_block_prune_model_skips_layers_that_do_not_divide():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3), nn.Linear(3, 2))
    reports = pp.block_prune_(model, 0.5)
    assert [r.name for r in reports] == ["0", "2"]  # 3 inputs: not a multiple of 4
    for layer in (model[0], model[2]):
        groups = (layer.weight != 0).reshape(-1, 4)
        assert bool((groups.all(1) | ~groups.any(1)).all())
        assert int(groups.all(1).sum()) == groups.shape[0] // 2
    assert bool((model[3].weight != 0).all())


# ------------------------------------------------------------------ packing


def test_quad_packs_are_detected_and_round_trip():
    w = _block_pruned(40, 64, 0.8)
    q = ops.sparse_pack(w, dtype=torch.int8)  # block="auto": a blocked weight -> quads
    assert q.is_quads and "1x4 blocks" in repr(q)
    assert ops.sparse_pack(w, dtype=torch.int8, block=1).is_quads is False
    assert torch.equal(q.to_dense(), ops.sparse_pack(w, dtype=torch.int8, block=1).to_dense())
    # Unstructured sparsity stays entry by entry under "auto"; block=4 forces whole quads.
    g = torch.Generator().manual_seed(1)
    u = torch.randn(40, 64, generator=g)
    u[torch.rand(40, 64, generator=g) < 0.9] = 0.0
    assert not ops.sparse_pack(u, dtype=torch.int8).is_quads
    forced = ops.sparse_pack(u, dtype=torch.int8, block=4)
    assert forced.is_quads and forced.nnz % 4 == 0
    assert torch.equal(forced.to_dense(), ops.sparse_pack(u, dtype=torch.int8).to_dense())
    # Rebuilt from its tensors (a loaded state_dict): still quads. fp32 packs never are.
    again = ops.SparsePacked(q.out_features, q.in_features, q.row_ptr, q.col_idx, q.values,
                             q.scale, q.dtype, q.block_ptr, q.k_block)
    assert again.is_quads
    assert not ops.sparse_pack(w).is_quads


def test_quad_pack_errors():
    w = _block_pruned(8, 16, 0.5)
    with pytest.raises(ValueError, match="block=4 needs dtype"):
        ops.sparse_pack(w, block=4)
    with pytest.raises(ValueError, match="block=4 needs dtype"):
        ops.sparse_pack(torch.randn(4, 10), dtype=torch.int8, block=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        ops.sparse_pack(w, dtype=torch.int8, block=4, k_block=10)
    with pytest.raises(ValueError, match="block must be"):
        ops.sparse_pack(w, dtype=torch.int8, block=2)
    # K not a multiple of 4: "auto" quietly stores entries one by one.
    assert not ops.sparse_pack(torch.ones(4, 10), dtype=torch.int8).is_quads


# ------------------------------------------------------------------ kernels


def _pruned_as(layout, n, k, sparsity, seed=0):
    """A weight the int8 pack stores as plain quads ("quads") or as 16 x 4 tiles ("tiles")."""
    return (_tile_pruned if layout == "tiles" else _block_pruned)(n, k, sparsity, seed=seed)


def _packed_as(layout, w, **kwargs):
    q = ops.sparse_pack(w, dtype=torch.int8, **kwargs)
    assert q.is_quads and q.is_tiles == (layout == "tiles")
    return q


@pytest.mark.parametrize("layout", ["quads", "tiles"])
@pytest.mark.parametrize("n,k", [(5, 8), (37, 64), (130, 516)])
@pytest.mark.parametrize("m", [1, 2, 15, 16, 17, 31, 32, 33, 64])
def test_quad_accumulators_bit_exact(isa, layout, n, k, m):
    w = _pruned_as(layout, n, k, 0.7, seed=n + k + m)
    q = _packed_as(layout, w)
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    g = torch.Generator().manual_seed(m)
    xq = torch.randint(0, 256, (m, k), dtype=torch.uint8, generator=g)
    zp = torch.randint(0, 256, (m,), dtype=torch.int32, generator=g)
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(),
                       R.sparse_q8_accumulate(xq, zp, wq))


@pytest.mark.parametrize("layout", ["quads", "tiles"])
def test_quad_accumulators_blocked_and_threads(isa, threads, layout):
    # Tiles are derived from either storage order (one block or block-major).
    w = _pruned_as(layout, 150, 1024, 0.9, seed=3)
    g = torch.Generator().manual_seed(4)
    xq = torch.randint(0, 256, (45, 1024), dtype=torch.uint8, generator=g)
    zp = torch.randint(0, 256, (45,), dtype=torch.int32, generator=g)
    for k_block in (None, 256, 100 * 4):
        q = _packed_as(layout, w, k_block=k_block)
        wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
        assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(),
                           R.sparse_q8_accumulate(xq, zp, wq)), k_block


@pytest.mark.parametrize("layout", ["quads", "tiles"])
def test_quad_no_overflow_at_the_int32_limit(isa, layout):
    # Rows of +127 against x_q = 255 (zp 0) and rows of -127 against zp = 255 (x_q 0): the
    # quad and tile kernels start the latter at -zp * row_sum, right at the int32 limit. Quads:
    # two rows on disjoint halves of K (so they share no quads); tiles: 16 rows on all of K.
    from pyquant.ops_sparse import _MAX_INT8_ROW_NNZ
    kk = _MAX_INT8_ROW_NNZ // 4 * 4
    if layout == "tiles":
        w = torch.ones(16, kk)
        w[1::2] = -1.0
    else:
        w = torch.zeros(2, 2 * kk)
        w[0, :kk] = 1.0
        w[1, kk:] = -1.0
    q = _packed_as(layout, w)
    k = w.shape[1]
    xq = torch.tensor([[255] * k, [0] * k], dtype=torch.uint8)
    zp = torch.tensor([0, 255], dtype=torch.int32)
    ref = R.sparse_q8_accumulate(xq, zp, torch.round(w / q.scale[:, None]))
    assert int(ref.abs().max()) > 2**31 - 2**22
    assert torch.equal(ops.sparse_q8_accumulate(xq, zp, q).long(), ref)


@pytest.mark.parametrize("layout", ["quads", "tiles"])
@pytest.mark.parametrize("m", [1, 3, 32, 50])
def test_quad_linear_equals_the_pair_path(isa, threads, layout, m):
    w = _pruned_as(layout, 70, 128, 0.8, seed=7)
    x = torch.randn(2, m, 128) * 3
    b = torch.randn(70)
    quads = _packed_as(layout, w)
    pairs = ops.sparse_pack(w, dtype=torch.int8, block=1)
    y = ops.sparse_linear(x, quads, b)
    assert torch.equal(y, ops.sparse_linear(x, pairs, b))  # same integers, same epilogue
    wq = torch.round(w / quads.scale[:, None]).clamp(-127, 127)
    ref = R.sparse_linear_q8(x.reshape(-1, 128), wq, quads.scale, b).reshape(y.shape)
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["qu8x4_spmm_csr", "qu8x4_spmv_csr", "qu8x4_spmm_tiles"])
def test_quad_kernels_are_used_where_vnni_is(op):
    names = pyquant.cpu_info()["kernels"]
    if "avx512vnni" in pyquant.supported_isas():
        assert names[op] == f"{op}__avx512vnni"
    else:
        assert op not in names  # the pair kernel runs quad and tile packs


def test_sparse_quant_linear_keeps_quads_through_state_dict():
    torch.manual_seed(0)
    lin = nn.Linear(64, 24)
    with torch.no_grad():
        lin.weight.mul_(pp.block_mask(lin.weight, 0.75))
    layer = pyquant.nn.SparseQuantLinear.from_float(lin)
    assert layer._packed.is_quads
    x = torch.randn(5, 64)
    y = layer(x)
    assert torch.equal(y, ops.sparse_linear(x, layer._packed, lin.bias.detach()))
    fresh = pyquant.nn.SparseQuantLinear.from_float(nn.Linear(64, 24))
    fresh.load_state_dict(layer.state_dict())
    assert fresh._packed.is_quads
    assert torch.equal(fresh(x), y)


def test_break_even_of_quads_and_sparsify_keeps_them():
    from pyquant.api_sparse import break_even_sparsity, sparsify_
    from pyquant.ops_sparse import stores_quads
    from pyquant import api_sparse
    blocked = break_even_sparsity(quantized=True, blocked=True)
    assert 0.5 <= blocked <= 0.98
    # Its own calibration (a block-pruned weight), cached apart from the unstructured int8 one;
    # fp32 packs never store quads, so there `blocked` selects the same calibration.
    assert api_sparse._BREAK_EVEN[(True, True, 32)] == blocked
    assert break_even_sparsity(blocked=True) == break_even_sparsity()
    assert (False, True, 32) not in api_sparse._BREAK_EVEN
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8))
    with torch.no_grad():
        model[0].weight.mul_(pp.block_mask(model[0].weight, 0.99))
    assert stores_quads(model[0].weight)
    g = torch.Generator().manual_seed(2)
    unstructured = torch.randn(32, 64, generator=g) * (torch.rand(32, 64, generator=g) > 0.9)
    assert not stores_quads(unstructured)
    sparsify_(model, quantize=True)  # 99%: swapped without timing
    assert isinstance(model[0], pyquant.nn.SparseQuantLinear) and model[0]._packed.is_quads
    assert type(model[2]) is nn.Linear  # dense weight: stays dense
    # In the timed range, quad layers are timed as their own kind.
    lin = nn.Sequential(nn.Linear(64, 32))
    with torch.no_grad():
        lin[0].weight.mul_(pp.block_mask(lin[0].weight, 0.75))
    api_sparse._DECISIONS.clear()
    sparsify_(lin, quantize=True)
    assert list(api_sparse._DECISIONS) == [("quads", 32, 64, 0.75, 32)]


# ------------------------------------------------------------------ 16 x 4 tiles


def test_block_mask_16x4_keeps_the_largest_tiles():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 24, generator=g)
    mask = pp.block_mask(w, 0.5, block=(16, 4))
    tiles = mask.reshape(2, 16, 6, 4).transpose(1, 2).reshape(12, 64)
    assert bool((tiles.all(1) | ~tiles.any(1)).all())  # whole 16 x 4 tiles kept or dropped
    assert int(tiles.all(1).sum()) == 6
    norms = w.abs().reshape(2, 16, 6, 4).transpose(1, 2).reshape(12, 64).sum(1)
    assert float(norms[tiles.all(1)].min()) >= float(norms[~tiles.all(1)].max())
    # An int block is (1, block): the 1 x 4 mask as before.
    assert torch.equal(pp.block_mask(w, 0.5, block=(1, 4)), pp.block_mask(w, 0.5))
    with pytest.raises(ValueError, match="not a multiple of block"):
        pp.block_mask(torch.randn(24, 8), 0.5, block=(16, 4))
    for bad in ((16,), (0, 4), (16, True), "16x4"):
        with pytest.raises(ValueError, match="block must be"):
            pp.block_mask(w, 0.5, block=bad)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    reports = pp.block_prune_(model, 0.5, block=(16, 4))
    assert [r.name for r in reports] == ["0"]  # 8 outputs: not a multiple of 16
    assert int((model[0].weight == 0).sum()) == 16 * 32 // 2


def test_tile_packs_are_detected():
    w = _tile_pruned(40, 64, 0.75)  # groups of 16, 16 and 8 rows
    q = ops.sparse_pack(w, dtype=torch.int8)
    assert q.is_quads and q.is_tiles and "16x4 blocks" in repr(q)
    # 1 x 4 blocks whose groups do not share their quads are quads only.
    q4 = ops.sparse_pack(_block_pruned(40, 64, 0.75), dtype=torch.int8)
    assert q4.is_quads and not q4.is_tiles and "1x4 blocks" in repr(q4)
    assert not ops.sparse_pack(w, dtype=torch.int8, block=1).is_tiles
    # fp32: its 16-row groups share their columns too, so its fp32 pack is 16 x 1 tiles.
    assert ops.sparse_pack(w).is_tiles and "16x1 blocks" in repr(ops.sparse_pack(w))
    again = ops.SparsePacked(q.out_features, q.in_features, q.row_ptr, q.col_idx, q.values,
                             q.scale, q.dtype, q.block_ptr, q.k_block)
    assert again.is_tiles  # detected from the structure: a loaded state_dict keeps it


def test_stores_tiles_agrees_with_the_pack():
    from pyquant.ops_sparse import stores_tiles
    cases = [_tile_pruned(40, 64, 0.75), _tile_pruned(16, 128, 0.9, empty_row=False),
             _block_pruned(40, 64, 0.75), torch.randn(20, 12), torch.zeros(16, 8)]
    for w in cases:
        assert stores_tiles(w) == ops.sparse_pack(w, dtype=torch.int8).is_tiles
    assert stores_tiles(cases[0]) and not stores_tiles(cases[2])
    # Half of each group's rows lack the shared quads: 50% fill, below the 75% rule.
    half = _tile_pruned(32, 64, 0.5, empty_row=False)
    half[8:16] = 0.0
    half[24:] = 0.0
    assert not stores_tiles(half) and not ops.sparse_pack(half, dtype=torch.int8).is_tiles


def test_break_even_of_tiles_and_sparsify_keeps_them():
    from pyquant.api_sparse import break_even_sparsity, sparsify_
    from pyquant import api_sparse
    tiles = break_even_sparsity(quantized=True, blocked="tiles")
    assert 0.5 <= tiles <= 0.98 and api_sparse._BREAK_EVEN[(True, "tiles", 32)] == tiles
    assert break_even_sparsity(blocked="tiles") == break_even_sparsity()  # fp32: no tiles
    with pytest.raises(ValueError, match="blocked must be"):
        break_even_sparsity(quantized=True, blocked="1x4")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 8))
    with torch.no_grad():  # 99% of 256 tiles pruned: 3 left, above any clamped break-even
        model[0].weight.mul_(pp.block_mask(model[0].weight, 0.99, block=(16, 4)))
    sparsify_(model, quantize=True)
    assert isinstance(model[0], pyquant.nn.SparseQuantLinear) and model[0]._packed.is_tiles
    assert model[0]._packed.nnz == 3 * 64
    assert type(model[2]) is nn.Linear
    lin = nn.Sequential(nn.Linear(256, 64))
    with torch.no_grad():
        lin[0].weight.mul_(pp.block_mask(lin[0].weight, 0.75, block=(16, 4)))
    api_sparse._DECISIONS.clear()
    sparsify_(lin, quantize=True)
    assert list(api_sparse._DECISIONS) == [("tiles", 64, 256, 0.75, 32)]


def test_binding_checks_the_quad_and_tile_views():
    from pyquant import _C
    w = _tile_pruned(40, 64, 0.75)
    q = ops.sparse_pack(w, dtype=torch.int8)
    args = q._quad_args()
    assert len(args) == 6
    g = torch.Generator().manual_seed(5)
    xq = torch.randint(0, 256, (2, 64), dtype=torch.uint8, generator=g)
    zp = torch.randint(0, 256, (2,), dtype=torch.int32, generator=g)

    def call(quads):
        out = torch.empty(2, 40, dtype=torch.int32)
        _C.sparse_q8_accumulate(xq.numpy().reshape(-1), zp.numpy(), 2, q.row_ptr.numpy(),
                                q.col_idx.numpy(), q.values.numpy(), 40, 64,
                                out.numpy().reshape(-1), *q._block_args(), quads)
        return out

    # With or without the tile view (the tile kernel or the quad one on VNNI): the reference.
    wq = torch.round(w / q.scale[:, None]).clamp(-127, 127)
    ref = R.sparse_q8_accumulate(xq, zp, wq)
    assert torch.equal(call(args).long(), ref)
    assert torch.equal(call(args), call(args[:3]))
    group_ptr, group_col, group_w = args[3:]
    bad = {
        "quads must be": args[:4],
        "group_ptr must have": (*args[:3], group_ptr[:-1], group_col, group_w),
        "group_w must have": (*args[:3], group_ptr, group_col, group_w[:-16]),
    }
    for message, quads in bad.items():
        with pytest.raises(ValueError, match=message):
            call(quads)
