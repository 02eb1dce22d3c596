"""Verified self-distillation (sceneleap_core.data.distill): plan, lift-test, keep what lifts."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sceneleap_core.data.distill import DistillConfig, choose_views, distill, distilled_sample
from sceneleap_core.data.shards import Sample, ShardDataset

SAMPLE = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "sample"


def test_choose_views_is_a_seeded_sorted_subset_or_everything():
    a, b = choose_views(100, 10, 3), choose_views(100, 10, 3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 10 and (np.diff(a) > 0).all() and a.max() < 100
    assert not np.array_equal(a, choose_views(100, 10, 4))
    np.testing.assert_array_equal(choose_views(5, None, 0), np.arange(5))
    np.testing.assert_array_equal(choose_views(5, 9, 0), np.arange(5))
    with pytest.raises(ValueError, match="at least one sample"):
        choose_views(0, None, 0)
    with pytest.raises(ValueError, match="views"):
        DistillConfig(views=0)
    with pytest.raises(ValueError, match="num_grasps"):
        DistillConfig(num_grasps=0)


def _sample(g: int = 2) -> Sample:
    eye = np.tile(np.eye(4), (g, 1, 1))
    return Sample(points=np.zeros((5, 3), np.float32), point_object=np.full(5, -1, np.int32), camera_pose=np.eye(4),
                  grasp_pose=eye.astype(np.float32), grasp_joints=np.zeros((g, 16), np.float32),
                  grasp_object=np.full(g, 7, np.int32), scene_id=3, object_ids=np.array([7, 9], np.int32),
                  object_pose=np.tile(np.eye(4), (2, 1, 1)))  # fmt: skip


def test_distilled_sample_keeps_the_lifted_grasps_with_the_objects_they_hold():
    sample = _sample()
    pose = np.tile(np.eye(4), (3, 1, 1))
    pose[:, 0, 3] = [0.1, 0.2, 0.3]
    q = np.arange(3 * 16, dtype=float).reshape(3, 16)
    kept = distilled_sample(sample, pose, q, np.array([True, False, True]), np.array([1, 0, 0]))
    np.testing.assert_allclose(kept.grasp_pose[:, 0, 3], [0.1, 0.3])
    np.testing.assert_allclose(kept.grasp_joints, q[[0, 2]])
    np.testing.assert_array_equal(kept.grasp_object, [9, 7])  # index into object_ids -> the id
    assert kept.scene_id == 3 and kept.points is sample.points
    both = distilled_sample(sample, pose, q, np.array([True, False, False]), np.array([1, 0, 0]),
                            keep_ground_truth=True)  # fmt: skip
    assert len(both.grasp_pose) == 3 and list(both.grasp_object) == [7, 7, 9]  # the view's own first
    both.validate(16)
    assert distilled_sample(sample, pose, q, np.zeros(3, bool), np.zeros(3, int)) is None


class GroundTruthPlanner:
    """Plans a view's own ground-truth grasps (they lift in their scene) followed by one a metre
    above them (it holds nothing); raises on the view in ``fail``."""

    temperature, oversample, guidance = 0.5, 8.0, 1.0

    def __init__(self, dataset, grasps_per_view: int = 2, fail: int | None = None):
        self.dataset, self.g, self.fail, self.calls = dataset, grasps_per_view, fail, []

    def plan(self, points, num_grasps, *, steps, sampler, seed, up):
        index = next(i for i in range(len(self.dataset)) if np.array_equal(self.dataset[i].points, points))
        self.calls.append(index)
        if index == self.fail:
            raise ValueError("points: a degenerate cloud")
        s = self.dataset[index]
        away = s.grasp_pose[:1].copy()
        away[0, :3, 3] += 1.0 * np.asarray(up, np.float32)  # a metre above the table: nothing to hold
        pose = np.concatenate([s.grasp_pose[: self.g], away])
        q = np.concatenate([s.grasp_joints[: self.g], s.grasp_joints[:1]])
        return SimpleNamespace(palm_pose=torch.from_numpy(pose)[None], joints=torch.from_numpy(q)[None])


def test_distill_keeps_what_lifts_writes_a_training_dataset_and_resumes(tmp_path):
    source = ShardDataset(SAMPLE)
    planner = GroundTruthPlanner(source, fail=1)
    cfg = DistillConfig(views=3, num_grasps=3, views_per_shard=2, seed=0)
    views = choose_views(len(source), 3, 0)
    planner.fail = int(views[1])
    out = tmp_path / "distilled"
    stats = distill(planner, SAMPLE, out, cfg, model_name="gt", progress=False)
    assert stats["failed"] == 1 and stats["views"] == 2 and stats["planned"] == 6
    assert stats["lifted"] == 4 and stats["written"] == 2 and stats["shards_written"] == 2  # the far one fails
    assert (out / "objects.json").read_bytes() == (SAMPLE / "objects.json").read_bytes()
    got = ShardDataset(out, verify=True)
    assert len(got) == 2
    for k, index in enumerate(views[[0, 2]]):
        s, ref = got[k], source[int(index)]
        np.testing.assert_allclose(s.grasp_pose, ref.grasp_pose[:2], atol=1e-6)
        np.testing.assert_array_equal(s.grasp_object, ref.grasp_object[:2])
        np.testing.assert_array_equal(s.points, ref.points)
        assert s.scene_id == ref.scene_id
    assert got.readers[0].metadata["distilled"]["model"] == "gt"
    assert json.loads((out / "distill.json").read_text())["views"] == 3
    planner.calls.clear()
    again = distill(planner, SAMPLE, out, cfg, model_name="gt", progress=False)  # resume: both shards there
    assert again["shards_skipped"] == 2 and planner.calls == []
    with pytest.raises(ValueError, match="num_grasps"):
        distill(planner, SAMPLE, out, DistillConfig(views=3, num_grasps=5, views_per_shard=2), model_name="gt",
                progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="other than the source"):
        distill(planner, SAMPLE, SAMPLE, cfg, progress=False)
    split = tmp_path / "split"  # two processes, one output: the same dataset
    parts = [distill(planner, SAMPLE, split, cfg, model_name="gt", shard=(i, 2), progress=False) for i in (0, 1)]
    assert [p["shards_written"] for p in parts] == [1, 1]
    merged = ShardDataset(split, verify=True)
    assert [merged[k].scene_id for k in range(len(merged))] == [got[k].scene_id for k in range(len(got))]
    with pytest.raises(ValueError, match="shard"):
        distill(planner, SAMPLE, tmp_path / "x", cfg, shard=(2, 2), progress=False)


def test_the_cli_distills_with_a_real_planner_and_keeps_ground_truth(tmp_path, capsys):
    from _infer_common import save_tiny

    from sceneleap_core.cli import main

    model = save_tiny(tmp_path / "model")
    out = tmp_path / "d"
    argv = ["data", "distill", str(SAMPLE), "--model", str(model), "--out", str(out), "--views", "2",
            "--grasps", "2", "--steps", "2", "--keep-ground-truth"]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["views"] == 2 and stats["written"] == 2  # the view's own grasps keep even an empty plan
    assert 0 <= stats["lifted"] <= stats["planned"] <= 4  # the planner's filter may return fewer than asked
    got, source = ShardDataset(out), ShardDataset(SAMPLE)
    views = choose_views(len(source), 2, 0)
    own = [source[int(index)].grasp_pose for index in views]
    assert sum(len(got[k].grasp_pose) for k in range(len(got))) == sum(map(len, own)) + stats["lifted"]
    for k, ref in enumerate(own):  # the view's own grasps first, then the random model's that lifted
        np.testing.assert_allclose(got[k].grasp_pose[: len(ref)], ref)
    assert main(["data", "distill", str(SAMPLE), "--model", str(model), "--out", str(tmp_path / "e"),
                 "--grasps", "0"]) == 2  # fmt: skip
    assert "--grasps" in capsys.readouterr().err
