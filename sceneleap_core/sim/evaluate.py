"""Batch grasp evaluation: the lift and disturbance protocols over G grasps, in parallel processes.

Notation: G grasps, J hand DoF, O objects; arrays are ``(G,)`` unless noted (``(G x 6)`` per push
direction +x, −x, +y, −y, +z, −z).

Usage::

    from sceneleap_core.sim import SceneSpec, ObjectSpec, evaluate_grasps
    scene = SceneSpec([ObjectSpec("box", (0.025, 0.025, 0.025), pose)], table_height=0.0)
    report = evaluate_grasps(scene, palm_pose, joints, target=0, protocol="both", workers=4)
    report.lift.success, report.disturbance.success, report.summary()

Every grasp is simulated from a fresh reset of its scene, so results depend only on the inputs,
the config and the seed, never on the worker count or on the chunking.
"""

from __future__ import annotations

import uuid
from concurrent.futures import as_completed
from dataclasses import dataclass, fields

import numpy as np

from sceneleap_core.sim.config import SimConfig
from sceneleap_core.sim.pool import WorkerPool
from sceneleap_core.sim.scene import SceneSpec, check_grasps

PROTOCOLS = ("lift", "disturbance", "both")


@dataclass
class LiftResult:
    """Lift test of G grasps (all lengths in metres, penetrations in millimetres).

    Attributes:
        success: (G,) bool.
        failure: (G,) str: "" (success), "pregrasp_penetration", "grasp_penetration", "not_lifted".
        pregrasp_penetration_mm: (G,) deepest penetration of the pregrasp into objects or table.
        penetration_object_mm: (G,) of the commanded grasp into the target (MuJoCo contact depth).
        penetration_scene_mm: (G,) of the commanded grasp into other objects and the table.
        tip_contacts: (G,) int, fingertip links touching the target after the squeeze.
        q1: (G,) Q1 of the hand–target contacts after the squeeze (newtons, see eval.metrics).
        lift_height: (G,) target z at the end minus its start (NaN when not simulated).
        max_other_displacement_mm: (G,) largest displacement of any non-target object during the
            rollout (approach, close, squeeze, settle, lift, hold; sampled every 10 steps); 0 when
            the grasp failed a gate and was not simulated. Clutter rule: > 10 mm disturbs the scene.
    """

    success: np.ndarray
    failure: np.ndarray
    pregrasp_penetration_mm: np.ndarray
    penetration_object_mm: np.ndarray
    penetration_scene_mm: np.ndarray
    tip_contacts: np.ndarray
    q1: np.ndarray
    lift_height: np.ndarray
    max_other_displacement_mm: np.ndarray


@dataclass
class DisturbanceResult:
    """Disturbance test of G grasps (target object alone, no table, gravity off).

    Attributes:
        success: (G,) bool.
        failure: (G,) str: "", "pregrasp_penetration", "grasp_penetration", "moved", "rotated".
        penetration_object_mm: (G,) of the commanded grasp into the object.
        tip_contacts: (G,) int after the squeeze.
        q1: (G,) after the squeeze.
        translation: (G x 6) largest displacement (m) under each push.
        rotation_deg: (G x 6) largest rotation (degrees) under each push.
    """

    success: np.ndarray
    failure: np.ndarray
    penetration_object_mm: np.ndarray
    tip_contacts: np.ndarray
    q1: np.ndarray
    translation: np.ndarray
    rotation_deg: np.ndarray


@dataclass
class GraspEvaluation:
    """Both protocols' results (either may be None) and the inputs' size."""

    lift: LiftResult | None
    disturbance: DisturbanceResult | None
    target: np.ndarray

    def summary(self) -> dict[str, float]:
        """Success rates and mean metrics (penetrations in mm)."""
        out: dict[str, float] = {"grasps": float(len(self.target))}
        if self.lift is not None:
            r = self.lift
            out |= {
                "lift_success": float(r.success.mean()),
                "pregrasp_collision_rate": float((r.failure == "pregrasp_penetration").mean()),
                "penetration_object_mm": float(r.penetration_object_mm.mean()),
                "penetration_scene_mm": float(r.penetration_scene_mm.mean()),
                "max_penetration_mm": float(np.maximum(r.penetration_object_mm, r.penetration_scene_mm).max()),
                "tip_contacts": float(r.tip_contacts.mean()),
                "q1": float(r.q1.mean()),
            }
        if self.disturbance is not None:
            r = self.disturbance
            out["disturbance_success"] = float(r.success.mean())
            if self.lift is None:
                out |= {"penetration_object_mm": float(r.penetration_object_mm.mean()), "q1": float(r.q1.mean())}
            out["disturbance_q1"] = float(r.q1.mean())
        if self.lift is not None and self.disturbance is not None:
            out["both_success"] = float((self.lift.success & self.disturbance.success).mean())
        return out

    @property
    def success(self) -> np.ndarray:
        """(G,) success of every protocol that was run."""
        ok = np.ones(len(self.target), dtype=bool)
        for r in (self.lift, self.disturbance):
            if r is not None:
                ok &= r.success
        return ok


# ---------------------------------------------------------------------------- worker side
_WORKER: dict = {}


def _get_sim(scene: SceneSpec, config: SimConfig, seed: int, key):
    """One compiled GraspSim per (scene, target-only variant) per process, built on first use."""
    from sceneleap_core.sim.simulator import GraspSim

    sims = _WORKER.setdefault("sims", {})
    if key not in sims:
        sims[key] = GraspSim(scene if key == "lift" else scene.single(key[1]), config=config, seed=seed)
    return sims[key]


def _init_worker(scene: SceneSpec, config: SimConfig, seed: int) -> None:
    _WORKER.clear()
    _WORKER.update(scene=scene, config=config, seed=seed)


def _run_chunk_of(token: str, scene: SceneSpec, config: SimConfig, seed: int, *chunk):
    """:func:`_run_chunk` in a shared, persistent pool: (re)initializes this worker for the call
    ``token`` first (a worker serves many calls, each with its own scene)."""
    if _WORKER.get("token") != token:
        _init_worker(scene, config, seed)
        _WORKER["token"] = token
    return _run_chunk(*chunk)


def _run_chunk(indices, palm_pose, joints, target, protocol):
    """Evaluate grasps ``indices`` in this process; returns (indices, lift outcomes, disturbance outcomes)."""
    scene, config, seed = _WORKER["scene"], _WORKER["config"], _WORKER["seed"]
    lifts, dists = [], []
    for k, _i in enumerate(indices):
        if protocol in ("lift", "both"):
            sim = _get_sim(scene, config, seed, "lift")
            lifts.append(_strip(sim.run_lift(palm_pose[k], joints[k], int(target[k]))))
        if protocol in ("disturbance", "both"):
            sim = _get_sim(scene, config, seed, ("single", int(target[k])))
            dists.append(_strip(sim.run_disturbance(palm_pose[k], joints[k], 0)))
    return indices, lifts, dists


def _strip(outcome):
    outcome.frames = []
    return outcome


# ---------------------------------------------------------------------------- public API
def evaluate_grasps(
    scene: SceneSpec,
    palm_pose,
    joints,
    target=0,
    *,
    protocol: str = "both",
    config: SimConfig | None = None,
    workers: int = 1,
    seed: int = 0,
    progress: bool = False,
    chunk_size: int | None = None,
    mp_context: str | None = None,
    pool: WorkerPool | None = None,
) -> GraspEvaluation:
    """Evaluate G grasps in simulation.

    Args:
        scene: the objects and table (validated here).
        palm_pose: (G, 4, 4) world pose of the hand's root link (numpy or torch).
        joints: (G, J) joint angles, project joint order.
        target: (G,) object index per grasp, or one int for all.
        protocol: "lift" (the scene as given), "disturbance" (each target alone, no table) or "both".
        config: physics parameters (default SimConfig()).
        workers: processes; 1 runs in this process. Results do not depend on it.
        seed: CoACD seed for non-convex meshes (the physics itself is deterministic).
        progress: show a tqdm progress bar.
        chunk_size: grasps per task (default: about 8 tasks per worker, at most 16 grasps).
        mp_context: multiprocessing start method of the call's pool (default
            :func:`sceneleap_core.sim.pool.default_start_method`: forkserver on Linux, else spawn).
        pool: a persistent :class:`~sceneleap_core.sim.pool.WorkerPool` to run in (its ``workers``
            replace ``workers``; it stays open for the next call); None = a pool for this call only.

    Returns:
        GraspEvaluation with ``lift`` / ``disturbance`` results of G entries each.
    """
    from sceneleap_core.hand.description import HandDescription

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a positive int, got {workers!r}")
    if not isinstance(scene, SceneSpec):
        raise ValueError(f"scene: expected a SceneSpec, got {type(scene).__name__}")
    scene.validate()
    config = config or SimConfig()
    desc = HandDescription.load()
    batch = check_grasps(
        palm_pose,
        joints,
        target,
        num_objects=len(scene.objects),
        dof=desc.dof,
        lower=desc.lower_limits,
        upper=desc.upper_limits,
    )
    g = len(batch)
    if pool is not None:
        workers = pool.workers
    workers = min(workers, g)
    if chunk_size is None:
        chunk_size = max(1, min(16, -(-g // (workers * 8))))
    chunks = [np.arange(s, min(g, s + chunk_size)) for s in range(0, g, chunk_size)]
    lifts: list = [None] * g
    dists: list = [None] * g

    def collect(result):
        idx, lift_out, dist_out = result
        for k, i in enumerate(idx):
            if lift_out:
                lifts[i] = lift_out[k]
            if dist_out:
                dists[i] = dist_out[k]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=g, desc=f"eval {protocol}", unit="grasp")
    args = [(c, batch.palm_pose[c], batch.joints[c], batch.target[c], protocol) for c in chunks]
    if workers == 1:
        _init_worker(scene, config, seed)
        try:
            for a in args:
                collect(_run_chunk(*a))
                if bar is not None:
                    bar.update(len(a[0]))
        finally:
            _WORKER.clear()
    else:
        # never a plain fork of the caller (it may have run multi-threaded torch): see sim.pool
        own = pool is None
        if own:
            pool = WorkerPool(
                workers, start_method=mp_context, initializer=_init_worker, initargs=(scene, config, seed)
            )
            futures = [pool.submit(_run_chunk, *a) for a in args]
        else:
            token = uuid.uuid4().hex
            futures = [pool.submit(_run_chunk_of, token, scene, config, seed, *a) for a in args]
        try:
            for fut in as_completed(futures):
                res = fut.result()
                collect(res)
                if bar is not None:
                    bar.update(len(res[0]))
        finally:
            if own:
                pool.close()
    if bar is not None:
        bar.close()
    lift = _stack_lift(lifts) if protocol in ("lift", "both") else None
    dist = _stack_disturbance(dists) if protocol in ("disturbance", "both") else None
    return GraspEvaluation(lift, dist, batch.target)


def _col(outcomes, name, dtype=np.float64):
    return np.array([getattr(o, name) for o in outcomes], dtype=dtype)


def _stack_lift(outcomes) -> LiftResult:
    return LiftResult(
        success=_col(outcomes, "success", bool),
        failure=_col(outcomes, "failure", object).astype(str),
        pregrasp_penetration_mm=1e3 * _col(outcomes, "pregrasp_penetration"),
        penetration_object_mm=1e3 * _col(outcomes, "penetration_object"),
        penetration_scene_mm=1e3 * _col(outcomes, "penetration_scene"),
        tip_contacts=_col(outcomes, "tip_contacts", np.int64),
        q1=_col(outcomes, "q1"),
        lift_height=_col(outcomes, "lift_height"),
        max_other_displacement_mm=1e3 * _col(outcomes, "other_displacement"),
    )


def _stack_disturbance(outcomes) -> DisturbanceResult:
    return DisturbanceResult(
        success=_col(outcomes, "success", bool),
        failure=_col(outcomes, "failure", object).astype(str),
        penetration_object_mm=1e3 * _col(outcomes, "penetration_object"),
        tip_contacts=_col(outcomes, "tip_contacts", np.int64),
        q1=_col(outcomes, "q1"),
        translation=np.stack([o.translation for o in outcomes]),
        rotation_deg=np.stack([o.rotation_deg for o in outcomes]),
    )


def evaluate_lift(
    scene: SceneSpec, palm_pose, joints, target=0, config: SimConfig | None = None, **kwargs
) -> LiftResult:
    """Lift test only: :func:`evaluate_grasps` with ``protocol="lift"``; returns the LiftResult."""
    return evaluate_grasps(scene, palm_pose, joints, target, protocol="lift", config=config, **kwargs).lift


def evaluate_disturbance(
    scene: SceneSpec, palm_pose, joints, target=0, config: SimConfig | None = None, **kwargs
) -> DisturbanceResult:
    """Disturbance test only: :func:`evaluate_grasps` with ``protocol="disturbance"``."""
    return evaluate_grasps(
        scene, palm_pose, joints, target, protocol="disturbance", config=config, **kwargs
    ).disturbance


def pregrasp_penetration(scene: SceneSpec, palm_pose, joints, config: SimConfig | None = None) -> np.ndarray:
    """Cheap check (no dynamics, ~0.1 ms a grasp): deepest penetration (G,) in metres of each
    grasp's pregrasp (fingers open, palm backed off ``pregrasp_distance``) into the scene's objects
    and table. ``pregrasp_penetration(...) > config.penetration_tolerance`` is the lift test's gate."""
    from sceneleap_core.hand.description import HandDescription
    from sceneleap_core.sim.simulator import GraspSim

    config = config or SimConfig()
    desc = HandDescription.load()
    scene.validate()
    batch = check_grasps(palm_pose, joints, 0, num_objects=len(scene.objects), dof=desc.dof)
    sim = GraspSim(scene, config=config, hand=desc)
    return np.array([sim.pregrasp_collision(batch.palm_pose[i], batch.joints[i]) for i in range(len(batch))])


def pregrasp_collides(scene: SceneSpec, palm_pose, joints, config: SimConfig | None = None) -> np.ndarray:
    """(G,) bool: does each grasp's pregrasp penetrate the scene beyond the tolerance?"""
    config = config or SimConfig()
    return pregrasp_penetration(scene, palm_pose, joints, config) > config.penetration_tolerance


def result_rows(evaluation: GraspEvaluation) -> list[dict]:
    """One dict per grasp with every field of the results (for tables and JSON)."""
    rows = [{"grasp": i, "target": int(t)} for i, t in enumerate(evaluation.target)]
    for prefix, res in (("lift", evaluation.lift), ("dist", evaluation.disturbance)):
        if res is None:
            continue
        for f in fields(res):
            values = getattr(res, f.name)
            for i, row in enumerate(rows):
                v = values[i]
                row[f"{prefix}.{f.name}"] = (
                    v.tolist() if isinstance(v, np.ndarray) else v.item() if hasattr(v, "item") else v
                )
    return rows
