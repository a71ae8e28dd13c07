#!/usr/bin/env python3
"""The speed anchor for `fmattn generate`: byte-level greedy decoding with a KV cache, written the
way PyTorch generation loops do it (HF transformers' legacy cache). The model is the one of
lm_torch_anchor.py (4 layers, width 256, 4 heads, pre-LayerNorm, GELU-tanh MLP of 4W, tied output)
but with no position table, so it runs at any position; its weights are random and untrained.

Each step embeds the new byte of every stream; per block LN1, one qkv Linear, split heads,
torch.cat the new k, v to the cached past along the sequence, q.k^T/sqrt(d) over all cached keys,
softmax, .v, out projection, MLP; then the final LN, logits against the embedding, and the argmax
as the next byte. To time at position P without an O(P^2) prefill, the cache of every layer starts
as random keys/values of shape [streams, heads, P, d] (their values do not change the time); then
--warmup untimed and --steps timed steps run, the cache growing by one position each.

Prints one line per (position, streams), ms/byte the median step time (one byte per stream),
bytes/s counting every stream's bytes, and the cache size per stream at position P:
`torch kv-cache position P streams S: X ms/byte  Y bytes/s  cache Z MiB/stream`.

    python3 bench/generate_torch_anchor.py --positions 1024,16384 --streams 1,8 --steps 8
"""
import argparse
import math
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from lm_torch_anchor import Block as TrainingBlock  # noqa: E402  the same layers


class Block(TrainingBlock):
    """The training anchor's block, one new position at a time against a growing cache."""

    def forward(self, x, past):
        b, t, w = x.shape
        d = w // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(w, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d).transpose(1, 2) for z in (q, k, v))
        k = torch.cat((past[0], k), dim=2)
        v = torch.cat((past[1], v), dim=2)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        y = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, w)
        h = x + self.out(y)
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h)), approximate="tanh")), (k, v)


class Model(torch.nn.Module):
    def __init__(self, layers, width, heads):
        super().__init__()
        self.embedding = torch.nn.Embedding(256, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.final = torch.nn.LayerNorm(width, eps=1e-5)

    def forward(self, tokens, cache):
        x = self.embedding(tokens)
        cache = list(cache)
        for i, b in enumerate(self.blocks):
            x, cache[i] = b(x, cache[i])
        return self.final(x) @ self.embedding.weight.t(), cache


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--positions", default="1024,4096,16384,65536", help="comma list")
    ap.add_argument("--streams", default="1", help="comma list")
    ap.add_argument("--steps", type=int, default=32, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    model = Model(a.layers, a.width, a.heads).to(dtype).eval()
    d = a.width // a.heads
    for P in (int(p) for p in a.positions.split(",")):
        for S in (int(s) for s in a.streams.split(",")):
            with torch.inference_mode():
                shape = (S, a.heads, P, d)
                cache = [(torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)) for _ in model.blocks]
                tokens = torch.randint(0, 256, (S, 1))
                times = []
                for i in range(a.warmup + a.steps):
                    t0 = time.perf_counter()
                    logits, cache = model(tokens, cache)
                    tokens = logits[:, -1].argmax(dim=-1, keepdim=True)
                    if i >= a.warmup:
                        times.append(time.perf_counter() - t0)
                del cache
            step = statistics.median(times)
            mib = a.layers * 2 * a.heads * P * d * (torch.finfo(dtype).bits // 8) / 2**20
            print(f"torch kv-cache position {P} streams {S}: {step * 1e3:.3f} ms/byte  {S / step:.1f} bytes/s"
                  f"  cache {mib:.1f} MiB/stream", flush=True)


if __name__ == "__main__":
    main()
