"""fp32 16 x 1 tiles: weights whose 16-row groups share their columns
(``prune.block_mask(w, amount, block=(16, 1))``), run on AVX-512 CPUs by the tile kernel for
M >= 2 (vectors along the group's 16 rows) and elsewhere by the CSR kernel on the same pack.
Every ISA level (the `isa` fixture) must match the float64 reference within fp32's tolerance,
and a NaN / Inf input must reach only the rows that hold its column, as in CSR.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import pyquant
from pyquant import ops
from pyquant import prune as pp
from pyquant import reference as R
from pyquant.ops_sparse import stores_f32_tiles


def _tile_pruned(n, k, sparsity, seed=0, empty_row=True):
    """A (16, 1)-block-pruned weight cut to n rows (a partial last group when n % 16), with
    one row pruned empty (empty slots in its group's tiles: still tiles)."""
    g = torch.Generator().manual_seed(seed)
    rows = -(-n // 16) * 16
    w = torch.randn(rows, k, generator=g)
    w = (w * pp.block_mask(w, sparsity, block=(16, 1)))[:n].contiguous()
    if empty_row and n > 2:
        w[1] = 0.0
    return w


def _assert_close_f32(y, x, w, b):
    """1e-5 of sum |x||w| (the scale of a reordered float32 sum's error), as for CSR."""
    ref = R.sparse_linear(x, w, b).to(torch.float64)
    bound = 1e-5 * (x.abs().to(torch.float64) @ w.abs().to(torch.float64).T)
    if b is not None:
        bound = bound + 1e-5 * b.abs().to(torch.float64)
    err = (y.to(torch.float64) - ref).abs()
    assert bool((err <= bound + 1e-12).all()), float((err - bound).max())


def test_f32_tile_packs_are_detected():
    w = _tile_pruned(40, 64, 0.75)
    p = ops.sparse_pack(w)
    assert p.is_tiles and "16x1 blocks" in repr(p) and stores_f32_tiles(w)
    again = ops.SparsePacked(**{f: getattr(p, f) for f in (
        "out_features", "in_features", "row_ptr", "col_idx", "values", "scale", "dtype",
        "block_ptr", "k_block")})
    assert again.is_tiles  # detected from the structure: a loaded state_dict keeps it
    g = torch.Generator().manual_seed(1)
    unstructured = torch.randn(64, 64, generator=g)
    unstructured[torch.rand(64, 64, generator=g) < 0.75] = 0.0
    assert not ops.sparse_pack(unstructured).is_tiles and not stores_f32_tiles(unstructured)
    q = ops.sparse_pack(w, dtype=torch.int8, block=1)
    assert not q.is_tiles  # int8 tiles are 16 x 4 quads
    # Half the rows of every group holding other columns: below the 75% fill rule.
    half = w.clone()
    half[8:16] = torch.roll(half[8:16], 1, dims=1)
    half[24:32] = torch.roll(half[24:32], 1, dims=1)
    assert not ops.sparse_pack(half).is_tiles and not stores_f32_tiles(half)


@pytest.mark.parametrize("n,k", [(16, 8), (40, 64), (33, 300), (130, 516)])
@pytest.mark.parametrize("m", [1, 2, 5, 15, 16, 17, 33, 64])
def test_f32_tiles_match_reference(isa, n, k, m):
    w = _tile_pruned(n, k, 0.7, seed=n + k + m)
    p = ops.sparse_pack(w)
    assert p.is_tiles
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, k, generator=g)
    b = torch.randn(n, generator=g)
    _assert_close_f32(ops.sparse_linear(x, p, b), x, w, b)
    _assert_close_f32(ops.sparse_linear(x, p), x, w, None)


def test_f32_tiles_blocked_packs_threads_and_leading_dims(isa, threads):
    # The tile view is derived from either storage order (one block or block-major).
    w = _tile_pruned(150, 1024, 0.9, seed=3)
    x = torch.randn(3, 15, 1024)
    b = torch.randn(150)
    for k_block in (None, 256, 100):
        p = ops.sparse_pack(w, k_block=k_block)
        assert p.is_tiles, k_block
        y = ops.sparse_linear(x, p, b)
        assert y.shape == (3, 15, 150)
        _assert_close_f32(y.reshape(-1, 150), x.reshape(-1, 1024), w, b)
        out = torch.full((3, 15, 150), 7.0)
        assert ops.sparse_linear(x, p, b, out=out) is out and torch.equal(out, y)


def test_f32_tiles_keep_nan_and_inf_in_their_rows(isa):
    # Rows 0-15 hold columns {0, 1}, rows 16-31 columns {2, 3}; rows 5 and 20 are empty (zero
    # slots in their groups' tiles). An Inf in column 0 of x must reach rows 0-15 but 5 only,
    # a NaN in column 3 rows 16-31 but 20.
    w = torch.zeros(32, 8)
    w[:16, :2] = torch.arange(1, 33, dtype=torch.float32).reshape(16, 2)
    w[16:, 2:4] = -torch.arange(1, 33, dtype=torch.float32).reshape(16, 2)
    w[5] = 0.0
    w[20] = 0.0
    p = ops.sparse_pack(w)
    assert p.is_tiles
    x = torch.ones(4, 8)
    x[1, 0] = math.inf
    x[2, 3] = math.nan
    y = ops.sparse_linear(x, p)
    assert bool(torch.isinf(y[1, :16]).sum() == 15) and bool(torch.isfinite(y[1, 16:]).all())
    assert math.isfinite(float(y[1, 5])) and float(y[1, 5]) == 0.0
    assert bool(torch.isnan(y[2, 16:]).sum() == 15) and not math.isnan(float(y[2, 20]))
    assert bool(torch.isfinite(y[2, :16]).all())
    finite = torch.isfinite(y[[0, 3]]).all()
    assert bool(finite) and torch.allclose(y[[0, 3]], x[[0, 3]] @ w.T)


def test_f32_tile_kernel_is_used_where_avx512_is():
    names = pyquant.cpu_info()["kernels"]
    if "avx512" in pyquant.supported_isas():
        assert names["f32_spmm_tiles"] == "f32_spmm_tiles__avx512"
    else:
        assert "f32_spmm_tiles" not in names  # the CSR kernel runs tile packs


def test_binding_checks_the_f32_tile_view():
    from pyquant import _C
    w = _tile_pruned(40, 64, 0.75)
    p = ops.sparse_pack(w, k_block=None)
    view = p._f32_tile_args()
    assert view is not None and len(view) == 3
    x = torch.randn(3, 64)

    def call(tiles):
        out = torch.empty(3, 40)
        _C.sparse_linear_f32(x.numpy(), 3, p.row_ptr.numpy(), p.col_idx.numpy(),
                             p.values.numpy(), 40, 64, None, out.numpy(), None, 1, tiles)
        return out

    _assert_close_f32(call(view), x, w, None)  # the tile kernel (AVX-512) ...
    _assert_close_f32(call(None), x, w, None)  # ... and CSR on the same pack
    group_ptr, group_col, group_w = view
    bad = {
        "tiles must be": view[:2],
        "group_ptr must have": (group_ptr[:-1], group_col, group_w),
        "group_w must have": (group_ptr, group_col, group_w[:-16]),
    }
    for message, tiles in bad.items():
        with pytest.raises(ValueError, match=message):
            call(tiles)


def test_sparse_linear_layer_and_sparsify_keep_f32_tiles():
    from pyquant import api_sparse
    from pyquant.api_sparse import sparsify_
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 8))
    with torch.no_grad():  # 99% of the 16 x 1 tiles pruned: above the always-swap sparsity
        model[0].weight.mul_(pp.block_mask(model[0].weight, 0.99, block=(16, 1)))
    x = torch.randn(5, 256)
    ref = model(x)
    sparsify_(model)
    assert isinstance(model[0], pyquant.nn.SparseLinear) and model[0]._packed.is_tiles
    assert type(model[2]) is nn.Linear
    assert torch.allclose(model(x), ref, rtol=1e-5, atol=1e-5)
    state = model[0].state_dict()
    again = pyquant.nn.SparseLinear(256, 64)
    again.load_state_dict(state)
    assert again._packed.is_tiles and torch.equal(again(x), model[0](x))
    lin = nn.Sequential(nn.Linear(256, 64))
    with torch.no_grad():
        lin[0].weight.mul_(pp.block_mask(lin[0].weight, 0.75, block=(16, 1)))
    api_sparse._DECISIONS.clear()
    sparsify_(lin)
    assert list(api_sparse._DECISIONS) == [("f32 tiles", 64, 256, 0.75, 32)]
    # At one row the CSR kernel runs tiles too: one kind, and no tile view is built.
    lin1 = nn.Sequential(nn.Linear(256, 64))
    with torch.no_grad():
        lin1[0].weight.mul_(pp.block_mask(lin1[0].weight, 0.75, block=(16, 1)))
    api_sparse._DECISIONS.clear()
    sparsify_(lin1, rows=1)
    assert [key[0] for key in api_sparse._DECISIONS] == ["f32"]
    if type(lin1[0]) is not nn.Linear:
        assert "_tile_cache" not in lin1[0]._packed.__dict__
    # whichever way the timing went: at one row the kind is read without packing, at more
    # the pack is built once and handed on with its kind
    probe = nn.Linear(256, 64)
    with torch.no_grad():
        probe.weight.mul_(pp.block_mask(probe.weight, 0.75, block=(16, 1)))
    assert api_sparse._kind(probe, False, pyquant.nn.SparseLinear, 1) == ("f32", None)
    kind, candidate = api_sparse._kind(probe, False, pyquant.nn.SparseLinear, 32)
    assert kind == "f32 tiles" and candidate._packed.is_tiles


def test_sparse_linear_builds_the_tile_view_only_for_m_of_2_or_more():
    # The view is a second copy of the weights that M = 1 never runs.
    lin = nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.mul_(pp.block_mask(lin.weight, 0.75, block=(16, 1)))
    layer = pyquant.nn.SparseLinear.from_float(lin)
    x = torch.randn(3, 64)
    for rows in (1, 3):
        assert torch.allclose(layer(x[:rows]), lin(x[:rows]), rtol=1e-5, atol=1e-5)
        assert ("_tile_cache" in layer._packed.__dict__) == (rows > 1)
    assert layer._packed.is_tiles


def test_the_tile_view_is_what_runs(isa):
    # The kernel trusts the derived view: a view with doubled weights doubles y where the tile
    # kernel runs (AVX-512 and up, M >= 2) and changes nothing where CSR runs (M = 1, lower
    # ISAs). So the tests above exercise the tile kernel, not a silent CSR fallback.
    from pyquant import _C
    w = _tile_pruned(40, 64, 0.75)
    p = ops.sparse_pack(w, k_block=None)
    group_ptr, group_col, group_w = p._f32_tile_args()
    doubled = (group_ptr, group_col, group_w * 2)
    tiles_run = "f32_spmm_tiles" in pyquant.cpu_info()["kernels"]
    assert tiles_run == (isa in ("avx512", "avx512vnni", "amx"))
    for m in (1, 3):
        x = torch.randn(m, 64)
        out = torch.empty(m, 40)
        _C.sparse_linear_f32(x.numpy(), m, p.row_ptr.numpy(), p.col_idx.numpy(),
                             p.values.numpy(), 40, 64, None, out.numpy(), None, 1, doubled)
        scale = 2.0 if tiles_run and m > 1 else 1.0
        _assert_close_f32(out, x, w * scale, None)
