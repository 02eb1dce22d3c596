"""Fit the learned grasp ranker (``sceneleap_core.infer.ranker``) on the planner's grasps of training
scenes, lift-tested (``bench/ranking.py --out``), and compare it with the planner's ``-energy`` ranking
on held-out views: ROC AUC, top-1 and top-4 lift, side by side. Optionally writes the ranker JSON
(into a model directory, the planner then ranks by it).

    python bench/ranking.py --model M --data data/train --views 192 --sampler ddim --out train.json
    python bench/ranking.py --model M --data data/dev --views 48 --sampler ddim --out dev.json
    python bench/ranker_fit.py train.json --eval dev.json [--out M/ranker.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

FEATURES = ("penetration", "table", "contact", "self", "anchor_logit", "hits_grasp", "hits_sweep", "clearance",
            "palm_height", "approach_up")  # fmt: skip


def load_views(path: str) -> list[dict]:
    """Views of a ``bench/ranking.py --out`` file: {"success": (G,) bool, "terms": {name: (G,)}}."""
    views = json.loads(open(path).read())["views"]
    return [{"success": np.asarray(v["success"], bool), "terms": {k: np.asarray(x) for k, x in v["terms"].items()}}
            for v in views]  # fmt: skip


def stack(views: list[dict], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    rows = [np.stack([v["terms"][n] for n in names], 1) for v in views if len(v["success"])]
    return np.concatenate(rows), np.concatenate([v["success"] for v in views if len(v["success"])])


def main(argv=None) -> None:
    import torch

    from sceneleap_core.infer.ranker import fit_ranker, roc_auc, top_k_rate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", help="bench/ranking.py --out JSON of training scenes")
    ap.add_argument("--eval", action="append", default=[], help="held-out JSON(s) to compare on")
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--l2", type=float, default=1e-2)
    ap.add_argument("--out", help="write the fitted ranker here (e.g. MODEL_DIR/ranker.json)")
    args = ap.parse_args(argv)
    train = load_views(args.train)
    names = [f for f in args.features.split(",") if all(f in v["terms"] for v in train if len(v["success"]))]
    x, y = stack(train, names)
    ranker = fit_ranker(x, y, names, l2=args.l2)
    print(f"fitted on {len(y)} grasps of {len(train)} views ({y.mean():.1%} lift); weights (per std):")
    for n, w in sorted(zip(names, ranker.weights, strict=True), key=lambda p: -abs(p[1])):
        print(f"  {n:14s} {w:+.3f}")
    print(f"{'set':28s} {'ranking':10s} {'AUC':>6s} {'top-1':>6s} {'top-4':>6s} {'mean':>6s}")
    results = {}
    for label, path in [("train (fit)", args.train), *[(p, p) for p in args.eval]]:
        views = [v for v in load_views(path) if len(v["success"])]
        labels = [v["success"] for v in views]
        learned = [ranker.score({k: torch.as_tensor(x) for k, x in v["terms"].items()}).numpy() for v in views]
        energy = [-v["terms"]["total"] for v in views]
        for name, scores in (("-energy", energy), ("learned", learned)):
            a = roc_auc(np.concatenate(scores), np.concatenate(labels))
            t1, t4 = top_k_rate(scores, labels, 1), top_k_rate(scores, labels, 4)
            results[f"{label}/{name}"] = {"auc": a, "top1": t1, "top4": t4}
            print(f"{label[-28:]:28s} {name:10s} {a:6.3f} {t1:6.3f} {t4:6.3f} {np.concatenate(labels).mean():6.3f}")
    if args.out:
        ranker.info.update(train=args.train, results=results)
        print(f"wrote {ranker.save(args.out)}")


if __name__ == "__main__":
    main()
