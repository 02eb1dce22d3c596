import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import DATA, random_joints, random_poses

from sceneleap_core.geometry.box_sdf import box_signed_distance
from sceneleap_core.hand import HandDescription, HandModel


def test_fk_at_zero_matches_reference_oracle(hand64):
    """Link origins at q = 0 from the public LEAP descriptions, within 0.1 mm."""
    oracle = json.loads((DATA / "leap_fk_zero_config.json").read_text())
    state = hand64(torch.zeros(1, 16, dtype=torch.float64))
    checked = 0
    for name, ref in oracle.items():
        if name == "base":  # the mounting frame is not part of the grasp model (root = palm_lower)
            continue
        got = state.link_trans[0, hand64.link_names.index(name)].numpy()
        np.testing.assert_allclose(got, ref["pos_in_palm_lower"], atol=1e-4, err_msg=name)
        checked += 1
    assert checked == hand64.num_links == 21


def test_fk_random_poses_match_pytorch_kinematics(hand64):
    pk = pytest.importorskip("pytorch_kinematics")
    chain = pk.build_chain_from_urdf(hand64.description.urdf_path.read_bytes()).to(dtype=torch.float64)
    names = chain.get_joint_parameter_names()
    joints = random_joints(hand64, 64, seed=5)
    pose = random_poses(64, seed=6)
    ours = hand64(joints, pose)
    theirs = chain.forward_kinematics(joints[:, [hand64.joint_names.index(n) for n in names]])
    for i, link in enumerate(hand64.link_names):
        ref = pose @ theirs[link].get_matrix()
        assert torch.allclose(ours.link_trans[:, i], ref[:, :3, 3], atol=1e-5), link
        assert torch.allclose(ours.link_rot[:, i], ref[:, :3, :3], atol=1e-6), link


def test_float32_and_float64_agree(hand, hand64):
    joints = random_joints(hand64, 16, seed=1)
    s32 = hand(joints.float())
    s64 = hand64(joints)
    assert s32.link_trans.dtype == torch.float32
    assert torch.allclose(s32.link_trans.double(), s64.link_trans, atol=1e-6)


def test_surface_points_lie_on_their_link_boxes(hand64):
    joints, pose = random_joints(hand64, 4, seed=2), random_poses(4, seed=3)
    state = hand64(joints, pose)
    pts = hand64.surface_points(state)  # (B, P, 3)
    assert pts.shape == (4, len(hand64.surface_local), 3)
    dist = hand64.box_distances(state, pts)  # (B, P, K)
    own = hand64.box_link[None, :] == hand64.surface_link[:, None]  # (P, K)
    own_min = dist.abs().masked_fill(~own, float("inf")).min(dim=-1).values
    assert own_min.max() < 1e-9
    # every link carries points
    assert set(hand64.surface_link.tolist()) == set(hand64.box_link.tolist())


def test_pad_contact_normals_face_the_approach_direction_at_zero(hand64):
    state = hand64(torch.zeros(1, 16, dtype=torch.float64))
    pts, normals = hand64.contact_candidates(state)
    fingers = hand64.contact_link != hand64.link_names.index("thumb_fingertip")
    approach = hand64.approach_axis
    assert torch.allclose(normals[0, fingers], approach.expand(int(fingers.sum()), 3), atol=1e-6)
    # candidates lie on the pad surfaces
    assert hand64.signed_distance(state, pts).abs().max() < 1e-9


def test_signed_distance_equals_brute_force_min_over_boxes(hand64):
    joints, pose = random_joints(hand64, 2, seed=7), random_poses(2, seed=8)
    state = hand64(joints, pose)
    g = torch.Generator().manual_seed(9)
    centre = state.link_trans.mean(dim=1, keepdim=True)
    pts = centre + 0.08 * (torch.rand(2, 300, 3, generator=g, dtype=torch.float64) - 0.5)
    sdf = hand64.signed_distance(state, pts)
    rot, trans = hand64.box_poses(state)
    brute = torch.full((2, 300), float("inf"), dtype=torch.float64)
    for b in range(2):
        for k in range(len(hand64.box_names)):
            local = (pts[b] - trans[b, k]) @ rot[b, k]  # R^T (p - t)
            brute[b] = torch.minimum(brute[b], box_signed_distance(local, hand64.box_half[k]))
    assert torch.allclose(sdf, brute, atol=1e-12)
    assert (sdf < 0).any() and (sdf > 0).any()
    assert torch.allclose(hand64.signed_distance(state, pts, chunk=64), sdf)
    assert torch.allclose(hand64.penetration_depth(state, pts), (-sdf).clamp_min(0))


def test_gradients_finite_and_match_finite_differences(hand64):
    joints = random_joints(hand64, 2, seed=11).requires_grad_(True)
    pose = random_poses(2, seed=12)
    pts = hand64(joints.detach(), pose).link_trans.mean(1, keepdim=True) + 0.05 * torch.randn(
        2, 20, 3, dtype=torch.float64
    )

    def energy(q):
        state = hand64(q, pose, validate=False)
        return (
            hand64.surface_points(state).square().sum()
            + hand64.signed_distance(state, pts).sum()
            + 10 * hand64.self_penetration(state).sum()
        )

    assert torch.autograd.gradcheck(energy, (joints,), eps=1e-6, atol=1e-5)
    energy(joints).backward()
    assert torch.isfinite(joints.grad).all()


def test_self_penetration_zero_open_positive_when_fingers_cross(hand):
    assert hand.self_penetration(hand(torch.zeros(1, 16))).item() == 0.0
    assert hand.self_penetration(hand(hand.open_pose[None])).item() == 0.0
    crossed = torch.zeros(1, 16)
    crossed[0, 0], crossed[0, 4] = -0.9, 0.9  # index and middle abducted into each other
    assert hand.self_penetration(hand(crossed)).item() > 1e-3


def test_joint_limit_violation_and_contact_distance(hand64):
    q = torch.zeros(2, 16, dtype=torch.float64)
    q[1, 1] = hand64.joint_upper[1] + 0.2
    q[1, 12] = hand64.joint_lower[12] - 0.1
    assert torch.allclose(hand64.joint_limit_violation(q), torch.tensor([0.0, 0.3], dtype=torch.float64))
    state = hand64(torch.zeros(1, 16, dtype=torch.float64))
    pts, normals = hand64.contact_candidates(state)
    cloud = pts + 0.01 * normals  # 1 cm out along each pad normal
    assert torch.allclose(
        hand64.contact_distance(state, cloud), torch.full((1, len(hand64.contact_local)), 0.01, dtype=torch.float64)
    )


def test_bad_inputs_raise_clear_errors(hand):
    with pytest.raises(ValueError, match=r"expected shape \(B, 16\), got \(2, 15\)"):
        hand(torch.zeros(2, 15))
    nan = torch.zeros(2, 16)
    nan[1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite.*batch 1, joint j3"):
        hand(nan)
    out = torch.zeros(1, 16)
    out[0, 5] = 3.0
    with pytest.raises(ValueError, match=r"j5 of grasp 0 is \+3.0000 rad, outside its limits"):
        hand(out)
    with pytest.raises(ValueError, match="palm_pose"):
        hand(torch.zeros(2, 16), torch.eye(4).expand(3, 4, 4))
    bad_pose = torch.eye(4).repeat(1, 1, 1)
    bad_pose[0, 0, 3] = float("inf")
    with pytest.raises(ValueError, match="palm_pose: contains non-finite"):
        hand(torch.zeros(1, 16), bad_pose)
    with pytest.raises(ValueError, match=r"points: expected shape \(1, N, 3\)"):
        hand.signed_distance(hand(torch.zeros(1, 16)), torch.zeros(1, 5, 2))
    # optimization loops may leave the limits on purpose
    assert torch.isfinite(hand(out, validate=False).link_trans).all()


def test_description_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="bundled hands"):
        HandDescription.load("no_such_hand")
    src = HandDescription.load().urdf_path
    (tmp_path / "h.urdf").write_text(src.read_text())
    (tmp_path / "h.yaml").write_text(
        "name: h\nurdf: h.urdf\nroot_link: palm_lower\njoint_order: [j0, j1]\n"
        "closing_direction: [0, 1]\nopen_pose: [0, 0]\napproach_axis: [0, 0, -1]\n"
    )
    with pytest.raises(ValueError, match="joint_order must list each of the URDF's 16 movable joints"):
        HandDescription.load(tmp_path / "h.yaml")


def test_model_moves_with_to_and_builds_from_description():
    hand = HandModel(HandDescription.load(), surface_points=256).to(torch.float64)
    assert hand.dtype == torch.float64 and hand.box_half.dtype == torch.float64
    state = hand(torch.zeros(3, 16, dtype=torch.float64))
    assert hand.surface_points(state).dtype == torch.float64
    assert abs(len(hand.surface_local) - 256) <= 8


def test_open_joints_unflex_closing_joints_only_and_agree_with_the_simulator(hand64):
    """The open hand of a grasp: flexion joints no further closed than the open pose, sideways
    joints kept, any batch shape; the same rule as the evaluator's (numpy) GraspSim.open_joints."""
    from sceneleap_core.sim.simulator import GraspSim

    q = random_joints(hand64, 12, seed=3).reshape(3, 4, hand64.dof)
    opened = hand64.open_joints(q)
    closing, open_pose = hand64.joint_closing, hand64.open_pose
    assert opened.shape == q.shape
    assert torch.equal(opened[..., closing == 0], q[..., closing == 0])
    torch.testing.assert_close(opened[..., closing > 0], torch.minimum(q, open_pose)[..., closing > 0])
    assert (opened[..., closing > 0] < q[..., closing > 0]).any()  # some grasps were more closed
    sim = SimpleNamespace(desc=hand64.description, closing=hand64.description.closing_direction)
    for row in q.reshape(-1, hand64.dof):  # GraspSim.open_joints reads only these two fields
        np.testing.assert_allclose(hand64.open_joints(row).numpy(), GraspSim.open_joints(sim, row.numpy()))
    flipped = hand64.joint_closing.clone()
    flipped[1] = -1.0  # an extension joint opens the other way
    hand64.joint_closing = flipped
    try:
        assert torch.equal(hand64.open_joints(q)[..., 1], torch.maximum(q[..., 1], open_pose[1]))
    finally:
        hand64.joint_closing = closing
