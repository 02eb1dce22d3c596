"""A planned grasp set as a picture and as JSON: the cloud and the top grasps (one colour per rank)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def grasps_to_records(grasps) -> list[dict]:
    """One JSON-ready dict per grasp of a :class:`sceneleap_core.infer.GraspSet` (batch 0), rank order."""
    from sceneleap_core.hand.representation import pose_to_pos_quat

    if len(grasps) == 0:
        return []
    pose = grasps.palm_pose[0].double()
    pos, quat = pose_to_pos_quat(pose)
    out = []
    for i in range(len(grasps)):
        rec = {
            "rank": i + 1,
            "score": None if grasps.scores is None else float(grasps.scores[0, i]),
            "palm_pose": pose[i].tolist(),
            "position": pos[i].tolist(),
            "quaternion_xyzw": quat[i].tolist(),
            "joints": grasps.joints[0, i].double().tolist(),
        }
        if grasps.pregrasp_pose is not None:
            rec["pregrasp_pose"] = grasps.pregrasp_pose[0, i].double().tolist()
            rec["pregrasp_joints"] = grasps.pregrasp_joints[0, i].double().tolist()
        if grasps.target is not None:
            rec["target_point"] = grasps.target[0, i].double().tolist()
        out.append(rec)
    return out


def plan_report(grasps, *, cloud: str, model: str, frame: str, settings: dict, records: list[dict] | None = None,
                evaluation: dict | None = None) -> dict:  # fmt: skip
    """The JSON report of ``sceneleap plan`` (and ``sceneleap demo-plan``) for a
    :class:`sceneleap_core.infer.GraspSet`: where the cloud and the model came from, the frame the
    poses are in, the hand, the settings, candidates, rejections, timings, the grasps
    (:func:`grasps_to_records`, or ``records`` when already made) and an optional ``evaluation``
    block. Floats may be NaN: write it through ``sceneleap_core.cli.eval_cmd._json_ready``."""
    report = {
        "cloud": str(cloud), "model": str(model), "frame": frame,
        "hand": grasps.hand_name, "joint_names": grasps.joint_names, "settings": dict(settings),
        "candidates": grasps.candidates, "rejected": grasps.rejected, "timings_ms": grasps.timings,
        "grasps": grasps_to_records(grasps) if records is None else records,
    }  # fmt: skip
    if evaluation is not None:
        report["evaluation"] = evaluation
    return report


def render_plan(cloud: np.ndarray, grasps, out: str | Path, *, hand=None, max_grasps: int = 5,
                title: str | None = None, views=None) -> Path:  # fmt: skip
    """PNG of the cloud (grey, strided to 20k points) and the ``max_grasps`` best grasps as hand
    boxes, rank k in colour k of tab10 with a legend, from two views: ``views`` ((elev, azim) per
    panel; None = :func:`sceneleap_core.hand.draw.draw_cloud_with_hands`'s, made for a camera frame,
    y down; a z-up world frame reads better from above, e.g. ((60, -90), (15, -35)))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from sceneleap_core.hand import HandModel
    from sceneleap_core.hand.draw import box_corners, draw_cloud_with_hands, save_figure

    hand = hand or HandModel.load()
    pts = np.asarray(cloud, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    pts = pts[:: max(1, len(pts) // 20000)]
    g = min(max_grasps, len(grasps))
    corners = (
        box_corners(hand, grasps.joints[0, :g].to(hand.dtype), grasps.palm_pose[0, :g].to(hand.dtype))
        if g
        else np.zeros((0, 0, 8, 3))
    )
    cmap = plt.get_cmap("tab10")
    focus = np.concatenate([pts, corners.reshape(-1, 3)]) if g else pts
    centre = (focus.max(0) + focus.min(0)) / 2
    radius = (focus.max(0) - focus.min(0)).max() / 2 * 1.05
    fig = plt.figure(figsize=(11, 5.5))
    kwargs = {} if views is None else {"views": views}
    draw_cloud_with_hands(fig, pts, "#888888", corners, centre=centre, radius=radius, alpha=0.45, point_size=0.4,
                          **kwargs)  # fmt: skip
    if g:
        scores = grasps.scores[0] if grasps.scores is not None else torch.zeros(g)
        handles = [Patch(color=cmap(k % 10), label=f"#{k + 1}  score {float(scores[k]):.3f}") for k in range(g)]
        fig.legend(handles=handles, loc="lower center", ncol=min(g, 5), fontsize=8)
    fig.suptitle(title or f"{len(pts)} points, top {g} of {len(grasps)} grasps (cloud frame)", fontsize=9)
    return save_figure(fig, out, dpi=100)
