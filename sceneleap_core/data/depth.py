"""A real depth camera, in torch: a RealSense-D435-like stereo depth stream, robot camera poses, a
ray-casting renderer (table plane + object meshes) with per-pixel object ids, and the cloud a
robot would see (back-projected, cropped to the workspace, voxel-downsampled to a point budget).

Camera frame: the ROS optical convention (x right, y down, z forward), as in the shard schema.
Notation: V views, H x W image, O objects, F triangles, P pixels (rays), N points.

Sensor model (:class:`DepthCamera`, defaults after the Intel RealSense D435 at 640 x 480):

* intrinsics: fx = fy = 383 px, principal point at the image centre (the D435's depth stream at
  640 x 480: ~80 x 64 deg field of view); valid range 0.35-1.2 m (SPEC §3.3), depth unit 1 mm
  (z16 with depth scale 0.001): depths are quantized to it;
* axial noise: the stereo RMS error model of Grunnet-Jepsen et al., "Tuning depth cameras for best
  performance" (Intel RealSense white paper, 2019), sigma(z) = z^2 * s / (f * B) with subpixel
  error s = 0.08 px, baseline B = 50 mm, f = 383 px: 1.5 mm at 0.6 m, 4.2 mm at 1 m; plus a floor
  ``sigma_floor`` (0.5 mm);
* depth edges (4-neighbour depth span > ``edge_threshold``): a pixel becomes a flying pixel with
  probability ``flying_prob`` (its depth mixed uniformly between its own and the far neighbour's,
  its object id kept) or a hole with probability ``edge_dropout`` (the stereo matcher's
  invalidation band);
* holes: every pixel drops out independently with probability ``dropout`` (low texture, specular).

The renderer casts one ray per pixel: the table top (z = 0, ``TABLE_HALF``) analytically, objects
by Moller-Trumbore on every (triangle, pixel) pair whose pixel lies in the triangle's projected
bounding box (a rasterizer's coverage, but the depth is the exact ray-triangle hit), back faces
culled, all views and objects in one batch, depth min-reduced per pixel by a scatter. With the ray
origin at the camera centre, every Moller-Trumbore term is a dot product of the ray direction with
a per-triangle vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneleap_core.data.camera import look_at
from sceneleap_core.data.scenes import TABLE_HALF


@dataclass
class DepthCamera:
    """A stereo depth camera (module docstring). All lengths in metres, probabilities per pixel."""

    width: int = 640
    height: int = 480
    fx: float = 383.0
    fy: float = 383.0
    cx: float = 319.5
    cy: float = 239.5
    min_depth: float = 0.35
    max_depth: float = 1.2
    depth_unit: float = 0.001
    subpixel: float = 0.08  # px, stereo matching error
    baseline: float = 0.050
    sigma_floor: float = 0.0005
    edge_threshold: float = 0.02
    flying_prob: float = 0.3
    edge_dropout: float = 0.3
    dropout: float = 0.01
    noise: bool = True

    def sigma(self, z: torch.Tensor) -> torch.Tensor:
        """Axial noise standard deviation (m) at depth ``z`` (m): sigma_floor + z^2 s / (f B)."""
        return self.sigma_floor + z.square() * self.subpixel / (self.fx * self.baseline)

    def rays(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(H, W, 3) ray directions with z = 1 (a hit at ray parameter t has depth t)."""
        v, u = torch.meshgrid(
            torch.arange(self.height, device=device, dtype=dtype),
            torch.arange(self.width, device=device, dtype=dtype),
            indexing="ij",
        )
        return torch.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, torch.ones_like(u)], -1)


def sample_robot_cameras(
    n: int,
    rng: np.random.Generator,
    *,
    distance: tuple[float, float] = (0.5, 0.85),
    elevation_deg: tuple[float, float] = (35.0, 70.0),
    azimuth_deg: tuple[float, float] = (0.0, 360.0),
    target_jitter: float = 0.05,
    target_height: tuple[float, float] = (0.0, 0.05),
    roll_deg: float = 3.0,
) -> np.ndarray:
    """``n`` camera poses (n, 4, 4), world <- camera, of a wrist/head camera over the workspace:
    0.5-0.85 m from a look-at point within ±5 cm of the table centre (0-5 cm high), 35-70 deg
    above the table, any azimuth, ±3 deg roll. Keeps the objects inside the 0.35-1.2 m range."""
    out = np.zeros((n, 4, 4))
    for i in range(n):
        r = rng.uniform(*distance)
        el, az = np.radians(rng.uniform(*elevation_deg)), np.radians(rng.uniform(*azimuth_deg))
        target = np.array([*rng.uniform(-target_jitter, target_jitter, 2), rng.uniform(*target_height)])
        eye = target + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        pose = look_at(eye, target)
        roll = np.radians(rng.uniform(-roll_deg, roll_deg))
        c, s = np.cos(roll), np.sin(roll)
        pose[:3, :3] = pose[:3, :3] @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        out[i] = pose
    return out


##################################################################################################
# Renderer
##################################################################################################
_RAYS: dict = {}  # (intrinsics, device, dtype) -> (H W, 3) ray directions


def render_depth(
    camera: DepthCamera,
    camera_pose: torch.Tensor,
    meshes: list[tuple[torch.Tensor, torch.Tensor]],
    object_pose: torch.Tensor,
    *,
    table_half: tuple[float, float] | None = TABLE_HALF[:2],
    object_view: torch.Tensor | None = None,
    chunk: int = 1 << 21,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ideal depth and object index of V views, all views and objects in one batch.

    Args:
        camera: intrinsics (noise is not applied here).
        camera_pose: (V, 4, 4) world <- camera.
        meshes: O (vertices (Vk, 3) object frame, faces (F, 3) int64), outward counter-clockwise.
        object_pose: (O, 4, 4) world <- object.
        table_half: (x, y) half extents of the table top at z = 0 (None: no table).
        object_view: (V, O) bool, which objects each view sees (several scenes in one batch);
            default all.
        chunk: bound on (triangle, pixel) pairs per pass.

    Returns:
        depth (V, H, W) (m, +inf where nothing is hit), index (V, H, W) int64 (object index into
        ``meshes``, -1 table, -2 nothing).

    Recipe: 1. rays (z = 1); 2. table: t = -o_z / d_z inside the table rectangle (all views at
    once); 3. every (view, triangle) pair: vertices into the camera frame, back-face cull, the
    projected pixel bounding box; 4. every (triangle, pixel in its box) pair: Moller-Trumbore with
    the ray origin at the camera centre (all terms are dot products of the ray with per-triangle
    vectors), depth min-reduced per pixel (scatter); 5. the index of the nearest hit.
    """
    dev, dt = camera_pose.device, camera_pose.dtype
    h, w = camera.height, camera.width
    key = (h, w, camera.fx, camera.fy, camera.cx, camera.cy, dev, dt)
    rays = _RAYS.get(key)
    if rays is None:
        rays = _RAYS[key] = camera.rays(dev, dt).reshape(-1, 3)  # (H W, 3)
    views = camera_pose.shape[0]
    rot, org = camera_pose[:, :3, :3], camera_pose[:, :3, 3]  # (V, 3, 3), (V, 3)
    depth = torch.full((views, h * w), float("inf"), dtype=dt, device=dev)
    index = torch.full((views, h * w), -2, dtype=torch.int64, device=dev)
    # 2. table plane
    if table_half is not None:
        dx, dy, dz = (rot @ rays.T).unbind(1)  # (V, H W) world ray components
        t = -org[:, 2:3] / dz
        on = (t > 0) & ((org[:, :1] + t * dx).abs() <= table_half[0]) & ((org[:, 1:2] + t * dy).abs() <= table_half[1])
        depth = torch.where(on, t, depth)
        index = torch.where(on, -1, index)
    depth, index = depth.reshape(-1), index.reshape(-1)
    if meshes:
        # 3. all triangles in the world, then every (view, triangle) pair in the camera frame
        offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
        verts = torch.cat([v.to(dt) for v, _ in meshes])  # (sum V, 3)
        vobj = torch.cat([torch.full((len(v),), o, device=dev) for o, (v, _) in enumerate(meshes)])
        faces = torch.cat([f + int(offsets[o]) for o, (_, f) in enumerate(meshes)])  # (F, 3)
        fobj = vobj[faces[:, 0]]  # (F,)
        pw = object_pose.to(dt)[vobj]  # (sum V, 4, 4)
        world = (pw[:, :3, :3] @ verts[:, :, None]).squeeze(-1) + pw[:, :3, 3]
        if object_view is None:
            vf, ff = torch.meshgrid(
                torch.arange(views, device=dev), torch.arange(len(faces), device=dev), indexing="ij"
            )
            vf, ff = vf.reshape(-1), ff.reshape(-1)
        else:
            vf, ff = object_view.to(dev)[:, fobj].nonzero(as_tuple=True)
        tri = torch.bmm(world[faces[ff]] - org[vf][:, None], rot[vf])  # (T, 3, 3) camera frame
        a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        front = ((torch.linalg.cross(e1, e2) * a).sum(-1) < 0) & (tri[..., 2] > 1e-3).all(-1)
        u = camera.fx * tri[..., 0] / tri[..., 2] + camera.cx  # (T, 3)
        v = camera.fy * tri[..., 1] / tri[..., 2] + camera.cy
        u0, u1 = u.amin(-1).floor().clamp_min(0), u.amax(-1).ceil().clamp_max(w - 1)
        v0, v1 = v.amin(-1).floor().clamp_min(0), v.amax(-1).ceil().clamp_max(h - 1)
        keep = front & (u0 <= u1) & (v0 <= v1)
        sel = keep.nonzero(as_tuple=True)[0]
        vf, ff, a, e1, e2 = vf[sel], ff[sel], a[sel], e1[sel], e2[sel]
        u0, v0 = u0[sel].long(), v0[sel].long()
        bw, bh = u1[sel].long() - u0 + 1, v1[sel].long() - v0 + 1
        # Moller-Trumbore with origin 0: T = -a; det = d.(e2 x e1), u det = d.(e2 x T), v det = d.(T x e1)
        tvec = -a
        q = torch.linalg.cross(tvec, e1)
        c_det, c_u = torch.linalg.cross(e2, e1), torch.linalg.cross(e2, tvec)
        t_num = (e2 * q).sum(-1)
        count = bw * bh  # (T,)
        ends = count.cumsum(0)
        # 4. (triangle, pixel) pairs, in passes of at most ``chunk`` pairs (whole triangles)
        hits = []
        start = 0
        while start < len(count):
            base = int(ends[start - 1]) if start else 0
            stop = int(torch.searchsorted(ends, base + chunk, right=True))
            stop = max(stop, start + 1)
            n = int(ends[stop - 1]) - base
            tri_of = torch.repeat_interleave(torch.arange(start, stop, device=dev), count[start:stop], output_size=n)
            local = torch.arange(base, base + n, device=dev) - (ends[tri_of] - count[tri_of])
            px = u0[tri_of] + local % bw[tri_of]
            py = v0[tri_of] + local // bw[tri_of]
            d = rays[py * w + px]  # (n, 3)
            det = (d * c_det[tri_of]).sum(-1)
            ok = det.abs() > 1e-12
            inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
            bu, bv = (d * c_u[tri_of]).sum(-1) * inv, (d * q[tri_of]).sum(-1) * inv
            t = t_num[tri_of] * inv
            ok &= (bu >= 0) & (bv >= 0) & (bu + bv <= 1) & (t > 0)
            flat = (vf[tri_of] * (h * w) + py * w + px)[ok]
            t = t[ok]
            depth.scatter_reduce_(0, flat, t, "amin")
            hits.append((flat, t, fobj[ff[tri_of[ok]]]))
            start = stop
        # 5. the nearest hit's object
        for flat, t, obj in hits:
            win = t == depth[flat]
            index[flat[win]] = obj[win]
    return depth.view(views, h, w), index.view(views, h, w)


def apply_sensor(camera: DepthCamera, depth: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sensor effects on ideal depth (V, H, W) (+inf = no hit): flying pixels and holes at depth
    edges, dropouts, axial noise, range limits, quantization (module docstring). Returns depth
    (V, H, W) with NaN for invalid pixels. ``generator`` must live on the depth's device."""

    def rand(*shape):
        return torch.rand(shape, generator=generator, device=depth.device, dtype=depth.dtype)

    z = depth.clone()
    if camera.noise:
        # 1. depth edges: the far neighbour of each pixel among its 4-neighbours
        big = torch.where(torch.isfinite(z), z, torch.full_like(z, 10.0))
        pad = torch.nn.functional.pad(big[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
        neigh = torch.stack([pad[:, :-2, 1:-1], pad[:, 2:, 1:-1], pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]])
        far = neigh.amax(0)
        edge = (far - big) > camera.edge_threshold
        r = rand(*z.shape)
        fly = edge & (r < camera.flying_prob) & (far < 10.0)
        hole = edge & (r >= camera.flying_prob) & (r < camera.flying_prob + camera.edge_dropout)
        z = torch.where(fly, big + rand(*z.shape) * (far - big), z)
        z = torch.where(hole, torch.full_like(z, float("inf")), z)
        # 2. dropouts, 3. axial noise
        z = torch.where(rand(*z.shape) < camera.dropout, torch.full_like(z, float("inf")), z)
        finite = torch.isfinite(z)
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        z = torch.where(finite, z + noise * camera.sigma(torch.where(finite, z, torch.zeros_like(z))), z)
    # 4. range, 5. quantization
    valid = torch.isfinite(z) & (z >= camera.min_depth) & (z <= camera.max_depth)
    if camera.depth_unit > 0:
        z = torch.round(z / camera.depth_unit) * camera.depth_unit
    return torch.where(valid, z, torch.full_like(z, float("nan")))


def back_project(camera: DepthCamera, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-frame points (N, 3) of one depth image (H, W) and their flat pixel indices (N,)."""
    pix = torch.nonzero(torch.isfinite(depth).reshape(-1), as_tuple=True)[0]
    z = depth.reshape(-1)[pix]
    u, v = (pix % camera.width).to(z.dtype), (pix // camera.width).to(z.dtype)
    return torch.stack([(u - camera.cx) / camera.fx * z, (v - camera.cy) / camera.fy * z, z], 1), pix


def voxel_downsample(points: torch.Tensor, voxel: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices (N',) of one random point per occupied voxel of edge ``voxel`` (m) among points (N, 3)."""
    if len(points) == 0:
        return torch.zeros(0, dtype=torch.int64, device=points.device)
    perm = torch.randperm(len(points), generator=generator, device=points.device)
    key = torch.floor(points[perm] / voxel).to(torch.int64)
    key = key - key.amin(0)
    span = key.amax(0) + 1
    flat = (key[:, 0] * span[1] + key[:, 1]) * span[2] + key[:, 2]
    _, inverse = torch.unique(flat, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(perm), dtype=torch.int64, device=points.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(perm), device=points.device), "amin")
    return perm[first]


@dataclass
class Workspace:
    """World box the cloud is cropped to, the voxel size and the point budget of a view."""

    half: tuple[float, float] = (0.3, 0.3)
    z_range: tuple[float, float] = (-0.01, 0.35)
    voxel: float = 0.005
    max_points: int = 16384


def observe(
    camera: DepthCamera,
    camera_pose: torch.Tensor,
    depth: torch.Tensor,
    index: torch.Tensor,
    workspace: Workspace,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cloud of one noisy view: back-project depth (H, W), crop to the workspace (world box),
    voxel-downsample, cap at the point budget (random). Returns camera-frame points (N, 3) and
    the per-point index (N,) from ``index`` (H, W) (object index, -1 table)."""
    pts, pix = back_project(camera, depth)
    world = pts @ camera_pose[:3, :3].T + camera_pose[:3, 3]
    keep = (
        (world[:, 0].abs() <= workspace.half[0])
        & (world[:, 1].abs() <= workspace.half[1])
        & (world[:, 2] >= workspace.z_range[0])
        & (world[:, 2] <= workspace.z_range[1])
    )
    pts, pix, world = pts[keep], pix[keep], world[keep]
    sel = (
        voxel_downsample(world, workspace.voxel, generator)
        if workspace.voxel > 0
        else torch.arange(len(pts), device=pts.device)
    )
    if len(sel) > workspace.max_points:
        sel = sel[torch.randperm(len(sel), generator=generator, device=sel.device)[: workspace.max_points]]
    sel = sel.sort().values
    lab = index.reshape(-1)[pix[sel]]
    return pts[sel], torch.where(lab >= 0, lab, torch.full_like(lab, -1))
