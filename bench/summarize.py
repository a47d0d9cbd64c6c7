"""Print the ratio table of a pytest-benchmark JSON file: in each group, every impl's min time
relative to a base impl (default pyquant; >1 means the base is faster).

    python bench/summarize.py FILE.json [BASE_IMPL]
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def main(path: str, base: str = "pyquant") -> None:
    data = json.load(open(path))
    groups = defaultdict(dict)
    extra = {}
    for b in data["benchmarks"]:
        impl = b["extra_info"].get("impl", b["name"])
        groups[b["group"]][impl] = b["stats"]["min"]
        extra[(b["group"], impl)] = b["extra_info"]
    impls = sorted({i for g in groups.values() for i in g if i != base})
    print(f"| group | {base} ms | " + " | ".join(f"{i} / {base}" for i in impls) + " |")
    print("|---|---|" + "---|" * len(impls))
    for name in sorted(groups, key=lambda s: (s.split()[0], s)):
        g = groups[name]
        if base not in g:
            continue
        p = g[base]
        cells = [f"{g[i] / p:.2f}x" if i in g else "" for i in impls]
        print(f"| {name} | {p * 1e3:.3f} | " + " | ".join(cells) + " |")
    for (grp, impl), e in sorted(extra.items()):
        if "ops_per_cycle_per_thread" in e:
            print(f"{grp} {impl}: {e['gops']:.1f} GOPS, clock {e['clock_ghz_before']:.2f}/"
                  f"{e['clock_ghz_after']:.2f} GHz, {e['ops_per_cycle_per_thread']:.1f} ops/cycle/thread")


if __name__ == "__main__":
    main(sys.argv[1], *sys.argv[2:3])
