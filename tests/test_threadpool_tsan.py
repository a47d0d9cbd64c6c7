"""The thread pool under ThreadSanitizer: concurrent callers and resizes, no race, no lost task."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_threadpool_has_no_data_race_under_tsan(tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++")
    srcs = [ROOT / "tests" / "native" / "threadpool_stress.cpp", ROOT / "csrc" / "threadpool.cpp",
            ROOT / "csrc" / "ops" / "quantize.cpp", ROOT / "csrc" / "dispatch.cpp",
            ROOT / "csrc" / "cpu.cpp", *sorted((ROOT / "csrc" / "ref").glob("*.cpp"))]
    exe = tmp_path / "threadpool_stress"
    # Only the scalar kernels: the dispatch table is built for them by compiling the others out.
    stubs = tmp_path / "isa_stubs.cpp"
    stubs.write_text(_isa_stubs())
    build = subprocess.run([cxx, "-std=c++17", "-O1", "-g", "-fsanitize=thread", "-pthread",
                            f"-I{ROOT / 'csrc' / 'include'}", *map(str, srcs), str(stubs),
                            "-o", str(exe)], capture_output=True, text=True)
    if build.returncode != 0 and "tsan" in build.stderr.lower():
        pytest.skip("ThreadSanitizer runtime not available: " + build.stderr[-300:])
    assert build.returncode == 0, build.stderr[-4000:]
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66", PYQUANT_ISA="scalar")
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600)
    if "FATAL: ThreadSanitizer: unexpected memory mapping" in run.stderr:
        pytest.skip("ThreadSanitizer cannot run under this kernel's address-space layout")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-6000:]
    assert "WARNING: ThreadSanitizer" not in run.stderr
    assert run.stdout.strip().endswith(" 0 failed")


def _isa_stubs() -> str:
    """Definitions of the SIMD kernels that forward to the scalar ones (TSan build only)."""
    return """
#include "pyquant/kernels.h"
namespace pyquant {
#define PYQUANT_FORWARD(ns)                                                                     \\
  namespace ns {                                                                                \\
  bool f32_qs8_quantize(const float* x, void* y, int64_t n, float s, int32_t z) {              \\
    return ref::f32_qs8_quantize(x, y, n, s, z); }                                             \\
  bool f32_qu8_quantize(const float* x, void* y, int64_t n, float s, int32_t z) {              \\
    return ref::f32_qu8_quantize(x, y, n, s, z); }                                             \\
  bool f32_qs8_quantize_vec(const float* x, void* y, int64_t n, const float* s,               \\
                            const int32_t* z) { return ref::f32_qs8_quantize_vec(x, y, n, s, z); } \\
  bool f32_qu8_quantize_vec(const float* x, void* y, int64_t n, const float* s,               \\
                            const int32_t* z) { return ref::f32_qu8_quantize_vec(x, y, n, s, z); } \\
  void qs8_f32_dequantize(const void* q, float* y, int64_t n, float s, int32_t z) {            \\
    ref::qs8_f32_dequantize(q, y, n, s, z); }                                                  \\
  void qu8_f32_dequantize(const void* q, float* y, int64_t n, float s, int32_t z) {            \\
    ref::qu8_f32_dequantize(q, y, n, s, z); }                                                  \\
  void qs8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* s,             \\
                              const int32_t* z) { ref::qs8_f32_dequantize_vec(q, y, n, s, z); } \\
  void qu8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* s,             \\
                              const int32_t* z) { ref::qu8_f32_dequantize_vec(q, y, n, s, z); } \\
  bool f32_minmax(const float* x, int64_t n, float* mn, float* mx) {                           \\
    return ref::f32_minmax(x, n, mn, mx); }                                                    \\
  }
PYQUANT_FORWARD(avx2)
PYQUANT_FORWARD(avx512)
}
"""
