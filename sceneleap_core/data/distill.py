"""Verified self-distillation: a model's own grasps, kept where they lift, as a training dataset.

For each chosen view of a dataset, the planner (:class:`sceneleap_core.infer.GraspPlanner`, the
deployed path with its candidates, filter and ranking) plans grasps on the view's cloud, with world
up from the camera pose as a robot would; each returned grasp is lift-tested in the view's own
scene (:class:`sceneleap_core.train.sim_validation.SimLiftEvaluator`); the grasps that lift become
the view's ground truth (with ``keep_ground_truth``: added to the view's own). The views are
written as shards of the same schema (:mod:`sceneleap_core.data.shards`: cloud, camera pose and
objects copied, grasps in the camera frame, ``grasp_object`` the lifted object), so
``sceneleap train data.root=<out>`` fine-tunes on them. Training on verified samples of its own
moves the sampler's mass onto the grasps it already makes that work (rejection-sampling
fine-tuning).

Resumable: views are processed in fixed chunks, one shard per chunk, written atomically; a chunk
whose shard exists is skipped on a re-run with the same settings. A view whose planning fails is
logged and counted, and the run goes on.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SETTINGS_NAME = "distill.json"


@dataclass(frozen=True)
class DistillConfig:
    """Settings of one distillation run (stored in ``distill.json``; a resume must match them).

    Attributes:
        views: views of the source dataset used (None = all), a seeded random choice.
        num_grasps: grasps planned per view (G).
        seed: seed of the view choice; view ``i`` plans with seed ``seed + i``.
        keep_ground_truth: also keep the view's own grasps (else only the lifted samples).
        views_per_shard: views per written shard (the unit of resume).
        steps, sampler: the planner's sampler (None sampler = the model's).
    """

    views: int | None = None
    num_grasps: int = 32
    seed: int = 0
    keep_ground_truth: bool = False
    views_per_shard: int = 64
    steps: int = 10
    sampler: str | None = None

    def __post_init__(self):
        if self.views is not None and self.views < 1:
            raise ValueError(f"views: expected >= 1 (or None = all), got {self.views}")
        if self.num_grasps < 1 or self.views_per_shard < 1 or self.steps < 1:
            raise ValueError(
                f"num_grasps/views_per_shard/steps: expected >= 1, got "
                f"{self.num_grasps}/{self.views_per_shard}/{self.steps}"
            )


def choose_views(num_samples: int, views: int | None, seed: int) -> np.ndarray:
    """(V,) sorted dataset indices: ``views`` of ``num_samples`` drawn without replacement with
    ``seed`` (all of them when None or >= ``num_samples``)."""
    if num_samples < 1:
        raise ValueError("dataset: expected at least one sample, got none")
    if views is None or views >= num_samples:
        return np.arange(num_samples)
    return np.sort(np.random.default_rng(seed).choice(num_samples, size=views, replace=False))


def distilled_sample(sample, palm_pose_cam: np.ndarray, joints: np.ndarray, lifted: np.ndarray,
                     target: np.ndarray, *, keep_ground_truth: bool = False):  # fmt: skip
    """The view ``sample`` (:class:`sceneleap_core.data.shards.Sample`) with its grasps replaced by
    the lifted ones of a plan: palm poses (G, 4, 4) in the camera frame, joints (G, J), ``lifted``
    (G,) bool, ``target`` (G,) index into ``sample.object_ids``; with ``keep_ground_truth`` the
    view's own grasps come first. None when no grasp is left."""
    from sceneleap_core.data.shards import Sample

    lifted = np.asarray(lifted, dtype=bool)
    pose = np.asarray(palm_pose_cam, np.float32)[lifted]
    q = np.asarray(joints, np.float32)[lifted]
    held = np.asarray(sample.object_ids, np.int32)[np.asarray(target, np.int64)[lifted]]
    if keep_ground_truth:
        pose = np.concatenate([np.asarray(sample.grasp_pose, np.float32), pose])
        q = np.concatenate([np.asarray(sample.grasp_joints, np.float32), q])
        held = np.concatenate([np.asarray(sample.grasp_object, np.int32), held])
    if len(pose) == 0:
        return None
    return Sample(
        points=sample.points, point_object=sample.point_object, camera_pose=sample.camera_pose,
        grasp_pose=pose, grasp_joints=q, grasp_object=held, scene_id=sample.scene_id,
        object_ids=sample.object_ids, object_pose=sample.object_pose,
    )  # fmt: skip


def _check_settings(out: Path, settings: dict) -> None:
    """Write ``distill.json``, or check that a resumed run uses the same settings."""
    from sceneleap_core.atomic import write_text_atomic

    path = out / SETTINGS_NAME
    if path.is_file():
        before = json.loads(path.read_text())
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise ValueError(
                f"{out}: a distillation with other settings is there ({', '.join(changed)} differ); "
                f"resume with the same settings or use another --out"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(settings, indent=1))


def distill(planner, source: str | Path, out: str | Path, config: DistillConfig | None = None, *,
            workers: int = 1, model_name: str = "", shard: tuple[int, int] = (0, 1),
            progress: bool = True) -> dict:  # fmt: skip
    """Plan, lift-test and keep: write the verified dataset of ``planner`` on ``source`` into ``out``.

    Args:
        planner: a :class:`sceneleap_core.infer.GraspPlanner` (its own defaults: candidates,
            temperature, post-processing).
        source: dataset directory (shards, ``manifest.json``, ``objects.json``).
        out: the distilled dataset's directory (created; existing shards of a matching earlier run
            are kept).
        workers: simulation processes.
        model_name: recorded in the settings and the manifest.
        shard: ``(i, n)``: this process writes the shards k with k % n == i (n processes, one
            output; the manifest is merged under a lock).

    Returns:
        a summary: views planned, grasps planned and lifted, lift rate, views written and without
        a lifted grasp, views that failed, shards written and skipped.
    """
    from tqdm import tqdm

    from sceneleap_core.data.objects import OBJECT_TABLE_NAME
    from sceneleap_core.data.shards import ShardWriter, write_manifest
    from sceneleap_core.infer.demo import camera_up
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    config = config or DistillConfig()
    source, out = Path(source), Path(out)
    i_part, n_part = shard
    if not 0 <= i_part < n_part:
        raise ValueError(f"shard: expected (i, n) with 0 <= i < n, got {shard}")
    if source.resolve() == out.resolve():
        raise ValueError("out: expected a directory other than the source dataset")
    evaluator = SimLiftEvaluator(source, workers=workers)
    try:
        dataset = evaluator.dataset
        views = choose_views(len(dataset), config.views, config.seed)
        settings = {"source": str(source.resolve()), "model": model_name, **asdict(config),
                    "planner": {"temperature": planner.temperature, "oversample": planner.oversample,
                                "guidance": planner.guidance}}  # fmt: skip
        _check_settings(out, settings)
        object_table = source / OBJECT_TABLE_NAME
        if object_table.is_file() and not (out / OBJECT_TABLE_NAME).is_file():
            shutil.copyfile(object_table, out / OBJECT_TABLE_NAME)
        lower, upper = evaluator.hand.joint_lower.numpy(), evaluator.hand.joint_upper.numpy()  # (J,) stored clipped
        first = dataset.readers[0]  # the source's hand, joints and table metadata carry over
        metadata = {**first.metadata, "distilled": settings}
        chunks = [views[i : i + config.views_per_shard] for i in range(0, len(views), config.views_per_shard)]
        chunks = [(k, chunk) for k, chunk in enumerate(chunks) if k % n_part == i_part]
        stats = {"views": 0, "planned": 0, "lifted": 0, "written": 0, "empty": 0, "failed": 0,
                 "shards_written": 0, "shards_skipped": 0}  # fmt: skip
        bar = tqdm(total=sum(map(len, (c for _, c in chunks))), desc="distill", unit="view", disable=not progress)
        for k, chunk in chunks:
            path = out / f"shard_{k:05d}.h5"
            if path.is_file():
                stats["shards_skipped"] += 1
                bar.update(len(chunk))
                continue
            writer = ShardWriter(path, hand=first.hand, dof=first.dof, metadata=metadata)
            for index in chunk:
                index = int(index)
                sample = dataset[index]
                try:
                    grasps = planner.plan(sample.points, config.num_grasps, steps=config.steps,
                                          sampler=config.sampler, seed=config.seed + index,
                                          up=camera_up(sample.camera_pose))  # fmt: skip
                    pose = grasps.palm_pose[0].detach().cpu().double().numpy()  # (G, 4, 4), camera frame
                    q = grasps.joints[0].detach().cpu().double().numpy()  # (G, J)
                    if len(pose):
                        scene = evaluator.scene(index)
                        lift = evaluator.evaluate_world(index, scene[1] @ pose, q, scene=scene)
                        lifted, target = lift.lift.success, lift.target
                    else:
                        lifted, target = np.zeros(0, bool), np.zeros(0, np.int64)
                except (ValueError, RuntimeError) as err:  # a bad view must not end the run
                    log.warning("view %d: planning or simulation failed, skipped: %s", index, err)
                    stats["failed"] += 1
                    bar.update(1)
                    continue
                stats["views"] += 1
                stats["planned"] += len(pose)
                stats["lifted"] += int(np.sum(lifted))
                kept = distilled_sample(sample, pose, np.clip(q, lower, upper), lifted, target,
                                        keep_ground_truth=config.keep_ground_truth)  # fmt: skip
                if kept is None:
                    stats["empty"] += 1
                else:
                    writer.add(kept)
                    stats["written"] += 1
                bar.update(1)
                bar.set_postfix(lift=f"{stats['lifted'] / max(stats['planned'], 1):.1%}")
            if writer.samples:
                writer.close()
                write_manifest(out, metadata={"distilled": settings}, pattern="shard_*.h5", written=[path])
                stats["shards_written"] += 1
        bar.close()
    finally:
        evaluator.close()
    stats["lift_rate"] = stats["lifted"] / max(stats["planned"], 1)
    if not (out / "manifest.json").is_file():
        raise ValueError(f"{out}: no view kept a lifted grasp; nothing to write (summary: {stats})")
    return stats
