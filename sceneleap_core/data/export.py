"""Dataset samples as evaluator inputs: the MuJoCo scene of a sample and its grasps in the world.

Used by ``sceneleap data export`` (files for ``sceneleap eval-grasps``) and by the training-time
simulated validation (:mod:`sceneleap_core.train.sim_validation`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sceneleap_core.data.objects import LibraryObject
from sceneleap_core.data.shards import Sample, ShardDataset


def sample_sim_scene(sample: Sample, objects: dict[int, LibraryObject], table_z: float = 0.0):
    """The :class:`sceneleap_core.sim.SceneSpec` of a sample's scene: its objects (shapes from the
    dataset's object table ``objects``, world poses from the shard) on the table at ``table_z``."""
    from sceneleap_core.data.validate import sim_scene

    missing = [int(i) for i in sample.object_ids if int(i) not in objects]
    if missing:
        raise ValueError(f"objects {missing} of scene {sample.scene_id} are not in the object table (objects.json)")
    return sim_scene([objects[int(i)] for i in sample.object_ids], sample.object_pose, table_z)


def dataset_table_z(dataset: ShardDataset) -> float:
    """Height of the table top (world z) the dataset's scenes stand on (shard metadata; 0 if absent)."""
    return float(dataset.readers[0].metadata.get("table", {}).get("top_z", 0.0))


def sample_world_grasps(sample: Sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sample's grasps in the world: palm poses (G, 4, 4), joints (G, J), and target (G,)
    as the index of the held object in ``sample.object_ids``."""
    index_of = {int(oid): k for k, oid in enumerate(sample.object_ids)}
    unknown = sorted({int(o) for o in sample.grasp_object} - set(index_of))
    if unknown:
        raise ValueError(f"grasps of scene {sample.scene_id} hold objects {unknown} that are not in the scene")
    pose = np.asarray(sample.camera_pose, np.float64) @ np.asarray(sample.grasp_pose, np.float64)  # (G, 4, 4)
    target = np.array([index_of[int(o)] for o in sample.grasp_object], dtype=np.int64)
    return pose, np.asarray(sample.grasp_joints, np.float64), target


def export_sample(root: str | Path, index: int, scene_path: str | Path, grasps_path: str | Path) -> tuple[int, int]:
    """Write sample ``index`` of the dataset at ``root`` as ``scene.json`` + ``grasps.npz`` in the
    formats of ``sceneleap eval-grasps``. Returns (objects, grasps)."""
    import json

    from sceneleap_core.data.objects import load_object_table
    from sceneleap_core.sim.scene import save_grasps, scene_to_dict

    dataset = ShardDataset(root)
    if not 0 <= index < len(dataset):
        raise ValueError(f"index: expected 0 <= index < {len(dataset)}, got {index}")
    sample = dataset[index]
    scene = sample_sim_scene(sample, {s.id: s for s in load_object_table(root)}, dataset_table_z(dataset))
    pose, joints, target = sample_world_grasps(sample)
    Path(scene_path).parent.mkdir(parents=True, exist_ok=True)
    Path(scene_path).write_text(json.dumps(scene_to_dict(scene)))
    save_grasps(grasps_path, pose, joints, target)
    return len(scene.objects), len(pose)
