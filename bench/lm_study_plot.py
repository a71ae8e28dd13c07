#!/usr/bin/env python3
"""The study's tables and figures from bench/lm_study.sh's output folder:

* lm-study.md: per context and method, the validation bits per byte over the seeds (mean,
  standard deviation, min and max), tokens/s and model GFLOP/s; then, per context, the paired
  differences beyond the near field's reach (positions t >= 2m of every eval window) and beyond
  the reach of the whole stack of local layers (t >= layers·2m, where only the far field or
  full attention sees the window's start): each method's loss there minus local's, per seed,
  with the mean and its 95% t-interval over the seeds — whether the far field (fma) or full
  attention (exact) buys anything over local, and with what confidence;
* lm-study.png: validation bits per byte per method and context (mean, and each seed);
* lm-study-positions.png: the loss by position (mean over the seeds, log-x, averaged over bins
  equally spaced in log position), one panel per context, a dotted line at 2m.

    python3 bench/lm_study_plot.py OUT_DIR
"""
import csv
import math
import os
import re
import sys

# Two-sided 95% quantiles of Student's t for 1..10 degrees of freedom.
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def mean_interval(values):
    """Mean and the half-width of its 95% t-interval (None for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, T95[min(n - 1, len(T95)) - 1] * sd / math.sqrt(n)


def log_bins(p):
    """Means of p over bins equally spaced in log(position + 1), and the bins' middles."""
    import numpy as np

    edges = np.unique(np.round(np.logspace(0, np.log10(p.size + 1), 24 * int(np.log10(p.size + 1)) + 2) - 1))
    edges = np.append(edges[edges < p.size], p.size).astype(int)
    middles = np.sqrt((edges[:-1] + 1.0) * edges[1:])
    return middles, np.array([p[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[0]
    import h5py
    import numpy as np

    with open(os.path.join(out, "lm-study.csv")) as f:
        rows = list(csv.DictReader(f))
    contexts = sorted({int(r["context"]) for r in rows}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))

    def runs(context, method):
        return [r for r in rows if int(r["context"]) == context and r["method"] == method]

    def positions(r):
        with h5py.File(os.path.join(out, "%s-%s-s%s-eval.h5" % (r["context"], r["method"], r["seed"])), "r") as f:
            return np.asarray(f["position_bits_per_byte"][()], float), int(f.attrs["block_size"])

    def layers(r):
        """The model's layer count, from the deck the eval file records."""
        with h5py.File(os.path.join(out, "%s-%s-s%s-eval.h5" % (r["context"], r["method"], r["seed"])), "r") as f:
            deck = f.attrs["deck"]
        found = re.search(r"^model:\n(?:  .*\n)*?  layers: (\d+)", deck.decode() if isinstance(deck, bytes) else deck,
                          re.M)
        return int(found.group(1)) if found else 1

    lines = ["| context | attention | seeds | val bits/byte: mean ± sd | min – max | tokens/s | model GFLOP/s |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for context in contexts:
        for method in methods:
            rs = runs(context, method)
            if not rs:
                continue
            v = [float(r["val_bpb"]) for r in rs]
            sd = np.std(v, ddof=1) if len(v) > 1 else 0.0
            lines.append("| %d | %s | %d | %.4f ± %.4f | %.4f – %.4f | %.0f | %.1f |" % (
                context, method, len(v), np.mean(v), sd, min(v), max(v),
                np.mean([float(r["tokens_per_s"]) for r in rs]), np.mean([float(r["model_gflops"]) for r in rs])))
    lines.append("")
    lines.append("Paired differences beyond the near field's reach (positions t >= 2m of the same validation "
                 "windows) and beyond the reach of the whole stack of local layers (t >= layers·2m), each "
                 "method minus local, bits per byte: mean over the seeds and 95% t-interval (negative: the "
                 "method predicts distant bytes better than local attention).")
    lines.append("")
    lines.append("| context | positions | method − local | per seed | mean | 95% interval | verdict |")
    lines.append("|---:|---|---|---|---:|---:|---|")
    for context in contexts:
        local = {r["seed"]: positions(r) for r in runs(context, "local")}
        if not local:
            continue
        m = next(iter(local.values()))[1]
        stack = layers(runs(context, "local")[0])
        for name, first in (("t >= 2m = %d" % (2 * m), 2 * m), ("t >= layers·2m = %d" % (stack * 2 * m), stack * 2 * m)):
            if first >= context:
                continue
            for method in methods:
                if method != "local":
                    verdict_row(lines, context, name, method, [
                        float((positions(r)[0][first:] - local[r["seed"]][0][first:]).mean())
                        for r in runs(context, method) if r["seed"] in local])
    with open(os.path.join(out, "lm-study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    plots(out, contexts, methods, runs, positions, layers)
    return 0


def verdict_row(lines, context, region, method, diffs):
    """One row of the paired-difference table: per-seed differences, their mean and 95% interval."""
    if not diffs:
        return
    mean, half = mean_interval(diffs)
    if half is None:
        verdict = "one seed: no interval"
    elif mean + half < 0:
        verdict = "better than local"
    elif mean - half > 0:
        verdict = "worse than local"
    else:
        verdict = "not distinguishable from local"
    lines.append("| %d | %s | %s | %s | %+.4f | %s | %s |" % (
        context, region, method, ", ".join("%+.4f" % d for d in diffs), mean,
        "±%.4f" % half if half is not None else "-", verdict))


def plots(out, contexts, methods, runs, positions, layers):
    """lm-study.png (validation loss per seed) and lm-study-positions.png (loss by position)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(contexts), figsize=(5.5 * len(contexts), 4), squeeze=False, sharey=True)
    for ax, context in zip(axes[0], contexts):
        for i, method in enumerate(methods):
            v = [float(r["val_bpb"]) for r in runs(context, method)]
            if v:
                ax.scatter([i] * len(v), v, s=14, alpha=0.6)
                ax.errorbar([i], [np.mean(v)], yerr=[np.std(v, ddof=1) if len(v) > 1 else 0], fmt="o", color="k")
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=20)
        ax.set_title("context %d" % context)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation bits per byte (each seed; mean ± sd)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lm-study.png"), dpi=110)

    fig, axes = plt.subplots(1, len(contexts), figsize=(5.5 * len(contexts), 4), squeeze=False)
    for ax, context in zip(axes[0], contexts):
        m, stack = 0, 1
        for method in methods:
            curves = [positions(r) for r in runs(context, method)]
            if not curves:
                continue
            m, stack = curves[0][1], layers(runs(context, method)[0])
            x, y = log_bins(np.mean([c[0] for c in curves], axis=0))
            ax.plot(x, y, lw=1.4, label=method)
        if m:
            ax.axvline(2 * m + 1, color="k", lw=0.8, ls=":", label="2m = %d" % (2 * m))
            if stack * 2 * m < context:
                ax.axvline(stack * 2 * m + 1, color="k", lw=0.8, ls="--", label="layers·2m = %d" % (stack * 2 * m))
        ax.set_xscale("log")
        ax.set_title("context %d: loss by position (mean over seeds)" % context, fontsize=10)
        ax.set_xlabel("position + 1")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("bits per byte")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lm-study-positions.png"), dpi=110)
    print("plots: %s, %s" % (os.path.join(out, "lm-study.png"), os.path.join(out, "lm-study-positions.png")))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
