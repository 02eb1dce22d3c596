"""``sceneleap scenes compose|show|stats``: fixed, seeded scene sets composed from a grasp library.

    sceneleap scenes compose --library LIB --split val --num-scenes 200 --views 2 --out data/val_composed
    sceneleap scenes show data/val_composed --index 0 --out scene.png
    sceneleap scenes stats data/val_composed

Scene k uses ``np.random.default_rng([seed, k])``, so a shard's content does not depend on which
process (``--shard i/n``) wrote it; finished shards are skipped (resume), shards are written atomically.
Each shard's metadata holds the grasp type / approach labels per view (the sample schema has no slot).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np


def _compose(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from sceneleap_core.data.compose import SceneComposer, render_samples, revalidate
    from sceneleap_core.data.depth import sample_robot_cameras
    from sceneleap_core.data.library import APPROACHES, GRASP_TYPES, GraspLibrary
    from sceneleap_core.data.objects import OBJECT_TABLE_NAME, save_object_table
    from sceneleap_core.data.pipeline import parse_shard, shard_done
    from sceneleap_core.data.shards import MANIFEST_NAME, ShardWriter, read_manifest, write_manifest
    from sceneleap_core.hand import HandModel

    i_proc, n_proc = parse_shard(args.shard)
    lib = GraspLibrary.load(args.library)
    hand = HandModel.load()
    comp = SceneComposer(lib, args.split, hand, torch.device(args.device))
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    save_object_table(root / OBJECT_TABLE_NAME, lib.objects, metadata={"library": str(args.library)})
    num_shards = -(-args.num_scenes // args.scenes_per_shard)
    mine = [k for k in range(num_shards) if k % n_proc == i_proc]
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    recorded = {e["file"]: e for e in read_manifest(root)["shards"]} if (root / MANIFEST_NAME).is_file() else {}
    for k in tqdm(mine, desc=f"shards ({i_proc}/{n_proc})", unit="shard"):
        path = root / f"shard_{k:05d}.h5"
        if shard_done(path, recorded):
            continue
        writer = ShardWriter(path, hand=hand.description.name, dof=hand.dof, metadata={})
        labels = []
        for sid in range(k * args.scenes_per_shard, min((k + 1) * args.scenes_per_shard, args.num_scenes)):
            rng = np.random.default_rng([args.seed, sid])
            scene = comp.compose(sid, rng)
            if args.revalidate and len(scene.grasp_pose):
                ok, _ = revalidate(scene)
                for key in (
                    "grasp_pose",
                    "grasp_joints",
                    "grasp_object",
                    "grasp_type",
                    "grasp_approach",
                    "grasp_index",
                ):
                    setattr(scene, key, getattr(scene, key)[ok])
            samples, _ = render_samples(
                comp, scene, sample_robot_cameras(args.views, rng), seed=int(rng.integers(1 << 31))
            )
            for s in samples:
                writer.add(s)
                labels.append({
                    "scene_id": sid,
                    "grasp_type": [GRASP_TYPES[t] for t in scene.grasp_type],
                    "grasp_approach": [APPROACHES[a] for a in scene.grasp_approach],
                })  # fmt: skip
        if writer.samples:
            writer.metadata = {"composer": settings, "labels": labels, "objects": [o.to_dict() for o in lib.objects]}
            writer.close()
    write_manifest(root, metadata={"composer": settings}, pattern="shard_*.h5")
    return 0


def scene_stats(root: str | Path) -> dict:
    """Grasp-type and approach histograms, grasps per view and points on target per view."""
    from sceneleap_core.data.shards import ShardDataset

    ds = ShardDataset(root)
    types, approaches, on_target, grasps, points = Counter(), Counter(), [], [], []
    for r in ds.readers:
        for lab in r.metadata.get("labels", []):
            types.update(lab["grasp_type"])
            approaches.update(lab["grasp_approach"])
    for i in range(len(ds)):
        s = ds[i]
        grasps.append(len(s.grasp_pose))
        points.append(len(s.points))
        on_target.extend(int((s.point_object == t).sum()) for t in np.unique(s.grasp_object))

    def q(x):
        return (
            {k: float(v) for k, v in zip(("min", "p10", "median", "max"), np.percentile(x, [0, 10, 50, 100]))}
            if len(x)
            else {}
        )

    return {"views": len(ds), "grasp_type": dict(types), "grasp_approach": dict(approaches),
            "grasps_per_view": q(grasps), "points_per_view": q(points), "points_on_target": q(on_target)}  # fmt: skip


def _stats(args: argparse.Namespace) -> int:
    stats = scene_stats(args.root)
    print(json.dumps(stats, indent=1))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(8, 3))
        for a, key in zip(ax, ("grasp_type", "grasp_approach"), strict=True):
            a.bar(list(stats[key]), list(stats[key].values()))
            a.set_title(key)
        fig.savefig(args.out, dpi=100)
    return 0


def _show(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.hand import HandModel
    from sceneleap_core.hand.draw import _FACES, box_corners

    s = ShardDataset(args.root)[args.index]
    hand = HandModel.load()
    g = min(args.grasps, len(s.grasp_pose))
    # world frame, one grasp per panel, its target's points in red
    cam = s.camera_pose
    pts = s.points @ cam[:3, :3].T + cam[:3, 3]
    pose_w = cam @ s.grasp_pose[:g]
    corners = box_corners(hand, torch.as_tensor(s.grasp_joints[:g]), torch.as_tensor(pose_w)) if g else None
    cols = max(1, min(g, 3))
    rows = max(1, -(-g // cols))
    fig = plt.figure(figsize=(4.5 * cols, 4.5 * rows))
    for k in range(max(g, 1)):
        ax = fig.add_subplot(rows, cols, k + 1, projection="3d")
        tgt = s.grasp_object[k] if g else -9
        colour = np.where(
            (s.point_object == tgt)[:, None],
            [[0.85, 0.1, 0.1]],
            np.where((s.point_object >= 0)[:, None], [[0.2, 0.4, 0.8]], [[0.75, 0.75, 0.75]]),
        )
        ax.scatter(*pts.T, s=0.3, c=colour)
        if g:
            faces = [[corners[k, b, i] for i in face] for b in range(corners.shape[1]) for face in _FACES]
            ax.add_collection3d(
                Poly3DCollection(faces, facecolors="orange", edgecolors="k", linewidths=0.1, alpha=0.35)
            )
            centre = pose_w[k, :3, 3]
        else:
            centre = pts.mean(0)
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
            setter(c - 0.15, c + 0.15)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=35, azim=-60 + 40 * k)
        ax.set_title(f"grasp {k} on object {tgt}: {int((s.point_object == tgt).sum())} target points", fontsize=8)
    fig.suptitle(f"scene {s.scene_id}: {len(s.points)} points, {len(s.grasp_pose)} grasps (world frame)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(args.out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("scenes", help="compose, picture and summarize scene sets from a grasp library")
    ssub = parser.add_subparsers(dest="scenes_command", metavar="ACTION", required=True)
    c = ssub.add_parser("compose", help="library -> composed scenes -> depth views -> HDF5 shards + manifest")
    c.add_argument("--library", required=True, help="library.npz or its directory")
    c.add_argument("--split", default="val", choices=("train", "val", "test"))
    c.add_argument("--num-scenes", type=int, default=100)
    c.add_argument("--scenes-per-shard", type=int, default=50)
    c.add_argument("--views", type=int, default=2)
    c.add_argument("--out", required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--device", default="cpu")
    c.add_argument("--revalidate", action="store_true", help="MuJoCo lift test in the scene (+ 1 cm clutter rule)")
    c.add_argument("--shard", default="0/1", help="i/n: this process writes shards k with k %% n == i")
    c.set_defaults(func=_compose)
    sh = ssub.add_parser("show", help="one composed view: a panel per grasp, its target in red")
    sh.add_argument("root")
    sh.add_argument("--index", type=int, default=0)
    sh.add_argument("--grasps", type=int, default=6)
    sh.add_argument("--out", default="scene.png")
    sh.set_defaults(func=_show)
    st = ssub.add_parser("stats", help="grasp-type/approach histograms, points on target per view (JSON)")
    st.add_argument("root")
    st.add_argument("--out", default=None, help="PNG of the histograms")
    st.set_defaults(func=_stats)
