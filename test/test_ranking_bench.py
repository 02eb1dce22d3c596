"""bench/ranking.py, the data the learned rankers fit: its --out survives a run cut short (atomic
partial rewrites) and --resume plans only the views that file lacks, ending where an uninterrupted
run ends; a file of another run is refused by name. Two composed test-split scenes of the bundled
library; a tiny random model as the planner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _bench_common import compose_test_scenes, load_bench_script
from _infer_common import save_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ranking():
    """bench/ranking.py as a module."""
    return load_bench_script("ranking")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return compose_test_scenes(tmp_path_factory.mktemp("scenes"), num_scenes=2, views=2, seed=5)


def test_a_cut_run_keeps_its_views_and_resume_ends_where_a_whole_run_ends(scenes, tmp_path, monkeypatch, capsys):
    import sceneleap_core.infer.demo as demo

    r = _ranking()
    model = save_tiny(tmp_path / "model", num_points=256)
    base = ["--model", str(model), "--data", str(scenes), "--views", "3", "--candidates", "6", "--sampler", "ddim",
            "--steps", "2", "--workers", "1", "--device", "cpu", "--save-every", "1"]  # fmt: skip
    whole = tmp_path / "whole.json"
    r.main([*base, "--out", str(whole)])
    full = json.loads(whole.read_text())
    assert full["complete"] and len(full["views"]) == 3 and full["rows"]
    assert sum(len(v["success"]) for v in full["views"]) > 0  # something passed the filter to be lift-tested

    planned, real_plan = [], demo.plan_view

    def cut_after_two(planner, sample, *a, **k):
        if len(planned) == 2:
            raise KeyboardInterrupt
        planned.append(k["seed"])
        return real_plan(planner, sample, *a, **k)

    cut = tmp_path / "cut.json"
    monkeypatch.setattr(demo, "plan_view", cut_after_two)
    with pytest.raises(KeyboardInterrupt):
        r.main([*base, "--out", str(cut)])
    partial = json.loads(cut.read_text())
    assert not partial["complete"] and [v["index"] for v in partial["views"]] == planned
    assert not list(tmp_path.glob("cut.json.tmp*"))  # no temp left behind

    resumed = []
    monkeypatch.setattr(demo, "plan_view", lambda planner, sample, *a, **k: resumed.append(k["seed"]) or real_plan(planner, sample, *a, **k))  # fmt: skip
    r.main([*base, "--out", str(cut), "--resume"])
    assert "2 views done, 1 to go" in capsys.readouterr().out
    done = json.loads(cut.read_text())
    assert len(resumed) == 1 and resumed[0] not in planned and done["complete"]
    assert [v["index"] for v in done["views"]] == [v["index"] for v in full["views"]]
    for a, b in zip(done["views"], full["views"], strict=True):  # same seeds per view: the same grasps and outcomes
        assert a["success"] == b["success"]
        np.testing.assert_allclose(a["pose"], b["pose"], atol=1e-5)


def test_resume_refuses_a_file_of_another_run(scenes, tmp_path):
    r = _ranking()
    model = save_tiny(tmp_path / "model", num_points=256)
    out = tmp_path / "rank.json"
    args = ["--model", str(model), "--data", str(scenes), "--views", "1", "--candidates", "4", "--sampler", "ddim",
            "--steps", "2", "--workers", "1", "--device", "cpu", "--out", str(out)]  # fmt: skip
    r.main(args)
    with pytest.raises(ValueError, match="candidates: 4 there, 8 now"):
        r.main([*args, "--resume", "--candidates", "8"])
    out.write_text(json.dumps({"views": []}))
    with pytest.raises(ValueError, match="no run settings"):
        r.main([*args, "--resume"])
    with pytest.raises(SystemExit):
        r.main([*args[:-2], "--resume"])  # --resume without --out
    views = r.views_from_json([{"index": 0, "success": [], "pose": [], "joints": [], "terms": {"total": []}}])
    assert views[0]["pose"].shape == (0, 4, 4) and views[0]["joints"].shape == (0, 16)
