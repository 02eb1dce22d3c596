"""Q1, diversity and coverage on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sceneleap_core.eval import (
    coverage,
    diversity_report,
    friction_cone_edges,
    grasp_distance_matrix,
    joint_std,
    minimum_matching_distance,
    q1_metric,
)

# six contacts on a unit-radius sphere, one per face direction, normals pointing inward
AXES = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=float)


def test_cone_edges_have_the_friction_angle():
    edges = friction_cone_edges(np.array([[0.0, 0.0, 1.0]]), 0.5, 8)
    assert edges.shape == (1, 8, 3)
    np.testing.assert_allclose(edges[0, :, 2], 1.0)
    np.testing.assert_allclose(np.linalg.norm(edges[0, :, :2], axis=-1), 0.5)


def test_q1_is_zero_without_force_closure():
    assert q1_metric(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(3)) == 0.0
    # two antipodal contacts cannot resist a torque about their common axis
    assert q1_metric(AXES[:2], -AXES[:2], np.zeros(3), friction=0.5) == 0.0
    # all contacts on one side: the origin is outside the wrench hull
    pts = np.array([[1, 0, 0], [1, 0.1, 0], [1, 0, 0.1], [1, -0.1, 0]], dtype=float)
    assert q1_metric(pts, np.tile([-1.0, 0, 0], (4, 1)), np.zeros(3), friction=0.3) == 0.0


def test_q1_positive_for_enclosing_contacts_and_grows_with_friction():
    q_low = q1_metric(AXES, -AXES, np.zeros(3), friction=0.2, torque_scale=1.0)
    q_high = q1_metric(AXES, -AXES, np.zeros(3), friction=0.8, torque_scale=1.0)
    assert 0.0 < q_low < q_high
    # frictionless contacts on a sphere give no torque at all: not force closure
    assert q1_metric(AXES, -AXES, np.zeros(3), friction=0.0) == 0.0
    # translating the whole grasp with its centre changes nothing
    np.testing.assert_allclose(q1_metric(AXES + 5.0, -AXES, np.full(3, 5.0), friction=0.2), q_low, rtol=1e-9)
    with pytest.raises(ValueError, match="expected points and normals of equal shape"):
        q1_metric(AXES, AXES[:3], np.zeros(3))


def test_joint_std_coverage_and_mmd():
    joints = np.array([[0.0] * 16, [1.0] * 16, [5.0] * 16])
    np.testing.assert_allclose(joint_std(joints, np.array([True, True, False])), 0.5)
    assert np.isnan(joint_std(joints, np.array([True, False, False]))).all()
    eye = np.tile(np.eye(4), (2, 1, 1))
    moved = eye.copy()
    moved[1, 0, 3] = 0.1  # 10 cm away
    d = grasp_distance_matrix(eye[:1], joints[:1], moved, np.zeros((2, 16)))  # (1, 2)
    np.testing.assert_allclose(d, [[0.0, 5.0]])  # 0.1 m / 0.02 m tolerance
    assert coverage(d) == 0.5
    assert minimum_matching_distance(d) == 2.5
    assert coverage(np.zeros((0, 2))) == 0.0
    rot = np.eye(4)
    rot[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # 90 degrees about x
    np.testing.assert_allclose(grasp_distance_matrix(eye[:1], joints[:1], rot[None], joints[:1]), [[6.0]])
    report = diversity_report(eye, joints[:2], np.array([True, True]), moved, np.zeros((2, 16)))
    assert set(report) == {"joint_std_mean", "coverage", "mmd"}
