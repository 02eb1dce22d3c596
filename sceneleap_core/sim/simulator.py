"""One MuJoCo model of a scene plus the hand, and the two grasp protocols run on it, one grasp
at a time. :mod:`sceneleap_core.sim.evaluate` batches and parallelizes these.

Notation: J hand DoF, O objects, C contacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from sceneleap_core.eval.metrics import q1_metric
from sceneleap_core.hand.description import HandDescription
from sceneleap_core.sim.config import SimConfig
from sceneleap_core.sim.mjcf import HAND_TARGET, build_scene_xml, mat_to_quat_wxyz
from sceneleap_core.sim.scene import SceneSpec

DIRECTIONS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
DIRECTION_NAMES = ("+x", "-x", "+y", "-y", "+z", "-z")
CHECK_EVERY = 10  # steps between displacement checks during a push

# failure reasons, in the order they are checked
OK = ""
PREGRASP_PENETRATION = "pregrasp_penetration"
GRASP_PENETRATION = "grasp_penetration"
NOT_LIFTED = "not_lifted"
MOVED = "moved"
ROTATED = "rotated"


@dataclass
class Frame:
    """A snapshot for rendering: qpos (nq,) and mocap pose at a named phase."""

    phase: str
    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray


@dataclass
class GraspOutcome:
    """Everything one protocol run measured for one grasp (plain numbers; see LiftResult)."""

    success: bool = False
    failure: str = OK
    pregrasp_penetration: float = 0.0  # m
    penetration_object: float = 0.0  # m, at the commanded grasp, into the target
    penetration_scene: float = 0.0  # m, into other objects and the table
    tip_contacts: int = 0
    q1: float = 0.0
    lift_height: float = float("nan")  # m, target z at the end minus at the start
    other_displacement: float = 0.0  # m, largest displacement of any non-target object while simulated
    translation: np.ndarray = field(default_factory=lambda: np.full(6, np.nan))  # m per push direction
    rotation_deg: np.ndarray = field(default_factory=lambda: np.full(6, np.nan))
    frames: list[Frame] = field(default_factory=list)


def _quat_angle_deg(q_a: np.ndarray, q_b: np.ndarray) -> float:
    dot = abs(float(np.dot(q_a, q_b)))
    return float(np.degrees(2 * np.arccos(min(1.0, dot))))


class GraspSim:
    """A compiled scene: the hand (from its description), the objects and the table.

    Args:
        scene: validated SceneSpec.
        config: physics parameters.
        hand: hand description (default: the bundled LEAP Hand).
        seed: CoACD seed for non-convex meshes (the physics itself is deterministic).
        render_size: offscreen framebuffer (width, height).
    """

    def __init__(
        self,
        scene: SceneSpec,
        *,
        config: SimConfig | None = None,
        hand: HandDescription | None = None,
        seed: int = 0,
        render_size: tuple[int, int] = (640, 480),
    ):
        scene.validate()
        self.scene = scene
        self.config = config or SimConfig()
        self.desc = hand or HandDescription.load()
        self.xml = build_scene_xml(scene, self.desc, self.config, seed=seed, render_size=render_size)
        self.model = mujoco.MjModel.from_xml_string(self.xml)
        self.data = mujoco.MjData(self.model)
        m = self.model
        name = mujoco.mjtObj
        # 1. hand indices in the project's joint order
        joint_ids = [mujoco.mj_name2id(m, name.mjOBJ_JOINT, j) for j in self.desc.joint_names]
        self.joint_qpos = np.array([m.jnt_qposadr[j] for j in joint_ids])
        self.actuator = np.array([mujoco.mj_name2id(m, name.mjOBJ_ACTUATOR, f"a_{j}") for j in self.desc.joint_names])
        self.lower, self.upper = self.desc.lower_limits, self.desc.upper_limits
        self.closing = self.desc.closing_direction
        root_joint = mujoco.mj_name2id(m, name.mjOBJ_JOINT, "hand_root")
        self.root_qpos = m.jnt_qposadr[root_joint]
        self.root_dof = m.jnt_dofadr[root_joint]
        self.mocap = m.body_mocapid[mujoco.mj_name2id(m, name.mjOBJ_BODY, HAND_TARGET)]
        hand_bodies = {mujoco.mj_name2id(m, name.mjOBJ_BODY, link) for link in self.desc.link_names}
        # 2. geom classes: -1 table/world, -2 hand, i >= 0 object i
        self.geom_owner = np.full(m.ngeom, -1, dtype=np.int64)
        self.object_body = np.array(
            [mujoco.mj_name2id(m, name.mjOBJ_BODY, f"object_{i}") for i in range(len(scene.objects))]
        )
        for g in range(m.ngeom):
            b = m.geom_bodyid[g]
            if b in hand_bodies:
                self.geom_owner[g] = -2
            elif b in self.object_body:
                self.geom_owner[g] = int(np.flatnonzero(self.object_body == b)[0])
        tip_links = self.config.tip_contact_links or tuple(spec["links"][-1] for spec in self.desc.fingers.values())
        tip_bodies = [mujoco.mj_name2id(m, name.mjOBJ_BODY, link) for link in tip_links]
        self.geom_finger = np.full(m.ngeom, -1, dtype=np.int64)  # finger index of fingertip-link geoms
        for k, b in enumerate(tip_bodies):
            self.geom_finger[m.geom_bodyid == b] = k
        self.object_qpos = np.array(
            [
                m.jnt_qposadr[mujoco.mj_name2id(m, name.mjOBJ_JOINT, f"object_{i}_free")]
                for i in range(len(self.object_body))
            ]
        )
        self.object_mass = m.body_subtreemass[self.object_body].copy()
        self.object_radius = np.array([obj.bounding_radius() for obj in scene.objects])
        self._gravity = m.opt.gravity.copy()
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state = np.zeros(mujoco.mj_stateSize(m, self._state_spec))
        self.dt = m.opt.timestep
        self.on_step = None  # optional callable(sim, phase) called after every step (video capture)
        self._object_start = np.zeros((len(self.object_body), 3))  # object positions at the last reset
        self._object_moved = np.zeros(len(self.object_body))  # (O,) largest displacement since then (m)
        self.phase = ""

    # ------------------------------------------------------------------ helpers
    def open_joints(self, joints: np.ndarray) -> np.ndarray:
        """The open hand of a grasp (J,): closing joints unflexed to the description's open pose
        (never past the grasp), sideways joints (closing direction 0) kept as in the grasp."""
        open_pose = self.desc.open_pose
        out = joints.copy()
        flex = self.closing > 0
        out[flex] = np.minimum(joints[flex], open_pose[flex])
        ext = self.closing < 0
        out[ext] = np.maximum(joints[ext], open_pose[ext])
        return out

    def squeeze_joints(self, joints: np.ndarray) -> np.ndarray:
        """Joint targets (J,) a little past the grasp along each joint's closing direction."""
        return np.clip(joints + self.config.squeeze_delta * self.closing, self.lower, self.upper)

    def pregrasp_pose(self, palm_pose: np.ndarray) -> np.ndarray:
        """Palm pose (4, 4) backed off ``pregrasp_distance`` against the approach axis."""
        pose = palm_pose.copy()
        pose[:3, 3] -= self.config.pregrasp_distance * (palm_pose[:3, :3] @ self.desc.approach_axis)
        return pose

    def _set_hand(self, palm_pose: np.ndarray, joints: np.ndarray) -> None:
        d = self.data
        quat = mat_to_quat_wxyz(palm_pose[:3, :3])
        d.qpos[self.root_qpos : self.root_qpos + 3] = palm_pose[:3, 3]
        d.qpos[self.root_qpos + 3 : self.root_qpos + 7] = quat
        d.mocap_pos[self.mocap] = palm_pose[:3, 3]
        d.mocap_quat[self.mocap] = quat
        d.qpos[self.joint_qpos] = joints
        d.ctrl[self.actuator] = joints

    def reset(self, palm_pose: np.ndarray, joints: np.ndarray) -> None:
        """Objects at their scene poses, the hand at ``palm_pose`` with ``joints``, at rest."""
        mujoco.mj_resetData(self.model, self.data)
        self._set_hand(palm_pose, joints)
        mujoco.mj_forward(self.model, self.data)
        self._object_start = self.data.xpos[self.object_body].copy()
        self._object_moved[:] = 0.0

    def _track_objects(self) -> None:
        """Update the largest displacement (O,) of every object since the last reset."""
        moved = np.linalg.norm(self.data.xpos[self.object_body] - self._object_start, axis=1)
        np.maximum(self._object_moved, moved, out=self._object_moved)

    def hand_penetration(self, palm_pose: np.ndarray, joints: np.ndarray) -> np.ndarray:
        """Deepest penetration (m) of the hand, placed kinematically, into each object and the
        table: (O + 1,), the last entry the table (0 without contact). Uses MuJoCo's contact
        distances between the hand's collision boxes and the objects' convex pieces."""
        self.reset(palm_pose, joints)
        depth = np.zeros(len(self.object_body) + 1)
        c = self.data.contact
        n = self.data.ncon
        if n == 0:
            return depth
        owner1, owner2 = self.geom_owner[c.geom1[:n]], self.geom_owner[c.geom2[:n]]
        dist = c.dist[:n]
        for a, b in ((owner1, owner2), (owner2, owner1)):
            mask = (a == -2) & (b != -2)
            if mask.any():
                idx = np.where(b[mask] == -1, len(self.object_body), b[mask])
                np.maximum.at(depth, idx, -dist[mask])
        return np.maximum(depth, 0.0)

    def _contacts_with(self, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Contacts between the hand and object ``target`` now: points (C, 3), normals into the
        object (C, 3), finger index of the hand geom (C,) (-1 off the fingertips)."""
        d = self.data
        n = d.ncon
        if n == 0:
            return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
        c = d.contact
        g1, g2 = c.geom1[:n], c.geom2[:n]
        o1, o2 = self.geom_owner[g1], self.geom_owner[g2]
        hand_first = (o1 == -2) & (o2 == target)
        hand_second = (o2 == -2) & (o1 == target)
        keep = (hand_first | hand_second) & (c.dist[:n] < 1e-3)
        normals = c.frame[:n, :3].copy()  # from geom1 to geom2
        normals[hand_second] *= -1
        hand_geom = np.where(hand_first, g1, g2)
        return c.pos[:n][keep], normals[keep], self.geom_finger[hand_geom[keep]]

    def _grasp_quality(self, target: int) -> tuple[int, float]:
        points, normals, finger = self._contacts_with(target)
        tips = len(set(finger[finger >= 0].tolist()))
        center = self.data.xipos[self.object_body[target]]
        q1 = q1_metric(
            points,
            normals,
            center,
            friction=self.config.q1_friction,
            num_edges=self.config.q1_cone_edges,
            torque_scale=float(self.object_radius[target]),
        )
        return tips, q1

    def _frame(self, phase: str) -> Frame:
        d = self.data
        return Frame(phase, d.qpos.copy(), d.mocap_pos[self.mocap].copy(), d.mocap_quat[self.mocap].copy())

    def _run(self, seconds: float, *, pos_from=None, pos_to=None, ctrl_from=None, ctrl_to=None) -> None:
        """Step ``seconds`` of simulated time, interpolating the mocap position and joint targets."""
        m, d = self.model, self.data
        steps = max(1, round(seconds / self.dt))
        for k in range(1, steps + 1):
            s = k / steps
            if pos_from is not None:
                d.mocap_pos[self.mocap] = pos_from + s * (pos_to - pos_from)
            if ctrl_from is not None:
                d.ctrl[self.actuator] = ctrl_from + s * (ctrl_to - ctrl_from)
            mujoco.mj_step(m, d)
            if self.on_step is not None:
                self.on_step(self)
            if k % CHECK_EVERY == 0 or k == steps:
                self._track_objects()

    # ------------------------------------------------------------------ protocols
    def _approach_and_close(self, palm_pose: np.ndarray, joints: np.ndarray, out: GraspOutcome, record: bool) -> bool:
        """Gates and the shared first half of both protocols: pregrasp check, grasp-pose
        penetration, approach with open fingers, close, squeeze. False when a gate failed."""
        cfg = self.config
        open_q = self.open_joints(joints)
        pre = self.pregrasp_pose(palm_pose)
        # 1. penetration of the commanded grasp (metrics) and of the pregrasp (gate)
        depth = self.hand_penetration(palm_pose, joints)
        out.penetration_scene = float(np.delete(depth, self._target).max(initial=0.0))
        out.penetration_object = float(depth[self._target])
        too_deep = cfg.max_grasp_penetration is not None and (
            max(out.penetration_object, out.penetration_scene) > cfg.max_grasp_penetration
        )
        if not too_deep:  # contacts of the commanded grasp, placed kinematically: metrics of a gated grasp
            out.tip_contacts, out.q1 = self._grasp_quality(self._target)
        if record:
            out.frames.append(self._frame("commanded grasp"))
        pre_depth = self.hand_penetration(pre, open_q)
        out.pregrasp_penetration = float(pre_depth.max())
        if record:
            out.frames.append(self._frame("pregrasp"))
        if out.pregrasp_penetration > cfg.penetration_tolerance:
            out.failure = PREGRASP_PENETRATION
            return False
        if too_deep:
            out.failure = GRASP_PENETRATION
            return False
        # 2. pregrasp, gravity off
        self.model.opt.gravity[:] = 0.0
        self.reset(pre, open_q)
        # 3. approach with open fingers
        self.phase = "approach"
        self._run(cfg.approach_time, pos_from=pre[:3, 3].copy(), pos_to=palm_pose[:3, 3].copy())
        if record:
            out.frames.append(self._frame("approach"))
        # 4. close to the grasp joints, 5. squeeze a little further
        self.phase = "close"
        self._run(cfg.close_time, ctrl_from=open_q, ctrl_to=joints)
        self._run(cfg.squeeze_time, ctrl_from=joints, ctrl_to=self.squeeze_joints(joints))
        if record:
            out.frames.append(self._frame("squeeze"))
        out.tip_contacts, out.q1 = self._grasp_quality(self._target)
        return True

    def run_lift(self, palm_pose: np.ndarray, joints: np.ndarray, target: int, *, record: bool = False) -> GraspOutcome:
        """Lift test of one grasp: palm pose (4, 4), joints (J,), target object index.

        Recipe: 1. gates (pregrasp penetration > tolerance, grasp penetration > max) → fail;
        2. pregrasp: fingers open, palm backed off along the approach, gravity off; 3. approach;
        4. close; 5. squeeze; 6. gravity on, settle; 7. lift ``lift_distance`` along world +z;
        8. hold. Success: the target's z rose more than ``lift_success_height``.
        """
        cfg = self.config
        out = GraspOutcome()
        self._target = target
        start_z = float(self.scene.objects[target].pose[2, 3])
        try:
            if not self._approach_and_close(palm_pose, joints, out, record):
                return out
            # 6. gravity on, settle
            self.phase = "lift"
            self.model.opt.gravity[:] = self._gravity
            self._run(cfg.settle_time) if cfg.settle_time > 0 else None
            # 7. lift, 8. hold
            low = self.data.mocap_pos[self.mocap].copy()
            self._run(cfg.lift_time, pos_from=low, pos_to=low + np.array([0.0, 0.0, cfg.lift_distance]))
            if cfg.hold_time > 0:
                self._run(cfg.hold_time)
            if record:
                out.frames.append(self._frame("lift"))
            out.lift_height = float(self.data.xpos[self.object_body[target], 2] - start_z)
            out.other_displacement = float(np.delete(self._object_moved, target).max(initial=0.0))
            out.success = bool(out.lift_height > cfg.lift_success_height)
            out.failure = OK if out.success else NOT_LIFTED
            return out
        finally:
            self.model.opt.gravity[:] = self._gravity

    def run_disturbance(
        self, palm_pose: np.ndarray, joints: np.ndarray, target: int = 0, *, record: bool = False
    ) -> GraspOutcome:
        """Disturbance test of one grasp (this sim should hold the target alone, no table).

        Recipe: 1–5 as the lift test, all with gravity off; 6. save the squeezed state;
        7. for each direction u in ±x, ±y, ±z: restore it, push the object's centre of mass with
        force ``disturbance_force_scale · mass · u`` for ``disturbance_time``, record its largest
        translation and rotation; stop early once past a threshold. Success: every direction
        stays below ``disturbance_max_translation`` and ``disturbance_max_rotation_deg``.
        """
        cfg = self.config
        m, d = self.model, self.data
        out = GraspOutcome()
        self._target = target
        body = self.object_body[target]
        try:
            if not self._approach_and_close(palm_pose, joints, out, record):
                return out
            mujoco.mj_getState(m, d, self._state, self._state_spec)
            pos0, quat0 = d.xpos[body].copy(), d.xquat[body].copy()
            force = cfg.disturbance_force_scale * float(self.object_mass[target])
            steps = max(1, round(cfg.disturbance_time / self.dt))
            for k, u in enumerate(DIRECTIONS):
                mujoco.mj_setState(m, d, self._state, self._state_spec)
                mujoco.mj_forward(m, d)
                d.xfrc_applied[:] = 0.0
                d.xfrc_applied[body, :3] = force * u
                worst_t, worst_r = 0.0, 0.0
                self.phase = f"push {DIRECTION_NAMES[k]}"
                for s in range(1, steps + 1):
                    mujoco.mj_step(m, d)
                    if self.on_step is not None:
                        self.on_step(self)
                    if s % CHECK_EVERY == 0 or s == steps:
                        worst_t = max(worst_t, float(np.linalg.norm(d.xpos[body] - pos0)))
                        worst_r = max(worst_r, _quat_angle_deg(d.xquat[body], quat0))
                        if worst_t >= cfg.disturbance_max_translation or worst_r >= cfg.disturbance_max_rotation_deg:
                            break
                out.translation[k], out.rotation_deg[k] = worst_t, worst_r
                if record:
                    out.frames.append(self._frame(f"push {DIRECTION_NAMES[k]}"))
            d.xfrc_applied[:] = 0.0
            moved = out.translation.max() >= cfg.disturbance_max_translation
            rotated = out.rotation_deg.max() >= cfg.disturbance_max_rotation_deg
            out.success = not (moved or rotated)
            out.failure = MOVED if moved else (ROTATED if rotated else OK)
            return out
        finally:
            d.xfrc_applied[:] = 0.0
            m.opt.gravity[:] = self._gravity

    def pregrasp_collision(self, palm_pose: np.ndarray, joints: np.ndarray) -> float:
        """Deepest penetration (m) of the pregrasp (open fingers, backed off) into anything."""
        return float(self.hand_penetration(self.pregrasp_pose(palm_pose), self.open_joints(joints)).max())
