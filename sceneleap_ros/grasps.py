"""Planner output -> ranked grasps -> ``sceneleap_ros/DexGraspArray`` (and back, for tools and tests).

Shapes: G grasps, J hand joints, N points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneleap_ros.messages import MessageFactory, header

PREGRASP_DISTANCE = 0.10  # m, as the lift protocol's pregrasp (sceneleap_core.sim.SimConfig)
PENETRATION_SCALE = 0.005  # m: a grasp whose hand holds observed points 5 mm deep scores 1/e
SCORE_POINTS = 2048  # observed points used for scoring (subsampled with a fixed seed)


@dataclass
class RankedGrasps:
    """Grasps for one cloud, best first (numpy, in the output frame).

    Attributes:
        palm_pose: (G, 4, 4) pose of the palm frame.
        joints: (G, J) joint angles.
        pregrasp_pose: (G, 4, 4) palm backed off along the approach axis.
        pregrasp_joints: (G, J) the hand at the start of the approach (the planner's, else open).
        scores: (G,) in [0, 1], higher is better.
        target: (G, 3) the observed point each grasp aims at.
        ids: (G,) index of each grasp in the planner's output.
    """

    palm_pose: np.ndarray
    joints: np.ndarray
    pregrasp_pose: np.ndarray
    pregrasp_joints: np.ndarray
    scores: np.ndarray
    target: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def transformed(self, transform: np.ndarray) -> RankedGrasps:
        """The same grasps in another frame: ``transform`` (4, 4) = new <- current."""
        t = np.asarray(transform, dtype=np.float64)
        target = self.target @ t[:3, :3].T + t[:3, 3]
        return RankedGrasps(t @ self.palm_pose, self.joints, t @ self.pregrasp_pose, self.pregrasp_joints,
                            self.scores, target, self.ids)  # fmt: skip


@torch.no_grad()
def score_grasps(hand, palm_pose: torch.Tensor, joints: torch.Tensor, points: np.ndarray, seed: int = 0) -> np.ndarray:
    """Fallback score (G,) in (0, 1] for grasps the planner did not rank: ``exp(-d / 5 mm)`` with d
    the deepest penetration of the observed points into the hand's collision boxes (FK at the
    grasp): a grasp through the observed surface scores low. Not a success probability.

    Args:
        palm_pose: (G, 4, 4), joints: (G, J) in the frame of ``points`` (N, 3).
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) > SCORE_POINTS:
        pts = pts[np.random.default_rng(seed).choice(len(pts), SCORE_POINTS, replace=False)]
    state = hand(joints.to(hand.dtype), palm_pose.to(hand.dtype), validate=False)
    cloud = torch.as_tensor(pts, dtype=hand.dtype, device=hand.device).expand(len(joints), -1, -1)  # (G, N, 3)
    depth = hand.penetration_depth(state, cloud, chunk=512).amax(dim=1)  # (G,)
    return torch.exp(-depth / PENETRATION_SCALE).double().cpu().numpy()


def message_scores(grasp_set) -> np.ndarray | None:
    """The planner's ranking score of one cloud's grasps as ``DexGrasp.score`` in [0, 1], order
    kept: the learned ranker's lift probability (sigmoid of its logit) when it ranked them,
    ``exp(-energy)`` (a monotone map, not a probability) when the energy did; None when unranked."""
    if grasp_set.scores is None or grasp_set.score_kind not in ("ranker", "energy"):
        return None
    s = grasp_set.scores[0].detach().double().cpu()
    return (torch.sigmoid(s) if grasp_set.score_kind == "ranker" else torch.exp(s.clamp_max(0.0))).numpy()


def rank_grasps(grasp_set, hand, points: np.ndarray, *, score_threshold: float = 0.0,
                pregrasp_distance: float = PREGRASP_DISTANCE) -> RankedGrasps:  # fmt: skip
    """A :class:`sceneleap_core.infer.GraspSet` of one cloud (1, G, ...) -> grasps best first,
    those scoring below ``score_threshold`` dropped. The planner's own ranking (its learned ranker,
    else -energy, :func:`message_scores`; diverse top-k, so a near-duplicate of a better grasp may
    come after a lower-scored one) is kept; grasps it did not rank are scored by
    :func:`score_grasps` and sorted. The pregrasp is the planner's (``pregrasp_pose`` /
    ``pregrasp_joints``, the start of the approach its filter checked) when it made one, else the
    palm backed off ``pregrasp_distance`` along the approach axis with the hand open."""
    pose = grasp_set.palm_pose[0].detach().to(hand.device)  # (G, 4, 4)
    joints = grasp_set.joints[0].detach().to(hand.device)  # (G, J)
    scores = message_scores(grasp_set)
    if scores is None:
        scores = score_grasps(hand, pose, joints, points)
        order = np.argsort(-scores, kind="stable")
    else:  # the planner's order: by score, diverse first (a near-duplicate of a better grasp waits)
        order = np.arange(len(scores))
    pose_np, joints_np = pose.double().cpu().numpy(), joints.double().cpu().numpy()
    if grasp_set.pregrasp_pose is not None:  # the planner's, whose approach sweep its filter checked
        pre = grasp_set.pregrasp_pose[0].detach().double().cpu().numpy()
    else:
        approach = pose_np[:, :3, :3] @ hand.approach_axis.double().cpu().numpy()  # (G, 3)
        pre = pose_np.copy()
        pre[:, :3, 3] -= pregrasp_distance * approach
    if grasp_set.anchors is not None:
        target = grasp_set.anchors[0].detach().double().cpu().numpy()
    else:
        target = pose_np[:, :3, 3].copy()
    order = order[scores[order] >= score_threshold]
    if grasp_set.pregrasp_joints is not None:
        open_pose = grasp_set.pregrasp_joints[0].detach().double().cpu().numpy()
    else:
        open_pose = np.broadcast_to(hand.open_pose.double().cpu().numpy(), joints_np.shape)
    return RankedGrasps(pose_np[order], joints_np[order], pre[order], np.array(open_pose[order]), scores[order],
                        target[order], order.astype(np.int64))  # fmt: skip


def matrix_to_quaternion_np(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) quaternions (x, y, z, w), w >= 0."""
    from sceneleap_core.geometry.rotations import matrix_to_quaternion

    return matrix_to_quaternion(torch.as_tensor(np.asarray(rot, dtype=np.float64))).numpy()


def quaternion_to_matrix_np(quat: np.ndarray) -> np.ndarray:
    from sceneleap_core.geometry.rotations import quaternion_to_matrix

    return quaternion_to_matrix(torch.as_tensor(np.asarray(quat, dtype=np.float64))).numpy()


def pose_msg(factory: MessageFactory, transform: np.ndarray, quat: np.ndarray | None = None):
    """(4, 4) -> ``geometry_msgs/Pose``."""
    q = matrix_to_quaternion_np(transform[:3, :3]) if quat is None else quat
    t = transform[:3, 3]
    return factory.new(
        "geometry_msgs/msg/Pose",
        position=factory.new("geometry_msgs/msg/Point", x=float(t[0]), y=float(t[1]), z=float(t[2])),
        orientation=factory.new("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )  # fmt: skip


def pose_to_matrix(pose) -> np.ndarray:
    """``geometry_msgs/Pose`` -> (4, 4)."""
    out = np.eye(4)
    o = pose.orientation
    out[:3, :3] = quaternion_to_matrix_np(np.array([o.x, o.y, o.z, o.w]))
    out[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return out


def grasps_to_msg(factory: MessageFactory, grasps: RankedGrasps, *, frame_id: str, stamp: tuple[int, int],
                  hand_name: str, joint_names: list[str], planning_time: float):  # fmt: skip
    """:class:`RankedGrasps` -> ``sceneleap_ros/msg/DexGraspArray`` (order kept: best first)."""
    if grasps.joints.shape[1:] != (len(joint_names),):
        raise ValueError(f"joints: expected (G, {len(joint_names)}) for the joint names, got {grasps.joints.shape}")
    quat = matrix_to_quaternion_np(grasps.palm_pose[:, :3, :3]) if len(grasps) else np.zeros((0, 4))
    pre_quat = matrix_to_quaternion_np(grasps.pregrasp_pose[:, :3, :3]) if len(grasps) else np.zeros((0, 4))
    items = []
    for i in range(len(grasps)):
        t = grasps.target[i]
        items.append(factory.new(
            "sceneleap_ros/msg/DexGrasp",
            id=int(grasps.ids[i]),
            palm_pose=pose_msg(factory, grasps.palm_pose[i], quat[i]),
            joint_positions=factory.float_array(grasps.joints[i]),
            pregrasp_pose=pose_msg(factory, grasps.pregrasp_pose[i], pre_quat[i]),
            pregrasp_joint_positions=factory.float_array(grasps.pregrasp_joints[i]),
            score=float(grasps.scores[i]),
            target_point=factory.new("geometry_msgs/msg/Point", x=float(t[0]), y=float(t[1]), z=float(t[2])),
        ))  # fmt: skip
    return factory.new(
        "sceneleap_ros/msg/DexGraspArray", header=header(factory, frame_id, stamp), hand_name=str(hand_name),
        joint_names=[str(n) for n in joint_names], grasps=items, planning_time=float(planning_time),
    )  # fmt: skip


def msg_to_grasps(msg) -> RankedGrasps:
    """``DexGraspArray`` -> :class:`RankedGrasps` (for tools and tests)."""
    g, j = len(msg.grasps), len(msg.joint_names)
    out = RankedGrasps(np.zeros((g, 4, 4)), np.zeros((g, j)), np.zeros((g, 4, 4)), np.zeros((g, j)), np.zeros(g),
                       np.zeros((g, 3)), np.zeros(g, dtype=np.int64))  # fmt: skip
    for i, item in enumerate(msg.grasps):
        out.palm_pose[i], out.pregrasp_pose[i] = pose_to_matrix(item.palm_pose), pose_to_matrix(item.pregrasp_pose)
        out.joints[i] = np.asarray(item.joint_positions, dtype=np.float64)
        out.pregrasp_joints[i] = np.asarray(item.pregrasp_joint_positions, dtype=np.float64)
        out.scores[i], out.ids[i] = item.score, item.id
        out.target[i] = [item.target_point.x, item.target_point.y, item.target_point.z]
    return out
