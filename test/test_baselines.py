"""The non-learned baseline (sceneleap_core.infer.baselines.NormalApproachPlanner): valid grasps on the
bundled sample scene, approach along the estimated normal from the camera's side, deterministic under
a seed, and grasps that lift a box in the simulator."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _infer_common import SAMPLE, hand

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LIBRARY = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "library_default"


def _view(index=0):
    from sceneleap_core.data.shards import ShardDataset

    s = ShardDataset(SAMPLE)[index]
    return s, s.camera_pose[:3, :3].T @ np.array([0.0, 0.0, 1.0])  # world up in the camera frame


def test_baseline_grasps_on_the_sample_scene_are_valid_and_approach_along_the_normal():
    from sceneleap_core.infer import GraspSet
    from sceneleap_core.infer.baselines import NormalApproachPlanner
    from sceneleap_core.infer.preprocess import prepare_cloud

    h = hand()
    planner = NormalApproachPlanner(h)
    s, up = _view(0)
    gs = planner.plan(s.points, 8, seed=0, up=up)
    assert isinstance(gs, GraspSet) and 0 < len(gs) <= 8 and gs.candidates == 32
    g = len(gs)
    assert gs.palm_pose.shape == (1, g, 4, 4) and gs.joints.shape == (1, g, 16) and gs.scores.shape == (1, g)
    assert (gs.scores[0, :-1] >= gs.scores[0, 1:]).all()  # best first
    assert {"prepare", "sample", "filter", "rank", "total"} <= set(gs.timings)
    assert sum(gs.rejected.values()) + g <= gs.candidates
    q = gs.joints[0].double()
    assert ((q >= h.joint_lower.double() - 1e-6) & (q <= h.joint_upper.double() + 1e-6)).all()
    # deterministic under a seed
    again, other = planner.plan(s.points, 8, seed=0, up=up), planner.plan(s.points, 8, seed=1, up=up)
    torch.testing.assert_close(again.palm_pose, gs.palm_pose)
    assert other.palm_pose.shape != gs.palm_pose.shape or not torch.allclose(other.palm_pose, gs.palm_pose)

    # the returned grasps are candidates (the filter and ranking pick, never move them) ...
    cloud, plane, _ = prepare_cloud(s.points, planner.num_points, seed=0, up=up)
    pose, joints, info = planner.candidates(cloud, plane, up, 32, np.random.default_rng(0))
    dist = (gs.palm_pose[0][:, None] - pose[None].float()).flatten(2).abs().amax(-1)  # (G, C)
    match = dist.argmin(-1)
    assert float(dist.amin(-1).max()) < 1e-5
    torch.testing.assert_close(gs.joints[0], joints[match].float())
    # ... whose approach axis is the negative surface normal, that normal the PCA normal of the
    # surface point's neighbours on the object facing the camera, and the palm on that (seen) side
    rot = pose[match][:, :3, :3].double()
    approach = rot @ h.approach_axis.double()  # (G, 3)
    normal = info["normal"][match].double()
    angle = torch.atan2(torch.linalg.cross(approach, -normal).norm(dim=-1), (-approach * normal).sum(-1))
    assert float(angle.max()) < 1e-5, f"approach vs -normal: {angle.max():.2e} rad"
    surface = info["surface"][match].double().numpy()
    obj = cloud[np.concatenate(planner.objects(cloud, plane))]
    for p, n in zip(surface, normal.numpy()):
        nb = obj[np.argsort(np.linalg.norm(obj - p, axis=1))[: planner.normal_k]]
        ref = np.linalg.eigh(np.cov((nb - nb.mean(0)).T))[1][:, 0]
        assert abs(ref @ n) > 0.999  # the same PCA normal, computed independently
        assert n @ (-p) > 0  # faces the camera (origin of the camera-frame cloud)
    origin = pose[match][:, :3, 3].double().numpy()
    assert (np.einsum("gi,gi->g", origin - surface, normal.numpy()) > planner.standoff[0] - 1e-6).all()
    assert (plane.height(origin) > 0.03).all()  # palms above the table
    assert (normal.numpy() @ (up / np.linalg.norm(up)) >= -planner.max_below - 1e-6).all()  # never from below


def test_library_figures_behind_the_baseline_constants():
    from sceneleap_core.data.library import GraspLibrary
    from sceneleap_core.infer.baselines import LIBRARY_CLOSED_POSE, LIBRARY_GRASP_CENTRE, library_posture

    fig = library_posture(GraspLibrary.load(LIBRARY), samples=0)
    np.testing.assert_allclose(fig["closed_pose"], LIBRARY_CLOSED_POSE, atol=2e-3)
    np.testing.assert_allclose(fig["grasp_centre"], LIBRARY_GRASP_CENTRE, atol=1e-3)


def test_baseline_grasps_lift_a_box_in_the_simulator():
    """One box of the bundled library (train split, 4.5 x 6.8 x 5.4 cm) on the table, seen by the
    D435-like camera: 8 of the 10 grasps the baseline returns lift when this test was written."""
    from sceneleap_core.data.compose import SceneComposer, render_samples
    from sceneleap_core.data.depth import sample_robot_cameras
    from sceneleap_core.data.library import GraspLibrary
    from sceneleap_core.data.validate import sim_scene
    from sceneleap_core.infer.baselines import NormalApproachPlanner
    from sceneleap_core.sim import evaluate_grasps

    composer = SceneComposer(GraspLibrary.load(LIBRARY), "train", hand(), "cpu", objects_per_scene=(1, 1))
    rng = np.random.default_rng([0, 17])
    scene = composer.compose(17, rng)
    assert [o.kind for o in scene.objects] == ["box"]
    view = render_samples(composer, scene, sample_robot_cameras(1, rng), seed=17)[0][0]
    up = view.camera_pose[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    gs = NormalApproachPlanner(hand()).plan(view.points, 16, seed=0, up=up)
    assert len(gs) > 0
    palm_world = view.camera_pose @ gs.palm_pose[0].double().numpy()  # camera -> world: the scene's frame
    lift = evaluate_grasps(sim_scene(scene.objects, scene.object_pose, 0.0), palm_world,
                           gs.joints[0].double().numpy(), 0, protocol="lift").lift  # fmt: skip
    print(f"baseline on one box: {int(lift.success.sum())}/{len(gs)} lift, top-1 {bool(lift.success[0])}")
    assert lift.success.any()
    assert math.isfinite(float(lift.penetration_object_mm.mean()))
