#!/usr/bin/env python3
"""Fit the learned grasp critic (``sceneleap_core.infer.critic``: the points under the hand in the
palm frame + joints + up + the ranker's ten terms -> lift logit) on the planner's lift-tested grasps
of training scenes, and compare it with the logistic ranker and -energy on held-out views: ROC AUC,
top-1 and top-4 lift, side by side in one run. Optionally writes it into a model directory (the
planner then ranks by it).

    python bench/ranking.py --model M --data data/train --views 192 --sampler ddim --out train.json
    python bench/ranking.py --model M --data data/dev --views 48 --sampler ddim --out dev.json
    python bench/critic_fit.py train.json [train2.json ...] --eval dev.json --model M [--out M] [--png auc.png]

The held-out set only reports (``--select last``, the default, keeps the last epoch); ``--select
best`` keeps the epoch with the best held-out AUC, which then overstates that AUC.

Each view's cloud is the planner's own (``GraspPlanner.prepare`` with the view's seed, as
``bench/ranking.py`` planned it), so the critic sees at fit time what it sees when planning.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from ranker_fit import FEATURES  # bench/ is the script's directory: the logistic ranker's ten terms


def view_inputs(planner, critic, path: str) -> tuple[list[tuple], list[np.ndarray], list[dict]]:
    """Per view of a ``bench/ranking.py --out`` file: the critic's inputs (patch, joints, up_palm,
    terms), the lift outcomes and the raw terms."""
    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.geometry.anchors import grasp_centres
    from sceneleap_core.infer.demo import camera_up

    data = json.loads(open(path).read())
    if "data" not in data or not data["views"] or "pose" not in data["views"][0]:
        raise SystemExit(f"{path}: expected a bench/ranking.py --out file with grasp poses (re-run it)")
    dataset = ShardDataset(data["data"])
    inputs, labels, terms = [], [], []
    for v in data["views"]:
        if not v["success"]:
            continue
        sample = dataset[v["index"]]
        prep = planner.prepare(sample.points, v["index"], camera_up(sample.camera_pose))
        cam_from_world = np.linalg.inv(np.asarray(sample.camera_pose, dtype=np.float64))
        pose = torch.from_numpy(cam_from_world @ np.asarray(v["pose"], dtype=np.float64)).float()  # (G, 4, 4)
        joints = torch.tensor(v["joints"], dtype=torch.float32)
        cloud = torch.from_numpy(prep.cloud).float()
        centres = grasp_centres(planner.hand, pose, joints).float()
        t = {k: torch.tensor(x, dtype=torch.float32) for k, x in v["terms"].items()}
        patch, up_palm, x = critic.inputs(cloud, pose, centres, torch.from_numpy(np.asarray(prep.up)).float(), t)
        inputs.append((patch, joints, up_palm, x))
        labels.append(np.asarray(v["success"], bool))
        terms.append({k: np.asarray(x) for k, x in v["terms"].items()})
    return inputs, labels, terms


def cat(inputs: list[tuple]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.cat([x[i] for x in inputs]) for i in range(4))


def per_view_scores(critic, inputs: list[tuple]) -> list[np.ndarray]:
    with torch.no_grad():
        return [critic(*x).numpy() for x in inputs]


def main(argv=None) -> None:
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.critic import GraspCritic
    from sceneleap_core.infer.ranker import fit_ranker, roc_auc, top_k_rate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", nargs="+", help="bench/ranking.py --out JSON(s) of training scenes")
    ap.add_argument("--eval", required=True, help="the same for held-out views (development set)")
    ap.add_argument("--model", required=True, help="the model directory the grasps were planned with")
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument(
        "--select",
        choices=("last", "best"),
        default="last",
        help="keep the last epoch's weights, or the epoch with the best held-out AUC (optimistic)",
    )
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-3)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--radius", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="model directory to write critic.safetensors + critic.json into")
    ap.add_argument("--png", help="AUC against epochs, training and held-out")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    torch.manual_seed(args.seed)
    planner = GraspPlanner.from_pretrained(args.model, device="cpu")
    t0 = time.perf_counter()
    probe = GraspCritic(planner.hand.dof, list(FEATURES), k=args.k, radius=args.radius, width=args.width)
    tr_in, tr_y, tr_terms = [], [], []
    for path in args.train:
        ins, ys, terms = view_inputs(planner, probe, path)
        tr_in, tr_y, tr_terms = tr_in + ins, tr_y + ys, tr_terms + terms
    ev_in, ev_y, ev_terms = view_inputs(planner, probe, args.eval)
    x_tr, y_tr = cat(tr_in), torch.from_numpy(np.concatenate(tr_y)).float()
    mean = x_tr[3].mean(0).tolist()
    std = x_tr[3].std(0).clamp_min(1e-6).tolist()
    critic = GraspCritic(planner.hand.dof, list(FEATURES), k=args.k, radius=args.radius, width=args.width,
                         term_mean=mean, term_std=std)  # fmt: skip
    print(
        f"inputs: {len(y_tr)} training grasps ({y_tr.mean():.3f} lift) of {len(tr_in)} views, "
        f"{sum(len(y) for y in ev_y)} held-out of {len(ev_in)} views ({time.perf_counter() - t0:.0f} s)"
    )
    opt = torch.optim.AdamW(critic.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    n, batch = len(y_tr), 256
    ev_flat = np.concatenate(ev_y)
    history, best = [], (-1.0, None, 0)
    for epoch in tqdm(range(args.epochs), desc="epochs"):
        critic.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            b = perm[i : i + batch]
            loss = loss_fn(critic(*(x[b] for x in x_tr)), y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        critic.eval()
        tr_auc = roc_auc(np.concatenate(per_view_scores(critic, tr_in)), np.concatenate(tr_y))
        ev_scores = per_view_scores(critic, ev_in)
        ev_auc = roc_auc(np.concatenate(ev_scores), ev_flat)
        history.append((epoch + 1, tr_auc, ev_auc))
        if ev_auc > best[0]:
            best = (ev_auc, {k: v.clone() for k, v in critic.state_dict().items()}, epoch + 1)
    if args.select == "best":
        critic.load_state_dict(best[1])
    critic.eval()
    # the logistic ranker on the same training grasps, -energy, and the critic, on both sets
    ranker = fit_ranker(np.concatenate([np.stack([t[f] for f in FEATURES], 1) for t in tr_terms]),
                        np.concatenate(tr_y), list(FEATURES))  # fmt: skip
    rows = []
    for name, ins, ys, terms in (
        ("training views (fit)", tr_in, tr_y, tr_terms),
        ("held-out views", ev_in, ev_y, ev_terms),
    ):
        methods = {
            "-energy": [-t["total"] for t in terms],
            "logistic ranker": [ranker.score({k: torch.from_numpy(t[k]) for k in FEATURES}).numpy() for t in terms],
            "critic": per_view_scores(critic, ins),
        }
        for m, scores in methods.items():
            rows.append((name, m, roc_auc(np.concatenate(scores), np.concatenate(ys)), top_k_rate(scores, ys, 1),
                         top_k_rate(scores, ys, 4)))  # fmt: skip
    print(f"critic: {args.select} epoch kept; best held-out AUC {best[0]:.3f} at epoch {best[2]} of {args.epochs} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    print(f"{'set':22s} {'ranking by':16s} {'AUC':>6s} {'top-1':>6s} {'top-4':>6s}")
    for s, m, a, t1, t4 in rows:
        print(f"{s:22s} {m:16s} {a:6.3f} {t1:6.3f} {t4:6.3f}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        h = np.asarray(history)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(h[:, 0], h[:, 1], label="training views")
        ax.plot(h[:, 0], h[:, 2], label="held-out views")
        ax.axhline(rows[-2][2], color="gray", ls="--", label="logistic ranker, held-out")
        ax.set_xlabel("epoch")
        ax.set_ylabel("ROC AUC of lift success")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    if args.out:
        epoch = best[2] if args.select == "best" else args.epochs
        critic.info = {"train": args.train, "eval": args.eval, "samples": int(n), "epoch": epoch,
                       "rows": [list(r) for r in rows]}  # fmt: skip
        critic.save(args.out)
        print(f"wrote {args.out}/critic.safetensors + critic.json")


if __name__ == "__main__":
    main()
