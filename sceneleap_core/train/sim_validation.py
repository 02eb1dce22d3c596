"""Simulated success rate during validation: sampled grasps go through the MuJoCo lift test.

Plug it into training with ``val.evaluator=sim_lift`` (the registered name of :func:`lift_evaluator`)
and ``val.evaluator_workers=N`` simulation processes (every ``val.evaluator_every``-th validation
run, rank 0, first validation batch). The scenes are
rebuilt from the validation dataset: each sample's objects (ids and world poses in the shard,
shapes from the dataset's ``objects.json``) on the table, the camera pose mapping the sampled
grasps to the world.

Notation: B scenes in the batch, G sampled grasps per scene, O objects in a scene.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


class SimLiftEvaluator:
    """Lift-test success of sampled grasps on the scenes of a validation batch.

    Args:
        root: the dataset the batch indices refer to (shards, ``manifest.json``, ``objects.json``).
        max_scenes: scenes of the batch to simulate (the first ones).
        max_grasps: grasps per scene to simulate (the first ones of the sampled set).
        workers: processes for :func:`sceneleap_core.sim.evaluate_grasps`, kept between calls in one
            :class:`sceneleap_core.sim.pool.WorkerPool` (never forked from the training process).
        sim_config: :class:`sceneleap_core.sim.SimConfig` field overrides.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_scenes: int = 2,
        max_grasps: int = 8,
        workers: int = 1,
        sim_config: dict | None = None,
    ):
        from sceneleap_core.data.export import dataset_table_z
        from sceneleap_core.data.objects import load_object_table
        from sceneleap_core.data.shards import ShardDataset
        from sceneleap_core.hand import HandModel
        from sceneleap_core.sim import SimConfig

        if max_scenes < 1 or max_grasps < 1:
            raise ValueError(f"max_scenes/max_grasps: expected >= 1, got {max_scenes}/{max_grasps}")
        self.root = Path(root)
        self.dataset = ShardDataset(self.root)
        self.objects = {spec.id: spec for spec in load_object_table(self.root)}
        self.table_z = dataset_table_z(self.dataset)
        self.max_scenes, self.max_grasps, self.workers = int(max_scenes), int(max_grasps), int(workers)
        self.sim_config = SimConfig.from_dict(sim_config or {})
        self.hand = HandModel.load(dtype=torch.float64)
        self.pool = None
        if self.workers > 1:
            from sceneleap_core.sim.pool import WorkerPool

            self.pool = WorkerPool(self.workers)

    def close(self) -> None:
        """Stop the simulation workers (they restart on the next call)."""
        if self.pool is not None:
            self.pool.close()

    def scene(self, index: int):
        """(SceneSpec, world <- camera (4, 4), object centres (O, 3)) of dataset sample ``index``."""
        from sceneleap_core.data.export import sample_sim_scene

        sample = self.dataset[index]
        scene = sample_sim_scene(sample, self.objects, self.table_z)
        return scene, sample.camera_pose, sample.object_pose[:, :3, 3]

    def targets(self, palm_world: np.ndarray, joints: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """(G,) index of the object each grasp is meant for: the one whose centre is nearest to
        the centroid of the grasp's fingertips."""
        state = self.hand(torch.from_numpy(joints), torch.from_numpy(palm_world), validate=False)
        tips = self.hand.tip_positions(state).mean(dim=1).numpy()  # (G, 3)
        return np.linalg.norm(tips[:, None, :] - centres[None, :, :], axis=-1).argmin(axis=1)

    def evaluate_world(self, index: int, palm_world: np.ndarray, joints: np.ndarray, *, scene=None,
                       protocol: str = "lift"):  # fmt: skip
        """Lift-test grasps given in the world frame of dataset sample ``index``: palm poses
        (G, 4, 4) and joints (G, J) (clipped to the limits). Each grasp's target is the object whose
        centre is nearest its fingertips (:meth:`targets`). ``scene``: :meth:`scene`'s result for
        ``index`` when the caller has it; ``protocol``: ``lift``, or ``both`` to add the disturbance
        test on each target alone. Returns the :class:`sceneleap_core.sim.GraspEvaluation`, one
        entry per grasp."""
        from sceneleap_core.sim import evaluate_grasps

        sim_scene, _, centres = scene if scene is not None else self.scene(index)
        lower, upper = self.hand.joint_lower.numpy(), self.hand.joint_upper.numpy()
        palm_world = np.asarray(palm_world, dtype=np.float64)
        q = np.clip(np.asarray(joints, dtype=np.float64), lower, upper)  # (G, J)
        target = self.targets(palm_world, q, centres)
        return evaluate_grasps(
            sim_scene, palm_world, q, target, protocol=protocol, config=self.sim_config, pool=self.pool
        )

    def __call__(self, batch: dict, palm_pose: torch.Tensor, joints: torch.Tensor) -> dict[str, float]:
        """Simulate; palm_pose (B, G, 4, 4) and joints (B, G, J) in the network frame of ``batch``
        (``batch["frame"]`` (B, 4, 4) maps network -> camera). Returns mean lift success, the
        pregrasp-collision rate and the mean penetration into the scene (mm)."""
        from sceneleap_core.infer.planner import to_input_frame

        successes, collisions, penetration = [], [], []
        for b in range(min(self.max_scenes, palm_pose.shape[0])):
            index = int(batch["index"][b])
            scene = self.scene(index)
            frame = batch["frame"][b : b + 1].double().cpu()  # camera <- network (may include 1/scale)
            pose_net = palm_pose[b : b + 1, : self.max_grasps].double().cpu()  # (1, G, 4, 4)
            pose_cam = to_input_frame(frame, pose_net)[0].numpy()  # proper rotations, camera frame
            palm_world = scene[1] @ pose_cam  # (G, 4, 4), world <- camera
            q = joints[b, : self.max_grasps].double().cpu().numpy()  # (G, J)
            result = self.evaluate_world(index, palm_world, q, scene=scene).lift
            successes.append(result.success)
            collisions.append(result.pregrasp_penetration_mm > 0)
            penetration.append(result.penetration_scene_mm)
        return {
            "sim_lift_success": float(np.concatenate(successes).mean()),
            "sim_pregrasp_collision": float(np.concatenate(collisions).mean()),
            "sim_penetration_scene_mm": float(np.concatenate(penetration).mean()),
        }


def lift_evaluator(cfg) -> SimLiftEvaluator:
    """Factory for ``val.evaluator``: simulates on ``data.val_root`` (or ``data.root`` when the
    validation split comes from the training dataset) with ``val.evaluator_workers`` processes."""
    return SimLiftEvaluator(cfg.data.val_root or cfg.data.root, workers=cfg.val.evaluator_workers)
