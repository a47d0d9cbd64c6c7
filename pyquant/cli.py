"""The ``pyquant`` command: ``pyquant demo``, ``pyquant bench``, ``pyquant info FILE``."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["main"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from pyquant.demo import DemoConfig, run_demo

    if args.quick:
        cfg = DemoConfig.quick(args.out)
    else:
        cfg = DemoConfig(out_dir=args.out)
    if args.image_size is not None:
        cfg.image_size = args.image_size
    if args.epochs is not None:
        cfg.epochs = cfg.student_epochs = args.epochs
    if args.no_sweep:
        cfg.sweep_sparsities = ()
    if args.no_progress:
        cfg.progress = False
    run_demo(cfg)
    return 0


def _find_bench_dir(path: Optional[str]) -> str:
    candidates = [path] if path else [
        os.path.join(os.getcwd(), "bench"),
        # a source checkout installed in place: bench/ sits beside the package
        os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")]
    for c in candidates:
        if c and os.path.isdir(c):
            return c
    raise SystemExit("pyquant bench: no bench/ directory found (looked in "
                     f"{', '.join(c for c in candidates if c)}); run it from a pyquant source "
                     "checkout or pass --path")


def _impl(b: Dict[str, Any]) -> str:
    return (b.get("extra_info") or {}).get("impl") or b["name"]


def bench_table(results: Dict[str, Any]) -> str:
    """Format pytest-benchmark JSON as a table of medians and same-run ratios.

    The repo's convention (bench/conftest.py ``record(group, impl)``): in each group, every
    entry is compared with the fastest entry whose ``impl`` does not start with "pyquant"
    (PyTorch's best equivalent, measured in the same run); "vs best torch" > 1 means faster.

    Args:
        results: the parsed ``--benchmark-json`` output.

    Returns:
        The table text.
    """
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for b in results.get("benchmarks", []):
        groups.setdefault(b.get("group") or "(no group)", []).append(b)
    header = f"{'group':<44} {'implementation':<40} {'median us':>12} {'vs best torch':>14}"
    lines = [header, "-" * len(header)]
    for g in groups:
        rows = sorted(groups[g], key=lambda b: b["stats"]["median"])
        others = [b["stats"]["median"] for b in rows if not _impl(b).startswith("pyquant")]
        best = min(others) if others else None
        for b in rows:
            med = b["stats"]["median"]
            rel = f"{best / med:.2f}x" if best else "-"
            lines.append(f"{g[:44]:<44} {_impl(b)[:40]:<40} {med * 1e6:>12.1f} {rel:>14}")
    return "\n".join(lines)


def _cmd_bench(args: argparse.Namespace) -> int:
    bench_dir = _find_bench_dir(args.path)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        cmd = [sys.executable, "-m", "pytest", bench_dir, "--benchmark-only", "-q",
               "-p", "no:cacheprovider", "-o", "python_files=test_*.py bench_*.py",
               f"--benchmark-json={out}"]
        if args.k:
            cmd += ["-k", args.k]
        proc = subprocess.run(cmd + list(args.pytest_args))
        if not os.path.exists(out):
            print("pyquant bench: pytest-benchmark wrote no results (is pytest-benchmark "
                  "installed? pip install 'pyquant[test]')", file=sys.stderr)
            return proc.returncode or 1
        with open(out) as f:
            results = json.load(f)
    print(bench_table(results))
    mi = results.get("machine_info", {})
    print(f"\ncpu: {mi.get('cpu', {}).get('brand_raw', '?')}; python {mi.get('python_version')}")
    return proc.returncode


def format_info(info: Dict[str, Any], path: str) -> str:
    """Format :func:`pyquant.io.inspect` output for the terminal.

    Args:
        info: the dict returned by :func:`pyquant.io.inspect`.
        path: the file name to print.

    Returns:
        The text.
    """
    lines = [f"{path}: pyquant model file, format version {info['format_version']} "
             f"(written by pyquant {info['pyquant_version']}, torch {info['torch_version']})",
             f"  file size {info['file_size']:,} bytes; payload {info['payload_size']:,} bytes "
             f"({info['compression'] or 'uncompressed'} safetensors, {info['raw_size']:,} bytes "
             f"raw) at offset {info['payload_offset']}; sha256 {info['payload_sha256'][:16]}... "
             "verified"]
    if info.get("metadata"):
        lines.append(f"  metadata: {json.dumps(info['metadata'])}")
    lines.append("  modules:")

    def walk(spec: Dict[str, Any], name: str, depth: int) -> None:
        cfg = spec.get("config")
        cfg_s = "" if not cfg else " " + json.dumps(cfg, separators=(",", ":"))
        reg = "" if spec.get("registered") else "  (needs a template to load)"
        lines.append(f"    {'  ' * depth}{name}: {spec['type']}{cfg_s}{reg}")
        for k, v in spec.get("children", {}).items():
            walk(v, k, depth + 1)

    walk(info["model"], "<root>", 0)
    tensors = info["tensors"]
    total = sum(t["nbytes"] for t in tensors.values())
    lines.append(f"  tensors ({len(tensors)}, {total:,} bytes raw):")
    w = max((len(k) for k in tensors), default=4)
    for k, t in tensors.items():
        n = 1
        for s in t["shape"]:
            n *= s
        nz = f"{t['nonzeros'] / n:.1%} nonzero" if n else "empty"
        lines.append(f"    {k:<{w}}  {t['dtype']:<8} {str(tuple(t['shape'])):<18} "
                     f"{t['nbytes']:>12,} B  {nz}")
    return "\n".join(lines)


def _cmd_info(args: argparse.Namespace) -> int:
    from pyquant import io as pqio

    try:
        info = pqio.inspect(args.file)
    except (pqio.ModelFileError, FileNotFoundError) as err:
        print(f"pyquant info: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_info(info, args.file))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyquant`` command."""
    p = argparse.ArgumentParser(prog="pyquant", description="Make PyTorch models small and fast "
                                "on CPUs: pruning, int8, distillation.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="train, compress and report the seed CNN on sklearn digits")
    d.add_argument("--out", default="pyquant-demo", help="output directory (default: %(default)s)")
    d.add_argument("--quick", action="store_true", help="tiny smoke-test run (seconds)")
    d.add_argument("--epochs", type=int, default=None, help="override training epochs")
    d.add_argument("--image-size", type=int, default=None,
                   help="upsample the 8x8 digits to this size (default 16; 28 gives the seed "
                        "document's 64*7*7 feature map, about 3x slower)")
    d.add_argument("--no-sweep", action="store_true", help="skip the sparsity sweep")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)
    b = sub.add_parser("bench", help="run bench/ (pytest-benchmark) and print a table")
    b.add_argument("--path", default=None, help="bench directory (default: ./bench)")
    b.add_argument("-k", default=None, help="pytest -k expression")
    b.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    b.set_defaults(func=_cmd_bench)
    i = sub.add_parser("info", help="describe a saved pyquant model file")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print the full description as JSON")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``pyquant`` console script.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
