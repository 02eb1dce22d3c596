"""Which evidence ranks planned grasps? Plans every view of a held-out set with the planner's filter
on and ``C`` candidates kept unranked (oversample 1, no diversity), lift-tests every kept grasp in
MuJoCo, and reports for each piece of evidence in ``GraspSet.terms`` (energy terms, the anchor score)
its ROC AUC for lift success and the top-1 / top-4 success of ranking by it, side by side with the
planner's current ranking (-energy) and chance (the mean).

    python bench/ranking.py --model sceneleap_core/assets/default_model --data demo_out/composed \
        --views 12 --candidates 32 --workers 2 --out ranking.json

``--out`` holds per view its dataset index, each kept grasp's terms, lift outcome, world palm pose
and joints (what ``bench/ranker_fit.py`` and ``bench/critic_fit.py`` learn from). It is rewritten
atomically every ``--save-every`` views (``"complete": false`` until the last), so a run cut short
keeps what it did; ``--resume`` continues such a file, planning only the views it lacks.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from sceneleap_core.infer.ranker import roc_auc as auc
from sceneleap_core.infer.ranker import top_k_rate

# direction of each term: +1 when larger means better
DIRECTIONS = {"anchor_logit": 1.0, "total": -1.0, "penetration": -1.0, "table": -1.0, "contact": -1.0, "self": -1.0,
              "hits_grasp": -1.0, "hits_sweep": -1.0}  # fmt: skip


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


def views_to_json(views: list[dict]) -> list[dict]:
    """Per-view records (numpy arrays) as JSON-ready lists; poses and joints to 6 decimals."""
    return [{**v, "success": np.asarray(v["success"], bool).tolist(), "pose": np.round(v["pose"], 6).tolist(),
             "joints": np.round(v["joints"], 6).tolist(), "terms": {k: np.asarray(x).tolist() for k, x in v["terms"].items()}}
            for v in views]  # fmt: skip


def views_from_json(records: list[dict]) -> list[dict]:
    """The inverse of :func:`views_to_json`: success (C,) bool, terms (C,) float64, pose (C, 4, 4), joints (C, 16)."""
    return [{**r, "success": np.asarray(r["success"], bool), "pose": np.asarray(r["pose"], np.float64).reshape(-1, 4, 4),
             "joints": np.asarray(r["joints"], np.float64).reshape(len(r["success"]), -1) if r["success"] else np.zeros((0, 16)),
             "terms": {k: np.asarray(x, np.float64) for k, x in r["terms"].items()}} for r in records]  # fmt: skip


def resumed_views(path: Path, run: dict) -> list[dict]:
    """The views already in ``path`` (a partial or complete ``--out`` of the same run), or a ValueError
    naming the setting that differs."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--resume: cannot read {path}: {e}") from e
    before = data.get("run")
    if not isinstance(before, dict):
        raise ValueError(f"--resume: {path} holds no run settings (written before --resume existed); start anew")
    differ = [f"{k}: {before.get(k)!r} there, {v!r} now" for k, v in run.items() if before.get(k) != v]
    if differ:
        raise ValueError(f"--resume: {path} is another run ({'; '.join(differ)})")
    return views_from_json(data.get("views", []))


def write_out(path: Path, run: dict, views: list[dict], rows: list | None = None) -> None:
    """The ``--out`` JSON, atomically: the run's settings, its views so far and, once complete, its table."""
    from sceneleap_core.atomic import write_text_atomic

    data = {"run": run, "data": run["data"], "complete": rows is not None, "rows": rows or [],
            "views": views_to_json(views)}  # fmt: skip
    write_text_atomic(path, json.dumps(data))


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
    ap.add_argument("--save-every", type=int, default=16, help="views between atomic rewrites of --out")
    ap.add_argument("--resume", action="store_true", help="continue --out: plan only the views it lacks")
    args = ap.parse_args(argv)
    if args.resume and not args.out:
        ap.error("--resume needs --out")
    run = {"model": str(args.model), "data": str(args.data), "views": args.views, "candidates": args.candidates,
           "sampler": args.sampler, "steps": args.steps}  # fmt: skip
    out = Path(args.out) if args.out else None
    views = resumed_views(out, run) if args.resume and out.exists() else []
    done = {v["index"] for v in views}
    from tqdm import tqdm

    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.demo import plan_view
    from sceneleap_core.train.ladder import spread_indices
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    planner = GraspPlanner.from_pretrained(args.model, device=args.device)
    dataset = ShardDataset(args.data)
    evaluator = SimLiftEvaluator(args.data, workers=args.workers)
    todo = [int(i) for i in spread_indices(len(dataset), args.views) if int(i) not in done]
    if done:
        print(f"resuming {out}: {len(done)} views done, {len(todo)} to go")
    t0 = time.perf_counter()
    try:
        for n, index in enumerate(tqdm(todo, desc="views")):
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
            if out is not None and (n + 1) % max(args.save_every, 1) == 0:
                write_out(out, run, views)
    except BaseException:
        if out is not None and views:  # what was done survives an error or Ctrl-C
            write_out(out, run, views)
            print(f"stopped: {len(views)} views kept in {out} (--resume continues)")
        raise
    finally:
        evaluator.close()
    views.sort(key=lambda v: v["index"])
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
    if out is not None:
        write_out(out, run, views, rows)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
