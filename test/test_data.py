"""Data engine: objects, synthesis + physics validation, scenes, camera frames, shards, resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from sceneleap_core.data.objects import KINDS, LibraryObject, build_mesh, load_object_table, make_library


def test_library_watertight_graspable_and_split_by_id(tmp_path):
    from sceneleap_core.data.objects import save_object_table, split_of

    lib = make_library(16)
    assert {o.kind for o in lib} == set(KINDS)
    for spec in lib:
        mesh = build_mesh(spec)
        assert mesh.is_watertight and mesh.volume > 0
        assert 0.024 <= mesh.extents.min() and mesh.extents.max() <= 0.15 + 1e-6
        assert 0.01 <= spec.mass <= 0.6 and spec.split == split_of(spec.id)
    save_object_table(tmp_path / "objects.json", lib)
    assert [o.to_dict() for o in load_object_table(tmp_path)] == [o.to_dict() for o in lib]
    with pytest.raises(ValueError, match="expected"):
        make_library(4, kinds=("teapot",))


@pytest.mark.slow
def test_synthesis_on_box_yields_grasps_that_pass_the_evaluator():
    from sceneleap_core.data.synthesis import GraspSynthesizer, close_fingers, object_geometry, prefilter
    from sceneleap_core.data.validate import SimValidator
    from sceneleap_core.hand import HandModel

    torch.manual_seed(0)
    hand = HandModel.load()
    spec = LibraryObject(0, "box", {"extents": [0.05, 0.06, 0.08]}, mass=0.1, friction=0.7)
    geom = object_geometry(build_mesh(spec))
    syn = GraspSynthesizer(hand, batch_size=32, steps=150)
    start = syn.energy(*syn.initialize(geom, torch.Generator().manual_seed(1)), geom).total
    res = syn.run(geom, generator=torch.Generator().manual_seed(1))
    assert res.energy.total.median() < 0.5 * start.median()
    # close-in post-processing is idempotent: the returned fingers already just touch
    again = close_fingers(hand, res.pose, res.joints, geom)
    assert (again - res.joints).abs().max() < 0.051  # at most one grid step
    ok = prefilter(hand, res, geom).numpy()
    v = SimValidator(protocol="lift")(spec, res.pose.double().numpy()[ok], res.joints.double().numpy()[ok])
    # yield over all synthesized grasps (measured 0.72 with 64 x 200 steps; 0.3 leaves room for noise)
    assert v.success.sum() >= 0.3 * len(ok), f"{ok.sum()} prefiltered, {v.success.sum()} valid, {v.failure}"
    # diversity: validated grasps approach from different directions
    approach = res.pose[ok][torch.as_tensor(v.success)][:, :3, 2]
    assert (approach @ approach.T).min() < 0.0


def test_table_plane_keeps_synthesized_hands_above_the_table():
    from sceneleap_core.data.synthesis import GraspSynthesizer, box_corners, object_geometry, prefilter
    from sceneleap_core.geometry.rotations import rot6d_to_matrix
    from sceneleap_core.hand import HandModel

    hand = HandModel.load()
    spec = LibraryObject(0, "box", {"extents": [0.05, 0.06, 0.08]}, mass=0.1, friction=0.7)
    rest = np.eye(4)
    rest[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # lying on its 5 x 8 cm face: the 6 cm side up
    rest[2, 3] = 0.03
    geom = object_geometry(build_mesh(spec), num_surface=1024, num_pen=256).on_table(rest, table_z=0.0)
    np.testing.assert_allclose(geom.table.numpy(), [0, 1, 0, -0.03], atol=1e-6)  # world +z is object +y
    syn = GraspSynthesizer(hand, batch_size=16, steps=40)
    _, r, _, _ = syn.initialize(geom, torch.Generator().manual_seed(0))
    assert (rot6d_to_matrix(r)[:, :, 2] @ geom.table[:3] > 0.2).all()  # every palm starts above
    res = syn.run(geom, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        below = geom.below_table(box_corners(hand, hand(res.joints, res.pose, validate=False))).amax(-1)
    assert below.median() < 0.003
    ok = prefilter(hand, res, geom)
    assert (below[ok] == 0).all()


def _scene_with_box(seed=0):
    from sceneleap_core.data.scenes import settle_scene

    box = LibraryObject(1, "box", {"extents": [0.05, 0.06, 0.08]}, mass=0.1, friction=0.7)
    cyl = LibraryObject(2, "cylinder", {"radius": 0.03, "height": 0.1}, mass=0.1, friction=0.7)
    return settle_scene(0, [box, cyl], np.random.default_rng(seed))


def test_scene_grasps_do_not_collide_with_the_table():
    from sceneleap_core.data.scenes import filter_scene_grasps
    from sceneleap_core.geometry.rotations import make_transform, random_rotation
    from sceneleap_core.hand import HandModel

    hand = HandModel.load()
    scene = _scene_with_box()
    assert len(scene.objects) >= 1 and (scene.poses[:, 2, 3] > 0).all()
    g = torch.Generator().manual_seed(0)
    n = 128  # palms 9-12 cm from the object centre, any orientation, half of them into the table
    rot = random_rotation(n, generator=g, dtype=torch.float64)
    pose = make_transform(rot, 0.1 * rot[:, :, 2]).numpy()  # the object lies along the palm's -z
    joints = np.tile(hand.open_pose.double().numpy(), (n, 1))
    grasps = {o.id: (pose, joints) for o in scene.objects}
    p, q, _ = filter_scene_grasps(hand, scene, grasps, max_per_object=None)
    assert 0 < len(p) < n * len(scene.objects)  # some dropped, some kept
    with torch.no_grad():
        state = hand(torch.as_tensor(q, dtype=torch.float32), torch.as_tensor(p, dtype=torch.float32))
        assert hand.surface_points(state)[..., 2].min() >= scene.table_z - 1e-5


def test_cloud_points_lie_on_object_surfaces_in_the_camera_frame():
    import trimesh

    from sceneleap_core.data.camera import (
        Intrinsics,
        add_depth_noise,
        depth_to_points,
        raycast_depth,
        sample_camera_poses,
    )

    scene = _scene_with_box()
    rng = np.random.default_rng(0)
    intr = Intrinsics.from_fov(160, 120, 60)
    cam = sample_camera_poses(1, rng, distance=(0.5, 0.5))[0]
    geom_obj = scene.geom_object_ids()
    depth, geom = raycast_depth(scene.model, scene.data, cam, intr)
    for noisy, tol in ((depth, 5e-4), (add_depth_noise(depth, rng), 0.006)):  # 5e-4: 32-facet cylinder mesh
        pts, pix = depth_to_points(noisy, intr)
        ids = geom_obj[np.maximum(geom.ravel()[pix], 0)] * (geom.ravel()[pix] >= 0) - (geom.ravel()[pix] < 0)
        world = pts @ cam[:3, :3].T + cam[:3, 3]  # camera -> world with camera_pose
        assert np.median(np.abs(world[ids == -1, 2] - scene.table_z)) < tol  # table top
        for k, spec in enumerate(scene.objects):
            mine = world[ids == spec.id]
            assert len(mine) > 20
            local = (mine - scene.poses[k][:3, 3]) @ scene.poses[k][:3, :3]  # world -> object frame
            _, dist, _ = trimesh.proximity.closest_point(build_mesh(spec), local[:200])
            assert np.median(dist) < tol, (spec.kind, np.median(dist))


class _StopAfter:
    """A stand-in validator (accepts everything) that interrupts the run at its N-th call."""

    name = "test-accept-all"

    def __init__(self, stop_at=None):
        self.calls, self.stop_at = 0, stop_at

    def __call__(self, spec, pose, joints):
        from sceneleap_core.data.validate import ValidationResult

        self.calls += 1
        if self.stop_at is not None and self.calls >= self.stop_at:
            raise KeyboardInterrupt("killed between shards")
        return ValidationResult(np.ones(len(pose), bool), [""] * len(pose))


def test_interrupted_generation_resumes_without_duplicates_or_loss(tmp_path):
    from sceneleap_core.data.pipeline import GenerateConfig, generate
    from sceneleap_core.data.shards import ShardDataset, ShardError, ShardReader

    cfg = GenerateConfig(
        num_scenes=3, scenes_per_shard=1, num_objects=8, objects_per_scene=(1, 1), views_per_scene=2,
        synth_batch=8, synth_steps=2, scene_lift=False, width=64, height=48, max_points=512,
    )  # fmt: skip
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        generate(out, cfg, progress=False, validator=_StopAfter(stop_at=2))
    first = sorted(p.name for p in out.glob("shard_*.h5"))
    assert first == ["shard_00000.h5"]  # the killed shard left nothing under its final name
    (out / "shard_00001.h5.tmp").write_bytes(b"half a shard")  # debris of a kill mid-write
    report = generate(out, cfg, progress=False, validator=_StopAfter())
    assert report["shards_skipped"] == 1 and report["shards_written"] == 2
    ds = ShardDataset(out, verify=True)
    scene_ids = [ds[i].scene_id for i in range(len(ds))]
    assert sorted(scene_ids) == [0, 0, 1, 1, 2, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 6 and len(manifest["shards"]) == 3
    meta = ds.readers[0].metadata
    assert meta["objects"] and meta["generator"]["num_scenes"] == 3
    # grasp frames: camera-frame grasps map back to the same world pose from every view
    s0, s1 = ds[0], ds[1]
    if len(s0.grasp_pose):
        np.testing.assert_allclose(s0.camera_pose @ s0.grasp_pose, s1.camera_pose @ s1.grasp_pose, atol=1e-5)
    # a truncated shard: a clear error naming the file
    bad = out / "shard_00002.h5"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(ShardError, match=r"shard_00002\.h5"):
        ShardReader(bad)
    # parse_shard rejects nonsense
    from sceneleap_core.data.pipeline import parse_shard

    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ValueError, match="expected"):
        parse_shard("4/4")


def test_committed_sample_dataset_reads():
    from pathlib import Path

    from sceneleap_core.data.shards import ShardDataset

    root = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "sample"
    if not (root / "manifest.json").is_file():
        pytest.skip("sample dataset not generated")
    ds = ShardDataset(root, verify=True)
    assert len(ds) >= 2
    s = ds[0]
    assert s.points.shape[1] == 3 and (s.point_object >= -1).all()
    grasps = [len(ds[i].grasp_pose) for i in range(len(ds))]
    assert sum(grasps) > 0 and ds.readers[0].metadata["validator"] == "mujoco-lift"


def test_inside_test_of_a_concave_object_follows_the_mesh():
    """The prefilter's inside test (majority of the nearest samples' planes) agrees with the exact
    mesh containment on a revolved profile with a waist, where one sample's plane often does not."""
    import torch

    from sceneleap_core.data.synthesis import object_geometry

    profile = [[0.037, -0.027], [0.030, -0.016], [0.033, -0.005], [0.027, 0.005], [0.031, 0.016], [0.037, 0.027]]
    mesh = build_mesh(LibraryObject(0, "revolve", {"profile": profile}))
    geom = object_geometry(mesh, seed=0)
    pts = np.random.default_rng(0).uniform(-0.06, 0.06, size=(3000, 3))
    far = np.abs(mesh.nearest.signed_distance(pts)) > 0.003  # away from the sampling resolution
    truth = mesh.contains(pts)
    x = torch.tensor(pts, dtype=torch.float32)[None]
    majority = (geom.inside_depth(x)[0] > 0).numpy()
    nearest_plane = (geom.signed_distance(x)[0][0] < 0).numpy()
    assert (majority != truth)[far].mean() < 0.01
    assert (nearest_plane != truth)[far].mean() > 3 * (majority != truth)[far].mean()


def test_pregrasp_table_check_agrees_with_the_evaluator_gate():
    """The prefilter's geometric pregrasp check (open hand, backed off) takes the evaluator's
    table-penetration gate decision; the roll choice of side initializations clears it."""
    pytest.importorskip("mujoco")
    from sceneleap_core.data.synthesis import GraspSynthesizer, object_geometry, pregrasp_penetration
    from sceneleap_core.data.validate import sim_scene
    from sceneleap_core.geometry.rotations import make_transform, rot6d_to_matrix
    from sceneleap_core.hand import HandModel
    from sceneleap_core.hand.description import HandDescription
    from sceneleap_core.sim.simulator import GraspSim

    hand = HandModel.load()
    spec = LibraryObject(0, "box", {"extents": [0.05, 0.06, 0.08]}, mass=0.1, friction=0.7)
    rest = np.eye(4)
    rest[2, 3] = 0.04
    geom = object_geometry(build_mesh(spec), num_surface=512, num_pen=128).on_table(rest, table_z=0.0)
    depth = {}
    for k in (8, 1):  # (the unrolled poses last: they are checked against the evaluator)
        syn = GraspSynthesizer(hand, batch_size=16, steps=0, side_fraction=1.0, roll_candidates=k)
        t, r, q, _ = syn.initialize(geom, torch.Generator().manual_seed(0))
        pose = make_transform(rot6d_to_matrix(r), t)
        depth[k], _ = pregrasp_penetration(hand, pose, q, geom)
    sim = GraspSim(sim_scene([spec], rest[None], 0.0), hand=HandDescription.load())
    pose, q = pose.double().numpy(), q.double().numpy()
    for g in range(6):  # random-roll side initializations against the evaluator's own check
        world = rest @ pose[g]
        table = sim.hand_penetration(sim.pregrasp_pose(world), sim.open_joints(q[g]))[-1]
        assert (table > 1e-3) == (float(depth[1][g]) > 1e-3), (g, table, float(depth[1][g]))  # same gate decision
    assert (depth[8] > 0.001).sum() < (depth[1] > 0.001).sum()


def _no_synthesis(monkeypatch, hand):
    """generate() without grasp synthesis (no grasps) and with the session's hand model: fast."""
    import sceneleap_core.data.pipeline as pipeline
    from sceneleap_core.hand import HandModel

    monkeypatch.setattr(HandModel, "load", classmethod(lambda cls, *a, **k: hand))
    empty = (np.zeros((0, 4, 4)), np.zeros((0, hand.dof)), {"synthesized": 0, "prefiltered": 0, "valid": 0})
    monkeypatch.setattr(pipeline, "object_grasps", lambda *a, **k: empty)


def test_rerun_regenerates_a_corrupted_shard_and_refuses_other_settings(tmp_path, monkeypatch, hand):
    from dataclasses import replace

    from sceneleap_core.data.pipeline import GenerateConfig, generate
    from sceneleap_core.data.shards import ShardDataset

    _no_synthesis(monkeypatch, hand)
    cfg = GenerateConfig(
        num_scenes=2, scenes_per_shard=1, num_objects=8, objects_per_scene=(1, 1), views_per_scene=1,
        synth_batch=8, synth_steps=2, scene_lift=False, width=48, height=36, max_points=256,
    )  # fmt: skip
    out = tmp_path / "ds"
    generate(out, cfg, progress=False, validator=_StopAfter())
    before = [ShardDataset(out)[i].points for i in range(2)]
    shard = out / "shard_00000.h5"
    data = bytearray(shard.read_bytes())
    data[-50] ^= 0x01  # a bit flip that leaves the file readable
    shard.write_bytes(bytes(data))
    report = generate(out, cfg, progress=False, validator=_StopAfter())
    assert report["shards_written"] == 1 and report["shards_skipped"] == 1  # regenerated, not re-hashed
    ds = ShardDataset(out, verify=True)
    for i in range(2):
        np.testing.assert_array_equal(ds[i].points, before[i])
    # other content settings: refused, naming the setting; runtime settings (workers) may change
    with pytest.raises(ValueError, match=r"other settings.*views_per_scene: 1 -> 2"):
        generate(out, replace(cfg, views_per_scene=2), progress=False, validator=_StopAfter())
    report = generate(out, replace(cfg, workers=2), progress=False, validator=_StopAfter())
    assert report["shards_skipped"] == 2


def test_unreadable_grasp_cache_is_rebuilt_and_dead_temps_are_removed(tmp_path, monkeypatch, hand):
    import subprocess
    import sys

    import sceneleap_core.data.synthesis as synthesis
    from sceneleap_core.data.pipeline import GenerateConfig, generate, object_grasps

    # a stand-in synthesizer: three grasps per round, counted
    runs = []

    class _Result:
        pose = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
        joints = torch.zeros(3, hand.dof, dtype=torch.float64)

    class _Synth:
        def __init__(self, *a, **k):
            pass

        def run(self, geom, generator=None):
            runs.append(1)
            return _Result()

    monkeypatch.setattr(synthesis, "GraspSynthesizer", _Synth)
    monkeypatch.setattr(synthesis, "object_geometry", lambda mesh, seed=0: None)
    monkeypatch.setattr(synthesis, "prefilter", lambda hand, res, geom: torch.ones(len(res.pose), dtype=torch.bool))
    spec = make_library(8, seed=0)[0]
    cfg = GenerateConfig(synth_rounds=1, min_grasps=1)
    cache = tmp_path / "grasps" / f"obj_{spec.id:06d}.npz"
    pose, _, _ = object_grasps(spec, cfg, tmp_path, hand, _StopAfter())
    assert len(pose) == 3 and len(runs) == 1 and cache.is_file()
    object_grasps(spec, cfg, tmp_path, hand, _StopAfter())
    assert len(runs) == 1  # served from the cache
    for debris in (cache.read_bytes()[:40], b""):  # truncated, then 0 bytes: rebuilt, not lost
        cache.write_bytes(debris)
        pose, _, _ = object_grasps(spec, cfg, tmp_path, hand, _StopAfter())
        assert len(pose) == 3 and np.load(cache)["pose"].shape == (3, 4, 4)
    assert len(runs) == 3
    # temps of a killed writer are removed by the next run; a live process's temp stays
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "ds" / "grasps" / f"obj_000001.npz.{int(dead.stdout)}.tmp.npz"
    live = tmp_path / "ds" / "grasps" / f"obj_000002.npz.{os.getpid()}.tmp.npz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    live.write_bytes(b"")
    _no_synthesis(monkeypatch, hand)
    generate(tmp_path / "ds", GenerateConfig(num_scenes=1, num_objects=8, views_per_scene=1, width=32, height=24),
             progress=False, validator=_StopAfter())  # fmt: skip
    assert not stale.exists() and live.exists()
