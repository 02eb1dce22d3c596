"""Raw cloud -> clean cloud on the planner's device, at fixed shapes, with one host sync.

The same steps as :func:`sceneleap_core.infer.preprocess.prepare_cloud` (clean, crop, spread check,
draw ``num_points``, support plane) and :func:`sceneleap_core.geometry.frames.network_frame`, in
torch on the cloud's way to the network. On an H200 host the numpy steps took ~5 ms of a ~37 ms
plan (RANSAC 1.5 ms, the support height 1.5 ms, cleaning and the spread check 1.2 ms); here they
are a few dozen kernels (one CUDA graph per padded input size on the ``cuda_graph`` backend: NaN
holes are masked rather than dropped, and clouds are padded with NaN rows to a power of two,
:func:`padded_size`), and everything the host
must decide (the errors of a bad cloud, whether the support plane holds) is read back in one small
copy at the end.

Where it differs from the numpy steps (both are correct, their draws are not the same):
* random numbers come from a torch generator on the device (seeded by the plan's seed), drawn as
  one vector of uniforms before the fixed-shape work (:func:`uniform_count`);
* a cloud with fewer usable points than ``num_points`` repeats a random permutation of them
  (each point ``floor`` or ``ceil(num_points / M)`` times) instead of drawing with replacement;
* the plane's least-squares normal is the closed-form smallest eigenvector of the inliers' 3 x 3
  scatter (:func:`smallest_eigenvector`) rather than an SVD;
* coordinates are float32.
Voxel downsampling has no fixed shape (one point per occupied voxel): a planner that voxelizes
prepares on the host.

Shapes: N raw points, M usable, P = ``num_points``, I RANSAC hypotheses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sceneleap_core.geometry.anchors import support_height
from sceneleap_core.infer.postprocess import device_constant
from sceneleap_core.infer.preprocess import SupportPlane, as_xyz, check_moments, empty_crop_error, workspace_box

RANSAC_ITERATIONS = 200  # as frames.estimate_up
RANSAC_PROBE = 2048
MIN_PADDED = 4096


def padded_size(n: int) -> int:
    """Rows a cloud of ``n`` points is padded to (with NaN rows) before the fixed-shape work: the
    next power of two, at least ``MIN_PADDED``. A stream of clouds whose size changes every frame
    (an unorganized cloud with its invalid points removed upstream) then reuses a few CUDA graphs
    instead of capturing one per size; the padding is at most as large as the cloud, and the
    preparation's GPU work is well under a millisecond at 20k points."""
    return max(MIN_PADDED, 1 << max(0, int(n) - 1).bit_length())


def smallest_eigenvector(cov: torch.Tensor) -> torch.Tensor:
    """Unit eigenvector (..., 3) of the smallest eigenvalue of symmetric PSD matrices (..., 3, 3),
    in closed form (the trigonometric eigenvalues of a 3 x 3, then the largest cross product of two
    rows of ``cov - lambda I``): elementwise arithmetic only, so it runs inside a CUDA graph.
    Sign arbitrary; an isotropic matrix (no preferred direction) gives some unit vector."""
    c = cov.double()
    eye = torch.eye(3, dtype=c.dtype, device=c.device)
    q = c.diagonal(dim1=-2, dim2=-1).sum(-1) / 3  # (...,)
    off = c[..., 0, 1] ** 2 + c[..., 0, 2] ** 2 + c[..., 1, 2] ** 2
    p = ((((c.diagonal(dim1=-2, dim2=-1) - q[..., None]) ** 2).sum(-1) + 2 * off) / 6).sqrt()
    b = (c - q[..., None, None] * eye) / p.clamp_min(1e-30)[..., None, None]
    det = (
        b[..., 0, 0] * (b[..., 1, 1] * b[..., 2, 2] - b[..., 1, 2] * b[..., 2, 1])
        - b[..., 0, 1] * (b[..., 1, 0] * b[..., 2, 2] - b[..., 1, 2] * b[..., 2, 0])
        + b[..., 0, 2] * (b[..., 1, 0] * b[..., 2, 1] - b[..., 1, 1] * b[..., 2, 0])
    )  # (no LU: no solver call)
    r = (det / 2).clamp(-1, 1)
    phi = torch.arccos(r) / 3
    low = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)  # the smallest of the three
    m = c - low[..., None, None] * eye
    cands = torch.stack([torch.linalg.cross(m[..., 0, :], m[..., 1, :]), torch.linalg.cross(m[..., 0, :], m[..., 2, :]),
                         torch.linalg.cross(m[..., 1, :], m[..., 2, :])], -2)  # (..., 3, 3)  # fmt: skip
    norms = cands.norm(dim=-1)  # (..., 3)
    best = torch.gather(cands, -2, norms.argmax(-1)[..., None, None].expand(*norms.shape[:-1], 1, 3))[..., 0, :]
    fallback = eye[2].expand_as(best)  # (no item assignment: a host scalar would break a CUDA graph)
    big = norms.amax(-1, keepdim=True) > 1e-30
    return torch.where(big, best / norms.amax(-1, keepdim=True).clamp_min(1e-30), fallback).to(cov.dtype)


def _masked_moments(xyz: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count (), mean (3,) and covariance (3, 3) (float64) of the rows of ``xyz`` (N, 3) where ``mask``."""
    w = mask.double()
    n = w.sum()
    x = torch.where(mask[:, None], xyz, torch.zeros_like(xyz)).double()
    mean = x.sum(0) / n.clamp_min(1)
    d = (x - mean) * w[:, None]
    return n, mean, d.T @ d / n.clamp_min(1)


def uniform_count(num_raw: int, num_points: int, iterations: int = RANSAC_ITERATIONS) -> int:
    """Uniforms one preparation draws: a sort key per raw point, 3 per RANSAC triple, and a sort key
    per drawn point when the RANSAC probe is a subset of them."""
    return num_raw + 3 * iterations + (num_points if num_points > RANSAC_PROBE else 0)


def ransac_up(pts: torch.Tensor, uniforms: torch.Tensor, *, iterations: int = RANSAC_ITERATIONS,
              threshold: float = 0.006) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`sceneleap_core.geometry.frames.estimate_up` on the device: the dominant plane of
    ``pts`` (P, 3) from ``iterations`` triples scored on at most 2,048 points, refit on its inliers,
    its normal turned towards the camera at the origin; ``uniforms`` (3 I (+ P),) in [0, 1) choose
    the triples (and the probe). -> up (3,) and a bool () that is False when every triple was
    degenerate (no plane: the caller raises)."""
    m = pts.shape[0]
    idx = (uniforms[: 3 * iterations] * m).long().clamp_max(m - 1).view(iterations, 3)
    a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    normals = torch.linalg.cross(b - a, c - a)  # (I, 3)
    norms = normals.norm(dim=1)
    valid = norms > 1e-9
    normals = normals / norms.clamp_min(1e-12)[:, None]
    probe = pts if m <= RANSAC_PROBE else pts[uniforms[3 * iterations :].argsort()[:RANSAC_PROBE]]
    dist = (probe @ normals.T - (a * normals).sum(1)).abs()  # (probe, I)
    counts = torch.where(valid, (dist < threshold).sum(0), torch.full_like(valid, -1, dtype=torch.long))
    k = counts.argmax(0, keepdim=True)  # (1,): no host read
    n, a = normals[k][0], a[k][0]
    inliers = ((pts - a) @ n).abs() < threshold  # (P,)
    _, mean, cov = _masked_moments(pts, inliers)
    up = smallest_eigenvector(cov)
    up = torch.where(up @ (-mean) < 0, -up, up).to(pts.dtype)
    return up, valid.any()


def plane_fit(pts: torch.Tensor, up: torch.Tensor, *, threshold: float = 0.006) -> tuple[torch.Tensor, ...]:
    """The support plane along ``up`` (3,) of ``pts`` (P, 3), as
    :func:`sceneleap_core.infer.preprocess.support_plane` finds it once the normal is known:
    -> normal (3,), offset (), inlier fraction (), fraction below the plane ()."""
    n = up / up.norm()
    h = pts @ n  # (P,)
    d = support_height(h[None])[0]
    on = (h - d).abs() < threshold
    refit = torch.nanmedian(torch.where(on, h, torch.full_like(h, torch.nan)))
    d = torch.where(on.any(), refit, d)
    on = (h - d).abs() < threshold
    return n, d, on.float().mean(), (h < d - threshold).float().mean()


def gravity_rotation_t(up: torch.Tensor) -> torch.Tensor:
    """:func:`sceneleap_core.geometry.frames.gravity_rotation` (camera view +z) of ``up`` (3,) on
    its device: (3, 3) network <- camera, rows x (the view's horizontal part, or the camera's -y for a
    camera looking straight along up), z x x, z."""
    z = up / up.norm()
    view = device_constant((0.0, 0.0, 1.0), z.dtype, z.device)
    alt = device_constant((0.0, -1.0, 0.0), z.dtype, z.device)
    x = view - (view @ z) * z
    x = torch.where(x.norm() < 1e-6, alt - (alt @ z) * z, x)
    x = x / x.norm()
    return torch.stack([x, torch.linalg.cross(z, x), z])


REPORT = ("finite", "usable", "found", "inliers", "below")  # then extent (6,) and the usable points' covariance (9,)


def prepare_tensors(xyz: torch.Tensor, uniforms: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                    up: torch.Tensor | None, *, num_points: int, frame: str, center: str) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """The fixed-shape work of :class:`DevicePreparer`, a function of tensors (no host read or copy:
    a CUDA graph can hold it).

    Args:
        xyz: (N, 3) float32 raw points, NaN/inf rows allowed; uniforms: (:func:`uniform_count`,) in [0, 1);
        lo, hi: (3,) the workspace (+-inf without one); up: (3,) world up, or None (RANSAC).

    Returns:
        pts (P, 3) drawn points (input frame), net (P, 3) network-frame points, frame (4, 4)
        input <- network, up (3,), up_net (3,), plane normal (3,) and offset (), and ``report``
        (float64: the counts and fractions of ``REPORT``, the finite points' extent (6,), the usable
        points' covariance (9,)).
    """
    rows = xyz.shape[0]  # the padded cloud (padded_size)
    finite = torch.isfinite(xyz).all(1)
    clean = torch.where(finite[:, None], xyz, torch.zeros_like(xyz))
    usable = finite & ((clean >= lo) & (clean <= hi)).all(1)
    big = torch.full_like(clean, torch.inf)
    extent = torch.cat(
        [torch.where(finite[:, None], clean, big).amin(0), torch.where(finite[:, None], clean, -big).amax(0)]
    )
    count, _, cov = _masked_moments(clean, usable)
    # a random permutation of the usable points first; cycled when there are fewer than P
    keys = torch.where(usable, uniforms[:rows], torch.full_like(uniforms[:rows], 2.0))
    pick = keys.argsort()[torch.arange(num_points, device=xyz.device) % count.long().clamp_min(1)]
    pts = clean[pick]  # (P, 3)
    if up is None:
        up, found = ransac_up(pts, uniforms[rows:])
    else:
        found = torch.ones((), dtype=torch.bool, device=xyz.device)
    normal, offset, inliers, below = plane_fit(pts, up)
    # the frame in float64, as network_frame (a near-vertical view leaves x a short vector to normalize)
    p64 = pts.double()
    c = {"mean": p64.mean(0), "bbox": 0.5 * (p64.amin(0) + p64.amax(0)), "none": p64.mean(0) * 0}[center]
    up64 = up.double() / up.double().norm()
    eye = torch.eye(3, dtype=torch.float64, device=xyz.device)
    rot = gravity_rotation_t(up64) if frame == "gravity" else eye
    net = ((p64 - c) @ rot.T).float()
    inv = torch.cat([torch.cat([rot.T, c[:, None]], 1), torch.eye(4, dtype=torch.float64, device=xyz.device)[3:]])
    flags = torch.stack([finite.sum().double(), count, found.double(), inliers.double(), below.double()])
    report = torch.cat([flags, extent.double(), cov.flatten()])
    return pts, net, inv.float(), up, (rot @ up64).float(), normal, offset, report


class DevicePreparer:
    """One raw cloud -> what :meth:`sceneleap_core.infer.GraspPlanner.prepare` needs, on ``device``:
    the host's checks of shape and workspace, the upload, one draw of uniforms, then
    :func:`prepare_tensors` (replayed from a CUDA graph per :func:`padded_size` with ``graphed``), then one
    host read of its report, which raises the errors of a bad cloud.

    Args:
        num_points: P, points drawn for the network.
        frame, center: the network frame (:func:`sceneleap_core.geometry.frames.network_frame`).
        need_up: estimate up when not given even if the frame does not need it (anchored models).
        graphed: replay the fixed-shape work from CUDA graphs (:class:`sceneleap_core.infer.cuda_graph.GraphedCall`).
    """

    def __init__(self, num_points: int, *, frame: str = "gravity", center: str = "mean", need_up: bool = False,
                 graphed: bool = False) -> None:  # fmt: skip
        from sceneleap_core.geometry.frames import CENTERS, FRAMES

        if frame not in FRAMES:
            raise ValueError(f"frame: expected one of {FRAMES}, got {frame!r}")
        if center not in CENTERS:
            raise ValueError(f"center: expected one of {CENTERS}, got {center!r}")
        self.num_points, self.frame, self.center, self.need_up = int(num_points), frame, center, bool(need_up)
        self._calls = {}
        if graphed:
            from sceneleap_core.infer.cuda_graph import GraphedCall

            self._calls = {given: GraphedCall(self._core(given), "cloud preparation") for given in (False, True)}

    def _core(self, given: bool):
        def run(xyz, uniforms, lo, hi, *up):
            return prepare_tensors(xyz, uniforms, lo, hi, up[0] if given else None, num_points=self.num_points,
                                   frame=self.frame, center=self.center)  # fmt: skip

        return run

    def __call__(self, points, device, *, seed: int = 0, up=None, workspace=None) -> dict:
        """Args:
            points: (N, 3), (N, 3 + C) or organized (H, W, 3 + C) cloud (numpy or torch), NaN/inf allowed.
            device: where the work runs; seed: the draws' seed (a torch generator on ``device``).
            up: world up (3,) in the cloud's frame, or None (RANSAC).
            workspace: ((xmin, ymin, zmin), (xmax, ymax, zmax)) crop, or None.

        Returns:
            ``cloud`` (P, 3) float32 in the input frame; ``net`` (P, 3) network-frame points;
            ``frame`` (4, 4) input <- network; ``up`` (3,) or None; ``up_net`` (3,) or None;
            ``plane``: a :class:`~sceneleap_core.infer.preprocess.SupportPlane` whose ``normal`` (3,)
            and ``offset`` () are device tensors, or None; ``stats``: point counts (input,
            nonfinite, cropped, voxel).

        Raises:
            ValueError naming the problem, as the numpy steps do (shape, all NaN, empty crop, too
            few points, degenerate spread, no plane to estimate up from).
        """
        device = torch.device(device)
        if isinstance(points, torch.Tensor) and points.dim() in (2, 3) and points.shape[-1] >= 3 and points.numel():
            raw = points.detach().reshape(-1, points.shape[-1])[:, :3]
        else:
            raw = torch.from_numpy(np.ascontiguousarray(as_xyz(points), dtype=np.float32))
        box = np.array([[-np.inf] * 3, [np.inf] * 3]) if workspace is None else workspace_box(workspace)
        xyz = raw.to(device, torch.float32, non_blocking=True).contiguous()
        n_in, size = len(xyz), padded_size(len(xyz))
        if size > n_in:  # NaN rows are masked like a camera's holes: one graph serves a range of sizes
            xyz = torch.cat([xyz, xyz.new_full((size - n_in, 3), torch.nan)])
        lo, hi = torch.from_numpy(box.astype(np.float32)).to(device, non_blocking=True)
        gen = torch.Generator(device=device).manual_seed(int(seed))
        uniforms = torch.rand(uniform_count(len(xyz), self.num_points), generator=gen, device=device)
        given = up is not None
        extra = ()
        if given:
            up_t = up if isinstance(up, torch.Tensor) else torch.from_numpy(np.asarray(up, dtype=np.float32))
            extra = (up_t.to(device, torch.float32).reshape(3),)
        call = self._calls.get(given) or self._core(given)
        pts, net, inv, up_t, up_net, normal, offset, report = call(xyz, uniforms, lo, hi, *extra)
        report = report.cpu()  # the one host sync
        n_finite, n_usable, ok, frac, under = (float(v) for v in report[: len(REPORT)])
        ext, cov = report[5:11].numpy(), report[11:].numpy().reshape(3, 3)
        if n_finite == 0:
            raise ValueError(f"points: expected finite coordinates, got none: all {n_in} points are NaN or inf")
        if n_usable == 0:
            raise empty_crop_error(ext[:3], ext[3:], box)
        check_moments(n_usable, cov)
        wants_up = given or self.frame == "gravity" or self.need_up
        if not ok and wants_up:
            raise ValueError("points: expected a cloud with a plane in it, got collinear points")
        plane = SupportPlane(normal, offset, frac) if ok and frac >= 0.05 and under <= 0.05 else None
        stats = {"input": n_in, "nonfinite": n_in - int(n_finite), "cropped": int(n_usable), "voxel": int(n_usable)}
        return {"cloud": pts, "net": net, "frame": inv, "up": up_t if wants_up else None,
                "up_net": up_net if wants_up else None, "plane": plane, "stats": stats}  # fmt: skip


def prepare_on_device(points, num_points: int, device, *, seed: int = 0, up=None, workspace=None,
                      frame: str = "gravity", center: str = "mean", need_up: bool = False) -> dict:  # fmt: skip
    """:class:`DevicePreparer` once, eagerly (its ``__call__`` documents the arguments and result)."""
    return DevicePreparer(num_points, frame=frame, center=center, need_up=need_up)(
        points, device, seed=seed, up=up, workspace=workspace
    )
