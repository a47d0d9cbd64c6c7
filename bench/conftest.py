"""Benchmark fixtures: thread count for both pyquant and torch, ISA recorded with every result,
rounds scaled to the work."""

from __future__ import annotations

import pytest
import torch

import pyquant


@pytest.fixture(params=[1, 2], ids=["1t", "2t"])
def threads(request):
    """Run both pyquant and PyTorch on the same number of threads."""
    old_torch, old_pq = torch.get_num_threads(), pyquant.get_num_threads()
    torch.set_num_threads(request.param)
    pyquant.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old_torch)
    pyquant.set_num_threads(old_pq)


@pytest.fixture
def record(benchmark, threads):
    """Set the group and the extra info of a benchmark: record(group, impl, bytes=None)."""

    def _record(group: str, impl: str, nbytes: int | None = None):
        benchmark.group = f"{group} [{threads}t]"
        benchmark.extra_info.update(impl=impl, threads=threads, isa=pyquant.cpu_info()["isa"])
        if nbytes is not None:
            benchmark.extra_info["bytes"] = nbytes
        return benchmark

    return _record


@pytest.fixture
def bench_threads(threads):
    """The same thread settings under the name the GEMM benchmarks use."""
    return threads


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
