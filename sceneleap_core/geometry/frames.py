"""The network frame: where clouds and grasps live when the generator sees them.

Training data (:mod:`sceneleap_core.train.data`) and inference (:mod:`sceneleap_core.infer`) both
call :func:`network_frame`, so the two can never disagree. Two canonical frames (``FRAMES``):

* ``camera``: the camera's optical frame (x right, y down, z forward), centred on the cloud;
* ``gravity``: z along world up, x along the horizontal part of the camera's viewing direction,
  y = z x x, centred on the cloud. Camera roll and pitch vanish from the data (a top grasp always
  points along -z); the remaining freedom, yaw, is fixed by where the camera looks from, which is
  observable in the cloud itself. Needs the up vector in the camera frame: from the camera pose
  (training data, tf at run time) or estimated from the table plane (:func:`estimate_up`).

``x_net = s R (x_cam - c)``; the returned ``frame`` (4, 4) is its inverse, camera <- network
(linear part R^T / s), the form :func:`sceneleap_core.infer.planner.to_input_frame` expects.
"""

from __future__ import annotations

import numpy as np

FRAMES = ("camera", "gravity")
CENTERS = ("mean", "bbox", "none")


def rotation_about_axis(axis: np.ndarray, angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` (rad) about the unit ``axis`` (3,) (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * (kx @ kx)


def cloud_center(points: np.ndarray, mode: str) -> np.ndarray:
    """(N, 3) -> (3,) centre: "mean", "bbox" (box centre) or "none" (origin)."""
    if mode == "mean":
        return points.mean(0)
    if mode == "bbox":
        return 0.5 * (points.min(0) + points.max(0))
    if mode == "none":
        return np.zeros(3)
    raise ValueError(f"center: expected one of {CENTERS}, got {mode!r}")


def gravity_rotation(up: np.ndarray, view: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """(3, 3) rotation network <- camera of the ``gravity`` frame: rows x = horizontal part of the
    viewing direction ``view`` (camera +z), z = ``up`` (world up in camera coordinates), y = z x x.
    A camera looking straight down (no horizontal part) falls back to the camera's -y axis."""
    z = np.asarray(up, dtype=np.float64)
    z = z / np.linalg.norm(z)
    v = np.asarray(view, dtype=np.float64)
    x = v - (v @ z) * z
    if np.linalg.norm(x) < 1e-6:
        alt = np.array([0.0, -1.0, 0.0])
        x = alt - (alt @ z) * z
    x = x / np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def network_frame(
    points: np.ndarray,
    *,
    frame: str = "camera",
    center: str = "mean",
    up: np.ndarray | None = None,
    yaw: float = 0.0,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map a camera-frame cloud (N, 3) into the network frame.

    Args:
        frame: ``camera`` or ``gravity`` (see the module docstring).
        center: cloud centring (``CENTERS``), computed on the given points.
        up: world up (3,) in the camera frame; required by ``gravity`` and by ``yaw`` != 0.
        yaw: extra rotation (rad) about the up axis (augmentation).
        scale: extra uniform scale s (augmentation; 1 = none).

    Returns:
        network points (N, 3), ``frame`` (4, 4) camera <- network, and the (3, 3) rotation R
        (network <- camera) so callers can move grasp poses with it.
    """
    if frame not in FRAMES:
        raise ValueError(f"frame: expected one of {FRAMES}, got {frame!r}")
    if (frame == "gravity" or yaw) and up is None:
        raise ValueError(
            f"up: expected the world up vector in the camera frame for frame={frame!r}, yaw={yaw}, got None"
        )
    c = cloud_center(points, center)
    rot = gravity_rotation(up) if frame == "gravity" else np.eye(3)
    if yaw:
        rot = rotation_about_axis(rot @ np.asarray(up, dtype=np.float64), yaw) @ rot
    net = scale * (points - c) @ rot.T
    inv = np.eye(4)
    inv[:3, :3] = rot.T / scale
    inv[:3, 3] = c
    return net, inv, rot


def estimate_up(points: np.ndarray, *, iterations: int = 200, threshold: float = 0.006, seed: int = 0) -> np.ndarray:
    """World up (3,) in the camera frame from the dominant plane of a tabletop cloud (N, 3) (RANSAC,
    then a least-squares refit on the inliers), oriented towards the camera (the table is seen from
    above). For clouds that come without a camera pose / tf."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) < 3:
        raise ValueError(f"points: expected an (N >= 3, 3) cloud, got shape {pts.shape}")
    rng = np.random.default_rng(seed)
    # every hypothesis at once: (I, 3) triples -> plane normals, scored on at most 2,048 points
    idx = rng.integers(0, len(pts), size=(iterations, 3))
    a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    normals = np.cross(b - a, c - a)  # (I, 3)
    norms = np.linalg.norm(normals, axis=1)
    valid = norms > 1e-9  # repeated or collinear triples
    if not valid.any():
        raise ValueError("points: expected a cloud with a plane in it, got collinear points")
    normals[valid] /= norms[valid, None]
    probe = pts if len(pts) <= 2048 else pts[rng.choice(len(pts), 2048, replace=False)]  # (M, 3)
    # scored in float32 (mm thresholds need no more; ~9x faster than float64 for this 3-deep product)
    dist = probe.astype(np.float32) @ normals.T.astype(np.float32)  # (M, I)
    dist -= (a * normals).sum(1).astype(np.float32)
    np.abs(dist, out=dist)
    counts = np.where(valid, np.count_nonzero(dist < threshold, axis=0), -1)
    k = int(np.argmax(counts))
    n, a = normals[k], a[k]
    inliers = pts[np.abs((pts - a) @ n) < threshold]
    centred = inliers - inliers.mean(0)
    n = np.linalg.svd(centred, full_matrices=False)[2][-1]
    if n @ (-inliers.mean(0)) < 0:  # towards the camera at the origin
        n = -n
    return n
