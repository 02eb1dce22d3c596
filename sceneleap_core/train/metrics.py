"""Validation metrics of sampled grasp sets, and the plug-in point for a simulated evaluator.

Notation: B scenes, G predicted grasps, K ground-truth grasps, N cloud points, F fingertips.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import torch

from sceneleap_core.hand import HandModel


def grasp_keypoints(hand: HandModel, palm_pose: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """Palm origin and fingertips (B, G, 1 + F, 3) of (B, G, 4, 4) poses and (B, G, J) joints (metres)."""
    b, g = joints.shape[:2]
    state = hand(
        joints.reshape(b * g, -1).to(hand.dtype), palm_pose.reshape(b * g, 4, 4).to(hand.dtype), validate=False
    )
    tips = hand.tip_positions(state)  # (B*G, F, 3)
    pts = torch.cat([palm_pose.reshape(b * g, 4, 4)[:, None, :3, 3].to(tips.dtype), tips], dim=1)  # (B*G, 1+F, 3)
    return pts.reshape(b, g, -1, 3)  # (B, G, 1+F, 3)


def grasp_set_chamfer(
    pred_keypoints: torch.Tensor, target_keypoints: torch.Tensor, target_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric chamfer distance (B,) between grasp sets, metres.

    The distance of two grasps is the mean Euclidean distance of their matched keypoints (palm
    origin and fingertips); chamfer = mean over predictions of the distance to the nearest target
    plus mean over (unmasked) targets of the distance to the nearest prediction.

    Args:
        pred_keypoints: (B, G, P, 3).
        target_keypoints: (B, K, P, 3).
        target_mask: (B, K) bool, False for padded/repeated targets.
    """
    d = (pred_keypoints[:, :, None] - target_keypoints[:, None]).norm(dim=-1).mean(-1)  # (B, G, K)
    if target_mask is not None:
        d_masked = d.masked_fill(~target_mask[:, None, :], float("inf"))
        to_target = d_masked.min(dim=2).values.mean(1)  # (B,)
        w = target_mask.float()
        to_pred = (d.min(dim=1).values * w).sum(1) / w.sum(1).clamp_min(1)  # (B,)
    else:
        to_target = d.min(dim=2).values.mean(1)
        to_pred = d.min(dim=1).values.mean(1)
    return to_target + to_pred


def scene_penetration(
    hand: HandModel, palm_pose: torch.Tensor, joints: torch.Tensor, points: torch.Tensor, *, chunk: int = 512
) -> torch.Tensor:
    """Maximum depth (B, G) by which any cloud point lies inside each hand, metres.

    Args:
        palm_pose: (B, G, 4, 4); joints: (B, G, J); points: (B, N, 3) (same frame as the poses).
    """
    b, g = joints.shape[:2]
    state = hand(
        joints.reshape(b * g, -1).to(hand.dtype), palm_pose.reshape(b * g, 4, 4).to(hand.dtype), validate=False
    )
    cloud = points.to(hand.dtype).repeat_interleave(g, dim=0)  # (B*G, N, 3)
    depth = hand.penetration_depth(state, cloud, chunk=chunk)  # (B*G, N)
    return depth.max(dim=1).values.reshape(b, g)  # (B, G)


class ValidationEvaluator(Protocol):
    """A pluggable validation scorer (e.g. lift tests in ``sceneleap_core.sim``).

    Called on rank 0 with one validation batch (network frame; ``batch["frame"]`` maps to the
    camera frame) and the sampled grasps, physical units; returns scalar metrics
    (logged as ``val/<name>``).

    Args:
        batch: the validation batch dict (see :class:`sceneleap_core.train.data.GraspSceneDataset`).
        palm_pose: (B, G, 4, 4) sampled palm poses, network frame.
        joints: (B, G, J) sampled joint angles.
    """

    def __call__(self, batch: dict, palm_pose: torch.Tensor, joints: torch.Tensor) -> dict[str, float]: ...


def load_evaluator(spec: str, cfg) -> ValidationEvaluator:
    """Resolve ``val.evaluator`` (a registered name or ``"sceneleap_core.module:factory"``, see
    :func:`sceneleap_core.train.config.evaluator_target`), import it and call ``factory(cfg)``;
    errors name ``val.evaluator``."""
    from sceneleap_core.train.config import evaluator_target

    module_name, _, attr = evaluator_target(spec).partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(
            f"val.evaluator: expected an importable 'package.module:factory', got {spec!r} ({err})"
        ) from None
    evaluator = factory(cfg)
    if not callable(evaluator):
        raise ValueError(f"val.evaluator: factory {spec!r} must return a callable, got {type(evaluator).__name__}")
    return evaluator
