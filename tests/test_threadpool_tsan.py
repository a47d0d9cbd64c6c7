"""The thread pool under ThreadSanitizer: concurrent callers and resizes, no race, no lost task."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
# The same per-ISA flags as CMakeLists.txt: each folder's code is only run where supported.
ISA_FLAGS = {
    "ref": [],
    "avx2": ["-mavx2", "-mfma", "-mf16c", "-mbmi2"],
    "avx512": ["-mavx2", "-mfma", "-mf16c", "-mbmi2", "-mavx512f", "-mavx512bw", "-mavx512vl",
               "-mavx512dq"],
    "avx512vnni": ["-mavx2", "-mfma", "-mf16c", "-mbmi2", "-mavx512f", "-mavx512bw",
                   "-mavx512vl", "-mavx512dq", "-mavx512vnni"],
    "amx": ["-mavx2", "-mfma", "-mf16c", "-mbmi2", "-mavx512f", "-mavx512bw", "-mavx512vl",
            "-mavx512dq", "-mavx512vnni", "-mamx-tile", "-mamx-int8"],
}


def test_threadpool_has_no_data_race_under_tsan(tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++")
    jobs = [(p, []) for p in [ROOT / "tests" / "native" / "threadpool_stress.cpp",
                              CSRC / "threadpool.cpp", CSRC / "cpu.cpp", CSRC / "dispatch.cpp",
                              CSRC / "memory.cpp", *sorted((CSRC / "ops").glob("*.cpp"))]]
    jobs += [(p, flags) for isa, flags in ISA_FLAGS.items() for p in sorted((CSRC / isa).glob("*.cpp"))]
    base = [cxx, "-std=c++17", "-O1", "-g", "-fsanitize=thread", "-pthread", f"-I{CSRC / 'include'}"]

    def compile_one(i_job):
        i, (src, flags) = i_job
        obj = tmp_path / f"{i}_{src.stem}.o"
        r = subprocess.run([*base, *flags, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        return obj, r

    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        results = list(pool.map(compile_one, enumerate(jobs)))
    for _, r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    exe = tmp_path / "threadpool_stress"
    link = subprocess.run([*base, *[str(o) for o, _ in results], "-o", str(exe)],
                          capture_output=True, text=True)
    if link.returncode != 0 and "tsan" in link.stderr.lower():
        pytest.skip("ThreadSanitizer runtime not available: " + link.stderr[-300:])
    assert link.returncode == 0, link.stderr[-3000:]
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1 exitcode=66")
    run = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=600)
    if "FATAL: ThreadSanitizer: unexpected memory mapping" in run.stderr:
        pytest.skip("ThreadSanitizer cannot run under this kernel's address-space layout")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-6000:]
    assert "WARNING: ThreadSanitizer" not in run.stderr
    assert run.stdout.strip().endswith(" 0 failed")
