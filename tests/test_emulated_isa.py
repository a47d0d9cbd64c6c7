"""Run the AVX-512 kernels under emulation where the CPU lacks AVX-512.

The kernels of csrc/avx512/ are compiled against SIMDe's portable versions of the intrinsics
(the `simde-py` test dependency ships the headers) and compared with the scalar oracle by
tests/native/emulated_isa_test.cpp. On an AVX-512 machine the real path is tested natively by
every other test through the `isa` fixture, and this test is skipped.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

import pyquant

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _compiler_and_simde():
    simde_py = pytest.importorskip("simde_py")
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    return cxx, simde_py


@pytest.mark.parametrize("harness, shim", [("emulated_isa_test.cpp", "simde_immintrin"),
                                           ("emulated_amx_test.cpp", "amx_immintrin")])
def test_emulation_harness_compiles_against_current_kernels(harness, shim):
    """Where the kernels run natively the emulated tests are skipped, so a kernel signature
    change could leave their harnesses stale until a CPU without the ISA runs them (it did
    once: the fp32 CSR kernel's row strides). Type-check them on every machine."""
    cxx, simde_py = _compiler_and_simde()
    cmd = [cxx, "-std=c++17", "-fsyntax-only", "-w", "-DSIMDE_NO_NATIVE",
           f"-I{ROOT / 'tests' / 'native' / shim}", f"-I{simde_py.get_include()}",
           f"-I{ROOT / 'csrc' / 'include'}", str(ROOT / "tests" / "native" / harness)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]


@pytest.mark.skipif("avx512" in pyquant.supported_isas()
                    and os.environ.get("PYQUANT_FORCE_EMULATION") != "1",
                    reason="AVX-512 runs natively here")
def test_avx512_kernels_match_scalar_under_emulation(tmp_path):
    """Skipped where AVX-512 runs natively, unless PYQUANT_FORCE_EMULATION=1."""
    cxx, simde_py = _compiler_and_simde()
    # avx2/ too: an AVX-512 kernel may hand a shape it does not specialise to the AVX2 one.
    sources = [p for isa in ("avx512vnni", "avx512", "avx2", "ref") for p in sorted((ROOT / "csrc" / isa).glob("*.cpp"))]
    exe = tmp_path / "emulated_isa_test"
    cmd = [cxx, "-std=c++17", "-O1", "-w", "-DSIMDE_NO_NATIVE",
           f"-I{ROOT / 'tests' / 'native' / 'simde_immintrin'}", f"-I{simde_py.get_include()}",
           f"-I{ROOT / 'csrc' / 'include'}", str(ROOT / "tests" / "native" / "emulated_isa_test.cpp"),
           *map(str, sources), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
    assert " 0 failed" in run.stdout


def test_amx_kernel_matches_scalar_under_emulation(tmp_path):
    """The AMX kernel with its tile intrinsics emulated (tests/native/amx_immintrin/) and the
    VNNI kernel it hands row tails and epilogues to under SIMDe. Skipped where AMX runs
    natively, unless PYQUANT_FORCE_EMULATION=1 (checks the emulated build on an AMX machine)."""
    if "amx" in pyquant.supported_isas() and os.environ.get("PYQUANT_FORCE_EMULATION") != "1":
        pytest.skip("AMX runs natively here")
    cxx, simde_py = _compiler_and_simde()
    # The AMX kernel calls the VNNI one; avx512/, avx2/ as in the test above, ref/ is the oracle.
    isas = ("amx", "avx512vnni", "avx512", "avx2", "ref")
    sources = [p for isa in isas for p in sorted((ROOT / "csrc" / isa).glob("*.cpp"))]
    exe = tmp_path / "emulated_amx_test"
    cmd = [cxx, "-std=c++17", "-O1", "-w", "-DSIMDE_NO_NATIVE",
           f"-I{ROOT / 'tests' / 'native' / 'amx_immintrin'}", f"-I{simde_py.get_include()}",
           f"-I{ROOT / 'csrc' / 'include'}",
           str(ROOT / "tests" / "native" / "emulated_amx_test.cpp"), *map(str, sources),
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    # stderr: the emulation's message when a tile instruction is misused (it aborts).
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " 0 failed" in run.stdout
