"""report / sweep / recipes / the compress pipeline, on models trained on real digits."""

from __future__ import annotations

import copy
import csv
import importlib
import json

import pytest
import torch
import torch.nn.utils.parametrize as P
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import pyquant
from pyquant.compress import compress, cubic_schedule
from pyquant.distill import make_loader, seed_everything, train
from pyquant.recipe import DistillRecipe, PruneRecipe, QuantizeRecipe, Recipe, SparseRecipe
from pyquant.report import Report, count_parameters, file_size, measure_latency, report, sweep


@pytest.fixture(scope="module")
def data():
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16.0, y, test_size=0.25, stratify=y,
                                          random_state=0)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    train_ds = torch.utils.data.TensorDataset(f(xtr), torch.tensor(ytr))
    return train_ds, f(xte), torch.tensor(yte)


def mlp():
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.fixture(scope="module")
def trained(data):
    train_ds, _, _ = data
    seed_everything(0)
    m = mlp()
    train(m, make_loader(train_ds, 64), epochs=6, lr=3e-3, seed=0, progress=False)
    return m


def accuracy_fn(data):
    _, x, y = data

    def acc(model):
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()
    return acc


class _Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def magnitude_prune_for_tests(model, sparsity, recipe):
    """A test-local global magnitude pruning via parametrizations (stands in for issue 3's
    pyquant.prune inside these pipeline tests; the pipeline's logic is what is tested)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    ws = [(l.parametrizations.weight.original if P.is_parametrized(l) else l.weight) for l in layers]
    masks_old = [l.parametrizations.weight[0].mask if P.is_parametrized(l) else torch.ones_like(w)
                 for l, w in zip(layers, ws)]
    scores = torch.cat([(w.detach().abs() * m).flatten() for w, m in zip(ws, masks_old)])
    k = round(sparsity * scores.numel())
    thr = scores.kthvalue(k).values if k > 0 else torch.tensor(-1.0)
    for l, w, mo in zip(layers, ws, masks_old):
        mask = ((w.detach().abs() > thr) & (mo > 0)).float()
        if P.is_parametrized(l):
            l.parametrizations.weight[0].mask.copy_(mask)
        else:
            P.register_parametrization(l, "weight", _Mask(mask))


# ----------------------------------------------------------------------------- report


def test_count_parameters_sees_through_masks():
    m = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2, bias=False))
    assert count_parameters(m) == {"parameters": 130, "nonzeros": 130}
    with torch.no_grad():
        m[0].weight[:5] = 0
    assert count_parameters(m)["nonzeros"] == 80
    mask = torch.ones(2, 10)
    mask[0] = 0
    P.register_parametrization(m[1], "weight", _Mask(mask))
    c = count_parameters(m)
    assert c == {"parameters": 130, "nonzeros": 70}  # the mask buffer itself is not counted


def test_report_measures_real_sizes_accuracy_and_latency(data, trained, tmp_path):
    acc = accuracy_fn(data)
    small = copy.deepcopy(trained)
    with torch.no_grad():  # zero the smaller 90% of each weight: compresses well under zstd
        for l in small:
            if isinstance(l, nn.Linear):
                l.weight *= l.weight.abs() >= l.weight.abs().flatten().kthvalue(
                    int(0.9 * l.weight.numel())).values
    rep = report(small, original=trained, eval_fn=acc, example_input=data[1][:8], repeats=5)
    orig, comp = rep["original"], rep["compressed"]
    assert orig["bytes"] == file_size(trained, compression=None)
    assert comp["bytes"] == file_size(small)
    assert comp["ratio"] == pytest.approx(orig["bytes"] / comp["bytes"])
    assert comp["ratio"] > 2.5
    assert orig["parameters"] == comp["parameters"] == 64 * 128 + 128 + 128 * 10 + 10
    assert comp["sparsity"] == pytest.approx(0.9, abs=0.02)  # biases stay dense
    assert orig["accuracy"] == acc(trained) and orig["accuracy"] > 0.9
    assert orig["latency_ms"] > 0 and comp["latency_ms"] > 0 and comp["speedup"] > 0
    d = json.loads(rep.to_json(str(tmp_path / "r.json")))
    assert [r["name"] for r in d["rows"]] == ["original", "compressed"]
    table = rep.table()
    assert "bytes on disk" in table and f"{comp['bytes']:,}" in table
    assert len(table.splitlines()) == 4


def test_report_without_optional_parts():
    rep = report(nn.Linear(3, 3))
    row = rep["compressed"]
    assert row["accuracy"] is None and row["latency_ms"] is None and row["ratio"] == 1.0
    assert "-" in rep.table()
    with pytest.raises(TypeError):
        report("not a model")
    with pytest.raises(ValueError, match="repeats"):
        measure_latency([nn.Linear(2, 2)], torch.ones(1, 2), repeats=0)


def test_sweep_writes_csv_and_png(data, trained, tmp_path):
    acc = accuracy_fn(data)
    train_ds = data[0]

    def compress_fn(m, s, int8):
        r = Recipe(prune=PruneRecipe(s, "global", 1, 1), lr=1e-3, seed=0)
        m, _ = compress(m, r, train_loader=make_loader(train_ds, 64), progress=False,
                        prune_hook=magnitude_prune_for_tests)
        if int8:  # test-local fake-quant: int8 values stored as float (sizes shrink via zstd)
            with torch.no_grad():
                for l in m:
                    if isinstance(l, nn.Linear):
                        sc = (l.weight.abs().amax(1, keepdim=True) / 127).clamp_min(1e-12)
                        l.weight.copy_(torch.round(l.weight / sc) * sc)
        return m

    rows = sweep(trained, [0.5, 0.9], compress_fn, eval_fn=acc, out_dir=str(tmp_path / "sw"),
                 int8=(False, True), progress=False)
    assert len(rows) == 5 and rows[0]["label"] == "original" and rows[0]["ratio"] == 1.0
    by = {(r["sparsity"], r["int8"]): r for r in rows[1:]}
    assert by[(0.9, False)]["ratio"] > by[(0.5, False)]["ratio"] > 1
    assert by[(0.9, False)]["nonzeros"] < 0.15 * by[(0.9, False)]["parameters"]
    assert all(r["accuracy"] > 0.8 for r in rows)
    with open(tmp_path / "sw" / "sweep.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 5 and float(csv_rows[2]["ratio"]) == pytest.approx(rows[2]["ratio"])
    png = (tmp_path / "sw" / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with pytest.raises(ValueError, match="sparsities"):
        sweep(trained, [1.0], compress_fn, eval_fn=acc, out_dir=str(tmp_path))


# ----------------------------------------------------------------------------- recipes


def test_recipe_from_yaml_and_json(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "prune: {amount: 0.9, steps: 4, finetune_epochs: 2}\n"
        "distill: {enabled: true, temperature: 3.0}\nquantize: {enabled: true, mode: static}\n"
        "lr: 0.0005\n")
    r = Recipe.from_file(tmp_path / "r.yaml")
    assert r.prune == PruneRecipe(0.9, "global", 4, 2)
    assert r.distill.enabled and r.distill.temperature == 3.0 and r.distill.alpha == 0.7
    assert r.quantize == QuantizeRecipe(True, "static") and r.lr == 0.0005
    (tmp_path / "r.json").write_text(json.dumps(r.to_dict()))
    assert Recipe.from_file(tmp_path / "r.json") == r


@pytest.mark.parametrize("data, match", [
    ({"prune": {"amount": 1.0}}, "prune.amount"), ({"prune": {"amont": 0.5}}, "amont"),
    ({"quantize": {"mode": "fp4"}}, "quantize.mode"), ({"bogus": 1}, "bogus"),
    ({"distill": {"alpha": 2}}, "distill.alpha"), ({"prune": {"steps": 0}}, "prune.steps"),
    ({"sparse": {"rows": 0}}, "sparse.rows"), ({"sparse": {"rows": True}}, "sparse.rows")])
def test_recipe_errors_name_the_key(data, match):
    with pytest.raises(ValueError, match=match):
        Recipe.from_dict(data)


def test_recipe_file_errors(tmp_path):
    (tmp_path / "r.txt").write_text("{}")
    with pytest.raises(ValueError, match="yaml"):
        Recipe.from_file(tmp_path / "r.txt")
    (tmp_path / "bad.yaml").write_text("prune: [unclosed\n")
    with pytest.raises(ValueError, match="cannot parse"):
        Recipe.from_file(tmp_path / "bad.yaml")


# ----------------------------------------------------------------------------- pipeline


def test_cubic_schedule():
    s = cubic_schedule(0.9, 4)
    assert len(s) == 4 and s[-1] == pytest.approx(0.9)
    assert all(a < b for a, b in zip(s, s[1:]))
    steps = [b - a for a, b in zip([0.0] + s, s)]
    assert all(a > b for a, b in zip(steps, steps[1:]))  # fast first, slow at the end
    assert cubic_schedule(0.5, 1) == [0.5]


def test_compress_prunes_gradually_with_distillation_and_keeps_accuracy(data, trained):
    acc = accuracy_fn(data)
    base = acc(trained)
    seen = []

    def hook(model, s, recipe):
        seen.append(s)
        magnitude_prune_for_tests(model, s, recipe)

    recipe = Recipe(prune=PruneRecipe(0.8, "global", 3, 2),
                    distill=DistillRecipe(True, 4.0, 0.7), lr=1e-3, seed=0)
    model = copy.deepcopy(trained)
    out, rep = compress(model, recipe, train_loader=make_loader(data[0], 64), eval_fn=acc,
                        example_input=data[1][:4], progress=False, prune_hook=hook, repeats=3)
    assert out is model and not any(P.is_parametrized(m) for m in out.modules())
    assert seen == pytest.approx(cubic_schedule(0.8, 3))
    weights = torch.cat([l.weight.flatten() for l in out if isinstance(l, nn.Linear)])
    assert (weights == 0).float().mean().item() == pytest.approx(0.8, abs=0.005)
    names = [r["name"] for r in rep.rows]
    assert names == ["original", "pruned 80% (distilled)"]
    assert rep.rows[1]["accuracy"] >= base - 0.03
    assert rep.rows[1]["ratio"] > 2 and rep.rows[1]["latency_ms"] > 0
    # the original model given to compress is left as it was in the report's baseline
    assert rep.rows[0]["nonzeros"] == count_parameters(trained)["nonzeros"]


def test_compress_sparsifies_for_the_recipe_rows(data, trained, monkeypatch):
    """SparseRecipe.rows reaches sparsify_ (the packs' layout and its timing batch)."""
    C = importlib.import_module("pyquant.compress")  # the attribute is the compress function
    seen, real = {}, C.sparsify_

    def spy(model, **kw):
        seen.update(kw)
        return real(model, **kw)

    monkeypatch.setattr(C, "sparsify_", spy)
    recipe = Recipe(prune=PruneRecipe(0.9, "global", 1, 0),
                    sparse=SparseRecipe(True, min_sparsity=0.5, rows=1), seed=0)
    out, _ = compress(copy.deepcopy(trained), recipe, train_loader=make_loader(data[0], 64),
                      progress=False)
    assert seen == {"min_sparsity": 0.5, "quantize": False, "rows": 1}
    assert any(isinstance(m, pyquant.nn.SparseLinear) for m in out.modules())


def test_compress_checks_inputs(trained):
    with pytest.raises(TypeError, match="Recipe"):
        compress(trained, {"prune": {}})
    with pytest.raises(ValueError, match="train_loader"):
        compress(copy.deepcopy(trained), Recipe(prune=PruneRecipe(0.5)))


def test_compress_prunes_and_quantizes(data, trained):
    """The real prune + int8 path on a trained MLP."""
    acc = accuracy_fn(data)
    # 90% of a 9.6K-parameter MLP needs a real schedule to recover: 4 steps, 3 epochs each.
    recipe = Recipe(prune=PruneRecipe(0.9, "global", 4, 3), quantize=QuantizeRecipe(True),
                    lr=3e-3, seed=0)
    out, rep = compress(copy.deepcopy(trained), recipe, train_loader=make_loader(data[0], 64),
                        eval_fn=acc, progress=False)
    # a 38 KB model: the file's fixed ~1 KB manifest and the fp32 scales/biases weigh more than
    # on the demo CNN (where the issue's >= 10x bar is checked); the payload alone is ~14x here
    assert rep.rows[-1]["ratio"] >= 6
    assert rep.rows[-1]["nonzeros"] <= 0.15 * rep.rows[-1]["parameters"]
    assert rep.rows[-1]["accuracy"] >= acc(trained) - 0.02
