"""Which evidence ranks planned grasps? Plans every view of a held-out set with the planner's filter
on and ``C`` candidates kept unranked (oversample 1, no diversity), lift-tests every kept grasp in
MuJoCo, and reports for each piece of evidence in ``GraspSet.terms`` (energy terms, the anchor score)
its ROC AUC for lift success and the top-1 / top-4 success of ranking by it, side by side with the
planner's current ranking (-energy) and chance (the mean).

    python bench/ranking.py --model sceneleap_core/assets/default_model --data demo_out/composed \
        --views 12 --candidates 32 --workers 2 --out ranking.json

``--out`` holds per view its dataset index, each kept grasp's terms, lift outcome, world palm pose
and joints (what ``bench/ranker_fit.py`` and ``bench/critic_fit.py`` learn from).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from sceneleap_core.infer.ranker import roc_auc as auc
from sceneleap_core.infer.ranker import top_k_rate

# direction of each term: +1 when larger means better
DIRECTIONS = {"anchor_logit": 1.0, "total": -1.0, "penetration": -1.0, "table": -1.0, "contact": -1.0, "self": -1.0,
              "hits_grasp": -1.0, "hits_sweep": -1.0}


def top_k_success(views: list[dict], key: str, k: int, weights: dict | None = None) -> float:
    """Mean over views of the success rate of the ``k`` best grasps by ``key`` (or a weighted sum of
    z-scored terms when ``weights`` is given)."""
    scores = []
    for v in views:
        if weights is None:
            scores.append(DIRECTIONS.get(key, 1.0) * v["terms"][key] if len(v["success"]) else np.zeros(0))
        else:
            scores.append(sum(w * DIRECTIONS[t] * (v["terms"][t] - v["terms"][t].mean()) / (v["terms"][t].std() + 1e-9)
                              for t, w in weights.items()) if len(v["success"]) else np.zeros(0))  # fmt: skip
    return top_k_rate(scores, [v["success"] for v in views], k)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="composed scene set (shards with objects.json)")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--sampler", default="dpmpp")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", help="JSON with every grasp's terms and outcome")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.demo import plan_view
    from sceneleap_core.train.ladder import spread_indices
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    planner = GraspPlanner.from_pretrained(args.model, device=args.device)
    dataset = ShardDataset(args.data)
    evaluator = SimLiftEvaluator(args.data, workers=args.workers)
    views = []
    t0 = time.perf_counter()
    try:
        for index in tqdm(spread_indices(len(dataset), args.views), desc="views"):
            sample = dataset[index]
            grasps, _ = plan_view(planner, sample, args.candidates, steps=args.steps, sampler=args.sampler,
                                  seed=index, oversample=1, diversity=0)  # fmt: skip
            success = np.zeros(0, bool)
            pose, joints = grasps.palm_pose[0].double().cpu().numpy(), grasps.joints[0].double().cpu().numpy()
            if len(grasps):
                success = np.asarray(evaluator.evaluate_world(index, pose, joints).lift.success, bool)
            terms = {k: v[0].double().cpu().numpy() for k, v in grasps.terms.items()}
            views.append({"index": int(index), "success": success, "terms": terms, "rejected": grasps.rejected,
                          "pose": pose, "joints": joints})  # fmt: skip
    finally:
        evaluator.close()
    labels = np.concatenate([v["success"] for v in views])
    names = sorted({k for v in views for k in v["terms"]})
    kept = sum(len(v["success"]) for v in views)
    print(f"{args.model}: {len(views)} views of {args.data}, {args.sampler} {args.steps}, {args.candidates} "
          f"candidates each, {kept} kept by the filter, lift {labels.mean():.3f} ({time.perf_counter() - t0:.0f} s, "
          f"{args.device})")  # fmt: skip
    rows = [("chance (mean)", float("nan"), float(labels.mean()), float(labels.mean()))]
    for name in names:
        score = DIRECTIONS.get(name, 1.0) * np.concatenate([v["terms"][name] for v in views])
        rows.append((name, auc(score, labels), top_k_success(views, name, 1), top_k_success(views, name, 4)))
    if "anchor_logit" in names:
        for w in (0.5, 1.0, 2.0):
            mix = {"anchor_logit": w, "total": 1.0}
            rows.append((f"z(total) + {w:g} z(anchor_logit)", float("nan"), top_k_success(views, "", 1, mix),
                         top_k_success(views, "", 4, mix)))  # fmt: skip
    print(f"{'ranking by':34s} {'AUC':>6s} {'top-1':>6s} {'top-4':>6s}")
    for name, a, t1, t4 in rows:
        print(f"{name:34s} {a:6.3f} {t1:6.3f} {t4:6.3f}")
    if args.out:
        data = {"rows": rows, "data": args.data,
                "views": [{**v, "success": v["success"].tolist(), "pose": np.round(v["pose"], 6).tolist(),
                           "joints": np.round(v["joints"], 6).tolist(),
                           "terms": {k: x.tolist() for k, x in v["terms"].items()}} for v in views]}  # fmt: skip
        with open(args.out, "w") as f:
            json.dump(data, f)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
