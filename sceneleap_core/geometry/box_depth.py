"""How deep observed points lie inside oriented boxes, reduced without the (box, point) matrix.

The post-processing checks (``sceneleap_core.infer.postprocess``) ask two questions of a hand's
collision boxes and a cloud:

* :func:`hand_depth_stats`: per hand state, the summed depth of the points inside the hand and the
  number of points deeper than a tolerance (the collision check's hits, the energy's penetration);
  a point's depth in a hand is its deepest box's.
* :func:`box_max_depth`: per box, the deepest point inside it (finger clearance).

The depth of point p in a box (rotation R, centre c, half extents h) is
``max(0, min_i(h_i - |(R^T (p - c))_i|))``: the least clearance to a face inside, 0 outside.

On CUDA with Triton installed each is one fused kernel: a program walks the points in blocks and
the boxes one by one, keeping the running maxima and sums in registers, so nothing of size
(boxes x points) is written. The dense torch form (chunked) serves everywhere else and is the
reference the kernels are tested against. ``TRITON_INTERPRET=1`` runs the kernels on the CPU
(tests).

Shapes: S hand states (or hands), K boxes per state, N points.
"""

from __future__ import annotations

import os

import torch

try:  # optional: the fused kernels on CUDA
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None

# entries of the dense (S, N, K, 3) local coordinates per chunk of the torch form
_DENSE_ENTRIES = 1 << 26


def fused_available(points: torch.Tensor) -> bool:
    """Whether the Triton kernels can run on ``points``' device (Triton importable, and a CUDA
    tensor or the Triton interpreter enabled)."""
    if triton is None:
        return False
    return points.device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def _check(rot: torch.Tensor, ctr: torch.Tensor, half: torch.Tensor, points: torch.Tensor) -> None:
    s, k = ctr.shape[:2] if ctr.dim() == 3 else (None, None)
    if s is None or rot.shape != (s, k, 3, 3) or half.shape != (k, 3):
        raise ValueError(f"boxes: expected rot (S, K, 3, 3), ctr (S, K, 3), half (K, 3); got rot "
                         f"{tuple(rot.shape)}, ctr {tuple(ctr.shape)}, half {tuple(half.shape)}")  # fmt: skip
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points: expected shape (N, 3), got {tuple(points.shape)}")


def box_point_depth(rot: torch.Tensor, ctr: torch.Tensor, half: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Dense depth (S, N, K) of every point in every box (rotations (S, K, 3, 3), centres
    (S, K, 3), half extents (K, 3)); 0 outside. ``points``: (N, 3) shared by the states, or
    (S, N, 3) each state's own. One (N, 3) x (3, 3K) product per state (the local coordinates
    ``R^T (p - c)`` of all K boxes at once: batched 3 x 3 products were 60 % of this on an H200)."""
    s, k = ctr.shape[:2]
    stacked = rot.permute(0, 2, 1, 3).reshape(s, 3, 3 * k)  # (S, 3, 3K)
    offset = (ctr[:, :, None, :] @ rot).reshape(s, 1, 3 * k)  # (S, 1, 3K)
    points = points.to(rot)
    local = ((points[None] if points.dim() == 2 else points) @ stacked - offset).unflatten(-1, (k, 3))  # (S, N, K, 3)
    return (half.to(local) - local.abs()).amin(-1).clamp_min(0)


def _rows(points: int, boxes: int) -> int:
    """States per chunk of the dense form: (states, points, boxes, 3) under ``_DENSE_ENTRIES``."""
    return max(1, _DENSE_ENTRIES // max(1, points * boxes * 3))


def hand_depth_stats_dense(rot, ctr, half, points, tol) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`hand_depth_stats` in chunks of states through :func:`box_point_depth`."""
    sums, hits = [ctr.new_zeros(0)], [torch.zeros(0, dtype=torch.long, device=ctr.device)]  # (none when S = 0)
    step = _rows(len(points), ctr.shape[1])
    for a in range(0, len(ctr), step):
        depth = box_point_depth(rot[a : a + step], ctr[a : a + step], half, points).amax(-1)  # (s, N)
        sums.append(depth.sum(-1))
        hits.append((depth > tol[a : a + step, None]).sum(-1))
    return torch.cat(sums), torch.cat(hits)


def box_max_depth_dense(rot, ctr, half, points) -> torch.Tensor:
    """:func:`box_max_depth` in chunks of states through :func:`box_point_depth`."""
    step = _rows(len(points), ctr.shape[1])
    chunks = [box_point_depth(rot[a : a + step], ctr[a : a + step], half, points).amax(1)
              for a in range(0, len(ctr), step)]  # fmt: skip
    return torch.cat(chunks) if chunks else ctr.new_zeros(0, ctr.shape[1])


if triton is not None:

    @triton.jit
    def _depth_in_box(px, py, pz, rot_ptr, ctr_ptr, half_ptr, box, kind):
        # depth (BLOCK,) of the points in box ``box`` (its rotation / centre rows), half extents row ``kind``
        dx = px - tl.load(ctr_ptr + box * 3 + 0)
        dy = py - tl.load(ctr_ptr + box * 3 + 1)
        dz = pz - tl.load(ctr_ptr + box * 3 + 2)
        r = rot_ptr + box * 9  # row-major R; local = R^T d, local_j = sum_i d_i R_ij
        lx = dx * tl.load(r + 0) + dy * tl.load(r + 3) + dz * tl.load(r + 6)
        ly = dx * tl.load(r + 1) + dy * tl.load(r + 4) + dz * tl.load(r + 7)
        lz = dx * tl.load(r + 2) + dy * tl.load(r + 5) + dz * tl.load(r + 8)
        ex = tl.load(half_ptr + kind * 3 + 0) - tl.abs(lx)
        ey = tl.load(half_ptr + kind * 3 + 1) - tl.abs(ly)
        ez = tl.load(half_ptr + kind * 3 + 2) - tl.abs(lz)
        return tl.minimum(tl.minimum(ex, ey), ez)

    @triton.jit
    def _point_block(pts_ptr, start, n, BLOCK: tl.constexpr):
        # the points start .. start + BLOCK of (N, 3) row-major: (valid, x, y, z), zeros past N
        offs = start + tl.arange(0, BLOCK)
        valid = offs < n
        px = tl.load(pts_ptr + offs * 3 + 0, mask=valid, other=0.0)
        py = tl.load(pts_ptr + offs * 3 + 1, mask=valid, other=0.0)
        pz = tl.load(pts_ptr + offs * 3 + 2, mask=valid, other=0.0)
        return valid, px, py, pz

    @triton.jit
    def _hand_depth_kernel(rot_ptr, ctr_ptr, half_ptr, pts_ptr, tol_ptr, sum_ptr, hits_ptr, n, k,
                           BLOCK: tl.constexpr):  # fmt: skip
        # one program per hand state: points in blocks, boxes one by one, depth max over boxes
        s = tl.program_id(0)
        tol = tl.load(tol_ptr + s)
        total = tl.zeros([BLOCK], dtype=tl.float32)
        hits = tl.zeros([BLOCK], dtype=tl.int32)
        for start in range(0, n, BLOCK):
            valid, px, py, pz = _point_block(pts_ptr, start, n, BLOCK)
            deepest = tl.zeros([BLOCK], dtype=tl.float32)
            for b in range(0, k):
                deepest = tl.maximum(deepest, _depth_in_box(px, py, pz, rot_ptr, ctr_ptr, half_ptr, s * k + b, b))
            deepest = tl.where(valid, deepest, 0.0)
            total += deepest
            hits += (deepest > tol).to(tl.int32)
        tl.store(sum_ptr + s, tl.sum(total, axis=0))
        tl.store(hits_ptr + s, tl.sum(hits, axis=0))

    @triton.jit
    def _box_max_kernel(rot_ptr, ctr_ptr, half_ptr, pts_ptr, out_ptr, n, k, BLOCK: tl.constexpr):
        # one program per (state, box): points in blocks, running max
        box = tl.program_id(0)
        deepest = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n, BLOCK):
            valid, px, py, pz = _point_block(pts_ptr, start, n, BLOCK)
            depth = _depth_in_box(px, py, pz, rot_ptr, ctr_ptr, half_ptr, box, box % k)
            deepest = tl.maximum(deepest, tl.where(valid, depth, 0.0))
        tl.store(out_ptr + box, tl.max(deepest, axis=0))


def _use_kernel(fused: bool | None, points: torch.Tensor) -> bool:
    if fused is None:
        return fused_available(points)
    if fused and triton is None:
        raise ValueError("fused=True: the fused box-depth kernels need Triton, which is not installed")
    return bool(fused)


def _block(n: int, most: int) -> int:
    return max(16, min(most, triton.next_power_of_2(max(1, n))))


def _f32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.to(torch.float32).contiguous() for t in tensors]


def hand_depth_stats(rot: torch.Tensor, ctr: torch.Tensor, half: torch.Tensor, points: torch.Tensor,
                     tol: torch.Tensor, fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per hand state: the summed depth (S,) of the points inside the hand and how many (S,) int64
    lie deeper than ``tol`` (S,). A point's depth in a hand is its deepest box's (0 outside all).

    Args:
        rot (S, K, 3, 3), ctr (S, K, 3): each state's box rotations and centres; half (K, 3).
        points: (N, 3) observed points. tol: (S,) depth a hit exceeds.
        fused: the Triton kernel (True), the dense torch form (False), or whichever runs here (None).
    """
    _check(rot, ctr, half, points)
    if tol.shape != (ctr.shape[0],):
        raise ValueError(f"tol: expected shape ({ctr.shape[0]},), got {tuple(tol.shape)}")
    if not _use_kernel(fused, points):
        return hand_depth_stats_dense(rot, ctr, half, points, tol)
    s, k = ctr.shape[:2]
    rot_c, ctr_c, half_c, pts_c, tol_c = _f32(rot, ctr, half, points, tol)
    total = torch.empty(s, dtype=torch.float32, device=ctr.device)
    hits = torch.empty(s, dtype=torch.int32, device=ctr.device)
    if s:
        _hand_depth_kernel[(s,)](rot_c, ctr_c, half_c, pts_c, tol_c, total, hits, len(points), k,
                                 BLOCK=_block(len(points), 256), num_warps=4)  # fmt: skip
    return total.to(ctr.dtype), hits.to(torch.long)


def box_max_depth(rot: torch.Tensor, ctr: torch.Tensor, half: torch.Tensor, points: torch.Tensor,
                  fused: bool | None = None) -> torch.Tensor:  # fmt: skip
    """(S, K) depth of the deepest of ``points`` (N, 3) inside each box (0 when none is); boxes
    and ``fused`` as :func:`hand_depth_stats`."""
    _check(rot, ctr, half, points)
    if not _use_kernel(fused, points):
        return box_max_depth_dense(rot, ctr, half, points)
    s, k = ctr.shape[:2]
    rot_c, ctr_c, half_c, pts_c = _f32(rot, ctr, half, points)
    out = torch.empty(s * k, dtype=torch.float32, device=ctr.device)
    if s * k:
        _box_max_kernel[(s * k,)](rot_c, ctr_c, half_c, pts_c, out, len(points), k,
                                  BLOCK=_block(len(points), 512), num_warps=4)  # fmt: skip
    return out.view(s, k).to(ctr.dtype)
