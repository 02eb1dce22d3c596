"""Rotation representations and rigid transforms.

Conventions
-----------
* Rotation matrices act on column vectors: ``p_world = R @ p_local + t``.
* Quaternions are ``(x, y, z, w)`` (the ROS / scipy order) everywhere in this project.
* The 6D rotation (Zhou et al., CVPR 2019) is the first two *columns* of the matrix,
  concatenated: ``r6d = [R[:, 0], R[:, 1]]`` of shape (..., 6).

All functions are batched over any leading shape ``...`` and differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_last_dims(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    if tensor.shape[-len(shape) :] != shape:
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, shape))}), got {tuple(tensor.shape)}")


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        axis: (..., 3) unit rotation axes.
        angle: (...) angles in radians.

    Returns:
        (..., 3, 3) rotation matrices ``I + sin(a) K + (1 - cos(a)) K^2``, K the cross-product matrix.
    """
    _check_last_dims("axis", axis, (3,))
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))  # (..., 3, 3)
    s = torch.sin(angle)[..., None, None]
    c = torch.cos(angle)[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device)
    return eye + s * k + (1.0 - c) * (k @ k)


def quaternion_to_matrix(quat_xyzw: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (x, y, z, w), normalized here, to (..., 3, 3) rotation matrices."""
    _check_last_dims("quaternion", quat_xyzw, (4,))
    q = F.normalize(quat_xyzw, dim=-1)
    x, y, z, w = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def matrix_to_quaternion(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices to (..., 4) unit quaternions (x, y, z, w) with w >= 0.

    Recipe (Shepperd's method, branch-free so it batches and exports):
    1. compute the four candidates 4*q_i^2 from the trace and diagonal;
    2. build, for each candidate pivot, the full quaternion scaled by 4*q_pivot;
    3. keep, per element, the pivot with the largest magnitude (numerically safest);
    4. normalize and flip to the w >= 0 hemisphere.
    """
    _check_last_dims("rotation matrix", rot, (3, 3))
    m = rot
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 1. squared magnitudes (times 4) of w, x, y, z
    four_sq = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    # 2. candidate quaternions (x, y, z, w), each scaled by 4 * pivot
    m21_m12, m02_m20, m10_m01 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    m10p01, m02p20, m21p12 = m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2]
    cands = torch.stack(
        [
            torch.stack([m21_m12, m02_m20, m10_m01, four_sq[..., 0]], dim=-1),  # pivot w
            torch.stack([four_sq[..., 1], m10p01, m02p20, m21_m12], dim=-1),  # pivot x
            torch.stack([m10p01, four_sq[..., 2], m21p12, m02_m20], dim=-1),  # pivot y
            torch.stack([m02p20, m21p12, four_sq[..., 3], m10_m01], dim=-1),  # pivot z
        ],
        dim=-2,
    )  # (..., 4, 4)
    # 3. best-conditioned pivot
    best = four_sq.argmax(dim=-1)  # (...)
    quat = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    # 4. unit norm, w >= 0
    quat = F.normalize(quat, dim=-1)
    return torch.where(quat[..., 3:4] < 0, -quat, quat)


def matrix_to_rot6d(rot: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, column 0 then column 1."""
    _check_last_dims("rotation matrix", rot, (3, 3))
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], dim=-1)


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt on the two columns (any non-degenerate input is valid)."""
    _check_last_dims("rot6d", rot6d, (6,))
    a1, a2 = rot6d[..., :3], rot6d[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def _det3(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (...) determinants as the columns' triple product (no LU: no host sync on CUDA)."""
    return (torch.linalg.cross(m[..., :, 0], m[..., :, 1], dim=-1) * m[..., :, 2]).sum(-1)


def nearest_rotation(matrix: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """(..., 3, 3) -> the nearest proper rotation (..., 3, 3) in the Frobenius norm: the orthogonal
    factor of the polar decomposition, by Newton's iteration ``X <- (g X + X^-T / g) / 2`` with
    determinant scaling ``g = |det X|^(-1/3)`` and the 3 x 3 inverse in closed form (cofactors), so a
    GPU runs it without a host sync (``torch.linalg.svd`` on CUDA waits for the device). A scaled
    rotation converges in one iteration; ``iterations`` covers condition numbers up to ~1e6.

    Inputs with det < 0 (a reflection) come out as their polar factor with the third column
    negated: a proper rotation, not the nearest one (which needs the singular vectors). Singular
    or non-finite inputs fall back to Gram-Schmidt on the first two columns (:func:`rot6d_to_matrix`),
    and to the identity when those are parallel or zero."""
    _check_last_dims("matrix", matrix, (3, 3))
    x = matrix
    for _ in range(int(iterations)):
        a, b, c = x[..., :, 0], x[..., :, 1], x[..., :, 2]
        cof = torch.stack([torch.linalg.cross(b, c, dim=-1), torch.linalg.cross(c, a, dim=-1),
                           torch.linalg.cross(a, b, dim=-1)], dim=-1)  # fmt: skip  # X^-T det X
        det = (a * cof[..., :, 0]).sum(-1)[..., None, None]
        gain = det.abs().pow(-1.0 / 3.0)
        x = 0.5 * (gain * x + cof / (gain * det))
    fallback = rot6d_to_matrix(matrix_to_rot6d(matrix))
    degenerate = ~(_det3(fallback) > 0.5)[..., None, None]  # parallel or zero columns
    fallback = torch.where(degenerate, torch.eye(3, dtype=x.dtype, device=x.device), fallback)
    x = torch.where(torch.isfinite(x).all(-1, keepdim=True).all(-2, keepdim=True), x, fallback)
    sign = torch.where(_det3(x) < 0, -1.0, 1.0).to(x)  # (...)
    return torch.cat([x[..., :2], x[..., 2:] * sign[..., None, None]], dim=-1)


BROADCAST_SMALL_MATMUL_ON_CUDA = True  # bench/hand_fk_ab.py switches it to measure both ways


def small_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for stacks of small matrices, (..., n, k) @ (..., k, m) -> (..., n, m), batch dims
    broadcast as ``torch.matmul`` does: rotations (3, 3), points as columns (3, 1). On CUDA as one
    broadcast multiply and a sum over k (cuBLAS runs tens of thousands of 3 x 3 products as batched
    GEMM tiles made for large matrices: bench/hand_fk_ab.py); elsewhere ``torch.matmul``, which is
    the faster there."""
    if a.device.type == "cuda" and BROADCAST_SMALL_MATMUL_ON_CUDA:
        return (a.unsqueeze(-1) * b.unsqueeze(-3)).sum(-2)
    return a @ b


def make_transform(rot: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation and (..., 3) translation -> (..., 4, 4) homogeneous transform."""
    _check_last_dims("rotation matrix", rot, (3, 3))
    _check_last_dims("translation", trans, (3,))
    top = torch.cat([rot, trans[..., :, None]], dim=-1)  # (..., 3, 4)
    bottom = torch.zeros(*top.shape[:-2], 1, 4, dtype=rot.dtype, device=rot.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def transform_points(transform: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply (..., 4, 4) transforms to (..., N, 3) points, broadcasting leading dims -> (..., N, 3)."""
    _check_last_dims("transform", transform, (4, 4))
    _check_last_dims("points", points, (3,))
    rot, trans = transform[..., :3, :3], transform[..., :3, 3]
    return points @ rot.transpose(-1, -2) + trans[..., None, :]


def invert_transform(transform: torch.Tensor) -> torch.Tensor:
    """Inverse of (..., 4, 4) rigid transforms."""
    _check_last_dims("transform", transform, (4, 4))
    rot_t = transform[..., :3, :3].transpose(-1, -2)
    return make_transform(rot_t, -(rot_t @ transform[..., :3, 3:4]).squeeze(-1))


def geodesic_angle(rot_a: torch.Tensor, rot_b: torch.Tensor) -> torch.Tensor:
    """Angle (...) in radians of the relative rotation between (..., 3, 3) matrices."""
    rel = rot_a.transpose(-1, -2) @ rot_b
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.acos(cos)


def random_rotation(n: int, *, generator: torch.Generator | None = None, dtype=torch.float32, device=None):
    """(n, 3, 3) rotations uniform on SO(3) (normalized Gaussian quaternions)."""
    quat = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(quat)
