"""Building the object grasp library (:mod:`sceneleap_core.data.library`) at scale, resumable by part.

Recipe per object (ids ``first_id .. first_id + num_objects - 1``, every split):

1. resting poses (:func:`resting_poses`): the object alone, dropped on the table from a few random
   orientations in MuJoCo (the evaluator's own object and table, :func:`sim.mjcf.build_objects_xml`),
   settled; rests whose object-frame up axis agree within ``same_rest_deg`` are one rest modulo
   yaw; each kept rest is re-centred so the centroid is above x = y = 0. Up to ``rests_per_object``.
2. per rest, table-aware synthesis (:class:`~sceneleap_core.data.synthesis.GraspSynthesizer` on
   ``device``) with approach diversity: ``side_fraction`` of the batch starts near-horizontal,
   ``power_fraction`` starts close to the object with a more closed preshape; then the prefilter.
3. validation of every grasp in a persistent spawn pool (:class:`~sceneleap_core.data.validate.
   SimValidator`): the lift test with the object resting on the table in that rest (the pregrasp
   must clear the table) and the disturbance test (object alone). Synthesis of the next object
   overlaps the validation of the previous ones (``lookahead`` objects in flight).
4. labels (:func:`grasp_labels`), documented there.

Output (``OUT``)::

    OUT/parts/part_NNNNN.npz   objects [k * objects_per_part, (k + 1) * objects_per_part) of the
                               id range, a GraspLibrary (``.save``: atomic) whose metadata holds the
                               settings and per-object stats; process i of n (``--shard i/n``)
                               makes parts k with k % n == i; an existing readable part is skipped
    OUT/library.npz            :func:`merge`: every part concatenated, metadata with the settings,
                               per-object stats, per-family yield, totals and validated grasps/s

Everything random is seeded by (seed, object id): a part's content does not depend on who made it
(on CUDA, synthesis is deterministic up to floating-point reduction order).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sceneleap_core.data.library import APPROACHES, GRASP_TYPES, LIBRARY_FILE, GraspLibrary
from sceneleap_core.data.objects import LibraryObject, build_mesh, make_procedural, pybullet_urdf_objects

log = logging.getLogger(__name__)
PARTS_DIR = "parts"


@dataclass
class BuildConfig:
    """Library build settings (stored in every part and in the merged library's metadata).

    Defaults are the tuned throughput settings (measured in bench/RESULTS.md).
    """

    num_objects: int = 8
    first_id: int = 0
    object_seed: int = 0
    seed: int = 0
    use_pybullet: bool = False
    objects_per_part: int = 8
    # 1. resting poses
    rests_per_object: int = 2
    rest_trials: int = 6
    same_rest_deg: float = 10.0
    settle_time: float = 1.5
    # 2. synthesis
    synth_batch: int = 64
    synth_steps: int = 150
    synth_rounds: int = 1
    side_fraction: float = 0.35
    power_fraction: float = 0.25
    device: str = "cpu"
    # 3. validation
    protocol: str = "lift+disturbance"
    workers: int = 1
    chunk_size: int = 8
    lookahead: int = 2
    # 4. labels
    power_distance: float = 0.01
    top_angle_deg: float = 45.0

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        positive = ("num_objects", "objects_per_part", "rests_per_object", "rest_trials", "synth_batch",
                    "synth_rounds", "workers", "chunk_size", "lookahead")  # fmt: skip
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.synth_steps < 0 or self.first_id < 0:
            raise ValueError(f"synth_steps, first_id: expected >= 0, got {self.synth_steps}, {self.first_id}")
        for name in ("side_fraction", "power_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {getattr(self, name)}")
        if self.protocol not in ("lift", "lift+disturbance"):
            raise ValueError(f"protocol: expected 'lift' or 'lift+disturbance', got {self.protocol!r}")


def resolve_device(device: str, shard_index: int = 0) -> str:
    """``cuda`` -> ``cuda:{shard_index % device_count}`` (one GPU per shard process); else as given."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device: expected an available CUDA device for 'cuda', got none (use cpu)")
        return f"cuda:{shard_index % torch.cuda.device_count()}"
    if device != "cpu" and not device.startswith("cuda:"):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")
    return device


def library_objects(cfg: BuildConfig) -> list[LibraryObject]:
    """The objects of the build: procedural ids [first_id, first_id + num_objects) (every split),
    then, with ``use_pybullet``, the random_urdfs meshes (test ones included)."""
    from sceneleap_core.data.objects import KINDS

    ids = range(cfg.first_id, cfg.first_id + cfg.num_objects)
    specs = []
    for i in ids:
        try:
            specs.append(make_procedural(i, seed=cfg.object_seed, kind=KINDS[i % len(KINDS)]))
        except ValueError as err:  # a bad object is logged and skipped, never fatal
            log.warning("object %d skipped: %s", i, err)
    if cfg.use_pybullet:
        specs += pybullet_urdf_objects(include_test=True)
    return specs


# ---------------------------------------------------------------------------- 1. resting poses
def resting_poses(
    spec: LibraryObject,
    rng: np.random.Generator,
    *,
    count: int = 2,
    trials: int = 6,
    same_rest_deg: float = 10.0,
    settle_time: float = 1.5,
    sim_config=None,
) -> np.ndarray:
    """Distinct resting poses (R, 4, 4) (table <- object, table top z = 0), R <= ``count``.

    Recipe: 1. one MuJoCo model of the object and the table (the evaluator's, through
    ``build_objects_xml``); 2. per trial: random orientation, dropped from 2 cm above its lowest
    point, simulated ``settle_time`` s; a trial counts if the object is at rest on the table;
    3. its up axis in the object frame u = R^T e_z; a rest within ``same_rest_deg`` of a kept one
    is the same rest modulo yaw; 4. x, y of the kept poses set to 0 (centroid above the origin).
    Returns (0, 4, 4) when no trial settled.
    """
    import mujoco
    from scipy.spatial.transform import Rotation

    from sceneleap_core.data.validate import sim_scene
    from sceneleap_core.sim.config import SimConfig
    from sceneleap_core.sim.mjcf import build_objects_xml

    cfg = sim_config or SimConfig()
    mesh = build_mesh(spec)
    scene = sim_scene([spec], np.eye(4)[None], 0.0)
    scene.validate()
    model = mujoco.MjModel.from_xml_string(build_objects_xml(scene, cfg, seed=spec.id))
    data = mujoco.MjData(model)
    body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "object_0")
    adr = model.jnt_qposadr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "object_0_free")]
    cos_same = np.cos(np.deg2rad(same_rest_deg))
    kept, ups = [], []
    for _ in range(trials):
        rot = Rotation.random(random_state=int(rng.integers(1 << 31)))
        lowest = (rot.apply(np.asarray(mesh.vertices)))[:, 2].min()
        mujoco.mj_resetData(model, data)
        data.qpos[adr : adr + 3] = [0.0, 0.0, 0.02 - lowest]
        q = rot.as_quat()
        data.qpos[adr + 3 : adr + 7] = [q[3], q[0], q[1], q[2]]
        for _ in range(round(settle_time / model.opt.timestep)):
            mujoco.mj_step(model, data)
        pos, r = data.xpos[body].copy(), data.xmat[body].reshape(3, 3).copy()
        if np.linalg.norm(data.cvel[body]) > 0.05 or pos[2] < 0 or np.abs(pos[:2]).max() > 0.3:
            continue  # still moving, or off the table
        up = r.T @ np.array([0.0, 0.0, 1.0])
        if any(up @ u > cos_same for u in ups):
            continue
        pose = np.eye(4)
        pose[:3, :3], pose[2, 3] = r, pos[2]
        kept.append(pose)
        ups.append(up)
        if len(kept) == count:
            break
    return np.stack(kept) if kept else np.zeros((0, 4, 4))


# ---------------------------------------------------------------------------- 4. labels
def grasp_labels(
    hand,
    pose: torch.Tensor,
    joints: torch.Tensor,
    rest_pose: torch.Tensor,
    surface: torch.Tensor,
    *,
    power_distance: float = 0.01,
    top_angle_deg: float = 45.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Grasp type and approach labels (G,) uint8 of grasps pose (G, 4, 4), joints (G, J) (object
    frame) of an object resting at ``rest_pose`` (4, 4) (table <- object), surface samples (M, 3).

    Rules:
      - type: ``power`` (1) when some object surface sample lies within ``power_distance`` (1 cm)
        of one of the palm link's collision boxes (the palm touches or nearly touches the object:
        the object is held against the palm), else ``precision`` (0, fingers only);
      - approach: the approach axis a = R_rest R_grasp ``hand.approach_axis`` in the table frame;
        ``top`` (0) when the angle between a and straight down (-z) is at most ``top_angle_deg``
        (45 deg), else ``side`` (1).
    """
    with torch.no_grad():
        dt, dev = hand.dtype, hand.device
        pose, joints = pose.to(dev, dt), joints.to(dev, dt)
        rest, surface = rest_pose.to(dev, dt), surface.to(dev, dt)
        if len(pose) == 0:
            return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
        state = hand(joints, pose, validate=False)
        d = hand.box_distances(state, surface[None].expand(len(pose), -1, -1))  # (G, M, K)
        palm = hand.box_link == hand.description.link_index(hand.description.root_link)  # (K,)
        near = d[..., palm].amin(dim=(1, 2))  # (G,)
        kind = (near <= power_distance).to(torch.uint8)
        a = rest[:3, :3] @ pose[:, :3, :3] @ hand.approach_axis  # (G, 3)
        cos_down = -a[:, 2] / a.norm(dim=-1)
        approach = (cos_down < np.cos(np.deg2rad(top_angle_deg))).to(torch.uint8)
    return kind.cpu().numpy(), approach.cpu().numpy()


# ---------------------------------------------------------------------------- 2.-3. one object
@dataclass
class _InFlight:
    """An object whose grasps are being validated."""

    spec: LibraryObject
    rests: np.ndarray
    grasps: list  # per rest: (pose (G, 4, 4), joints (G, J), pending validation)
    stats: dict
    t0: float


class LibraryBuilder:
    """Owns the hand model, the synthesizer and the validation pool of one build process.

    Args:
        cfg: :class:`BuildConfig`.
        device: torch device of synthesis and labels (resolved, e.g. ``cuda:1``).
        validator: a :class:`~sceneleap_core.data.validate.SimValidator` (None: one with
            ``cfg.workers`` spawn workers, closed by :meth:`close`).
    """

    def __init__(self, cfg: BuildConfig, *, device: str = "cpu", validator=None):
        from sceneleap_core.data.synthesis import GraspSynthesizer
        from sceneleap_core.data.validate import SimValidator
        from sceneleap_core.hand import HandModel

        cfg.check()
        self.cfg, self.device = cfg, device
        self.hand = HandModel.load().to(device)
        self.synth = GraspSynthesizer(
            self.hand,
            batch_size=cfg.synth_batch,
            steps=cfg.synth_steps,
            side_fraction=cfg.side_fraction,
            power_fraction=cfg.power_fraction,
        )
        self._surface: dict[int, torch.Tensor] = {}  # object id -> (M, 3) samples, until labelled
        self._owns = validator is None
        self.validator = validator or SimValidator(
            protocol=cfg.protocol, workers=cfg.workers, chunk_size=cfg.chunk_size
        )

    def close(self) -> None:
        if self._owns:
            self.validator.close()

    def __enter__(self) -> LibraryBuilder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, spec: LibraryObject) -> _InFlight:
        """Rests, synthesis and prefilter of one object (this process), validation submitted."""
        from sceneleap_core.data.synthesis import object_geometry, prefilter

        cfg, t0 = self.cfg, time.perf_counter()
        stats = {"id": spec.id, "kind": spec.kind, "split": spec.split, "rests": 0, "synthesized": 0,
                 "prefiltered": 0, "lift_passed": 0, "both_passed": 0, "rest_s": 0.0, "synth_s": 0.0,
                 "lift_cpu_s": 0.0, "disturbance_cpu_s": 0.0}  # fmt: skip
        rng = np.random.default_rng([cfg.seed, spec.id])
        rests = resting_poses(
            spec, rng, count=cfg.rests_per_object, trials=cfg.rest_trials,
            same_rest_deg=cfg.same_rest_deg, settle_time=cfg.settle_time,
        )  # fmt: skip
        stats["rests"] = len(rests)
        stats["rest_s"] = time.perf_counter() - t0
        geom = object_geometry(build_mesh(spec), seed=spec.id)
        gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + spec.id)
        grasps = []
        t1 = time.perf_counter()
        for rest in rests:
            on_table = geom.on_table(rest, 0.0)
            for _ in range(cfg.synth_rounds):
                res = self.synth.run(on_table, generator=gen)
                ok = prefilter(self.hand, res, on_table).cpu().numpy()
                stats["synthesized"] += len(ok)
                stats["prefiltered"] += int(ok.sum())
                pose = res.pose.detach().cpu().double().numpy()[ok]
                joints = res.joints.detach().cpu().double().numpy()[ok]
                grasps.append((rest, pose, joints, self.validator.submit(spec, pose, joints, rest_pose=rest)))
        stats["synth_s"] = time.perf_counter() - t1
        self._surface[spec.id] = geom.surface
        return _InFlight(spec, rests, grasps, stats, t0)

    def finish(self, job: _InFlight) -> tuple[list, dict]:
        """Wait for an object's validation; label the grasps that passed both tests.

        Returns the rest entries [(rest (4, 4), pose (G, 4, 4), joints (G, J), type (G,), approach
        (G,))] and the object's stats."""
        cfg, stats = self.cfg, job.stats
        surface = self._surface.pop(job.spec.id)
        entries = []
        by_rest: dict[int, list] = {}
        for rest, pose, joints, pending in job.grasps:
            v = pending.result()
            stats["lift_passed"] += int(v.lift_passed.sum())
            stats["both_passed"] += int(v.success.sum())
            stats["lift_cpu_s"] += v.lift_seconds
            stats["disturbance_cpu_s"] += v.disturbance_seconds
            by_rest.setdefault(id(rest), [rest, [], []])
            by_rest[id(rest)][1].append(pose[v.success])
            by_rest[id(rest)][2].append(joints[v.success])
        for rest, poses, joints in by_rest.values():
            pose, joint = np.concatenate(poses), np.concatenate(joints)
            kind, approach = grasp_labels(
                self.hand, torch.as_tensor(pose), torch.as_tensor(joint), torch.as_tensor(rest), surface,
                power_distance=cfg.power_distance, top_angle_deg=cfg.top_angle_deg,
            )  # fmt: skip
            entries.append((rest, pose, joint, kind, approach))
        stats["seconds"] = time.perf_counter() - job.t0
        return entries, stats


def _part_library(objects: list[LibraryObject], results: dict, dof: int, metadata: dict) -> GraspLibrary:
    rest_object, rest_pose, g_rest, g_pose, g_joints, g_type, g_app = [], [], [], [], [], [], []
    for spec in objects:
        for rest, pose, joints, kind, approach in results.get(spec.id, []):
            r = len(rest_object)
            rest_object.append(spec.id)
            rest_pose.append(rest)
            g_rest.append(np.full(len(pose), r))
            g_pose.append(pose)
            g_joints.append(joints.reshape(len(pose), dof))
            g_type.append(kind)
            g_app.append(approach)
    cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)  # noqa: E731
    return GraspLibrary(
        objects=objects,
        rest_object=np.asarray(rest_object, dtype=np.int32),
        rest_pose=cat([r[None] for r in rest_pose], (0, 4, 4)),
        grasp_rest=cat(g_rest, (0,)),
        grasp_pose=cat(g_pose, (0, 4, 4)),
        grasp_joints=cat(g_joints, (0, dof)),
        grasp_type=cat(g_type, (0,)),
        grasp_approach=cat(g_app, (0,)),
        metadata=metadata,
    )


def part_path(out: str | Path, k: int) -> Path:
    return Path(out) / PARTS_DIR / f"part_{k:05d}.npz"


def _part_done(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        GraspLibrary.load(path)
        return True
    except ValueError as err:
        log.warning("%s is unreadable (%s): rebuilding it", path, err)
        return False


def build(
    out: str | Path,
    cfg: BuildConfig,
    *,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    command: str | None = None,
    validator=None,
) -> dict:
    """Build (or resume) this process's parts of a library in ``out``. Returns a report: parts
    written/skipped, objects, grasps, failed object ids, seconds."""
    cfg.check()
    i_proc, n_proc = shard
    device = resolve_device(cfg.device, i_proc) if cfg.device == "cuda" else resolve_device(cfg.device)
    out = Path(out)
    (out / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    objects = library_objects(cfg)
    num_parts = -(-len(objects) // cfg.objects_per_part)
    mine = [k for k in range(num_parts) if k % n_proc == i_proc]
    todo = [k for k in mine if not _part_done(part_path(out, k))]
    report = {"parts_written": 0, "parts_skipped": len(mine) - len(todo), "objects": 0, "grasps": 0, "failed": []}
    command = command or " ".join(sys.argv)
    bar = None
    if progress:
        from tqdm import tqdm

        n_obj = sum(len(objects[k * cfg.objects_per_part : (k + 1) * cfg.objects_per_part]) for k in todo)
        bar = tqdm(total=n_obj, desc=f"library objects (shard {i_proc}/{n_proc})", unit="obj")
    with LibraryBuilder(cfg, device=device, validator=validator) as builder:
        queue = [(k, spec) for k in todo for spec in objects[k * cfg.objects_per_part : (k + 1) * cfg.objects_per_part]]
        remaining = {k: len(objects[k * cfg.objects_per_part : (k + 1) * cfg.objects_per_part]) for k in todo}
        results: dict[int, dict] = {k: {} for k in todo}
        stats: dict[int, list] = {k: [] for k in todo}
        t_part = {k: None for k in todo}
        flight: deque = deque()

        def collect(k, job):
            s = job.stats
            if "error" not in s:  # (an object that failed before validation has its stats already)
                try:
                    entries, s = builder.finish(job)
                    results[k][job.spec.id] = entries
                except Exception as err:  # a failing object is logged and skipped, never fatal
                    log.warning("object %d (%s) failed in validation: %s", job.spec.id, job.spec.kind, err)
                    s = {**job.stats, "error": str(err), "seconds": time.perf_counter() - job.t0}
                    report["failed"].append(job.spec.id)
            stats[k].append(s)
            remaining[k] -= 1
            if bar is not None:
                bar.update(1)
            if remaining[k] == 0:
                part_objects = objects[k * cfg.objects_per_part : (k + 1) * cfg.objects_per_part]
                meta = {"build": asdict(cfg), "command": command, "shard": [i_proc, n_proc], "device": device,
                        "part": k, "objects_stats": stats[k], "wall_seconds": time.perf_counter() - t_part[k]}  # fmt: skip
                lib = _part_library(part_objects, results.pop(k), builder.hand.dof, meta)
                lib.save(part_path(out, k))
                report["parts_written"] += 1
                report["grasps"] += lib.num_grasps

        for k, spec in queue:
            t_part[k] = t_part[k] or time.perf_counter()
            try:
                flight.append((k, builder.start(spec)))
            except Exception as err:  # a failing object is logged and skipped, never fatal
                log.warning("object %d (%s) failed: %s", spec.id, spec.kind, err)
                report["failed"].append(spec.id)
                dummy = _InFlight(spec, np.zeros((0, 4, 4)), [], {"id": spec.id, "kind": spec.kind,
                                  "split": spec.split, "error": str(err)}, time.perf_counter())  # fmt: skip
                flight.append((k, dummy))
            report["objects"] += 1
            while len(flight) > cfg.lookahead or (flight and flight[0][1].grasps and _ready(flight[0][1])):
                collect(*flight.popleft())
        while flight:
            collect(*flight.popleft())
    if bar is not None:
        bar.close()
    report["seconds"] = time.perf_counter() - t_start
    return report


def _ready(job: _InFlight) -> bool:
    return all(p.done() for *_, p in job.grasps)


# ---------------------------------------------------------------------------- merge and stats
def merge(out: str | Path) -> dict:
    """Concatenate every part of ``out/parts`` into ``out/library.npz`` with build metadata.

    Metadata: ``build`` (settings of the first part), ``seed``, ``commands``, ``objects_stats``
    (per object: rests, synthesized, prefiltered, lift_passed, both_passed, seconds), ``families``
    (per object kind: objects, with grasps, synthesized, validated, yield = validated/synthesized),
    ``totals``, ``validated_grasps_per_s`` (validated grasps / the busiest shard's summed part wall
    time: the throughput of the parallel build). Returns the metadata."""
    out = Path(out)
    paths = sorted((out / PARTS_DIR).glob("part_*.npz"))
    if not paths:
        raise ValueError(f"library merge: expected parts in {out / PARTS_DIR}, got none (run `library build` first)")
    parts = [GraspLibrary.load(p) for p in paths]
    per_object = [s for p in parts for s in p.metadata.get("objects_stats", [])]
    keys = ("rests", "synthesized", "prefiltered", "lift_passed", "both_passed")
    totals = {k: int(sum(s.get(k, 0) for s in per_object)) for k in keys}
    for k in ("seconds", "rest_s", "synth_s", "lift_cpu_s", "disturbance_cpu_s"):
        totals[k] = float(sum(s.get(k, 0.0) for s in per_object))
    totals["objects"] = len(per_object)
    totals["failed"] = sum(1 for s in per_object if "error" in s)
    families: dict[str, dict] = {}
    for s in per_object:
        f = families.setdefault(s.get("kind", "?"), {"objects": 0, "with_grasps": 0, "synthesized": 0, "validated": 0})
        f["objects"] += 1
        f["with_grasps"] += int(s.get("both_passed", 0) > 0)
        f["synthesized"] += s.get("synthesized", 0)
        f["validated"] += s.get("both_passed", 0)
    for f in families.values():
        f["yield"] = f["validated"] / max(f["synthesized"], 1)
    shard_wall: dict[str, float] = {}
    for p in parts:
        key = str(p.metadata.get("shard", [0, 1]))
        shard_wall[key] = shard_wall.get(key, 0.0) + float(p.metadata.get("wall_seconds", 0.0))
    first = parts[0].metadata
    lib = GraspLibrary.concatenate(parts)
    totals["grasps"] = lib.num_grasps
    wall = max(shard_wall.values()) if shard_wall else 0.0
    meta = {
        "build": first.get("build", {}),
        "seed": first.get("build", {}).get("seed"),
        "commands": sorted({p.metadata.get("command", "") for p in parts}),
        "parts": len(parts),
        "objects_stats": per_object,
        "families": families,
        "totals": totals,
        "shard_wall_seconds": shard_wall,
        "validated_grasps_per_s": lib.num_grasps / wall if wall > 0 else 0.0,
        "grasp_types": {t: int((lib.grasp_type == i).sum()) for i, t in enumerate(GRASP_TYPES)},
        "approaches": {a: int((lib.grasp_approach == i).sum()) for i, a in enumerate(APPROACHES)},
    }
    lib.metadata = meta
    lib.save(out / LIBRARY_FILE)
    return meta


def library_stats(path: str | Path, png: str | Path | None = None) -> str:
    """A text table of a merged library (``DIR`` or ``.npz``): totals, grasp types, approach
    directions, per-family yield; with ``png``, the same as a picture (type and approach
    histograms, the angle of the approach from straight down, per-family yield)."""
    lib = GraspLibrary.load(path)
    meta = lib.metadata
    totals = meta.get("totals", {})
    lines = [f"library {path}: {len(lib.objects)} objects, {len(lib.rest_object)} rests, {lib.num_grasps} grasps"]
    for key in ("synthesized", "prefiltered", "lift_passed", "both_passed", "seconds"):
        if key in totals:
            lines.append(f"  {key:<14} {totals[key]:.1f}" if key == "seconds" else f"  {key:<14} {totals[key]}")
    if "validated_grasps_per_s" in meta:
        lines.append(f"  validated grasps/s {meta['validated_grasps_per_s']:.2f}")
    for name, labels, values in (("type", GRASP_TYPES, lib.grasp_type), ("approach", APPROACHES, lib.grasp_approach)):
        counts = ", ".join(f"{lab} {int((values == i).sum())}" for i, lab in enumerate(labels))
        lines.append(f"  {name:<9} {counts}")
    families = meta.get("families", {})
    if families:
        lines.append(f"  {'family':<13}{'objects':>8}{'w/grasps':>9}{'synth':>8}{'valid':>8}{'yield':>7}")
        for kind, f in sorted(families.items()):
            lines.append(
                f"  {kind:<13}{f['objects']:>8}{f['with_grasps']:>9}{f['synthesized']:>8}{f['validated']:>8}"
                f"{f['yield']:>7.2f}"
            )
    splits = {s: len(lib.split(s)) for s in ("train", "val", "test")}
    lines.append("  objects with grasps per split: " + ", ".join(f"{k} {v}" for k, v in splits.items()))
    if png is not None:
        _stats_png(lib, families, png)
        lines.append(f"wrote {png}")
    return "\n".join(lines)


def _stats_png(lib: GraspLibrary, families: dict, png: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sceneleap_core.hand.description import HandDescription

    axis = HandDescription.load().approach_axis
    a = np.einsum("gij,gjk,k->gi", lib.rest_pose[lib.grasp_rest][:, :3, :3], lib.grasp_pose[:, :3, :3], axis)
    angle = np.degrees(np.arccos(np.clip(-a[:, 2] / np.linalg.norm(a, axis=1).clip(1e-12), -1, 1)))
    fig, ax = plt.subplots(1, 4, figsize=(16, 3.6))
    ax[0].bar(GRASP_TYPES, [int((lib.grasp_type == i).sum()) for i in range(len(GRASP_TYPES))])
    ax[0].set_title("grasp type")
    ax[1].bar(APPROACHES, [int((lib.grasp_approach == i).sum()) for i in range(len(APPROACHES))])
    ax[1].set_title("approach")
    ax[2].hist(angle, bins=18, range=(0, 180))
    ax[2].axvline(45, color="k", ls="--")
    ax[2].set_title("approach angle from straight down (deg)")
    kinds = sorted(families)
    ax[3].bar(kinds, [families[k]["yield"] for k in kinds])
    ax[3].set_title("yield (validated / synthesized)")
    ax[3].tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def read_merged_meta(out: str | Path) -> dict:
    """The metadata of ``out/library.npz`` (JSON), without loading the grasps."""
    with np.load(Path(out) / LIBRARY_FILE, allow_pickle=False) as z:
        return json.loads(str(z["metadata"]))
