"""The data generator behind ``sceneleap data generate``: objects -> validated grasps -> scenes ->
views -> HDF5 shards, resumable by shard.

Dataset layout (``--out DIR``)::

    DIR/objects.json             object table (objects.LibraryObject dicts), written atomically
    DIR/grasps/obj_NNNNNN_sceneMMMMMM.npz  validated object-frame grasps of object N synthesized in
                                 its resting pose in scene M: pose (G, 4, 4), joints (G, J), plus
                                 synthesis/validation counts (cache; obj_NNNNNN.npz, shared by all
                                 scenes, with ``scene_synthesis=False``)
    DIR/shard_NNNNN.h5           scenes [k * scenes_per_shard, (k + 1) * scenes_per_shard), every view
                                 a sample (schema: sceneleap_core.data.shards)
    DIR/manifest.json            counts + sha256 per shard, the generator settings

Shard k is produced by process i of n (``--shard i/n``) when k % n == i; an existing shard is
skipped, so re-running after a kill resumes without duplicates. Every random choice is seeded by
(seed, scene index) or (seed, object id), so a shard's content does not depend on who made it.

A re-run checks what it reuses: settings that change the content must equal the ones recorded in
the manifest (or in an existing shard), else it refuses to mix them; a finished shard whose sha256
no longer matches the manifest is regenerated, never re-hashed into it; an unreadable grasp-cache
file is rebuilt; temps left by killed processes are removed. Concurrent processes merge their
shards into one manifest under a lock (:func:`sceneleap_core.data.shards.write_manifest`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sceneleap_core.atomic import load_npz_or_none, remove_stale_temps, write_atomic
from sceneleap_core.data.objects import OBJECT_TABLE_NAME, LibraryObject, build_mesh, make_library, save_object_table
from sceneleap_core.data.shards import (
    MANIFEST_NAME,
    Sample,
    ShardError,
    ShardReader,
    ShardWriter,
    read_manifest,
    verify_shards,
    write_manifest,
)

log = logging.getLogger(__name__)


@dataclass
class GenerateConfig:
    """Generator settings (all stored in each shard's ``metadata`` and the manifest).

    Sizes default to the committed sample dataset (a few minutes on a 2-core CPU).
    ``scene_synthesis``: synthesize each object's grasps in its settled pose with the table as a
    constraint (one synthesis per scene and object); False = once per object, in free space, cached
    across scenes (most such grasps reach under the object and are dropped on the table).
    """

    num_scenes: int = 4
    scenes_per_shard: int = 2
    num_objects: int = 24
    object_seed: int = 0
    seed: int = 0
    split: str = "train"
    objects_per_scene: tuple[int, int] = (1, 4)
    views_per_scene: int = 2
    max_points: int = 4096
    # grasp synthesis
    synth_batch: int = 64
    synth_steps: int = 200
    synth_rounds: int = 1
    min_grasps: int = 4
    scene_synthesis: bool = True
    device: str = "cpu"
    # validation
    protocol: str = "lift"
    workers: int = 1
    scene_lift: bool = True
    max_grasps_per_object: int = 16
    # observation
    width: int = 320
    height: int = 240
    hfov_deg: float = 70.0
    compression: str = "lzf"
    use_pybullet: bool = False


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard: expected 'i/n' (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard: expected 0 <= i < n, got {text!r}")
    return i, n


def _atomic_npz(path: Path, **arrays) -> None:
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))  # temp named by pid, fsynced, renamed


def _read_grasp_cache(z) -> tuple[np.ndarray, np.ndarray, dict]:
    pose, joints, stats = z["pose"], z["joints"], json.loads(str(z["stats"]))
    if pose.ndim != 3 or pose.shape[1:] != (4, 4) or len(joints) != len(pose):
        raise ValueError(f"expected pose (G, 4, 4) and joints (G, J), got {pose.shape} and {joints.shape}")
    return pose, joints, stats


def object_grasps(
    spec: LibraryObject,
    cfg: GenerateConfig,
    root: Path,
    hand,
    validator,
    *,
    resting_pose: np.ndarray | None = None,
    table_z: float = 0.0,
    tag: str = "",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Validated grasps of one object (object frame), cached in ``root/grasps``.

    Recipe: 1. synthesize ``synth_batch`` grasps (energy optimization), with the table as a plane
    the hand stays above when ``resting_pose`` (4, 4) (object -> world, table top at ``table_z``) is
    given; 2. geometric prefilter; 3. physics validation; 4. repeat up to ``synth_rounds`` times
    until ``min_grasps`` pass. Returns pose (G, 4, 4), joints (G, J) and counts {synthesized,
    prefiltered, valid, seconds}. ``tag`` names the cache file (one per scene when table-aware).
    """
    from sceneleap_core.data.synthesis import GraspSynthesizer, object_geometry, prefilter

    path = root / "grasps" / f"obj_{spec.id:06d}{tag}.npz"
    cached = load_npz_or_none(path, _read_grasp_cache)  # unreadable (truncated, ...) = missing: rebuilt
    if cached is not None:
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    geom = object_geometry(build_mesh(spec), seed=spec.id)
    if resting_pose is not None:
        geom = geom.on_table(resting_pose, table_z)
    syn = GraspSynthesizer(hand, batch_size=cfg.synth_batch, steps=cfg.synth_steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + spec.id)
    poses, joints = [], []
    stats = {"synthesized": 0, "prefiltered": 0, "valid": 0, "validator": getattr(validator, "name", "?")}
    for _ in range(cfg.synth_rounds):
        res = syn.run(geom, generator=gen)
        ok = prefilter(hand, res, geom).cpu().numpy()
        stats["synthesized"] += len(ok)
        stats["prefiltered"] += int(ok.sum())
        p, q = res.pose.cpu().double().numpy()[ok], res.joints.cpu().double().numpy()[ok]
        v = validator(spec, p, q)
        poses.append(p[v.success])
        joints.append(q[v.success])
        stats["valid"] += int(v.success.sum())
        if stats["valid"] >= cfg.min_grasps:
            break
    stats["seconds"] = time.perf_counter() - t0
    pose, joint = np.concatenate(poses), np.concatenate(joints)
    _atomic_npz(path, pose=pose, joints=joint, stats=json.dumps(stats))
    return pose, joint, stats


# settings that do not change a shard's content (a re-run may change them)
_RUNTIME_SETTINGS = ("device", "workers")


def _content_settings(settings: dict) -> dict:
    return {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in _RUNTIME_SETTINGS}


def _check_settings(root: Path, cfg: GenerateConfig) -> None:
    """Refuse to add shards to a dataset made with other content settings (manifest, else a shard)."""
    recorded, where = None, None
    if (root / MANIFEST_NAME).is_file():
        recorded, where = read_manifest(root).get("metadata", {}).get("generator"), root / MANIFEST_NAME
    if recorded is None:
        for path in sorted(root.glob("shard_*.h5")):
            try:
                reader = ShardReader(path)
            except ShardError:
                continue  # unreadable: it is regenerated
            recorded, where = reader.metadata.get("generator"), path
            reader.close()
            break
    if not isinstance(recorded, dict):
        return
    want, got = _content_settings(recorded), _content_settings(asdict(cfg))
    diff = [
        f"{k}: {want.get(k)!r} -> {got.get(k)!r}" for k in sorted(set(want) | set(got)) if want.get(k) != got.get(k)
    ]
    if diff:
        raise ValueError(
            f"--out {root}: holds a dataset generated with other settings ({where.name}): {'; '.join(diff)}; "
            "re-run with the recorded arguments or choose another --out (shards of mixed settings are refused)"
        )


def shard_done(path: Path, recorded: dict[str, dict] | None = None) -> bool:
    """Whether ``path`` is a finished shard to keep: readable and, when the manifest lists it
    (``recorded``: manifest entries by file name), matching its recorded sha256 (a changed shard is
    regenerated, never re-hashed)."""
    recorded = recorded or {}
    if not path.is_file():
        return False
    try:
        ShardReader(path).close()
        if path.name in recorded:
            verify_shards(path.parent, [recorded[path.name]])
        return True
    except ShardError as err:
        log.warning("%s is unreadable or changed (%s): regenerating it", path, err)
        return False


def generate(
    out: str | Path, cfg: GenerateConfig, *, shard: tuple[int, int] = (0, 1), progress: bool = True, validator=None
) -> dict:
    """Generate (or resume) this process's shards of a dataset; write the manifest at the end.

    Returns a report: shards written/skipped, samples, grasps, grasp yield, seconds.
    """
    from sceneleap_core.data.camera import (
        Intrinsics,
        add_depth_noise,
        crop_workspace,
        depth_to_points,
        raycast_depth,
        sample_camera_poses,
    )
    from sceneleap_core.data.scenes import TABLE_HALF, filter_scene_grasps, scene_lift_validate, settle_scene
    from sceneleap_core.data.validate import default_validator
    from sceneleap_core.hand import HandModel

    if cfg.split not in ("train", "val", "test"):
        raise ValueError(f"split: expected train, val or test, got {cfg.split!r}")
    if cfg.num_scenes < 1 or cfg.scenes_per_shard < 1:
        raise ValueError(
            f"expected num_scenes >= 1 and scenes_per_shard >= 1, got {cfg.num_scenes}, {cfg.scenes_per_shard}"
        )
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    _check_settings(root, cfg)
    remove_stale_temps(root / "grasps")  # grasp-cache temps of killed processes
    recorded = {e["file"]: e for e in read_manifest(root)["shards"]} if (root / MANIFEST_NAME).is_file() else {}
    t_start = time.perf_counter()
    # 1. object table (identical for every process: deterministic)
    library = make_library(cfg.num_objects, seed=cfg.object_seed, use_pybullet=cfg.use_pybullet)
    save_object_table(root / OBJECT_TABLE_NAME, library, metadata={"generator": asdict(cfg)})
    pool = [o for o in library if o.split == cfg.split]
    if not pool:
        raise ValueError(
            f"split {cfg.split!r}: expected objects in it, got none of {len(library)} (raise --num-objects)"
        )
    hand = HandModel.load().to(cfg.device)
    owns_validator = validator is None
    validator = validator or default_validator(protocol=cfg.protocol, workers=cfg.workers)
    intr = Intrinsics.from_fov(cfg.width, cfg.height, cfg.hfov_deg)
    lower = np.array([-TABLE_HALF[0], -TABLE_HALF[1], -0.01])
    upper = np.array([TABLE_HALF[0], TABLE_HALF[1], 0.4])
    i_proc, n_proc = shard
    num_shards = -(-cfg.num_scenes // cfg.scenes_per_shard)
    mine = [k for k in range(num_shards) if k % n_proc == i_proc]
    report = {"shards_written": 0, "shards_skipped": 0, "samples": 0, "grasps": 0, "bad_objects": []}
    grasp_stats: dict[tuple[int, str], dict] = {}
    written: list[Path] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(mine) * cfg.scenes_per_shard, desc=f"scenes (shard {i_proc}/{n_proc})", unit="scene")
    for k in mine:
        path = root / f"shard_{k:05d}.h5"
        if shard_done(path, recorded):
            report["shards_skipped"] += 1
            if bar is not None:
                bar.update(cfg.scenes_per_shard)
            continue
        writer = ShardWriter(path, hand=hand.description.name, dof=hand.dof, compression=cfg.compression, metadata={})
        used: dict[int, LibraryObject] = {}
        for scene_id in range(k * cfg.scenes_per_shard, min((k + 1) * cfg.scenes_per_shard, cfg.num_scenes)):
            rng = np.random.default_rng([cfg.seed, scene_id])
            count = int(rng.integers(cfg.objects_per_scene[0], cfg.objects_per_scene[1] + 1))
            chosen = [pool[j] for j in rng.choice(len(pool), size=min(count, len(pool)), replace=False)]
            # 2. settle, 3. grasps per object (in its resting pose, or cached per object), 4. into the scene
            try:
                scene = settle_scene(scene_id, chosen, rng)
            except ValueError as err:
                log.warning("scene %d skipped: %s", scene_id, err)
                continue
            grasps = {}
            for spec, rest in zip(scene.objects, scene.poses, strict=True):
                where = {"resting_pose": rest, "table_z": scene.table_z, "tag": f"_scene{scene_id:06d}"}
                try:
                    pose, joints, stats = object_grasps(
                        spec, cfg, root, hand, validator, **(where if cfg.scene_synthesis else {})
                    )
                    grasps[spec.id] = (pose, joints)
                    grasp_stats[(spec.id, where["tag"] if cfg.scene_synthesis else "")] = stats
                except Exception as err:  # a bad object is logged and skipped, never fatal
                    log.warning("object %d (%s) failed: %s", spec.id, spec.kind, err)
                    report["bad_objects"].append(spec.id)
            g_pose, g_joints, g_obj = filter_scene_grasps(
                hand, scene, grasps, max_per_object=cfg.max_grasps_per_object, rng=rng
            )
            if cfg.scene_lift and len(g_pose) and not getattr(validator, "name", "").startswith("geometric"):
                ok = scene_lift_validate(scene, g_pose, g_joints, g_obj)
                g_pose, g_joints, g_obj = g_pose[ok], g_joints[ok], g_obj[ok]
            for o in scene.objects:
                used[o.id] = o
            # 5. views: ray cast, noise, crop, subsample; everything into the camera frame
            geom_obj = scene.geom_object_ids()
            for cam in sample_camera_poses(cfg.views_per_scene, rng):
                depth, geom = raycast_depth(scene.model, scene.data, cam, intr)
                noisy = add_depth_noise(depth, rng)
                pts, pix = depth_to_points(noisy, intr)
                hit = geom.ravel()[pix]
                ids = np.where(hit >= 0, geom_obj[np.maximum(hit, 0)], -1).astype(np.int32)
                keep = crop_workspace(pts, cam, lower, upper)
                pts, ids = pts[keep], ids[keep]
                if len(pts) == 0:
                    continue
                if len(pts) > cfg.max_points:
                    sel = np.sort(rng.choice(len(pts), cfg.max_points, replace=False))
                    pts, ids = pts[sel], ids[sel]
                cam_inv = np.linalg.inv(cam)
                writer.add(
                    Sample(
                        points=pts.astype(np.float32),
                        point_object=ids,
                        camera_pose=cam,
                        grasp_pose=(cam_inv @ g_pose).astype(np.float32)
                        if len(g_pose)
                        else np.zeros((0, 4, 4), np.float32),
                        grasp_joints=g_joints.astype(np.float32).reshape(-1, hand.dof),
                        grasp_object=g_obj.astype(np.int32),
                        scene_id=scene_id,
                        object_ids=np.array([o.id for o in scene.objects], dtype=np.int32),
                        object_pose=scene.poses,
                    )
                )
                report["grasps"] += len(g_pose)
            if bar is not None:
                bar.update(1)
        if not writer.samples:
            log.warning("shard %d: no samples (all scenes failed)", k)
            continue
        writer.metadata = {
            "generator": asdict(cfg),
            "objects": [o.to_dict() for o in used.values()],
            "validator": getattr(validator, "name", "?"),
            "intrinsics": asdict(intr),
            "table": {"half_extents": list(TABLE_HALF), "top_z": 0.0},
        }
        report["samples"] += len(writer.samples)
        written.append(writer.close())
        report["shards_written"] += 1
    if bar is not None:
        bar.close()
    # 6. manifest over every finished shard: the shards written here are hashed, listed ones keep their
    #    recorded checksum; concurrent processes merge under a lock
    totals = {"synthesized": 0, "prefiltered": 0, "valid": 0, "seconds": 0.0}
    for s in grasp_stats.values():
        for key in totals:
            totals[key] += s.get(key, 0)
    report["grasp_synthesis"] = totals
    report["validator"] = getattr(validator, "name", "?")
    if owns_validator and hasattr(validator, "close"):
        validator.close()  # the worker pool
    report["seconds"] = time.perf_counter() - t_start
    write_manifest(
        root,
        metadata={"generator": asdict(cfg), "validator": report["validator"]},
        pattern="shard_*.h5",
        written=written,
    )
    return report
