"""Batched, differentiable hand model: forward kinematics, surface points, signed distance,
penetration, self-penetration, joint limits and contact distance.

Notation: B batch (grasps), J hand DoF, L links, K collision boxes, P surface points,
C contact candidates, Q penetration keypoints, N query / cloud points.

Usage::

    hand = HandModel.load()                      # bundled LEAP Hand, float32, CPU
    state = hand(joints, palm_pose)              # FK once: (B, J), (B, 4, 4)
    pts = hand.surface_points(state)             # (B, P, 3)
    sdf = hand.signed_distance(state, cloud)     # (B, N)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sceneleap_core.geometry.box_sdf import box_signed_distance
from sceneleap_core.geometry.pointops import nearest_distance
from sceneleap_core.geometry.rotations import axis_angle_to_matrix, make_transform, small_matmul
from sceneleap_core.hand.description import HandDescription
from sceneleap_core.hand.templates import (
    contact_template,
    keypoint_template,
    self_collision_link_mask,
    surface_template,
)


@dataclass(frozen=True)
class HandState:
    """Result of forward kinematics: every link's pose in the world (or palm) frame.

    Attributes:
        link_rot: (B, L, 3, 3) rotations.
        link_trans: (B, L, 3) positions.
        joints: (B, J) the joint angles it was computed from.
    """

    link_rot: torch.Tensor
    link_trans: torch.Tensor
    joints: torch.Tensor

    @property
    def link_transforms(self) -> torch.Tensor:
        """(B, L, 4, 4) homogeneous link poses."""
        return make_transform(self.link_rot, self.link_trans)

    def move(self, local: torch.Tensor, link_index: torch.Tensor) -> torch.Tensor:
        """Map template points (M, 3) attached to links ``link_index`` (M,) to (B, M, 3)."""
        r = self.link_rot[:, link_index]  # (B, M, 3, 3)
        return small_matmul(r, local[..., None]).squeeze(-1) + self.link_trans[:, link_index]


def _validate_grasp(hand: HandModel, joints: torch.Tensor, pose: torch.Tensor | None, limit_tol: float) -> None:
    if not isinstance(joints, torch.Tensor):
        raise ValueError(f"joints: expected a torch.Tensor of shape (B, {hand.dof}), got {type(joints).__name__}")
    if joints.dim() != 2 or joints.shape[1] != hand.dof:
        raise ValueError(f"joints: expected shape (B, {hand.dof}), got {tuple(joints.shape)}")
    if not torch.isfinite(joints).all():
        bad = (~torch.isfinite(joints)).nonzero()[0].tolist()
        raise ValueError(f"joints: non-finite value (NaN/inf) at batch {bad[0]}, joint {hand.joint_names[bad[1]]}")
    if pose is not None:
        if pose.shape != (joints.shape[0], 4, 4):
            raise ValueError(
                f"palm_pose: expected shape ({joints.shape[0]}, 4, 4) to match joints, got {tuple(pose.shape)}"
            )
        if not torch.isfinite(pose).all():
            raise ValueError("palm_pose: contains non-finite values (NaN/inf)")
    low = joints < hand.joint_lower - limit_tol
    high = joints > hand.joint_upper + limit_tol
    if (low | high).any():
        b, j = (low | high).nonzero()[0].tolist()
        raise ValueError(
            f"joints: {hand.joint_names[j]} of grasp {b} is {joints[b, j].item():+.4f} rad, outside its limits "
            f"[{hand.joint_lower[j].item():+.3f}, {hand.joint_upper[j].item():+.3f}]"
        )


class HandModel(nn.Module):
    """A hand built from a :class:`HandDescription`; all per-hand constants are buffers, so
    ``.to(device, dtype)`` moves everything (float32 or float64, CPU or CUDA)."""

    def __init__(
        self,
        description: HandDescription,
        *,
        surface_points: int | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.description = description
        desc = description
        dof_index = {name: i for i, name in enumerate(desc.joint_names)}
        links = desc.links
        f64 = torch.float64

        # 1. Kinematic tree: links are in breadth-first order, so each depth level is contiguous.
        self.link_names = desc.link_names
        self.joint_names = desc.joint_names
        parents = [desc.link_index(link.parent) if link.parent else -1 for link in links]
        depth = [0] * len(links)
        for i, p in enumerate(parents):
            depth[i] = 0 if p < 0 else depth[p] + 1
        self._levels: list[tuple[int, int]] = []
        for d in range(1, max(depth) + 1):
            members = [i for i, dd in enumerate(depth) if dd == d]
            if members != list(range(members[0], members[-1] + 1)):
                raise ValueError("hand description: links must be in breadth-first order")
            self._levels.append((members[0], members[-1] + 1))
        # parent of each link as an index into the previous level (parents are always one level up)
        level_start = {d: min(i for i, dd in enumerate(depth) if dd == d) for d in set(depth)}
        in_prev = [p - level_start[depth[i] - 1] if p >= 0 else 0 for i, p in enumerate(parents)]
        self.register_buffer("link_parent_in_level", torch.tensor(in_prev), persistent=False)
        origins = np.stack([link.origin for link in links])
        self.register_buffer("origin_rot", torch.tensor(origins[:, :3, :3], dtype=f64), persistent=False)
        self.register_buffer("origin_trans", torch.tensor(origins[:, :3, 3], dtype=f64), persistent=False)
        self.register_buffer(
            "link_axis", torch.tensor(np.stack([link.axis for link in links]), dtype=f64), persistent=False
        )
        joint_of_link = [dof_index[link.joint] if link.joint_type == "revolute" else 0 for link in links]
        self.register_buffer("link_joint", torch.tensor(joint_of_link), persistent=False)
        is_rev = [1.0 if link.joint_type == "revolute" else 0.0 for link in links]
        self.register_buffer("link_is_revolute", torch.tensor(is_rev, dtype=f64), persistent=False)
        self.register_buffer("joint_lower", torch.tensor(desc.lower_limits, dtype=f64), persistent=False)
        self.register_buffer("joint_upper", torch.tensor(desc.upper_limits, dtype=f64), persistent=False)
        self.register_buffer("open_pose", torch.tensor(desc.open_pose, dtype=f64), persistent=False)
        # +1 a joint closes the hand as it grows, -1 as it shrinks, 0 sideways (description order)
        self.register_buffer("joint_closing", torch.tensor(desc.closing_direction, dtype=f64), persistent=False)
        self.register_buffer("approach_axis", torch.tensor(desc.approach_axis, dtype=f64), persistent=False)

        # 2. Collision boxes.
        self.box_names = [b.name for b in desc.boxes]
        self.register_buffer("box_link", torch.tensor([desc.link_index(b.link) for b in desc.boxes]), persistent=False)
        # the boxes grouped by link: (L, M) box indices per link with boxes, padded with 0, and the
        # (L, M) mask of real entries (M = most boxes on one link), for coarse-to-fine culling
        by_link = [np.flatnonzero(self.box_link.numpy() == u) for u in np.unique(self.box_link.numpy())]
        width = max(len(g) for g in by_link)
        table = np.zeros((len(by_link), width), dtype=np.int64)
        for i, g in enumerate(by_link):
            table[i, : len(g)] = g
        self.register_buffer("link_box_table", torch.from_numpy(table), persistent=False)
        self.register_buffer("link_box_valid", torch.tensor([[j < len(g) for j in range(width)] for g in by_link]),
                             persistent=False)  # fmt: skip
        box_tf = np.stack([b.box_in_link for b in desc.boxes])
        self.register_buffer("box_rot", torch.tensor(box_tf[:, :3, :3], dtype=f64), persistent=False)
        self.register_buffer("box_trans", torch.tensor(box_tf[:, :3, 3], dtype=f64), persistent=False)
        self.register_buffer(
            "box_half", torch.tensor(np.stack([b.half_extents for b in desc.boxes]), dtype=f64), persistent=False
        )

        # 3. Point templates.
        surf = surface_template(desc, surface_points, seed)
        self.register_buffer("surface_local", torch.tensor(surf.points, dtype=f64), persistent=False)
        self.register_buffer("surface_link", torch.tensor(surf.link_index), persistent=False)
        contact = contact_template(desc)
        self.register_buffer("contact_local", torch.tensor(contact.points, dtype=f64), persistent=False)
        self.register_buffer("contact_normal_local", torch.tensor(contact.normals, dtype=f64), persistent=False)
        self.register_buffer("contact_link", torch.tensor(contact.link_index), persistent=False)
        keys = keypoint_template(desc)
        self.register_buffer("keypoint_local", torch.tensor(keys.points, dtype=f64), persistent=False)
        self.register_buffer("keypoint_link", torch.tensor(keys.link_index), persistent=False)
        self.register_buffer("keypoint_radius", torch.tensor(keys.radius, dtype=f64), persistent=False)
        link_mask = torch.tensor(self_collision_link_mask(desc))
        pair_mask = link_mask[self.keypoint_link][:, self.keypoint_link]  # (Q, Q)
        self.register_buffer(
            "keypoint_pairs", torch.triu(pair_mask, diagonal=1).nonzero().T.contiguous(), persistent=False
        )
        tips = [desc.link_index(name) for name in desc.tip_frames()]
        self.register_buffer("tip_link", torch.tensor(tips), persistent=False)
        self.to(dtype)  # templates are built in float64; cast once here to keep float64 models exact

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, name_or_path: str = "leap_hand_right", **kwargs) -> HandModel:
        """Build the model of a bundled hand (by name) or of a description YAML (by path)."""
        return cls(HandDescription.load(name_or_path), **kwargs)

    @property
    def dof(self) -> int:
        return len(self.joint_names)

    @property
    def num_links(self) -> int:
        return len(self.link_names)

    @property
    def dtype(self) -> torch.dtype:
        return self.origin_rot.dtype

    @property
    def device(self) -> torch.device:
        return self.origin_rot.device

    # ------------------------------------------------------------------ kinematics
    def forward(
        self,
        joints: torch.Tensor,
        palm_pose: torch.Tensor | None = None,
        *,
        validate: bool = True,
        limit_tolerance: float = 1e-4,
    ) -> HandState:
        """Forward kinematics of every link.

        Args:
            joints: (B, J) joint angles in the description's joint order (radians).
            palm_pose: (B, 4, 4) pose of the root (palm) frame in the world; None = identity
                (link poses in the palm frame).
            validate: check shapes, finiteness and joint limits (raises ValueError naming the
                problem). Optimization loops that may step outside the limits pass False.
            limit_tolerance: slack on the joint limits when validating (radians).

        Returns:
            HandState with link_rot (B, L, 3, 3) and link_trans (B, L, 3).
        """
        if validate:
            _validate_grasp(self, joints, palm_pose, limit_tolerance)
        joints = joints.to(self.dtype)
        b = joints.shape[0]
        # Recipe: the root is the palm pose; then per depth level [s, e), in one batched step,
        # T_link = T_parent @ T_origin @ Rot(axis, q) (Rot = I for fixed joints).
        if palm_pose is None:
            rot = [torch.eye(3, dtype=self.dtype, device=joints.device).expand(b, 1, 3, 3)]
            trans = [torch.zeros(b, 1, 3, dtype=self.dtype, device=joints.device)]
        else:
            palm_pose = palm_pose.to(self.dtype)
            rot, trans = [palm_pose[:, None, :3, :3]], [palm_pose[:, None, :3, 3]]  # (B, 1, 3, 3), (B, 1, 3)
        # Joint rotations of all links at once (few large kernels instead of many per level).
        angle = joints[:, self.link_joint] * self.link_is_revolute  # (B, L)
        r_local = small_matmul(
            self.origin_rot, axis_angle_to_matrix(self.link_axis.expand(b, -1, -1), angle)
        )  # (B, L, 3, 3)
        t_local = self.origin_trans[:, :, None]  # (L, 3, 1)
        for s, e in self._levels:
            parent = self.link_parent_in_level[s:e]
            r_par, t_par = rot[-1][:, parent], trans[-1][:, parent]  # (B, n, 3, 3), (B, n, 3)
            rot.append(small_matmul(r_par, r_local[:, s:e]))
            trans.append(small_matmul(r_par, t_local[s:e]).squeeze(-1) + t_par)
        return HandState(torch.cat(rot, dim=1), torch.cat(trans, dim=1), joints)  # (B, L, 3, 3), (B, L, 3)

    def link_poses(self, joints: torch.Tensor, palm_pose: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Convenience wrapper: ``{link name: (B, 4, 4)}``."""
        tf = self(joints, palm_pose).link_transforms
        return {name: tf[:, i] for i, name in enumerate(self.link_names)}

    # ------------------------------------------------------------------ points on the hand
    def surface_points(self, state: HandState) -> torch.Tensor:
        """(B, P, 3) template surface points moved by FK."""
        return state.move(self.surface_local, self.surface_link)

    def contact_candidates(self, state: HandState) -> tuple[torch.Tensor, torch.Tensor]:
        """Contact candidates on the finger pads: points (B, C, 3) and outward normals (B, C, 3)."""
        pts = state.move(self.contact_local, self.contact_link)
        normals = small_matmul(state.link_rot[:, self.contact_link], self.contact_normal_local[..., None]).squeeze(-1)
        return pts, normals

    def penetration_keypoints(self, state: HandState) -> tuple[torch.Tensor, torch.Tensor]:
        """Keypoint sphere centres (B, Q, 3) and radii (Q,)."""
        pts = state.move(self.keypoint_local, self.keypoint_link)
        return pts, self.keypoint_radius

    def tip_positions(self, state: HandState) -> torch.Tensor:
        """(B, F, 3) fingertip tip-head positions, fingers in description order."""
        return state.link_trans[:, self.tip_link]

    def box_poses(self, state: HandState) -> tuple[torch.Tensor, torch.Tensor]:
        """World rotation (B, K, 3, 3) and centre (B, K, 3) of every collision box."""
        r_link, t_link = state.link_rot[:, self.box_link], state.link_trans[:, self.box_link]
        rot = small_matmul(r_link, self.box_rot)  # (B, K, 3, 3)
        trans = small_matmul(r_link, self.box_trans[..., None]).squeeze(-1) + t_link  # (B, K, 3)
        return rot, trans

    # ------------------------------------------------------------------ distances
    def box_distances(self, state: HandState, points: torch.Tensor) -> torch.Tensor:
        """Signed distance (B, N, K) from points (B, N, 3) to each collision box."""
        if points.dim() != 3 or points.shape[-1] != 3 or points.shape[0] != state.link_rot.shape[0]:
            raise ValueError(f"points: expected shape ({state.link_rot.shape[0]}, N, 3), got {tuple(points.shape)}")
        rot, trans = self.box_poses(state)
        b, k = rot.shape[:2]
        # local_k = R_k^T (p - t_k), as row vectors p @ R_k - t_k @ R_k, all K boxes in one bmm
        stacked = rot.permute(0, 2, 1, 3).reshape(b, 3, 3 * k)  # (B, 3, 3K)
        offset = (trans[:, :, None, :] @ rot).reshape(b, 1, 3 * k)  # (B, 1, 3K)
        local = (torch.bmm(points.to(self.dtype), stacked) - offset).unflatten(-1, (k, 3))  # (B, N, K, 3)
        return box_signed_distance(local, self.box_half)

    def signed_distance(self, state: HandState, points: torch.Tensor, *, chunk: int | None = None) -> torch.Tensor:
        """Signed distance (B, N) from points (B, N, 3) to the hand: the minimum over boxes.

        Exact outside the hand (distance to a union is the minimum distance); inside, it is the
        depth below the surface of the deepest-containing box. ``chunk`` bounds memory by
        processing that many points at a time (memory ~ B * chunk * K * 3 floats).
        """
        if chunk is None or points.shape[1] <= chunk:
            return self.box_distances(state, points).min(dim=-1).values
        return torch.cat(
            [
                self.box_distances(state, points[:, i : i + chunk]).min(dim=-1).values
                for i in range(0, points.shape[1], chunk)
            ],
            dim=1,
        )

    def penetration_depth(self, state: HandState, points: torch.Tensor, **kwargs) -> torch.Tensor:
        """Depth (B, N) by which each point (B, N, 3) lies inside the hand (0 outside)."""
        return (-self.signed_distance(state, points, **kwargs)).clamp_min(0.0)

    def self_penetration(self, state: HandState) -> torch.Tensor:
        """Self-penetration energy (B,): sum over keypoint sphere pairs on links that are neither
        the same nor parent/child of ``relu(r_i + r_j - |p_i - p_j|)`` (metres)."""
        pts, radius = self.penetration_keypoints(state)
        first, second = self.keypoint_pairs  # (S,), (S,): only the pairs that may collide
        dist = (pts[:, first] - pts[:, second]).square().sum(-1).clamp_min(1e-12).sqrt()  # (B, S)
        return (radius[first] + radius[second] - dist).clamp_min(0.0).sum(-1)

    def open_joints(self, joints: torch.Tensor) -> torch.Tensor:
        """The open hand (..., J) of grasps ``joints`` (..., J), as the evaluator opens it for the
        pregrasp (``sim.simulator.GraspSim.open_joints``): flexion joints unflexed to the open pose
        (never past the grasp), extension joints the other way, sideways joints kept."""
        closing = self.joint_closing.to(dtype=joints.dtype, device=joints.device)
        open_pose = self.open_pose.to(dtype=joints.dtype, device=joints.device)
        out = torch.where(closing > 0, torch.minimum(joints, open_pose), joints)
        return torch.where(closing < 0, torch.maximum(joints, open_pose), out)

    def joint_limit_violation(self, joints: torch.Tensor) -> torch.Tensor:
        """Sum (B,) over joints of how far each of (B, J) lies outside its limits (radians)."""
        if joints.dim() != 2 or joints.shape[1] != self.dof:
            raise ValueError(f"joints: expected shape (B, {self.dof}), got {tuple(joints.shape)}")
        joints = joints.to(self.dtype)
        return ((self.joint_lower - joints).clamp_min(0) + (joints - self.joint_upper).clamp_min(0)).sum(-1)

    def contact_distance(self, state: HandState, cloud: torch.Tensor) -> torch.Tensor:
        """Distance (B, C) from each contact candidate to its nearest cloud point (B, N, 3)."""
        if cloud.dim() != 3 or cloud.shape[-1] != 3 or cloud.shape[0] != state.link_rot.shape[0]:
            raise ValueError(f"cloud: expected shape ({state.link_rot.shape[0]}, N, 3), got {tuple(cloud.shape)}")
        pts, _ = self.contact_candidates(state)
        return nearest_distance(pts, cloud.to(self.dtype))

    def summary(self) -> str:
        """Human-readable description: joints, limits and template sizes."""
        return (
            self.description.summary()
            + f"\n  templates: {len(self.surface_local)} surface points, {len(self.contact_local)} contact "
            f"candidates, {len(self.keypoint_local)} penetration keypoints"
        )
