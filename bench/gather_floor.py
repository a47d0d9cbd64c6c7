"""How close sparse_mm is to the floor of its design: the panel-row gathers alone.

A CSR kernel with the output row in registers loads, for every nonzero, the 128-byte row of
the 32-column panel its column names (M = 32: b itself; M = 256: eight copied slabs). At 99%
sparsity on a 4096 x 4096 weight those gathers miss L1 and come from L2 at random, and
bench/native/gather_floor.c does just them, on the pack's own index stream in the op's order
(and, as "gather + FMA", with the multiply by each nonzero's weight too).
Per case, one process, best of ``reps`` back-to-back calls of each (thread CPU time, one
thread): torch.sparse.mm and scipy on CSR, ``ops.sparse_mm`` on the ``rows=M`` pack, and the
floor. ``best / floor`` is the highest ratio against the faster baseline that any kernel
gathering a panel row per nonzero could reach here. "in order" runs the floor's loop over as
many panel rows read in sequence (row i of the stream is row i mod K): the same bytes at the
rate the caches stream a whole panel (from L2 once it outgrows L1). The pack's K blocks let
part of the op's gathers hit L1, so the floor can be below it; a kernel faster than "in
order" must read the panel faster than L2 streams it.

    python bench/gather_floor.py [--reps 20] [--cases 0.7:32,0.8:32] [--out F.md]

Needs a C compiler (``cc``); builds for the ISA pyquant dispatches to.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

import pyquant
from pyquant import ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sparse import K, N, _best, _fp32_baselines, make_weight  # noqa: E402

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "gather_floor.c")
# The AVX-512 layout for pyquant's avx512 / avx512vnni / amx dispatch, the AVX2 one for avx2.
FLAGS = {"avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mfma"]}
CASES = ((0.9, 32), (0.95, 32), (0.99, 32), (0.95, 256), (0.99, 256))


def build(isa: str, workdir: str) -> ctypes.CDLL:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("gather_floor.py needs a C compiler (cc)")
    lib = os.path.join(workdir, "gather_floor.so")
    # -ffp-contract=fast: v * row + a as one FMA, as the kernels do
    flags = FLAGS.get(isa if isa in ("scalar", "avx2") else "avx512", [])
    subprocess.run([cc, "-O3", "-ffp-contract=fast", "-shared", "-fPIC", *flags, SOURCE, "-o", lib],
                   check=True)
    so = ctypes.CDLL(lib)
    so.gather_rows.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_void_p]
    so.gather_rows.restype = None
    so.gather_fma.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                              ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    so.gather_fma.restype = None
    return so


def aligned_panels(b: torch.Tensor) -> np.ndarray:
    """b [K, M] as M / 32 contiguous [K, 32] slabs in one 64-byte-aligned buffer."""
    k, m = b.shape
    raw = np.empty(k * m + 16, dtype=np.float32)
    start = (-raw.ctypes.data % 64) // 4
    buf = raw[start:start + k * m]
    for s in range(m // 32):
        buf[s * k * 32:(s + 1) * k * 32] = b[:, s * 32:(s + 1) * 32].numpy().ravel()
    return buf


def measure(so: ctypes.CDLL, sparsity: float, m: int, reps: int) -> dict:
    w = make_weight(sparsity)
    packed = ops.sparse_pack(w, rows=m)
    if packed.col_idx.dtype != torch.int16:
        raise SystemExit("the floor reads uint16 column indices (K <= 65536)")
    x, _, impls = _fp32_baselines(w, m)
    xt, yt = x.T.contiguous(), torch.empty(N, m)
    impls["pyquant_sparse_mm_f32"] = lambda: ops.sparse_mm(packed, xt, out=yt)
    panels, idx, vals = aligned_panels(xt), packed.col_idx.numpy(), packed.values.numpy()
    in_order = (np.arange(idx.size) % K).astype(np.uint16)
    out = np.empty(32, dtype=np.float32)
    impls["gather_floor"] = lambda: so.gather_rows(panels.ctypes.data, m // 32, K,
                                                   idx.ctypes.data, idx.size, out.ctypes.data)
    impls["gather_fma_floor"] = lambda: so.gather_fma(panels.ctypes.data, m // 32, K,
                                                      idx.ctypes.data, vals.ctypes.data,
                                                      idx.size, out.ctypes.data)
    impls["gather_in_order"] = lambda: so.gather_rows(panels.ctypes.data, m // 32, K,
                                                      in_order.ctypes.data, idx.size,
                                                      out.ctypes.data)
    t = {name: _best(fn, reps, time.thread_time) for name, fn in impls.items()}
    t["nnz"] = packed.nnz
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default=None)
    ap.add_argument("--cases", default=None,
                    help="sparsity:M pairs, comma-separated (default: the five of RESULTS.md)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pyquant.set_num_threads(1)
    isa = pyquant.cpu_info()["isa"]
    with tempfile.TemporaryDirectory() as tmp:
        so = build(isa, tmp)
        rows = []
        cases = CASES if args.cases is None else [
            (float(c.split(":")[0]), int(c.split(":")[1])) for c in args.cases.split(",")]
        for s, m in cases:
            t = measure(so, s, m, args.reps)
            base = min(t["torch_sparse_csr"], t.get("scipy_csr", float("inf")))
            mm, floor, fma = t["pyquant_sparse_mm_f32"], t["gather_floor"], t["gather_fma_floor"]
            seq = t["gather_in_order"]
            rows.append(f"| {s:.0%} | {m} | {base * 1e3:.3f} | {mm * 1e3:.3f} | {floor * 1e3:.3f} "
                        f"| {fma * 1e3:.3f} | {seq * 1e3:.3f} | {mm / floor:.2f} | {mm / fma:.2f} "
                        f"| {base / mm:.2f}x | {base / floor:.2f}x |\n")
            print(rows[-1], end="", flush=True)
    text = (f"threads=1, isa={isa}, reps={args.reps}\n\n"
            "| sparsity | M | best(torch.sparse, scipy) ms | sparse_mm ms | gather floor ms "
            "| gather + FMA ms | in order ms | sparse_mm / floor | sparse_mm / (gather + FMA) "
            "| best / sparse_mm | best / floor |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n" + "".join(rows))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
