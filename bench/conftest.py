"""Benchmark helpers: thread count for both pyquant and torch, rounds scaled to the work."""

from __future__ import annotations

import pytest
import torch

import pyquant


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def bench_threads(request):
    old_t, old_p = torch.get_num_threads(), pyquant.get_num_threads()
    torch.set_num_threads(request.param)
    pyquant.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old_t)
    pyquant.set_num_threads(old_p)


def run(benchmark, fn, flops: float, **extra):
    """Time fn with enough rounds for ~1 s of work (at least 3), record the setup."""
    rounds = int(max(3, min(200, 1.5e10 / max(flops, 1.0))))
    benchmark.extra_info.update(extra)
    benchmark.extra_info["isa"] = pyquant.cpu_info()["isa"]
    benchmark.extra_info["threads"] = pyquant.get_num_threads()
    return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=2)


@pytest.fixture
def run_bench():
    """The ``run`` helper as a fixture (bench modules cannot import conftest in importlib mode)."""
    return run
