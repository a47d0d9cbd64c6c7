"""What compression bought and what it cost: size on disk, sparsity, accuracy, latency.

``report`` measures one model (and its original, in the same run); ``Report`` holds rows of
measurements and prints them as a table or JSON; ``sweep`` runs a grid of sparsities (with and
without int8, through a caller-supplied compress callable) and writes a CSV and a PNG plot.

Bytes on disk are measured by really writing the model with :func:`pyquant.io.save` to a
temporary file. Latency is the median of repeated forward passes under ``torch.inference_mode``;
the model and its original are measured interleaved in the same call, so machine noise hits
both alike (compare ratios, not absolute times across runs).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from pyquant import io as _io

__all__ = ["Report", "count_parameters", "file_size", "measure_latency", "report", "sweep"]

EvalFn = Callable[[nn.Module], float]


def _effective_tensors(model: nn.Module):
    """Yield (name, tensor) for the values the model computes with (masks applied)."""
    import torch.nn.utils.parametrize as P

    for mname, m in model.named_modules():
        # tensors inside a parametrization (the unmasked original, the mask) are bookkeeping
        if ".parametrizations." in f".{mname}." or mname.startswith("parametrizations"):
            continue
        prefix = f"{mname}." if mname else ""
        names = set(m.parametrizations.keys()) if P.is_parametrized(m) else set()
        for n in names:
            yield prefix + n, getattr(m, n)
        for n, t in list(m._parameters.items()) + [
                (n, b) for n, b in m._buffers.items() if n not in m._non_persistent_buffers_set]:
            if t is not None and n not in names:
                yield prefix + n, t


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Count the values a model stores.

    Counts floating-point and 8-bit tensors among parameters and persistent buffers (int8
    weights of quantized layers count, like fp32 ones); integer index tensors of packed sparse
    layers (int16/int32/int64) and bool masks do not, and neither do BatchNorm's batch counters.
    Pruning parametrizations are looked through: a masked weight counts its masked values.

    Args:
        model: the model.

    Returns:
        ``{"parameters": n, "nonzeros": nz}``.
    """
    total = nz = 0
    for _, t in _effective_tensors(model):
        if t.is_floating_point() or t.dtype in (torch.int8, torch.uint8):
            total += t.numel()
            nz += int(torch.count_nonzero(t.detach()))
    return {"parameters": total, "nonzeros": nz}


def file_size(model: nn.Module, *, compression: Optional[str] = "zstd") -> int:
    """Bytes of ``model`` written by :func:`pyquant.io.save` (to a temporary file).

    Args:
        model: the model.
        compression: passed to :func:`pyquant.io.save`.

    Returns:
        The file size in bytes.
    """
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.pq")
        _io.save(model, path, compression=compression)
        return os.path.getsize(path)


def measure_latency(models: Sequence[nn.Module], example_input: Any, *, repeats: int = 30,
                    warmup: int = 3) -> List[float]:
    """Median forward latency (seconds) of each model, measured interleaved.

    Args:
        models: the models, run round-robin so that noise hits them alike.
        example_input: a tensor or a tuple of positional inputs.
        repeats: timed runs per model (>= 1).
        warmup: untimed runs per model first.

    Returns:
        One median per model, in seconds.

    Raises:
        ValueError: if ``repeats`` < 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    times: List[List[float]] = [[] for _ in models]
    for m in models:
        m.eval()
    with torch.inference_mode():
        for _ in range(warmup):
            for m in models:
                m(*args)
        for _ in range(repeats):
            for i, m in enumerate(models):
                t0 = time.perf_counter()
                m(*args)
                times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def _measure(name: str, model: nn.Module, *, eval_fn: Optional[EvalFn],
             compression: Optional[str]) -> Dict[str, Any]:
    row: Dict[str, Any] = {"name": name}
    row.update(count_parameters(model))
    row["sparsity"] = 1.0 - row["nonzeros"] / row["parameters"] if row["parameters"] else 0.0
    row["bytes"] = file_size(model, compression=compression)
    row["accuracy"] = float(eval_fn(model)) if eval_fn is not None else None
    return row


class Report:
    """A table of measurements, one row per model or pipeline stage.

    Each row is a dict with ``name, parameters, nonzeros, sparsity, bytes, ratio, accuracy,
    latency_ms, speedup`` (``None`` where not measured). ``ratio`` and ``speedup`` are against
    the baseline row (the first one, unless ``baseline`` names another).

    Args:
        rows: the rows (dicts as produced by :meth:`add`).
        baseline: name of the baseline row; default the first row.
    """

    COLUMNS = [("name", "stage", "{}"), ("parameters", "params", "{:,}"),
               ("nonzeros", "nonzeros", "{:,}"), ("sparsity", "sparsity", "{:.1%}"),
               ("bytes", "bytes on disk", "{:,}"), ("ratio", "ratio", "{:.2f}x"),
               ("accuracy", "accuracy", "{:.2%}"), ("latency_ms", "latency ms", "{:.3f}"),
               ("speedup", "speedup", "{:.2f}x")]

    def __init__(self, rows: Optional[Iterable[Dict[str, Any]]] = None,
                 baseline: Optional[str] = None):
        self.rows: List[Dict[str, Any]] = [dict(r) for r in rows or []]
        self.baseline = baseline
        self._recompute()

    def _base(self) -> Optional[Dict[str, Any]]:
        if not self.rows:
            return None
        if self.baseline is None:
            return self.rows[0]
        for r in self.rows:
            if r["name"] == self.baseline:
                return r
        raise KeyError(f"baseline row {self.baseline!r} not in the report")

    def _recompute(self) -> None:
        base = self._base()
        for r in self.rows:
            r.setdefault("latency_ms", None)
            b, bl = base.get("bytes"), base.get("latency_ms")
            r["ratio"] = b / r["bytes"] if b and r.get("bytes") else None
            r["speedup"] = bl / r["latency_ms"] if bl and r.get("latency_ms") else None

    def add(self, name: str, model: nn.Module, *, eval_fn: Optional[EvalFn] = None,
            latency_ms: Optional[float] = None, compression: Optional[str] = "zstd",
            **extra: Any) -> Dict[str, Any]:
        """Measure ``model`` and append it as a row.

        Args:
            name: row label.
            model: the model.
            eval_fn: ``model -> accuracy`` in [0, 1] (optional).
            latency_ms: a latency already measured (see :func:`measure_latency`).
            compression: file compression used to measure bytes on disk.
            **extra: further columns (kept in the dict/JSON, not printed).

        Returns:
            The new row.
        """
        row = _measure(name, model, eval_fn=eval_fn, compression=compression)
        row["latency_ms"] = latency_ms
        row.update(extra)
        self.rows.append(row)
        self._recompute()
        return row

    def __getitem__(self, name: str) -> Dict[str, Any]:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        """Return ``{"baseline": name, "rows": [...]}`` (JSON-serialisable)."""
        base = self._base()
        return {"baseline": base["name"] if base else None, "rows": copy.deepcopy(self.rows)}

    def to_json(self, path: Optional[str] = None) -> str:
        """Return the report as JSON, and write it to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    def table(self) -> str:
        """Return the report as an aligned text table."""
        header = [h for _, h, _ in self.COLUMNS]
        body = [[("-" if r.get(k) is None else fmt.format(r[k])) for k, _, fmt in self.COLUMNS]
                for r in self.rows]
        widths = [max(len(x) for x in col) for col in zip(header, *body)]
        line = lambda cells: "  ".join(  # noqa: E731
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        sep = "  ".join("-" * w for w in widths)
        return "\n".join([line(header), sep] + [line(b) for b in body])

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"Report({[r['name'] for r in self.rows]})"


def report(model: nn.Module, *, original: Optional[nn.Module] = None,
           eval_fn: Optional[EvalFn] = None, example_input: Any = None, repeats: int = 30,
           warmup: int = 3, compression: Optional[str] = "zstd", name: str = "compressed",
           show: bool = False) -> Report:
    """Measure a (compressed) model against its original.

    Args:
        model: the model to measure.
        original: the uncompressed model (the baseline row, measured in the same run). Its bytes
            are measured as an uncompressed pyquant file: the size of its plain fp32 weights.
        eval_fn: ``model -> accuracy`` in [0, 1].
        example_input: input for the latency measurement (skipped when ``None``).
        repeats: timed forward passes per model.
        warmup: untimed forward passes per model first.
        compression: file compression used for ``model``'s bytes on disk.
        name: label of ``model``'s row.
        show: print the table.

    Returns:
        A :class:`Report` (``.rows``, ``.table()``, ``.to_dict()``, ``.to_json()``); with
        ``original``, the first row is the baseline and ``ratio``/``speedup`` are against it.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    models = [original, model] if original is not None else [model]
    lat = (measure_latency(models, example_input, repeats=repeats, warmup=warmup)
           if example_input is not None else [None] * len(models))
    rep = Report()
    if original is not None:
        rep.add("original", original, eval_fn=eval_fn, compression=None,
                latency_ms=lat[0] * 1e3 if lat[0] is not None else None)
    rep.add(name, model, eval_fn=eval_fn, compression=compression,
            latency_ms=lat[-1] * 1e3 if lat[-1] is not None else None)
    if show:
        print(rep.table())
    return rep


def sweep(model: nn.Module, sparsities: Sequence[float],
          compress_fn: Callable[[nn.Module, float, bool], nn.Module], *,
          eval_fn: EvalFn, out_dir: str, int8: Sequence[bool] = (False, True),
          compression: Optional[str] = "zstd", progress: bool = True,
          title: str = "accuracy vs compression") -> List[Dict[str, Any]]:
    """Accuracy against compression ratio over a grid of sparsities (with/without int8).

    For every (sparsity, int8) pair, ``compress_fn(copy_of_model, sparsity, int8)`` returns a
    compressed model, which is measured (bytes on disk, accuracy). The baseline is ``model``
    itself, written as an uncompressed file. Writes ``sweep.csv`` and ``sweep.png`` to
    ``out_dir``.

    Args:
        model: the trained model (not modified: each point gets a deep copy).
        sparsities: fractions in [0, 1).
        compress_fn: ``(model, sparsity, int8) -> compressed model``; e.g. prune + fine-tune,
            then quantize if ``int8``.
        eval_fn: ``model -> accuracy`` in [0, 1].
        out_dir: directory for the CSV and the PNG (created if needed).
        int8: which int8 settings to run.
        compression: file compression for the compressed models.
        progress: show a progress bar.
        title: plot title.

    Returns:
        The rows: ``sparsity, int8, bytes, ratio, accuracy, nonzeros, parameters`` (the first
        row is the baseline, ``sparsity=0.0, int8=False, compressed=False``).

    Raises:
        ValueError: for a sparsity outside [0, 1).
    """
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsities must be in [0, 1), got {s!r}")
    os.makedirs(out_dir, exist_ok=True)
    base_bytes = file_size(model, compression=None)
    base = {"label": "original", "sparsity": 0.0, "int8": False, "bytes": base_bytes,
            "ratio": 1.0, "accuracy": float(eval_fn(model)), **count_parameters(model)}
    rows = [base]
    grid = [(s, q) for q in int8 for s in sparsities]
    it = grid
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(grid, desc="sweep", leave=False, dynamic_ncols=True)
    for s, q in it:
        m = compress_fn(copy.deepcopy(model), s, q)
        b = file_size(m, compression=compression)
        rows.append({"label": f"{s:.0%}{' + int8' if q else ''}", "sparsity": s, "int8": q,
                     "bytes": b, "ratio": base_bytes / b, "accuracy": float(eval_fn(m)),
                     **count_parameters(m)})
    fields = ["label", "sparsity", "int8", "bytes", "ratio", "accuracy", "parameters",
              "nonzeros"]
    with open(os.path.join(out_dir, "sweep.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in fields})
    _plot(rows, os.path.join(out_dir, "sweep.png"), title)
    return rows


def _plot(rows: List[Dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    base = rows[0]
    for q, style in ((False, "o-"), (True, "s-")):
        pts = sorted((r for r in rows[1:] if r["int8"] == q), key=lambda r: r["ratio"])
        if not pts:
            continue
        ax.plot([r["ratio"] for r in pts], [100 * r["accuracy"] for r in pts], style,
                label="pruned + int8" if q else "pruned (fp32)")
        for r in pts:
            ax.annotate(f"{r['sparsity']:.0%}", (r["ratio"], 100 * r["accuracy"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(100 * base["accuracy"], color="gray", ls="--", lw=1,
               label=f"original {100 * base['accuracy']:.1f}%")
    ax.axhline(100 * base["accuracy"] - 1, color="gray", ls=":", lw=1, label="original - 1 pt")
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (fp32 file bytes / compressed file bytes, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
