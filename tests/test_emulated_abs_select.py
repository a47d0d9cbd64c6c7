"""AVX-512 magnitude-selection kernels under SIMDe emulation, where the CPU lacks AVX-512.

Same scheme as tests/test_emulated_isa.py (which provides tests/native/simde_immintrin): the
csrc/avx512/f32_abs_* kernels are compiled against SIMDe's portable intrinsics and compared
with the scalar oracle by tests/native/emulated_abs_select_test.cpp.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

import pyquant

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIM = ROOT / "tests" / "native" / "simde_immintrin"


@pytest.mark.skipif("avx512" in pyquant.supported_isas(), reason="AVX-512 runs natively here")
def test_avx512_abs_select_kernels_match_scalar_under_emulation(tmp_path):
    simde_py = pytest.importorskip("simde_py")
    if not SHIM.is_dir():
        pytest.skip("tests/native/simde_immintrin (the emulation shim) is not in this tree")
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    stems = ["f32_abs_histogram", "f32_abs_select"]
    sources = [ROOT / "csrc" / isa / f"{s}.cpp" for isa in ("avx512", "ref") for s in stems]
    exe = tmp_path / "emulated_abs_select_test"
    cmd = [cxx, "-std=c++17", "-O1", "-w", "-DSIMDE_NO_NATIVE", f"-I{SHIM}",
           f"-I{simde_py.get_include()}", f"-I{ROOT / 'csrc' / 'include'}",
           str(ROOT / "tests" / "native" / "emulated_abs_select_test.cpp"), *map(str, sources),
           "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
    assert " 0 failed" in run.stdout
