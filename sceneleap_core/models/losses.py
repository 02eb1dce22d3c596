"""Grasp losses as small composable modules, weighted by :class:`GraspLossConfig`.

Shape letters: B scenes, G grasps per scene, D grasp width (3 + J + 6), J hand DoF, N scene
points, P hand surface points, C contact candidates.

Every term module maps a :class:`GraspPair` (predicted and target grasps of B scenes, G each)
to per-grasp values (B, G); :class:`GraspSetLoss` weights and averages them::

    loss = GraspSetLoss(hand, normalizer, GraspLossConfig(chamfer=1.0, penetration=10.0))
    terms = loss(pred_norm, target_norm, points)       # {"translation": ..., "total": ...}

Frames: the physical terms (chamfer, penetration, contact) denormalize the grasps and compare
them with ``points``; the scene cloud and the denormalized grasps must share one metric frame
(the data pipeline's centred cloud frame, in metres). Translation and joints are compared in
the normalized space ([-1, 1] per dimension), rotation by the geodesic angle (radians).

With ``match=True`` predictions and targets are paired per scene by Hungarian matching
(``scipy.optimize.linear_sum_assignment`` on a detached pose cost) before the terms run;
otherwise grasp g of the prediction is compared with grasp g of the target (the x_0
auxiliary losses of a diffusion step, where the correspondence is known).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from sceneleap_core.geometry.rotations import geodesic_angle, rot6d_to_matrix
from sceneleap_core.hand.hand_model import HandModel, HandState
from sceneleap_core.hand.representation import GraspNormalizer, vector_to_pose


@dataclass
class GraspLossConfig:
    """Weights per term (0 disables a term and skips its computation) and term settings.

    Attributes:
        translation, rotation, joints: pose terms.
        chamfer: hand surface chamfer (metres) between predicted and target hands.
        penetration: sum of depths (metres) of scene points inside the predicted hand.
        self_penetration: the hand model's self-penetration energy (metres).
        contact: mean distance (metres) of the ``contact_k`` closest contact candidates to the cloud.
        joint_limits: radians outside the joint limits.
        match: Hungarian-match predictions to targets per scene first.
        chamfer_points: P surface points used for chamfer (strided subset of the template).
        scene_points: at most this many scene points for penetration/contact (strided subset;
            for anchored grasps the training module takes this many nearest points per anchor).
        translation_loss: ``l2`` (squared) or ``l1``.
        penetration_over_target: penetration counts only the depth beyond the target grasp's own
            in the same points (jittered or noisy clouds put points a few millimetres inside the
            fingers of ground-truth grasps; those are not the model's error).
        contact_over_target: contact counts only the distance beyond the target grasp's own in
            the same points (a ground-truth grasp's closest candidates sit a few millimetres off
            the cloud; pulling past that would push the hand into its object).
    """

    translation: float = 1.0
    rotation: float = 1.0
    joints: float = 1.0
    chamfer: float = 0.0
    penetration: float = 0.0
    self_penetration: float = 0.0
    contact: float = 0.0
    joint_limits: float = 0.0
    match: bool = False
    chamfer_points: int = 256
    scene_points: int = 1024
    contact_k: int = 8
    translation_loss: str = "l2"
    penetration_over_target: bool = False
    contact_over_target: bool = False

    TERMS = (
        "translation",
        "rotation",
        "joints",
        "chamfer",
        "penetration",
        "self_penetration",
        "contact",
        "joint_limits",
    )

    def validate(self) -> GraspLossConfig:
        for key in self.TERMS:
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"GraspLossConfig.{key}: expected a weight >= 0, got {value!r}")
        for key in ("chamfer_points", "scene_points", "contact_k"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise ValueError(f"GraspLossConfig.{key}: expected a positive int, got {getattr(self, key)!r}")
        for key in ("penetration_over_target", "contact_over_target"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"GraspLossConfig.{key}: expected a bool, got {getattr(self, key)!r}")
        if self.translation_loss not in ("l1", "l2"):
            raise ValueError(f"GraspLossConfig.translation_loss: expected 'l1' or 'l2', got {self.translation_loss!r}")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> GraspLossConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"GraspLossConfig: expected keys among {sorted(known)}, got unknown {unknown}")
        return cls(**data).validate()


class GraspPair:
    """Predicted and target grasps of one batch, with lazily computed physical quantities.

    Attributes:
        pred, target: (B, G, D) normalized vectors.  points: (B, N, 3) scene cloud shared by the
        grasps of a scene, (B, G, N, 3) points per grasp, or None.  offsets: (B, G, 3) metres added
        to both sets' denormalized translations (anchor-relative grasps -> the cloud's frame) or None.
    """

    def __init__(self, hand: HandModel | None, normalizer: GraspNormalizer, pred, target, points, dof: int,
                 offsets: torch.Tensor | None = None):  # fmt: skip
        self.hand, self.normalizer, self.pred, self.target, self.points, self.dof = (
            hand,
            normalizer,
            pred,
            target,
            points,
            dof,
        )
        self.offsets = offsets
        self._cache: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.pred.shape[0], self.pred.shape[1]

    def physical(self, which: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Palm pose (B G, 4, 4) and joints (B G, J) of ``pred`` or ``target``."""
        key = ("phys", which)
        if key not in self._cache:
            vec = self.normalizer.denormalize(getattr(self, which))  # (B, G, D)
            if self.offsets is not None:
                vec = torch.cat([vec[..., :3] + self.offsets.to(vec.dtype), vec[..., 3:]], dim=-1)
            self._cache[key] = vector_to_pose(vec.flatten(0, 1), self.dof)
        return self._cache[key]

    def state(self, which: str) -> HandState:
        key = ("state", which)
        if key not in self._cache:
            if self.hand is None:
                raise ValueError("loss term: expected a HandModel for hand-geometry terms, got None")
            pose, joints = self.physical(which)
            self._cache[key] = self.hand(joints, pose, validate=False)
        return self._cache[key]

    def scene_per_grasp(self, max_points: int) -> torch.Tensor:
        """(B G, N', 3) the scene cloud (strided to at most ``max_points``) repeated per grasp, or
        each grasp's own points (strided likewise)."""
        if self.points is None:
            raise ValueError("loss term: expected scene points (B, N, 3) for scene terms, got None")
        if self.points.dim() == 4:
            return self.points[:, :, :: max(1, -(-self.points.shape[2] // max_points))].flatten(0, 1)
        g = self.shape[1]
        pts = self.points[:, :: max(1, -(-self.points.shape[1] // max_points))]  # (B, N', 3)
        return pts[:, None].expand(-1, g, -1, -1).flatten(0, 1)  # (B G, N', 3)


################################################################################
#                                 Term modules                                 #
################################################################################


class TranslationLoss(nn.Module):
    """Squared (l2) or absolute (l1) error of the normalized translation, summed over xyz."""

    def __init__(self, kind: str = "l2"):
        super().__init__()
        self.kind = kind

    def forward(self, pair: GraspPair) -> torch.Tensor:
        diff = pair.pred[..., :3] - pair.target[..., :3]
        return diff.square().sum(-1) if self.kind == "l2" else diff.abs().sum(-1)


class RotationLoss(nn.Module):
    """Geodesic angle (radians) between the rotations of the predicted and target 6D vectors."""

    def forward(self, pair: GraspPair) -> torch.Tensor:
        d = pair.pred.shape[-1]
        r_pred = rot6d_to_matrix(pair.normalizer.denormalize(pair.pred)[..., d - 6 :])  # (B, G, 3, 3)
        r_tgt = rot6d_to_matrix(pair.normalizer.denormalize(pair.target)[..., d - 6 :])  # (B, G, 3, 3)
        return geodesic_angle(r_pred, r_tgt)


class JointLoss(nn.Module):
    """Mean squared error of the normalized joint angles."""

    def forward(self, pair: GraspPair) -> torch.Tensor:
        return (pair.pred[..., 3 : 3 + pair.dof] - pair.target[..., 3 : 3 + pair.dof]).square().mean(-1)


class HandChamferLoss(nn.Module):
    """Symmetric chamfer (mean Euclidean nearest distance, metres) between the surface points of
    the predicted and target hands, on a strided subset of P template points."""

    def __init__(self, num_points: int = 256):
        super().__init__()
        self.num_points = num_points

    def forward(self, pair: GraspPair) -> torch.Tensor:
        a, b = (
            pair.hand.surface_points(pair.state("pred")),
            pair.hand.surface_points(pair.state("target")),
        )  # (B G, P, 3)
        step = max(1, -(-a.shape[1] // self.num_points))
        a, b = a[:, ::step], b[:, ::step]  # (B G, P', 3)
        d = torch.cdist(a, b).clamp_min(0)  # (B G, P', P')
        return (d.min(dim=2).values.mean(-1) + d.min(dim=1).values.mean(-1)).reshape(pair.shape)  # (B, G)


class PenetrationLoss(nn.Module):
    """Sum over scene points of their depth inside the predicted hand (metres); with
    ``over_target``, only what exceeds the same sum for the target grasp."""

    def __init__(self, max_points: int = 1024, over_target: bool = False):
        super().__init__()
        self.max_points, self.over_target = max_points, over_target

    def forward(self, pair: GraspPair) -> torch.Tensor:
        pts = pair.scene_per_grasp(self.max_points)
        depth = pair.hand.penetration_depth(pair.state("pred"), pts).sum(-1)  # (B G,)
        if self.over_target:
            with torch.no_grad():
                own = pair.hand.penetration_depth(pair.state("target"), pts).sum(-1)  # (B G,)
            depth = (depth - own).clamp_min(0.0)
        return depth.reshape(pair.shape)  # (B, G)


class SelfPenetrationLoss(nn.Module):
    """The hand's self-penetration energy of the predicted grasp (metres)."""

    def forward(self, pair: GraspPair) -> torch.Tensor:
        return pair.hand.self_penetration(pair.state("pred")).reshape(pair.shape)  # (B, G)


class ContactLoss(nn.Module):
    """Mean distance (metres) of the k contact candidates closest to the cloud; with
    ``over_target``, only what exceeds the same mean for the target grasp."""

    def __init__(self, k: int = 8, max_points: int = 1024, over_target: bool = False):
        super().__init__()
        self.k, self.max_points, self.over_target = k, max_points, over_target

    def _mean_closest(self, pair: GraspPair, which: str, pts: torch.Tensor) -> torch.Tensor:
        dist = pair.hand.contact_distance(pair.state(which), pts)  # (B G, C)
        return dist.topk(min(self.k, dist.shape[-1]), dim=-1, largest=False).values.mean(-1)  # (B G,)

    def forward(self, pair: GraspPair) -> torch.Tensor:
        pts = pair.scene_per_grasp(self.max_points)
        dist = self._mean_closest(pair, "pred", pts)
        if self.over_target:
            with torch.no_grad():
                own = self._mean_closest(pair, "target", pts)
            dist = (dist - own).clamp_min(0.0)
        return dist.reshape(pair.shape)  # (B, G)


class JointLimitLoss(nn.Module):
    """Radians outside the joint limits of the predicted joints."""

    def forward(self, pair: GraspPair) -> torch.Tensor:
        _, joints = pair.physical("pred")
        return pair.hand.joint_limit_violation(joints).reshape(pair.shape)  # (B, G)


################################################################################
#                                 Matching                                     #
################################################################################


def pose_cost_matrix(pred: torch.Tensor, target: torch.Tensor, dof: int, weights=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """Pairwise cost (B, G1, G2) between normalized grasp sets (B, G1, D) and (B, G2, D):
    weighted squared distances of translation, joints and 6D rotation."""
    w_t, w_q, w_r = weights
    parts = ((slice(0, 3), w_t), (slice(3, 3 + dof), w_q / dof), (slice(3 + dof, None), w_r))
    cost = 0.0
    for sl, w in parts:
        cost = cost + w * torch.cdist(pred[..., sl].float(), target[..., sl].float()).square()
    return cost


def hungarian_match(cost: torch.Tensor) -> torch.Tensor:
    """Optimal assignment per scene: cost (B, G1, G2), G1 <= G2 -> (B, G1) column index of the
    target matched to each prediction (runs on the host; the cost is detached)."""
    if cost.dim() != 3 or cost.shape[1] > cost.shape[2]:
        raise ValueError(f"cost: expected shape (B, G1, G2) with G1 <= G2, got {tuple(cost.shape)}")
    c = cost.detach().float().cpu().numpy()
    cols = np.stack([linear_sum_assignment(ci)[1] for ci in c])
    return torch.as_tensor(cols, dtype=torch.long, device=cost.device)


################################################################################
#                                 Set loss                                     #
################################################################################


class GraspSetLoss(nn.Module):
    """Weighted sum of grasp terms over sets of G grasps.

    Args:
        hand: the :class:`HandModel` (needed for chamfer / penetration / self-penetration /
            contact / joint-limit terms; may be None when those weights are 0).
        normalizer: the grasp normalizer of the data (denormalizes for rotation and hand terms).
        config: :class:`GraspLossConfig`.
    """

    def __init__(self, hand: HandModel | None, normalizer: GraspNormalizer, config: GraspLossConfig | None = None):
        super().__init__()
        self.config = (config or GraspLossConfig()).validate()
        self.hand, self.normalizer = hand, normalizer
        self.dof = normalizer.dim - 9
        modules = {
            "translation": TranslationLoss(self.config.translation_loss),
            "rotation": RotationLoss(),
            "joints": JointLoss(),
            "chamfer": HandChamferLoss(self.config.chamfer_points),
            "penetration": PenetrationLoss(self.config.scene_points, self.config.penetration_over_target),
            "self_penetration": SelfPenetrationLoss(),
            "contact": ContactLoss(self.config.contact_k, self.config.scene_points, self.config.contact_over_target),
            "joint_limits": JointLimitLoss(),
        }
        self.terms = nn.ModuleDict({k: m for k, m in modules.items() if getattr(self.config, k) > 0})
        hand_terms = {"chamfer", "penetration", "self_penetration", "contact", "joint_limits"}
        if hand is None and hand_terms & set(self.terms):
            raise ValueError(
                f"GraspSetLoss: expected a HandModel for terms {sorted(hand_terms & set(self.terms))}, got None"
            )
        if hand is not None and hand.dof != self.dof:
            raise ValueError(f"GraspSetLoss: expected a normalizer of width 3 + {hand.dof} + 6, got {normalizer.dim}")

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        points: torch.Tensor | None = None,
        *,
        offsets: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """pred (B, G1, D), target (B, G2, D) normalized (G1 == G2 unless matching; G1 <= G2 when
        matching), points (B, N, 3), (B, G1, N, 3) per grasp, or None -> {term: scalar mean over
        grasps, "total": weighted sum}.

        ``offsets`` (B, G1, 3) metres are added to both sets' denormalized translations (grasps
        relative to anchors; no matching then); ``weight`` (B,) or (B, G1) >= 0 turns each term's
        mean over grasps into a weighted mean (timestep weights, padding masks)."""
        d = self.normalizer.dim
        if pred.dim() != 3 or pred.shape[-1] != d or target.dim() != 3 or target.shape[::2] != pred.shape[::2]:
            raise ValueError(
                f"pred/target: expected (B, G, {d}) each with equal B, got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        if not self.config.match and pred.shape[1] != target.shape[1]:
            raise ValueError(
                f"pred/target: expected equal G without matching, got {pred.shape[1]} and {target.shape[1]}"
            )
        b, g = pred.shape[:2]
        if points is not None:
            shared = points.dim() == 3 and points.shape[0] == b
            per_grasp = points.dim() == 4 and tuple(points.shape[:2]) == (b, g)
            if not (shared or per_grasp) or points.shape[-1] != 3:
                raise ValueError(f"points: expected shape ({b}, N, 3) or ({b}, {g}, N, 3), got {tuple(points.shape)}")
        if offsets is not None and (offsets.shape != (b, g, 3) or self.config.match):
            raise ValueError(f"offsets: expected shape ({b}, {g}, 3) and match=False, got {tuple(offsets.shape)} "
                             f"and match={self.config.match}")  # fmt: skip
        if weight is not None:
            weight = weight[:, None] if weight.dim() == 1 else weight
            if weight.shape not in ((b, 1), (b, g)):
                raise ValueError(f"weight: expected shape ({b},) or ({b}, {g}), got {tuple(weight.shape)}")
            weight = weight.float().expand(b, g)
        if self.config.match:
            cols = hungarian_match(pose_cost_matrix(pred, target, self.dof))  # (B, G1)
            target = torch.gather(target, 1, cols[..., None].expand(-1, -1, d))  # (B, G1, D)
        pair = GraspPair(self.hand, self.normalizer, pred, target, points, self.dof, offsets)
        out: dict[str, torch.Tensor] = {}
        total = pred.new_zeros(())
        for name, term in self.terms.items():
            per = term(pair)  # (B, G)
            value = per.mean() if weight is None else (per * weight).sum() / weight.sum().clamp_min(1e-8)
            out[name] = value
            total = total + getattr(self.config, name) * value
        out["total"] = total
        return out
