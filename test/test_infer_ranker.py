"""The learned grasp ranker: fitting, scoring, its JSON file, and the planner ranking by it."""

import json

import numpy as np
import pytest
import torch
from _infer_common import save_tiny, tabletop, tiny_planner

from sceneleap_core.infer.planner import GraspPlanner
from sceneleap_core.infer.ranker import RANKER_NAME, GraspRanker, fit_ranker, roc_auc, top_k_rate

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fit_ranker_finds_the_feature_that_predicts_success_and_round_trips_through_json(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)) * np.array([1.0, 5.0, 0.01]) + np.array([0.0, 2.0, 1.0])
    y = x[:, 1] - 2.0 + rng.normal(0, 1.0, 600) < 0  # low values of the second feature lift
    ranker = fit_ranker(x, y, ["noise", "depth", "tiny"])
    assert ranker.weights[1] < -1.0 and abs(ranker.weights[0]) < 0.3, ranker.weights
    logits = ranker.score({"noise": torch.tensor(x[:, 0]), "depth": torch.tensor(x[:, 1]), "tiny": torch.tensor(x[:, 2])})
    assert roc_auc(logits.numpy(), y) > 0.9
    path = ranker.save(tmp_path / RANKER_NAME)
    again = GraspRanker.load(path)
    assert again.features == ranker.features and np.allclose(again.weights, ranker.weights)
    with pytest.raises(ValueError, match="gave no"):
        ranker.score({"noise": torch.zeros(3)})
    with pytest.raises(ValueError, match="both successes and failures"):
        fit_ranker(x, np.ones(600, bool), ["noise", "depth", "tiny"])
    (tmp_path / "bad.json").write_text(json.dumps({"features": ["a"], "mean": [0.0]}))
    with pytest.raises(ValueError, match="not a grasp ranker"):
        GraspRanker.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="std > 0"):
        GraspRanker(["a"], [0.0], [0.0], [1.0], 0.0, {})


def test_roc_auc_and_top_k_rate():
    assert roc_auc(np.array([3.0, 2.0, 1.0]), np.array([True, True, False])) == 1.0
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == 0.5
    assert np.isnan(roc_auc(np.array([1.0]), np.array([True])))
    scores = [np.array([0.1, 0.9, 0.5]), np.array([2.0, 1.0]), np.zeros(0)]
    labels = [np.array([True, False, True]), np.array([True, False]), np.zeros(0, bool)]
    assert top_k_rate(scores, labels, 1) == 0.5  # view 1 picks a failure, view 2 a success, view 3 skipped
    assert top_k_rate(scores, labels, 2) == 0.5


def test_planner_ranks_by_the_ranker_and_loads_it_from_the_model_directory(tmp_path):
    pts, _ = tabletop(n_table=800, n_box=300)
    args = {"num_grasps": 6, "steps": 2, "seed": 5, "oversample": 1, "filter": False, "diversity": 0}
    high_first = GraspRanker(["palm_height"], [0.0], [1.0], [1.0], 0.0, {})
    planned = tiny_planner(ranker=high_first).plan(pts, **args)
    height = planned.terms["palm_height"][0]
    assert torch.allclose(planned.scores[0], height, atol=1e-5), "the score is the ranker's logit"
    assert torch.all(height[:-1] >= height[1:]), "highest palm first"
    plain = tiny_planner().plan(pts, **args)
    assert torch.allclose(plain.scores, -plain.terms["total"], atol=1e-5), "no ranker: -energy"
    # the same candidates, only the order differs
    gap = (planned.palm_pose[0][:, None] - plain.palm_pose[0][None]).abs().flatten(2).amax(-1)  # (G, G)
    assert gap.amin(1).max() < 1e-5 and gap.amin(0).max() < 1e-5
    directory = save_tiny(tmp_path / "model")
    assert GraspPlanner.from_pretrained(directory).ranker is None
    GraspRanker(["palm_height"], [0.0], [1.0], [-1.0], 0.0, {}).save(directory / RANKER_NAME)
    low_first = GraspPlanner.from_pretrained(directory).plan(pts, **args)
    assert torch.all(low_first.terms["palm_height"][0][:-1] <= low_first.terms["palm_height"][0][1:])
    assert GraspPlanner.from_pretrained(directory, ranker=None).ranker is None
    needs_score = GraspRanker(["anchor_logit"], [0.0], [1.0], [1.0], 0.0, {})
    assert tiny_planner(ranker=needs_score).ranker is needs_score
    with pytest.raises(ValueError, match="anchor score"):
        tiny_planner(ranker=needs_score, anchor_pool=1)
