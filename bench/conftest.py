"""Benchmark fixtures: thread count and ISA recorded with every result."""

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
