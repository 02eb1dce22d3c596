"""Grasp metrics that need no simulator: Q1 (friction-cone wrench space), diversity, coverage.

Notation: C contacts, E cone edges, G grasps, R reference grasps, J hand DoF.
"""

from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------- Q1
def friction_cone_edges(normals: np.ndarray, friction: float, num_edges: int = 8) -> np.ndarray:
    """Edges of the linearized friction cones.

    Args:
        normals: (C, 3) unit contact normals, pointing INTO the object (the direction the hand pushes).
        friction: μ, the cone's half-angle is atan(μ).
        num_edges: E edges per cone.

    Returns:
        (C, E, 3) unit-normal-force edge vectors ``n + μ (cos θ_e t1 + sin θ_e t2)``.
    """
    n = normals / np.linalg.norm(normals, axis=-1, keepdims=True)
    # any vector not parallel to n gives the tangent basis t1, t2
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1, axis=-1, keepdims=True)
    t2 = np.cross(n, t1)
    theta = 2 * np.pi * np.arange(num_edges) / num_edges  # (E,)
    tangent = np.cos(theta)[None, :, None] * t1[:, None] + np.sin(theta)[None, :, None] * t2[:, None]  # (C, E, 3)
    return n[:, None] + friction * tangent


def q1_metric(
    points: np.ndarray,
    normals: np.ndarray,
    center: np.ndarray,
    *,
    friction: float = 0.5,
    num_edges: int = 8,
    torque_scale: float = 1.0,
) -> float:
    """Ferrari–Canny Q1: radius of the largest origin-centred ball in the grasp wrench space.

    Recipe (Ferrari & Canny 1992; notation: p_i contact point, n_i inward normal, μ friction,
    c object centre, r torque scale, w wrench):

    1. Linearize each friction cone into E edges f_ie = n_i + μ (cos θ_e t1 + sin θ_e t2), each
       carrying a unit normal force (the L1 / "sum of normal forces ≤ 1" grasp wrench space).
    2. Wrenches w_ie = [f_ie, (p_i − c) × f_ie / r] (6,); dividing torques by r (e.g. the object's
       bounding radius) makes the torque part a force at the object's rim, so Q1 is in newtons.
    3. Convex hull of all w_ie (scipy/Qhull). Facets satisfy a·w + b ≤ 0 inside, |a| = 1.
    4. Q1 = min over facets of −b if the origin is strictly inside (all b < 0), else 0.

    Args:
        points: (C, 3) contact positions.
        normals: (C, 3) contact normals pointing into the object.
        center: (3,) torque reference (object COM).
        friction: μ of the cones.
        num_edges: E.
        torque_scale: r (m).

    Returns:
        Q1 ≥ 0 (0 when there are too few contacts to span 6D or the origin is outside the hull).
    """
    from scipy.spatial import ConvexHull, QhullError

    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    if points.shape != normals.shape:
        raise ValueError(
            f"q1_metric: expected points and normals of equal shape (C, 3), got {points.shape} and {normals.shape}"
        )
    if len(points) == 0:
        return 0.0
    # 1. cone edges
    forces = friction_cone_edges(normals, friction, num_edges)  # (C, E, 3)
    # 2. wrenches
    arm = (points - np.asarray(center, dtype=np.float64))[:, None, :]  # (C, 1, 3)
    torques = np.cross(np.broadcast_to(arm, forces.shape), forces) / torque_scale  # (C, E, 3)
    wrenches = np.concatenate([forces, torques], axis=-1).reshape(-1, 6)  # (C*E, 6)
    if len(wrenches) < 7 or np.linalg.matrix_rank(wrenches - wrenches.mean(0), tol=1e-9) < 6:
        return 0.0
    # 3. hull
    try:
        hull = ConvexHull(wrenches)
    except QhullError:
        return 0.0
    # 4. distance from the origin to the closest facet
    offsets = hull.equations[:, -1]
    if (offsets >= 0).any():
        return 0.0
    return float((-offsets).min())


# ---------------------------------------------------------------------------- diversity and coverage
def joint_std(joints: np.ndarray, success: np.ndarray | None = None) -> np.ndarray:
    """Per-joint standard deviation (J,) over the (successful) grasps ``joints`` (G, J), radians.

    Returns NaNs when fewer than two grasps are selected.
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 2:
        raise ValueError(f"joint_std: expected joints of shape (G, J), got {joints.shape}")
    if success is not None:
        success = np.asarray(success, dtype=bool)
        if success.shape != (len(joints),):
            raise ValueError(f"joint_std: expected success of shape ({len(joints)},), got {success.shape}")
        joints = joints[success]
    if len(joints) < 2:
        return np.full(joints.shape[1], np.nan)
    return joints.std(axis=0, ddof=0)


def grasp_distance_matrix(
    pose_a: np.ndarray,
    joints_a: np.ndarray,
    pose_b: np.ndarray,
    joints_b: np.ndarray,
    *,
    translation_tol: float = 0.02,
    rotation_tol: float = np.deg2rad(15.0),
    joint_tol: float = 0.2,
) -> np.ndarray:
    """Distance (A, B) between two sets of grasps, in units of tolerances.

    d(a, b) = max(|t_a − t_b| / translation_tol, angle(R_a, R_b) / rotation_tol,
    max_j |q_a − q_b| / joint_tol): d ≤ 1 means "within 2 cm, 15° and 0.2 rad on every joint"
    with the defaults.

    Args:
        pose_a: (A, 4, 4) palm poses; joints_a: (A, J).
        pose_b: (B, 4, 4) palm poses; joints_b: (B, J).
    """
    pose_a, pose_b = np.asarray(pose_a, np.float64), np.asarray(pose_b, np.float64)
    joints_a, joints_b = np.asarray(joints_a, np.float64), np.asarray(joints_b, np.float64)
    if pose_a.shape[1:] != (4, 4) or pose_b.shape[1:] != (4, 4):
        raise ValueError(
            f"grasp_distance_matrix: expected poses (A, 4, 4), (B, 4, 4), got {pose_a.shape}, {pose_b.shape}"
        )
    if joints_a.shape[1] != joints_b.shape[1] or len(joints_a) != len(pose_a) or len(joints_b) != len(pose_b):
        raise ValueError(
            f"grasp_distance_matrix: expected joints (A, J), (B, J) matching the poses, got {joints_a.shape}, {joints_b.shape}"
        )
    dt = np.linalg.norm(pose_a[:, None, :3, 3] - pose_b[None, :, :3, 3], axis=-1)  # (A, B)
    rel = np.einsum("aji,bjk->abik", pose_a[:, :3, :3], pose_b[:, :3, :3])  # (A, B, 3, 3) R_a^T R_b
    cos = np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    dr = np.arccos(cos)  # (A, B)
    dq = np.abs(joints_a[:, None] - joints_b[None]).max(-1)  # (A, B)
    return np.maximum.reduce([dt / translation_tol, dr / rotation_tol, dq / joint_tol])


def coverage(distance: np.ndarray, threshold: float = 1.0) -> float:
    """Fraction of reference grasps (columns of ``distance`` (G, R)) within ``threshold`` of some
    predicted grasp (rows). 0 when there are no predictions."""
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2:
        raise ValueError(f"coverage: expected a (G, R) distance matrix, got {distance.shape}")
    if distance.shape[1] == 0:
        raise ValueError("coverage: expected at least one reference grasp, got R = 0")
    if distance.shape[0] == 0:
        return 0.0
    return float((distance.min(axis=0) <= threshold).mean())


def minimum_matching_distance(distance: np.ndarray) -> float:
    """Mean over reference grasps (columns of ``distance`` (G, R)) of the distance to the nearest
    predicted grasp (MMD, lower is better; inf when there are no predictions)."""
    distance = np.asarray(distance, dtype=np.float64)
    if distance.ndim != 2 or distance.shape[1] == 0:
        raise ValueError(f"minimum_matching_distance: expected a (G, R>0) distance matrix, got {distance.shape}")
    if distance.shape[0] == 0:
        return float("inf")
    return float(distance.min(axis=0).mean())


def diversity_report(
    pose: np.ndarray,
    joints: np.ndarray,
    success: np.ndarray,
    reference_pose: np.ndarray | None = None,
    reference_joints: np.ndarray | None = None,
    **tolerances,
) -> dict[str, float]:
    """Summary of diversity: mean per-joint std over successful grasps and, with a reference set,
    coverage and MMD of the successful grasps against it (tolerances as in grasp_distance_matrix)."""
    success = np.asarray(success, dtype=bool)
    std = joint_std(joints, success)
    out = {"joint_std_mean": float(np.nanmean(std)) if np.isfinite(std).any() else float("nan")}
    if reference_pose is not None and reference_joints is not None:
        d = grasp_distance_matrix(
            np.asarray(pose)[success], np.asarray(joints)[success], reference_pose, reference_joints, **tolerances
        )
        out["coverage"] = coverage(d)
        out["mmd"] = minimum_matching_distance(d)
    return out
