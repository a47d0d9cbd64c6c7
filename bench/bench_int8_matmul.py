"""int8_matmul core (u8/s8 x s8 -> s32) vs torch._int_mm at M = K = N = 2048, with the clock
and the VNNI peak (vpdpbusd issue rate) measured in the same run to report int8 ops/cycle and
the fraction of that peak. ``pyquant_u8_vnni`` forces the AVX-512 VNNI kernel on an AMX machine.

    pytest bench/bench_int8_matmul.py --benchmark-json=bench/int8_matmul.json
"""

from __future__ import annotations

import pytest
import torch

import pyquant
from pyquant import _C, ops


SIZE = 2048


@pytest.fixture(scope="module")
def operands():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (SIZE, SIZE), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (SIZE, SIZE), generator=g, dtype=torch.int8)
    return a, b


@pytest.fixture
def isa_for(request):
    """Force the VNNI kernel for the *_vnni entries (skipped where the CPU lacks it)."""
    impl = request.node.callspec.params["impl"]
    if not impl.endswith("_vnni"):
        yield
        return
    if "avx512vnni" not in pyquant.supported_isas():
        pytest.skip("no AVX-512 VNNI")
    pyquant.set_isa("avx512vnni")
    yield
    pyquant.set_isa(pyquant.supported_isas()[-1])


@pytest.mark.parametrize("impl", ["pyquant", "pyquant_u8", "pyquant_u7", "pyquant_u8_vnni",
                                  "torch_int_mm"])
def test_int8_matmul(benchmark, run_bench, bench_threads, operands, impl, isa_for):
    a, b = operands
    out = torch.empty(SIZE, SIZE, dtype=torch.int32)
    if impl == "pyquant":
        fn = lambda: ops.int8_matmul(a, b, out=out)  # noqa: E731 (same int8 operands as torch)
    elif impl in ("pyquant_u8", "pyquant_u8_vnni"):
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
    peak = _C.measure_vnni_peak_gops()  # one core
    if peak:
        benchmark.extra_info["vnni_peak_gops_per_core"] = peak
        benchmark.extra_info["fraction_of_vnni_peak"] = ops_total / best / 1e9 / (peak * bench_threads)
    benchmark.extra_info["ops_per_cycle_per_thread"] = (
        ops_total / best / (0.5 * (ghz + ghz_after) * 1e9) / bench_threads)
