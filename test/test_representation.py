import pytest
import torch
from conftest import random_joints, random_poses

from sceneleap_core.hand import (
    GraspNormalizer,
    grasp_vector_size,
    pos_quat_to_pose,
    pose_to_pos_quat,
    pose_to_vector,
    vector_to_pose,
)


def test_vector_layout_and_round_trip(hand64):
    pose, joints = random_poses(32, seed=1), random_joints(hand64, 32, seed=2)
    vec = pose_to_vector(pose, joints)
    assert vec.shape == (32, grasp_vector_size(16)) == (32, 25)
    assert torch.equal(vec[:, :3], pose[:, :3, 3]) and torch.equal(vec[:, 3:19], joints)
    assert torch.equal(vec[:, 19:22], pose[:, :3, 0]) and torch.equal(vec[:, 22:25], pose[:, :3, 1])
    pose2, joints2 = vector_to_pose(vec, 16)
    assert torch.allclose(pose2, pose, atol=1e-12) and torch.equal(joints2, joints)


def test_pos_quat_round_trip():
    pose = random_poses(32, seed=3)
    pos, quat = pose_to_pos_quat(pose)
    assert quat.shape == (32, 4) and torch.allclose(quat.norm(dim=-1), torch.ones(32, dtype=torch.float64))
    assert torch.allclose(pos_quat_to_pose(pos, quat), pose, atol=1e-12)


def test_normalizer_fit_maps_data_into_unit_box_and_round_trips(tmp_path, hand64):
    vec = pose_to_vector(random_poses(200, seed=4), random_joints(hand64, 200, seed=5)).float()
    norm = GraspNormalizer.fit(vec)
    z = norm.normalize(vec)
    assert z.min() >= -1.0 and z.max() <= 1.0
    assert z[:, :19].abs().max() > 0.85  # the fitted range is tight (5 % margin), not arbitrary
    assert torch.allclose(norm.denormalize(z), vec, atol=1e-5)
    norm.save(tmp_path / "stats.json")
    loaded = GraspNormalizer.load(tmp_path / "stats.json")
    assert torch.equal(loaded.lower, norm.lower) and torch.equal(loaded.upper, norm.upper)
    again = GraspNormalizer(torch.zeros(25), torch.ones(25))
    again.load_state_dict(norm.state_dict())
    assert torch.equal(again.upper, norm.upper)


def test_normalizer_defaults_from_hand_limits(hand):
    norm = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper)
    vec = torch.cat([torch.zeros(1, 3), hand.joint_upper[None], torch.ones(1, 6)], dim=-1)
    assert torch.allclose(norm.normalize(vec)[0, 3:], torch.ones(22))


def test_normalizer_errors(tmp_path):
    with pytest.raises(ValueError, match="upper must exceed lower"):
        GraspNormalizer(torch.zeros(3), torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="expected last dim 25"):
        GraspNormalizer(torch.zeros(25), torch.ones(25)).normalize(torch.zeros(2, 24))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read"):
        GraspNormalizer.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="expected last dim 25"):
        vector_to_pose(torch.zeros(2, 24), 16)
