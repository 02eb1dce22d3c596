"""Scenes composed from the grasp library: placement, the collision filter, the depth camera, the
shard round trip and the on-the-fly dataset (CPU, the committed sample dataset as the library)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sceneleap_core.data.compose import SceneComposer, library_from_dataset, render_samples
from sceneleap_core.data.depth import DepthCamera, Workspace, apply_sensor, observe, render_depth
from sceneleap_core.data.library import GraspLibrary
from sceneleap_core.data.shards import ShardReader, ShardWriter
from sceneleap_core.hand import HandModel

SAMPLE = "sceneleap_core/data/sample"


@pytest.fixture(scope="module")
def hand():
    return HandModel.load()


@pytest.fixture(scope="module")
def library(hand):
    return library_from_dataset(SAMPLE, hand)


@pytest.fixture(scope="module")
def composer(library, hand):
    return SceneComposer(library, "train", hand, "cpu")


def test_placement_never_overlaps(composer):
    for k in range(40):
        objects, rests, poses = composer.place(np.random.default_rng([1, k]))
        assert 1 <= len(objects) <= 8 and len({o.id for o in objects}) == len(objects)
        r = np.array([composer.footprint(int(x)) for x in rests])
        xy = poses[:, :2, 3]
        gap = np.linalg.norm(xy[:, None] - xy[None], axis=-1) - r[:, None] - r[None]
        assert (gap[~np.eye(len(r), dtype=bool)] >= composer.placement_margin - 1e-9).all()
        assert (np.abs(xy) + r[:, None] <= np.asarray(composer.placement_half) + 1e-9).all()
        assert np.abs(poses[:, 2, 3] - composer.library.rest_pose[rests][:, 2, 3]).max() < 1e-12


def test_library_grasps_survive_alone_and_neighbour_on_the_sweep_drops_them(composer, library, hand):
    # single-object scenes: most library grasps survive (only table checks can drop them)
    rng = np.random.default_rng(0)
    survive = composer.static_checks(np.arange(library.num_grasps))
    assert survive.mean() > 0.6  # weak sample data: a quarter of its grasps close fingers into the table
    g = int(np.flatnonzero(survive)[0])
    rest = int(library.grasp_rest[g])
    target = library.object(int(library.rest_object[rest]))
    other = next(o for o in library.objects if o.id != target.id)
    pose_t = library.rest_pose[rest]
    cand, _, keep, _ = composer.filter_scene([target], np.array([rest]), pose_t[None], rng)
    assert keep[cand == g].all()
    # a neighbour centred on the open hand's path, halfway between pregrasp and grasp
    world = pose_t @ library.grasp_pose[g]
    axis = world[:3, :3] @ hand.approach_axis.double().numpy()
    other_rest = int(library.rests_of(other.id)[0])
    pose_o = library.rest_pose[other_rest].copy()
    pose_o[:3, 3] += world[:3, 3] - 0.05 * axis - pose_o[:3, 3]
    cand, _, keep, stats = composer.filter_scene(
        [target, other], np.array([rest, other_rest]), np.stack([pose_t, pose_o]), rng
    )
    assert not keep[cand == g].any() and stats["dropped_neighbour"] > 0


def test_grasp_below_the_table_is_dropped(library, hand):
    g = 0
    rest = int(library.grasp_rest[g])
    rp = library.rest_pose[rest]
    down = np.eye(4)
    down[2, 3] = -0.05
    lowered = np.linalg.inv(rp) @ down @ rp @ library.grasp_pose[g]
    lib = GraspLibrary(
        objects=[library.object(int(library.rest_object[rest]))],
        rest_object=library.rest_object[[rest]],
        rest_pose=rp[None],
        grasp_rest=[0, 0],
        grasp_pose=np.stack([library.grasp_pose[g], lowered]),
        grasp_joints=library.grasp_joints[[g, g]],
        grasp_type=[0, 0],
        grasp_approach=[0, 0],
    )
    split = lib.objects[0].split
    ok = SceneComposer(lib, split, hand).static_checks(np.array([0, 1]))
    assert ok[1] == False  # noqa: E712
    scene = SceneComposer(lib, split, hand, objects_per_scene=(1, 1)).compose(0)
    assert 1 not in scene.grasp_index.tolist()


def _box_mesh(half):
    import trimesh

    m = trimesh.creation.box(extents=2 * np.asarray(half))
    return torch.as_tensor(m.vertices, dtype=torch.float64), torch.as_tensor(m.faces, dtype=torch.int64)


def _down_camera(height):
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, -1.0, -1.0])  # optical z down the world -z
    pose[2, 3] = height
    return torch.as_tensor(pose)[None]


def test_renderer_matches_analytic_depth_and_ids():
    import trimesh

    cam = DepthCamera(width=160, height=120, fx=96.0, fy=96.0, cx=79.5, cy=59.5, noise=False)
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.04)
    meshes = [
        _box_mesh((0.03, 0.03, 0.02)),
        (torch.as_tensor(sphere.vertices), torch.as_tensor(sphere.faces, dtype=torch.int64)),
    ]
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[0, :3, 3] = [0.0, 0.0, 0.02]
    poses[1, :3, 3] = [0.15, 0.0, 0.04]
    depth, index = render_depth(cam, _down_camera(0.8), meshes, torch.as_tensor(poses))
    depth, index = depth[0], index[0]
    rays = cam.rays(dtype=torch.float64)
    # table: plane z = 0 seen from 0.8 m straight above -> depth 0.8 at every table pixel
    table = index == -1
    assert table.float().mean() > 0.3 and (depth[table] - 0.8).abs().max() < 1e-3
    # box top at z = 0.04 -> depth 0.76 (pixels well inside the top face)
    assert (depth[index == 0] - 0.76).abs().max() < 1e-3
    assert (index[57:63, 77:83] == 0).all() and (index == 0).sum() <= 64
    # sphere: analytic ray-sphere intersection (icosphere radius error < 0.3 mm at subdivision 4)
    sel = index == 1
    d = rays[sel]
    c = torch.tensor([0.15, 0.0, 0.8 - 0.04], dtype=torch.float64)  # centre in the camera frame
    b = (d * c).sum(-1)
    dd = (d * d).sum(-1)
    disc = b * b - dd * ((c * c).sum() - 0.04**2)
    t = (b - disc.clamp_min(0).sqrt()) / dd
    inner = disc > 1e-4 * dd  # away from the silhouette
    assert sel.sum() > 50 and (depth[sel][inner] - t[inner]).abs().max() < 1e-3
    # ids never leak: pixels far from both objects are table
    assert (index[:, :20] < 0).all()


def test_noise_statistics_match_the_model():
    cam = DepthCamera(width=200, height=150, fx=120.0, fy=120.0, cx=99.5, cy=74.5, flying_prob=0, edge_dropout=0)
    ideal = torch.full((1, 150, 200), 0.6, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    noisy = apply_sensor(cam, ideal, gen)
    valid = torch.isfinite(noisy)
    assert abs(1 - valid.double().mean().item() - cam.dropout) < 0.003
    err = noisy[valid] - 0.6
    expected = (cam.sigma(torch.tensor(0.6)).item() ** 2 + cam.depth_unit**2 / 12) ** 0.5
    assert abs(err.std().item() / expected - 1) < 0.05 and abs(err.mean().item()) < 1e-4
    # quantized to the depth unit; out of range -> NaN
    assert torch.allclose(noisy[valid] / cam.depth_unit, (noisy[valid] / cam.depth_unit).round(), atol=1e-6)
    assert torch.isnan(apply_sensor(cam, torch.full((1, 4, 4), 1.5, dtype=torch.float64), gen)).all()
    # flying pixels at a depth step lie between the two surfaces
    cam2 = DepthCamera(width=200, height=150, noise=True, flying_prob=1.0, edge_dropout=0, dropout=0, sigma_floor=0)
    cam2.subpixel = 0.0
    step = torch.full((1, 150, 200), 0.9, dtype=torch.float64)
    step[:, :, :100] = 0.5
    out = apply_sensor(cam2, step, gen)
    col = out[0, :, 99]
    assert ((col > 0.5 - 1e-3) & (col < 0.9 + 1e-3)).all() and (col > 0.52).float().mean() > 0.8


def test_composed_sample_round_trips_through_a_shard(composer, tmp_path):
    from sceneleap_core.data.depth import sample_robot_cameras

    rng = np.random.default_rng([0, 3])
    scene = composer.compose(3, rng)
    samples, stats = render_samples(
        composer, scene, sample_robot_cameras(2, rng), camera=DepthCamera(width=320, height=240, fx=191.5,
        fy=191.5, cx=159.5, cy=119.5), seed=3
    )  # fmt: skip
    assert samples and max(stats["points_on_target"]) > 50
    path = tmp_path / "shard_00000.h5"
    with ShardWriter(path, hand="leap_hand_right", dof=16) as w:
        for s in samples:
            w.add(s)
    back = ShardReader(path)[0]
    s = samples[0]
    for key in ("points", "point_object", "camera_pose", "grasp_pose", "grasp_joints", "grasp_object", "object_ids"):
        np.testing.assert_allclose(getattr(back, key), getattr(s, key), atol=1e-6)
    # grasps in the camera frame: back to the world they are the composed ones
    np.testing.assert_allclose(s.camera_pose @ s.grasp_pose, scene.grasp_pose, atol=1e-5)
    assert set(np.unique(s.point_object)) <= set(scene.object_ids.tolist()) | {-1}


def test_on_the_fly_dataset_is_deterministic(library, tmp_path):
    from sceneleap_core.train.composed import ComposedSource

    path = library.save(tmp_path)
    small = {"width": 160, "height": 120, "fx": 96.0, "fy": 96.0, "cx": 79.5, "cy": 59.5}
    kw = {"seed": 7, "length": 10, "camera": small, "objects_per_scene": (1, 3), "max_candidates": 16}
    a, b = ComposedSource(path, "train", **kw), ComposedSource(path, "train", **kw)
    x, y, z = a[2], b[2], a[3]
    np.testing.assert_array_equal(x.points, y.points)
    np.testing.assert_array_equal(x.grasp_pose, y.grasp_pose)
    assert len(x.grasp_pose) > 0
    assert x.points.shape != z.points.shape or not np.array_equal(x.points, z.points)
    import pickle

    c = pickle.loads(pickle.dumps(a))  # what a DataLoader worker receives
    np.testing.assert_array_equal(c[2].points, x.points)


def test_observe_keeps_the_budget():
    cam = DepthCamera(width=160, height=120, fx=96.0, fy=96.0, cx=79.5, cy=59.5, noise=False)
    depth, index = render_depth(cam, _down_camera(0.6), [_box_mesh((0.025, 0.025, 0.025))], torch.eye(4)[None].double())
    pts, ids = observe(cam, _down_camera(0.6)[0], depth[0], index[0], Workspace(max_points=500))
    assert len(pts) == 500 and ((ids == 0) | (ids == -1)).all()


def test_hull_check_drops_a_hand_between_sparse_samples_of_a_neighbour_face(composer, library, hand):
    # a slab neighbour known to the sample check only by its 8 corners (far from the hand) whose
    # face cuts 2 mm into the hand at the grasp: only the convex-hull check sees it
    import trimesh

    from sceneleap_core.data.hand_collision import hand_collisions, hull_planes, sweep_states

    g = int(np.flatnonzero(composer.static_checks(np.arange(library.num_grasps)))[0])
    rest = int(library.grasp_rest[g])
    obj = composer.object_cache(int(library.rest_object[rest]))
    rp = torch.as_tensor(library.rest_pose[rest], dtype=hand.dtype)
    pose = (rp @ torch.as_tensor(library.grasp_pose[g], dtype=hand.dtype))[None]
    joints = torch.as_tensor(library.grasp_joints[g], dtype=hand.dtype)[None]
    poses, q = sweep_states(hand, pose, joints, sweep_steps=5)  # every checked hand state
    rot, ctr = hand.box_poses(hand(q[0], poses[0], validate=False))
    p = composer.patches
    surface = (rot[:, p.box] @ p.points.transpose(1, 2)[None]).transpose(2, 3) + ctr[:, p.box][:, :, None]
    surface = surface.reshape(-1, 3)
    point = surface[surface[:, 0].argmax()]  # the hand's farthest point along world +x
    x_max = float(point[0])

    def run(cut: float, with_hull: bool) -> float:
        half = np.array([0.05, 0.15, 0.15])
        centre = point.double().numpy() + np.array([half[0] - cut + (x_max - float(point[0])), 0.0, 0.0])
        slab = trimesh.creation.box(extents=2 * half)
        slab.apply_translation(centre)
        corners = np.asarray(slab.vertices)  # (8, 3) world
        samples = torch.stack([obj.samples[:8] @ rp[:3, :3].T + rp[:3, 3], torch.as_tensor(corners, dtype=hand.dtype)])
        hull = torch.stack([torch.zeros(6, 4), torch.as_tensor(hull_planes(slab), dtype=hand.dtype)])
        hull[0, :, 3] = 1e9  # the target's hull is never checked
        m = hand_collisions(
            hand,
            pose,
            joints,
            torch.zeros(1, dtype=torch.int64),
            samples,
            torch.stack([rp[:3, 3], torch.as_tensor(centre, dtype=hand.dtype)]),
            torch.tensor([obj.radius, float(np.linalg.norm(half))], dtype=hand.dtype),
            sweep_steps=5,
            clearance=0.003,
            check_target=False,
            hull=hull if with_hull else None,
            patches=p if with_hull else None,
            leaf=8,
        )
        return float(m["other_depth"][0])

    assert run(0.002, with_hull=False) <= 0  # the corners are far: the sample check misses it
    assert run(0.002, with_hull=True) > 0.003  # the hull check sees 2 mm of penetration (+ clearance)
    assert run(-0.01, with_hull=True) <= 0  # 1 cm clear of the hand: kept


def test_hull_planes_contain_the_object_and_stay_tight():
    import trimesh

    from sceneleap_core.data.hand_collision import hull_planes

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.03)  # 1280 facets -> 128 planes
    planes = hull_planes(sphere, 128)
    assert planes.shape == (128, 4)
    assert (np.asarray(sphere.vertices) @ planes[:, :3].T - planes[:, 3]).max() < 1e-9  # contains
    # no point 2 mm outside the sphere is inside the polytope (loose by < 2 mm)
    d = np.random.default_rng(0).normal(size=(4000, 3))
    far = 0.032 * d / np.linalg.norm(d, axis=1, keepdims=True)
    assert ((far @ planes[:, :3].T - planes[:, 3]).max(1) > 0).all()
    box = trimesh.creation.box(extents=[0.02, 0.04, 0.06])
    assert len(hull_planes(box)) == 6  # coplanar facets merged


def test_revalidate_measures_displacement_against_the_no_hand_rollout(composer):
    from sceneleap_core.data.compose import relative_displacement, revalidate

    # the helper: step by step against the baseline, target excluded, the shorter rollout bounds it
    base = np.zeros((5, 3, 3))
    base[:, 1, 2] = -np.linspace(0, 0.0045, 5)  # object 1 settles 4.5 mm on its own
    track = base.copy()
    assert relative_displacement(track, base, target=0) == 0.0
    track[3:, 2, 0] += 0.02  # the hand pushes object 2 by 2 cm
    track[:, 0] += 1.0  # the lifted target is ignored
    assert abs(relative_displacement(track, base, target=0) - 0.02) < 1e-12
    assert relative_displacement(track[:2], base, target=0) == 0.0
    # in MuJoCo: an untouched object reads ~0 mm against the baseline (raw: its settle drift)
    scene = composer.compose(0, np.random.default_rng([0, 0]))
    for key in ("grasp_pose", "grasp_joints", "grasp_object", "grasp_type", "grasp_approach", "grasp_index"):
        setattr(scene, key, getattr(scene, key)[:1])
    ok, disp, info = revalidate(scene, details=True)
    # this grasp lifts its target and touches nothing else: raw ~4.6 mm of settle drift, 0 against the baseline
    assert ok[0] and info["lifted"][0] and info["raw_mm"][0] > 1.0 and disp[0] < 0.5


def test_batched_compose_and_render_match_one_scene_at_a_time(composer):
    from sceneleap_core.data.compose import render_scenes
    from sceneleap_core.data.depth import sample_robot_cameras

    ids = [5, 6, 7]
    batch = composer.compose_batch(ids, [np.random.default_rng([2, i]) for i in ids])
    for i, b in zip(ids, batch, strict=True):
        a = composer.compose(i, np.random.default_rng([2, i]))
        np.testing.assert_array_equal(a.grasp_index, b.grasp_index)
        np.testing.assert_allclose(a.object_pose, b.object_pose)
        assert a.stats["dropped_neighbour"] == b.stats["dropped_neighbour"]
    cam = DepthCamera(width=160, height=120, fx=96.0, fy=96.0, cx=79.5, cy=59.5, noise=False)
    poses = [sample_robot_cameras(2, np.random.default_rng(i)) for i in ids]
    ws = Workspace(voxel=0.0)  # no random subsampling: batch and single renders agree exactly
    together = render_scenes(composer, batch, poses, camera=cam, workspace=ws)
    for scene, p, (samples, _) in zip(batch, poses, together, strict=True):
        alone, _ = render_samples(composer, scene, p, camera=cam, workspace=ws)
        assert len(alone) == len(samples)
        for x, y in zip(alone, samples, strict=True):
            np.testing.assert_array_equal(x.point_object, y.point_object)
            np.testing.assert_allclose(x.points, y.points)
            assert set(np.unique(y.point_object)) <= set(scene.object_ids.tolist()) | {-1}


def test_sweep_states_include_the_close_phase(hand, library):
    from sceneleap_core.data.hand_collision import sweep_states

    pose = torch.as_tensor(library.grasp_pose[:2], dtype=hand.dtype)
    joints = torch.as_tensor(library.grasp_joints[:2], dtype=hand.dtype)
    poses, q = sweep_states(hand, pose, joints, sweep_steps=5, close_steps=3)
    assert poses.shape[1] == q.shape[1] == 5 + 3 + 2
    torch.testing.assert_close(poses[:, 5:], pose[:, None].expand(2, 5, 4, 4))  # close and grasp at the grasp pose
    torch.testing.assert_close(q[:, -1], joints)
    mid = q[:, 5] + 0.5 * (q[:, -1] - q[:, 5])  # open at the grasp pose .. grasp, halfway = close state 2 of 3
    torch.testing.assert_close(q[:, 7], mid)


def test_cli_scenes_compose_writes_shards_and_a_rerun_keeps_finished_ones(tmp_path):
    from pathlib import Path

    from sceneleap_core.cli import main
    from sceneleap_core.data.shards import ShardDataset, write_manifest

    out = tmp_path / "scenes"
    lib = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "library_default"
    args = ["scenes", "compose", "--library", str(lib), "--split", "test",
            "--num-scenes", "2", "--views", "1", "--scenes-per-shard", "1", "--seed", "3", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    shards = sorted(out.glob("shard_*.h5"))
    assert len(shards) == 2
    write_manifest(out, pattern="shard_*.h5")
    ds = ShardDataset(out)
    assert len(ds) == 2 and all(len(ds[i].grasp_pose) > 0 for i in range(2))
    stamps = [p.stat().st_mtime_ns for p in shards]
    assert main(args) == 0  # a re-run keeps the finished, manifest-matching shards
    assert [p.stat().st_mtime_ns for p in shards] == stamps
