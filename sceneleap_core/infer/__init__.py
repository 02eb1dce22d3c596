"""Inference: the one path from a cloud to grasps (training validation, benches, CLI and node call it)."""

from sceneleap_core.infer.baselines import NormalApproachPlanner
from sceneleap_core.infer.planner import GraspPlanner, GraspSet, decode_grasps

__all__ = ["GraspPlanner", "GraspSet", "NormalApproachPlanner", "decode_grasps"]
