"""QuantLinear forward (activation quantization included) vs torch's dynamic int8 Linear
(quantize_dynamic, FBGEMM) and fp32 nn.Linear. One group per (shape, M, threads).

    pytest bench/bench_int8_linear.py --benchmark-json=bench/int8_linear.json
    python bench/summarize.py bench/int8_linear.json
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import pyquant


SHAPES = [(768, 768), (768, 3072), (3072, 768), (4096, 4096)]
MS = [1, 16, 128, 1024]
IMPLS = ["pyquant", "pyquant_per_row7", "torch_dynamic_int8", "torch_fp32"]

_cache = {}


def _layers(k, n):
    if (k, n) not in _cache:
        torch.manual_seed(0)
        lin = nn.Linear(k, n).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tq = torch.ao.quantization.quantize_dynamic(nn.Sequential(lin), {nn.Linear},
                                                        dtype=torch.qint8)[0]
        _cache[(k, n)] = {"torch_fp32": lin, "torch_dynamic_int8": tq,
                          "pyquant": pyquant.nn.QuantLinear.from_float(lin),
                          "pyquant_per_row7": pyquant.nn.QuantLinear.from_float(
                              lin, pyquant.Int8DynamicConfig(act="per_row7"))}
    return _cache[(k, n)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("m", MS)
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{k}x{n}" for k, n in SHAPES])
def test_linear(benchmark, run_bench, bench_threads, shape, m, impl):
    k, n = shape
    layer = _layers(k, n)[impl]
    x = torch.randn(m, k)
    benchmark.group = f"linear {k}x{n} M={m} threads={bench_threads}"

    def fn():
        with torch.inference_mode():
            return layer(x)

    run_bench(benchmark, fn, 2.0 * m * k * n, impl=impl, k=k, n=n, m=m)


@pytest.mark.parametrize("impl", IMPLS)
def test_call_overhead_tiny(benchmark, run_bench, impl):
    """Per-call overhead: a 16x16 layer at M=1 is all Python + dispatch."""
    torch.set_num_threads(1)
    pyquant.set_num_threads(1)
    layer = _layers(16, 16)[impl]
    x = torch.randn(1, 16)
    benchmark.group = "linear overhead 16x16 M=1"

    def fn():
        with torch.inference_mode():
            return layer(x)

    run_bench(benchmark, fn, 1e6, impl=impl)
