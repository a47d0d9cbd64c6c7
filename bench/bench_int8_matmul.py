"""int8_matmul core (u8/s8 x s8 -> s32) vs torch._int_mm at M = K = N = 2048, with the clock
measured in the same run to report int8 ops/cycle.

    pytest bench/bench_int8_matmul.py --benchmark-json=bench/int8_matmul.json
"""

from __future__ import annotations

import pytest
import torch

from pyquant import _C, ops


SIZE = 2048


@pytest.fixture(scope="module")
def operands():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (SIZE, SIZE), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (SIZE, SIZE), generator=g, dtype=torch.int8)
    return a, b


@pytest.mark.parametrize("impl", ["pyquant", "pyquant_u8", "pyquant_u7", "torch_int_mm"])
def test_int8_matmul(benchmark, run_bench, bench_threads, operands, impl):
    a, b = operands
    out = torch.empty(SIZE, SIZE, dtype=torch.int32)
    if impl == "pyquant":
        fn = lambda: ops.int8_matmul(a, b, out=out)  # noqa: E731 (same int8 operands as torch)
    elif impl == "pyquant_u8":
        au = a.view(torch.uint8)
        fn = lambda: ops.int8_matmul(au, b, out=out)  # noqa: E731 (the kernel's native u8 x s8)
    elif impl == "pyquant_u7":
        a7 = (a.view(torch.uint8) >> 1).contiguous()  # values 0..127: the vpmaddubsw kernel
        fn = lambda: ops.int8_matmul(a7, b, out=out)  # noqa: E731
    else:
        fn = lambda: torch._int_mm(a, b)  # noqa: E731
    benchmark.group = f"int8_matmul {SIZE}^3 threads={bench_threads}"
    ghz = _C.measure_clock_ghz()
    run_bench(benchmark, fn, 2.0 * SIZE ** 3, impl=impl, clock_ghz_before=ghz)
    ops_total = 2.0 * SIZE ** 3
    best = benchmark.stats.stats.min
    benchmark.extra_info["gops"] = ops_total / best / 1e9
    ghz_after = _C.measure_clock_ghz()
    benchmark.extra_info["clock_ghz_after"] = ghz_after
    benchmark.extra_info["ops_per_cycle_per_thread"] = (
        ops_total / best / (0.5 * (ghz + ghz_after) * 1e9) / bench_threads)
