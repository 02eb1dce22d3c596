"""Look at a dataset: ``dataset_stats`` (text summary) and ``render_sample`` (cloud + grasps, PNG)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from sceneleap_core.data.objects import OBJECT_TABLE_NAME, load_object_table
from sceneleap_core.data.shards import MANIFEST_NAME, Sample, ShardDataset


def dataset_stats(root: str | Path, *, verify: bool = False) -> str:
    """Multi-line summary: shards, samples, scenes, points and grasps per sample, grasps per object
    kind, objects per split, the validator used."""
    root = Path(root)
    ds = ShardDataset(root, verify=verify)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    table = {o.id: o for o in load_object_table(root)} if (root / OBJECT_TABLE_NAME).is_file() else {}
    points, grasps, objects, scenes = [], [], [], set()
    per_kind: Counter = Counter()
    for i in range(len(ds)):
        s = ds[i]
        points.append(len(s.points))
        grasps.append(len(s.grasp_pose))
        objects.append(len(s.object_ids))
        scenes.add(s.scene_id)
        for oid in s.grasp_object.tolist():
            per_kind[table[oid].kind if oid in table else "?"] += 1

    def q(x):
        x = np.asarray(x)
        return f"min {x.min()}, median {np.median(x):.0f}, max {x.max()}" if len(x) else "-"

    splits = Counter(o.split for o in table.values())
    lines = [
        f"dataset {root}: {len(ds.readers)} shards, {len(ds)} samples, {len(scenes)} scenes, "
        f"{manifest['num_grasps']} grasps (schema v{manifest['schema_version']})",
        f"  points per sample: {q(points)}",
        f"  grasps per sample: {q(grasps)}",
        f"  objects per scene: {q(objects)}",
        f"  grasps by object kind: {dict(per_kind)}",
        f"  object table: {len(table)} objects, splits {dict(splits)}",
        f"  validator: {manifest.get('metadata', {}).get('validator', '?')}",
    ]
    return "\n".join(lines)


def render_sample(sample: Sample, out: str | Path, *, max_grasps: int = 4, title: str | None = None, hand=None) -> Path:
    """Render a sample in its camera frame: cloud coloured by object id, the first ``max_grasps``
    grasps as hand boxes (one colour per grasp), from two views. Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from sceneleap_core.hand import HandModel
    from sceneleap_core.hand.draw import box_corners, draw_cloud_with_hands, save_figure

    hand = hand or HandModel.load()
    pts, ids = sample.points, sample.point_object
    g = min(max_grasps, len(sample.grasp_pose))
    corners = (
        box_corners(hand, torch.as_tensor(sample.grasp_joints[:g]), torch.as_tensor(sample.grasp_pose[:g]))
        if g
        else np.zeros((0, 0, 8, 3))
    )
    cmap = plt.get_cmap("tab10")
    colours = np.where(ids[:, None] < 0, np.array([[0.7, 0.7, 0.7, 1.0]]), cmap(np.mod(ids, 10)))
    focus = pts[ids >= 0] if (ids >= 0).any() else pts
    extent = np.concatenate([focus, corners.reshape(-1, 3)]) if g else focus
    centre = (extent.max(0) + extent.min(0)) / 2
    radius = (extent.max(0) - extent.min(0)).max() / 2 * 1.1
    fig = plt.figure(figsize=(10, 5))
    near = np.all(np.abs(pts - centre) < radius * 1.2, axis=1)
    draw_cloud_with_hands(fig, pts[near], colours[near], corners, centre=centre, radius=radius,
                          views=((-60.0, -90.0), (10.0, -30.0)), alpha=0.3)  # fmt: skip
    fig.suptitle(
        title or f"scene {sample.scene_id}: {len(pts)} points, {len(sample.grasp_pose)} grasps (camera frame)",
        fontsize=9,
    )
    return save_figure(fig, out, dpi=100)
