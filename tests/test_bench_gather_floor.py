"""bench/gather_floor.py's floor kernels gather what the bench says they do: the panel rows the
index stream names, once per panel, summed or weighted (checked against numpy, small case)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import pyquant

ROOT = Path(__file__).resolve().parents[1]


def _floor_module():
    path = ROOT / "bench" / "gather_floor.py"
    spec = importlib.util.spec_from_file_location("gather_floor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler")
@pytest.mark.parametrize("isa", [i for i in ("avx2", "avx512") if i in pyquant.supported_isas()])
@pytest.mark.parametrize("m", [32, 96])
def test_gather_floor_sums_the_named_rows(tmp_path, m, isa):
    """Both layouts the CPU can run (AVX2: 2 chains of 4 ymm; AVX-512: 8 chains of 2 zmm)."""
    gf = _floor_module()
    so = gf.build(isa, str(tmp_path))
    k = 300
    b = torch.randn(k, m, generator=torch.Generator().manual_seed(m))
    panels = gf.aligned_panels(b)
    assert panels.ctypes.data % 64 == 0
    # 1237 entries: not a multiple of the kernel's 8-entry step
    idx = np.random.default_rng(m).integers(0, k, size=1237).astype(np.uint16)
    out = np.empty(32, dtype=np.float32)
    so.gather_rows(panels.ctypes.data, m // 32, k, idx.ctypes.data, idx.size, out.ctypes.data)
    bn, rows = b.numpy().astype(np.float64), idx.astype(np.int64)
    want = sum(bn[rows, s * 32:(s + 1) * 32].sum(axis=0) for s in range(m // 32))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
    vals = np.random.default_rng(m + 1).standard_normal(idx.size).astype(np.float32)
    so.gather_fma(panels.ctypes.data, m // 32, k, idx.ctypes.data, vals.ctypes.data, idx.size,
                  out.ctypes.data)
    want = sum((vals[:, None] * bn[rows, s * 32:(s + 1) * 32]).sum(axis=0) for s in range(m // 32))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
