"""``sceneleap demo-plan``: the planner on the bundled sample scenes, lift-tested in the scene's world
frame; a tiny random model stands in for the trained one (its grasps fail; the bookkeeping must not)."""

import json

import numpy as np
import pytest
import torch
from _infer_common import SAMPLE, save_tiny

from sceneleap_core.assets import DEFAULT_MODEL_DIR
from sceneleap_core.cli import build_parser, main
from sceneleap_core.data.shards import ShardDataset
from sceneleap_core.infer import GraspPlanner, GraspSet
from sceneleap_core.infer.demo import camera_up, scene_views, to_world

pytest.importorskip("mujoco")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("demo_model") / "tiny", num_points=256)


def _table_rows(printed: str) -> dict[str, list[str]]:
    """The rich table's body rows, keyed by their first cell."""
    rows = {}
    for line in printed.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if line.startswith("│") and len(cells) == 9:
            rows[cells[0]] = cells
    return rows


def test_ground_truth_grasps_lift_in_the_world_frame_and_shifted_ones_do_not():
    """The demo's frame path (camera-frame grasps -> ``to_world`` -> the evaluator's scene): the sample's
    own validated grasps lift there; the same grasps 20 cm off, or left in the camera frame, do not."""
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    dataset = ShardDataset(SAMPLE)
    index = scene_views(dataset, 2)[1]
    sample = dataset[index]
    k = slice(0, 2)
    truth = GraspSet(torch.from_numpy(sample.grasp_pose[k][None]).double(),
                     torch.from_numpy(sample.grasp_joints[k][None]).double(), torch.zeros(1, 2, 25))  # fmt: skip
    world = to_world(truth, sample)
    pose, joints = world.palm_pose[0].numpy(), world.joints[0].numpy()
    evaluator = SimLiftEvaluator(SAMPLE)
    good = evaluator.evaluate_world(index, pose, joints)
    assert good.lift.success.all(), good.lift.failure
    held = [list(sample.object_ids).index(o) for o in sample.grasp_object[k]]
    assert good.target.tolist() == held, "each grasp is scored on the object it holds"
    shifted = pose.copy()
    shifted[:, 0, 3] += 0.20
    assert not evaluator.evaluate_world(index, shifted, joints).lift.success.any()
    camera_frame = truth.palm_pose[0].numpy()
    assert not evaluator.evaluate_world(index, camera_frame, joints).lift.success.any()
    # world up seen from the camera: the camera looks down at the table
    up = camera_up(sample.camera_pose)
    assert np.isclose(np.linalg.norm(up), 1.0) and up @ [0.0, 0.0, 1.0] < 0


def test_grasp_set_transformed_moves_poses_and_points_and_rejects_non_rigid_maps():
    pose = torch.eye(4).repeat(1, 2, 1, 1)
    pose[0, 1, :3, 3] = torch.tensor([0.1, 0.0, 0.0])
    grasps = GraspSet(pose, torch.zeros(1, 2, 16), torch.zeros(1, 2, 25), target=torch.zeros(1, 2, 3),
                      pregrasp_pose=pose.clone(), scores=torch.tensor([[2.0, 1.0]]))  # fmt: skip
    t = np.eye(4)
    t[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    t[:3, 3] = [1.0, 2.0, 3.0]
    moved = grasps.transformed(t)
    assert np.allclose(moved.palm_pose[0, 1].numpy(), t @ pose[0, 1].numpy(), atol=1e-6)
    assert np.allclose(moved.palm_pose[0, 1, :3, 3], [1.0, 2.1, 3.0], atol=1e-6)
    assert np.allclose(moved.target[0, 0], [1.0, 2.0, 3.0]) and moved.anchors is None
    assert torch.equal(moved.scores, grasps.scores) and torch.equal(moved.joints, grasps.joints)
    assert np.allclose(moved.transformed(np.linalg.inv(t)).pregrasp_pose, pose, atol=1e-6)
    with pytest.raises(ValueError, match="rigid"):
        grasps.transformed(np.diag([1.0, 1.0, -1.0, 1.0]))  # a reflection
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        grasps.transformed(np.eye(3))


def test_demo_plan_writes_world_frame_grasps_whose_numbers_match_the_table(model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["demo-plan", "--model", str(model), "--scenes", "2", "--num-grasps", "3", "--steps", "2",
            "--sampler", "ddim", "--seed", "3", "--png-grasps", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    dataset = ShardDataset(SAMPLE)
    assert [r["view"] for r in summary["scenes"]] == scene_views(dataset, 2) == [0, 2]
    assert summary["settings"]["sampler"] == "ddim" and summary["settings"]["num_grasps"] == 3
    table = _table_rows(printed)
    planner = GraspPlanner.from_pretrained(model)
    for row in summary["scenes"]:
        report = json.loads((out / f"scene_{row['scene_id']:03d}" / "grasps.json").read_text())
        assert (out / f"scene_{row['scene_id']:03d}" / "grasps.png").stat().st_size > 10_000
        grasps, evals = report["grasps"], report["evaluation"]["grasps"]
        # the summary's numbers are the files' numbers
        assert row["grasps"] == len(grasps) == len(evals) >= 1
        assert row["rejected"] == sum(report["rejected"].values()) and row["candidates"] == report["candidates"] == 6
        assert row["top1_success"] == evals[0]["lift.success"]
        assert row["lift_success"] == pytest.approx(np.mean([e["lift.success"] for e in evals]))
        pen = [max(e["lift.penetration_object_mm"], e["lift.penetration_scene_mm"]) for e in evals]
        assert row["penetration_mm"] == pytest.approx(np.mean(pen))
        assert row["plan_ms_p50"] == pytest.approx(np.median(row["plan_ms"]))
        # ... and the printed table's
        cells = table[str(row["scene_id"])]
        assert cells[3:5] == [str(row["grasps"]), str(row["rejected"])]
        assert cells[5] == ("ok" if row["top1_success"] else "fail")
        assert cells[6] == f"{100 * row['lift_success']:.1f}" and cells[7] == f"{row['penetration_mm']:.2f}"
        # the JSON is in the scene's world frame: world <- camera applied to what the planner
        # returns for the camera-frame cloud, targets on the world-frame cloud (table top z = 0)
        sample = dataset[row["view"]]
        cam = np.asarray(report["view"]["camera_pose"])
        assert np.allclose(cam, sample.camera_pose)
        direct = planner.plan(sample.points, 3, steps=2, sampler="ddim", seed=3, up=camera_up(cam))
        expect = cam @ direct.palm_pose[0].double().numpy()
        assert np.allclose([g["palm_pose"] for g in grasps], expect, atol=1e-5)
        assert np.allclose([g["pregrasp_pose"] for g in grasps], cam @ direct.pregrasp_pose[0].double().numpy(),
                           atol=1e-5)  # fmt: skip
        cloud_world = sample.points @ cam[:3, :3].T + cam[:3, 3]
        targets = np.asarray([g["target_point"] for g in grasps])
        assert np.linalg.norm(targets[:, None] - cloud_world[None], axis=-1).min(1).max() < 0.01
        assert targets[:, 2].min() > -0.01 and np.linalg.norm(cam[:3, 3] - targets, axis=1).min() > 0.2
    total = summary["total"]
    n = sum(r["grasps"] for r in summary["scenes"])
    assert total["grasps"] == n and total["scenes"] == 2
    assert total["lift_success"] == pytest.approx(sum(r["lift_success"] * r["grasps"] for r in summary["scenes"]) / n)
    assert total["top1_success"] == pytest.approx(np.mean([bool(r["top1_success"]) for r in summary["scenes"]]))
    assert table["total"][3] == str(n) and table["total"][6] == f"{100 * total['lift_success']:.1f}"
    assert total["plan_ms_p50"] == pytest.approx(np.median([t for r in summary["scenes"] for t in r["plan_ms"]]))


def test_missing_model_is_a_clear_error_naming_the_path_and_how_to_get_one(tmp_path, capsys):
    assert build_parser().parse_args(["demo-plan"]).model == str(DEFAULT_MODEL_DIR)
    missing = tmp_path / "no_model"
    assert main(["demo-plan", "--model", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and str(DEFAULT_MODEL_DIR) in err and "sceneleap model pack" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--scenes", "0"], "expected 1 <= N <= 4"),
    (["--scenes", "5"], "expected 1 <= N <= 4 (the distinct scenes of the dataset), got 5"),
    (["--num-grasps", "0"], "--num-grasps: expected >= 1, got 0"),
    (["--workers", "0"], "--workers: expected >= 1, got 0"),
])  # fmt: skip
def test_bad_options_are_clear_errors_before_any_work(argv, message, tmp_path, capsys):
    assert main(["demo-plan", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "out"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_scene_views_pick_the_first_view_of_each_scene():
    dataset = ShardDataset(SAMPLE)
    assert scene_views(dataset, 4) == [0, 2, 4, 6] and scene_views(dataset, 1) == [0]
    assert [dataset[i].scene_id for i in scene_views(dataset, 4)] == [0, 1, 2, 3]
