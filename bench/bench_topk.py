"""topk_threshold and global magnitude pruning against PyTorch, plus extra peak memory.

Run: pytest bench/bench_topk.py --benchmark-json=bench/topk.json
     python bench/summarize.py bench/topk.json      (on main, where summarize.py lives)

* topk_threshold on 10M / 50M float32 at k = 10% and 50% of n, against ``torch.kthvalue`` on
  the same |x|. torch gets |x| precomputed (outside the timing): it is timed on the select
  alone, while pyquant takes x and handles the absolute value itself.
* Global magnitude pruning of four nn.Linear(4096, 4096) to 90%: ``pyquant.prune.
  magnitude_prune_`` (in place, no masks) against ``prune.global_unstructured`` with
  ``L1Unstructured`` (which also leaves masks and weight_orig behind; its ``prune.remove`` is
  not timed). Each round starts from the same unpruned weights (restored in untimed setup).
  Extra peak memory is measured in a fresh subprocess per implementation: the rise of the
  process's peak RSS (VmHWM, reset through /proc/self/clear_refs after the weights exist)
  during the call, reported in extra_info as bytes and as a fraction of the weights' bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as tprune

import pyquant
from pyquant import ops
from pyquant import prune as pp

SIZES = {"10M": 10_000_000, "50M": 50_000_000}
KFRACS = {"k=10%": 0.1, "k=50%": 0.5}
_cache: dict = {}


@pytest.fixture
def nthreads(threads):
    """pyquant and PyTorch on the same number of threads (bench/conftest.py)."""
    return threads


def _label(benchmark, group, impl, threads, nbytes=None):
    benchmark.group = f"{group} [{threads}t]"
    benchmark.extra_info.update(impl=impl, threads=threads, isa=pyquant.cpu_info()["isa"])
    if nbytes is not None:
        benchmark.extra_info["bytes"] = nbytes


def _x(n):
    if _cache.get("n") != n:
        _cache.clear()
        x = torch.randn(n, generator=torch.Generator().manual_seed(0))
        _cache.update(n=n, x=x, ax=x.abs())
    return _cache["x"], _cache["ax"]


@pytest.mark.parametrize("kfrac", KFRACS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", ["torch.kthvalue(|x| precomputed)", "pyquant.topk_threshold"])
def test_topk_threshold(benchmark, nthreads, size, kfrac, impl):
    n = SIZES[size]
    k = int(KFRACS[kfrac] * n)
    x, ax = _x(n)
    _label(benchmark, f"topk_threshold {size} {kfrac}", impl, nthreads, 4 * n)
    if impl.startswith("torch"):
        res = benchmark.pedantic(torch.kthvalue, args=(ax, n - k + 1), rounds=3, iterations=1)
        assert float(res.values) == ops.topk_threshold(x, k)  # same answer
    else:
        res = benchmark.pedantic(ops.topk_threshold, args=(x, k), rounds=15, iterations=1,
                                 warmup_rounds=1)
        assert int((ax >= res).sum()) >= k > int((ax > res).sum())


# ----------------------------------------------------------------------------- global pruning

_MEM_SCRIPT = r"""
import json, sys, torch
from torch import nn
from torch.nn.utils import prune as tprune
import pyquant
from pyquant import prune as pp
impl, threads = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(threads); pyquant.set_num_threads(threads)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
torch.manual_seed(0)
layers = nn.ModuleList(nn.Linear(4096, 4096) for _ in range(4))
wbytes = sum(l.weight.numel() * l.weight.element_size() for l in layers)
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS to the current RSS
    reset = True
except OSError:
    reset = False
base = status("VmRSS") if reset else status("VmHWM")
if impl == "pyquant":
    pp.magnitude_prune_(layers, 0.9)
else:
    tprune.global_unstructured([(l, "weight") for l in layers],
                               pruning_method=tprune.L1Unstructured, amount=0.9)
print(json.dumps({"extra": status("VmHWM") - base, "weights": wbytes, "reset": reset}))
"""


def _extra_peak(impl: str, threads: int) -> dict:
    env = dict(os.environ)
    # cwd outside the repository: `import pyquant` must find the installed package.
    proc = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, impl, str(threads)], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def linears():
    torch.manual_seed(0)
    layers = nn.ModuleList(nn.Linear(4096, 4096) for _ in range(4))
    originals = [l.weight.detach().clone() for l in layers]
    return layers, originals


@pytest.mark.parametrize("impl", ["torch prune.global_unstructured", "pyquant.prune.magnitude_prune_"])
def test_global_prune_4x4096x4096(benchmark, nthreads, linears, impl):
    layers, originals = linears
    wbytes = sum(w.numel() * 4 for w in originals)
    _label(benchmark, "global magnitude prune 4x Linear(4096,4096) to 90%", impl, nthreads,
           wbytes)

    def restore():
        with torch.no_grad():
            for l, w in zip(layers, originals):
                if tprune.is_pruned(l):
                    tprune.remove(l, "weight")
                l.weight.copy_(w)

    if impl.startswith("torch"):
        benchmark.pedantic(
            tprune.global_unstructured, args=([(l, "weight") for l in layers],),
            kwargs=dict(pruning_method=tprune.L1Unstructured, amount=0.9),
            setup=restore, rounds=2, iterations=1)
        torch_masks = [l.weight_mask.bool().clone() for l in layers]
        restore()
        pp.magnitude_prune_(layers, 0.9)
        for l, m in zip(layers, torch_masks):
            assert torch.equal(l.weight != 0, m)  # same pruning as pyquant
        restore()
    else:
        benchmark.pedantic(pp.magnitude_prune_, args=(layers, 0.9), setup=restore, rounds=7,
                           iterations=1)
        kept = sum(int((l.weight != 0).sum()) for l in layers)
        assert kept == round(0.1 * wbytes / 4)
        restore()
    mem = _extra_peak("torch" if impl.startswith("torch") else "pyquant", nthreads)
    benchmark.extra_info.update(extra_peak_bytes=mem["extra"],
                                extra_peak_fraction_of_weights=mem["extra"] / mem["weights"],
                                peak_reset=mem["reset"])
