"""A toy dataset for smoke runs, tests and benchmarks: one box on a table per scene, seen from a
random camera, with top-down grasps above the box. Not physically validated: it has the schema,
frames and statistics of real shards, nothing more.

    python -c "from sceneleap_core.train.toy import write_toy_dataset; write_toy_dataset('data/toy')"
    sceneleap train --config config/train/tiny.yaml data.root=data/toy
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sceneleap_core.data.shards import Sample, ShardWriter, write_manifest


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(4, 4) world <- camera for a camera at ``eye`` looking at ``target`` (x right, y down, z forward)."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x, y, z, eye
    return pose


def toy_sample(
    rng: np.random.Generator, view_rng: np.random.Generator, scene_id: int, *, num_points: int = 600, num_grasps: int = 12, dof: int = 16,
    joint_lower: np.ndarray | None = None, joint_upper: np.ndarray | None = None,
) -> Sample:  # fmt: skip
    """One view of a box-on-table scene with ``num_grasps`` top-down grasps (camera frame).
    ``rng`` draws the scene (same seed, same scene), ``view_rng`` the camera."""
    size = rng.uniform(0.04, 0.09, size=3)
    centre = np.array([*rng.uniform(-0.1, 0.1, size=2), size[2] / 2])
    yaw = rng.uniform(-np.pi, np.pi)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    # box surface (object 0) and table (-1), world frame
    n_box = num_points // 2
    face = rng.integers(0, 6, size=n_box)
    local = rng.uniform(-0.5, 0.5, size=(n_box, 3))
    local[np.arange(n_box), face % 3] = np.where(face < 3, 0.5, -0.5)
    box = (local * size) @ rz.T + centre
    table = np.concatenate(
        [rng.uniform(-0.25, 0.25, size=(num_points - n_box, 2)), np.zeros((num_points - n_box, 1))], 1
    )
    world = np.concatenate([box, table])
    ids = np.concatenate([np.zeros(n_box, np.int32), -np.ones(num_points - n_box, np.int32)])
    # camera
    az, el, dist = view_rng.uniform(-np.pi, np.pi), view_rng.uniform(0.5, 1.2), view_rng.uniform(0.5, 0.8)
    eye = centre + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    cam = look_at(eye, centre)
    cam_inv = np.linalg.inv(cam)
    points = world @ cam_inv[:3, :3].T + cam_inv[:3, 3]
    # top-down grasps: palm z (approach is -z) = world +z, random yaw, above the box top
    lo = np.zeros(dof) if joint_lower is None else joint_lower
    hi = np.ones(dof) if joint_upper is None else joint_upper
    poses = np.zeros((num_grasps, 4, 4))
    for i in range(num_grasps):
        a = rng.uniform(-np.pi, np.pi)
        r = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        t = centre + np.array([*rng.normal(0, 0.01, 2), size[2] / 2 + rng.uniform(0.06, 0.1)])
        world_pose = np.eye(4)
        world_pose[:3, :3], world_pose[:3, 3] = r, t
        poses[i] = cam_inv @ world_pose
    joints = lo + (hi - lo) * rng.uniform(0.2, 0.6, size=(num_grasps, dof))
    return Sample(
        points=points.astype(np.float32),
        point_object=ids,
        camera_pose=cam,
        grasp_pose=poses.astype(np.float32),
        grasp_joints=joints.astype(np.float32),
        grasp_object=np.zeros(num_grasps, np.int32),
        scene_id=scene_id,
        object_ids=np.zeros(1, np.int32),
        object_pose=np.eye(4)[None],
    )


def write_toy_dataset(
    root: str | Path,
    *,
    num_scenes: int = 16,
    views: int = 2,
    num_points: int = 600,
    grasps: tuple[int, int] = (4, 16),
    shard_size: int = 16,
    seed: int = 0,
    hand: str = "leap_hand_right",
) -> Path:
    """Write ``num_scenes * views`` toy samples into shards under ``root`` plus the manifest.

    ``grasps`` is the (min, max) number of grasps per scene (scenes below K exercise padding).
    """
    from sceneleap_core.hand import HandDescription

    desc = HandDescription.load(hand)
    lo, hi = np.asarray(desc.lower_limits, dtype=np.float64), np.asarray(desc.upper_limits, dtype=np.float64)
    dof = len(desc.joint_names)
    rng = np.random.default_rng(seed)
    root = Path(root)
    samples = []
    for scene in range(num_scenes):
        g = int(rng.integers(grasps[0], grasps[1] + 1))
        for view in range(views):  # same scene (box, grasps, cloud in the world), a new camera per view
            s = toy_sample(
                np.random.default_rng([seed, scene]), np.random.default_rng([seed, scene, view, 1]), scene,
                num_points=num_points, num_grasps=g, dof=dof, joint_lower=lo, joint_upper=hi,
            )  # fmt: skip
            samples.append(s)
    for k in range(0, len(samples), shard_size):
        with ShardWriter(root / f"shard_{k // shard_size:05d}.h5", hand=hand, dof=dof) as writer:
            for s in samples[k : k + shard_size]:
                writer.add(s)
    write_manifest(root, metadata={"generator": "sceneleap_core.train.toy", "seed": seed})
    return root
