"""Physics evaluator: hand-built grasps on a 5 cm cube, determinism, input errors, the MJCF, the CLI.

The grasps were found by closing the hand in simulation on a fixed cube from a palm-down pose
(palm −z toward world −z, fingers along +x, thumb on the +y side), reading the joint angles at
contact and backing them off 0.04 rad along the closing direction; the good one succeeds for every
±2 mm shift of the palm, so it is not a knife edge.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # headless renderer when available (read at MuJoCo import)
mujoco = pytest.importorskip("mujoco")

from sceneleap_core.sim import (  # noqa: E402
    ObjectSpec,
    SceneSpec,
    SimConfig,
    evaluate_grasps,
    load_grasps,
    load_scene,
    pregrasp_collides,
    save_grasps,
    scene_to_dict,
)
from sceneleap_core.sim.mjcf import build_scene_xml  # noqa: E402

CUBE_HALF = 0.025
# palm-down enveloping grasp: index/middle/ring hook the cube, thumb closes from the +y side
ENVELOP_Q = [-0.02, 0.35, 0.72, 1.32, 0.02, 0.23, 0.55, 1.24, 0.01, 1.05, 1.61, 1.52, 0.65, 0.74, 0.56, 1.37]
ENVELOP_AT = (-0.01, 0.03, 0.112)
# holds against gravity (lift succeeds) but its contacts do not balance sideways pushes
LOOSE_Q = [-0.03, 0.83, 1.12, 1.21, -0.01, 0.26, 0.38, 1.2, 0.14, 1.01, 1.49, 1.51, 0.76, 0.38, 1.21, 1.38]
LOOSE_AT = (-0.02, 0.045, 0.11)


def palm_at(x: float, y: float, z: float) -> np.ndarray:
    pose = np.eye(4)  # identity rotation: the palm faces world −z
    pose[:3, 3] = [x, y, z]
    return pose


def cube_scene(**kwargs) -> SceneSpec:
    pose = np.eye(4)
    pose[2, 3] = CUBE_HALF
    return SceneSpec([ObjectSpec("box", (CUBE_HALF,) * 3, pose, mass=0.1, object_id="cube")], **kwargs)


CASES = {
    "envelop": (palm_at(*ENVELOP_AT), ENVELOP_Q),
    "far": (palm_at(ENVELOP_AT[0] + 0.10, ENVELOP_AT[1], ENVELOP_AT[2]), ENVELOP_Q),  # 10 cm along +x
    "palm_inside": (palm_at(-0.01, 0.03, 0.045), ENVELOP_Q),  # palm face 3 cm inside the cube
    "loose": (palm_at(*LOOSE_AT), LOOSE_Q),
}


@pytest.fixture(scope="module")
def results():
    poses = np.stack([c[0] for c in CASES.values()])
    joints = np.array([c[1] for c in CASES.values()])
    report = evaluate_grasps(cube_scene(), poses, joints, 0, protocol="both", seed=0)
    return {name: i for i, name in enumerate(CASES)}, report, poses, joints


def test_enveloping_grasp_succeeds_in_both_protocols(results):
    idx, report, _, _ = results
    i = idx["envelop"]
    lift, dist = report.lift, report.disturbance
    assert lift.success[i] and lift.failure[i] == ""
    assert lift.lift_height[i] > 0.15  # carried almost the full 20 cm
    assert dist.success[i]
    assert dist.translation[i].max() < 0.02 and dist.rotation_deg[i].max() < 10
    assert lift.tip_contacts[i] >= 2 and lift.q1[i] > 0.0
    assert lift.penetration_object_mm[i] < 2.0 and lift.penetration_scene_mm[i] < 2.0
    assert lift.pregrasp_penetration_mm[i] == 0.0


def test_hand_ten_centimetres_away_fails(results):
    idx, report, _, _ = results
    i = idx["far"]
    assert not report.lift.success[i] and report.lift.failure[i] == "not_lifted"
    assert abs(report.lift.lift_height[i]) < 0.01  # the cube never left the table
    assert not report.disturbance.success[i]
    assert report.lift.tip_contacts[i] == 0


def test_palm_inside_the_box_fails_on_penetration(results):
    idx, report, _, _ = results
    i = idx["palm_inside"]
    assert report.lift.failure[i] == "grasp_penetration" and not report.lift.success[i]
    assert report.disturbance.failure[i] == "grasp_penetration" and not report.disturbance.success[i]
    assert report.lift.penetration_object_mm[i] > 20.0
    assert report.lift.q1[i] == 0.0  # no quality reported for an interpenetrating grasp


def test_grasp_that_lifts_but_is_pushed_out_sideways_fails_disturbance(results):
    idx, report, _, _ = results
    i = idx["loose"]
    assert report.lift.success[i]
    assert not report.disturbance.success[i] and report.disturbance.failure[i] in ("moved", "rotated")
    sideways = report.disturbance.translation[i, :4]  # +x, -x, +y, -y
    assert sideways.max() >= SimConfig().disturbance_max_translation


def test_same_seed_same_results_and_workers_do_not_matter(results):
    _, report, poses, joints = results
    again = evaluate_grasps(cube_scene(), poses, joints, 0, protocol="both", seed=0, workers=2)
    for name in ("success", "lift_height", "q1", "tip_contacts", "penetration_object_mm"):
        np.testing.assert_array_equal(getattr(report.lift, name), getattr(again.lift, name))
    np.testing.assert_array_equal(report.disturbance.translation, again.disturbance.translation)
    np.testing.assert_array_equal(report.lift.failure, again.lift.failure)


def test_pregrasp_collision_in_clutter():
    scene = cube_scene()
    # a tall box 10 cm above where the envelop grasp's pregrasp palm will be
    blocker = np.eye(4)
    blocker[:3, 3] = [ENVELOP_AT[0] - 0.05, ENVELOP_AT[1] - 0.035, 0.2]
    scene.objects.append(ObjectSpec("box", (0.03, 0.03, 0.02), blocker, object_id="blocker"))
    pose, q = CASES["envelop"]
    hits = pregrasp_collides(scene, pose[None], np.array([q]))
    assert hits.tolist() == [True]
    assert pregrasp_collides(cube_scene(), pose[None], np.array([q])).tolist() == [False]
    report = evaluate_grasps(scene, pose[None], np.array([q]), 0, protocol="lift")
    assert report.lift.failure[0] == "pregrasp_penetration" and not report.lift.success[0]


def test_malformed_inputs_give_clear_errors():
    scene = cube_scene()
    pose, q = CASES["envelop"]
    with pytest.raises(ValueError, match=r"joints: expected shape \(G, 16\), got \(1, 15\)"):
        evaluate_grasps(scene, pose[None], np.array([q[:15]]))
    bad = pose.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="palm_pose: expected finite values, got NaN"):
        evaluate_grasps(scene, bad[None], np.array([q]))
    with pytest.raises(ValueError, match="expected at least one object, got an empty scene"):
        evaluate_grasps(SceneSpec([]), pose[None], np.array([q]))
    with pytest.raises(ValueError, match=r"target: expected object indices in \[0, 1\)"):
        evaluate_grasps(scene, pose[None], np.array([q]), target=3)
    with pytest.raises(ValueError, match="protocol: expected one of"):
        evaluate_grasps(scene, pose[None], np.array([q]), protocol="shake")
    skew = pose.copy()
    skew[0, 0] = 2.0
    with pytest.raises(ValueError, match="expected a rigid transform"):
        evaluate_grasps(scene, skew[None], np.array([q]))
    with pytest.raises(ValueError, match=r"expected within"):
        evaluate_grasps(scene, pose[None], np.array([[5.0] * 16]))
    with pytest.raises(ValueError, match=r"size: expected 3 numbers for a box"):
        SceneSpec([ObjectSpec("box", (0.1,), np.eye(4))]).validate()
    with pytest.raises(ValueError, match="kind: expected one of"):
        SceneSpec([ObjectSpec("torus", (0.1,), np.eye(4))]).validate()
    with pytest.raises(ValueError, match=r"SimConfig\.timestep: expected a positive number"):
        SimConfig(timestep=0.0)


def _l_shape() -> tuple[np.ndarray, np.ndarray]:
    """A non-convex L-shaped prism (two 4x2x2 cm boxes), as a closed triangle mesh."""
    import trimesh

    a = trimesh.creation.box((0.04, 0.02, 0.02))
    b = trimesh.creation.box((0.02, 0.04, 0.02))
    b.apply_translation((-0.01, 0.03, 0))
    mesh = trimesh.boolean.union([a, b], engine="manifold") if trimesh.boolean.engines_available else None
    if mesh is None:
        mesh = trimesh.util.concatenate([a, b])
    return np.asarray(mesh.vertices), np.asarray(mesh.faces)


def test_every_object_kind_builds_and_steps_without_warnings(tmp_path):
    """Menagerie-style model test: all primitives plus convex and CoACD meshes, stepped 1 s with
    control noise; fails on any MuJoCo warning."""
    verts, faces = _l_shape()

    def at(x, y, z):
        pose = np.eye(4)
        pose[:3, 3] = [x, y, z]
        return pose

    scene = SceneSpec(
        [
            ObjectSpec("box", (0.02, 0.03, 0.02), at(0.0, 0.0, 0.02)),
            ObjectSpec("sphere", (0.03,), at(0.15, 0.0, 0.03)),
            ObjectSpec("cylinder", (0.03, 0.04), at(0.0, 0.15, 0.04)),
            ObjectSpec("capsule", (0.02, 0.03), at(-0.15, 0.0, 0.05), mass=0.05, friction=0.2),
            ObjectSpec("mesh", vertices=verts, faces=faces, pose=at(0.0, -0.15, 0.01), convex=True),
            ObjectSpec("mesh", vertices=verts, faces=faces, pose=at(0.15, 0.15, 0.01), convex=False),
        ]
    )
    scene.validate()
    from sceneleap_core.hand.description import HandDescription

    config = SimConfig(cache_dir=str(tmp_path / "coacd"))
    xml = build_scene_xml(scene, HandDescription.load(), config)
    assert "<exclude" in xml and 'group="2"' in xml and 'group="3"' in xml and "<weld" in xml
    model = mujoco.MjModel.from_xml_string(xml)
    assert model.nu == 16 and model.nmocap == 1
    masses = [model.body(f"object_{i}").mass[0] for i in range(6)]
    np.testing.assert_allclose(masses, [0.1, 0.1, 0.1, 0.05, 0.1, 0.1], rtol=1e-6)
    assert sum(1 for g in range(model.ngeom) if model.geom_bodyid[g] == model.body("object_5").id) > 2  # pieces
    assert list((tmp_path / "coacd").glob("*.npz")), "CoACD result was not cached"
    data = mujoco.MjData(model)
    data.mocap_pos[0] = [0.0, 0.0, 0.3]
    data.qpos[:3] = [0.0, 0.0, 0.3]
    rng = np.random.default_rng(0)
    low, high = model.actuator_ctrlrange.T
    for _ in range(500):  # 1 s
        data.ctrl[:] = np.clip(data.ctrl + 0.05 * rng.standard_normal(model.nu), low, high)
        mujoco.mj_step(model, data)
    warnings = {mujoco.mjtWarning(i).name: data.warning[i].number for i in range(len(data.warning))}
    assert not any(warnings.values()), warnings
    assert np.isfinite(data.qpos).all()


def test_scene_json_and_grasps_npz_round_trip(tmp_path):
    scene = cube_scene()
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(scene_to_dict(scene)))
    loaded = load_scene(path)
    assert loaded.objects[0].size == (CUBE_HALF,) * 3 and loaded.table_height == 0.0
    pose, q = CASES["envelop"]
    npz = save_grasps(tmp_path / "g.npz", pose[None], np.array([q]), 0)
    batch = load_grasps(npz, num_objects=1)
    np.testing.assert_array_equal(batch.palm_pose[0], pose)
    # position + quaternion form and a file without 'target'
    np.savez(tmp_path / "pq.npz", palm_position=pose[None, :3, 3], palm_quaternion_xyzw=[[0, 0, 0, 1]], joints=[q])
    np.testing.assert_allclose(load_grasps(tmp_path / "pq.npz", num_objects=1).palm_pose[0], pose)
    np.savez(tmp_path / "bad.npz", joints=[q])
    with pytest.raises(ValueError, match="expected 'palm_pose'"):
        load_grasps(tmp_path / "bad.npz", num_objects=1)
    (tmp_path / "bad.json").write_text('{"objects": [{"kind": "box", "size": [0.1, 0.1, 0.1]}]}')
    with pytest.raises(ValueError, match="expected 'pose'"):
        load_scene(tmp_path / "bad.json")


def test_cli_eval_grasps_table_and_png(tmp_path, capsys):
    from sceneleap_core.cli import main

    scene = cube_scene()
    (tmp_path / "scene.json").write_text(json.dumps(scene_to_dict(scene)))
    poses = np.stack([CASES["envelop"][0], CASES["far"][0]])
    save_grasps(tmp_path / "grasps.npz", poses, np.array([ENVELOP_Q, ENVELOP_Q]), 0)
    png = tmp_path / "why.png"
    args = ["eval-grasps", "--scene", str(tmp_path / "scene.json"), "--grasps", str(tmp_path / "grasps.npz")]
    code = main([*args, "--protocol", "lift", "--no-progress", "--png", str(png), "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert code == 0
    assert "not_lifted" in out and "lift_success 0.500" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "grasp 1" in out  # the first failure is rendered
    assert json.loads((tmp_path / "r.json").read_text())["summary"]["lift_success"] == 0.5
    np.savez(tmp_path / "short.npz", palm_pose=poses, joints=np.zeros((2, 15)))
    assert main([args[0], "--scene", args[2], "--grasps", str(tmp_path / "short.npz")]) == 2
    assert "expected shape (G, 16), got (2, 15)" in capsys.readouterr().err


def test_lift_reports_displacement_of_other_objects():
    """An untouched neighbour stays put (~0 mm); a plate lying on the lifted cube rides along (> 10 mm)."""
    pose, q = CASES["envelop"]
    far = np.eye(4)
    far[:3, 3] = [0.0, -0.25, 0.02]
    plate = np.eye(4)
    plate[:3, 3] = [0.0, 0.0, 2 * CUBE_HALF + 0.005]
    results = {}
    for name, spec in (
        ("far", ObjectSpec("box", (0.02, 0.02, 0.02), far, mass=0.05, object_id="far")),
        ("plate", ObjectSpec("box", (0.012, 0.012, 0.005), plate, mass=0.01, object_id="plate")),
    ):
        scene = cube_scene(table_height=0.0)
        scene.objects.append(spec)
        results[name] = evaluate_grasps(scene, pose[None], np.array([q]), 0, protocol="lift").lift
    assert results["far"].success[0] and results["far"].max_other_displacement_mm[0] < 0.5
    assert results["plate"].success[0] and results["plate"].max_other_displacement_mm[0] > 10.0


def test_corrupt_coacd_cache_is_recomputed(tmp_path, monkeypatch):
    import coacd
    import trimesh

    from sceneleap_core.sim.mjcf import convex_pieces

    calls = []

    def fake_coacd(mesh, **kwargs):  # two box pieces, counted (the decomposition itself is not under test)
        calls.append(1)
        return [(b.vertices, b.faces) for b in (trimesh.creation.box((0.1, 0.02, 0.02)), trimesh.creation.box())]

    monkeypatch.setattr(coacd, "run_coacd", fake_coacd)
    verts, faces = _l_shape()
    obj = ObjectSpec("mesh", vertices=verts, faces=faces, convex=False)
    config = SimConfig(cache_dir=str(tmp_path))
    pieces = convex_pieces(obj, config)
    assert convex_pieces(obj, config) and len(calls) == 1  # cached
    (cached,) = tmp_path.glob("*.npz")
    good = cached.read_bytes()
    for debris in (good[: len(good) // 2], b""):  # a torn or empty file: recomputed, rewritten
        cached.write_bytes(debris)
        again = convex_pieces(obj, config)
        assert len(again) == len(pieces) == 2
        for (v, f), (v2, f2) in zip(pieces, again):
            np.testing.assert_allclose(v2, v)
            np.testing.assert_array_equal(f2, f)
        with np.load(cached) as z:
            assert int(z["count"]) == len(pieces)
    assert len(calls) == 3


def _scene_dict(**obj) -> dict:
    return {"table_height": 0.0, "objects": [{"kind": "box", "size": [0.025] * 3, "position": [0, 0, 0.025], **obj}]}


BAD_SCENES = {
    "table_height": ({**_scene_dict(), "table_height": "abc"}, r"scene\.table_height: expected a number, got 'abc'"),
    "mass": (_scene_dict(mass="x"), r"scene\.objects\[0\]\.mass: expected a number, got 'x'"),
    "objects": ({"objects": 5}, r"scene\.objects: expected a list of objects, got 5"),
    "size_huge": (_scene_dict(size=[1e6, 0.1, 0.1]), r"scene\.objects\[0\]\.size: expected positive numbers up to 10 m"),
    "position_huge": (_scene_dict(position=[1e300, 0, 0]), r"scene\.objects\[0\]\.pose: expected a position within"),
    "position_text": (_scene_dict(position=["a", 0, 0]), r"scene\.objects\[0\]\.position: expected an array of numbers"),
    "garbage_mesh": ({"objects": [{"kind": "mesh", "mesh": "junk.obj", "position": [0, 0, 0]}]}, r"objects\[0\]\.mesh: .*junk\.obj"),
    "bad_index_mesh": ({"objects": [{"kind": "mesh", "mesh": "idx.obj", "position": [0, 0, 0]}]}, r"objects\[0\]\.mesh: .*idx\.obj"),
    "not_a_mesh": ({"objects": [{"kind": "mesh", "mesh": "scene.json", "position": [0, 0, 0]}]}, r"objects\[0\]\.mesh: .*scene\.json"),
}  # fmt: skip


@pytest.mark.parametrize("case", [*BAD_SCENES, "empty_npz", "pose_huge"])
def test_cli_eval_grasps_bad_inputs_exit_2_with_one_line(tmp_path, capsys, case):
    from sceneleap_core.cli import main

    (tmp_path / "junk.obj").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    (tmp_path / "idx.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 99\n")
    scene, pattern = BAD_SCENES.get(case, (_scene_dict(), None))
    (tmp_path / "scene.json").write_text(json.dumps(scene))
    pose, q = CASES["envelop"]
    if case == "pose_huge":
        pose = pose.copy()
        pose[0, 3], pattern = 1e300, r"palm_pose\[0\]: expected a position within"
    save_grasps(tmp_path / "grasps.npz", pose[None], np.array([q]), 0)
    if case == "empty_npz":
        (tmp_path / "grasps.npz").write_bytes(b"")
        pattern = r"grasps .*grasps\.npz: expected an \.npz archive, got an unreadable file"
    args = ["eval-grasps", "--scene", str(tmp_path / "scene.json"), "--grasps", str(tmp_path / "grasps.npz")]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err


def test_cli_eval_grasps_json_is_strict_when_a_grasp_is_not_simulated(tmp_path, capsys):
    from sceneleap_core.cli import main

    (tmp_path / "scene.json").write_text(json.dumps(scene_to_dict(cube_scene())))
    pose, q = CASES["palm_inside"]  # fails the pregrasp gate: never lifted, lift height NaN
    save_grasps(tmp_path / "grasps.npz", pose[None], np.array([q]), 0)
    out = tmp_path / "r.json"
    args = ["eval-grasps", "--scene", str(tmp_path / "scene.json"), "--grasps", str(tmp_path / "grasps.npz")]
    assert main([*args, "--protocol", "lift", "--no-progress", "--json", str(out)]) == 0

    def no_constants(name):
        raise AssertionError(f"bare {name} in the JSON")

    report = json.loads(out.read_text(), parse_constant=no_constants)
    assert report["grasps"][0]["lift.lift_height"] is None and report["summary"]["lift_success"] == 0.0
