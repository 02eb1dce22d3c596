"""bench/results.py, the held-out results harness: frames (grasps planned in a view's camera frame
lift-tested in its scene's world), a 2-view x 2-method run whose table and markdown agree with its
results.json, and the small pieces (methods, views, diversity). Composed test-split scenes of the
bundled library as the held-out set; a tiny random model as the learned planner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _bench_common import compose_test_scenes, load_bench_script
from _infer_common import save_tiny

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _harness():
    """bench/results.py as a module."""
    return load_bench_script("results")


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    """2 composed scenes of unseen (test-split) objects, one view each, as `sceneleap scenes compose` writes."""
    return compose_test_scenes(tmp_path_factory.mktemp("heldout"), num_scenes=2, views=1, seed=3)


def test_ground_truth_grasps_lift_through_the_frame_conversion_and_shifted_ones_do_not(heldout):
    from sceneleap_core.data.export import sample_world_grasps
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    r = _harness()
    ev = SimLiftEvaluator(heldout)
    for index in range(len(ev.dataset)):
        s = ev.dataset[index]
        pose, joints = s.grasp_pose[:6].astype(np.float64), s.grasp_joints[:6]
        # the conversion is the dataset's own camera -> world map of its grasps
        np.testing.assert_allclose(r.grasps_to_world(s.camera_pose, pose), sample_world_grasps(s)[0][:6], atol=1e-9)
        ok = r.lift_test(ev, index, pose, joints, disturbance=index == 0)
        assert ok["success"].all(), ok["failure"]  # planned in the camera frame, tested in the world: they lift
        if index == 0:  # library grasps passed the disturbance test on their object alone when built
            assert len(ok["disturbance"]) == 6 and np.mean(ok["disturbance"]) >= 0.5, ok["disturbance"]
            far = pose.copy()
            far[:, :3, 3] += [0.0, 0.0, 0.04]
            assert not any(r.lift_test(ev, index, far, joints, disturbance=True)["disturbance"])
        for shift in ([0.04, 0, 0], [0, 0, 0.04]):  # 4 cm off in the camera frame: none lifts
            moved = pose.copy()
            moved[:, :3, 3] += shift
            assert not r.lift_test(ev, index, moved, joints)["success"].any()
    assert r.lift_test(ev, 0, np.zeros((0, 4, 4)), np.zeros((0, 16)))["success"].shape == (0,)


def test_two_views_two_methods_run_and_the_table_agrees_with_the_json(heldout, tmp_path, capsys):
    r = _harness()
    model = save_tiny(tmp_path / "model", num_points=256)
    out, md = tmp_path / "out", tmp_path / "RESULTS.md"
    md.write_text("# Results\n")
    argv = [str(heldout), "--model", str(model), "--methods", "ddim:2,baseline", "--views", "2", "--grasps", "4",
            "--device", "cpu", "--out", str(out), "--markdown", str(md), "--latency-g", "4", "--latency-repeats", "1"]  # fmt: skip
    assert r.main(argv) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["ddim:2", "baseline"] and res["views"] == [0, 1] and res["grasps"] == 4
    for m in res["methods"].values():
        views = m["per_view"]
        assert [v["view"] for v in views] == [0, 1]
        assert all(v["returned"] == len(v["success"]) == len(v["penetration_mm"]) <= 4 for v in views)
        assert m["summary"] == r.json_safe(r.summarize(views))  # a function of the stored raw figures
        s = m["summary"]
        assert s["top1_lift"] == np.mean([bool(v["success"] and v["success"][0]) for v in views])
        flat = [x for v in views for x in v["success"]]
        assert s["mean_lift"] == (np.mean(flat) if flat else s["mean_lift"])
        assert s["latency_p50_ms"] == float(np.median([v["latency_ms"] for v in views]))
        assert s["rejected"] == np.mean([sum(v["rejected"].values()) for v in views])
    rows = r.table_rows(res)
    for row in rows:  # every printed cell is the json's number, formatted
        assert all(cell in printed for cell in row)
    text = md.read_text()
    assert text.startswith("# Results\n\n## bench/results.py on held-out scenes") and res["command"] in text
    assert all("| " + " | ".join(row) + " |" in text for row in rows)
    assert set(res["latency_vs_g"]) == {"ddim:2", "baseline"} and set(res["latency_vs_g"]["baseline"]) == {"4"}
    assert (out / "success_vs_steps.png").stat().st_size > 0 and (out / "latency_vs_g.png").stat().st_size > 0
    # learned methods without a model: a clear error, no traceback
    assert r.main([str(heldout), "--methods", "ddim:2", "--views", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--model" in capsys.readouterr().err


def test_methods_views_and_diversity():
    r = _harness()
    ms = r.parse_methods("ddpm:100,ddim:10,baseline")
    assert [(m.sampler, m.steps, m.learned) for m in ms] == [("ddpm", 100, True), ("ddim", 10, True), (None, 0, False)]
    other = r.parse_methods("ddim:10,cvae:1@runs/cvae/model")  # a method with its own model directory
    assert [(m.sampler, m.steps, m.model) for m in other] == [("ddim", 10, None), ("cvae", 1, "runs/cvae/model")]
    over = r.parse_methods("ddim:10x4,ddim:10x1.5@m,ddim:10")  # candidates per returned grasp
    assert [(m.steps, m.oversample, m.model) for m in over] == [(10, 4.0, None), (10, 1.5, "m"), (10, None, None)]
    temps = r.parse_methods("ddim:10t0.5,ddim:10x4t0,dpmpp:5")  # sampler temperatures
    assert [(m.steps, m.oversample, m.temperature) for m in temps] == [(10, None, 0.5), (10, 4.0, 0.0), (5, None, None)]
    guided = r.parse_methods("ddim:10g1.3,ddim:10x4t0.5g2@m,ddim:10t0.5")  # classifier-free guidance scales
    assert [(m.oversample, m.temperature, m.guidance, m.model) for m in guided] == [
        (None, None, 1.3, None), (4.0, 0.5, 2.0, "m"), (None, 0.5, None, None)]  # fmt: skip
    for bad in (
        "ddim",
        "ddim:0",
        "ddim:x",
        "",
        "ddim:2,ddim:2",
        "cvae:1@",
        "ddim:10x",
        "ddim:10x0.5",
        "ddim:10xa",
        "ddim:10t",
        "ddim:10g",
        "ddim:10ga",
        "ddim:10g-1",
        "ddim:10g1.3t0.5",
        "ddim:10t-1",
        "ddim:10ta",
    ):
        with pytest.raises(ValueError):
            r.parse_methods(bad)
    v = r.pick_views(100, 8, seed=1)
    assert len(set(v.tolist())) == 8 and all(
        100 * k // 8 <= x < 100 * (k + 1) // 8 for k, x in enumerate(v)
    )  # one per slice
    np.testing.assert_array_equal(v, r.pick_views(100, 8, seed=1))
    assert not np.array_equal(v, r.pick_views(100, 8, seed=2))
    np.testing.assert_array_equal(r.pick_views(3, 8), [0, 1, 2])
    a, b = np.eye(4), np.eye(4)
    b[:3, 3] = [0.03, 0.04, 0.0]
    b[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    mm, deg = r.diversity(np.stack([a, b]))
    assert mm == pytest.approx(50.0) and deg == pytest.approx(90.0)
    assert all(x != x for x in r.diversity(a[None]))  # NaN for one grasp


def test_key_values_typed_by_a_schema_or_by_their_look():
    from sceneleap_core.infer.postprocess import PostConfig

    _harness()
    from key_values import backend_spec, parse_key_values

    assert backend_spec("cuda_graph:tf32") == ("cuda_graph", {"graph_precision": "tf32"})
    assert backend_spec("eager") == ("eager", {})
    assert backend_spec("cuda_graph:tf32:eager-post") == (
        "cuda_graph",
        {"graph_precision": "tf32", "graph_post": False},
    )
    assert backend_spec("cuda_graph::eager-post") == ("cuda_graph", {"graph_post": False})
    assert backend_spec("cuda_graph:tf32:host-prepare") == (
        "cuda_graph",
        {"graph_precision": "tf32", "prepare_on_device": False},
    )
    assert backend_spec("eager::device-prepare") == ("eager", {"prepare_on_device": True})
    assert backend_spec("cuda_graph:bf16:compile:eager-post") == (
        "cuda_graph",
        {"graph_precision": "bf16", "graph_compile": True, "graph_post": False},
    )
    assert backend_spec("cuda_graph:tf32:unfused-depth") == (
        "cuda_graph",
        {"graph_precision": "tf32", "post": {"fused_depth": False}},
    )
    with pytest.raises(ValueError, match="unknown backend flag 'fast'"):
        backend_spec("cuda_graph:tf32:fast")
    post = parse_key_values(["refine_steps=3", "filter=no", "pregrasp_distance=0.2"], "--post", PostConfig())
    assert post == {"refine_steps": 3, "filter": False, "pregrasp_distance": 0.2}
    assert isinstance(post["refine_steps"], int) and isinstance(post["pregrasp_distance"], float)
    with pytest.raises(ValueError, match=r"--post: expected KEY=VALUE with KEY a field of PostConfig, got 'nope=1'"):
        parse_key_values(["nope=1"], "--post", PostConfig())
    with pytest.raises(ValueError, match=r"--post: expected type int in 'refine_steps=x'"):
        parse_key_values(["refine_steps=x"], "--post", PostConfig())
    free = parse_key_values(["anchor=seed", "d_model=288", "lr=3e-4", "anchor_scene=True"], "--model-args")
    assert free == {"anchor": "seed", "d_model": 288, "lr": 3e-4, "anchor_scene": True}
    with pytest.raises(ValueError, match="--model-args: expected KEY=VALUE"):
        parse_key_values(["d_model"], "--model-args")


def test_merge_puts_runs_of_the_same_views_side_by_side_and_refuses_others(tmp_path, capsys):
    """--merge: methods of several results.json in one table and plot; sampler families split by the
    candidates per grasp actually sampled; runs of other views are refused with the field named."""
    r = _harness()

    def run(methods, views=(0, 5), device="CPU"):
        per_view = [{"view": v, "scene_id": v, "returned": 2, "success": [True, v == 0], "failure": ["", "slip"],
                     "disturbance": None, "penetration_mm": [1.0, 2.0], "diversity_mm": 10.0, "diversity_deg": 5.0,
                     "latency_ms": 3.0, "timings_ms": {}, "rejected": {"table": 1}, "candidates": 0}
                    for v in views]  # fmt: skip
        out = {}
        for name, (sampler, steps, over, cand) in methods.items():
            pv = [{**v, "candidates": cand} for v in per_view]
            out[name] = {"sampler": sampler, "steps": steps, "oversample": over, "per_view": pv,
                         "summary": r.json_safe(r.summarize(pv))}  # fmt: skip
        return {"date": "2026-12-02 06:00", "command": "c", "machine": "m", "device": "cpu", "device_name": device,
                "dataset": "d", "model": "M", "views": list(views), "grasps": 2, "seed": 0, "up": "camera pose",
                "methods": out, "latency_vs_g": {}}  # fmt: skip

    a = run({"ddim:10": ("ddim", 10, None, 16), "ddim:4x2": ("ddim", 4, 2.0, 4)})
    b = run({"ddim:10": ("ddim", 10, None, 16), "ddpm:100": ("ddpm", 100, None, 16)}, device="H200")
    merged = r.merge_results([a, b], ["a.json", "b.json"])
    assert list(merged["methods"]) == ["ddim:10", "ddim:4x2", "ddim:10 [b.json]", "ddpm:100"]
    assert merged["methods"]["ddim:10 [b.json]"]["device_name"] == "H200" and merged["device_name"] == "CPU + H200"
    fams = r.sampler_families(merged["methods"], merged["grasps"])
    assert sorted(fams) == ["ddim 2x", "ddim 8x", "ddpm 8x"] and len(fams["ddim 8x"]) == 2
    with pytest.raises(ValueError, match="views"):
        r.merge_results([a, run({"ddim:10": ("ddim", 10, None, 16)}, views=(1, 2))], ["a.json", "c.json"])
    files = []
    for name, res in (("a.json", a), ("b.json", b)):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(res))
    out = tmp_path / "merged"
    assert r.main(["--merge", *map(str, files), "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["methods"]) == 4 and (out / "success_vs_steps.png").stat().st_size > 0
    assert "ddpm:100" in capsys.readouterr().out
    assert r.main(["--merge", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "missing.json" in capsys.readouterr().err
