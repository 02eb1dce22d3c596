"""``sceneleap plan`` end to end with a tiny random model: cloud file in, ranked table, JSON, picture,
physics evaluation."""

import json

import numpy as np
import pytest
from _infer_common import save_tiny, tabletop

from sceneleap_core.cli import main
from sceneleap_core.infer.cloud_io import write_pcd

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cloud(tmp_path):
    pts, _ = tabletop(n_table=700, n_box=250)
    organized = np.full((1000, 3), np.nan)  # 50 x 20 organized, holes as NaN
    organized[: len(pts)] = pts
    return write_pcd(tmp_path / "scan.pcd", organized, data="binary_compressed", width=50, height=20)


def test_plan_command_writes_ranked_json_and_a_picture(tmp_path, capsys):
    model = save_tiny(tmp_path / "model", num_points=200)
    cloud = _cloud(tmp_path)
    out, png = tmp_path / "g.json", tmp_path / "view.png"
    rc = main(["plan", str(cloud), "--model", str(model), "--out", str(out), "--png", str(png), "--png-grasps", "2",
               "--num-grasps", "4", "--steps", "2", "--sampler", "ddim", "--seed", "1", "--no-filter"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "4 grasps for" in printed and "timings ms" in printed
    report = json.loads(out.read_text())
    grasps = report["grasps"]
    assert [g["rank"] for g in grasps] == [1, 2, 3, 4]
    scores = [g["score"] for g in grasps]
    assert scores == sorted(scores, reverse=True)
    assert len(report["joint_names"]) == 16 and len(grasps[0]["joints"]) == 16
    pose = np.asarray(grasps[0]["palm_pose"])
    assert pose.shape == (4, 4) and np.allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-5)
    assert np.allclose(pose[:3, 3], grasps[0]["position"]) and len(grasps[0]["quaternion_xyzw"]) == 4
    assert np.linalg.norm(np.asarray(grasps[0]["target_point"]) - [0.05, 0, -0.47]) < 0.06, "anchored on the cube"
    assert set(report["timings_ms"]) >= {"prepare", "sample", "filter", "total"}
    assert png.stat().st_size > 10_000
    # filtered (the default): the rejections and the kept grasps account for the candidates
    rc = main(["plan", str(cloud), "--model", str(model), "--out", str(out), "--num-grasps", "4", "--steps", "2",
               "--backend", "cuda_graph", "--graph-precision", "fp32", "--graph-compile"])  # fmt: skip (off CUDA: the eager path)
    report = json.loads(out.read_text())
    assert rc == 0 and len(report["grasps"]) <= 4
    assert report["settings"]["backend"] == "cuda_graph" and report["settings"]["graph_precision"] == "fp32"
    assert report["settings"]["graph_compile"] is True
    assert report["candidates"] == 8 and sum(report["rejected"].values()) <= 8
    assert sum(report["rejected"].values()) + len(report["grasps"]) <= 8


def test_plan_command_reports_bad_input_without_a_traceback(tmp_path, capsys):
    model = save_tiny(tmp_path / "model", num_points=200)
    bad = write_pcd(tmp_path / "nan.pcd", np.full((30, 3), np.nan), data="binary")
    assert main(["plan", str(bad), "--model", str(model), "--out", str(tmp_path / "g.json")]) == 2
    assert "finite" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()
    assert main(["plan", str(tmp_path / "none.ply"), "--model", str(model), "--out", str(tmp_path / "g.json")]) == 2


def test_plan_command_evaluates_the_grasps_in_the_scene(tmp_path):
    model = save_tiny(tmp_path / "model", num_points=200)
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"table_height": -0.5, "objects": [
        {"kind": "box", "size": [0.03, 0.03, 0.03], "position": [0.05, 0.0, -0.47], "object_id": "cube"}]}))  # fmt: skip
    out = tmp_path / "g.json"
    rc = main(["plan", str(_cloud(tmp_path)), "--model", str(model), "--out", str(out), "--eval", str(scene),
               "--num-grasps", "2", "--steps", "2", "--no-filter"])  # fmt: skip
    assert rc == 0
    ev = json.loads(out.read_text())["evaluation"]
    assert len(ev["grasps"]) == 2 and all(isinstance(r["lift.success"], bool) for r in ev["grasps"])
    assert 0.0 <= ev["summary"]["lift_success"] <= 1.0
