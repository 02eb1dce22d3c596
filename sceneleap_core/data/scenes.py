"""Cluttered scenes: objects dropped and settled on a table in MuJoCo, their grasps moved into the
scene and filtered against the table and the other objects.

World frame: z up, the table top at z = ``table_z`` (0), centred at the origin. Notation: O objects,
G grasps, J hand DoF, P hand surface points, M object surface samples.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from sceneleap_core.data.objects import LibraryObject, build_mesh
from sceneleap_core.sim.scene import TABLE_HALF_EXTENTS

log = logging.getLogger(__name__)
TABLE_HALF = TABLE_HALF_EXTENTS  # half extents of the table-top box (m); its top face is z = 0


@dataclass
class Scene:
    """A settled scene.

    Attributes:
        scene_id: index.
        objects: the specs of the O objects still on the table.
        poses: (O, 4, 4) world <- object.
        table_z: height of the table top.
        xml: the MJCF it was simulated from (ray casting reuses it).
    """

    scene_id: int
    objects: list[LibraryObject]
    poses: np.ndarray
    table_z: float = 0.0
    xml: str = ""
    model: object = field(default=None, repr=False)
    data: object = field(default=None, repr=False)

    def geom_object_ids(self) -> np.ndarray:
        """(ngeom,) object id of every MuJoCo geom, -1 for the table and anything else."""
        import mujoco

        ids = np.full(self.model.ngeom, -1, dtype=np.int32)
        for g in range(self.model.ngeom):
            name = mujoco.mj_id2name(self.model, mujoco.mjtObj.mjOBJ_GEOM, g) or ""
            if name.startswith("object_"):  # object_{i}_g{k}: collision piece k of object i
                ids[g] = self.objects[int(name.split("_")[1])].id
        return ids


def scene_xml(objects: list[LibraryObject], poses: np.ndarray, *, timestep: float = 0.002) -> str:
    """MJCF of objects (free bodies ``object_i`` at ``poses`` (O, 4, 4)) on the table, without the
    hand: the evaluator's own translation of library objects (:func:`data.validate.sim_object`:
    primitives exact, meshes as the evaluator's convex pieces) and its one table
    (:func:`sim.mjcf.table_xml`), so settling, validation and evaluation see the same world."""
    from dataclasses import replace

    from sceneleap_core.data.validate import sim_scene
    from sceneleap_core.sim.config import SimConfig
    from sceneleap_core.sim.mjcf import build_objects_xml

    scene = sim_scene(objects, poses, 0.0)
    scene.validate()
    return build_objects_xml(scene, replace(SimConfig(), timestep=timestep))


def settle_scene(
    scene_id: int,
    objects: list[LibraryObject],
    rng: np.random.Generator,
    *,
    spread: float = 0.15,
    settle_time: float = 2.0,
    drop_gap: float = 0.03,
) -> Scene:
    """Drop ``objects`` in random orientations over the table centre (within ±``spread`` m) one
    above the other, simulate ``settle_time`` s, and keep those resting on the table top.

    Recipe: 1. random rotation, xy uniform, z stacked by bounding radius; 2. simulate with
    gravity; 3. drop objects that fell off (below the table top or outside it); 4. re-read poses.
    """
    import mujoco
    from scipy.spatial.transform import Rotation

    if not objects:
        raise ValueError("objects: expected at least one object, got none")
    poses, z = [], 0.0
    for spec in objects:
        radius = float(np.linalg.norm(build_mesh(spec).extents) / 2)
        pose = np.eye(4)
        pose[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
        pose[:3, 3] = [*rng.uniform(-spread, spread, 2), z + radius + drop_gap]
        z += 2 * radius + drop_gap
        poses.append(pose)
    xml = scene_xml(objects, np.stack(poses))
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    for _ in range(round(settle_time / model.opt.timestep)):
        mujoco.mj_step(model, data)
    mujoco.mj_forward(model, data)
    keep, final = [], []
    for i in range(len(objects)):
        bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"object_{i}")
        pos, rot = data.xpos[bid].copy(), data.xmat[bid].reshape(3, 3).copy()
        on_table = pos[2] > -0.01 and np.all(np.abs(pos[:2]) < np.asarray(TABLE_HALF[:2]) - 0.01)
        speed = np.linalg.norm(data.cvel[bid])
        if on_table and speed < 0.5:
            keep.append(i)
            final.append(np.block([[rot, pos[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]))
        else:
            log.info("scene %d: object %d left the table or did not settle, dropped", scene_id, objects[i].id)
    if not keep:
        raise ValueError(f"scene {scene_id}: expected at least one object on the table, got none")
    objects = [objects[i] for i in keep]
    poses = np.stack(final)
    # Rebuild the model at the settled poses (static) for ray casting.
    xml = scene_xml(objects, poses)
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return Scene(scene_id, objects, poses, 0.0, xml, model, data)


def surface_samples(spec: LibraryObject, count: int = 512, seed: int = 0) -> np.ndarray:
    """(M, 3) surface samples of an object in its own frame (collision checks)."""
    import trimesh

    pts, _ = trimesh.sample.sample_surface(build_mesh(spec), count, seed=seed)
    return np.asarray(pts)


def filter_scene_grasps(
    hand,
    scene: Scene,
    grasps: dict[int, tuple[np.ndarray, np.ndarray]],
    *,
    pregrasp_distance: float = 0.10,
    table_margin: float = 0.0,
    penetration_tolerance: float = 0.001,
    max_per_object: int | None = 32,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move every object's grasps into the scene and drop those that collide.

    Args:
        hand: HandModel.
        scene: settled scene.
        grasps: object id -> (palm poses (G, 4, 4) object frame, joints (G, J)).
        pregrasp_distance: back-off (m) of the pregrasp along the approach axis (as the lift test).
        table_margin: hand points must stay this far above the table top (m).
        penetration_tolerance: allowed depth (m) of other objects' samples in the hand.
        max_per_object: keep at most this many (random) surviving grasps per object (None = all).

    Returns:
        palm poses (G', 4, 4) world frame, joints (G', J), object ids (G',).

    Recipe: for each object k and its grasps T_o_g: 1. T_w_g = T_w_o T_o_g; 2. the grasp (grasp
    joints) and the pregrasp (open joints, backed off) must keep every hand surface point above the
    table; 3. no sample of another object may sink deeper than the tolerance into the hand at
    either; 4. the pregrasp must not touch the target object either.
    """
    rng = rng or np.random.default_rng(0)
    dt, dev = hand.dtype, hand.device
    samples = [
        (scene.poses[i][:3, :3] @ surface_samples(spec, 384, seed=spec.id).T).T + scene.poses[i][:3, 3]
        for i, spec in enumerate(scene.objects)
    ]
    axis = hand.approach_axis
    out_pose, out_joints, out_obj = [], [], []
    for i, spec in enumerate(scene.objects):
        if spec.id not in grasps or len(grasps[spec.id][0]) == 0:
            continue
        pose_o, joints = grasps[spec.id]
        pose_w = torch.as_tensor(scene.poses[i] @ pose_o, dtype=dt, device=dev)  # (G, 4, 4)
        q = torch.as_tensor(joints, dtype=dt, device=dev)
        q_open = hand.open_joints(q)
        pre = pose_w.clone()
        pre[:, :3, 3] -= pregrasp_distance * (pose_w[:, :3, :3] @ axis)
        keep = torch.ones(len(q), dtype=torch.bool, device=dev)
        with torch.no_grad():
            for pose, jq, check_target in ((pose_w, q, False), (pre, q_open, True)):
                state = hand(jq, pose, validate=False)
                keep &= hand.surface_points(state)[..., 2].amin(-1) >= scene.table_z + table_margin
                others = [samples[j] for j in range(len(samples)) if j != i or check_target]
                if others:
                    pts = torch.as_tensor(np.concatenate(others), dtype=dt, device=dev)[None].expand(len(q), -1, -1)
                    keep &= hand.penetration_depth(state, pts, chunk=512).amax(-1) <= penetration_tolerance
        idx = np.flatnonzero(keep.cpu().numpy())
        if max_per_object is not None and len(idx) > max_per_object:
            idx = np.sort(rng.choice(idx, max_per_object, replace=False))
        out_pose.append(pose_w[idx].cpu().numpy())
        out_joints.append(np.asarray(joints)[idx])
        out_obj.append(np.full(len(idx), spec.id, dtype=np.int32))
    if not out_pose:
        return np.zeros((0, 4, 4)), np.zeros((0, hand.dof)), np.zeros(0, np.int32)
    return np.concatenate(out_pose), np.concatenate(out_joints), np.concatenate(out_obj)


def scene_lift_validate(
    scene: Scene,
    pose: np.ndarray,
    joints: np.ndarray,
    object_ids: np.ndarray,
    *,
    sim_config: dict | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Re-validate scene grasps (G, 4, 4), (G, J) with the evaluator's lift test in the scene (table +
    clutter), in ``workers`` processes (forked: call it with workers > 1 only from a process that
    has not run multi-threaded torch, or it can hang). Returns success (G,) bool."""
    from sceneleap_core.data.validate import sim_scene
    from sceneleap_core.sim import SimConfig, evaluate_grasps

    if len(pose) == 0:
        return np.zeros(0, dtype=bool)
    spec = sim_scene(scene.objects, scene.poses, scene.table_z)
    index = {o.id: k for k, o in enumerate(scene.objects)}
    target = np.array([index[int(o)] for o in object_ids], dtype=np.int64)
    config = SimConfig.from_dict(sim_config) if sim_config else SimConfig()
    return evaluate_grasps(spec, pose, joints, target, protocol="lift", config=config, workers=workers).lift.success
