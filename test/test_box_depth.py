"""Depth of points inside oriented boxes, reduced without the (box, point) matrix: the dense torch
form against the post-processing's pair searches (always), the fused Triton kernels against the
dense form and the checks with and without them (on CUDA, or in Triton's interpreter on the CPU:
``TRITON_INTERPRET=1`` with Triton installed)."""

import os

import numpy as np
import pytest
import torch
from _infer_common import hand as _hand
from _infer_common import tabletop

from sceneleap_core.geometry import box_depth as bd
from sceneleap_core.infer.postprocess import (
    PostConfig,
    box_depth,
    collision_check,
    finger_clearance,
    grasp_energy,
    hand_depth,
)
from sceneleap_core.infer.preprocess import SupportPlane

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNELS = bd.triton is not None and (DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")
needs_kernels = pytest.mark.skipif(not KERNELS, reason="needs Triton and CUDA, or Triton with TRITON_INTERPRET=1")


def _hands(g: int, seed: int, spread: float = 0.03, device: str = "cpu"):
    """g random hand states about the origin, their box rotations (g, K, 3, 3) and centres (g, K, 3)."""
    hand = _hand()
    if device != "cpu":
        import copy

        hand = copy.deepcopy(hand).to(device)
    gen = torch.Generator().manual_seed(seed)
    lo, hi = hand.joint_lower.float().cpu(), hand.joint_upper.float().cpu()
    q = lo + (hi - lo) * torch.rand(g, hand.dof, generator=gen)
    rot = torch.linalg.qr(torch.randn(g, 3, 3, generator=gen)).Q
    rot = rot * torch.det(rot)[:, None, None].sign()
    pose = torch.eye(4).repeat(g, 1, 1)
    pose[:, :3, :3], pose[:, :3, 3] = rot, spread * torch.randn(g, 3, generator=gen)
    state = hand(q.to(device), pose.to(device), validate=False)
    return hand, state, q, pose


def test_dense_forms_equal_the_pair_searches():
    """hand_depth_stats / box_max_depth (dense, chunked) give what the checks' sparse pair searches
    give: the summed and counted depths per state, the deepest point per box."""
    hand, state, _, _ = _hands(10, seed=0)
    cloud = 0.2 * (torch.rand(1500, 3, generator=torch.Generator().manual_seed(1)) - 0.5)
    rot, ctr = hand.box_poses(state)
    tol = torch.linspace(0.0, 0.006, 10)
    per_point = hand_depth(hand, state, cloud, "levels")  # (S, N)
    assert (per_point > tol[:, None]).sum() > 20, "points inside the hands, past the tolerances"
    total, hits = bd.hand_depth_stats(rot, ctr, hand.box_half, cloud, tol, fused=False)
    torch.testing.assert_close(total, per_point.sum(-1), atol=1e-5, rtol=1e-5)
    assert hits.tolist() == (per_point > tol[:, None]).sum(-1).tolist()
    assert hits.dtype == torch.long
    deepest = bd.box_max_depth(rot, ctr, hand.box_half, cloud, fused=False)
    torch.testing.assert_close(deepest, box_depth(hand, state, cloud, "levels"), atol=1e-6, rtol=0)
    none = bd.hand_depth_stats(rot[:0], ctr[:0], hand.box_half, cloud, tol[:0], fused=False)
    assert none[0].shape == (0,) and none[1].shape == (0,) and none[1].dtype == torch.long
    assert bd.box_max_depth(rot[:0], ctr[:0], hand.box_half, cloud, fused=False).shape == (0, rot.shape[1])
    old = bd._DENSE_ENTRIES
    try:  # in chunks of a few states, the same
        bd._DENSE_ENTRIES = 3 * cloud.shape[0] * rot.shape[1] * 3
        again = bd.hand_depth_stats(rot, ctr, hand.box_half, cloud, tol, fused=False)
        assert torch.equal(again[1], hits) and torch.allclose(again[0], total)
        assert torch.equal(bd.box_max_depth(rot, ctr, hand.box_half, cloud, fused=False), deepest)
    finally:
        bd._DENSE_ENTRIES = old


def test_bad_shapes_and_missing_triton_are_named():
    hand, state, _, _ = _hands(2, seed=0)
    rot, ctr = hand.box_poses(state)
    with pytest.raises(ValueError, match=r"points: expected shape \(N, 3\)"):
        bd.box_max_depth(rot, ctr, hand.box_half, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="half"):
        bd.box_max_depth(rot, ctr, hand.box_half[:3], torch.zeros(5, 3))
    with pytest.raises(ValueError, match="tol"):
        bd.hand_depth_stats(rot, ctr, hand.box_half, torch.zeros(5, 3), torch.zeros(3))
    if bd.triton is None:
        with pytest.raises(ValueError, match="need Triton"):
            bd.box_max_depth(rot, ctr, hand.box_half, torch.zeros(5, 3), fused=True)


def test_the_kernels_are_off_on_the_cpu_without_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not bd.fused_available(torch.zeros(4, 3))
    assert bd.fused_available(torch.zeros(4, 3, device="meta")) is False


@needs_kernels
def test_kernels_equal_the_dense_form():
    hand, state, _, _ = _hands(5, seed=2, device=DEVICE)
    gen = torch.Generator().manual_seed(3)
    cloud = (0.12 * (torch.rand(333, 3, generator=gen) - 0.5)).to(DEVICE)  # not a multiple of a block
    rot, ctr = hand.box_poses(state)
    tol = torch.tensor([0.0, 0.001, 0.002, 0.004, 0.01], device=DEVICE)
    total, hits = bd.hand_depth_stats(rot, ctr, hand.box_half, cloud, tol, fused=True)
    ref_total, ref_hits = bd.hand_depth_stats(rot, ctr, hand.box_half, cloud, tol, fused=False)
    assert ref_hits.sum() > 10, "points inside the hands"
    torch.testing.assert_close(total, ref_total, atol=1e-5, rtol=1e-5)
    assert (hits - ref_hits).abs().max() <= 1, "a count may differ only by a point at the tolerance"
    deepest = bd.box_max_depth(rot, ctr, hand.box_half, cloud, fused=True)
    torch.testing.assert_close(
        deepest, bd.box_max_depth(rot, ctr, hand.box_half, cloud, fused=False), atol=1e-6, rtol=0
    )
    empty = bd.hand_depth_stats(rot[:0], ctr[:0], hand.box_half, cloud, tol[:0], fused=True)
    assert empty[0].shape == (0,) and empty[1].shape == (0,)


@needs_kernels
def test_the_checks_give_the_same_verdicts_with_and_without_the_kernels():
    """collision_check (hits per state, reasons), the ranking energy's penetration and finger
    clearance choose alike through the kernels and through the pair searches."""
    import copy

    hand = _hand() if DEVICE == "cpu" else copy.deepcopy(_hand()).to(DEVICE)
    pts, is_box = tabletop(n_table=300, n_box=300)
    cloud = torch.tensor(pts, dtype=torch.float32, device=DEVICE)
    centre = pts[is_box].mean(0)
    gen = torch.Generator().manual_seed(4)
    g = 6
    pose = torch.eye(4).repeat(g, 1, 1)
    pose[:, :3, 3] = (
        torch.tensor(centre, dtype=torch.float32) + torch.tensor([0, 0, 0.06]) + 0.03 * torch.randn(g, 3, generator=gen)
    )
    closing = torch.as_tensor(hand.description.closing_direction, dtype=torch.float32)
    joints = hand.open_pose.float().cpu() + closing * (0.2 + 0.8 * torch.rand(g, 1, generator=gen))
    pose, joints = pose.to(DEVICE), joints.to(DEVICE)
    plane = SupportPlane(np.array([0.0, 0.0, 1.0]), -0.5, 1.0)
    fused, plain = PostConfig(sweep_steps=2), PostConfig(sweep_steps=2, fused_depth=False, cull="dense")
    a, b = (
        collision_check(hand, pose, joints, cloud, plane, fused),
        collision_check(hand, pose, joints, cloud, plane, plain),
    )
    assert (a["hits"] - b["hits"]).abs().max() <= 1 and a["hits"].sum() > 0, "hands in the cube"
    assert a["reason"].tolist() == b["reason"].tolist()
    with torch.no_grad():
        ea, eb = (
            grasp_energy(hand, pose, joints, cloud, plane, fused),
            grasp_energy(hand, pose, joints, cloud, plane, plain),
        )
    assert eb["penetration"].sum() > 0
    torch.testing.assert_close(ea["penetration"], eb["penetration"], atol=1e-5, rtol=1e-5)
    clear = {"clearance_levels": (0.0, 0.1, 0.3), "clearance_points": 400}
    qa = finger_clearance(hand, pose, joints, cloud, PostConfig(cull="dense", **clear))[1]
    qb = finger_clearance(hand, pose, joints, cloud, PostConfig(cull="dense", fused_depth=False, **clear))[1]
    assert ((qb - joints).abs().amax(1) > 1e-6).any(), "a finger opened"
    torch.testing.assert_close(qa, qb, atol=1e-6, rtol=0)
