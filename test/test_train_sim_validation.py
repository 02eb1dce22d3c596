"""The training-time simulated success rate rebuilds scenes from a dataset and runs the lift test."""

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

from sceneleap_core.data.objects import LibraryObject, save_object_table
from sceneleap_core.data.shards import Sample, ShardWriter, write_manifest
from sceneleap_core.train.sim_validation import SimLiftEvaluator

# the physics tests' enveloping grasp of a 5 cm cube (palm facing world -z)
ENVELOP_Q = [-0.02, 0.35, 0.72, 1.32, 0.02, 0.23, 0.55, 1.24, 0.01, 1.05, 1.61, 1.52, 0.65, 0.74, 0.56, 1.37]


def palm_world(x, y, z):
    pose = np.eye(4)
    pose[:3, 3] = [x, y, z]
    return pose


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("simval")
    save_object_table(root / "objects.json", [LibraryObject(7, "box", {"extents": [0.05, 0.05, 0.05]}, mass=0.1)])
    cube_pose = np.eye(4)
    cube_pose[:3, 3] = [0.2, -0.1, 0.025]  # the cube is not at the world origin
    camera = np.eye(4)  # world <- camera: 0.6 m above, looking down (optical z = world -z)
    camera[:3, :3] = np.diag([1.0, -1.0, -1.0])
    camera[:3, 3] = [0.2, -0.1, 0.6]
    sample = Sample(
        points=np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32),
        point_object=np.full(64, 7, dtype=np.int32),
        camera_pose=camera,
        grasp_pose=np.eye(4, dtype=np.float32)[None],
        grasp_joints=np.zeros((1, 16), np.float32),
        grasp_object=np.array([7], np.int32),
        object_ids=np.array([7], np.int32),
        object_pose=cube_pose[None],
    )
    with ShardWriter(root / "shard_00000.h5", hand="leap_hand_right", dof=16, metadata={"table": {"top_z": 0.0}}) as w:
        w.add(sample)
    write_manifest(root)
    return root, camera, cube_pose


@pytest.fixture(scope="module")
def evaluator(dataset):
    return SimLiftEvaluator(dataset[0], max_scenes=1, max_grasps=1)


def grasp_in_camera(camera, cube_pose, offset):
    world = palm_world(-0.01 + offset, 0.03, 0.112)
    world[:3, 3] += cube_pose[:3, 3] - [0, 0, 0.025]
    return torch.from_numpy(np.linalg.inv(camera) @ world)[None, None]  # (1, 1, 4, 4)


def test_envelop_grasp_lifts_and_far_grasp_does_not(dataset, evaluator):
    _, camera, cube_pose = dataset
    batch = {"index": torch.tensor([0]), "frame": torch.eye(4)[None]}  # network frame = camera frame
    joints = torch.tensor([[ENVELOP_Q]], dtype=torch.float64)
    good = evaluator(batch, grasp_in_camera(camera, cube_pose, 0.0), joints)
    far = evaluator(batch, grasp_in_camera(camera, cube_pose, 0.10), joints)
    assert good["sim_lift_success"] == 1.0 and good["sim_pregrasp_collision"] == 0.0
    assert far["sim_lift_success"] == 0.0


def test_network_frame_with_augmentation_scale_maps_back(dataset, evaluator):
    """A batch whose network frame is rotated and scaled (as augmentation does) gives the same result."""
    _, camera, cube_pose = dataset
    angle, scale = 0.7, 1.1
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    net_from_cam = np.eye(4)
    net_from_cam[:3, :3], net_from_cam[:3, 3] = scale * rot, [0.01, -0.02, 0.03]
    cam_from_net = np.linalg.inv(net_from_cam)  # camera <- network, with 1/scale in its rotation
    pose_cam = grasp_in_camera(camera, cube_pose, 0.0)[0, 0].numpy()
    pose_net = net_from_cam @ pose_cam
    pose_net[:3, :3] /= scale  # a pose keeps a proper rotation in the network frame
    batch = {"index": torch.tensor([0]), "frame": torch.from_numpy(cam_from_net)[None]}
    out = evaluator(batch, torch.from_numpy(pose_net)[None, None], torch.tensor([[ENVELOP_Q]], dtype=torch.float64))
    assert out["sim_lift_success"] == 1.0


def test_unknown_object_is_a_clear_error(dataset):
    evaluator = SimLiftEvaluator(dataset[0])
    evaluator.objects.clear()
    with pytest.raises(ValueError, match=r"objects \[7\] of scene 0 are not in the object table"):
        evaluator.scene(0)


def test_degenerate_sampled_rotation_is_simulated_not_rejected(dataset, evaluator):
    """An untrained model can emit a singular rotation (collinear 6D columns); it is projected to
    the nearest proper rotation and simulated (it fails, it does not crash the validation)."""
    _, camera, cube_pose = dataset
    pose = grasp_in_camera(camera, cube_pose, 0.0).clone()
    pose[0, 0, :3, 1] = pose[0, 0, :3, 0]  # second column = first: rank 2
    pose[0, 0, :3, 2] = 0.0
    batch = {"index": torch.tensor([0]), "frame": torch.eye(4)[None]}
    out = evaluator(batch, pose, torch.tensor([[ENVELOP_Q]], dtype=torch.float64))
    assert 0.0 <= out["sim_lift_success"] <= 1.0


def test_training_validation_simulates_in_several_workers_after_torch_threads(dataset, evaluator):
    """The hang this guards against: workers forked from a process that ran multi-threaded torch."""
    import faulthandler
    from pathlib import Path

    from sceneleap_core.train.config import load_config
    from sceneleap_core.train.sim_validation import lift_evaluator

    root, camera, cube_pose = dataset
    tiny = Path(__file__).resolve().parents[1] / "config" / "train" / "tiny.yaml"
    cfg = load_config(tiny, [f"data.root={root}", "val.evaluator_workers=2"])
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    (torch.rand(256, 256) @ torch.rand(256, 256)).sum().item()  # the intra-op pool now runs
    faulthandler.dump_traceback_later(240, exit=True)  # a hang fails the run instead of blocking it
    parallel = lift_evaluator(cfg)
    try:
        parallel.max_grasps = 2
        batch = {"index": torch.tensor([0]), "frame": torch.eye(4)[None]}
        pose = torch.cat([grasp_in_camera(camera, cube_pose, 0.0), grasp_in_camera(camera, cube_pose, 0.1)], dim=1)
        joints = torch.tensor([[ENVELOP_Q, ENVELOP_Q]], dtype=torch.float64)
        first = parallel(batch, pose, joints)
        again = parallel(batch, pose, joints)  # the same pool serves the next validation run
        assert parallel.pool is not None and parallel.pool.workers == 2 and parallel.pool.started
        evaluator.max_grasps = 2
        try:
            serial = evaluator(batch, pose, joints)
        finally:
            evaluator.max_grasps = 1
        assert first == again == serial and first["sim_lift_success"] == 0.5
    finally:
        faulthandler.cancel_dump_traceback_later()
        parallel.close()
        torch.set_num_threads(old)
