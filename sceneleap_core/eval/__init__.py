"""Grasp metrics: Q1 (friction-cone wrench space), diversity (per-joint std) and coverage / MMD
against a reference set. Simulation-based success lives in :mod:`sceneleap_core.sim`."""

from sceneleap_core.eval.metrics import (
    coverage,
    diversity_report,
    friction_cone_edges,
    grasp_distance_matrix,
    joint_std,
    minimum_matching_distance,
    q1_metric,
)

__all__ = [
    "coverage",
    "diversity_report",
    "friction_cone_edges",
    "grasp_distance_matrix",
    "joint_std",
    "minimum_matching_distance",
    "q1_metric",
]
