#!/usr/bin/env python3
"""The study's table and plot from bench/lm_study.sh's output folder: lm-study.md (a Markdown
table of lm-study.csv) and lm-study.png (validation bits per byte against step, one panel per
context, one line per attention method, read from the checkpoints <context>-<method>.h5).

    python3 bench/lm_study_plot.py OUT_DIR
"""
import csv
import os
import sys


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = argv[0]
    with open(os.path.join(out, "lm-study.csv")) as f:
        rows = list(csv.DictReader(f))
    lines = ["| context | attention | val bits/byte | tokens/s | peak RSS | wall time |", "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| %s | %s | %s | %s | %s | %.0f s |" % (r["context"], r["method"], r["val_bpb"], r["tokens_per_s"],
                                                           r["peak_rss"], float(r["seconds"])))
    with open(os.path.join(out, "lm-study.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))

    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contexts = sorted({int(r["context"]) for r in rows})
    fig, axes = plt.subplots(1, len(contexts), figsize=(5.5 * len(contexts), 4), squeeze=False, sharey=True)
    for ax, context in zip(axes[0], contexts):
        for r in rows:
            if int(r["context"]) != context:
                continue
            path = os.path.join(out, "%s-%s.h5" % (r["context"], r["method"]))
            with h5py.File(path, "r") as f:
                ax.plot(f["train/val_step"][()], f["train/val_loss"][()], marker="o", label=r["method"])
        ax.set_title("context %d" % context)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation bits per byte")
    axes[0][0].legend()
    fig.suptitle("Byte-level LM on Linux C source: 4 layers, width 256, the same steps and tokens")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lm-study.png"), dpi=110)
    print("plot: " + os.path.join(out, "lm-study.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
