"""pyquant.prune: parity with torch.nn.utils.prune, masks in training, schedule, real data."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as tprune

from pyquant import prune as pp


def small_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 32),
                         nn.ReLU(), nn.Unflatten(1, (1, 32)), nn.Conv1d(1, 2, 5), nn.Flatten(),
                         nn.Linear(2 * 28, 10))


def torch_layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


@pytest.mark.parametrize("amount", [0.3, 0.8, 0.97, 500])
def test_global_matches_torch(threads, amount):
    a = small_model()
    b = copy.deepcopy(a)
    reports = pp.magnitude_prune_(a, amount)
    tprune.global_unstructured([(m, "weight") for m in torch_layers(b)],
                               pruning_method=tprune.L1Unstructured, amount=amount)
    n = sum(m.weight.numel() for m in torch_layers(a))
    expected_kept = n - tprune._compute_nparams_toprune(amount, n)
    assert sum(r.kept for r in reports) == expected_kept
    for r, ma, mb in zip(reports, torch_layers(a), torch_layers(b)):
        assert torch.equal(ma.weight != 0, mb.weight_mask.bool())
        assert torch.equal(ma.weight, mb.weight)
        assert r.kept == int(mb.weight_mask.sum())
        assert r.shape == tuple(ma.weight.shape)
        assert r.sparsity == pytest.approx(1 - r.kept / r.numel)


def test_layer_scope_and_filter_match_torch():
    a = small_model()
    b = copy.deepcopy(a)
    only_linear = lambda m, name: isinstance(m, nn.Linear)  # noqa: E731
    reports = pp.magnitude_prune_(a, 0.6, scope="layer", filter_fn=only_linear)
    assert [r.name for r in reports] == ["3", "8"]
    for ma, mb in zip(torch_layers(a), torch_layers(b)):
        if isinstance(mb, nn.Linear):
            tprune.l1_unstructured(mb, "weight", 0.6)
            assert torch.equal(ma.weight != 0, mb.weight_mask.bool())
            assert int((ma.weight == 0).sum()) == round(0.6 * ma.weight.numel())
        else:
            assert torch.equal(ma.weight, mb.weight)  # filtered out: untouched


def test_errors():
    m = small_model()
    with pytest.raises(ValueError, match="scope"):
        pp.magnitude_prune_(m, 0.5, scope="model")
    with pytest.raises(ValueError, match="no prunable layer"):
        pp.magnitude_prune_(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(TypeError, match="float32"):
        pp.magnitude_prune_(nn.Linear(4, 4).double(), 0.5)


@pytest.mark.parametrize("norm,n", [("l1", 1), ("l2", 2)])
@pytest.mark.parametrize("amount", [0.25, 0.5, 2])
def test_structured_matches_ln_structured(norm, n, amount):
    a = small_model(1)
    b = copy.deepcopy(a)
    reports = pp.structured_prune_(a, amount, norm=norm)
    for r, ma, mb in zip(reports, torch_layers(a), torch_layers(b)):
        tprune.ln_structured(mb, "weight", amount, n=n, dim=0)
        assert torch.equal(ma.weight != 0, mb.weight_mask.bool())
        rows_kept = (ma.weight.reshape(ma.weight.shape[0], -1) != 0).any(1).sum()
        c = ma.weight.shape[0]
        assert int(rows_kept) == c - tprune._compute_nparams_toprune(amount, c)
        assert r.kept == int(mb.weight_mask.sum())


def test_nm_masks():
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    m = pp.nm_mask(w, 2, 4)
    groups = m.reshape(-1, 4)
    assert torch.all(groups.sum(1) == 2)
    a = w.abs().reshape(-1, 4)
    kept_min = torch.where(groups, a, torch.full_like(a, float("inf"))).min(1).values
    dropped_max = torch.where(groups, torch.zeros_like(a), a).max(1).values
    assert torch.all(kept_min >= dropped_max)
    tie = torch.ones(1, 8)
    assert pp.nm_mask(tie, 1, 4).tolist() == [[True, False, False, False] * 2]
    with pytest.raises(ValueError, match="multiple of m"):
        pp.nm_mask(torch.randn(2, 6), 2, 4)
    model = small_model()
    reports = pp.nm_prune_(model, 2, 4)
    assert [r.name for r in reports] == ["3", "8"]  # conv rows (9, 5 weights) are skipped
    for r in reports:
        assert r.kept * 2 == r.numel


def test_cubic_schedule():
    kw = dict(final_sparsity=0.8, begin_step=10, end_step=110)
    assert pp.cubic_sparsity(0, **kw) == 0.0
    assert pp.cubic_sparsity(10, **kw) == 0.0
    assert pp.cubic_sparsity(110, **kw) == pytest.approx(0.8)
    assert pp.cubic_sparsity(500, **kw) == pytest.approx(0.8)
    assert pp.cubic_sparsity(60, **kw) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    vals = [pp.cubic_sparsity(t, **kw) for t in range(10, 111)]
    assert all(b >= a for a, b in zip(vals, vals[1:]))
    with pytest.raises(ValueError):
        pp.cubic_sparsity(0, final_sparsity=0.5, begin_step=5, end_step=5)


def test_masks_persist_state_dict_deepcopy_and_permanent():
    model = small_model(3)
    reports = pp.magnitude_masks_(model, 0.7)
    masks = {k: v.clone() for k, v in pp.get_masks(model).items()}
    assert set(masks) == {"0", "3", "6", "8"}
    assert sum(int(m.sum()) for m in masks.values()) == sum(r.kept for r in reports)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x = torch.randn(16, 1, 8, 8)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    for name, m in model.named_modules():
        if name in masks:
            assert torch.all(m.weight[~masks[name]] == 0)
    # deepcopy keeps the parametrization and the masks
    clone = copy.deepcopy(model)
    assert torch.equal(clone(x), model(x))
    assert all(torch.equal(pp.get_masks(clone)[k], masks[k]) for k in masks)
    # state_dict round trip into a fresh model
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = small_model(99)
    pp.load_masked_state_dict(fresh, torch.load(buf))
    assert torch.equal(fresh(x), model(x))
    assert all(torch.equal(pp.get_masks(fresh)[k], masks[k]) for k in masks)
    # make permanent
    out = model(x)
    assert pp.make_permanent(model) == 4
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert torch.equal(model(x), out)
    for name, m in model.named_modules():
        if name in masks:
            assert isinstance(m.weight, nn.Parameter)
            assert torch.all(m.weight[~masks[name]] == 0)


def test_sensitivity_analysis_restores_model():
    model = small_model(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(8, 1, 8, 8)
    ref = model(x).detach()
    metric = lambda m: float((m(x) - ref).abs().mean())  # noqa: E731
    rows = pp.sensitivity_analysis(model, metric, sparsities=(0.0, 0.5, 0.99))
    assert len(rows) == 4 * 3
    assert {r["layer"] for r in rows} == {"0", "3", "6", "8"}
    for r in rows:
        if r["sparsity"] == 0.0:
            assert r["metric"] == r["baseline"] == 0.0
        if r["sparsity"] == 0.99:
            assert r["metric"] > 0.0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def digits():
    sklearn = pytest.importorskip("sklearn.datasets")
    d = sklearn.load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[:1400], perm[1400:]
    return x[tr], y[tr], x[te], y[te]


def train(model, x, y, epochs, *, pruner=None, lr=0.05):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            if pruner is not None:
                pruner.step()


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def test_digits_one_shot_and_gradual(digits):
    xtr, ytr, xte, yte = digits
    model = mlp()
    train(model, xtr, ytr, 8)
    dense_acc = accuracy(model, xte, yte)
    assert dense_acc > 0.9

    one_shot = copy.deepcopy(model)
    reports = pp.magnitude_prune_(one_shot, 0.8)
    n = sum(r.numel for r in reports)
    assert sum(r.kept for r in reports) == n - round(0.8 * n)
    zeros = sum(int((m.weight == 0).sum()) for m in one_shot if isinstance(m, nn.Linear))
    assert zeros == round(0.8 * n)

    # Gradual pruning during fine-tuning: masks stay applied through every optimizer step.
    gradual = copy.deepcopy(model)
    steps_per_epoch = (len(ytr) + 63) // 64
    pruner = pp.GradualPruner(gradual, 0.8, begin_step=0, end_step=4 * steps_per_epoch,
                              frequency=5)
    train(gradual, xtr, ytr, 6, pruner=pruner, lr=0.02)
    masks = pp.get_masks(gradual)
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == n - round(0.8 * n)
    for name, m in gradual.named_modules():
        if name in masks:
            assert torch.all(m.weight[~masks[name]] == 0)
    gradual_acc = accuracy(gradual, xte, yte)
    pruner.make_permanent()
    assert accuracy(gradual, xte, yte) == gradual_acc
    zeros = sum(int((m.weight == 0).sum()) for m in gradual if isinstance(m, nn.Linear))
    assert zeros >= round(0.8 * n)
    # Fine-tuning with the schedule recovers what one-shot pruning to 80% loses.
    assert gradual_acc >= accuracy(one_shot, xte, yte) - 0.01
    assert gradual_acc > 0.85


@pytest.mark.parametrize("kind", ["structured", "nm"])
def test_structured_and_nm_keep_earlier_masks(kind):
    model = small_model(5)
    pp.magnitude_masks_(model, 0.5, filter_fn=lambda m, n: isinstance(m, nn.Linear))
    before = {k: v.clone() for k, v in pp.get_masks(model).items()}
    if kind == "structured":
        pp.structured_prune_(model, 0.25, masks=True, filter_fn=lambda m, n: isinstance(m, nn.Linear))
    else:
        pp.nm_prune_(model, 2, 4, masks=True)
    after = pp.get_masks(model)
    for k, v in before.items():
        assert not torch.any(after[k] & ~v)  # nothing pruned earlier comes back
        assert int(after[k].sum()) < int(v.sum())
