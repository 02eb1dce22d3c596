"""Observations: camera poses over the table, ray-cast depth, sensor noise, clouds in the camera frame.

Camera frame: the ROS optical convention (x right, y down, z forward), as in the shard schema.
Depth is ray cast with MuJoCo's ``mj_multiRay`` on the settled scene model (no Open3D: the same code
runs on the GPU machine). Notation: H x W image, N points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Intrinsics:
    """Pinhole intrinsics of a ``width`` x ``height`` depth image (pixels)."""

    width: int = 320
    height: int = 240
    fx: float = 280.0
    fy: float = 280.0
    cx: float = 159.5
    cy: float = 119.5

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        f = 0.5 * width / np.tan(np.radians(hfov_deg) / 2)
        return cls(width, height, f, f, (width - 1) / 2, (height - 1) / 2)

    def rays(self) -> np.ndarray:
        """Unit ray directions (H, W, 3) in the camera frame, and their z components."""
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        d = np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u, dtype=float)], -1)
        return d / np.linalg.norm(d, axis=-1, keepdims=True)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """world <- camera (4, 4) of an optical-frame camera at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # points down in the image
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, y, z], 1)
    pose[:3, 3] = eye
    return pose


def sample_camera_poses(
    n: int,
    rng: np.random.Generator,
    *,
    centre: np.ndarray = (0.0, 0.0, 0.0),
    distance: tuple[float, float] = (0.4, 1.0),
    elevation_deg: tuple[float, float] = (30.0, 75.0),
    target_jitter: float = 0.05,
) -> np.ndarray:
    """``n`` camera poses (n, 4, 4), world <- camera, looking at the table centre from a robot's
    viewpoints: distance 0.4-1.0 m, elevation 30-75° above the table, any azimuth, the look-at
    point jittered by up to ``target_jitter`` m, a small random roll (±5°)."""
    poses = []
    for _ in range(n):
        r, el, az = rng.uniform(*distance), np.radians(rng.uniform(*elevation_deg)), rng.uniform(0, 2 * np.pi)
        target = np.asarray(centre, dtype=float) + np.append(rng.uniform(-target_jitter, target_jitter, 2), 0.0)
        eye = target + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        pose = look_at(eye, target)
        roll = np.radians(rng.uniform(-5, 5))
        c, s = np.cos(roll), np.sin(roll)
        pose[:3, :3] = pose[:3, :3] @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        poses.append(pose)
    return np.stack(poses)


def raycast_depth(model, data, camera_pose: np.ndarray, intr: Intrinsics, *, max_depth: float = 2.0):
    """Ray-cast a depth image in a MuJoCo scene.

    Returns:
        depth (H, W) float64, z along the optical axis (m), NaN where nothing is hit within
        ``max_depth``; geom (H, W) int, the MuJoCo geom id hit (-1 none).
    """
    import mujoco

    d_cam = intr.rays()  # (H, W, 3)
    d_world = d_cam.reshape(-1, 3) @ camera_pose[:3, :3].T  # (H*W, 3)
    nray = len(d_world)
    geomid = np.full(nray, -1, dtype=np.int32)
    dist = np.full(nray, -1.0, dtype=np.float64)
    pnt = camera_pose[:3, 3].astype(np.float64).copy()
    mujoco.mj_multiRay(
        model, data, pnt, np.ascontiguousarray(d_world.ravel()), None, 1, -1, geomid, dist, None, nray, max_depth
    )
    dist = np.where((geomid >= 0) & (dist >= 0), dist, np.nan).reshape(intr.height, intr.width)
    depth = dist * d_cam[..., 2]
    return depth, geomid.reshape(intr.height, intr.width)


def add_depth_noise(
    depth: np.ndarray,
    rng: np.random.Generator,
    *,
    sigma_base: float = 0.0008,
    sigma_quad: float = 0.0025,
    edge_threshold: float = 0.02,
    edge_dropout: float = 0.6,
    missing: float = 0.02,
) -> np.ndarray:
    """Realistic structured-light/stereo noise on a depth image (H, W) (NaN = no return).

    Recipe: 1. depth-proportional Gaussian noise, sigma(z) = sigma_base + sigma_quad z^2;
    2. edge dropout: pixels whose 4-neighbourhood spans more than ``edge_threshold`` m are lost with
    probability ``edge_dropout`` (flying pixels / occlusion shadows); 3. missing returns: every
    pixel is lost with probability ``missing``.
    """
    out = depth.copy()
    z = np.nan_to_num(depth, nan=0.0)
    out = out + rng.normal(size=out.shape) * (sigma_base + sigma_quad * z**2)
    pad = np.pad(np.where(np.isnan(depth), np.inf, depth), 1, mode="edge")
    neigh = np.stack([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
    with np.errstate(invalid="ignore"):
        span = np.abs(neigh - np.where(np.isnan(depth), np.inf, depth)[None])
    edge = np.nan_to_num(span, nan=np.inf, posinf=np.inf).max(0) > edge_threshold
    out[edge & (rng.random(out.shape) < edge_dropout)] = np.nan
    out[rng.random(out.shape) < missing] = np.nan
    return out


def depth_to_points(depth: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a depth image (H, W) to camera-frame points (N, 3) and their flat pixel indices (N,)."""
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    z = depth[v, u]
    pts = np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], 1)
    return pts, v * intr.width + u


def crop_workspace(points_cam: np.ndarray, camera_pose: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Mask (N,) of camera-frame points (N, 3) whose world position lies in the box [lower, upper]."""
    world = points_cam @ camera_pose[:3, :3].T + camera_pose[:3, 3]
    return np.all((world >= np.asarray(lower)) & (world <= np.asarray(upper)), axis=1)
