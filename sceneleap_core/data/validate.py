"""Physics validation of grasps, pluggable: every stored grasp passes a :class:`GraspValidator`.

The default, :class:`SimValidator`, runs the MuJoCo evaluator of :mod:`sceneleap_core.sim`
(``GraspSim.run_lift`` / ``run_disturbance``, SPEC §3.2). Any object with the same ``__call__``
signature can replace it (tests, other simulators); :class:`GeometricValidator` is a physics-free
stand-in for when the simulator is unavailable, and says so in its ``name``.

Object-level labels (one object, no table): the object and grasps are rotated together so that the
palm's approach axis points along world -z (the hand comes from above, as over a table) and the lift
test runs against gravity; optionally the disturbance test (6 pushes, orientation free) as well.
Scene-level re-validation (objects on the table, clutter) uses the lift test in the scene itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sceneleap_core.data.objects import LibraryObject, build_mesh


@dataclass
class ValidationResult:
    """success (G,) bool, failure reasons (G,) str ("" on success; a disturbance failure starts with
    "disturbance:", so those grasps passed the lift test), wall time, and the CPU seconds spent in
    each protocol (summed over workers)."""

    success: np.ndarray
    failure: list[str] = field(default_factory=list)
    seconds: float = 0.0
    lift_seconds: float = 0.0
    disturbance_seconds: float = 0.0

    @property
    def lift_passed(self) -> np.ndarray:
        """(G,) grasps that passed the lift test (whatever the disturbance test said)."""
        return self.success | np.array([f.startswith("disturbance:") for f in self.failure], dtype=bool)


class GraspValidator(Protocol):
    name: str

    def __call__(self, spec: LibraryObject, pose: np.ndarray, joints: np.ndarray) -> ValidationResult:
        """Validate grasps of one object: palm poses (G, 4, 4) and joints (G, J) in the object frame."""
        ...


def sim_object(spec: LibraryObject, pose: np.ndarray | None = None, mesh=None):
    """The evaluator's ``sim.scene.ObjectSpec`` of a library object at ``pose`` (4, 4) (object -> world):
    exact primitives for box/sphere/cylinder/capsule, the mesh otherwise (hull or CoACD pieces)."""
    from sceneleap_core.sim.scene import ObjectSpec as SimObject

    pose = np.eye(4) if pose is None else np.asarray(pose, dtype=np.float64)
    p, s = spec.params, spec.scale
    common = {"pose": pose, "mass": spec.mass, "friction": spec.friction, "object_id": str(spec.id)}
    if spec.kind == "box":
        return SimObject("box", size=tuple(0.5 * s * np.asarray(p["extents"])), **common)
    if spec.kind == "sphere":
        return SimObject("sphere", size=(s * p["radius"],), **common)
    if spec.kind in ("cylinder", "capsule"):
        return SimObject(spec.kind, size=(s * p["radius"], 0.5 * s * p["height"]), **common)
    mesh = mesh if mesh is not None else build_mesh(spec)
    return SimObject("mesh", vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces), **common)


def sim_scene(objects: list[LibraryObject], poses, table_z: float | None = 0.0):
    """The evaluator's ``SceneSpec`` of library objects at world ``poses`` (O, 4, 4) on a table
    whose top is at ``table_z`` (None: no table)."""
    from sceneleap_core.sim.scene import SceneSpec

    return SceneSpec([sim_object(o, p) for o, p in zip(objects, poses, strict=True)], table_height=table_z)


def approach_from_above(pose: np.ndarray, approach_axis: np.ndarray) -> np.ndarray:
    """Rotations A (G, 4, 4) of the world such that A @ pose has its approach axis along world -z."""
    from scipy.spatial.transform import Rotation

    a = pose[:, :3, :3] @ approach_axis  # (G, 3) approach in the object frame
    out = np.tile(np.eye(4), (len(pose), 1, 1))
    for g in range(len(pose)):
        rot, _ = Rotation.align_vectors([[0.0, 0.0, -1.0]], [a[g]])
        out[g, :3, :3] = rot.as_matrix()
    return out


def _validate_chunk(args) -> tuple[np.ndarray, list[str], float, float]:
    """Worker: validate grasps (object frame) of one object. Without a resting pose, the lift test
    runs in free space with the approach turned to point down; with ``rest_pose`` (4, 4) (table <-
    object), it runs with the object resting on the table (top z = 0) in that pose, one compiled
    sim for the chunk (so the pregrasp must clear the table). The disturbance test is the object
    alone either way. Returns success, failures, lift and disturbance CPU seconds."""
    import time

    spec_dict, pose, joints, protocol, config, rest_pose = args
    from sceneleap_core.hand.description import HandDescription
    from sceneleap_core.sim.config import SimConfig
    from sceneleap_core.sim.scene import SceneSpec
    from sceneleap_core.sim.simulator import GraspSim

    spec = LibraryObject.from_dict(spec_dict)
    desc = HandDescription.load()
    cfg = SimConfig.from_dict(config) if config else SimConfig()
    mesh = None if spec.kind in ("box", "sphere", "cylinder", "capsule") else build_mesh(spec)
    success, failure = np.zeros(len(pose), dtype=bool), []
    align = approach_from_above(pose, desc.approach_axis) if rest_pose is None else None
    sims: dict = {}
    t_lift = t_dist = 0.0
    for g in range(len(pose)):
        ok, why = True, ""
        t0 = time.perf_counter()
        if "lift" in protocol and rest_pose is not None:
            if "t" not in sims:
                sims["t"] = GraspSim(sim_scene([spec], rest_pose[None], 0.0), config=cfg, hand=desc)
            out = sims["t"].run_lift(rest_pose @ pose[g], joints[g], 0)
            ok, why = out.success, out.failure
        elif "lift" in protocol:
            # one sim per orientation: the object pose is part of the compiled scene
            scene = SceneSpec([sim_object(spec, align[g], mesh)], table_height=None)
            out = GraspSim(scene, config=cfg, hand=desc).run_lift(align[g] @ pose[g], joints[g], 0)
            ok, why = out.success, out.failure
        t1 = time.perf_counter()
        t_lift += t1 - t0
        if ok and "disturbance" in protocol:
            if "d" not in sims:
                sims["d"] = GraspSim(
                    SceneSpec([sim_object(spec, None, mesh)], table_height=None), config=cfg, hand=desc
                )
            out = sims["d"].run_disturbance(pose[g], joints[g], 0)
            ok, why = out.success, (out.failure and f"disturbance:{out.failure}")
            t_dist += time.perf_counter() - t1
        success[g] = ok
        failure.append(why)
    return success, failure, t_lift, t_dist


class PendingValidation:
    """A validation submitted to :meth:`SimValidator.submit`; :meth:`result` waits for it."""

    def __init__(self, futures: list, t0: float):
        self._futures, self._t0 = futures, t0

    def done(self) -> bool:
        return all(f.done() for f in self._futures if hasattr(f, "done"))

    def result(self) -> ValidationResult:
        import time

        results = [f.result() if hasattr(f, "result") else f for f in self._futures]
        if not results:
            return ValidationResult(np.zeros(0, bool), [], 0.0)
        success = np.concatenate([r[0] for r in results])
        failure = [f for r in results for f in r[1]]
        lift_s = sum(r[2] for r in results)
        dist_s = sum(r[3] for r in results)
        return ValidationResult(success, failure, time.perf_counter() - self._t0, lift_s, dist_s)


class SimValidator:
    """MuJoCo lift (and optionally disturbance) test of object-level grasps, in worker processes.

    The worker pool is created on first use and kept (no per-call process start-up); call
    :meth:`close` (or use the validator as a context manager) to shut it down. :meth:`submit`
    returns at once, so a caller can synthesize the next object on the GPU while the CPUs
    simulate this one; calling the validator waits for the result.

    Args:
        protocol: "lift", "disturbance" or "lift+disturbance".
        workers: processes (1 = in this process).
        sim_config: dict of :class:`sceneleap_core.sim.config.SimConfig` overrides (None = defaults).
        chunk_size: grasps per task sent to a worker (smaller balances load across objects).
        start_method: multiprocessing start method of the pool (a :class:`sceneleap_core.sim.pool.
            WorkerPool`; "spawn": safe after threads).
    """

    def __init__(
        self,
        *,
        protocol: str = "lift",
        workers: int = 1,
        sim_config: dict | None = None,
        chunk_size: int = 16,
        start_method: str = "spawn",
    ):
        if protocol not in ("lift", "disturbance", "lift+disturbance"):
            raise ValueError(f"protocol: expected 'lift', 'disturbance' or 'lift+disturbance', got {protocol!r}")
        if workers < 1:
            raise ValueError(f"workers: expected >= 1, got {workers}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size: expected >= 1, got {chunk_size}")
        import sceneleap_core.sim.simulator  # noqa: F401  (fail early, with the import error, if absent)

        self.protocol, self.workers, self.sim_config = protocol, int(workers), sim_config
        self.chunk_size = int(chunk_size)
        self.start_method = start_method
        self.name = f"mujoco-{protocol}"
        self._pool = None  # sceneleap_core.sim.pool.WorkerPool, started on first use

    def submit(
        self, spec: LibraryObject, pose: np.ndarray, joints: np.ndarray, *, rest_pose: np.ndarray | None = None
    ) -> PendingValidation:
        """Start validating grasps of one object (palm poses (G, 4, 4), joints (G, J), object frame).

        ``rest_pose`` (4, 4) (table <- object): lift-test with the object resting on the table in
        that pose (the grasps are moved there with it) instead of the free-space, from-above test."""
        import time

        pose, joints = np.asarray(pose, np.float64), np.asarray(joints, np.float64)
        if pose.ndim != 3 or pose.shape[1:] != (4, 4) or joints.ndim != 2 or joints.shape[0] != len(pose):
            raise ValueError(f"expected pose (G, 4, 4) and joints (G, J), got {pose.shape} and {joints.shape}")
        t0 = time.perf_counter()
        if len(pose) == 0:
            return PendingValidation([], t0)
        n_chunks = max(1, -(-len(pose) // self.chunk_size))
        if self.workers > 1:  # at least one task per worker for small batches
            n_chunks = max(n_chunks, min(self.workers, len(pose)))
        chunks = [c for c in np.array_split(np.arange(len(pose)), n_chunks) if len(c)]
        rest = None if rest_pose is None else np.asarray(rest_pose, np.float64).reshape(4, 4)
        jobs = [(spec.to_dict(), pose[c], joints[c], self.protocol, self.sim_config, rest) for c in chunks]
        if self.workers == 1:
            return PendingValidation([_validate_chunk(j) for j in jobs], t0)
        if self._pool is None:
            from sceneleap_core.sim.pool import WorkerPool

            # spawn, not fork: the caller has run multi-threaded torch (synthesis, prefilter), and a
            # forked child can inherit a lock held by one of those threads and hang (seen here)
            self._pool = WorkerPool(self.workers, start_method=self.start_method)
        return PendingValidation([self._pool.submit(_validate_chunk, j) for j in jobs], t0)

    def __call__(self, spec: LibraryObject, pose: np.ndarray, joints: np.ndarray) -> ValidationResult:
        return self.submit(spec, pose, joints).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> SimValidator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GeometricValidator:
    """Physics-free stand-in: accepts every grasp the synthesis prefilter accepted. Only for tests of
    plumbing or when :mod:`sceneleap_core.sim` is unavailable; its ``name`` marks the data as such."""

    name = "geometric-only"

    def __call__(self, spec: LibraryObject, pose: np.ndarray, joints: np.ndarray) -> ValidationResult:
        return ValidationResult(np.ones(len(pose), dtype=bool), [""] * len(pose), 0.0)


def default_validator(**kwargs) -> GraspValidator:
    """:class:`SimValidator` when the simulator imports, else :class:`GeometricValidator` (logged)."""
    try:
        return SimValidator(**kwargs)
    except ImportError as err:
        import logging

        logging.getLogger(__name__).warning("physics evaluator unavailable (%s): grasps are NOT physics-validated", err)
        return GeometricValidator()
