"""Sparse linear vs its PyTorch / SciPy equivalents (weight 4096 x 4096, y = x @ W^T).

Two ways to run it:

* ``pytest bench/bench_sparse.py --benchmark-only`` (pytest-benchmark): one group per
  (sparsity, M) with every implementation in it.
* ``python bench/bench_sparse.py [--threads 1] [--reps 7] [--out table.md]``: the ratio tables of
  bench/RESULTS.md (unstructured, then 16 x 4 / 1 x 4 block-sparse int8, then fp32 16 x 1
  tiles), every ratio measured in one process, implementations interleaved per case,
  best of ``reps`` runs. With one thread the clock is the calling thread's CPU time
  (``time.thread_time``), which a machine shared with other jobs disturbs much less than wall
  time; with more threads it is wall time.

Implementations: fp32 dense ``F.linear`` (with ``out=``), ``torch.sparse.mm`` on a CSR
weight, ``scipy.sparse`` CSR (if installed), pyquant fp32 sparse (its pack tuned for the M it
runs at, ``sparse_pack(w, rows=M)``, and the default pack), ``ops.sparse_mm`` on the same pack
(torch.sparse.mm's op, ``W @ x^T``, from the same contiguous ``x^T``), pyquant sparse + int8
(``rows=M``), and
PyTorch's dynamic int8 ``Linear`` (``torch.ao.quantization.quantize_dynamic``, fbgemm) and
pyquant's own dense int8 ``QuantLinear`` (what a pruned-and-quantized layer competes with).
"""

from __future__ import annotations

import argparse
import time

import torch

import pyquant
from pyquant import ops

try:
    import scipy.sparse as sp
except ImportError:  # pragma: no cover
    sp = None

N = K = 4096
SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
BLOCK_SPARSITIES = (0.8, 0.9, 0.95)
MS = (1, 32, 256)


def make_weight(sparsity: float, seed: int = 0) -> torch.Tensor:
    """A 4096 x 4096 weight with the smallest-|w| ``sparsity`` fraction zeroed (magnitude pruning)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g)
    k = int(sparsity * w.numel())
    thr = w.abs().flatten().kthvalue(k).values
    w[w.abs() <= thr] = 0.0
    return w


def _dense_layers(w: torch.Tensor):
    """(nn.Linear, torch's dynamic int8 Linear, pyquant's dense int8 QuantLinear) holding w."""
    lin = torch.nn.Linear(K, N, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear},
                                                  dtype=torch.qint8)
    return lin, qlin, pyquant.nn.QuantLinear.from_float(lin)  # QuantLinear: default config


def make_block_weights(sparsity: float, seed: int = 0) -> dict:
    """The same random weight with the smallest-L1 ``sparsity`` fraction of aligned blocks
    zeroed (``prune.block_mask``): ``"1x4"`` groups of 4 inputs (the int8 pack stores quads)
    and ``"16x4"`` tiles of 16 rows x 4 inputs (quads shared by 16-row groups)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g)
    return {"1x4": w * pyquant.prune.block_mask(w, sparsity),
            "16x4": w * pyquant.prune.block_mask(w, sparsity, block=(16, 4))}


def blocked_implementations(weights: dict, m: int):
    """name -> callable for the block-sparse int8 comparison (same x as implementations)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(m, K, generator=g)
    y = torch.empty(m, N)
    quads = ops.sparse_pack(weights["1x4"], dtype=torch.int8)
    tiles = ops.sparse_pack(weights["16x4"], dtype=torch.int8)
    assert quads.is_quads and not quads.is_tiles and tiles.is_tiles
    pairs = ops.sparse_pack(weights["1x4"], dtype=torch.int8, block=1)
    _, qlin, pqlin = _dense_layers(weights["1x4"])
    return {
        "pyquant_sparse_int8_16x4": lambda: ops.sparse_linear(x, tiles, out=y),
        "pyquant_sparse_int8_1x4": lambda: ops.sparse_linear(x, quads, out=y),
        "pyquant_sparse_int8_entries": lambda: ops.sparse_linear(x, pairs, out=y),
        "pyquant_dense_int8": lambda: pqlin(x),
        "torch_dynamic_int8_dense": lambda: qlin(x),
    }


def blocked_table(threads: int, reps: int) -> str:
    """The block-sparse int8 table: 16 x 4 tiles and 1 x 4 quads against the dense int8
    layers, one process."""
    rows = []
    for s, m, t in _measure(threads, reps, BLOCK_SPARSITIES, make_block_weights,
                            blocked_implementations, "blocks "):
        q, t16 = t["pyquant_sparse_int8_1x4"], t["pyquant_sparse_int8_16x4"]
        ql, tq = t["pyquant_dense_int8"], t["torch_dynamic_int8_dense"]
        rows.append((s, m, ql / t16, ql / q, tq / t16, tq / q, t["pyquant_sparse_int8_entries"] / q,
                     t16, q, t["pyquant_sparse_int8_entries"], ql, tq))
    head = ("| sparsity (blocks) | M | 16x4 / dense int8 (pyquant QuantLinear) "
            "| 1x4 / dense int8 (pyquant QuantLinear) | 16x4 / dense int8 (torch dynamic) "
            "| 1x4 / dense int8 (torch dynamic) | 1x4 / entry-by-entry pack "
            "| 16x4 ms | 1x4 ms | entries ms | pyquant int8 ms | torch int8 ms |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {s:.0%} | {m} | {a:.2f}x | {b:.2f}x | {c:.2f}x | {d:.2f}x | {e:.2f}x "
                   f"| {f * 1e3:.2f} | {g * 1e3:.2f} | {h * 1e3:.2f} | {i * 1e3:.2f} "
                   f"| {j * 1e3:.2f} |\n"
                   for s, m, a, b, c, d, e, f, g, h, i, j in rows)
    return head + body


def make_f32_tile_weights(sparsity: float, seed: int = 0) -> dict:
    """``"16x1"``: the random weight pruned by 16 x 1 tiles (``block_mask(..., block=(16, 1))``,
    whose fp32 pack is tiles); ``"unstructured"``: :func:`make_weight` at the same sparsity."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(N, K, generator=g)
    return {"16x1": w * pyquant.prune.block_mask(w, sparsity, block=(16, 1)),
            "unstructured": make_weight(sparsity, seed)}


def f32_tile_implementations(weights: dict, m: int):
    """name -> callable for the fp32 16 x 1 tile comparison: the tile pack, dense fp32,
    torch.sparse and scipy on the same tile-pruned weight, and pyquant's CSR kernel on an
    unstructured weight of the same sparsity."""
    x, y, impls = _fp32_baselines(weights["16x1"], m)
    tiles, entries = ops.sparse_pack(weights["16x1"]), ops.sparse_pack(weights["unstructured"])
    assert tiles.is_tiles and not entries.is_tiles
    impls["pyquant_sparse_f32_16x1"] = lambda: ops.sparse_linear(x, tiles, out=y)
    impls["pyquant_sparse_f32_unstructured"] = lambda: ops.sparse_linear(x, entries, out=y)
    return impls


def f32_tile_table(threads: int, reps: int) -> str:
    """The fp32 16 x 1 tile table against dense fp32, torch.sparse / scipy on the same weight
    and the unstructured CSR kernel, one process."""
    rows = []
    for s, m, t in _measure(threads, reps, BLOCK_SPARSITIES, make_f32_tile_weights,
                            f32_tile_implementations, "f32 tiles "):
        t16, tu = t["pyquant_sparse_f32_16x1"], t["pyquant_sparse_f32_unstructured"]
        base = min(t["torch_sparse_csr"], t.get("scipy_csr", float("inf")))
        rows.append((s, m, t["dense_f32"] / t16, base / t16, tu / t16, t16, tu, t["dense_f32"],
                     t["torch_sparse_csr"], t.get("scipy_csr", float("nan"))))
    head = ("| sparsity (16x1) | M | 16x1 / dense f32 | 16x1 / best(torch.sparse, scipy) "
            "| 16x1 / unstructured sparse f32 | 16x1 ms | unstructured ms | dense f32 ms "
            "| torch.sparse ms | scipy ms |\n|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {s:.0%} | {m} | {a:.2f}x | {b:.2f}x | {c:.2f}x | {d * 1e3:.2f} "
                   f"| {e * 1e3:.2f} | {f * 1e3:.2f} | {g * 1e3:.2f} | {h * 1e3:.2f} |\n"
                   for s, m, a, b, c, d, e, f, g, h in rows)
    return head + body


def implementations(w: torch.Tensor, m: int):
    """name -> zero-argument callable computing y (or y^T) for a fixed x of m rows."""
    x, y, impls = _fp32_baselines(w, m)
    # Packs tuned for the batch they run at (rows=m: the K blocks, see ops.auto_k_block), as
    # SparseLinear.from_float(rows=...) and sparsify_(rows=...) build them; and the default
    # pack (rows=None), the one compromise layout for any M.
    packed = ops.sparse_pack(w, rows=m)
    default = ops.sparse_pack(w)
    packed8 = ops.sparse_pack(w, dtype=torch.int8, rows=m)
    _, qlin, pqlin = _dense_layers(w)
    # torch.sparse.mm's own op on the same x^T: W @ x^T -> y^T [N, m] (like with like; the
    # sparse_linear rows also transpose x in and y out).
    xt, yt = x.T.contiguous(), torch.empty(N, m)
    impls.update({
        "pyquant_sparse_f32": lambda: ops.sparse_linear(x, packed, out=y),
        "pyquant_sparse_mm_f32": lambda: ops.sparse_mm(packed, xt, out=yt),
        "pyquant_sparse_f32_default": lambda: ops.sparse_linear(x, default, out=y),
        "pyquant_sparse_int8": lambda: ops.sparse_linear(x, packed8, out=y),
        "torch_dynamic_int8_dense": lambda: qlin(x),
        "pyquant_dense_int8": lambda: pqlin(x),
    })
    return impls


def _fp32_baselines(w: torch.Tensor, m: int):
    """(x, y, impls): the fixed x of m rows, an output buffer, and the fp32 references on w:
    dense ``F.linear`` (with ``out=``), ``torch.sparse.mm`` on CSR and scipy CSR (if
    installed), the last two computing y^T from a contiguous x^T."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(m, K, generator=g)
    xt = x.T.contiguous()
    y = torch.empty(m, N)
    w_csr = w.to_sparse_csr()
    impls = {
        "dense_f32": lambda: torch.nn.functional.linear(x, w, out=y) if _has_out() else
        torch.nn.functional.linear(x, w),
        "torch_sparse_csr": lambda: torch.sparse.mm(w_csr, xt),
    }
    if sp is not None:
        w_sp = sp.csr_matrix(w.numpy())
        xt_np = xt.numpy()
        impls["scipy_csr"] = lambda: w_sp @ xt_np
    return x, y, impls


_OUT_OK = None


def _has_out() -> bool:
    global _OUT_OK
    if _OUT_OK is None:
        try:
            torch.nn.functional.linear(torch.zeros(1, 2), torch.zeros(3, 2), out=torch.empty(1, 3))
            _OUT_OK = True
        except TypeError:
            _OUT_OK = False
    return _OUT_OK


def _best(fn, reps: int, clock) -> float:
    """Best of ``reps`` back-to-back calls after a warm-up call. (Round-robin repetitions across
    a case's implementations were tried in session 12: no narrower ranges over three runs, and
    the dense int8 layers at M = 1 ran 1.7-3x slower than back to back, their 16 MB weight
    then no longer served from L3; back to back is the conservative choice for the dense
    baselines.)"""
    with torch.no_grad():
        fn()
        best = float("inf")
        for _ in range(reps):
            t0 = clock()
            fn()
            best = min(best, clock() - t0)
    return best


def _measure(threads: int, reps: int, sparsities, make, impls_of, label: str = ""):
    """Yield (sparsity, M, {name: best seconds}) for every case, implementations interleaved;
    one thread: the calling thread's CPU time, more: wall time."""
    torch.set_num_threads(threads)
    pyquant.set_num_threads(threads)
    clock = time.thread_time if threads == 1 else time.perf_counter
    for s in sparsities:
        w = make(s)
        for m in MS:
            impls = impls_of(w, m)
            t = {name: _best(fn, reps if m > 1 else 3 * reps, clock) for name, fn in impls.items()}
            print(f"{label}sparsity {s:.2f} M {m:3d}: " + ", ".join(
                f"{k} {v * 1e3:.3f} ms" for k, v in t.items()), flush=True)
            yield s, m, t


def table(threads: int, reps: int) -> str:
    """Measure every case and return the markdown ratio table."""
    rows = []
    for s, m, t in _measure(threads, reps, SPARSITIES, make_weight, implementations):
        base = min(t["torch_sparse_csr"], t.get("scipy_csr", float("inf")))
        rows.append((s, m, t["dense_f32"] / t["pyquant_sparse_f32"],
                     base / t["pyquant_sparse_f32"], base / t["pyquant_sparse_mm_f32"],
                     t["torch_dynamic_int8_dense"] / t["pyquant_sparse_int8"],
                     t["pyquant_dense_int8"] / t["pyquant_sparse_int8"],
                     t["dense_f32"] / t["pyquant_sparse_int8"],
                     t["dense_f32"] / t["pyquant_sparse_f32_default"],
                     t["dense_f32"], t["pyquant_sparse_f32"], t["pyquant_sparse_mm_f32"],
                     t["pyquant_sparse_int8"],
                     t["torch_sparse_csr"], t.get("scipy_csr", float("nan")),
                     t["torch_dynamic_int8_dense"], t["pyquant_dense_int8"]))
    head = ("| sparsity | M | sparse f32 / dense f32 | sparse f32 / best(torch.sparse, scipy) "
            "| sparse_mm f32 / best(torch.sparse, scipy) (same op) "
            "| sparse int8 / dense int8 (torch dynamic) | sparse int8 / dense int8 (pyquant "
            "QuantLinear) | sparse int8 / dense f32 | default-pack sparse f32 / dense f32 "
            "| dense f32 ms | sparse f32 ms | sparse_mm f32 ms | sparse int8 ms | torch.sparse ms "
            "| scipy ms | torch int8 ms | pyquant int8 ms |\n"
            + "|---" * 17 + "|\n")
    body = "".join(f"| {s:.0%} | {m} | {a:.2f}x | {b:.2f}x | {b2:.2f}x | {c:.2f}x | {c2:.2f}x "
                   f"| {d:.2f}x | {d2:.2f}x | {e * 1e3:.2f} | {f * 1e3:.2f} | {f2 * 1e3:.2f} "
                   f"| {g * 1e3:.2f} | {h * 1e3:.2f} | {i * 1e3:.2f} | {j * 1e3:.2f} "
                   f"| {j2 * 1e3:.2f} |\n"
                   for s, m, a, b, b2, c, c2, d, d2, e, f, f2, g, h, i, j, j2 in rows)
    return head + body


# ----------------------------------------------------------------------------- pytest-benchmark

try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    _CACHE: dict = {}

    def _bench_case(benchmark, key, build, name, group):
        """Benchmark implementation ``name`` of the case ``key`` (its implementations built by
        ``build()``; one case is cached at a time)."""
        if key not in _CACHE:
            _CACHE.clear()
            _CACHE[key] = build()
        if name not in _CACHE[key]:
            pytest.skip("scipy not installed")
        benchmark.group = group
        benchmark.extra_info.update(threads=pyquant.get_num_threads(),
                                    isa=pyquant.cpu_info()["isa"])
        with torch.no_grad():
            benchmark(_CACHE[key][name])

    _NAMES = ["dense_f32", "torch_sparse_csr", "scipy_csr", "pyquant_sparse_f32",
              "pyquant_sparse_mm_f32",
              "pyquant_sparse_f32_default", "pyquant_sparse_int8", "torch_dynamic_int8_dense",
              "pyquant_dense_int8"]

    @pytest.mark.parametrize("name", _NAMES)
    @pytest.mark.parametrize("m", MS)
    @pytest.mark.parametrize("sparsity", SPARSITIES)
    def test_sparse_linear(benchmark, sparsity, m, name):
        _bench_case(benchmark, ("unstructured", sparsity, m),
                    lambda: implementations(make_weight(sparsity), m), name,
                    f"sparse_linear 4096x4096 sparsity={sparsity} M={m}")

    @pytest.mark.parametrize("name", ["pyquant_sparse_int8_16x4", "pyquant_sparse_int8_1x4",
                                      "pyquant_sparse_int8_entries", "pyquant_dense_int8",
                                      "torch_dynamic_int8_dense"])
    @pytest.mark.parametrize("m", MS)
    @pytest.mark.parametrize("sparsity", BLOCK_SPARSITIES)
    def test_sparse_int8_blocks(benchmark, sparsity, m, name):
        _bench_case(benchmark, ("blocks", sparsity, m),
                    lambda: blocked_implementations(make_block_weights(sparsity), m), name,
                    f"sparse_int8_blocks 4096x4096 sparsity={sparsity} M={m}")

    @pytest.mark.parametrize("name", ["pyquant_sparse_f32_16x1", "pyquant_sparse_f32_unstructured",
                                      "dense_f32", "torch_sparse_csr", "scipy_csr"])
    @pytest.mark.parametrize("m", MS)
    @pytest.mark.parametrize("sparsity", BLOCK_SPARSITIES)
    def test_sparse_f32_tiles(benchmark, sparsity, m, name):
        _bench_case(benchmark, ("f32 tiles", sparsity, m),
                    lambda: f32_tile_implementations(make_f32_tile_weights(sparsity), m), name,
                    f"sparse_f32_tiles 4096x4096 sparsity={sparsity} M={m}")

    def test_call_overhead_tiny(benchmark):
        """Per-call overhead: a 16 x 16 layer, one row."""
        w = make_weight(0.9)[:16, :16].contiguous()
        packed = ops.sparse_pack(w)
        x, y = torch.randn(1, 16), torch.empty(1, 16)
        benchmark.group = "sparse_linear overhead 16x16"
        benchmark(lambda: ops.sparse_linear(x, packed, out=y))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", choices=("unstructured", "blocks", "f32tiles"), default=None,
                    help="one of the three tables")
    args = ap.parse_args()
    info = pyquant.cpu_info()
    text = f"threads={args.threads}, isa={info['isa']}, reps={args.reps}\n\n"
    if args.only in (None, "unstructured"):
        text += table(args.threads, args.reps) + "\n"
    if args.only in (None, "blocks"):
        text += blocked_table(args.threads, args.reps) + "\n"
    if args.only in (None, "f32tiles"):
        text += f32_tile_table(args.threads, args.reps)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
