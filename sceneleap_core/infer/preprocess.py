"""Raw cloud -> clean cloud: the planner's preprocessing steps, each a small numpy function.

Order (:meth:`sceneleap_core.infer.GraspPlanner.prepare`): :func:`as_xyz` (shapes, extra channels,
organized clouds) -> :func:`drop_nonfinite` -> :func:`crop_box` (optional workspace) ->
:func:`voxel_downsample` (optional) -> :func:`check_spread` (clear errors for degenerate clouds) ->
sampling to the model's point count -> :func:`support_plane` (the table, kept for collision checks);
:func:`prepare_cloud` runs them all (the learned planner and the non-learned baselines share it).

Shapes: N points, C extra channels (colour, intensity: ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MIN_POINTS = 16  # fewer usable points than this is not a scene


def as_xyz(points) -> np.ndarray:
    """(N, 3), (N, 3 + C) or an organized (H, W, 3 + C) cloud (numpy or torch) -> (N, 3) float64 xyz."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"points: expected a numeric (N, 3) or (N, 3 + C) array, got {type(points).__name__}: {err}"
        ) from None
    if arr.ndim == 3:  # organized (H, W, 3 + C)
        arr = arr.reshape(-1, arr.shape[-1])
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"points: expected an (N, 3) or (N, 3 + C) cloud (x, y, z first), got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError("points: expected a non-empty cloud, got 0 points")
    return arr[:, :3]


def drop_nonfinite(xyz: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop rows with a NaN/inf coordinate (organized clouds mark holes so) -> (kept (M, 3), dropped)."""
    ok = np.isfinite(xyz).all(axis=1)
    if not ok.any():
        raise ValueError(f"points: expected finite coordinates, got none: all {len(xyz)} points are NaN or inf")
    return xyz[ok], int((~ok).sum())


def workspace_box(workspace) -> np.ndarray:
    """``workspace`` ((xmin, ymin, zmin), (xmax, ymax, zmax)) -> (2, 3) float64, or ValueError."""
    box = np.asarray(workspace, dtype=np.float64)
    if box.shape != (2, 3) or not np.all(box[0] <= box[1]):
        raise ValueError(
            f"workspace: expected ((xmin, ymin, zmin), (xmax, ymax, zmax)) with min <= max, got {box.tolist()}"
        )
    return box


def empty_crop_error(lo, hi, box: np.ndarray) -> ValueError:
    """The error of a workspace that keeps no point of a cloud whose extent is ``lo`` .. ``hi`` (3,)."""
    lo, hi = np.round(lo, 3).tolist(), np.round(hi, 3).tolist()
    return ValueError(f"workspace: no point of the cloud (extent {lo} .. {hi}) lies inside {box.round(3).tolist()}")


def crop_box(xyz: np.ndarray, workspace) -> np.ndarray:
    """Keep points inside the axis-aligned box ``workspace`` = (min (3,), max (3,)) in the cloud's frame."""
    box = workspace_box(workspace)
    keep = np.all((xyz >= box[0]) & (xyz <= box[1]), axis=1)
    if not keep.any():
        raise empty_crop_error(xyz.min(0), xyz.max(0), box)
    return xyz[keep]


def voxel_downsample(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """One point per occupied ``voxel`` (m) cube: the centroid of its points (order: by voxel key)."""
    if not voxel or voxel <= 0:
        return xyz
    cell = np.floor((xyz - xyz.min(0)) / voxel).astype(np.int64)
    dims = cell.max(0) + 1
    key = (cell[:, 0] * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    out = np.zeros((len(uniq), 3))
    for a in range(3):
        out[:, a] = np.bincount(inverse, weights=xyz[:, a], minlength=len(uniq))
    return out / counts[:, None]


def check_spread(xyz: np.ndarray, *, min_points: int = MIN_POINTS, min_extent: float = 1e-4) -> None:
    """Raise ValueError for clouds no network can read: too few points, or all on one point / line."""
    centred = xyz - xyz.mean(0) if len(xyz) else xyz
    check_moments(len(xyz), centred.T @ centred / max(1, len(xyz)), min_points=min_points, min_extent=min_extent)


def check_moments(count: int, cov: np.ndarray, *, min_points: int = MIN_POINTS, min_extent: float = 1e-4) -> None:
    """:func:`check_spread` from a cloud's point count and 3 x 3 covariance (the device path reads
    these back instead of the points)."""
    if count < min_points:
        raise ValueError(f"points: expected at least {min_points} usable points, got {int(count)} after cleaning")
    # singular values / sqrt(N) from the 3 x 3 second moment (no N x 3 SVD)
    sv = np.sqrt(np.clip(np.linalg.eigvalsh(cov), 0.0, None))[::-1]
    if sv[1] < min_extent:
        raise ValueError(
            f"points: degenerate cloud (spread {sv.round(6).tolist()} m along its principal axes: "
            "all points on one spot or one line)"
        )


@dataclass
class SupportPlane:
    """The table: points x with ``normal . x = offset`` (normal = world up in the cloud's frame);
    ``inliers``: fraction of the cloud within the fit threshold. ``normal`` (3,) and ``offset`` are
    numpy / float from :func:`support_plane`, tensors on the device from
    :class:`sceneleap_core.infer.device_prepare.DevicePreparer` and inside a captured
    post-processing graph (:class:`sceneleap_core.infer.cuda_graph.GraphedPost`)."""

    normal: np.ndarray | torch.Tensor
    offset: float | torch.Tensor
    inliers: float = 0.0

    def height(self, xyz: np.ndarray) -> np.ndarray:
        return xyz @ self.normal - self.offset


def support_plane(
    xyz: np.ndarray,
    up: np.ndarray | None = None,
    *,
    seed: int = 0,
    threshold: float = 0.006,
    min_inliers: float = 0.05,
    below: float = 0.05,
) -> SupportPlane | None:
    """The support plane of a tabletop cloud (N, 3), or None when there is none.

    The normal is ``up`` when given, else the dominant RANSAC plane
    (:func:`sceneleap_core.geometry.frames.estimate_up`); its height is the most populated height bin
    among the lower points (:func:`sceneleap_core.geometry.anchors.support_height`), refit as the
    median height of the inliers. A plane is accepted only when ``min_inliers`` of the points lie on
    it and at most ``below`` of them lie under it (a support holds the scene up: an object's face
    does not qualify, so a cloud of one object gets no table check rather than a wrong one).
    """
    from sceneleap_core.geometry.anchors import support_height
    from sceneleap_core.geometry.frames import estimate_up

    pts = np.asarray(xyz, dtype=np.float64)
    if up is None:
        try:
            up = estimate_up(pts, seed=seed, threshold=threshold)
        except ValueError:
            return None
    n = np.asarray(up, dtype=np.float64)
    n = n / np.linalg.norm(n)
    h = pts @ n
    d = float(support_height(torch.from_numpy(h).float()[None])[0])
    on = np.abs(h - d) < threshold
    if on.any():
        d = float(np.median(h[on]))
        on = np.abs(h - d) < threshold
    frac = float(on.mean())
    if frac < min_inliers or float((h < d - threshold).mean()) > below:
        return None
    return SupportPlane(n, d, frac)


def prepare_cloud(
    points,
    num_points: int,
    *,
    seed: int = 0,
    up: np.ndarray | None = None,
    workspace=None,
    voxel_size: float = 0.0,
) -> tuple[np.ndarray, SupportPlane | None, dict]:
    """The steps of the module docstring in order, for any planner (learned or not).

    Args:
        points: (N, 3), (N, 3 + C) or organized (H, W, 3 + C) cloud, NaN/inf rows allowed.
        num_points: points drawn (seeded by ``seed``; with replacement when fewer remain).
        up: world up in the cloud's frame, or None (RANSAC).
        workspace: ((xmin, ymin, zmin), (xmax, ymax, zmax)) crop in the cloud's frame, or None.
        voxel_size: voxel downsampling (m) before drawing; 0 = off.

    Returns:
        xyz (num_points, 3) float64, the support plane (or None) and point counts after each step
        (``input``, ``nonfinite`` dropped, ``cropped``, ``voxel``).
    """
    xyz = as_xyz(points)
    stats = {"input": len(xyz)}
    xyz, stats["nonfinite"] = drop_nonfinite(xyz)
    if workspace is not None:
        xyz = crop_box(xyz, workspace)
    stats["cropped"] = len(xyz)
    xyz = voxel_downsample(xyz, voxel_size)
    stats["voxel"] = len(xyz)
    check_spread(xyz)
    rng = np.random.default_rng(seed)
    pts = xyz[rng.choice(len(xyz), num_points, replace=len(xyz) < num_points)]
    return pts, support_plane(pts, up, seed=seed), stats
