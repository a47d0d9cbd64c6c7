"""SparseLinear / SparseQuantLinear modules and sparsify_."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

import pyquant
from pyquant.api_sparse import break_even_sparsity, sparsify_
from pyquant.nn import SparseLinear, SparseQuantLinear


def _prune_(linear: nn.Linear, sparsity: float) -> None:
    """Zero the smallest-|w| fraction of a Linear's weight (per layer, in place)."""
    with torch.no_grad():
        w = linear.weight
        k = int(sparsity * w.numel())
        if k:
            thr = w.abs().flatten().kthvalue(k).values
            w[w.abs() <= thr] = 0.0


def _linear(n_in, n_out, bias=True, sparsity=0.8, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out, bias=bias)
    _prune_(lin, sparsity)
    return lin


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 33), (2, 3, 33), (1, 33), (33,)])
def test_sparse_linear_matches_linear(isa, bias, shape):
    lin = _linear(33, 17, bias)
    mod = SparseLinear.from_float(lin)
    x = torch.randn(*shape)
    with torch.no_grad():
        ref = lin(x)
    y = mod(x)
    assert y.shape == ref.shape and not y.requires_grad
    assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5)
    assert mod.packed.nnz == int((lin.weight != 0).sum())


@pytest.mark.parametrize("bias", [True, False])
def test_sparse_quant_linear_close_to_linear(isa, bias):
    lin = _linear(64, 40, bias, sparsity=0.7)
    mod = SparseQuantLinear.from_float(lin)
    x = torch.randn(4, 6, 64)
    with torch.no_grad():
        ref = lin(x)
    y = mod(x)
    assert y.shape == ref.shape
    # int8 weights and activations: error a small fraction of the output scale.
    assert (y - ref).abs().max() < 0.03 * ref.abs().max()


def test_works_with_torch_prune_and_noncontiguous_input():
    lin = nn.Linear(20, 10)
    torch_prune.l1_unstructured(lin, "weight", amount=0.9)
    mod = SparseLinear.from_float(lin)
    assert mod.packed.nnz == int((lin.weight != 0).sum()) == 20
    x = torch.randn(20, 7).T  # non-contiguous
    with torch.no_grad():
        assert torch.allclose(mod(x), lin(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [SparseLinear, SparseQuantLinear])
def test_state_dict_round_trip(cls):
    src = cls.from_float(_linear(30, 12, True, sparsity=0.6, seed=1))
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst = cls(30, 12)  # all-zero weight, different nnz: buffers are replaced
    assert dst.packed.nnz == 0
    dst.load_state_dict(torch.load(buf))
    x = torch.randn(3, 30)
    assert torch.equal(dst(x), src(x))
    assert dst.packed.nnz == src.packed.nnz
    with pytest.raises(RuntimeError, match="Missing key"):
        cls(30, 12).load_state_dict({"bias": torch.zeros(12)})


def test_state_dict_rejects_corrupt_pack():
    src = SparseLinear.from_float(_linear(8, 4))
    sd = src.state_dict()
    sd["col_idx"] = sd["col_idx"].clone()
    sd["col_idx"][0] = 100
    with pytest.raises(RuntimeError, match="invalid packed sparse weight"):
        SparseLinear(8, 4).load_state_dict(sd)


@pytest.mark.parametrize("cls", [SparseLinear, SparseQuantLinear])
def test_repr_deepcopy_inference_mode(cls):
    mod = cls.from_float(_linear(16, 8, sparsity=0.75))
    r = repr(mod)
    assert cls.__name__ in r and "in_features=16" in r and "sparsity=" in r and "nnz=" in r
    twin = copy.deepcopy(mod)
    x = torch.randn(2, 16)
    assert torch.equal(twin(x), mod(x))
    assert twin.packed.values.data_ptr() != mod.packed.values.data_ptr()
    assert twin.packed.values.data_ptr() == twin.values.data_ptr()  # pack uses own buffers
    with torch.inference_mode():
        y = mod(torch.randn(2, 16))
    assert y.shape == (2, 8)


def test_forward_bad_input():
    mod = SparseLinear.from_float(_linear(8, 4))
    with pytest.raises(TypeError, match="float32"):
        mod(torch.randn(2, 8).double())
    with pytest.raises(ValueError, match="in_features=8"):
        mod(torch.randn(2, 9))
    with pytest.raises(TypeError, match="weight"):
        SparseLinear.from_float(nn.ReLU())
    with pytest.raises(ValueError, match="in_features"):
        SparseLinear(-1, 3)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 128)
        self.b = nn.Linear(128, 64)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def test_sparsify_swaps_only_sparse_layers():
    net = _Net()
    _prune_(net.a, 0.9)
    _prune_(net.b, 0.5)
    _prune_(net.head[1], 0.95)
    x = torch.randn(5, 64)
    with torch.no_grad():
        ref = net(x)
    sparsify_(net, min_sparsity=0.8)
    assert isinstance(net.a, SparseLinear) and type(net.b) is nn.Linear
    assert isinstance(net.head[1], SparseLinear)
    assert torch.allclose(net(x), ref, rtol=1e-4, atol=1e-5)


def test_sparsify_filter_fn_and_quantize():
    net = _Net()
    for lin in (net.a, net.b, net.head[1]):
        _prune_(lin, 0.9)
    seen = []
    sparsify_(net, min_sparsity=0.5, quantize=True,
              filter_fn=lambda m, name: seen.append(name) or name != "b")
    assert sorted(seen) == ["a", "b", "head.1"]
    assert isinstance(net.a, SparseQuantLinear) and isinstance(net.head[1], SparseQuantLinear)
    assert type(net.b) is nn.Linear


def test_sparsify_bad_args_and_default_threshold():
    with pytest.raises(TypeError, match="model"):
        sparsify_(object())
    with pytest.raises(ValueError, match="min_sparsity"):
        sparsify_(_Net(), min_sparsity=1.5)
    with pytest.raises(TypeError, match="filter_fn"):
        sparsify_(_Net(), min_sparsity=0.5, filter_fn=3)
    t = break_even_sparsity()
    assert 0.5 <= t <= 0.98
    assert 0.5 <= break_even_sparsity(quantized=True) <= 0.98
    net = _Net()  # dense layers (0% sparsity) are never below any threshold in range
    sparsify_(net)
    assert type(net.a) is nn.Linear


def test_sparsify_rows_bad_values():
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="rows"):
            sparsify_(_Net(), rows=bad)
        with pytest.raises(ValueError, match="rows"):
            break_even_sparsity(rows=bad)


@pytest.mark.parametrize("cls", [SparseLinear, SparseQuantLinear])
def test_rows_hint_tunes_the_pack(cls):
    # from_float(rows=1) packs one K block, the default several; sparsify_ passes its rows on.
    lin = _linear(4096, 16, True, sparsity=0.9, seed=4)
    one, default = cls.from_float(lin, rows=1), cls.from_float(lin)
    assert one.packed.num_blocks == 1 and default.packed.num_blocks > 1
    x = torch.randn(3, 4096)
    torch.testing.assert_close(one(x), default(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="rows"):
        cls.from_float(lin, rows=0)
    net = nn.Sequential(lin)
    sparsify_(net, min_sparsity=0.5, quantize=cls is SparseQuantLinear, rows=1)
    assert isinstance(net[0], cls) and net[0].packed.num_blocks == 1


@pytest.mark.parametrize("quantize", [False, True])
def test_sparsify_times_layers_in_between_and_shares_the_answer(quantize):
    """Without min_sparsity: < 50% never swapped, >= 98% always, in between by the layer's own
    timing at `rows`, one timing per (kind, shape, sparsity, rows). The test checks that the
    swap follows the recorded decision, not which way the timing goes."""
    from pyquant import api_sparse
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    with torch.no_grad():
        for i, s in ((0, 0.9), (2, 0.9), (4, 0.3), (6, 0.99)):
            w = net[i].weight
            w[w.abs() <= w.abs().flatten().kthvalue(int(s * w.numel())).values] = 0.0
    api_sparse._DECISIONS.clear()
    sparsify_(net, quantize=quantize, rows=3)
    kind = "pairs" if quantize else "f32"
    assert list(api_sparse._DECISIONS) == [(kind, 256, 256, 0.9, 3)]  # layers 0 and 2 share it
    cls = pyquant.nn.SparseQuantLinear if quantize else pyquant.nn.SparseLinear
    faster = api_sparse._DECISIONS[(kind, 256, 256, 0.9, 3)]
    for i in (0, 2):
        assert isinstance(net[i], cls) == faster
    assert type(net[4]) is nn.Linear  # 30%: never
    assert isinstance(net[6], cls)  # 99%: always, untimed
    y = net(torch.randn(5, 256))
    assert y.shape == (5, 256) and bool(torch.isfinite(y).all())


def test_digits_pruned_90_sparsified_same_accuracy():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    tr, te = perm[:1400], perm[1400:]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    lins = [m for m in net if isinstance(m, nn.Linear)]

    def train(epochs, masks=None):
        for _ in range(epochs):
            for idx in torch.randperm(len(tr), generator=g).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[tr[idx]]), y[tr[idx]]).backward()
                opt.step()
                if masks:
                    with torch.no_grad():
                        for lin, mask in zip(lins, masks):
                            lin.weight.mul_(mask)

    train(10)
    for lin in lins:
        _prune_(lin, 0.9)
    masks = [(lin.weight != 0).float() for lin in lins]
    train(10, masks)  # fine-tune with the pruning masks fixed

    def accuracy(model):
        with torch.no_grad():
            return float((model(x[te]).argmax(1) == y[te]).float().mean())

    acc_dense = accuracy(net)
    assert acc_dense > 0.9, acc_dense  # a 90%-pruned MLP still learns digits
    for lin in lins:
        assert int((lin.weight == 0).sum()) >= int(0.9 * lin.weight.numel())
    sparse = sparsify_(copy.deepcopy(net), min_sparsity=0.85)
    quant = sparsify_(copy.deepcopy(net), min_sparsity=0.85, quantize=True)
    assert all(isinstance(m, SparseLinear) for m in (sparse[0], sparse[2], sparse[4]))
    assert abs(accuracy(sparse) - acc_dense) <= 1.0 / len(te)  # at most one argmax tie flips
    assert abs(accuracy(quant) - acc_dense) <= 0.02


def test_public_api():
    assert pyquant.sparsify_ is sparsify_
    assert pyquant.nn.SparseLinear is SparseLinear
    assert {"sparse_pack", "sparse_linear", "SparsePacked"} <= set(pyquant.ops.__all__)


def test_pickled_and_copied_packs_do_not_share_cached_views():
    mod = SparseLinear.from_float(_linear(16, 8, sparsity=0.5))
    x = torch.randn(2, 16)
    y0 = mod(x)  # fills the numpy-view cache of the pack
    twin = copy.deepcopy(mod)
    assert "_np_cache" not in twin.packed.__dict__ or \
        twin.packed.__dict__["_np_cache"][2].ctypes.data == twin.values.data_ptr()
    with torch.no_grad():
        mod.values.mul_(2.0)  # in place: the original's views follow its tensors
    assert torch.allclose(twin(x), y0) and not torch.allclose(mod(x), y0)
    buf = io.BytesIO()
    torch.save(mod, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(loaded(x), mod(x))


@pytest.mark.parametrize("cls", [SparseLinear, SparseQuantLinear])
def test_blocked_pack_state_dict_round_trip(cls):
    # 1024 inputs at 50%: the default pack is K-blocked (block-major entries, block_ptr).
    src = cls.from_float(_linear(1024, 24, True, sparsity=0.5, seed=2))
    assert src.packed.num_blocks > 1 and "block_ptr" in src.state_dict()
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    dst = cls(1024, 24)
    dst.load_state_dict(torch.load(buf))
    assert dst.packed.num_blocks == src.packed.num_blocks
    for m in (1, 5, 40):
        x = torch.randn(m, 1024)
        assert torch.equal(dst(x), src(x))
    # And back to a one-block pack: the stale block_ptr buffer is dropped.
    one = cls.from_float(_linear(40, 24, True, sparsity=0.5, seed=3))
    dst2 = cls(40, 24)
    dst2.load_state_dict(one.state_dict())
    assert dst2.packed.num_blocks == 1 and "block_ptr" not in dst2.state_dict()


def test_native_argument_cache_follows_buffer_changes():
    lin = _linear(20, 6, True, sparsity=0.5, seed=5)
    mod = SparseLinear.from_float(lin)
    x = torch.randn(3, 20)
    y0 = mod(x)  # builds the cached native arguments
    mod.bias = torch.zeros(6)  # a new tensor: the cache must not keep the old one
    assert torch.allclose(mod(x), y0 - lin.bias.detach(), atol=1e-6)
    other = SparseLinear.from_float(_linear(20, 6, True, sparsity=0.3, seed=6))
    mod.load_state_dict(other.state_dict())
    assert torch.equal(mod(x), other(x))
    mod.to(torch.float32)  # _apply resets the cache too
    assert torch.equal(mod(x), other(x))
    assert mod._native is not None and copy.deepcopy(mod)._native is None
