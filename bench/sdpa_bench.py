#!/usr/bin/env python3
"""What a GPU user would run instead of fmattn: PyTorch's scaled_dot_product_attention, timed at
fmattn_bench's shapes (one sequence, one head of width d, n = 2^n-min .. 2^n-max), causal and
bidirectional, forward and backward.

    python3 bench/sdpa_bench.py [--n-min 14] [--n-max 24] [--d 64,128] [--csv sdpa.csv]

Backends: FlashAttention in bf16 and fp16, the math backend in fp32 (it materialises the n x n
scores, so it stops where they no longer fit). GFLOP/s counts the useful multiply-adds of exact
attention (4·n²·d forward, half of it causal; the backward, timed alone, 2.5 times the forward),
as fmattn_bench's exact cases do. Every shape is timed after one warm-up call, best of --repeat; a shape that runs
out of memory or past --max-seconds ends that backend's sweep. Needs PyTorch >= 2.3 with CUDA.
"""
import argparse
import csv
import sys
import time


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-min", type=int, default=14)
    p.add_argument("--n-max", type=int, default=24)
    p.add_argument("--d", default="64,128")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=2.0, help="stop a sweep after a call this slow")
    p.add_argument("--csv", default="sdpa.csv")
    return p.parse_args()


def main():
    a = parse()
    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention as sdpa
    except ImportError as e:
        sys.exit(f"sdpa_bench: needs PyTorch >= 2.3 ({e})")
    if not torch.cuda.is_available():
        sys.exit("sdpa_bench: no CUDA device visible to PyTorch")
    name = torch.cuda.get_device_name()
    print(f"# sdpa: {name}, torch {torch.__version__}")
    variants = [("flash", SDPBackend.FLASH_ATTENTION, torch.bfloat16), ("flash", SDPBackend.FLASH_ATTENTION, torch.float16),
                ("math", SDPBackend.MATH, torch.float32)]
    rows = []
    for backend, kind, dtype in variants:
        for d in [int(x) for x in a.d.split(",")]:
            for causal in (True, False):
                for backward in (False, True):
                    case = f"{backend}-{str(dtype).split('.')[-1]}-{'causal' if causal else 'bidirectional'}"
                    case += "-grad" if backward else ""
                    for logn in range(a.n_min, a.n_max + 1):
                        n = 1 << logn
                        try:
                            t = time_one(torch, sdpa, sdpa_kernel, kind, dtype, n, d, causal, backward, a.repeat)
                        except torch.cuda.OutOfMemoryError:
                            print(f"{case} d={d} n=2^{logn}: out of memory, sweep ends")
                            torch.cuda.empty_cache()
                            break
                        flops = 4.0 * n * n * d * (0.5 if causal else 1.0) * (2.5 if backward else 1.0)
                        rows.append([case, d, n, t, flops / t / 1e9, str(dtype).split(".")[-1], name])
                        print(f"{case:32s} d={d:4d} n=2^{logn:2d} {t:10.5f} s {flops / t / 1e9:9.1f} GFLOP/s", flush=True)
                        if t > a.max_seconds:
                            break
    with open(a.csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "d", "n", "time_s", "gflops", "dtype", "device"])
        w.writerows(rows)


def time_one(torch, sdpa, sdpa_kernel, kind, dtype, n, d, causal, backward, repeat):
    # One head, one sequence: [batch, heads, n, d].
    q, k, v = (torch.randn(1, 1, n, d, device="cuda", dtype=dtype, requires_grad=backward) for _ in range(3))
    best = float("inf")
    with sdpa_kernel(kind):
        o = sdpa(q, k, v, is_causal=causal) if backward else None
        grad = torch.ones_like(o) if backward else None
        for i in range(repeat + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            if backward:
                torch.autograd.grad(o, (q, k, v), grad, retain_graph=True)
            else:
                sdpa(q, k, v, is_causal=causal)
            torch.cuda.synchronize()
            if i > 0:
                best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    main()
