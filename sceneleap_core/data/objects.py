"""Object library: procedural watertight meshes at graspable sizes, the object table, splits.

Every object is fully described by an :class:`LibraryObject` (id, kind, shape parameters, scale,
mass, friction, split); :func:`build_mesh` rebuilds its mesh deterministically from the spec, so a
dataset stores only the table (``objects.json`` in the dataset root and the per-shard metadata),
never the meshes, and the simulator can rebuild every scene.

Kinds (sizes are the object's full extents, 3-15 cm; object frame = mesh centroid at the origin):

============== =====================================================================
kind           params
============== =====================================================================
box            extents (3,)
cylinder       radius, height (axis z)
sphere         radius
capsule        radius, height (cylinder part, axis z)
superquadric   a, b, c (semi-axes), e1, e2 (shape exponents)
hull           points (K, 3): convex hull of random points in an ellipsoid
extrusion      radii (K,) of a star-shaped polygon, height (axis z)
revolve        profile (K, 2) of (radius, z) pairs, revolved about z
urdf           path of a ``pybullet_data/random_urdfs/NNN/NNN.obj`` mesh, scale
============== =====================================================================

Splits are by object id: ``split_of(id)`` hashes the id, so the same object is always in the same
split whatever the library size. ``pybullet_data`` meshes 000-799 are split train/val by the same
rule; 800-999 are always ``test`` (never used for training or tuning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

KINDS = ("box", "cylinder", "sphere", "capsule", "superquadric", "hull", "extrusion", "revolve")
SPLITS = ("train", "val", "test")
OBJECT_TABLE_NAME = "objects.json"
MIN_SIZE, MAX_SIZE = 0.03, 0.15  # full extents (m)
DENSITY_RANGE = (300.0, 900.0)  # kg/m^3: foam .. wood, keeps masses of 3-15 cm objects in 10-600 g
FRICTION_RANGE = (0.4, 1.0)
URDF_TRAIN_IDS = range(0, 800)
URDF_TEST_IDS = range(800, 1000)


@dataclass
class LibraryObject:
    """One object of the library.

    Attributes:
        id: global object id (also the per-point / per-grasp object id in shards).
        kind: one of :data:`KINDS` or "urdf".
        params: shape parameters (JSON-serializable; see the module table).
        scale: uniform scale applied after building the shape.
        mass: kg.
        friction: sliding friction coefficient.
        split: "train", "val" or "test".
    """

    id: int
    kind: str
    params: dict = field(default_factory=dict)
    scale: float = 1.0
    mass: float = 0.1
    friction: float = 0.7
    split: str = "train"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LibraryObject:
        return cls(**{k: d[k] for k in ("id", "kind", "params", "scale", "mass", "friction", "split") if k in d})


def split_of(object_id: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic train/val/test split of an object id (hash-based, size independent)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"fractions: expected 3 non-negative numbers summing to 1, got {fractions}")
    h = int(hashlib.sha256(f"sceneleap-object-{int(object_id)}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if h < fractions[0] else "val" if h < fractions[0] + fractions[1] else "test"


# ---------------------------------------------------------------------------------------------
# Shape parameters and meshes
# ---------------------------------------------------------------------------------------------
def _sample_params(kind: str, rng: np.random.Generator) -> dict:
    """Random shape parameters of a ``kind`` with every full extent within 3-15 cm and at least
    one extent <= 9 cm (so the LEAP Hand's thumb-finger span can close around it)."""
    u = rng.uniform
    if kind == "box":
        ext = [u(0.03, 0.09), u(0.03, 0.12), u(0.04, 0.15)]
        return {"extents": [float(v) for v in rng.permutation(ext)]}
    if kind == "cylinder":
        return {"radius": u(0.018, 0.045), "height": u(0.04, 0.15)}
    if kind == "sphere":
        return {"radius": u(0.022, 0.05)}
    if kind == "capsule":
        r = u(0.016, 0.035)
        return {"radius": r, "height": u(0.02, 0.15 - 2 * r)}
    if kind == "superquadric":
        a, b, c = u(0.018, 0.045), u(0.018, 0.06), u(0.02, 0.07)
        return {"a": a, "b": b, "c": c, "e1": u(0.3, 1.4), "e2": u(0.3, 1.4)}
    if kind == "hull":
        semi = np.array([u(0.02, 0.045), u(0.02, 0.06), u(0.025, 0.07)])
        d = rng.normal(size=(int(rng.integers(10, 30)), 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts = d * semi * rng.uniform(0.7, 1.0, size=(len(d), 1))
        return {"points": np.round(pts, 5).tolist()}
    if kind == "extrusion":
        k = int(rng.integers(3, 9))
        base = u(0.02, 0.04)
        radii = base * rng.uniform(0.65, 1.0, size=k)
        return {"radii": np.round(radii, 5).tolist(), "height": u(0.04, 0.14)}
    if kind == "revolve":
        k = 6
        z = np.linspace(-0.5, 0.5, k) * u(0.05, 0.15)
        r = np.clip(u(0.018, 0.04) + 0.012 * np.cumsum(rng.normal(size=k)) / np.sqrt(k), 0.012, 0.045)
        return {"profile": np.round(np.stack([r, z], 1), 5).tolist()}
    raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")


def _superquadric(a: float, b: float, c: float, e1: float, e2: float, subdivisions: int = 3):
    import trimesh

    # Radial map of an icosphere: for a unit direction d the surface point is t d with
    # F(t d) = t^(2/e1) F(d) = 1, F the superquadric inside-outside function.
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    d = sphere.vertices
    f = (np.abs(d[:, 0] / a) ** (2 / e2) + np.abs(d[:, 1] / b) ** (2 / e2)) ** (e2 / e1) + np.abs(d[:, 2] / c) ** (
        2 / e1
    )
    return trimesh.Trimesh(d * f[:, None] ** (-e1 / 2), sphere.faces, process=True)


def _extrusion(radii: list[float], height: float):
    import trimesh

    # Star-shaped polygon (angle-sorted vertices around the origin) extruded along z; fan caps.
    radii = np.asarray(radii)
    k = len(radii)
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ring = np.stack([radii * np.cos(ang), radii * np.sin(ang)], 1)
    bottom = np.concatenate([ring, np.full((k, 1), -height / 2)], 1)
    top = np.concatenate([ring, np.full((k, 1), height / 2)], 1)
    verts = np.concatenate([bottom, top, [[0, 0, -height / 2], [0, 0, height / 2]]])
    cb, ct = 2 * k, 2 * k + 1
    faces = []
    for i in range(k):
        j = (i + 1) % k
        faces += [[i, j, k + j], [i, k + j, k + i], [cb, j, i], [ct, k + i, k + j]]
    mesh = trimesh.Trimesh(verts, np.array(faces), process=True)
    mesh.fix_normals()
    return mesh


def build_mesh(spec: LibraryObject):
    """The watertight ``trimesh.Trimesh`` of an object, centred at its centroid (object frame).

    Raises:
        ValueError: unknown kind, or a mesh that is not watertight.
    """
    import trimesh

    p, kind = spec.params, spec.kind
    if kind == "box":
        mesh = trimesh.creation.box(extents=p["extents"])
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=p["radius"], height=p["height"], sections=32)
    elif kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=p["radius"])
    elif kind == "capsule":
        mesh = trimesh.creation.capsule(radius=p["radius"], height=p["height"], count=[16, 16])
    elif kind == "superquadric":
        mesh = _superquadric(p["a"], p["b"], p["c"], p["e1"], p["e2"])
    elif kind == "hull":
        mesh = trimesh.convex.convex_hull(np.asarray(p["points"]))
    elif kind == "extrusion":
        mesh = _extrusion(p["radii"], p["height"])
    elif kind == "revolve":
        prof = np.asarray(p["profile"])
        line = np.concatenate([[[0.0, prof[0, 1]]], prof, [[0.0, prof[-1, 1]]]])
        mesh = trimesh.creation.revolve(line, sections=32)
        mesh.merge_vertices()
        mesh.fix_normals()
    elif kind == "urdf":
        mesh = trimesh.load(p["path"], force="mesh")
    else:
        raise ValueError(f"object {spec.id}: kind: expected one of {(*KINDS, 'urdf')}, got {kind!r}")
    mesh = mesh.copy()
    if spec.scale != 1.0:
        mesh.apply_scale(spec.scale)
    if kind == "urdf" and not mesh.is_watertight:
        mesh = mesh.convex_hull  # random_urdfs meshes are not all closed; use their hull then
    if not mesh.is_watertight:
        raise ValueError(f"object {spec.id} ({kind}): expected a watertight mesh, got an open one")
    if mesh.volume < 0:
        mesh.invert()
    mesh.apply_translation(-mesh.center_mass)
    return mesh


def _finish(spec: LibraryObject, rng: np.random.Generator) -> LibraryObject:
    """Fill mass (density x volume) and friction from the built mesh."""
    mesh = build_mesh(spec)
    spec.mass = float(np.clip(mesh.volume * rng.uniform(*DENSITY_RANGE), 0.01, 0.6))
    spec.friction = float(rng.uniform(*FRICTION_RANGE))
    return spec


# ---------------------------------------------------------------------------------------------
# Library
# ---------------------------------------------------------------------------------------------
def make_procedural(object_id: int, *, seed: int = 0, kind: str | None = None) -> LibraryObject:
    """The procedural object ``object_id`` of the library with base ``seed``: deterministic."""
    rng = np.random.default_rng([int(seed), int(object_id)])
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    params = _sample_params(kind, rng)
    spec = LibraryObject(id=int(object_id), kind=kind, params=params, split=split_of(object_id))
    spec = _finish(spec, rng)
    extents = build_mesh(spec).extents
    if extents.max() > MAX_SIZE + 1e-6 or extents.min() < 0.8 * MIN_SIZE:
        raise ValueError(f"object {object_id} ({kind}): extents {np.round(extents, 3)} outside graspable sizes")
    return spec


def pybullet_urdf_objects(*, first_id: int = 100000, include_test: bool = False) -> list[LibraryObject]:
    """Objects from ``pybullet_data/random_urdfs`` when pybullet is importable, else [].

    Meshes 000-799 get the train/val split of their id; 800-999 are ``test`` and are returned only
    with ``include_test`` (never for training or tuning). Object ids are ``first_id + NNN``. Each
    mesh is scaled so its largest extent is in 6-12 cm.
    """
    try:
        import pybullet_data  # optional extra
    except ImportError:
        return []
    root = Path(pybullet_data.getDataPath()) / "random_urdfs"
    ids = list(URDF_TRAIN_IDS) + (list(URDF_TEST_IDS) if include_test else [])
    out = []
    for n in ids:
        path = root / f"{n:03d}" / f"{n:03d}.obj"
        if not path.is_file():
            continue
        rng = np.random.default_rng([7, n])
        spec = LibraryObject(id=first_id + n, kind="urdf", params={"path": str(path)})
        spec.split = "test" if n in URDF_TEST_IDS else ("val" if split_of(spec.id) == "val" else "train")
        try:
            import trimesh

            ext = trimesh.load(path, force="mesh").extents.max()
            spec.scale = float(rng.uniform(0.06, 0.12) / ext)
            out.append(_finish(spec, rng))
        except Exception as err:  # a bad mesh is logged and skipped, never fatal
            log.warning("random_urdfs %03d skipped: %s", n, err)
    return out


def make_library(
    num_objects: int = 64, *, seed: int = 0, kinds: tuple[str, ...] | None = None, use_pybullet: bool = False
) -> list[LibraryObject]:
    """The object table: ``num_objects`` procedural objects (ids 0..num_objects-1) plus, with
    ``use_pybullet``, the train/val ``random_urdfs`` meshes when pybullet is installed.

    Kinds cycle through ``kinds`` (default all of :data:`KINDS`) so every kind is represented.
    """
    if num_objects < 1:
        raise ValueError(f"num_objects: expected >= 1, got {num_objects}")
    kinds = tuple(kinds or KINDS)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"kinds: expected a subset of {KINDS}, got {bad}")
    specs = [make_procedural(i, seed=seed, kind=kinds[i % len(kinds)]) for i in range(num_objects)]
    if use_pybullet:
        specs += pybullet_urdf_objects()
    return specs


def save_object_table(path: str | Path, specs: list[LibraryObject], *, metadata: dict | None = None) -> Path:
    """Write the object table as JSON, atomically (temp file + rename).

    Format: ``{"version": 1, "objects": [LibraryObject dicts], "metadata": {...}}``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": 1, "objects": [s.to_dict() for s in specs], "metadata": metadata or {}}))
    os.replace(tmp, path)
    return path


def load_object_table(path: str | Path) -> list[LibraryObject]:
    """Read an object table written by :func:`save_object_table` (a file or a dataset root)."""
    path = Path(path)
    if path.is_dir():
        path = path / OBJECT_TABLE_NAME
    try:
        data = json.loads(path.read_text())
        return [LibraryObject.from_dict(d) for d in data["objects"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: expected an object table (objects.json), got an unreadable file: {err}") from None
