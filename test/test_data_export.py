"""Dataset samples exported for the evaluator: the stored scene grasps lift their objects again."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

import sceneleap_core.data as data_pkg
from sceneleap_core.cli import main
from sceneleap_core.sim import evaluate_grasps, load_grasps, load_scene

SAMPLE = Path(data_pkg.__file__).parent / "sample"


def test_export_round_trips_into_the_evaluator_and_grasps_still_lift(tmp_path, capsys):
    scene_path, grasps_path = tmp_path / "scene.json", tmp_path / "grasps.npz"
    assert (
        main(["data", "export", str(SAMPLE), "--index", "4", "--scene", str(scene_path), "--grasps", str(grasps_path)])
        == 0
    )
    assert "grasps" in capsys.readouterr().out
    scene = load_scene(scene_path)
    batch = load_grasps(grasps_path, num_objects=len(scene.objects))
    assert len(scene.objects) >= 1 and json.loads(scene_path.read_text())["table_height"] == 0.0
    # every stored grasp passed the lift test in its scene when generated: two of them must again
    report = evaluate_grasps(scene, batch.palm_pose[:2], batch.joints[:2], batch.target[:2], protocol="lift")
    assert report.lift.success.all(), report.lift.failure
    # grasps sit at their target: the palm is within 20 cm of the target object's centre
    centres = np.array([o.pose[:3, 3] for o in scene.objects])
    dist = np.linalg.norm(batch.palm_pose[:, :3, 3] - centres[batch.target], axis=1)
    assert dist.max() < 0.2


def test_export_bad_index_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "export", str(SAMPLE), "--index", "99", "--scene", str(tmp_path / "s.json")]) == 2
    assert "expected 0 <= index < 8, got 99" in capsys.readouterr().err
