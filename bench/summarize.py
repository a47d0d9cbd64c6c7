"""Turn a pytest-benchmark JSON file into a markdown table of medians and same-run ratios.

Usage: python bench/summarize.py RESULTS.json [--baseline-prefix torch]

In each group, every implementation's median is compared with the group's fastest entry whose
name does not start with "pyquant" (PyTorch's best equivalent measured in the same run).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def summarize(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        groups[b["group"]].append(b)
    machine = data.get("machine_info", {})
    lines = [f"CPU: {machine.get('cpu', {}).get('brand_raw', '?')}, "
             f"python {machine.get('python_version', '?')}, run {data.get('datetime', '?')}", ""]
    lines += ["| group | implementation | median | GB/s | vs best non-pyquant |",
              "|---|---|---:|---:|---:|"]
    for group, entries in groups.items():
        others = [e for e in entries if not e["extra_info"].get("impl", "").startswith("pyquant")]
        best = min((e["stats"]["median"] for e in others), default=None)
        for e in sorted(entries, key=lambda e: e["stats"]["median"]):
            med = e["stats"]["median"]
            nbytes = e["extra_info"].get("bytes")
            gbs = f"{nbytes / med / 1e9:.1f}" if nbytes else ""
            ratio = f"{best / med:.2f}x" if best else ""
            lines.append(f"| {group} | {e['extra_info'].get('impl', e['name'])} | "
                         f"{_fmt(med)} | {gbs} | {ratio} |")
    return "\n".join(lines)


def _fmt(seconds: float) -> str:
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json_file")
    print(summarize(parser.parse_args().json_file))
