"""Physics evaluator: the LEAP Hand in MuJoCo, the lift and disturbance protocols, in parallel.

Entry points: :func:`evaluate_grasps` (both protocols, ``workers`` processes), :func:`evaluate_lift`,
:func:`evaluate_disturbance`, the cheap :func:`pregrasp_collides`, :func:`render_grasp`;
inputs :class:`SceneSpec` / :class:`ObjectSpec` (or ``scene.json`` via :func:`load_scene`) and
grasps as arrays (or ``grasps.npz`` via :func:`load_grasps`); parameters in :class:`SimConfig`.
MuJoCo is imported lazily, so ``import sceneleap_core.sim`` is cheap.
"""

from sceneleap_core.sim.config import SimConfig
from sceneleap_core.sim.evaluate import (
    DisturbanceResult,
    GraspEvaluation,
    LiftResult,
    evaluate_disturbance,
    evaluate_grasps,
    evaluate_lift,
    pregrasp_collides,
    pregrasp_penetration,
    result_rows,
)
from sceneleap_core.sim.scene import (
    GraspBatch,
    ObjectSpec,
    SceneSpec,
    check_grasps,
    load_grasps,
    load_scene,
    pose_from_position_quaternion,
    save_grasps,
    scene_from_dict,
    scene_to_dict,
)


def render_grasp(*args, **kwargs):
    """See :func:`sceneleap_core.sim.render.render_grasp` (imported lazily)."""
    from sceneleap_core.sim.render import render_grasp as _render

    return _render(*args, **kwargs)


__all__ = [
    "DisturbanceResult",
    "GraspBatch",
    "GraspEvaluation",
    "LiftResult",
    "ObjectSpec",
    "SceneSpec",
    "SimConfig",
    "check_grasps",
    "evaluate_disturbance",
    "evaluate_grasps",
    "evaluate_lift",
    "load_grasps",
    "load_scene",
    "pose_from_position_quaternion",
    "pregrasp_collides",
    "pregrasp_penetration",
    "render_grasp",
    "result_rows",
    "save_grasps",
    "scene_from_dict",
    "scene_to_dict",
]
