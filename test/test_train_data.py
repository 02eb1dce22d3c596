"""Training data: documented shapes, cloud/grasp consistency under augmentation, resumable stream."""

from pathlib import Path

import numpy as np
import pytest
import torch

from sceneleap_core.data.shards import ShardDataset
from sceneleap_core.hand import HandModel, vector_to_pose
from sceneleap_core.infer.planner import to_input_frame
from sceneleap_core.train.config import AugmentConfig, DataConfig
from sceneleap_core.train.data import (
    GraspDataModule,
    GraspSceneDataset,
    StreamSampler,
    fit_normalizer,
    gravity_up_in_camera,
    map_to_camera,
)
from sceneleap_core.train.toy import write_toy_dataset

K, N = 8, 128


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    # 10 scenes x 2 views, 4..12 grasps per scene: some scenes have fewer than K
    return write_toy_dataset(tmp_path_factory.mktemp("toy"), num_scenes=10, views=2, num_points=300, grasps=(4, 12))


@pytest.fixture(scope="module")
def hand():
    return HandModel.load(surface_points=256, dtype=torch.float64)


def rigid_augment(**kw) -> AugmentConfig:
    base = dict(rotate_gravity=True, jitter_sigma=0.0, scale_min=1.0, scale_max=1.0, dropout_prob=1.0, dropout_holes=2)
    return AugmentConfig(**{**base, **kw})


def test_datamodule_yields_documented_shapes(toy_root):
    cfg = DataConfig(root=str(toy_root), num_points=N, num_grasps=K, batch_size=3, num_workers=0, val_fraction=0.2)
    dm = GraspDataModule(cfg, seed=0, max_steps=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["points"].shape == (3, N, 3) and batch["points"].dtype == torch.float32
    assert batch["grasps"].shape == (3, K, 25) and batch["grasps"].dtype == torch.float32
    assert batch["grasp_mask"].shape == (3, K) and batch["grasp_mask"].dtype == torch.bool
    assert batch["frame"].shape == (3, 4, 4) and batch["up"].shape == (3, 3)
    assert batch["scene_id"].shape == (3,) and batch["index"].dtype == torch.int64
    assert len(dm.train_dataloader()) == 4  # the stream is sized to the steps left
    few = GraspDataModule(DataConfig(root=str(toy_root), num_points=N, num_grasps=K, val_fraction=0.2, train_samples=3))
    few.setup("fit")
    assert len(few.train_set) == 3 and list(few.train_set.indices) == list(dm.train_set.indices[:3])
    assert batch["up"][:, 2].min() > 0.999  # gravity frame (default): world up is +z of the network
    # validation: held-out scenes only (split by scene, views of one scene stay together)
    val = next(iter(dm.val_dataloader()))
    train_scenes = {int(dm.train_set.source[int(i)].scene_id) for i in dm.train_set.indices}
    assert not set(val["scene_id"].tolist()) & train_scenes
    assert len(dm.train_set) + len(dm.val_set) == 20 and len(dm.val_set) == 4
    # masks mark repeats when a scene has fewer than K grasps
    src = ShardDataset(toy_root)
    for local in range(len(dm.train_set)):
        item = dm.train_set[local]
        g = len(src[int(dm.train_set.indices[local])].grasp_pose)
        assert int(item["grasp_mask"].sum()) == min(g, K)


def test_augmentation_keeps_cloud_and_grasps_consistent(toy_root, hand):
    src = ShardDataset(toy_root)
    plain = GraspSceneDataset(src, num_points=N, num_grasps=K, augment=None)
    aug = GraspSceneDataset(src, num_points=N, num_grasps=K, augment=rigid_augment())
    angles = []
    for position in range(6):
        index = position % len(src)
        s = src[index]
        item = aug[(index, position)]
        frame = item["frame"].double()[None]
        # 1. the cloud maps back onto a subset of the camera-frame cloud (holes removed some points)
        back = map_to_camera(frame, item["points"].double()[None])[0]
        d = torch.cdist(back, torch.from_numpy(s.points).double()).min(dim=1).values
        assert d.max() < 1e-5
        # 2. grasps map back onto the scene's camera-frame grasps
        pose, joints = vector_to_pose(item["grasps"].double(), 16)
        pose_cam = to_input_frame(frame, pose[None])[0]
        err = (pose_cam[:, None] - torch.from_numpy(s.grasp_pose).double()[None]).abs().amax(dim=(-1, -2))
        assert err.min(dim=1).values.max() < 1e-5
        # 3. hand surface points keep their distance to the cloud (network frame vs camera frame)
        net = hand.surface_points(hand(joints, pose))
        cam = hand.surface_points(hand(joints, pose_cam))
        d_net = torch.cdist(net, item["points"].double()[None].expand(K, -1, -1)).min(-1).values
        d_cam = torch.cdist(cam, back[None].expand(K, -1, -1)).min(-1).values
        torch.testing.assert_close(d_net, d_cam, atol=1e-5, rtol=0)
        # 4. the rotation is about gravity: heights above the cloud centre are unchanged
        up = torch.from_numpy(gravity_up_in_camera(s.camera_pose))
        centre = frame[0, :3, 3]
        torch.testing.assert_close(item["points"].double() @ up, (back - centre) @ up, atol=1e-5, rtol=0)
        torch.testing.assert_close(item["up"].double(), up, atol=1e-5, rtol=0)  # up is a fixed axis
        # 5. the cloud is centred
        assert item["points"].mean(0).norm() < 1e-5
        # angle of the rotation, from the frame's x axis projected off the up axis
        angles.append(
            float(
                torch.acos(
                    (
                        (frame[0, :3, :3].T @ torch.eye(3, dtype=torch.float64)[0])
                        @ torch.eye(3, dtype=torch.float64)[0]
                    ).clamp(-1, 1)
                )
            )
        )
    assert np.ptp(angles) > 0.3  # rotations actually vary
    # without augmentation the rotation is the identity
    item = plain[0]
    torch.testing.assert_close(item["frame"][:3, :3], torch.eye(3))


def test_jitter_and_scale_are_bounded_and_invertible(toy_root):
    src = ShardDataset(toy_root)
    aug = rigid_augment(jitter_sigma=0.003, jitter_clip=0.004, scale_min=0.8, scale_max=1.2, dropout_prob=0.0)
    ds = GraspSceneDataset(src, num_points=N, num_grasps=K, augment=aug)
    scales = []
    for position in range(4):
        item = ds[(position, position)]
        frame = item["frame"].double()[None]
        scale = 1.0 / frame[0, 0, :3].norm()
        scales.append(float(scale))
        back = map_to_camera(frame, item["points"].double()[None])[0]
        d = torch.cdist(back, torch.from_numpy(src[position].points).double()).min(dim=1).values
        assert d.max() < 0.004 * 3**0.5 / scale + 1e-6  # jitter only, within its clip
        pose, _ = vector_to_pose(item["grasps"].double(), 16)
        pose_cam = to_input_frame(frame, pose[None])[0]
        err = (pose_cam[:, None] - torch.from_numpy(src[position].grasp_pose).double()[None]).abs().amax(dim=(-1, -2))
        assert err.min(dim=1).values.max() < 1e-5  # grasps are not jittered and scale maps back exactly
    assert min(scales) >= 0.8 and max(scales) <= 1.2 and np.ptp(scales) > 0.01


def test_items_depend_only_on_seed_and_position(toy_root):
    src = ShardDataset(toy_root)
    a = GraspSceneDataset(src, num_points=N, num_grasps=K, augment=AugmentConfig(), seed=3, cache_size=4)
    b = GraspSceneDataset(src, num_points=N, num_grasps=K, augment=AugmentConfig(), seed=3, cache_size=0)
    for key in [(0, 5), (1, 6), (0, 5), (0, 7)]:
        x, y = a[key], b[key]
        for name in x:
            torch.testing.assert_close(x[name], y[name])
    assert not torch.equal(a[(0, 5)]["points"], a[(0, 7)]["points"])
    assert a.cache_hits >= 2 and a.cache_misses == 2  # LRU of decoded samples


def test_stream_sampler_resumes_and_shards_ranks():
    full = list(StreamSampler(5, seed=1, start=0, length=23))
    assert [p for _, p in full] == list(range(23))
    for epoch in range(4):  # every epoch is a permutation
        chunk = [i for i, p in full if p // 5 == epoch]
        assert sorted(chunk) == list(range(5))
    resumed = list(StreamSampler(5, seed=1, start=9, length=14))
    assert resumed == full[9:]
    skipping = StreamSampler(5, seed=1, length=23, consumed=9)  # a resumed run: the loader keeps the run's length
    assert len(skipping) == 23 and list(skipping) == full[9:] and list(skipping) == full[9:]
    r0 = list(StreamSampler(5, seed=1, start=0, length=6, rank=0, world=2))
    r1 = list(StreamSampler(5, seed=1, start=0, length=6, rank=1, world=2))
    assert sorted([p for _, p in r0 + r1]) == list(range(12))
    assert [i for i, _ in r0] == [full[p][0] for p in range(0, 12, 2)]


def test_workers_yield_the_same_batches(toy_root):
    cfg = DataConfig(root=str(toy_root), num_points=N, num_grasps=K, batch_size=2, val_fraction=0.0)
    loaders = []
    for workers in (0, 2):
        dm = GraspDataModule(
            DataConfig(**{**cfg.__dict__, "num_workers": workers, "persistent_workers": False}), seed=0, max_steps=3
        )
        loaders.append(list(dm.train_dataloader()))
    for a, b in zip(*loaders):
        torch.testing.assert_close(a["points"], b["points"])
        torch.testing.assert_close(a["grasps"], b["grasps"])


def test_normalizer_covers_augmented_training_grasps(toy_root):
    src = ShardDataset(toy_root)
    ds = GraspSceneDataset(src, num_points=N, num_grasps=K, augment=AugmentConfig())
    norm = fit_normalizer(ds, 16, seed=0)
    x = torch.cat([ds[(i % len(ds), 100 + i)]["grasps"] for i in range(20)])
    z = norm.normalize(x)
    assert z.abs().max() < 1.5  # fitted on the distribution the network sees (rotations included)
    assert (z[:, :19].amax(0) - z[:, :19].amin(0)).min() > 0.3  # and not absurdly wide


def test_missing_dataset_is_a_clear_error(tmp_path):
    dm = GraspDataModule(DataConfig(root=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match=r"data\.root: expected a dataset directory"):
        dm.setup("fit")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"data\.root: .*no manifest\.json"):
        GraspDataModule(DataConfig(root=str(tmp_path / "empty"))).setup("fit")


def test_training_refuses_a_corrupted_shard_and_verifies_once(tmp_path, monkeypatch):
    import sceneleap_core.data.shards as shards

    root = write_toy_dataset(tmp_path / "toy", num_scenes=4, views=1, num_points=64, grasps=(2, 4), shard_size=2)
    hashed = []
    real = shards.file_sha256
    monkeypatch.setattr(shards, "file_sha256", lambda p: hashed.append(Path(p).name) or real(p))
    GraspDataModule(DataConfig(root=str(root), num_points=32, num_grasps=2)).setup("fit")
    assert sorted(hashed) == ["shard_00000.h5", "shard_00001.h5"]  # checked once at open
    shards._VERIFIED.clear()  # a new process: the cache file beside the manifest serves it
    GraspDataModule(DataConfig(root=str(root), num_points=32, num_grasps=2)).setup("fit")
    assert len(hashed) == 2
    # one flipped byte in a shard's data (still a readable HDF5 file): refused, naming the shard
    shard = root / "shard_00001.h5"
    data = bytearray(shard.read_bytes())
    data[len(data) - 100] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"data\.root: .*shard_00001\.h5: checksum does not match"):
        GraspDataModule(DataConfig(root=str(root), num_points=32, num_grasps=2)).setup("fit")


def test_shards_of_another_hand_are_refused_at_setup(tmp_path):
    import h5py

    from sceneleap_core.data.shards import write_manifest

    root = write_toy_dataset(tmp_path / "toy", num_scenes=4, views=1, num_points=64, grasps=(2, 4), shard_size=2)
    with h5py.File(root / "shard_00001.h5", "r+") as f:
        f.attrs["hand"], f.attrs["dof"] = "allegro_hand_right", 16
    write_manifest(root)
    with pytest.raises(ValueError, match=r"data\.root: .*shard_00001\.h5 holds grasps of hand 'allegro_hand_right'"):
        GraspDataModule(DataConfig(root=str(root), num_points=32, num_grasps=2)).setup("fit")
