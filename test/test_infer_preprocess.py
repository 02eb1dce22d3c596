"""Preprocessing of raw clouds for the planner: cleaning, crop, voxels, support plane, clear errors."""

import numpy as np
import pytest
import torch
from _infer_common import tabletop as _tabletop
from _infer_common import tiny_planner as _planner

from sceneleap_core.infer import preprocess as pp


def test_as_xyz_accepts_extra_channels_and_organized_clouds_and_names_bad_shapes():
    pts = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert np.array_equal(pp.as_xyz(pts), pts[:, :3])
    organized = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    assert pp.as_xyz(torch.tensor(organized)).shape == (6, 3)
    for bad in (np.zeros((5, 2)), np.zeros(7), np.zeros((0, 3))):
        with pytest.raises(ValueError, match="points"):
            pp.as_xyz(bad)


def test_nonfinite_rows_are_dropped_and_all_nan_is_an_error():
    pts = np.ones((5, 3))
    pts[1, 2], pts[3, 0] = np.nan, np.inf
    kept, dropped = pp.drop_nonfinite(pts)
    assert dropped == 2 and kept.shape == (3, 3)
    with pytest.raises(ValueError, match="finite"):
        pp.drop_nonfinite(np.full((4, 3), np.nan))


def test_crop_voxel_and_degenerate_clouds():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (2000, 3))
    inside = pp.crop_box(pts, ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)))
    assert len(inside) < len(pts) and np.abs(inside).max() <= 0.5
    with pytest.raises(ValueError, match="workspace"):
        pp.crop_box(pts, ((2, 2, 2), (3, 3, 3)))
    with pytest.raises(ValueError, match="workspace"):
        pp.crop_box(pts, ((1, 0, 0), (0, 1, 1)))
    vox = pp.voxel_downsample(pts, 0.5)
    assert len(vox) <= 4 * 4 * 4 and len(vox) > 30
    # each voxel's point is the centroid of its members: inside the cell
    cell = np.floor((vox - pts.min(0)) / 0.5)
    assert len(np.unique(cell, axis=0)) == len(vox)
    assert pp.voxel_downsample(pts, 0.0) is pts
    with pytest.raises(ValueError, match="at least"):
        pp.check_spread(pts[:5])
    line = np.c_[np.linspace(0, 1, 100), np.zeros(100), np.zeros(100)]
    with pytest.raises(ValueError, match="degenerate"):
        pp.check_spread(line)
    pp.check_spread(pts)


def test_support_plane_found_on_a_tabletop_and_refused_for_one_object():
    pts, _ = _tabletop(n_table=800, n_box=300)
    plane = pp.support_plane(pts, seed=0)
    assert plane is not None and abs(abs(plane.normal[2]) - 1) < 1e-2
    assert abs(plane.height(np.array([[0.0, 0.0, -0.5]]))[0]) < 0.004
    assert plane.height(np.array([[0.0, 0.0, -0.4]]))[0] > 0.09, "oriented up, towards the camera"
    given = pp.support_plane(pts, np.array([0.0, 0.0, 1.0]))
    assert abs(given.offset + 0.5) < 0.003
    rng = np.random.default_rng(1)  # a lone sphere: no face of it holds the cloud up
    ball = rng.normal(size=(500, 3))
    ball = 0.05 * ball / np.linalg.norm(ball, axis=1, keepdims=True) + [0, 0, -0.5]
    assert pp.support_plane(ball) is None


def test_planner_prepare_cleans_organized_clouds_with_nans_and_crops():
    planner = _planner()
    pts, _ = _tabletop(n_table=800, n_box=300)
    organized = np.full((40, 40, 4), np.nan)  # (H, W, xyz + intensity), holes as NaN
    organized.reshape(-1, 4)[: len(pts), :3] = pts
    organized.reshape(-1, 4)[:, 3] = 7.0
    prep = planner.prepare(organized, seed=0)
    assert prep.stats["input"] == 1600 and prep.stats["nonfinite"] == 1600 - len(pts)
    assert prep.points.shape == (1, 256, 3) and torch.isfinite(prep.points).all()
    assert prep.plane is not None and abs(prep.plane.offset - (-0.5) * np.sign(prep.plane.normal[2])) < 0.01
    # the network points map back onto the cleaned cloud through the frame
    back = prep.points[0].double() @ prep.frame[0, :3, :3].double().T + prep.frame[0, :3, 3].double()
    assert np.allclose(back.numpy(), prep.cloud, atol=1e-4)
    box_only = planner.prepare(pts, workspace=((0.015, -0.04, -0.49), (0.09, 0.04, -0.4)), up=np.array([0, 0, 1.0]))
    assert box_only.stats["cropped"] < 300 and (box_only.cloud[:, 2] > -0.49).all()
    vox = planner.prepare(pts, voxel_size=0.02)
    assert vox.stats["voxel"] < vox.stats["cropped"]
    with pytest.raises(ValueError, match="finite"):
        planner.prepare(np.full((10, 10, 3), np.nan))
    with pytest.raises(ValueError, match="degenerate"):
        planner.prepare(np.tile([[0.1, 0.2, 0.3]], (100, 1)))
    with pytest.raises(ValueError, match="points"):
        planner.prepare(pts[:, :2])


def test_estimate_up_finds_a_large_tables_normal_and_refuses_a_line():
    from sceneleap_core.geometry.frames import estimate_up

    rng = np.random.default_rng(4)
    tilt = np.radians(20.0)
    table = np.c_[rng.uniform(-0.3, 0.3, (16000, 2)), np.zeros(16000)]  # more points than the RANSAC probe
    clutter = rng.uniform([-0.1, -0.1, 0.0], [0.1, 0.1, 0.15], (6000, 3))
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    pts = (np.concatenate([table, clutter]) + rng.normal(0, 0.001, (22000, 3))) @ rot.T + [0, 0, -0.7]
    up = estimate_up(pts, seed=1)
    assert np.degrees(np.arccos(np.clip(up @ (rot @ [0, 0, 1.0]), -1, 1))) < 1.0
    line = np.c_[np.linspace(0, 1, 50), np.zeros(50), np.zeros(50)]
    with pytest.raises(ValueError, match="collinear"):
        estimate_up(line)


def test_smallest_eigenvector_in_closed_form_matches_eigh():
    from sceneleap_core.infer.device_prepare import smallest_eigenvector

    rng = np.random.default_rng(3)
    a = rng.normal(size=(64, 3, 3))
    cov = a @ a.transpose(0, 2, 1)
    cov[:8] = np.diag([1.0, 1.0, 1e-6])  # a flat plane: two equal eigenvalues above the smallest
    vec = smallest_eigenvector(torch.tensor(cov)).numpy()
    ref = np.linalg.eigh(cov)[1][..., 0]
    assert np.allclose(np.abs((vec * ref).sum(-1)), 1.0, atol=1e-6)
    assert np.allclose(np.linalg.norm(vec, axis=-1), 1.0)


def test_preparing_on_the_device_agrees_with_the_host_steps():
    """The torch steps (CPU here; the same code runs on CUDA) find the host's plane and frame and
    keep its counts and its errors; only their random draws differ."""
    from sceneleap_core.infer.device_prepare import prepare_on_device

    pts, _ = _tabletop(n_table=800, n_box=300)
    organized = np.full((40, 40, 4), np.nan)
    organized.reshape(-1, 4)[: len(pts), :3] = pts
    _, host_plane, host_stats = pp.prepare_cloud(organized, 512, seed=0)
    dev = prepare_on_device(organized, 512, "cpu", seed=0, frame="gravity")
    assert dev["stats"] == host_stats
    normal = dev["plane"].normal.numpy()
    assert np.degrees(np.arccos(np.clip(normal @ host_plane.normal, -1, 1))) < 1.0
    assert (
        abs(float(dev["plane"].offset) - host_plane.offset) < 0.003
        and abs(dev["plane"].inliers - host_plane.inliers) < 0.1
    )
    assert normal[2] > 0.99, "oriented up, towards the camera"
    # drawn without replacement from the cleaned points, and the frame maps the network points back
    cloud = dev["cloud"].double().numpy()
    assert len(np.unique(cloud, axis=0)) == 512
    assert np.abs(cloud[:, None] - pts[None]).sum(-1).min(1).max() < 1e-6
    back = dev["net"].double() @ dev["frame"][:3, :3].double().T + dev["frame"][:3, 3].double()
    assert np.allclose(back.numpy(), cloud, atol=1e-5)
    assert np.allclose(dev["up_net"].numpy(), [0, 0, 1], atol=1e-5), "gravity frame: up is +z"
    # fewer usable points than asked: every one of them, each 1 or 2 times
    few = prepare_on_device(pts[:300], 512, "cpu", seed=1, up=np.array([0, 0, 2.0]))
    _, counts = np.unique(few["cloud"].numpy(), axis=0, return_counts=True)
    assert len(counts) == 300 and set(counts) == {1, 2}
    assert np.allclose(few["plane"].normal.numpy(), [0, 0, 1]) and abs(float(few["plane"].offset) + 0.5) < 0.003
    # a crop: the same points kept, and the same verdict on a plane under them as the host's
    crop = {"workspace": ((0.015, -0.04, -0.49), (0.09, 0.04, -0.4)), "up": np.array([0, 0, 1.0])}
    box = prepare_on_device(pts, 256, "cpu", **crop)
    _, host_box, host_box_stats = pp.prepare_cloud(pts, 256, **crop)
    assert box["stats"] == host_box_stats and box["stats"]["cropped"] < 300 and (box["cloud"][:, 2] > -0.49).all()
    assert (box["plane"] is None) == (host_box is None)
    ball = np.random.default_rng(1).normal(size=(500, 3))  # a lone sphere: no face of it holds the cloud up
    ball = 0.05 * ball / np.linalg.norm(ball, axis=1, keepdims=True) + [0, 0, -0.5]
    assert prepare_on_device(ball, 256, "cpu", seed=0)["plane"] is None


def test_preparing_on_the_device_names_the_problems_of_bad_clouds():
    from sceneleap_core.infer.device_prepare import prepare_on_device

    pts, _ = _tabletop(n_table=800, n_box=300)
    line = np.c_[np.linspace(0, 1, 50), np.zeros(50), np.zeros(50)]
    cases = [
        (np.full((10, 10, 3), np.nan), {}, "finite coordinates, got none: all 100"),
        (pts, {"workspace": ((2, 2, 2), (3, 3, 3))}, "workspace: no point of the cloud"),
        (pts, {"workspace": ((1, 0, 0), (0, 1, 1))}, "with min <= max"),
        (pts[:10], {}, "at least 16 usable points, got 10"),
        (np.tile([[0.1, 0.2, 0.3]], (100, 1)), {}, "degenerate"),
        (line, {}, "degenerate"),
        (pts[:, :2], {}, "x, y, z first"),
        (np.zeros((0, 3)), {}, "non-empty"),
    ]
    for cloud, kw, message in cases:
        with pytest.raises(ValueError, match=message):
            prepare_on_device(cloud, 64, "cpu", **kw)
        if "workspace" not in kw or "min <=" in message:  # the host steps say the same
            with pytest.raises(ValueError, match=message):
                pp.prepare_cloud(cloud, 64, **kw)


def test_the_planner_prepares_and_plans_on_the_device_path():
    planner = _planner(prepare_on_device=True)
    pts, _ = _tabletop(n_table=800, n_box=300)
    prep = planner.prepare(pts, seed=0)
    assert isinstance(prep.cloud, torch.Tensor) and prep.points.shape == (1, 256, 3) and prep.plane is not None
    out = planner.plan(pts, 4, steps=2, seed=0)
    assert out.palm_pose.shape[0] == 1 and out.candidates == 8 and torch.isfinite(out.palm_pose).all()
    with pytest.raises(ValueError, match="voxel"):
        planner.prepare(pts, voxel_size=0.02)


@pytest.mark.parametrize("given_up", [False, True])
def test_device_preparation_never_reads_the_device_on_the_host(given_up):
    """What a CUDA graph cannot capture (a host read, a host -> device copy) fails on the meta device
    or is caught by the spy: the fixed-shape preparation runs there whole, RANSAC included."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from sceneleap_core.infer.device_prepare import prepare_tensors, uniform_count
    from sceneleap_core.infer.postprocess import device_constant

    for v in ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)):  # made once, before a capture (its warm-up runs)
        device_constant(v, torch.float64, "meta")
    copies = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs or {})) if isinstance(a, torch.Tensor)]
            copy = func in (torch.ops.aten.copy_.default, torch.ops.aten._to_copy.default)
            if any(a.device.type == "cpu" and (a.dim() > 0 or copy) for a in tensors):
                copies.append(str(func))
            return func(*args, **(kwargs or {}))

    n, p = 3000, 2500  # p > the RANSAC probe: the probe's sort keys are drawn too
    xyz, lo, hi = torch.zeros(n, 3, device="meta"), torch.zeros(3, device="meta"), torch.ones(3, device="meta")
    uniforms = torch.zeros(uniform_count(n, p), device="meta")
    up = torch.zeros(3, device="meta") if given_up else None
    with Spy():
        out = prepare_tensors(xyz, uniforms, lo, hi, up, num_points=p, frame="gravity", center="mean")
    assert not copies, f"host -> device copies inside the graph: {copies}"
    assert out[0].shape == (p, 3) and out[2].shape == (4, 4) and out[-1].shape == (20,)


def test_clouds_of_nearby_sizes_share_one_padded_shape_and_keep_their_counts():
    """An unorganized stream changes size every frame: padding with NaN rows to a power of two lets
    one captured graph serve them all, and the counts still describe the cloud as given."""
    from sceneleap_core.infer.device_prepare import DevicePreparer, padded_size

    assert [padded_size(n) for n in (1, 4096, 4097, 20000, 100000)] == [4096, 4096, 8192, 32768, 131072]
    preparer = DevicePreparer(256, frame="gravity")
    shapes = []
    core = preparer._core

    def spy(given):
        run = core(given)

        def wrapped(xyz, *rest):
            shapes.append(tuple(xyz.shape))
            return run(xyz, *rest)

        return wrapped

    preparer._core = spy
    pts, _ = _tabletop(n_table=3000, n_box=1200)
    rows = np.random.default_rng(0).permutation(len(pts))
    for n in (4200, 4150):
        cloud = pts[rows[:n]]
        cloud[::50] = np.nan
        out = preparer(cloud, "cpu", seed=0)
        assert out["stats"]["input"] == n and out["stats"]["nonfinite"] == len(range(0, n, 50))
        assert out["plane"] is not None and torch.isfinite(out["cloud"]).all()
    assert shapes == [(8192, 3), (8192, 3)]
    with pytest.raises(ValueError, match="all 4200 points are NaN"):
        preparer(np.full((4200, 3), np.nan), "cpu")
