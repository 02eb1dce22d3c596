"""Scenes composed from the object grasp library: placement on the table and collision filtering of
the transferred grasps, in torch, batched over all grasps of a scene, on any device.

Frames (see :mod:`sceneleap_core.data.library`): world z up, the table top at z = 0. An object in
resting pose ``rest`` (table <- object) placed by the planar placement P (yaw about z, xy shift) sits
at ``P @ rest``; its library grasp ``T_o_g`` lands at ``P @ rest @ T_o_g``.

Notation: O objects, G grasps, J hand DoF, S hand states per grasp (sweep + grasp), K hand collision
boxes, M surface samples per object, T (state, box, object) triples that pass the broad phase.

The filter's collision tests (table, neighbours' hulls and samples, the target's open-hand
tolerance) live in :mod:`sceneleap_core.data.hand_collision`. The table and target checks do not
depend on the placement, so the composer computes them once per library grasp and caches them; a
scene only pays for its neighbours.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sceneleap_core.data.hand_collision import HandPatches, hand_collisions, hull_planes, leaf_order
from sceneleap_core.data.library import APPROACHES, GraspLibrary, planar_placement
from sceneleap_core.data.objects import LibraryObject, build_mesh

# Measured on the sample dataset's library (129 grasps, ``library_from_dataset``): the deepest
# open-hand box penetration of the target along the whole approach sweep (pregrasp to grasp, 2 cm
# steps, 384 surface samples) is 0 mm for every grasp (the open pose only unflexes fingers and the
# palm stops where the validated grasp holds it). The tolerance is the simulator's pregrasp gate
# (``SimConfig.penetration_tolerance``, 1 mm) so a library built with other samples or a coarser
# hand still keeps grazing grasps the simulator accepts.
TARGET_TOLERANCE = 0.001
LEAF = 64  # surface samples per mid-phase group (samples_per_object must be a power-of-two multiple)


@dataclass
class ComposedScene:
    """A scene composed from the library, with its collision-free grasps.

    Attributes:
        scene_id: index (seeds the composition).
        objects: the O library objects on the table.
        rest_index: (O,) library resting-pose index of each object.
        object_pose: (O, 4, 4) world <- object.
        grasp_pose: (G, 4, 4) palm poses, world frame.
        grasp_joints: (G, J).
        grasp_object: (G,) object id held by each grasp.
        grasp_type: (G,) index into ``library.GRASP_TYPES``.
        grasp_approach: (G,) index into ``library.APPROACHES`` (in the rest pose, so in the scene).
        grasp_index: (G,) library grasp index.
        stats: counts (candidates, dropped by table/target/neighbour) and seconds per stage.
    """

    scene_id: int
    objects: list[LibraryObject]
    rest_index: np.ndarray
    object_pose: np.ndarray
    grasp_pose: np.ndarray
    grasp_joints: np.ndarray
    grasp_object: np.ndarray
    grasp_type: np.ndarray
    grasp_approach: np.ndarray
    grasp_index: np.ndarray
    stats: dict = field(default_factory=dict)

    @property
    def object_ids(self) -> np.ndarray:
        return np.array([o.id for o in self.objects], dtype=np.int32)


##################################################################################################
# Composer
##################################################################################################
def _pad_planes(planes: list[torch.Tensor]) -> torch.Tensor:
    """(O, F, 4) from O (Fk, 4) half-space lists; padding planes never bind (n = 0, d = 1e9)."""
    f = max(len(p) for p in planes)
    out = planes[0].new_zeros((len(planes), f, 4))
    out[..., 3] = 1e9
    for i, p in enumerate(planes):
        out[i, : len(p)] = p
    return out


@dataclass
class _ObjectCache:
    samples: torch.Tensor  # (M, 3) object frame
    radius: float  # bounding sphere about the object origin
    vertices: torch.Tensor  # (V, 3) object frame (rendering)
    faces: torch.Tensor  # (F, 3) int64
    hull: torch.Tensor  # (H, 4) convex-hull half-spaces (n, d), object frame


class SceneComposer:
    """Draw scenes from a :class:`GraspLibrary` (module docstring).

    Args:
        library: the grasp library.
        split: "train", "val" or "test": only objects of this split are drawn.
        hand: HandModel (its device and dtype are used).
        device: where the filter runs (default: the hand's device).
        objects_per_scene: (min, max) objects drawn per scene.
        placement_half: (x, y) half extents of the table region object centres may use (m).
        placement_margin: gap between footprint discs (m).
        placement_tries: rejection-sampling attempts per object (an object that does not fit is left out).
        max_candidates: library grasps per object tried per scene (random subset).
        max_grasps: surviving grasps kept per object (random subset).
        pregrasp_distance: back-off of the pregrasp (m), as the lift test.
        sweep_steps: open-hand poses from pregrasp to grasp (spacing ``pregrasp_distance / sweep_steps``).
        close_steps: hand states between the open hand and the grasp at the grasp pose (the close
            phase; neighbours and table only).
        clearance: minimum distance (m) of other objects' samples to the hand boxes.
        target_tolerance: allowed open-hand penetration (m) of the target (see :data:`TARGET_TOLERANCE`).
        table_margin: hand boxes must stay this high above the table top (m); negative tolerates
            grazing (the library's grasps were validated with the table as a contact).
        samples_per_object: M surface samples per object for the checks (the convex hull's
            vertices first, up to a quarter of them, then even surface samples).
        hull_planes: at most this many half-spaces per object hull (see :func:`hull_planes`).
        hand_spacing: grid spacing (m) of the hand surface points tested against the hulls.
    """

    def __init__(
        self,
        library: GraspLibrary,
        split: str,
        hand,
        device: str | torch.device | None = None,
        *,
        objects_per_scene: tuple[int, int] = (1, 8),
        placement_half: tuple[float, float] = (0.2, 0.2),
        placement_margin: float = 0.01,
        placement_tries: int = 50,
        max_candidates: int = 48,
        max_grasps: int = 16,
        pregrasp_distance: float = 0.10,
        sweep_steps: int = 5,
        close_steps: int = 3,
        clearance: float = 0.003,
        target_tolerance: float = TARGET_TOLERANCE,
        table_margin: float = -0.002,
        samples_per_object: int = 1024,
        hull_planes: int = 128,
        hand_spacing: float = 0.005,
    ):
        lo, hi = objects_per_scene
        if samples_per_object < LEAF or samples_per_object & (samples_per_object - 1):
            raise ValueError(f"samples_per_object: expected a power of two >= {LEAF}, got {samples_per_object}")
        if not 1 <= lo <= hi:
            raise ValueError(f"objects_per_scene: expected 1 <= min <= max, got {objects_per_scene}")
        self.library = library
        self.pool = library.split(split)
        if not self.pool:
            raise ValueError(f"split {split!r}: expected library objects with grasps in it, got none")
        self.split = split
        self.device = torch.device(device) if device is not None else hand.device
        self.hand = hand.to(self.device)
        self.dtype = self.hand.dtype
        self.objects_per_scene = (int(lo), int(hi))
        self.placement_half = tuple(float(v) for v in placement_half)
        self.placement_margin, self.placement_tries = float(placement_margin), int(placement_tries)
        self.max_candidates, self.max_grasps = int(max_candidates), int(max_grasps)
        self.pregrasp_distance, self.sweep_steps = float(pregrasp_distance), int(sweep_steps)
        self.close_steps = int(close_steps)
        self.clearance, self.target_tolerance = float(clearance), float(target_tolerance)
        self.table_margin, self.samples_per_object = float(table_margin), int(samples_per_object)
        self._objects: dict[int, _ObjectCache] = {}
        self.hull_planes = int(hull_planes)
        self.patches = HandPatches.build(self.hand, spacing=float(hand_spacing))
        self._footprint = np.full(len(library.rest_object), np.nan)  # per rest pose (m)
        self._static_ok = torch.full((library.num_grasps,), -1, dtype=torch.int8)  # -1 unknown
        self._grasp_pose = torch.as_tensor(library.grasp_pose, dtype=self.dtype)  # host copies
        self._grasp_joints = torch.as_tensor(library.grasp_joints, dtype=self.dtype)
        self._grasp_pose_dev = self._grasp_pose.to(self.device)  # the filter's copies, moved once
        self._grasp_joints_dev = self._grasp_joints.to(self.device)
        self._stacked = None
        self._rests = {o.id: library.rests_of(o.id) for o in self.pool}
        self._rests = {k: np.array([r for r in v if len(library.grasps_of_rest(r))]) for k, v in self._rests.items()}
        self._grasps_of_rest = {}

    # ------------------------------------------------------------------ caches
    def object_cache(self, object_id: int) -> _ObjectCache:
        """Surface samples, bounding radius and mesh of an object, on the device (built once)."""
        cached = self._objects.get(object_id)
        if cached is None:
            import trimesh

            mesh = build_mesh(self.library.object(object_id))
            m = self.samples_per_object
            corners = np.asarray(mesh.convex_hull.vertices)  # the extreme points (sharp corners)
            if len(corners) > m // 4:
                corners = corners[np.random.default_rng(object_id).choice(len(corners), m // 4, replace=False)]
            pts, _ = trimesh.sample.sample_surface_even(mesh, m - len(corners), seed=object_id)
            if len(pts) < m - len(corners):  # even sampling may return fewer
                extra, _ = trimesh.sample.sample_surface(mesh, m - len(corners) - len(pts), seed=object_id)
                pts = np.concatenate([pts, extra])
            pts = np.concatenate([corners, pts])
            pts = pts[leaf_order(pts, LEAF)]
            kw = {"dtype": self.dtype, "device": self.device}
            cached = _ObjectCache(
                samples=torch.as_tensor(np.asarray(pts), **kw),
                radius=float(np.linalg.norm(mesh.vertices, axis=1).max()),
                vertices=torch.as_tensor(np.asarray(mesh.vertices), **kw),
                faces=torch.as_tensor(np.asarray(mesh.faces), dtype=torch.int64, device=self.device),
                hull=torch.as_tensor(hull_planes(mesh, self.hull_planes), **kw),
            )
            self._objects[object_id] = cached
        return cached

    def footprint(self, rest: int) -> float:
        """Radius (m) of the object's footprint disc in resting pose ``rest`` (about its centroid)."""
        if np.isnan(self._footprint[rest]):
            obj = self.object_cache(int(self.library.rest_object[rest]))
            rp = torch.as_tensor(self.library.rest_pose[rest], dtype=self.dtype, device=self.device)
            xy = (obj.vertices @ rp[:3, :3].T + rp[:3, 3])[:, :2]
            self._footprint[rest] = float(xy.norm(dim=1).max())
        return float(self._footprint[rest])

    def grasps_of_rest(self, rest: int) -> np.ndarray:
        out = self._grasps_of_rest.get(rest)
        if out is None:
            out = self._grasps_of_rest[rest] = self.library.grasps_of_rest(rest)
        return out

    def static_checks(self, index: np.ndarray) -> np.ndarray:
        """(G,) bool: library grasps ``index`` clear of the table and within the target tolerance
        in their rest pose (placement independent; computed once per grasp, then cached)."""
        index = np.asarray(index, dtype=np.int64)
        todo = index[self._static_ok[index].numpy() < 0]
        if len(todo):
            todo = np.unique(todo)
            rests = self.library.grasp_rest[todo]
            for rest in np.unique(rests):
                sel = todo[rests == rest]
                oid = int(self.library.rest_object[rest])
                obj = self.object_cache(oid)
                rp = torch.as_tensor(self.library.rest_pose[rest], dtype=self.dtype, device=self.device)
                pose = rp @ self._grasp_pose[sel].to(self.device)
                with torch.no_grad():
                    m = hand_collisions(
                        self.hand,
                        pose,
                        self._grasp_joints[sel].to(self.device),
                        torch.zeros(len(sel), dtype=torch.int64, device=self.device),
                        (obj.samples @ rp[:3, :3].T + rp[:3, 3])[None],
                        rp[None, :3, 3],
                        torch.tensor([obj.radius], dtype=self.dtype, device=self.device),
                        pregrasp_distance=self.pregrasp_distance,
                        sweep_steps=self.sweep_steps,
                        close_steps=self.close_steps,
                        clearance=0.0,
                    )
                ok = (m["table_z"] >= self.table_margin) & (m["target_depth"] <= self.target_tolerance)
                self._static_ok[sel] = ok.to(torch.int8).cpu()
        return self._static_ok[index].numpy() > 0

    # ------------------------------------------------------------------ placement
    def place(self, rng: np.random.Generator) -> tuple[list[LibraryObject], np.ndarray, np.ndarray]:
        """Draw objects, one resting pose each, and non-overlapping planar placements.

        Returns objects (O,), rest indices (O,), world <- object poses (O, 4, 4).
        """
        lo, hi = self.objects_per_scene
        count = min(int(rng.integers(lo, hi + 1)), len(self.pool))
        chosen = [self.pool[j] for j in rng.choice(len(self.pool), size=count, replace=False)]
        hx, hy = self.placement_half
        objects, rests, poses, placed = [], [], [], []  # placed: (x, y, r)
        for obj in chosen:
            rests_obj = self._rests[obj.id]
            if not len(rests_obj):
                continue
            rest = int(rests_obj[rng.integers(len(rests_obj))])
            r = self.footprint(rest)
            for _ in range(self.placement_tries):
                x, y = (
                    rng.uniform(-max(hx - r, 0.0), max(hx - r, 0.0)),
                    rng.uniform(-max(hy - r, 0.0), max(hy - r, 0.0)),
                )
                if all(np.hypot(x - px, y - py) >= r + pr + self.placement_margin for px, py, pr in placed):
                    break
            else:
                continue  # did not fit: left out
            yaw = rng.uniform(0, 2 * np.pi)
            placed.append((x, y, r))
            objects.append(obj)
            rests.append(rest)
            poses.append(planar_placement(x, y, yaw) @ self.library.rest_pose[rest])
        return objects, np.array(rests, dtype=np.int64), np.stack(poses) if poses else np.zeros((0, 4, 4))

    # ------------------------------------------------------------------ grasps
    def _object_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[int, int]]:
        """Samples (N, M, 3), hull planes (N, F, 4) (object frames) and radii (N,) of every pool
        object, stacked once on the device, with the row of each object id."""
        if getattr(self, "_stacked", None) is None:
            ids = [o.id for o in self.pool]
            caches = [self.object_cache(i) for i in ids]
            self._stacked = (
                torch.stack([c.samples for c in caches]),
                _pad_planes([c.hull for c in caches]),
                torch.tensor([c.radius for c in caches], dtype=self.dtype, device=self.device),
                {i: k for k, i in enumerate(ids)},
            )
        return self._stacked

    def filter_scene(
        self, objects: list[LibraryObject], rests: np.ndarray, poses: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
        """Candidate library grasps of every object and their keep mask in the scene.

        Returns library grasp indices (C,), object index in the scene (C,), keep (C,) bool, counts.
        """
        return self.filter_scenes([(objects, rests, poses, rng)])[0]

    def filter_scenes(self, scenes: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, dict]]:
        """:meth:`filter_scene` of several scenes (objects, rests, poses, rng) in one batched
        collision query (each grasp is checked only against the objects of its own scene)."""
        per, grasps, gslots, gowner, wposes, wobj = [], [], [], [], [], []
        for si, (objects, rests, poses, rng) in enumerate(scenes):
            cand, owner = [], []
            for i, rest in enumerate(rests):
                idx = self.grasps_of_rest(int(rest))
                if len(idx) > self.max_candidates:
                    idx = np.sort(rng.choice(idx, self.max_candidates, replace=False))
                cand.append(idx)
                owner.append(np.full(len(idx), i))
            cand = np.concatenate(cand) if cand else np.zeros(0, np.int64)
            owner = np.concatenate(owner) if owner else np.zeros(0, np.int64)
            static = self.static_checks(cand)
            stats = {"candidates": len(cand), "dropped_table_or_target": int((~static).sum())}
            stats["dropped_neighbour"] = stats["dropped_neighbour_hull_only"] = 0
            keep = static.copy()
            per.append((cand, owner, keep, stats))
            if len(objects) > 1 and static.any():
                sel = np.flatnonzero(static)
                grasps.append((si, sel))
                gslots.append(np.tile(len(wobj) + np.arange(self.objects_per_scene[1]), (len(sel), 1)))
                gslots[-1][:, len(objects) :] = -1
                gowner.append(owner[sel] + len(wobj))
                wposes.append(poses)
                wobj.extend(o.id for o in objects)
        if not grasps:
            return per
        samples_all, hull_all, radius_all, row = self._object_tensors()
        kw = {"dtype": self.dtype, "device": self.device}
        rows = torch.as_tensor([row[i] for i in wobj], device=self.device)
        pw = torch.as_tensor(np.concatenate(wposes), **kw)  # (O, 4, 4) all scenes' objects
        rw, tw = pw[:, :3, :3], pw[:, :3, 3]
        samples = samples_all[rows] @ rw.transpose(1, 2) + tw[:, None]
        hull = hull_all[rows]
        n_w = hull[..., :3] @ rw.transpose(1, 2)
        hull = torch.cat([n_w, (hull[..., 3] + (n_w * tw[:, None]).sum(-1))[..., None]], -1)
        lib_idx = np.concatenate([per[si][0][sel] for si, sel in grasps])
        owner_t = torch.as_tensor(np.concatenate(gowner), device=self.device)
        grasp_w = pw[owner_t] @ self._grasp_pose_dev[torch.as_tensor(lib_idx, device=self.device)]
        with torch.no_grad():
            m = hand_collisions(
                self.hand,
                grasp_w,
                self._grasp_joints_dev[torch.as_tensor(lib_idx, device=self.device)],
                owner_t,
                samples,
                tw,
                radius_all[rows],
                pregrasp_distance=self.pregrasp_distance,
                sweep_steps=self.sweep_steps,
                close_steps=self.close_steps,
                clearance=self.clearance,
                check_target=False,
                hull=hull,
                patches=self.patches,
                leaf=LEAF,
                grasp_objects=torch.as_tensor(np.concatenate(gslots), device=self.device),
            )
        hit_all = (m["other_depth"] > 0).cpu().numpy()
        hull_only_all = hit_all & (m["sample_depth"] <= 0).cpu().numpy()
        a = 0
        for si, sel in grasps:
            hit, hull_only = hit_all[a : a + len(sel)], hull_only_all[a : a + len(sel)]
            a += len(sel)
            cand, owner, keep, stats = per[si]
            keep[sel[hit]] = False
            stats["dropped_neighbour"] = int(hit.sum())
            stats["dropped_neighbour_hull_only"] = int(hull_only.sum())
        return per

    def compose(self, scene_id: int, rng: np.random.Generator | None = None) -> ComposedScene:
        """One scene, deterministic from ``rng`` (default: seeded by ``scene_id``)."""
        return self.compose_batch([scene_id], None if rng is None else [rng])[0]

    def compose_batch(self, scene_ids, rngs: list[np.random.Generator] | None = None) -> list[ComposedScene]:
        """Several scenes, each exactly as :meth:`compose` would make it, the collision filter
        batched over all of them (one query: the fast path on a GPU). Stats seconds are the
        batch's, divided evenly."""
        rngs = rngs if rngs is not None else [np.random.default_rng([0, int(i)]) for i in scene_ids]
        t0 = time.perf_counter()
        placed = [self.place(rng) for rng in rngs]
        t1 = time.perf_counter()
        filtered = self.filter_scenes([(*p, rng) for p, rng in zip(placed, rngs, strict=True)])
        t2 = time.perf_counter()
        out = []
        lib_ = self.library
        for sid, rng, (objects, rests, poses), (cand, owner, keep, stats) in zip(
            scene_ids, rngs, placed, filtered, strict=True
        ):
            # keep at most max_grasps per object (random), in object order
            chosen = []
            for i in range(len(objects)):
                idx = np.flatnonzero(keep & (owner == i))
                if len(idx) > self.max_grasps:
                    idx = np.sort(rng.choice(idx, self.max_grasps, replace=False))
                chosen.append(idx)
            sel = np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
            lib, own = cand[sel], owner[sel]
            stats.update(kept=len(sel), seconds_place=(t1 - t0) / len(rngs), seconds_filter=(t2 - t1) / len(rngs))
            out.append(
                ComposedScene(
                    scene_id=int(sid),
                    objects=objects,
                    rest_index=rests,
                    object_pose=poses,
                    grasp_pose=poses[own] @ lib_.grasp_pose[lib] if len(sel) else np.zeros((0, 4, 4)),
                    grasp_joints=lib_.grasp_joints[lib].reshape(len(sel), lib_.dof),
                    grasp_object=np.array([objects[i].id for i in own], dtype=np.int32),
                    grasp_type=lib_.grasp_type[lib],
                    grasp_approach=lib_.grasp_approach[lib],
                    grasp_index=lib,
                    stats=stats,
                )
            )
        return out


##################################################################################################
# Re-validation in the scene and a library from the sample dataset
##################################################################################################
def revalidate(
    scene: ComposedScene,
    *,
    max_displacement: float = 0.01,
    workers: int = 1,
    sim_config=None,
    baseline: bool = True,
    details: bool = False,
):
    """MuJoCo lift test of the scene's grasps in the scene (table + every object); a grasp also
    fails when any non-target object moves more than ``max_displacement`` m during the rollout.

    Displacement is measured against the scene rolled out without the hand (``baseline``: the
    same protocol, gravity schedule and step count, the hand far above the table), step by step:
    max_t |x_o(t) - x_o^base(t)| over non-target objects o. The simulator rebuilds objects a
    little differently from the library (convex pieces, contact margins), so untouched objects
    settle a few mm on their own; against the baseline they read ~0. ``baseline=False``: the
    simulator's raw displacement from the start pose.

    Returns success (G,) bool and the largest other-object displacement (G,) in mm; with
    ``details`` also a dict (``raw_mm``: the raw displacement, ``lifted``: the lift test alone,
    ``failure``: the simulator's failure reasons).
    """
    from sceneleap_core.data.validate import sim_scene
    from sceneleap_core.sim import SimConfig

    g = len(scene.grasp_pose)
    if g == 0:
        empty = (np.zeros(0, bool), np.zeros(0))
        return (
            (*empty, {"raw_mm": np.zeros(0), "lifted": np.zeros(0, bool), "failure": np.zeros(0, str)})
            if details
            else empty
        )
    spec = sim_scene(scene.objects, scene.object_pose, 0.0)
    index = {o.id: k for k, o in enumerate(scene.objects)}
    target = np.array([index[int(o)] for o in scene.grasp_object], dtype=np.int64)
    config = sim_config or SimConfig()
    args = [(i, scene.grasp_pose[i], scene.grasp_joints[i], int(target[i])) for i in range(g)]
    workers = max(1, min(int(workers), g))
    if workers == 1:
        _revalidate_init(spec, config, baseline)
        try:
            results = [_revalidate_one(*a) for a in args]
        finally:
            _REVALIDATE.clear()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # forkserver: a fork after multi-threaded torch can hang (as in sim.evaluate_grasps)
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=_revalidate_init, initargs=(spec, config, baseline)
        ) as pool:
            results = list(pool.map(_revalidate_one, *zip(*args, strict=True), chunksize=max(1, g // (4 * workers))))
    lifted = np.array([r[0] for r in results], bool)
    disp = np.array([r[1] for r in results]) * 1e3
    raw = np.array([r[2] for r in results]) * 1e3
    ok = lifted & (disp <= 1e3 * max_displacement)
    if details:
        return ok, disp, {"raw_mm": raw, "lifted": lifted, "failure": np.array([r[3] for r in results], dtype=str)}
    return ok, disp


_REVALIDATE: dict = {}


def _revalidate_init(spec, config, baseline: bool) -> None:
    """Per process: the scene's simulator and, with ``baseline``, its rollout without the hand."""
    from sceneleap_core.sim.simulator import GraspSim

    _REVALIDATE.clear()
    sim = GraspSim(spec, config=config)
    _REVALIDATE["sim"] = sim
    if baseline:
        far = np.eye(4)
        far[:3, 3] = [0.0, 0.0, 2.0]  # nothing within reach, same protocol and steps
        _, track = _tracked_lift(sim, far, np.asarray(sim.desc.open_pose, np.float64), 0)
        _REVALIDATE["baseline"] = track


def _tracked_lift(sim, pose, joints, target):
    """Run the lift test recording every object's position after every step: (outcome, (T, O, 3))."""
    track = []
    sim.on_step = lambda s: track.append(s.data.xpos[s.object_body].copy())
    try:
        out = sim.run_lift(np.asarray(pose, np.float64), np.asarray(joints, np.float64), int(target))
    finally:
        sim.on_step = None
    return out, np.array(track).reshape(-1, len(sim.object_body), 3)


def relative_displacement(track: np.ndarray, base: np.ndarray, target: int) -> float:
    """Largest displacement (m) of a non-target object of a rollout ``track`` (T, O, 3) against
    the baseline rollout ``base`` (T', O, 3), step by step over the first min(T, T') steps."""
    n = min(len(track), len(base))
    if n == 0:
        return 0.0
    d = np.linalg.norm(track[:n] - base[:n], axis=-1)  # (n, O)
    return float(np.delete(d, target, axis=1).max(initial=0.0))


def _revalidate_one(i, pose, joints, target):
    sim = _REVALIDATE["sim"]
    out, track = _tracked_lift(sim, pose, joints, target)
    base = _REVALIDATE.get("baseline")
    disp = out.other_displacement if base is None else relative_displacement(track, base, target)
    return bool(out.success), disp, float(out.other_displacement), str(out.failure)


def library_from_dataset(root: str | Path, hand=None) -> GraspLibrary:
    """A :class:`GraspLibrary` from a dataset written by ``sceneleap data generate`` (e.g. the
    committed ``sceneleap_core/data/sample``): one resting pose per ``grasps/obj_N_sceneM.npz``,
    the object's settled pose in scene M (from the shards' ``object_pose``) with x = y = 0.

    Labels (the dataset has none): approach "top" when the approach axis points down (z < -0.5)
    in the rest pose, else "side"; type "power" when the palm origin is within 1.2 object bounding
    radii of the centroid, else "precision" (heuristics, for tests and benches).
    """
    from sceneleap_core.data.objects import load_object_table
    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.hand import HandModel

    root = Path(root)
    objects = load_object_table(root)
    by_id = {o.id: o for o in objects}
    settled: dict[tuple[int, int], np.ndarray] = {}
    ds = ShardDataset(root)
    for i in range(len(ds)):
        s = ds[i]
        for oid, pose in zip(s.object_ids.tolist(), s.object_pose, strict=True):
            settled[(s.scene_id, oid)] = pose
    axis = (hand or HandModel.load()).approach_axis.double().cpu().numpy()
    rest_object, rest_pose, grest, gpose, gjoints = [], [], [], [], []
    for path in sorted((root / "grasps").glob("obj_*_scene*.npz")):
        oid, sid = int(path.stem.split("_")[1]), int(path.stem.split("scene")[1])
        if (sid, oid) not in settled or oid not in by_id:
            continue
        with np.load(path) as z:
            pose, joints = z["pose"], z["joints"]
        if not len(pose):
            continue
        rest = settled[(sid, oid)].copy()
        rest[:2, 3] = 0.0
        rest_object.append(oid)
        rest_pose.append(rest)
        grest.append(np.full(len(pose), len(rest_object) - 1))
        gpose.append(pose)
        gjoints.append(joints)
    grest, gpose = np.concatenate(grest), np.concatenate(gpose)
    rest_pose = np.stack(rest_pose)
    world = rest_pose[grest] @ gpose
    approach = np.where((world[:, :3, :3] @ axis)[:, 2] < -0.5, APPROACHES.index("top"), APPROACHES.index("side"))
    radius = np.array([np.linalg.norm(build_mesh(by_id[o]).extents) / 2 for o in rest_object])
    power = np.linalg.norm(gpose[:, :3, 3], axis=1) < 1.2 * radius[grest]
    used = sorted(set(rest_object))
    return GraspLibrary(
        objects=[by_id[o] for o in used],
        rest_object=np.array(rest_object),
        rest_pose=rest_pose,
        grasp_rest=grest,
        grasp_pose=gpose,
        grasp_joints=np.concatenate(gjoints),
        grasp_type=power.astype(np.uint8),
        grasp_approach=approach.astype(np.uint8),
        metadata={"source": str(root)},
    )


##################################################################################################
# Observations: rendered views as shard samples
##################################################################################################
def render_samples(
    composer: SceneComposer,
    scene: ComposedScene,
    camera_poses: np.ndarray,
    *,
    camera=None,
    workspace=None,
    seed: int = 0,
) -> tuple[list, dict]:
    """Render V views of a composed scene as :class:`~sceneleap_core.data.shards.Sample` objects
    (what ``data/pipeline.py`` writes: points and grasps in the camera frame, per-point object ids,
    -1 for the table). Views whose crop is empty are skipped.

    Args:
        camera_poses: (V, 4, 4) world <- camera.
        camera: :class:`~sceneleap_core.data.depth.DepthCamera` (default D435-like).
        workspace: :class:`~sceneleap_core.data.depth.Workspace` (crop, voxel, point budget).
        seed: seeds the sensor noise and the subsampling (on the composer's device).

    Returns:
        samples, stats (points and target points per view, seconds of rendering).
    """
    return render_scenes(composer, [scene], [camera_poses], camera=camera, workspace=workspace, seed=seed)[0]


def render_scenes(
    composer: SceneComposer,
    scenes: list[ComposedScene],
    camera_poses: list[np.ndarray],
    *,
    camera=None,
    workspace=None,
    seed: int = 0,
) -> list[tuple[list, dict]]:
    """:func:`render_samples` of several scenes, all their views rendered in one batch (each view
    sees only its scene's objects). The noise comes from one generator seeded by ``seed``: a scene
    renders the same as alone only when it is the batch's only scene. Seconds are the batch's,
    divided evenly."""
    from sceneleap_core.data.depth import DepthCamera, Workspace, apply_sensor, observe, render_depth
    from sceneleap_core.data.shards import Sample

    camera = camera or DepthCamera()
    workspace = workspace or Workspace()
    t0 = time.perf_counter()
    dev, dt = composer.device, composer.dtype
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    meshes, opose, oscene, vscene = [], [], [], []
    for k, (scene, cams) in enumerate(zip(scenes, camera_poses, strict=True)):
        meshes += [(c.vertices, c.faces) for c in (composer.object_cache(o.id) for o in scene.objects)]
        opose.append(np.asarray(scene.object_pose).reshape(-1, 4, 4))
        oscene += [k] * len(scene.objects)
        vscene += [k] * len(cams)
    cams = torch.as_tensor(
        np.concatenate([np.asarray(c).reshape(-1, 4, 4) for c in camera_poses]), dtype=dt, device=dev
    )
    view_of = torch.as_tensor(vscene, device=dev)
    mask = view_of[:, None] == torch.as_tensor(oscene, device=dev, dtype=torch.int64).reshape(1, -1)
    with torch.no_grad():
        depth, index = render_depth(
            camera, cams, meshes, torch.as_tensor(np.concatenate(opose), dtype=dt, device=dev), object_view=mask
        )
        noisy = apply_sensor(camera, depth, gen)
    out, v, first = [], 0, 0  # first: the scene's first object in the batch's object list
    for scene, cam_np in zip(scenes, camera_poses, strict=True):
        # index -> object id: the scene's objects at [first, first + O), the table (-1) at the end
        ids = torch.as_tensor(np.append(scene.object_ids, -1), device=dev)
        samples, points, on_target = [], [], []
        targets = set(scene.grasp_object.tolist())
        g = len(scene.grasp_pose)
        for cam in np.asarray(cam_np).reshape(-1, 4, 4):
            pts, idx = observe(camera, cams[v], noisy[v], index[v], workspace, gen)
            v += 1
            if len(pts) == 0:
                continue
            lab = ids[torch.where(idx >= 0, idx - first, idx)].cpu().numpy().astype(np.int32)
            inv = np.linalg.inv(cam)
            samples.append(
                Sample(
                    points=pts.cpu().numpy().astype(np.float32),
                    point_object=lab,
                    camera_pose=np.asarray(cam, dtype=np.float64),
                    grasp_pose=(inv @ scene.grasp_pose).astype(np.float32).reshape(-1, 4, 4),
                    grasp_joints=scene.grasp_joints.astype(np.float32).reshape(g, -1),
                    grasp_object=scene.grasp_object.astype(np.int32),
                    scene_id=scene.scene_id,
                    object_ids=scene.object_ids,
                    object_pose=np.asarray(scene.object_pose, dtype=np.float64),
                )
            )
            points.append(len(lab))
            on_target.extend(int((lab == t).sum()) for t in targets)
        first += len(scene.objects)
        out.append((samples, {"points": points, "points_on_target": on_target}))
    sec = (time.perf_counter() - t0) / max(len(scenes), 1)
    for _, st in out:
        st["seconds_render"] = sec
    return out
