"""Top grasps -> ``visualization_msgs/MarkerArray``: the hand's collision boxes placed by forward
kinematics, coloured by score, one namespace per rank (``grasp_0`` is the best) so RViz can toggle
ranks, plus a text marker with the score above each hand.

The array starts with a DELETEALL marker, so hands of the previous cloud never linger.

Shapes: G grasps, J joints, K collision boxes.
"""

from __future__ import annotations

import numpy as np
import torch

from sceneleap_ros.grasps import RankedGrasps, matrix_to_quaternion_np, pose_msg
from sceneleap_ros.messages import MessageFactory, header

# visualization_msgs/Marker constants
CUBE, TEXT_VIEW_FACING = 1, 9
ADD, DELETEALL = 0, 3
TEXT_HEIGHT = 0.02  # m
TEXT_OFFSET = 0.12  # m above the palm, along the output frame's z


def score_colour(score: float) -> tuple[float, float, float]:
    """Score in [0, 1] -> RGB from red (0) through yellow (0.5) to green (1)."""
    s = float(np.clip(score, 0.0, 1.0))
    return (min(1.0, 2.0 * (1.0 - s)), min(1.0, 2.0 * s), 0.0)


@torch.no_grad()
def hand_boxes(hand, palm_pose: np.ndarray, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Collision boxes of G hands from FK: rotations (G, K, 3, 3), centres (G, K, 3), sizes (K, 3)
    (full edge lengths)."""
    pose = torch.as_tensor(np.asarray(palm_pose), dtype=hand.dtype, device=hand.device)
    q = torch.as_tensor(np.asarray(joints), dtype=hand.dtype, device=hand.device)
    rot, centre = hand.box_poses(hand(q, pose, validate=False))
    size = 2.0 * hand.box_half
    return rot.double().cpu().numpy(), centre.double().cpu().numpy(), size.double().cpu().numpy()


def grasp_markers(factory: MessageFactory, hand, grasps: RankedGrasps, *, frame_id: str, stamp: tuple[int, int],
                  top_k: int = 5, alpha: float = 0.6):  # fmt: skip
    """The best ``top_k`` grasps as a MarkerArray (DELETEALL first)."""
    hdr = header(factory, frame_id, stamp)
    markers = [factory.new("visualization_msgs/msg/Marker", header=hdr, ns="", id=0, action=DELETEALL)]
    k = min(int(top_k), len(grasps))
    if k > 0:
        rot, centre, size = hand_boxes(hand, grasps.palm_pose[:k], grasps.joints[:k])
        quat = matrix_to_quaternion_np(rot)  # (G, K, 4)
        for rank in range(k):
            r, g, b = score_colour(grasps.scores[rank])
            colour = factory.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=float(alpha))
            ns = f"grasp_{rank}"
            for i in range(centre.shape[1]):
                tf = np.eye(4)
                tf[:3, 3] = centre[rank, i]
                markers.append(factory.new(
                    "visualization_msgs/msg/Marker", header=hdr, ns=ns, id=i, type=CUBE, action=ADD,
                    pose=pose_msg(factory, tf, quat[rank, i]),
                    scale=factory.new("geometry_msgs/msg/Vector3", x=float(size[i, 0]), y=float(size[i, 1]),
                                      z=float(size[i, 2])),
                    color=colour,
                ))  # fmt: skip
            text_tf = np.eye(4)
            text_tf[:3, 3] = grasps.palm_pose[rank, :3, 3] + [0.0, 0.0, TEXT_OFFSET]
            markers.append(factory.new(
                "visualization_msgs/msg/Marker", header=hdr, ns=ns, id=centre.shape[1], type=TEXT_VIEW_FACING,
                action=ADD, pose=pose_msg(factory, text_tf, np.array([0.0, 0.0, 0.0, 1.0])),
                scale=factory.new("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=TEXT_HEIGHT),
                color=factory.new("std_msgs/msg/ColorRGBA", r=1.0, g=1.0, b=1.0, a=1.0),
                text=f"#{rank} {grasps.scores[rank]:.2f}",
            ))  # fmt: skip
    return factory.new("visualization_msgs/msg/MarkerArray", markers=markers)
