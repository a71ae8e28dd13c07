#!/usr/bin/env python3
"""Checks a bench/run.sh result folder against the performance targets; prints Markdown.

Targets (2 threads, fp32, d = 64, m = 64, p = 4): FMA at n = 2^20 >= 30 % of the measured GEMM
ceiling (causal and bidirectional); exact causal at 2^16 >= 40 %; FMA >= 100x faster than exact
at 2^16 (causal); log-log slope of time vs n from 2^18 to 2^22 <= 1.15 (linear variant <= 1.05);
thread scaling 1 -> 2 >= 1.8x at 2^20; peak RSS of a 2^22 run <= 1.35x the size of q, k, v and
the output. Only the standard library is used.

bench/run.sh writes one CSV per thread count and round (bench-t<T>-<round>.csv); they are merged
into bench-t<T>.csv first: each point's best time, each thread count's best GEMM ceiling, and
GFLOP/s and % of ceiling recomputed from those.
"""
import csv
import math
import re
import sys
from pathlib import Path


def load(path):
    rows = {}
    if not path.exists():
        return rows
    with open(path) as f:
        for r in csv.DictReader(f):
            rows[(r["case"], int(r["d"]), int(r["n"]))] = r
    return rows


def merge_rounds(folder):
    parts = {}
    for path in sorted(folder.glob("bench-t*-*.csv")):
        m = re.fullmatch(r"bench-t(\d+)-.+\.csv", path.name)
        if m:
            parts.setdefault(m.group(1), []).append(path)
    for threads, paths in parts.items():
        rows, ceiling = {}, 0.0
        for path in paths:
            with open(path) as f:
                for r in csv.DictReader(f):
                    ceiling = max(ceiling, float(r["ceiling_gflops"]))
                    key = (r["case"], r["d"], r["n"])
                    if key not in rows or float(r["time_s"]) < float(rows[key]["time_s"]):
                        rows[key] = r
        if not rows:
            continue
        fields = list(next(iter(rows.values())).keys())
        with open(folder / f"bench-t{threads}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for r in rows.values():
                gflops = float(r["flops"]) / float(r["time_s"]) * 1e-9
                r.update(gflops=f"{gflops:.6g}", ceiling_gflops=f"{ceiling:.6g}",
                         percent_of_ceiling=f"{100 * gflops / ceiling:.6g}")
                w.writerow(r)


def slope(rows, case, d, lo, hi):
    pts = [(math.log(n), math.log(float(rows[(case, d, n)]["time_s"])))
           for n in (2 ** e for e in range(lo, hi + 1)) if (case, d, n) in rows]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def main(folder):
    folder = Path(folder)
    merge_rounds(folder)
    t1, t2 = load(folder / "bench-t1.csv"), load(folder / "bench-t2.csv")
    lines = ["| target | measured | goal | met |", "|---|---|---|---|"]

    def add(name, value, goal, ok, fmt="{:.1f}"):
        shown = "n/a" if value is None else fmt.format(value)
        lines.append(f"| {name} | {shown} | {goal} | {'n/a' if value is None else ('yes' if ok else 'NO')} |")

    def pct(rows, case, n):
        r = rows.get((case, 64, n))
        return None if r is None else float(r["percent_of_ceiling"])

    any_row = next(iter(t2.values()), None)
    if any_row:
        lines.insert(0, f"GEMM ceiling (2 threads): {float(any_row['ceiling_gflops']):.1f} GFLOP/s\n")
    for case in ("fma-causal", "fma-bidirectional"):
        v = pct(t2, case, 2 ** 20)
        add(f"{case} n=2^20, % of ceiling", v, ">= 30", v is not None and v >= 30)
    v = pct(t2, "exact-causal", 2 ** 16)
    add("exact-causal n=2^16, % of ceiling", v, ">= 40", v is not None and v >= 40)
    fma, exact = t2.get(("fma-causal", 64, 2 ** 16)), t2.get(("exact-causal", 64, 2 ** 16))
    speed = float(exact["time_s"]) / float(fma["time_s"]) if fma and exact else None
    add("FMA speed-up over exact, causal n=2^16", speed, ">= 100", speed is not None and speed >= 100, "{:.0f}x")
    for case, goal in (("fma-causal", 1.15), ("fma-bidirectional", 1.15), ("linear-causal", 1.05)):
        s = slope(t2, case, 64, 18, 22)
        add(f"{case} slope log t / log n, 2^18..2^22", s, f"<= {goal}", s is not None and s <= goal, "{:.3f}")
    # Backward time against the forward's, both from the same fmattn_bench run.
    for case, sizes in (("grad-causal", (18, 20)), ("grad-bidirectional", (18, 20)), ("exact-grad-causal", (14, 16))):
        for e in sizes:
            r = t2.get((case, 64, 2 ** e))
            ratio = float(r["time_s"]) / float(r["forward_time_s"]) if r and r.get("forward_time_s") else None
            add(f"{case} n=2^{e}, backward / forward time", ratio, "<= 3", ratio is not None and ratio <= 3, "{:.2f}x")
    a, b = t1.get(("fma-causal", 64, 2 ** 20)), t2.get(("fma-causal", 64, 2 ** 20))
    scale = float(a["time_s"]) / float(b["time_s"]) if a and b else None
    add("thread scaling 1 -> 2, fma-causal n=2^20", scale, ">= 1.8", scale is not None and scale >= 1.8, "{:.2f}x")
    # What the machine itself gives: the GEMM ceiling's own 1 -> 2 thread ratio, and the kernel's
    # scaling measured against it (1.0 = it scales exactly as well as OpenBLAS sgemm).
    if a and b:
        machine = float(b["ceiling_gflops"]) / float(a["ceiling_gflops"])
        lines.append(f"| (for reference) GEMM ceiling 1 -> 2 threads; FMA scaling / ceiling scaling | "
                     f"{machine:.2f}x; {scale / machine:.2f} | - | - |")
        read = [max(float(r.get("read_gbs") or 0) for r in rows.values()) for rows in (t1, t2)]
        if min(read) > 0:
            lines.append(f"| (for reference) memory read bandwidth 1 -> 2 threads | {read[0]:.1f} -> {read[1]:.1f} GB/s, "
                         f"{read[1] / read[0]:.2f}x | - | - |")
    mem = folder / "memory-run.txt"
    if mem.exists():
        text = mem.read_text()
        m = re.search(r"peak RSS ([0-9.]+) (KiB|MiB|GiB)", text)
        n = re.search(r"n = (\d+), batch (\d+) x heads (\d+), d = (\d+)", text)
        if m and n:
            unit = {"KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}[m.group(2)]
            rss = float(m.group(1)) * unit
            tensors = 4 * int(n.group(1)) * int(n.group(2)) * int(n.group(3)) * int(n.group(4)) * 4
            ratio = rss / tensors
            add(f"peak RSS / (q,k,v,output) at n={n.group(1)}", ratio, "<= 1.35", ratio <= 1.35, "{:.3f}")
    acc = folder / "accuracy.csv"
    if acc.exists():
        with open(acc) as f:
            rows = list(csv.DictReader(f))
        lines += ["", "Sampled relative error (n = 65536, d = 64, m = 64, p = 4, average downsampling, 128 rows/head):", "",
                  "| synthetic kind | variant | O(n log n) max / mean | O(n) linear max / mean |", "|---|---|---|---|"]
        by = {(r["kind"], r["variant"], r["queries"]): r for r in rows}
        for kind in dict.fromkeys(r["kind"] for r in rows):
            for variant in ("causal", "bidirectional"):
                fine, coarse = by.get((kind, variant, "fine")), by.get((kind, variant, "coarse"))
                cell = lambda r: "n/a" if r is None else f"{float(r['max_rel_error']):.2e} / {float(r['mean_rel_error']):.2e}"
                lines.append(f"| {kind} | {variant} | {cell(fine)} | {cell(coarse)} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
