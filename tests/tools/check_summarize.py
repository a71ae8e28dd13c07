#!/usr/bin/env python3
"""bench/summarize.py merges rounds: each point's best time, each thread count's best ceiling,
GFLOP/s and % of ceiling recomputed; the target table reads the merged numbers."""
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = "case,threads,d,n,time_s,gflops,percent_of_ceiling,ceiling_gflops,flops,bytes_moved,resident_bytes,read_gbs\n"


def row(case, threads, n, time_s, ceiling, flops=1e9):
    gflops = flops / time_s * 1e-9
    read_gbs = 10.0 * threads
    return f"{case},{threads},64,{n},{time_s},{gflops},{100 * gflops / ceiling},{ceiling},{flops},0,0,{read_gbs}\n"


def main(summarize):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n = 2 ** 20
        # Round 1 is slow at 2 threads and has the better ceiling; round 2 the reverse.
        (folder / "bench-t2-round1.csv").write_text(HEADER + row("fma-causal", 2, n, 0.04, 150.0))
        (folder / "bench-t2-round2.csv").write_text(HEADER + row("fma-causal", 2, n, 0.02, 120.0))
        (folder / "bench-t1-round1.csv").write_text(HEADER + row("fma-causal", 1, n, 0.05, 80.0))
        (folder / "bench-t1-scaling1.csv").write_text(HEADER + row("fma-causal", 1, n, 0.038, 70.0))
        out = subprocess.run([sys.executable, summarize, str(folder)], capture_output=True, text=True, check=True).stdout
        with open(folder / "bench-t2.csv") as f:
            merged = list(csv.DictReader(f))
        assert len(merged) == 1, merged
        r = merged[0]
        assert float(r["time_s"]) == 0.02, r
        assert abs(float(r["ceiling_gflops"]) - 150.0) < 1e-9, r
        assert abs(float(r["gflops"]) - 50.0) < 1e-6, r
        assert abs(float(r["percent_of_ceiling"]) - 100 * 50.0 / 150.0) < 1e-4, r
        # 1 -> 2 threads: 0.038 s (best of round and scaling runs) / 0.02 s.
        assert "| thread scaling 1 -> 2, fma-causal n=2^20 | 1.90x | >= 1.8 | yes |" in out, out
        assert "| fma-causal n=2^20, % of ceiling | 33.3 | >= 30 | yes |" in out, out
        assert "| (for reference) GEMM ceiling 1 -> 2 threads; FMA scaling / ceiling scaling | 1.88x; 1.01 |" in out, out
        assert "| (for reference) memory read bandwidth 1 -> 2 threads | 10.0 -> 20.0 GB/s, 2.00x |" in out, out
    print("summarize: rounds merged as expected")


if __name__ == "__main__":
    main(sys.argv[1])
