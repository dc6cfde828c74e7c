#!/usr/bin/python3
"""Prints a fedcl-sim run's summary.json as a Markdown table: one row per method, one column per
participation pattern, final test accuracy as mean ± std over seeds, and the server memory the
aggregator holds (O(d) for the FedAU family, O(N·d) for FedVARP and MIFA).

  /usr/bin/python3 tests/bench/fedau_table.py out/fedau_mlp/summary.json
"""
import json
import sys


def main(path):
    summary = json.load(open(path))
    methods, patterns, cells, memory = [], [], {}, {}
    for m in summary["methods"]:
        if m["method"] not in methods:
            methods.append(m["method"])
        if m["pattern"] not in patterns:
            patterns.append(m["pattern"])
        cells[(m["method"], m["pattern"])] = (m["final_accuracy_mean"], m["final_accuracy_std"],
                                              m["seeds"])
        memory[m["method"]] = max(memory.get(m["method"], 0), m["aggregator_bytes"])
    best = {p: max(cells[(m, p)][0] for m in methods if (m, p) in cells) for p in patterns}
    print("| method | " + " | ".join(patterns) + " | server memory |")
    print("|---|" + "---:|" * len(patterns) + "---:|")
    for m in methods:
        row = []
        for p in patterns:
            if (m, p) not in cells:
                row.append("")
                continue
            mean, std, _ = cells[(m, p)]
            text = f"{mean:.4f} ± {std:.4f}"
            row.append(f"**{text}**" if mean == best[p] else text)
        print(f"| {m} | " + " | ".join(row) + f" | {memory[m] / 1024:.0f} KiB |")
    seeds = {c[2] for c in cells.values()}
    print(f"\n{summary['clients']} clients, {summary['rounds']} rounds, seeds per cell: "
          f"{', '.join(map(str, sorted(seeds)))}; wall time {summary['wall_seconds']:.0f} s, "
          f"peak RSS {summary['peak_rss_bytes'] / 2**20:.0f} MiB.")


if __name__ == "__main__":
    main(sys.argv[1])
