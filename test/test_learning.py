"""The learning ladder's CPU rungs: the decode path and labels, the schedulers, the conditioning gap.
(The fit rung, a tiny model trained with the default augmentation, is in test_learning_fit.py.)"""

from pathlib import Path

import numpy as np
import pytest
import torch

from sceneleap_core.data.shards import ShardDataset
from sceneleap_core.geometry.frames import estimate_up, gravity_rotation, network_frame
from sceneleap_core.hand import HandModel
from sceneleap_core.models import build_generator
from sceneleap_core.train.data import GraspSceneDataset, fit_normalizer, usable_indices
from sceneleap_core.train.diagnostics import conditioning_gap
from sceneleap_core.train.ladder import ground_truth_rung, oracle_rung, view_batch

SAMPLE = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "sample"


@pytest.mark.parametrize("frame", ["camera", "gravity"])
def test_ground_truth_lifts_through_the_sampled_grasp_path(frame):
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    source = ShardDataset(SAMPLE)
    ds = GraspSceneDataset(source, usable_indices(source)[:2], num_points=512, num_grasps=8, frame=frame, augment=None)
    norm = fit_normalizer(ds, 4)
    res = ground_truth_rung(ds, SimLiftEvaluator(SAMPLE, workers=1), norm, HandModel.load(), [0, 1], max_grasps=4)
    assert res.lift >= 0.75, f"ground truth lifted {res.lift:.2f} through the decode path ({frame} frame)"


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_oracle_denoiser_makes_every_scheduler_return_the_ground_truth(prediction):
    model = build_generator("tiny", prediction=prediction).double()
    rows = oracle_rung(model, [("ddim", 10), ("ddpm", 100), ("dpmpp", 10), ("ddim", 100)])
    for r in rows:
        assert r.chamfer_mm < 1e-3, f"{r.sampler} {r.steps}: max |x - x0| = {r.chamfer_mm / 1e3:.2e} ({prediction})"


def test_conditioning_gap_is_zero_for_a_scene_blind_model_and_positive_for_a_scene_reading_one():
    torch.manual_seed(0)
    pts = torch.randn(4, 64, 3)
    grasps = torch.rand(4, 3, 25) * 2 - 1
    blind = conditioning_gap(build_generator("tiny"), pts, grasps, seed=1, repeats=2)  # zero-init output
    assert abs(blind["gap_blank"]) < 1e-6 and abs(blind["gap_foreign"]) < 1e-6

    class Reader(torch.nn.Module):  # predicts each grasp set from its own cloud's mean; nothing blanked
        training = False

        def training_loss(self, points, grasps, generator=None, mask=None, *, cond_drop=None):
            noise = torch.randn(grasps.shape, generator=generator)
            guess = torch.zeros_like(grasps) if cond_drop else points.mean(1, keepdim=True)[..., :1]
            return {"loss": ((guess - grasps.mean(-1, keepdim=True)) ** 2).mean() + 0 * noise.mean()}

    pts = torch.stack([torch.full((64, 3), v) for v in (0.5, -0.5, 0.9, -0.9)])
    grasps = pts[:, :3, :1].expand(-1, -1, 25).clone()  # each set's mean is its cloud's value
    gap = conditioning_gap(Reader(), pts, grasps, seed=1, repeats=2)
    assert gap["loss_real"] < 1e-12
    assert gap["gap_blank"] == pytest.approx((pts[:, 0, 0] ** 2).mean().item(), rel=1e-5)
    assert gap["gap_foreign"] > 0.5


def test_gravity_frame_is_canonical_and_estimated_up_matches_the_camera_pose():
    source = ShardDataset(SAMPLE)
    s = source[int(usable_indices(source)[0])]
    up = s.camera_pose[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    rot = gravity_rotation(up)
    np.testing.assert_allclose(rot @ up, [0, 0, 1], atol=1e-12)  # up maps to +z
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert (rot @ [0, 0, 1.0])[1] == pytest.approx(0, abs=1e-12)  # the view direction has no y part
    net, frame, _ = network_frame(np.asarray(s.points, np.float64), frame="gravity", up=up)
    back = net @ frame[:3, :3].T + frame[:3, 3]
    np.testing.assert_allclose(back, s.points, atol=1e-5)
    est = estimate_up(np.asarray(s.points, np.float64))
    assert np.degrees(np.arccos(np.clip(est @ up, -1, 1))) < 3.0  # the table gives gravity back
    with pytest.raises(ValueError, match="up"):
        network_frame(net, frame="gravity")


def test_view_batch_collates_items():
    source = ShardDataset(SAMPLE)
    ds = GraspSceneDataset(source, usable_indices(source), num_points=128, num_grasps=4, augment=None)
    b = view_batch(ds, [0, 3])
    assert b["points"].shape == (2, 128, 3) and b["frame"].shape == (2, 4, 4)


def test_planner_loads_a_checkpoint_and_returns_grasps_in_the_cloud_frame(tmp_path):
    from sceneleap_core.hand import GraspNormalizer
    from sceneleap_core.infer import GraspPlanner

    hand = HandModel.load()
    model = build_generator("tiny")
    norm = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper)
    model.save_pretrained(
        tmp_path / "m", normalizer=norm, extra_config={"data": {"num_points": 96, "frame": "gravity"}}
    )
    planner = GraspPlanner.from_pretrained(tmp_path / "m")
    assert planner.num_points == 96 and planner.frame == "gravity"
    source = ShardDataset(SAMPLE)
    s = source[int(usable_indices(source)[0])]
    cloud = np.asarray(s.points, np.float64)
    # unfiltered: an untrained model's grasps collide; this test is about frames (filtering: test_infer_postprocess)
    out = planner.plan(cloud, num_grasps=5, steps=3, seed=1, filter=False)  # up estimated from the table
    assert out.palm_pose.shape == (1, 5, 4, 4) and out.joints.shape == (1, 5, 16)
    rot = out.palm_pose[0, :, :3, :3].double()
    torch.testing.assert_close(
        rot @ rot.transpose(1, 2), torch.eye(3, dtype=rot.dtype).expand(5, 3, 3), atol=1e-5, rtol=0
    )
    assert torch.all(torch.linalg.det(rot) > 0)
    assert torch.all(out.joints >= hand.joint_lower - 1e-6) and torch.all(out.joints <= hand.joint_upper + 1e-6)
    # the grasps come back near the cloud (within the normalizer's translation range of its centre)
    centre = torch.as_tensor(cloud.mean(0), dtype=out.palm_pose.dtype)
    assert (out.palm_pose[0, :, :3, 3] - centre).norm(dim=-1).max() < 1.0
    again = planner.plan(cloud, num_grasps=5, steps=3, seed=1, filter=False)
    torch.testing.assert_close(again.palm_pose, out.palm_pose)  # seeded
    with pytest.raises(ValueError, match="points"):
        planner.plan(cloud[:, :2])
    with pytest.raises(ValueError, match="finite"):
        planner.plan(np.full((10, 3), np.nan))
