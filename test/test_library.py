"""The object grasp library container: file round trip, float16 storage error, checks."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sceneleap_core.data.library import GraspLibrary, planar_placement
from sceneleap_core.data.objects import make_procedural


def _library(num_grasps: int = 50, seed: int = 0) -> GraspLibrary:
    rng = np.random.default_rng(seed)
    objects = [make_procedural(i, seed=seed) for i in range(3)]
    rest_pose = np.tile(np.eye(4), (4, 1, 1))
    rest_pose[:, :3, :3] = Rotation.random(4, random_state=seed).as_matrix()
    rest_pose[:, 2, 3] = rng.uniform(0.02, 0.07, 4)
    pose = np.tile(np.eye(4), (num_grasps, 1, 1))
    pose[:, :3, :3] = Rotation.random(num_grasps, random_state=seed + 1).as_matrix()
    pose[:, :3, 3] = rng.uniform(-0.2, 0.2, (num_grasps, 3))
    return GraspLibrary(
        objects=objects,
        rest_object=[0, 0, 1, 2],
        rest_pose=rest_pose,
        grasp_rest=rng.integers(0, 4, num_grasps),
        grasp_pose=pose,
        grasp_joints=rng.uniform(-0.3, 1.8, (num_grasps, 16)),
        grasp_type=rng.integers(0, 2, num_grasps),
        grasp_approach=rng.integers(0, 2, num_grasps),
        metadata={"seed": seed},
    )


def test_round_trip_keeps_millimetres_and_milliradians(tmp_path):
    lib = _library()
    path = lib.save(tmp_path)
    back = GraspLibrary.load(path)
    assert [o.id for o in back.objects] == [o.id for o in lib.objects]
    np.testing.assert_array_equal(back.grasp_rest, lib.grasp_rest)
    np.testing.assert_array_equal(back.grasp_type, lib.grasp_type)
    assert np.abs(back.grasp_pose[:, :3, 3] - lib.grasp_pose[:, :3, 3]).max() < 1e-6
    # rotation error of the float16 quaternion, as an angle
    rel = np.einsum("gji,gjk->gik", back.grasp_pose[:, :3, :3], lib.grasp_pose[:, :3, :3])
    angle = np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))
    assert angle.max() < 2e-3
    assert np.abs(back.grasp_joints - lib.grasp_joints).max() < 2e-3
    assert back.metadata["seed"] == 0 and back.metadata["version"] == 1
    # queries
    assert set(back.grasps_of_rest(2)) == set(np.flatnonzero(lib.grasp_rest == 2))
    np.testing.assert_array_equal(back.rests_of(0), [0, 1])
    np.testing.assert_array_equal(back.grasp_object(), np.array([0, 0, 1, 2])[lib.grasp_rest])


def test_concatenate_rebases_rest_indices():
    a, b = _library(10, seed=0), _library(7, seed=1)
    b.objects = [make_procedural(10 + i, seed=1) for i in range(3)]
    b.rest_object = np.array([10, 10, 11, 12], dtype=np.int32)
    b._by_id = {o.id: o for o in b.objects}
    both = GraspLibrary.concatenate([a, b])
    assert both.num_grasps == 17
    np.testing.assert_array_equal(both.grasp_object()[10:], b.grasp_object())


def test_bad_library_names_the_field(tmp_path):
    lib = _library()
    with pytest.raises(ValueError, match="grasp_rest"):
        GraspLibrary(lib.objects, lib.rest_object, lib.rest_pose, lib.grasp_rest + 10, lib.grasp_pose,
                     lib.grasp_joints, lib.grasp_type, lib.grasp_approach)  # fmt: skip
    with pytest.raises(ValueError, match="rest_object"):
        GraspLibrary(lib.objects, [0, 0, 1, 99], lib.rest_pose, lib.grasp_rest, lib.grasp_pose,
                     lib.grasp_joints, lib.grasp_type, lib.grasp_approach)  # fmt: skip
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="grasp library"):
        GraspLibrary.load(tmp_path / "junk.npz")


def test_planar_placement_is_a_yaw_and_shift():
    p = planar_placement(0.1, -0.2, np.pi / 2)
    np.testing.assert_allclose(p @ [1, 0, 0.3, 1], [0.1, 0.8, 0.3, 1], atol=1e-12)
