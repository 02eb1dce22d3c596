import json

import numpy as np
import pytest

from sceneleap_core.data.shards import Sample, ShardDataset, ShardError, ShardReader, ShardWriter, write_manifest


def make_sample(rng, scene_id, n=100, g=5, o=2, dof=16):
    return Sample(
        points=rng.normal(size=(n, 3)).astype(np.float32),
        point_object=rng.integers(-1, o, size=n).astype(np.int32),
        camera_pose=np.eye(4),
        grasp_pose=np.tile(np.eye(4, dtype=np.float32), (g, 1, 1)),
        grasp_joints=rng.normal(size=(g, dof)).astype(np.float32),
        grasp_object=rng.integers(0, o, size=g).astype(np.int32),
        scene_id=scene_id,
        object_ids=np.arange(o, dtype=np.int32),
        object_pose=np.tile(np.eye(4), (o, 1, 1)),
    )


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
def test_round_trip_ragged_samples(tmp_path, compression):
    rng = np.random.default_rng(0)
    samples = [make_sample(rng, i, n=50 + 10 * i, g=i + 1) for i in range(4)]
    with ShardWriter(
        tmp_path / "s.h5", hand="leap_hand_right", dof=16, compression=compression, metadata={"k": 1}
    ) as w:
        for s in samples:
            w.add(s)
    reader = ShardReader(tmp_path / "s.h5")
    assert len(reader) == 4 and reader.metadata == {"k": 1} and reader.dof == 16
    for i, s in enumerate(samples):
        got = reader[i]
        np.testing.assert_array_equal(got.points, s.points)
        np.testing.assert_array_equal(got.grasp_joints, s.grasp_joints)
        np.testing.assert_array_equal(got.grasp_object, s.grasp_object)
        assert got.scene_id == i
    assert not (tmp_path / "s.h5.tmp").exists()


def test_bad_sample_is_rejected_with_field_name(tmp_path):
    rng = np.random.default_rng(1)
    s = make_sample(rng, 0)
    s.grasp_joints = s.grasp_joints[:, :15]
    with pytest.raises(ValueError, match=r"grasp_joints: expected shape \(5, 16\)"):
        ShardWriter(tmp_path / "x.h5", hand="h", dof=16).add(s)


def test_truncated_and_missing_shards_name_the_file(tmp_path):
    rng = np.random.default_rng(2)
    with ShardWriter(tmp_path / "a.h5", hand="h", dof=16) as w:
        w.add(make_sample(rng, 0, n=5000))
    data = (tmp_path / "a.h5").read_bytes()
    (tmp_path / "b.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=r"b\.h5: cannot open shard"):
        ShardReader(tmp_path / "b.h5")
    with pytest.raises(ShardError, match=r"nope\.h5: shard file does not exist"):
        ShardReader(tmp_path / "nope.h5")


def test_manifest_and_dataset_indexing_and_checksums(tmp_path):
    rng = np.random.default_rng(3)
    for k in range(3):
        with ShardWriter(tmp_path / f"shard_{k:05d}.h5", hand="h", dof=16) as w:
            for i in range(k + 1):
                w.add(make_sample(rng, 10 * k + i))
    manifest = json.loads(write_manifest(tmp_path).read_text())
    assert manifest["num_samples"] == 6 and manifest["num_grasps"] == 30
    ds = ShardDataset(tmp_path, verify=True)
    assert len(ds) == 6
    assert [ds[i].scene_id for i in range(6)] == [0, 10, 11, 20, 21, 22]
    assert ds.locate(3) == (2, 0)
    with (tmp_path / "shard_00001.h5").open("r+b") as handle:  # flip bytes: checksum must catch it
        handle.seek(-64, 2)
        handle.write(b"\xff" * 8)
    with pytest.raises(ShardError, match="checksum does not match"):
        ShardDataset(tmp_path, verify=True)


def _fill_and_index(root, rank, rounds):
    """One ``--shard rank/n`` process: write its two shards, then rewrite the manifest ``rounds`` times."""
    rng = np.random.default_rng(rank)
    written = []
    for k in (rank, rank + 10):
        with ShardWriter(root / f"shard_{k:05d}.h5", hand="h", dof=16) as w:
            w.add(make_sample(rng, k, n=20, g=1 + rank))
        written.append(root / f"shard_{k:05d}.h5")
    for _ in range(rounds):
        write_manifest(root, pattern="shard_*.h5", written=written)


def test_concurrent_manifest_writers_end_with_one_correct_manifest(tmp_path):
    import multiprocessing as mp

    n = 4
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_fill_and_index, args=(tmp_path, r, 15)) for r in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * n
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(e["file"] for e in manifest["shards"]) == sorted(
        f"shard_{k:05d}.h5" for r in range(n) for k in (r, r + 10)
    )
    assert manifest["num_grasps"] == sum(2 * (1 + r) for r in range(n))
    assert len(ShardDataset(tmp_path, verify=True)) == 2 * n  # every checksum right
    assert not list(tmp_path.glob("*.tmp*"))  # no temp left behind
