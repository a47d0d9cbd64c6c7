"""The pyquant console script: info, bench and a quick demo run, as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import pyquant
from pyquant.cli import bench_table, main

EXE = shutil.which("pyquant") or os.path.join(os.path.dirname(sys.executable), "pyquant")


def test_console_script_is_installed():
    out = subprocess.run([EXE, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("demo", "bench", "info"):
        assert cmd in out


def test_info_describes_a_saved_model(tmp_path, capsys):
    m = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        m[0].weight[:2] = 0
    path = tmp_path / "m.pq"
    pyquant.save(m, path, metadata={"note": "hello"})
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format version 1" in out and "zstd" in out and "hello" in out
    assert "torch.nn.Linear" in out and '"in_features":8' in out
    assert "0.weight" in out and "float32" in out and "50.0% nonzero" in out
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tensors"]["2.weight"]["shape"] == [2, 4]
    assert info["file_size"] == os.path.getsize(path)


def test_info_on_a_damaged_file_fails_clearly(tmp_path, capsys):
    path = tmp_path / "m.pq"
    pyquant.save(nn.Linear(4, 4), path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 1
    path.write_bytes(bytes(data))
    assert main(["info", str(path)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_bench_runs_a_bench_dir_and_prints_ratios(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "bench_toy.py").write_text(textwrap.dedent("""
        import pytest, torch

        x = torch.randn(64, 64)

        def test_toy_torch(benchmark):
            benchmark.group = "toy-matmul"
            benchmark.extra_info["impl"] = "torch.mm"
            benchmark(torch.mm, x, x)

        def test_toy_pyquant(benchmark):
            benchmark.group = "toy-matmul"
            benchmark.extra_info["impl"] = "pyquant transpose"
            benchmark(lambda: x.t().contiguous())
    """))
    proc = subprocess.run([EXE, "bench", "--path", str(bench)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("toy-matmul")]
    assert len(lines) == 2
    torch_line = next(l for l in lines if "torch.mm" in l)
    assert torch_line.rstrip().endswith("1.00x")


def test_bench_table_ratio_is_against_the_torch_entry():
    res = {"benchmarks": [
        {"group": "g", "name": "t1", "extra_info": {"impl": "torch slow"}, "stats": {"median": 4e-3}},
        {"group": "g", "name": "t2", "extra_info": {"impl": "torch fast"}, "stats": {"median": 2e-3}},
        {"group": "g", "name": "t3", "extra_info": {"impl": "pyquant"}, "stats": {"median": 5e-4}}]}
    lines = bench_table(res).splitlines()
    assert lines[2].split()[-1] == "4.00x" and "pyquant" in lines[2]  # vs the FASTEST torch
    assert lines[3].split()[-1] == "1.00x" and lines[4].split()[-1] == "0.50x"


def test_bench_without_bench_dir_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no bench"):
        main(["bench", "--path", str(tmp_path / "nope")])


@pytest.mark.slow
def test_quick_demo_produces_report_and_reloads(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([EXE, "demo", "--quick", "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bytes on disk" in proc.stdout and "fp32" in proc.stdout
    res = json.loads((out / "report.json").read_text())
    names = [r["name"] for r in res["report"]["rows"]]
    assert names[0] == "fp32" and any(n.endswith("(reloaded)") for n in names)
    assert res["checks"]["reloaded model evaluates the same"] is True
    assert len(res["students"]["plain"]) == len(res["students"]["distilled"]) == 2
    reloaded = pyquant.load(out / "model_compressed.pq")
    assert isinstance(reloaded, nn.Module)
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "sweep.csv").read_text().startswith("label,")
