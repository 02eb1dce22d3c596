"""Hand descriptions and the batched, differentiable hand model."""

from sceneleap_core.hand.description import HandDescription
from sceneleap_core.hand.hand_model import HandModel, HandState
from sceneleap_core.hand.representation import (
    GraspNormalizer,
    anchor_absolute,
    anchor_relative,
    grasp_vector_size,
    pos_quat_to_pose,
    pose_to_pos_quat,
    pose_to_vector,
    vector_to_pose,
)

__all__ = [
    "GraspNormalizer",
    "HandDescription",
    "HandModel",
    "HandState",
    "anchor_absolute",
    "anchor_relative",
    "grasp_vector_size",
    "pos_quat_to_pose",
    "pose_to_pos_quat",
    "pose_to_vector",
    "vector_to_pose",
]
