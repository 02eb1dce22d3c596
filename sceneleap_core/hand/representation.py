"""Grasp representations and the network's normalized grasp vector.

A grasp is the palm (root link) pose plus J joint angles. Forms:
* matrix: palm pose (B, 4, 4) + joints (B, J);
* position + quaternion (x, y, z, w) at the ROS edge: (B, 3) + (B, 4) + joints (B, J);
* the network vector (B, 3 + J + 6) = [translation | joints | rotation 6D], 25 for the LEAP Hand,
  each dimension scaled to [-1, 1] by a :class:`GraspNormalizer` saved with the checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from sceneleap_core.geometry.rotations import (
    make_transform,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_matrix,
    rot6d_to_matrix,
)


def grasp_vector_size(dof: int) -> int:
    """Length of the grasp vector for a hand with ``dof`` joints (25 for the LEAP Hand)."""
    return 3 + dof + 6


def pose_to_vector(palm_pose: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) palm pose and (B, J) joints -> (B, 3 + J + 6) [t | q | r6d] (unnormalized)."""
    if palm_pose.shape[-2:] != (4, 4) or palm_pose.shape[:-2] != joints.shape[:-1]:
        raise ValueError(
            f"palm_pose/joints: expected (..., 4, 4) and (..., J) with equal leading dims, "
            f"got {tuple(palm_pose.shape)} and {tuple(joints.shape)}"
        )
    return torch.cat(
        [palm_pose[..., :3, 3], joints.to(palm_pose.dtype), matrix_to_rot6d(palm_pose[..., :3, :3])], dim=-1
    )


def vector_to_pose(vector: torch.Tensor, dof: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3 + J + 6) grasp vectors -> palm pose (B, 4, 4) (rotation re-orthonormalized) and joints (B, J)."""
    if vector.shape[-1] != grasp_vector_size(dof):
        raise ValueError(
            f"grasp vector: expected last dim {grasp_vector_size(dof)} for {dof} joints, got {vector.shape[-1]}"
        )
    trans, joints, r6d = vector[..., :3], vector[..., 3 : 3 + dof], vector[..., 3 + dof :]
    return make_transform(rot6d_to_matrix(r6d), trans), joints


def anchor_relative(vector: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Grasp vectors (..., G, D) with absolute translations -> translations relative to ``anchors``
    (..., G, 3) (the representation of generators with ``anchor="seed"``)."""
    if anchors.shape != (*vector.shape[:-1], 3):
        raise ValueError(f"anchors: expected shape {(*vector.shape[:-1], 3)}, got {tuple(anchors.shape)}")
    return torch.cat([vector[..., :3] - anchors.to(vector), vector[..., 3:]], dim=-1)


def anchor_absolute(vector: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`anchor_relative`."""
    if anchors.shape != (*vector.shape[:-1], 3):
        raise ValueError(f"anchors: expected shape {(*vector.shape[:-1], 3)}, got {tuple(anchors.shape)}")
    return torch.cat([vector[..., :3] + anchors.to(vector), vector[..., 3:]], dim=-1)


def pose_to_pos_quat(palm_pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 4, 4) -> position (B, 3), quaternion (B, 4) in (x, y, z, w) order."""
    return palm_pose[..., :3, 3], matrix_to_quaternion(palm_pose[..., :3, :3])


def pos_quat_to_pose(position: torch.Tensor, quat_xyzw: torch.Tensor) -> torch.Tensor:
    """Position (B, 3) and quaternion (B, 4) (x, y, z, w) -> (B, 4, 4)."""
    return make_transform(quaternion_to_matrix(quat_xyzw), position)


class GraspNormalizer(nn.Module):
    """Per-dimension affine map of grasp vectors to [-1, 1]: ``2 (x - lower) / (upper - lower) - 1``.

    Statistics are buffers (saved in a checkpoint's state dict) and also round-trip through JSON.

    Args:
        lower: (D,) lower bound per dimension.
        upper: (D,) upper bound per dimension (> lower).
    """

    def __init__(self, lower: torch.Tensor, upper: torch.Tensor):
        super().__init__()
        lower, upper = torch.as_tensor(lower, dtype=torch.float32), torch.as_tensor(upper, dtype=torch.float32)
        if lower.shape != upper.shape or lower.dim() != 1:
            raise ValueError(
                f"normalizer: expected lower/upper of equal shape (D,), got {tuple(lower.shape)}, {tuple(upper.shape)}"
            )
        if not (upper > lower).all():
            bad = (upper <= lower).nonzero()[:, 0].tolist()
            raise ValueError(f"normalizer: upper must exceed lower in every dimension; not so in dims {bad}")
        self.register_buffer("lower", lower)
        self.register_buffer("upper", upper)

    @classmethod
    def from_hand_limits(cls, joint_lower, joint_upper, translation_range: float = 0.5) -> GraspNormalizer:
        """Default statistics: translation in ±``translation_range`` m, joints by their limits,
        rotation 6D in [-1, 1] (its natural range)."""
        joint_lower = torch.as_tensor(joint_lower, dtype=torch.float32)
        joint_upper = torch.as_tensor(joint_upper, dtype=torch.float32)
        tr = torch.full((3,), translation_range)
        return cls(torch.cat([-tr, joint_lower, -torch.ones(6)]), torch.cat([tr, joint_upper, torch.ones(6)]))

    @classmethod
    def fit(cls, vectors: torch.Tensor, *, margin: float = 0.05, min_span: float = 1e-3) -> GraspNormalizer:
        """Fit on (N, D) unnormalized grasp vectors: min/max per dimension, widened by ``margin``
        of the span on both sides; rotation-6D dimensions keep [-1, 1]."""
        if vectors.dim() != 2 or vectors.shape[0] < 2:
            raise ValueError(f"normalizer fit: expected (N >= 2, D) vectors, got {tuple(vectors.shape)}")
        if not torch.isfinite(vectors).all():
            raise ValueError("normalizer fit: vectors contain NaN/inf")
        lo, hi = vectors.min(0).values.float(), vectors.max(0).values.float()
        span = (hi - lo).clamp_min(min_span)
        lo, hi = lo - margin * span, hi + margin * span
        lo[-6:], hi[-6:] = -1.0, 1.0
        return cls(lo, hi)

    @property
    def dim(self) -> int:
        return self.lower.shape[0]

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.dim:
            raise ValueError(f"grasp vector: expected last dim {self.dim}, got {x.shape[-1]}")

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) physical -> (..., D) in [-1, 1] (inside the fitted range)."""
        self._check(x)
        return 2.0 * (x - self.lower) / (self.upper - self.lower) - 1.0

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) normalized -> (..., D) physical."""
        self._check(x)
        return (x + 1.0) * 0.5 * (self.upper - self.lower) + self.lower

    def to_dict(self) -> dict:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> GraspNormalizer:
        try:
            return cls(torch.tensor(data["lower"]), torch.tensor(data["upper"]))
        except KeyError as err:
            raise ValueError(f"normalizer: missing key {err} in statistics") from None

    def save(self, path: str | Path) -> None:
        """Write the statistics as JSON, atomically (temp file + rename)."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> GraspNormalizer:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"normalizer: cannot read {path}: {err}") from None
