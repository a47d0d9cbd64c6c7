"""Dispatch, ISA forcing and the thread-count settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import pyquant

SUPPORTED_ISAS = pyquant.supported_isas()


def test_cpu_info_names_a_kernel_for_every_op():
    info = pyquant.cpu_info()
    assert info["detected_isa"] == SUPPORTED_ISAS[-1]
    assert info["kernels"]["f32_qs8_quantize"].startswith("f32_qs8_quantize__")
    kernels = dict(info["kernels"])
    # The 7-bit GEMM has its own kernel only on AVX2; elsewhere the entry names the general one.
    seven_bit = kernels.pop("qu7qs8_gemm")
    assert seven_bit in ("qu7qs8_gemm__avx2", kernels["qu8qs8_gemm"])
    assert all(name.startswith(op + "__") for op, name in kernels.items())


_default_kernels = pyquant.cpu_info()["kernels"]


@pytest.mark.parametrize("isa_name", SUPPORTED_ISAS)
def test_set_isa_switches_kernels(isa_name):
    try:
        pyquant.set_isa(isa_name)
        info = pyquant.cpu_info()
        assert info["isa"] == isa_name
        suffix = "avx512" if isa_name in ("avx512vnni", "amx") else isa_name
        assert info["kernels"]["f32_qu8_quantize"] == f"f32_qu8_quantize__{suffix}"
    finally:
        pyquant.set_isa(SUPPORTED_ISAS[-1])


def test_set_isa_refuses_unknown_and_higher_levels():
    with pytest.raises(ValueError, match="isa must be one of"):
        pyquant.set_isa("sse9")
    order = ["scalar", "avx2", "avx512", "avx512vnni", "amx"]
    above = order[len(SUPPORTED_ISAS):]
    for name in above:
        with pytest.raises(ValueError, match="not supported by this CPU"):
            pyquant.set_isa(name)
    assert pyquant.cpu_info()["isa"] == SUPPORTED_ISAS[-1]
    with pytest.raises(TypeError, match="hw_gather must be None or a bool"):
        pyquant.set_isa(SUPPORTED_ISAS[-1], hw_gather=1)
    with pytest.raises(ValueError, match="hw_gather must be -1, 0 or 1"):
        pyquant._C.set_isa(SUPPORTED_ISAS[-1], 2)
    assert pyquant.cpu_info()["kernels"] == _default_kernels


def test_set_isa_without_hw_gather_restores_the_vendor_default():
    try:
        pyquant.set_isa(SUPPORTED_ISAS[-1], hw_gather=True)
        pyquant.set_isa(SUPPORTED_ISAS[-1])
        assert pyquant.cpu_info()["kernels"] == _default_kernels
    finally:
        pyquant.set_isa(SUPPORTED_ISAS[-1])


def _isa_in_subprocess(value):
    env = dict(os.environ, PYQUANT_ISA=value)
    out = subprocess.run([sys.executable, "-W", "always", "-c",
                          "import pyquant; print(pyquant.cpu_info()['isa'])"],
                         env=env, capture_output=True, text=True, check=True, cwd="/")
    return out.stdout.strip(), out.stderr


def test_env_var_forces_a_lower_isa_only():
    assert _isa_in_subprocess("scalar")[0] == "scalar"
    isa, err = _isa_in_subprocess("no-such-isa")
    assert isa == SUPPORTED_ISAS[-1] and "PYQUANT_ISA ignored" in err
    if SUPPORTED_ISAS[-1] != "amx":
        isa, err = _isa_in_subprocess("amx")
        assert isa == SUPPORTED_ISAS[-1] and "not supported by this CPU" in err


def test_threads_follow_torch_until_set_by_user():
    code = ("import torch, pyquant; torch.set_num_threads(1); a = pyquant.get_num_threads(); "
            "torch.set_num_threads(2); b = pyquant.get_num_threads(); pyquant.set_num_threads(1); "
            "torch.set_num_threads(2); c = pyquant.get_num_threads(); print(a, b, c)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd="/")
    assert out.stdout.split() == ["1", "2", "1"]


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="num_threads must be"):
        pyquant.set_num_threads(0)


def test_concurrent_callers_get_serial_results():
    # The GIL is released inside kernels: several Python threads may run ops at once.
    from concurrent.futures import ThreadPoolExecutor

    xs = [torch.randn(300_000, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    serial = [pyquant.ops.quantize(x, 0.02) for x in xs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda x: pyquant.ops.quantize(x, 0.02), xs * 4))
    for i, q in enumerate(parallel):
        assert torch.equal(q, serial[i % 8])


_BACKEND_SCRIPT = """
import torch, pyquant
from pyquant import ops
torch.manual_seed(0)
pyquant.set_num_threads(2)
a = torch.randint(0, 256, (64, 300), dtype=torch.uint8)
b = torch.randint(-128, 128, (300, 520), dtype=torch.int8)
x = torch.randn(3000, 700)
y = ops.quantize(x, torch.rand(3000) + 0.01, 0, axis=0, dtype=torch.int8)
print(pyquant.cpu_info()["threadpool"], int(ops.int8_matmul(a, b, 7).sum()), int(y.int().sum()))
"""


def _backend_run(env_value):
    env = {k: v for k, v in os.environ.items() if k != "PYQUANT_THREADPOOL"}
    if env_value is not None:
        env["PYQUANT_THREADPOOL"] = env_value
    out = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT], capture_output=True, text=True,
                         env=env, check=True, cwd="/")
    backend, *sums = out.stdout.split()
    return backend, sums


def test_pool_runs_on_torchs_openmp_team_with_the_same_results():
    # torch's OpenMP team is already loaded (torch is imported first): the pool borrows it,
    # unless PYQUANT_THREADPOOL=own. Both must compute the same thing on 2 threads.
    default_backend, default_sums = _backend_run(None)
    own_backend, own_sums = _backend_run("own")
    assert own_backend == "own"
    if "OpenMP" in torch.__config__.parallel_info():
        assert default_backend != "own"
    assert default_sums == own_sums


def test_set_threadpool_switches_and_validates():
    try:
        pyquant.set_threadpool("own")
        assert pyquant.cpu_info()["threadpool"] == "own"
        pyquant.set_threadpool("openmp")
        if "OpenMP" in torch.__config__.parallel_info():
            assert pyquant.cpu_info()["threadpool"] != "own"
    finally:
        pyquant.set_threadpool("openmp")
    with pytest.raises(ValueError, match="threadpool must be"):
        pyquant.set_threadpool("tbb")


_FORK_SCRIPT = """
import os, torch, pyquant
from pyquant import ops
pyquant.set_num_threads(2)
a = torch.randint(0, 256, (256, 512), dtype=torch.uint8)
b = torch.randint(-128, 128, (512, 512), dtype=torch.int8)
r = ops.int8_matmul(a, b).numpy()  # the parent's pool (or OpenMP team) has run a job
pid = os.fork()
if pid == 0:
    pyquant.set_num_threads(2)
    ok = (ops.int8_matmul(a, b).numpy() == r).all()
    print(pyquant.cpu_info()["threadpool"], flush=True)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("backend", ["openmp", "own"])
def test_forked_child_runs_on_the_caller_and_does_not_hang(backend):
    # Neither GNU OpenMP nor the parent's workers survive fork(); a hang here times out.
    env = dict(os.environ, PYQUANT_THREADPOOL=backend)
    out = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                         env=env, check=True, cwd="/", timeout=120)
    child_backend, exit_code = out.stdout.strip().splitlines()
    assert child_backend == "caller (forked child)"
    assert exit_code == "0"


def test_fast_gather_follows_the_cpu_vendor():
    # cpuid's vendor string against the kernel's own reading of it.
    try:
        with open("/proc/cpuinfo") as f:
            vendor = next(line.split(":")[1].strip() for line in f if line.startswith("vendor_id"))
    except (OSError, StopIteration):
        pytest.skip("no vendor_id in /proc/cpuinfo")
    info = pyquant.cpu_info()
    assert info["vendor"] == vendor
    assert info["features"]["fast_gather"] == (vendor != "AuthenticAMD")
