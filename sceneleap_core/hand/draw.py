"""Pictures of the hand: collision boxes from two views, optionally with points (a cloud, contacts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sceneleap_core.hand.hand_model import HandModel

FINGER_COLOURS = {"index": "#1f77b4", "middle": "#2ca02c", "ring": "#9467bd", "thumb": "#d62728"}
PALM_COLOUR = "#7f7f7f"
_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
_FACES = [[0, 1, 3, 2], [4, 5, 7, 6], [0, 1, 5, 4], [2, 3, 7, 6], [0, 2, 6, 4], [1, 3, 7, 5]]


def box_corners(hand: HandModel, joints: torch.Tensor, palm_pose: torch.Tensor | None = None) -> np.ndarray:
    """World corners (B, K, 8, 3) of every collision box."""
    with torch.no_grad():
        rot, trans = hand.box_poses(hand(joints, palm_pose))
        local = torch.as_tensor(_CORNERS, dtype=hand.dtype) * hand.box_half[:, None, :]  # (K, 8, 3)
        corners = (rot[:, :, None] @ local[None, :, :, :, None]).squeeze(-1) + trans[:, :, None]
    return corners.cpu().numpy()


def link_colours(hand: HandModel) -> list[str]:
    """A colour per collision box, by the finger its link belongs to."""
    finger_of_link = {}
    for finger, spec in hand.description.fingers.items():
        for link in spec["links"] + [spec["tip_frame"]]:
            finger_of_link[link] = finger
    return [
        FINGER_COLOURS.get(finger_of_link.get(hand.link_names[int(li)], ""), PALM_COLOUR)
        for li in hand.box_link.tolist()
    ]


def draw_hand(
    hand: HandModel,
    joints: torch.Tensor,
    palm_pose: torch.Tensor | None = None,
    *,
    out: str | Path,
    points: np.ndarray | None = None,
    title: str | None = None,
    views: tuple[tuple[float, float], ...] = ((25.0, -60.0), (0.0, -90.0)),
) -> Path:
    """Render one grasp (joints (1, J), pose (1, 4, 4) or None) as boxes from several views; PNG.

    ``points`` (N, 3) are drawn as a scatter in the same frame (a cloud or contact points).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    if joints.dim() == 1:
        joints = joints[None]
    if joints.shape[0] != 1:
        raise ValueError(f"draw_hand: expected a single grasp (1, {hand.dof}), got {tuple(joints.shape)}")
    corners = box_corners(hand, joints, palm_pose)[0]  # (K, 8, 3)
    colours = link_colours(hand)
    extent_pts = corners.reshape(-1, 3) if points is None else np.concatenate([corners.reshape(-1, 3), points])
    centre = (extent_pts.max(0) + extent_pts.min(0)) / 2
    radius = (extent_pts.max(0) - extent_pts.min(0)).max() / 2 * 1.05
    fig = plt.figure(figsize=(5 * len(views), 5))
    for v, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), v + 1, projection="3d")
        faces = [[corners[k, i] for i in face] for k in range(len(corners)) for face in _FACES]
        face_colours = [colours[k] for k in range(len(corners)) for _ in _FACES]
        ax.add_collection3d(
            Poly3DCollection(faces, facecolors=face_colours, edgecolors="k", linewidths=0.2, alpha=0.55)
        )
        if points is not None and len(points):
            ax.scatter(points[:, 0], points[:, 1], points[:, 2], s=1, c="#444444")
        for axis_set, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
            axis_set(c - radius, c + radius)
        ax.set_box_aspect((1, 1, 1))
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MaxNLocator(4))
        ax.view_init(elev=elev, azim=azim)
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        ax.set_zlabel("z [m]")
        ax.set_title(f"elev {elev:.0f}°, azim {azim:.0f}°", fontsize=9)
    q_text = " ".join(f"{v:.2f}" for v in joints[0].tolist())
    fig.suptitle(title or f"{hand.description.name}   q = [{q_text}]", fontsize=8)
    return save_figure(fig, out, dpi=110)


def draw_cloud_with_hands(fig, points: np.ndarray, colours, corners: np.ndarray, *, centre: np.ndarray,
                          radius: float, views=((-60.0, -90.0), (15.0, -35.0)), alpha: float = 0.4,
                          point_size: float = 0.5) -> None:  # fmt: skip
    """One 3D panel per (elev, azim) of ``views`` in ``fig``: the cloud (N, 3) with ``colours`` (a
    colour or (N, 4)) and hands as boxes (G, K, 8, 3), hand k in colour k of tab10; equal axes of
    half-width ``radius`` about ``centre``."""
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    cmap = plt.get_cmap("tab10")
    for v, (elev, azim) in enumerate(views):
        ax = fig.add_subplot(1, len(views), v + 1, projection="3d")
        ax.scatter(*points.T, s=point_size, c=colours)
        for k in range(len(corners)):
            faces = [[corners[k, b, i] for i in face] for b in range(corners.shape[1]) for face in _FACES]
            ax.add_collection3d(
                Poly3DCollection(faces, facecolors=cmap(k % 10), edgecolors="k", linewidths=0.1, alpha=alpha)
            )
        for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
            setter(c - radius, c + radius)
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=elev, azim=azim)
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
        ax.set_zlabel("z [m]")


def save_figure(fig, out: str | Path, *, dpi: int = 100) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
