"""The planner on dataset views whose scenes are known: the library side of ``sceneleap demo-plan``.

Frames. A dataset view (:class:`sceneleap_core.data.shards.Sample`) stores its cloud and grasps in
the camera frame and its objects in the world, with ``camera_pose`` = world <- camera. The planner is
given what a robot has: the camera-frame cloud and world up in the camera frame (from the camera
pose, as tf gives it; :func:`camera_up`). Its grasps come back in the camera frame and are moved to
the world by the camera pose (:func:`to_world`), where the evaluator's scene
(:meth:`sceneleap_core.train.sim_validation.SimLiftEvaluator.scene`) lives.

Shapes: N points, G grasps, J joints.
"""

from __future__ import annotations

import time

import numpy as np

from sceneleap_core.infer.planner import GraspPlanner, GraspSet


def scene_views(dataset, num_scenes: int) -> list[int]:
    """Indices of the first view of each of the first ``num_scenes`` distinct scenes of ``dataset``
    (a :class:`sceneleap_core.data.shards.ShardDataset`), in scene order. ValueError unless
    1 <= ``num_scenes`` <= the number of distinct scenes."""
    ids = np.asarray(dataset.scene_ids())
    scenes, first = np.unique(ids, return_index=True)
    if not 1 <= num_scenes <= len(scenes):
        raise ValueError(f"scenes: expected 1 <= N <= {len(scenes)} (the distinct scenes of the dataset), "
                         f"got {num_scenes}")  # fmt: skip
    return sorted(int(i) for i in first)[:num_scenes]


def camera_up(camera_pose: np.ndarray) -> np.ndarray:
    """World up (+z) in the camera frame (3,), from ``camera_pose`` (4, 4) = world <- camera."""
    pose = np.asarray(camera_pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise ValueError(f"camera_pose: expected a finite (4, 4) matrix, got shape {pose.shape}")
    return pose[:3, :3].T @ np.array([0.0, 0.0, 1.0])


def to_world(grasps: GraspSet, sample) -> GraspSet:
    """Camera-frame grasps of a dataset view -> the scene's world frame (``sample.camera_pose``)."""
    return grasps.transformed(sample.camera_pose)


def plan_view(planner: GraspPlanner, sample, num_grasps: int, *, repeats: int = 1, **plan_kwargs):
    """Plan grasps for one dataset view as a robot would (camera-frame cloud, up from the camera
    pose), ``repeats`` times (the same seed gives the same grasps; the repeats time ``plan()``).

    Returns:
        the grasps of the last call in the scene's world frame (1, G, ...), and the wall-clock
        milliseconds of each ``plan()`` call.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    up = camera_up(sample.camera_pose)
    latencies = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        grasps = planner.plan(sample.points, num_grasps, up=up, **plan_kwargs)
        latencies.append(1e3 * (time.perf_counter() - t0))
    return to_world(grasps, sample), latencies


def lift_metrics(lift) -> dict:
    """Scene-level numbers of a :class:`sceneleap_core.sim.LiftResult` of G grasps in rank order:
    ``grasps``, ``top1_success`` (rank 1 lifts; None when G = 0), ``lift_success`` (mean over the G),
    ``penetration_mm`` (mean over the G of each grasp's deepest penetration into the target or the
    rest of the scene, the commanded pose placed kinematically; None when G = 0)."""
    g = 0 if lift is None else len(lift.success)
    if g == 0:
        return {"grasps": 0, "top1_success": None, "lift_success": None, "penetration_mm": None}
    pen = np.maximum(lift.penetration_object_mm, lift.penetration_scene_mm)  # (G,)
    return {"grasps": g, "top1_success": bool(lift.success[0]), "lift_success": float(lift.success.mean()),
            "penetration_mm": float(pen.mean())}  # fmt: skip
