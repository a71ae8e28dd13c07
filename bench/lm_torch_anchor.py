#!/usr/bin/env python3
"""The speed anchor for `fmattn train`: the same byte-level model (4 layers, width 256, 4 heads,
pre-LayerNorm, GELU-tanh MLP of 4W, tied output, learned positions) written in PyTorch the
usual way, exact attention as matmul + causal mask + softmax, AdamW, on the CPU.

Prints one line: `torch context T batch B: X tokens/s (S timed steps, after W warm-up)`.

    python3 bench/lm_torch_anchor.py --corpus data/linux-train.bin --context 2048 --batch 4
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F


class Block(torch.nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(width, eps=1e-5)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.out = torch.nn.Linear(width, width)
        self.ln2 = torch.nn.LayerNorm(width, eps=1e-5)
        self.fc1 = torch.nn.Linear(width, 4 * width)
        self.fc2 = torch.nn.Linear(4 * width, width)

    def forward(self, x, mask):
        b, t, w = x.shape
        d = w // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(w, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d).transpose(1, 2) for z in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        s = s.masked_fill(mask[:t, :t], float("-inf"))
        y = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, w)
        h = x + self.out(y)
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h)), approximate="tanh"))


class Model(torch.nn.Module):
    def __init__(self, layers, width, heads, context):
        super().__init__()
        self.embedding = torch.nn.Embedding(256, width)
        self.position = torch.nn.Parameter(torch.randn(context, width) * 0.02)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.final = torch.nn.LayerNorm(width, eps=1e-5)
        self.register_buffer("mask", torch.triu(torch.ones(context, context, dtype=torch.bool), 1))

    def forward(self, tokens):
        x = self.embedding(tokens) + self.position[: tokens.shape[1]]
        for b in self.blocks:
            x = b(x, self.mask)
        return self.final(x) @ self.embedding.weight.t()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = np.fromfile(a.corpus, dtype=np.uint8)
    model = Model(4, 256, 4, a.context)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    T = a.context

    def step():
        starts = rng.integers(0, len(data) - T - 1, a.batch)
        w = torch.from_numpy(np.stack([data[s : s + T + 1] for s in starts]).astype(np.int64))
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - t0
    rate = a.steps * a.batch * T / seconds
    print(f"torch context {T} batch {a.batch}: {rate:.0f} tokens/s ({a.steps} timed steps, after {a.warmup} warm-up)")


if __name__ == "__main__":
    main()
