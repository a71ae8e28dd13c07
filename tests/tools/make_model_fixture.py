#!/usr/bin/env python3
"""Writes a small model checkpoint (schema fmattn-model/1, the layout `fmattn train` writes) for
the tests of tools/fmattn-analyze.

    make_model_fixture.py [--broken] [--without-params] [--method exact|fma|local]
                          [--downsampling average|learned] [--dtype float32|float64]
                          [--positions learned|none] OUT.h5

The model: 2 layers, width 16, 2 heads (head_dim 8), context 32, vocab 256; by default FMA with
learned downsampling, block_size 4, rank 2, so the padded length is 32 and there are 2 coarse
levels with cells w_1 = 4 and w_2 = 8 (per block: downsampling/{k,v}/level_0l/weight [2][w_l][8],
bias [2][8], initialised to the average operator plus a small perturbation). 50 steps of a
falling training loss (bits per byte), validation every 10 steps, tokens/s per step. With
--broken the dataset train/loss is left out, with --without-params the group params: the tool
must refuse such a file with exit status 2. Without --positions the file has no attribute
`positions` and a position table, as checkpoints made before the attribute existed; with
--positions none it has neither the table nor its optimizer moments.
Needs numpy and h5py (it re-runs itself with an interpreter that has them, like the tool).
Exit 0 on success, 2 on bad arguments, 1 on other failures.
"""

import argparse
import importlib.util
import os
import subprocess
import sys


def ensure_modules(modules=("numpy", "h5py")):
    """Re-runs this script with an interpreter that has `modules` ($FMATTN_PYTHON,
    /usr/bin/python3, then the python3 executables on PATH), as tools/fmattn-analyze does."""
    if all(importlib.util.find_spec(m) is not None for m in modules) or os.environ.get("FMATTN_FIXTURE_REEXEC"):
        return
    check = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) is None for m in %r))" % (
        list(modules),)
    names = [os.environ.get("FMATTN_PYTHON", ""), "/usr/bin/python3"]
    names += [os.path.join(d, "python3") for d in os.environ.get("PATH", "").split(os.pathsep)]
    me = os.path.realpath(sys.executable)
    for python in names:
        if not python or not os.access(python, os.X_OK) or os.path.realpath(python) == me:
            continue
        if subprocess.run([python, "-c", check], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            os.environ["FMATTN_FIXTURE_REEXEC"] = "1"
            os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])
    sys.exit("make_model_fixture.py: error: no Python interpreter with %s found (set FMATTN_PYTHON)"
             % " and ".join(modules))


ensure_modules()

import h5py  # noqa: E402
import numpy as np  # noqa: E402

LAYERS, WIDTH, HEADS, CONTEXT, VOCAB = 2, 16, 2, 32, 256
BLOCK_SIZE, RANK = 4, 2
STEPS, EVAL_EVERY, SEED = 50, 10, 7

DECK = """run:
  name: model-fixture
  seed: 7
attention:
  method: {method}
  variant: causal
  block_size: 4
  rank: 2
  downsampling: {downsampling}
  count_weighting: true
  boundary: skip
  queries: fine
model:
  layers: 2
  width: 16
  heads: 2
  context: 32
  dtype: {dtype}
data:
  train: data/fixture-train.bin
  val: data/fixture-val.bin
train:
  steps: 50
  batch: 4
  learning_rate: 1.0e-3
  eval_every: 10
  checkpoint_file: results/model.h5
"""


def string_attr(obj, name, value):
    """A fixed-length UTF-8 string attribute, as the library writes them."""
    data = value.encode("utf-8")
    obj.attrs.create(name, np.array(data, dtype=h5py.string_dtype("utf-8", max(1, len(data)))))


def levels(context, m):
    """Cell sizes w_l = m·2^(l-1), l = 1..L, L = max(0, log2(N/m) - 1), N the padded length."""
    n = m
    while n < context:
        n *= 2
    count = max(0, int(np.log2(n // m)) - 1)
    return [m * 2 ** (l - 1) for l in range(1, count + 1)]


def parameters(rng, dtype, learned, positions):
    """{relative path: array} of every parameter of the model."""
    w, d = WIDTH, WIDTH // HEADS
    p = {"embedding": rng.normal(0, 0.02, (VOCAB, w))}
    if positions:
        p["position"] = rng.normal(0, 0.02, (CONTEXT, w))
    for b in range(LAYERS):
        block = "block_%02d/" % b
        for name in ("ln1_gain", "ln2_gain"):
            p[block + name] = np.ones(w)
        for name in ("ln1_bias", "bq", "bk", "bv", "bo", "ln2_bias", "b2"):
            p[block + name] = np.zeros(w)
        for name in ("wq", "wk", "wv", "wo"):
            p[block + name] = rng.normal(0, 0.02, (w, w))
        p[block + "w1"] = rng.normal(0, 0.02, (w, 4 * w))
        p[block + "b1"] = np.zeros(4 * w)
        p[block + "w2"] = rng.normal(0, 0.02, (4 * w, w))
        if learned:
            for g in ("k", "v"):
                for l, wl in enumerate(levels(CONTEXT, BLOCK_SIZE), start=1):
                    seg = wl // RANK
                    weight = np.zeros((RANK, wl, d))
                    for r in range(RANK):
                        weight[r, r * seg:(r + 1) * seg, :] = 1.0 / seg
                    weight += rng.normal(0, 0.01, weight.shape)
                    prefix = block + "downsampling/%s/level_%02d/" % (g, l)
                    p[prefix + "weight"] = weight
                    p[prefix + "bias"] = rng.normal(0, 0.001, (RANK, d))
    p["final_norm/gain"] = np.ones(w)
    p["final_norm/bias"] = np.zeros(w)
    return {k: v.astype(dtype) for k, v in p.items()}


def main(argv):
    parser = argparse.ArgumentParser(description="Writes a small fmattn model checkpoint for the tests.")
    parser.add_argument("out", metavar="OUT.h5")
    parser.add_argument("--broken", action="store_true", help="leave out the dataset train/loss")
    parser.add_argument("--without-params", action="store_true", help="leave out the group params")
    parser.add_argument("--method", choices=("exact", "fma", "local"), default="fma")
    parser.add_argument("--downsampling", choices=("average", "learned"), default="learned")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--positions", choices=("learned", "none"))
    args = parser.parse_args(argv)
    learned = args.method == "fma" and args.downsampling == "learned"
    rng = np.random.default_rng(SEED)

    with h5py.File(args.out, "w") as f:
        string_attr(f, "schema", "fmattn-model/1")
        string_attr(f, "fmattn_version", "0.0.0-test")
        string_attr(f, "git_commit", "0123456789abcdef0123456789abcdef01234567")
        string_attr(f, "created", "2024-01-01T00:00:00Z")
        string_attr(f, "deck", DECK.format(method=args.method, downsampling=args.downsampling, dtype=args.dtype))
        string_attr(f, "kokkos_backend", "OpenMP")
        f.attrs.create("mpi_ranks", np.int64(2))
        for name, value in (("step", STEPS), ("layers", LAYERS), ("width", WIDTH), ("heads", HEADS),
                            ("context", CONTEXT), ("vocab", VOCAB), ("block_size", BLOCK_SIZE), ("rank", RANK)):
            f.attrs.create(name, np.int64(value))
        string_attr(f, "dtype", args.dtype)
        string_attr(f, "method", args.method)
        string_attr(f, "downsampling", args.downsampling)
        if args.positions:
            string_attr(f, "positions", args.positions)

        params = parameters(rng, args.dtype, learned, args.positions != "none")
        for path, value in params.items():
            if not args.without_params:
                f.create_dataset("params/" + path, data=value)
            for moment in ("moment1", "moment2"):
                scale = 1e-3 if moment == "moment1" else 1e-6
                f.create_dataset("optimizer/%s/%s" % (moment, path),
                                 data=np.abs(rng.normal(0, scale, value.shape)).astype(args.dtype))

        steps = np.arange(1, STEPS + 1, dtype=float)
        # A falling curve from 8 bits per byte (uniform over bytes) towards 2.5, with noise.
        loss = 2.5 + 5.5 * np.exp(-steps / 12.0) + rng.normal(0, 0.05, STEPS)
        lr = 1e-3 * np.minimum(steps / 5.0, 1.0) * (0.55 + 0.45 * np.cos(np.pi * steps / STEPS))
        grad_norm = 0.5 + 2.0 * np.exp(-steps / 10.0)
        tokens = np.where(steps <= 2, 900.0, 4096.0) + rng.normal(0, 40, STEPS)
        val_step = np.arange(EVAL_EVERY, STEPS + 1, EVAL_EVERY, dtype=np.int64)
        val_loss = 2.6 + 5.5 * np.exp(-val_step / 12.0)
        val_loss[-1] = val_loss[-2] + 0.01  # the last evaluation is a little worse than the best (step 40)
        train = f.create_group("train")
        if not args.broken:
            train.create_dataset("loss", data=loss)
        train.create_dataset("learning_rate", data=lr)
        train.create_dataset("grad_norm", data=grad_norm)
        train.create_dataset("tokens_per_second", data=tokens)
        train.create_dataset("val_loss", data=val_loss)
        train.create_dataset("val_step", data=val_step)
        train.create_dataset("rng_state", data=np.array([SEED, STEPS + 1], dtype=np.int64))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
