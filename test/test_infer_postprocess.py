"""Post-processing: collision rejection (cloud, table, approach sweep), refinement, ranking, diverse top-k,
and the planner's whole plan() path."""

import copy

import numpy as np
import pytest
import torch
from _infer_common import hand as _hand
from _infer_common import tabletop, tiny_planner

from sceneleap_core.infer.postprocess import (
    REASONS,
    PostConfig,
    check_chunk,
    collision_check,
    diverse_topk,
    grasp_energy,
    reason_counts,
    refine,
)
from sceneleap_core.infer.preprocess import SupportPlane

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TABLE = SupportPlane(np.array([0.0, 0.0, 1.0]), -0.5, 1.0)


def _pose(x, y, z):
    p = torch.eye(4)
    p[:3, 3] = torch.tensor([x, y, z])
    return p


def test_collision_check_names_table_cloud_and_sweep_collisions():
    hand = _hand()
    pts, is_box = tabletop(n_table=600, n_box=400)
    cube = torch.tensor(pts[is_box], dtype=torch.float32)
    # the open hand spans z in [-0.074, 0.024] about an unrotated palm (approach -z, down)
    free = _pose(-0.15, 0.0, -0.5 + 0.074 + 0.05)  # 5 cm above the table, beside the cube
    sunk = _pose(-0.15, 0.0, -0.5 + 0.074 - 0.03)  # 3 cm into the table
    inside = _pose(0.059, -0.008, -0.459)  # the palm box around the cube's centre
    pose = torch.stack([free, sunk, inside])
    joints = hand.open_pose[None].float().expand(3, -1)
    out = collision_check(hand, pose, joints, cube, TABLE)
    assert out["reason"].tolist() == [-1, REASONS.index("table"), REASONS.index("table")], "table reported first"
    assert out["keep"].tolist() == [True, False, False]
    assert out["table"][0] > 0.045 and out["table"][1] < -0.025
    out = collision_check(hand, pose, joints, cube, None)  # without a plane: the cube alone
    assert out["reason"].tolist() == [-1, -1, REASONS.index("cloud")]
    assert reason_counts(out["reason"]) == {"nonfinite": 0, "table": 0, "cloud": 1, "sweep": 0}
    # the pregrasp is the grasp backed off 10 cm against the approach axis (up here)
    assert torch.allclose(out["pregrasp_pose"][0, :3, 3], free[:3, 3] + torch.tensor([0, 0, 0.10]), atol=1e-6)
    # a shelf 3 cm above the hand at the grasp: free at the grasp, hit on the way in
    g = np.stack(np.meshgrid(np.linspace(-0.3, 0.1, 60), np.linspace(-0.2, 0.2, 60)), -1).reshape(-1, 2)
    shelf = torch.tensor(np.c_[g, np.full(len(g), -0.376 + 0.024 + 0.03)], dtype=torch.float32)
    out = collision_check(hand, free[None], joints[:1], shelf, TABLE)
    assert out["reason"].tolist() == [REASONS.index("sweep")] and out["hits"][0, -1] == 0
    assert out["hits"][0, :-1].max() >= 3
    off = collision_check(hand, free[None], joints[:1], shelf, TABLE, PostConfig(filter=False))
    assert off["keep"].all()
    bad = collision_check(hand, torch.full((1, 4, 4), float("nan")), joints[:1], shelf, None)
    assert bad["reason"].tolist() == [REASONS.index("nonfinite")]


def test_collision_check_gives_the_same_verdicts_whatever_its_chunk():
    """The chunk only batches the work: automatic (64 on the CPU, a GPU's memory bound), one grasp
    at a time, or all at once give the same verdicts, hits and clearances."""
    hand = _hand()
    pts, _ = tabletop(n_table=600, n_box=400)
    cloud = torch.tensor(pts, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    pose = torch.eye(4).repeat(7, 1, 1)
    pose[:, :3, 3] = torch.rand(7, 3, generator=gen) * torch.tensor([0.3, 0.3, 0.12]) + torch.tensor([-0.1, -0.15, -0.43])
    joints = hand.open_pose[None].float().expand(7, -1)
    ref = collision_check(hand, pose, joints, cloud, TABLE)
    assert len(set(ref["reason"].tolist())) > 1, "a mix of kept and rejected grasps"
    for chunk in (1, 3, 100):
        out = collision_check(hand, pose, joints, cloud, TABLE, PostConfig(chunk=chunk))
        assert torch.equal(out["reason"], ref["reason"]) and torch.equal(out["hits"], ref["hits"])
        torch.testing.assert_close(out["table"], ref["table"])
    assert check_chunk(0, 10, 71, 2048, "cpu") == 64 and check_chunk(5, 10, 71, 2048, "cuda") == 5
    assert check_chunk(0, 10, 71, 2048, "cuda") == 184 and check_chunk(0, 10, 71, 0, "cuda") == 2**28


def test_refinement_lowers_the_energy_of_a_penetrating_grasp():
    hand = _hand()
    pts, _ = tabletop(n_table=400, n_box=300)
    cloud = torch.tensor(pts, dtype=torch.float32)
    # open hand, palm 1.5 cm into the cube's top face
    pose = _pose(0.059, -0.008, -0.44 + 0.035 - 0.015)[None]
    joints = hand.open_pose[None].float()
    cfg = PostConfig(refine_steps=15, refine_lr=2e-3)
    before = grasp_energy(hand, pose, joints, cloud, TABLE, cfg)
    assert before["penetration"] > 0
    p2, q2 = refine(hand, pose, joints, cloud, TABLE, cfg)
    after = grasp_energy(hand, p2, q2, cloud, TABLE, cfg)
    assert after["total"] < 0.7 * before["total"], (before["total"], after["total"])
    rot = p2[0, :3, :3].double()
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=rot.dtype), atol=1e-5), "still a rotation"
    assert (q2 >= hand.joint_lower - 1e-6).all() and (q2 <= hand.joint_upper + 1e-6).all()
    same = refine(hand, pose, joints, cloud, TABLE, PostConfig())
    assert torch.equal(same[0], pose), "refine_steps=0 is off"


def test_diverse_topk_skips_near_duplicates_and_fills_up_when_short():
    poses = torch.stack([_pose(0, 0, 0), _pose(0.001, 0, 0), _pose(0.002, 0, 0), _pose(0.2, 0, 0)])
    scores = torch.tensor([4.0, 3.0, 2.0, 1.0])
    assert diverse_topk(poses, scores, 2, 0.02).tolist() == [0, 3]
    assert diverse_topk(poses, scores, 3, 0.02).tolist() == [0, 3, 1], "filled by score"
    assert diverse_topk(poses, scores, 2, 0.0).tolist() == [0, 1]
    flipped = poses.clone()
    flipped[1, :3, :3] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))  # same place, turned by pi
    assert diverse_topk(flipped, scores, 2, 0.02).tolist() == [0, 1], "rotations count too"


def test_plan_returns_ranked_filtered_grasps_with_their_bookkeeping():
    planner = tiny_planner(num_points=256)
    pts, _ = tabletop(n_table=800, n_box=300)
    full = planner.plan(pts, num_grasps=8, steps=2, seed=5, oversample=1, filter=False, diversity=0)
    assert full.palm_pose.shape == (1, 8, 4, 4) and full.scores.shape == (1, 8)
    assert torch.all(full.scores[0, :-1] >= full.scores[0, 1:]), "best first"
    assert full.rejected == {r: 0 for r in REASONS} and full.candidates == 8
    assert full.joint_names == planner.hand.joint_names and full.hand_name
    assert full.target.shape == (1, 8, 3) and torch.equal(full.target, full.anchors)
    assert full.pregrasp_joints.shape == (1, 8, 16)
    assert set(full.timings) >= {"prepare", "sample", "decode", "refine", "filter", "rank", "total"}
    # the ranking evidence travels with the grasps, in their order: score = -energy; the anchor score
    assert set(full.terms) == {"penetration", "table", "contact", "self", "total", "anchor_logit", "hits_grasp",
                               "hits_sweep", "clearance", "palm_height", "approach_up"}  # fmt: skip
    plane = planner.prepare(pts, 5).plane
    normal = torch.as_tensor(plane.normal, dtype=torch.float32)
    height = full.palm_pose[0, :, :3, 3] @ normal - plane.offset
    assert torch.allclose(full.terms["palm_height"][0], height, atol=1e-4)
    assert full.terms["approach_up"].abs().max() <= 1 + 1e-5
    assert all(t.shape == (1, 8) for t in full.terms.values())
    assert torch.allclose(full.scores, -full.terms["total"], atol=1e-5)
    pts_net = planner.prepare(pts, 5)
    net = planner.sample_network(pts_net.points, 16, steps=2, seed=5, up=pts_net.up_net)
    assert torch.allclose(net.terms["anchor_logit"], planner.model.score_anchors(pts_net.points, net.anchors), atol=1e-5)
    # the filtered plan of the same seed sees the same 8 candidates: its rejections are theirs
    expected = collision_check(planner.hand, full.palm_pose[0], full.joints[0],
                               torch.tensor(planner.prepare(pts, 5).cloud, dtype=torch.float32),
                               planner.prepare(pts, 5).plane)  # fmt: skip
    assert torch.equal(full.terms["hits_grasp"][0], expected["hits"][:, -1].float())
    assert torch.equal(full.terms["hits_sweep"][0], expected["hits"][:, :-1].amax(-1).float())
    kept = planner.plan(pts, num_grasps=4, steps=2, seed=5, oversample=2, diversity=0)
    assert kept.rejected == reason_counts(expected["reason"])
    assert len(kept) == min(4, int(expected["keep"].sum()))
    survivors = full.palm_pose[0][expected["keep"]][:4]
    assert torch.allclose(kept.palm_pose[0], survivors, atol=1e-5), "the best survivors, in rank order"
    with pytest.raises(ValueError, match="num_grasps"):
        planner.plan(pts, num_grasps=0)


def test_plan_that_rejects_every_candidate_returns_an_empty_set():
    """When the filter keeps nothing, plan() ranks nothing (it crashed reshaping an empty depth map)."""
    assert grasp_energy(_hand(), torch.eye(4)[None][:0], _hand().open_pose[None][:0].float(),
                        torch.zeros(10, 3))["total"].shape == (0,)  # fmt: skip
    planner = tiny_planner()
    pts, _ = tabletop()
    grasps = planner.plan(pts, 4, steps=2, up=np.array([0.0, 0.0, 1.0]), post={"table_tolerance": -10.0})
    assert len(grasps) == 0 and grasps.rejected["table"] == grasps.candidates == 8
    assert grasps.palm_pose.shape == (1, 0, 4, 4) and grasps.scores.shape == (1, 0) and grasps.target.shape == (1, 0, 3)


def test_contact_energy_measures_distance_to_objects_not_the_table():
    hand = _hand()
    pose = _pose(0.0, 0.0, -0.5 + 0.074 + 0.002)[None]  # the open hand just above the table
    joints = hand.open_pose[None].float()
    table = torch.tensor(np.c_[np.random.default_rng(0).uniform(-0.2, 0.2, (800, 2)), np.full(800, -0.5)], dtype=torch.float32)
    far_object = torch.tensor([[0.3, 0.3, -0.45]])
    cloud = torch.cat([table, far_object])
    with_table = grasp_energy(hand, pose, joints, cloud, None)["contact"]
    objects_only = grasp_energy(hand, pose, joints, cloud, TABLE)["contact"]
    assert float(with_table) < 0.02, "without a plane every point counts: the table is within 2 cm"
    assert float(objects_only) > 0.2, "with the plane only the object, 30+ cm away, counts"


def test_finish_grasps_with_every_candidate_rejected_returns_an_empty_set():
    """A plan whose filter rejects everything returns G = 0 grasps, not an error (the energy of no
    grasps once failed to reshape)."""
    from sceneleap_core.infer.planner import finish_grasps

    hand = _hand()
    pts, _ = tabletop()
    pose = torch.stack([_pose(0.05, 0.0, -0.6), _pose(0.0, 0.0, -0.7)])  # palms under the table
    joints = hand.open_pose.float().expand(2, -1)
    out = finish_grasps(hand, pts, TABLE, pose, joints, 4, PostConfig(), vectors=torch.zeros(2, 25))
    assert len(out) == 0 and out.palm_pose.shape == (1, 0, 4, 4) and out.rejected["table"] == 2
    assert set(out.timings) >= {"refine", "filter", "rank", "total"}


def test_sparse_hand_depth_equals_the_dense_penetration_depth():
    """hand_depth finds its (box, point) pairs hand -> link -> box; it must miss none."""
    from sceneleap_core.infer.postprocess import hand_depth

    hand = _hand()
    table, valid = hand.link_box_table, hand.link_box_valid
    assert sorted(table[valid].tolist()) == list(range(len(hand.box_half))), "every box in exactly one link group"
    torch.manual_seed(0)
    g = 12
    q = hand.joint_lower + (hand.joint_upper - hand.joint_lower) * torch.rand(g, hand.dof, dtype=hand.joint_lower.dtype)
    rot = torch.linalg.qr(torch.randn(g, 3, 3)).Q
    rot = rot * torch.det(rot)[:, None, None].sign()
    pose = torch.eye(4).repeat(g, 1, 1)
    pose[:, :3, :3], pose[:, :3, 3] = rot, 0.04 * torch.randn(g, 3)
    state = hand(q.float(), pose, validate=False)
    pts, is_box = tabletop(n_table=600, n_box=300)
    table_top = torch.tensor(pts - pts[is_box].mean(0)).float()  # the box at the hands
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])  # culled on the CPU, one pass on a GPU
    for device in devices:
        h = hand if device == "cpu" else copy.deepcopy(hand).to(device)
        st = state if device == "cpu" else h(q.float().to(device), pose.to(device), validate=False)
        for cloud in (0.2 * (torch.rand(1500, 3) - 0.5), table_top):
            cloud = cloud.to(device)
            dense = h.penetration_depth(st, cloud[None].expand(g, -1, -1))
            assert (dense > 0).sum() > 10, "the hands hold points"
            for cull in ("auto", "levels", "dense"):  # either way of finding the pairs, on either device
                torch.testing.assert_close(hand_depth(h, st, cloud, cull), dense, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="cull"):
        hand_depth(hand, state, table_top, "bvh")


def test_box_depth_is_the_dense_depth_of_each_box():
    from sceneleap_core.infer.postprocess import box_depth, hand_depth

    hand = _hand()
    torch.manual_seed(1)
    g = 6
    q = hand.joint_lower + (hand.joint_upper - hand.joint_lower) * torch.rand(g, hand.dof, dtype=hand.joint_lower.dtype)
    pose = torch.eye(4).repeat(g, 1, 1)
    pose[:, :3, 3] = 0.03 * torch.randn(g, 3)
    state = hand(q.float(), pose, validate=False)
    cloud = 0.2 * (torch.rand(2000, 3) - 0.5)
    dense = (-hand.box_distances(state, cloud[None].expand(g, -1, -1))).clamp_min(0).amax(1)  # (G, K)
    assert (dense > 0).sum() > 5, "some boxes hold points"
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        h = hand if device == "cpu" else copy.deepcopy(hand).to(device)
        st = state if device == "cpu" else h(q.float().to(device), pose.to(device), validate=False)
        for cull in ("auto", "levels", "dense"):
            per_box = box_depth(h, st, cloud.to(device), cull).cpu()
            torch.testing.assert_close(per_box, dense, atol=1e-6, rtol=0)
            whole = hand_depth(h, st, cloud.to(device), cull).amax(1).cpu()
            torch.testing.assert_close(per_box.amax(1), whole, atol=1e-6, rtol=0)


def test_finger_index_splits_boxes_and_joints_into_the_four_fingers():
    from sceneleap_core.infer.postprocess import finger_index

    hand = _hand()
    box_finger, joint_finger, on = finger_index(hand)
    assert sorted(set(box_finger.tolist())) == [-1, 0, 1, 2, 3]
    assert on.tolist() == [i for i, f in enumerate(box_finger.tolist()) if f >= 0], "the finger boxes, in order"
    assert all(name.startswith("palm") for name, f in zip(hand.box_names, box_finger.tolist()) if f < 0)
    assert all(not name.startswith("palm") for name, f in zip(hand.box_names, box_finger.tolist()) if f >= 0)
    # the LEAP hand: four joints per finger, in joint order (index, middle, ring, thumb)
    assert joint_finger.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    expected = {0: ("if_", "fingertip_pad"), 1: ("mf_", "fingertip_2_pad"), 2: ("rf_", "fingertip_3_pad"),
                3: ("th_", "thumb_fingertip_pad")}  # fmt: skip
    for name, f in zip(hand.box_names, box_finger.tolist(), strict=True):
        assert f < 0 or name.startswith(expected[f]), f"{name} is not a box of finger {f}"


def test_finger_clearance_unflexes_only_the_finger_that_points_lie_inside():
    from sceneleap_core.infer.postprocess import box_depth, finger_clearance, finger_index

    hand = _hand()
    box_finger, joint_finger, _ = finger_index(hand)
    closing = torch.as_tensor(hand.description.closing_direction, dtype=torch.float32)
    q = (hand.open_pose.float() + 0.6 * closing)[None]  # fingers half closed
    pose = torch.eye(4)[None]
    state = hand(q, pose, validate=False)
    rot, ctr = hand.box_poses(state)
    tip = hand.box_names.index("if_ds_collision_1")  # an index-finger box
    assert box_finger[tip] == 0
    # points filling that box: the index finger must open to clear them
    local = (torch.rand(300, 3) - 0.5) * hand.box_half[tip].float()  # the inner half of the box
    cloud = local @ rot[0, tip].T + ctr[0, tip]
    cfg = PostConfig(clearance_levels=(0.0, 0.05, 0.1, 0.2, 0.4, 0.8), clearance_tolerance=0.0)
    pose2, q2 = finger_clearance(hand, pose, q, cloud, cfg)
    assert torch.equal(pose2, pose)
    opened = (q - q2)[0] * closing  # >= 0: unflexed along the closing direction
    assert (opened[joint_finger == 0][closing[joint_finger == 0] != 0] > 0).all(), "the index finger opened"
    assert torch.equal(q2[0, joint_finger != 0], q[0, joint_finger != 0]), "the other fingers untouched"
    after = box_depth(hand, hand(q2, pose, validate=False), cloud)[0]
    assert after[box_finger == 0].max() <= 0.0 or opened.max() == pytest.approx(0.8), "clear, or at the last level"
    # the smallest level that clears: one level less leaves points inside
    level = float(opened[closing != 0][joint_finger[closing != 0] == 0].max())
    smaller = [v for v in cfg.clearance_levels if v < level - 1e-9][-1]
    q_less = q - smaller * closing * (joint_finger == 0)
    assert box_depth(hand, hand(q_less, pose, validate=False), cloud)[0, box_finger == 0].max() > 0
    # no points inside any finger: nothing moves; no cloud: nothing moves
    far = cloud + torch.tensor([1.0, 0.0, 0.0])
    assert torch.equal(finger_clearance(hand, pose, q, far, cfg)[1], q)
    assert torch.equal(finger_clearance(hand, pose, q, None, cfg)[1], q)


def test_finish_grasps_with_clearance_keeps_a_grasp_the_filter_would_reject():
    """A grasp whose index finger closes into observed points is rejected by the cloud check; with
    ``clearance`` its finger opens out of them first and the grasp is kept, the other fingers as given."""
    from sceneleap_core.infer.planner import finish_grasps
    from sceneleap_core.infer.postprocess import finger_index

    hand = _hand()
    _, joint_finger, _ = finger_index(hand)
    closing = torch.as_tensor(hand.description.closing_direction, dtype=torch.float32)
    q = (hand.open_pose.float() + 0.6 * closing)[None]
    pose = torch.eye(4)[None]
    rot, ctr = hand.box_poses(hand(q, pose, validate=False))
    tip = hand.box_names.index("if_md_collision_5")  # a thick index-finger box (the distal ones are 3 mm thin)
    torch.manual_seed(0)
    cloud = ((torch.rand(200, 3) - 0.5) * hand.box_half[tip].float()) @ rot[0, tip].T + ctr[0, tip]
    plain = finish_grasps(hand, cloud.numpy(), None, pose, q, 1, PostConfig(), vectors=torch.zeros(1, 25))
    assert len(plain) == 0 and plain.rejected["cloud"] == 1
    cleared = finish_grasps(hand, cloud.numpy(), None, pose, q, 1, PostConfig(clearance="candidates"), vectors=torch.zeros(1, 25))
    assert len(cleared) == 1 and cleared.rejected["cloud"] == 0
    moved = (cleared.joints[0, 0] - q[0]).abs() > 1e-6
    assert moved.any() and (joint_finger[moved] == 0).all(), "only the index finger moved"


def test_finger_clearance_dense_and_levels_agree():
    """The GPU's way (every level of every grasp at once, against the points within its reach) and
    the CPU's (level by level, the unsettled grasps against the whole cloud) choose the same joints,
    in a sparse cloud and in a dense one."""
    from sceneleap_core.infer.postprocess import finger_clearance

    hand = _hand()
    torch.manual_seed(3)
    g = 24
    closing = torch.as_tensor(hand.description.closing_direction, dtype=torch.float32)
    q = hand.open_pose.float() + closing * (0.3 + 0.8 * torch.rand(g, 1))
    pose = torch.eye(4).repeat(g, 1, 1)
    pose[:, :3, 3] = 0.03 * torch.randn(g, 3)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for cloud in (0.12 * (torch.rand(1200, 3) - 0.5), 0.6 * (torch.rand(6000, 3) - 0.5)):  # dense near the hands, sparse
        _, q_levels = finger_clearance(hand, pose, q, cloud, PostConfig(clearance_tolerance=0.001, cull="levels"))
        assert ((q_levels - q).abs().amax(1) > 1e-6).sum() >= 3, "hands had a finger to open"
        for device in devices:
            h = hand if device == "cpu" else copy.deepcopy(hand).to(device)
            for chunk in (0, 5):  # one pass, or grasps in passes of 5
                dense = PostConfig(clearance_tolerance=0.001, cull="dense", chunk=chunk)
                _, q_dense = finger_clearance(h, pose.to(device), q.to(device), cloud.to(device), dense)
                torch.testing.assert_close(q_dense.cpu(), q_levels, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="cull"):
        finger_clearance(hand, pose, q, cloud, PostConfig(cull="bvh"))
    with pytest.raises(ValueError, match="clearance"):
        PostConfig(clearance="always")


def test_finish_grasps_clears_the_returned_grasps_and_their_pregrasps_follow():
    """``clearance="returned"``: a returned grasp whose index finger holds observed points 2 mm deep
    comes back with that finger opened, here past the open pose, and its pregrasp (the open hand)
    is never more closed than the grasp as returned (the filter is off: the sweep would hit them)."""
    from sceneleap_core.infer.planner import finish_grasps

    hand = _hand()
    closing = torch.as_tensor(hand.description.closing_direction, dtype=torch.float32)
    q = (hand.open_pose.float() + 0.02 * closing)[None]  # nearly open: clearance opens it past the open pose
    pose = torch.eye(4)[None]
    rot, ctr = hand.box_poses(hand(q, pose, validate=False))
    tip = hand.box_names.index("if_md_collision_5")
    half = hand.box_half[tip].float()
    torch.manual_seed(0)
    local = (torch.rand(50, 3) - 0.5) * half  # inside the box's inner half, then pushed to 2 mm under a face
    local[:, 0] = half[0] - 0.002
    cloud = local @ rot[0, tip].T + ctr[0, tip]
    cfg = PostConfig(clearance="returned", filter=False)
    out = finish_grasps(hand, cloud.numpy(), None, pose, q, 1, cfg, vectors=torch.zeros(1, 25))
    plain = finish_grasps(hand, cloud.numpy(), None, pose, q, 1, PostConfig(filter=False), vectors=torch.zeros(1, 25))
    assert len(out) == 1 and len(plain) == 1
    opened = ((q[0] - out.joints[0, 0]) * closing).clamp_min(0)
    assert opened.max() > 0.02 and torch.allclose(plain.joints[0, 0], q[0]), "opened past the open pose"
    flex = closing > 0
    assert ((out.pregrasp_joints[0, 0] - out.joints[0, 0])[flex] <= 1e-6).all(), "pregrasp no more closed than the grasp"


def _greedy_on_host(pose, scores, k, min_distance):
    """The host loop diverse_topk used to be: score order, skip near a kept one, fill from the skipped."""
    from sceneleap_core.infer.postprocess import pose_distance

    near = (pose_distance(pose) < min_distance).numpy()
    kept, skipped = [], []
    for i in torch.argsort(scores, descending=True).tolist():
        if len(kept) == k:
            break
        (skipped if kept and near[i, kept].any() else kept).append(i)
    return kept + skipped[: k - len(kept)]


def test_diverse_select_is_the_host_greedy_at_fixed_shapes():
    """The device greedy of diverse_select picks what the host loop picks, over the valid grasps only,
    in (k,) distinct indices whose first ``count`` are the selection."""
    from sceneleap_core.geometry.rotations import axis_angle_to_matrix
    from sceneleap_core.infer.postprocess import diverse_select

    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        c, k = int(torch.randint(1, 30, (1,), generator=g)), int(torch.randint(1, 36, (1,), generator=g))
        pose = torch.eye(4).repeat(c, 1, 1)
        pose[:, :3, 3] = torch.rand(c, 3, generator=g) * 0.06
        axis = torch.nn.functional.normalize(torch.randn(c, 3, generator=g), dim=-1)
        pose[:, :3, :3] = axis_angle_to_matrix(axis, torch.rand(c, generator=g) * 0.5)
        scores = torch.randn(c, generator=g)
        valid = torch.rand(c, generator=g) < 0.7
        spacing = float(torch.rand(1, generator=g)) * 0.05
        order, count = diverse_select(pose, scores, valid, k, spacing)
        rows = valid.nonzero().squeeze(-1)
        expected = rows[_greedy_on_host(pose[rows], scores[rows], k, spacing)].tolist() if len(rows) else []
        assert order[: int(count)].tolist() == expected
        assert len(order) == min(k, c) and len(set(order.tolist())) == len(order), "fixed length, no repeats"
        assert diverse_topk(pose, scores, k, spacing).tolist() == _greedy_on_host(pose, scores, k, spacing)


def test_within_radius_as_one_product_equals_the_distance_test():
    from sceneleap_core.infer.postprocess import within_radius

    g = torch.Generator().manual_seed(0)
    cloud = torch.rand(3000, 3, generator=g) * torch.tensor([0.6, 0.6, 0.2]) + torch.tensor([-0.3, -0.3, -0.6])
    centres = cloud[:400] + 0.02 * torch.randn(400, 3, generator=g)
    radius = 0.005 + 0.03 * torch.rand(400, generator=g)
    dist = (centres.double()[:, None] - cloud.double()[None]).norm(dim=-1)
    got = within_radius(centres, radius, cloud)
    clear = (dist - radius.double()[:, None]).abs() > 1e-6  # pairs not on a sphere's surface to float precision
    assert torch.equal(got[clear], (dist < radius.double()[:, None])[clear]) and got.sum() > 500


def test_pair_budget_keeps_its_size_marks_padding_and_flags_overflow():
    from sceneleap_core.infer.postprocess import PairBudget

    near = torch.zeros(6, 5, dtype=torch.bool)
    near[1, 2] = near[4, 0] = near[5, 4] = True
    budget = PairBudget("cpu", pairs_per_state=1, min_pairs=4)
    row, col, live = budget.pairs(near, states=2)
    assert len(row) == 4 and live.tolist() == [True, True, True, False]
    assert list(zip(row[live].tolist(), col[live].tolist())) == [(1, 2), (4, 0), (5, 4)]
    assert not budget.overflow
    small = PairBudget("cpu", pairs_per_state=1, min_pairs=2)
    small.pairs(near, states=1)
    assert small.overflow, "3 pairs in a budget of 2"
    full = PairBudget("cpu", pairs_per_state=1, min_pairs=3)
    full.pairs(near, states=1)
    assert full.overflow, "a budget filled to its last place may have dropped pairs: flagged"
    with pytest.raises(ValueError, match="sizes >= 1"):
        PairBudget("cpu", points=0)


def _candidates(hand, n=24, seed=0):
    """Candidate grasps scattered over the tabletop cube (some in it, some in the table, some free)."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.eye(4).repeat(n, 1, 1)
    pose[:, :3, 3] = torch.tensor([0.05, 0.0, -0.42]) + (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor(
        [0.2, 0.2, 0.12]
    )
    lo, hi = hand.joint_lower.float(), hand.joint_upper.float()
    joints = lo + (hi - lo) * torch.rand(n, len(lo), generator=g) * 0.5
    return pose, joints


@pytest.mark.parametrize("clearance", ["off", "returned"])
def test_select_grasps_with_a_budget_equals_the_dynamic_search(clearance):
    """Fixed shapes (every candidate scored, rejected ones masked, pair searches of fixed size) choose
    the same grasps, scores, terms and rejections as the kept-only path; a budget too small says so."""
    from sceneleap_core.infer.planner import select_grasps
    from sceneleap_core.infer.postprocess import PairBudget

    hand = _hand()
    pts, _ = tabletop(n_table=600, n_box=400)
    cloud = torch.tensor(pts, dtype=torch.float32)
    pose, joints = _candidates(hand)
    cfg = PostConfig(clearance=clearance)
    terms = {"anchor_logit": torch.linspace(-1, 1, len(pose))}
    args = (hand, cloud, TABLE, pose, joints, 6, cfg)
    ref = select_grasps(*args, terms=terms)
    default = PairBudget("cpu")
    select_grasps(*args, terms=terms, budget=default)
    assert default.overflow, "palms inside a dense cube: ~160 pairs per hand state, over the default 128"
    got = select_grasps(*args, terms=terms, budget=PairBudget("cpu", pairs_per_state=2048))
    n = int(ref["count"])
    assert 0 < n == int(got["count"]) and not got["overflow"]
    a, b = ref["order"][:n], got["order"][:n]
    assert a.tolist() == b.tolist()
    assert torch.equal(ref["rejected"], got["rejected"]) and int(ref["rejected"].sum()) > 0, "some rejected"
    for key in ("joints", "pose", "pregrasp_joints", "scores"):
        torch.testing.assert_close(ref[key][a], got[key][b])
    for name in ref["terms"]:
        torch.testing.assert_close(ref["terms"][name][a], got["terms"][name][b], msg=name)
    tight = select_grasps(*args, terms=terms, budget=PairBudget("cpu", pairs_per_state=1, min_pairs=1, points=1))
    assert tight["overflow"]


def test_finish_grasps_through_graphed_post_matches_and_redoes_an_overflow(caplog):
    """finish_grasps with a GraphedPost (eager off CUDA) returns the grasps it returns without one,
    timed as one ``post`` stage; a budget that overflows is redone exactly, with a log line."""
    import logging

    from sceneleap_core.infer.cuda_graph import GraphedPost
    from sceneleap_core.infer.planner import finish_grasps

    hand = _hand()
    pts, _ = tabletop(n_table=600, n_box=400)
    pose, joints = _candidates(hand, seed=1)
    cfg = PostConfig(clearance="returned")
    plain = finish_grasps(hand, pts, TABLE, pose, joints, 5, cfg, vectors=torch.zeros(len(pose), 25))
    graphed = finish_grasps(hand, pts, TABLE, pose, joints, 5, cfg, vectors=torch.zeros(len(pose), 25),
                            graphs=GraphedPost({"pairs_per_state": 2048}))  # fmt: skip
    assert len(plain) > 0 and "post" in graphed.timings and "filter" not in graphed.timings
    with caplog.at_level(logging.INFO, logger="sceneleap_core.infer.planner"):
        redone = finish_grasps(hand, pts, TABLE, pose, joints, 5, cfg, vectors=torch.zeros(len(pose), 25),
                               graphs=GraphedPost({"pairs_per_state": 1, "min_pairs": 1}))  # fmt: skip
    assert "outgrew its budget" in caplog.text and "filter" in redone.timings
    for out in (graphed, redone):
        torch.testing.assert_close(out.palm_pose, plain.palm_pose)
        torch.testing.assert_close(out.joints, plain.joints)
        torch.testing.assert_close(out.scores, plain.scores)
        assert out.rejected == plain.rejected


def test_select_grasps_with_a_budget_never_reads_the_device_on_the_host():
    """What a CUDA graph cannot capture (a host read such as ``.item()`` or a 0-dim tensor index, a
    host -> device copy) fails on the meta device or is caught by the spy: the budgeted path, with
    the bundled critic and finger clearance, runs there whole (the device once refused its capture
    over one such index)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from sceneleap_core.infer.critic import GraspCritic
    from sceneleap_core.infer.planner import select_grasps
    from sceneleap_core.infer.postprocess import PairBudget, finger_index
    from sceneleap_core.infer.preprocess import SupportPlane

    hand = copy.deepcopy(_hand())
    fingers = finger_index(hand)  # cached per device at the first (warm-up) call, before any capture
    hand = hand.to("meta")
    hand.__dict__["_finger_index"] = {hand.device: tuple(x.to("meta") for x in fingers)}
    critic = GraspCritic.load("sceneleap_core/assets/default_model").to("meta")
    copies = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs or {})) if isinstance(a, torch.Tensor)]
            copy = func in (torch.ops.aten.copy_.default, torch.ops.aten._to_copy.default)  # e.g. x[i] = 0.5
            if any(a.device.type == "cpu" and (a.dim() > 0 or copy) for a in tensors):
                copies.append(str(func))
            return func(*args, **(kwargs or {}))

    def meta(x):
        return torch.as_tensor(x, dtype=hand.dtype).to("meta")

    c = 12
    pose, joints = meta(torch.eye(4).repeat(c, 1, 1)), meta(torch.zeros(c, hand.dof))
    plane, up = SupportPlane(meta([0.0, 0.0, 1.0]), meta(-0.5)), meta([0.0, 0.0, 1.0])
    terms = {name: torch.zeros(c, device="meta") for name in critic.features if name == "anchor_logit"}
    cloud = meta(tabletop()[0])
    with Spy():
        out = select_grasps(hand, cloud, plane, pose, joints, 4, PostConfig(clearance="returned"), terms=terms,
                            ranker=critic, up=up, budget=PairBudget("meta"))  # fmt: skip
    assert not copies, f"host -> device copies inside the graph: {copies}"
    assert out["order"].shape == (4,) and out["pose"].shape == (c, 4, 4) and out["overflow"].shape == ()
