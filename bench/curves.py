"""Learning curves of a training run from its CSV log (``RUN/csv/version_0/metrics.csv``): training
loss (smoothed), validation loss with the real / blanked / foreign cloud (the conditioning gap),
keypoint chamfer to the ground-truth set and the collision-free rate of sampled grasps.

    python bench/curves.py runs/x/csv/version_0/metrics.csv --out curves.png
    python bench/curves.py new/metrics.csv --label new --compare old=old/metrics.csv --out both.png

``--compare NAME=CSV`` (repeatable) draws other runs' validation curves beside it, in grey.
"""

from __future__ import annotations

import argparse
import csv

import numpy as np


def read_metrics(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{column: (steps, values)} of every non-empty cell of a Lightning CSV log."""
    series: dict[str, list] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key not in ("epoch", "step") and value not in ("", None):
                    series.setdefault(key, []).append((int(row["step"]), float(value)))
    if not series:
        raise ValueError(f"{path}: expected a Lightning metrics.csv with logged values, got none")
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v])) for k, v in series.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("metrics", help="metrics.csv of a run")
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("--title", default="")
    ap.add_argument("--label", default="", help="name of this run in the legend (with --compare)")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=CSV", help="another run to draw beside")
    args = ap.parse_args(argv)
    others = []
    for spec in args.compare:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            ap.error(f"--compare: expected NAME=CSV, got {spec!r}")
        others.append((name, read_metrics(path)))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(args.metrics)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    if "train/loss" in m:
        s, v = m["train/loss"]
        k = max(1, len(v) // 40)
        smooth = np.convolve(v, np.ones(k) / k, mode="valid")
        axes[0].plot(s, v, color="0.8", lw=0.6, label="train (raw)")
        axes[0].plot(s[k - 1 :], smooth, color="tab:blue", label=f"train ({k}-point mean)")
    for key, style in (("val/loss_real", "o-"), ("val/loss_blank", "s--"), ("val/loss_foreign", "^--")):
        if key in m:
            axes[0].plot(*m[key], style, label=key.removeprefix("val/"))
    greys = ("0.45", "0.65", "0.8")
    for i, (name, o) in enumerate(others):
        grey = greys[i % len(greys)]
        if "val/loss_real" in o:
            axes[0].plot(*o["val/loss_real"], "o:", color=grey, label=f"{name}: loss_real")
        if "val/chamfer_mm" in o:
            axes[1].plot(*o["val/chamfer_mm"], "o:", color=grey, label=name)
        if "val/collision_free" in o:
            s, v = o["val/collision_free"]
            axes[2].plot(s, 100 * v, "o:", color=grey, label=name)
    axes[0].set_title("denoising loss")
    axes[0].legend(fontsize=7)
    if "val/chamfer_mm" in m:
        axes[1].plot(*m["val/chamfer_mm"], "o-", color="tab:red", label=args.label or "this run")
    axes[1].set_title("val: keypoint chamfer to GT (mm)")
    if "val/collision_free" in m:
        s, v = m["val/collision_free"]
        axes[2].plot(s, 100 * v, "o-", color="tab:green", label=args.label or "this run")
    axes[2].set_title("val: collision-free sampled grasps (%)")
    for ax in axes:
        ax.set_xlabel("step")
    if others:
        axes[1].legend(fontsize=7)
        axes[2].legend(fontsize=7)
    fig.suptitle(args.title, fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
