"""What the evaluator is given: a scene of objects on a table, and a batch of grasps.

Notation: G grasps, J hand DoF (16 for LEAP), V mesh vertices, F mesh faces.

File formats (``sceneleap eval-grasps --scene scene.json --grasps grasps.npz``)
-------------------------------------------------------------------------------

``scene.json``::

    {
      "table_height": 0.0,                 # z of the table top in the world; null = no table
      "objects": [
        {"kind": "box", "size": [0.025, 0.025, 0.025],          # half extents (m)
         "pose": [[1,0,0,0.1],[0,1,0,0],[0,0,1,0.025],[0,0,0,1]], # 4x4 object -> world
         "mass": 0.1, "friction": 0.5, "object_id": "cube"},
        {"kind": "sphere", "size": [0.03], "position": [0, 0.2, 0.03]},   # radius
        {"kind": "cylinder", "size": [0.03, 0.05], "position": [0.2, 0, 0.05],
         "quaternion_xyzw": [0, 0, 0, 1]},                       # radius, half length (along z)
        {"kind": "capsule", "size": [0.02, 0.04], "position": [0, -0.2, 0.02],
         "quaternion_xyzw": [0.7071068, 0, 0, 0.7071068]},       # radius, half length of the segment
        {"kind": "mesh", "mesh": "meshes/mug.obj", "position": [0.3, 0.2, 0.0]},  # path relative to the JSON
        {"kind": "mesh", "vertices": [[...], ...], "faces": [[0, 1, 2], ...], "convex": true}
      ]
    }

A pose is either ``"pose"`` (4x4, row-major) or ``"position"`` (3) with an optional
``"quaternion_xyzw"`` (4, default identity). ``mass`` (kg), ``friction`` and ``object_id`` are
optional (defaults: :class:`SimConfig` ``object_mass`` / ``object_friction``, the list index).
Mesh files are read with trimesh (OBJ, STL, PLY, GLB, ...). ``convex`` (mesh only): true = one
convex hull, false = CoACD pieces, absent = the config's ``mesh_mode``.

``grasps.npz``: ``palm_pose`` (G, 4, 4) world pose of the hand's root link (``palm_lower``),
or ``palm_position`` (G, 3) + ``palm_quaternion_xyzw`` (G, 4); ``joints`` (G, J) in the project's
joint order (j0..j15, radians, simulation convention); ``target`` (G,) int index of the object each
grasp is meant to pick (optional, default 0 for every grasp).
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OBJECT_KINDS = ("box", "sphere", "cylinder", "capsule", "mesh")
# The one table of the project (settling, validation, evaluation): a box, top face at table_height.
TABLE_HALF_EXTENTS = (0.4, 0.4, 0.02)
_SIZE_LEN = {"box": 3, "sphere": 1, "cylinder": 2, "capsule": 2}
# Bounds past which a number is a unit or data error, not a scene (the simulation would return NaN):
MAX_COORDINATE = 100.0  # m, any position (object, grasp, table height)
MAX_OBJECT_SIZE = 10.0  # m, a half extent, radius or half length, or a mesh vertex's distance from its origin


def _number(value, name: str) -> float:
    """A real number (not a bool or a string) as float; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    return float(value)


def _array(value, name: str, dtype=np.float64) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        text = repr(value)
        raise ValueError(
            f"{name}: expected an array of numbers, got {text[:80]}{'...' if len(text) > 80 else ''}"
        ) from None


def _as_pose(value, name: str) -> np.ndarray:
    pose = _array(value, name)
    if pose.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 pose, got shape {pose.shape}")
    if not np.isfinite(pose).all():
        raise ValueError(f"{name}: expected finite values, got NaN/inf")
    if np.abs(pose[:3, 3]).max() > MAX_COORDINATE:
        raise ValueError(
            f"{name}: expected a position within {MAX_COORDINATE:g} m of the origin, got {pose[:3, 3].tolist()}"
        )
    rot = pose[:3, :3]
    if np.abs(rot @ rot.T - np.eye(3)).max() > 1e-4 or np.linalg.det(rot) < 0:
        raise ValueError(f"{name}: expected a rigid transform (orthonormal rotation, det +1), got {rot.tolist()}")
    if np.abs(pose[3] - [0, 0, 0, 1]).max() > 1e-9:
        raise ValueError(f"{name}: expected last row [0, 0, 0, 1], got {pose[3].tolist()}")
    return pose


def quat_xyzw_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) in xyzw order."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def pose_from_position_quaternion(position, quaternion_xyzw=None) -> np.ndarray:
    """4x4 pose from a position (3,) and a unit quaternion xyzw (4,) (identity when None)."""
    pose = np.eye(4)
    position = _array(position, "position")
    if position.shape != (3,):
        raise ValueError(f"position: expected 3 numbers, got shape {position.shape}")
    pose[:3, 3] = position
    if quaternion_xyzw is not None:
        q = _array(quaternion_xyzw, "quaternion_xyzw")
        if q.shape != (4,) or not np.isfinite(q).all() or np.linalg.norm(q) < 1e-6:
            raise ValueError(f"quaternion_xyzw: expected 4 finite numbers with non-zero norm, got {q.tolist()}")
        pose[:3, :3] = quat_xyzw_to_matrix(q)
    return pose


@dataclass
class ObjectSpec:
    """One rigid object, free to move.

    Args:
        kind: ``"box"``, ``"sphere"``, ``"cylinder"``, ``"capsule"`` or ``"mesh"``.
        size: MuJoCo geom sizes: box half extents (3,), sphere radius (1,), cylinder and capsule
            (radius, half length along the object's z) (2,). Unused for meshes.
        pose: (4, 4) object frame -> world. Mesh vertices are given in the object frame.
        mass: kg (None: the config's ``object_mass``); the inertia follows from uniform density.
        friction: sliding friction (None: the config's ``object_friction``).
        vertices: (V, 3) mesh vertices (m), meshes only.
        faces: (F, 3) triangle indices, meshes only.
        convex: meshes only: True = one convex hull, False = CoACD pieces, None = config ``mesh_mode``.
        object_id: a name to report (default: the index in the scene).
    """

    kind: str
    size: tuple[float, ...] = ()
    pose: np.ndarray = field(default_factory=lambda: np.eye(4))
    mass: float | None = None
    friction: float | None = None
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    convex: bool | None = None
    object_id: str = ""

    def validate(self, name: str = "object") -> None:
        """Raise ValueError naming the first problem."""
        if self.kind not in OBJECT_KINDS:
            raise ValueError(f"{name}.kind: expected one of {OBJECT_KINDS}, got {self.kind!r}")
        self.pose = _as_pose(self.pose, f"{name}.pose")
        if self.kind == "mesh":
            if self.vertices is None or self.faces is None:
                raise ValueError(f"{name}: expected vertices (V, 3) and faces (F, 3) for a mesh, got none")
            self.vertices = _array(self.vertices, f"{name}.vertices")
            self.faces = _array(self.faces, f"{name}.faces", np.int64)
            if self.vertices.ndim != 2 or self.vertices.shape[1] != 3 or len(self.vertices) < 4:
                raise ValueError(f"{name}.vertices: expected shape (V>=4, 3), got {self.vertices.shape}")
            if not np.isfinite(self.vertices).all():
                raise ValueError(f"{name}.vertices: expected finite values, got NaN/inf")
            if np.abs(self.vertices).max() > MAX_OBJECT_SIZE:
                raise ValueError(
                    f"{name}.vertices: expected within {MAX_OBJECT_SIZE:g} m of the object origin (metres?), "
                    f"got up to {np.abs(self.vertices).max():g}"
                )
            if self.faces.ndim != 2 or self.faces.shape[1] != 3 or len(self.faces) < 4:
                raise ValueError(f"{name}.faces: expected shape (F>=4, 3), got {self.faces.shape}")
            if self.faces.min() < 0 or self.faces.max() >= len(self.vertices):
                raise ValueError(f"{name}.faces: expected indices in [0, {len(self.vertices)}), got out-of-range ones")
            extent = self.vertices.max(0) - self.vertices.min(0)
            if np.sort(extent)[1] < 1e-4:
                raise ValueError(f"{name}.vertices: expected a solid mesh, got a flat one (extent {extent.tolist()})")
        else:
            size = tuple(float(s) for s in np.atleast_1d(_array(self.size, f"{name}.size")))
            if len(size) != _SIZE_LEN[self.kind]:
                raise ValueError(f"{name}.size: expected {_SIZE_LEN[self.kind]} numbers for a {self.kind}, got {size}")
            if not all(np.isfinite(s) and 0 < s <= MAX_OBJECT_SIZE for s in size):
                raise ValueError(f"{name}.size: expected positive numbers up to {MAX_OBJECT_SIZE:g} m, got {size}")
            self.size = size
        if self.mass is not None and not (np.isfinite(_number(self.mass, f"{name}.mass")) and 0 < self.mass <= 1e4):
            raise ValueError(f"{name}.mass: expected a positive number up to 1e4 (kg), got {self.mass!r}")
        friction = None if self.friction is None else _number(self.friction, f"{name}.friction")
        if friction is not None and not (np.isfinite(friction) and 0 <= friction <= 100):
            raise ValueError(f"{name}.friction: expected a number in [0, 100], got {self.friction!r}")

    def bounding_radius(self) -> float:
        """Radius (m) of a sphere about the object origin that contains the object."""
        if self.kind == "box":
            return float(np.linalg.norm(self.size))
        if self.kind == "sphere":
            return float(self.size[0])
        if self.kind in ("cylinder", "capsule"):
            r, h = self.size
            return float(np.hypot(r, h) if self.kind == "cylinder" else r + h)
        return float(np.linalg.norm(self.vertices, axis=1).max())


@dataclass
class SceneSpec:
    """Objects on an optional table.

    Args:
        objects: the free objects (at least one); indices into this list are the grasp targets.
        table_height: z (m) of the table top, a horizontal plane; None = no table.
        name: for reports.
    """

    objects: list[ObjectSpec]
    table_height: float | None = 0.0
    name: str = "scene"

    def validate(self) -> None:
        """Raise ValueError on an empty scene or a malformed object."""
        if not isinstance(self.objects, list | tuple) or len(self.objects) == 0:
            raise ValueError("scene: expected at least one object, got an empty scene")
        for i, obj in enumerate(self.objects):
            if not isinstance(obj, ObjectSpec):
                raise ValueError(f"scene.objects[{i}]: expected an ObjectSpec, got {type(obj).__name__}")
            obj.validate(f"scene.objects[{i}]")
            if not obj.object_id:
                obj.object_id = str(i)
        if self.table_height is not None and not (
            np.isfinite(_number(self.table_height, "scene.table_height")) and abs(self.table_height) <= MAX_COORDINATE
        ):
            raise ValueError(
                f"scene.table_height: expected a finite number within {MAX_COORDINATE:g} m or null, "
                f"got {self.table_height!r}"
            )

    def single(self, index: int) -> SceneSpec:
        """The scene with only object ``index`` and no table (the disturbance test's scene)."""
        return SceneSpec([self.objects[index]], table_height=None, name=f"{self.name}[{index}]")


@dataclass
class GraspBatch:
    """G grasps: palm poses (G, 4, 4) in the world, joints (G, J), target object indices (G,)."""

    palm_pose: np.ndarray
    joints: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.joints)


def check_grasps(palm_pose, joints, target, *, num_objects: int, dof: int, lower=None, upper=None) -> GraspBatch:
    """Validate and convert a batch of grasps.

    Args:
        palm_pose: (G, 4, 4) array-like (numpy or torch), root link pose in the world.
        joints: (G, J) joint angles.
        target: (G,) object indices, or an int for all grasps.
        num_objects: objects in the scene (bounds ``target``).
        dof: J.
        lower, upper: (J,) joint limits; joints beyond them by more than 1e-3 rad are rejected.

    Returns:
        A :class:`GraspBatch` of float64 / int64 numpy arrays.
    """
    joints = _array(_to_numpy(joints), "joints")
    palm_pose = _array(_to_numpy(palm_pose), "palm_pose")
    if joints.ndim != 2 or joints.shape[1] != dof:
        raise ValueError(f"joints: expected shape (G, {dof}), got {joints.shape}")
    g = len(joints)
    if g == 0:
        raise ValueError("grasps: expected at least one grasp, got G = 0")
    if palm_pose.shape != (g, 4, 4):
        raise ValueError(f"palm_pose: expected shape ({g}, 4, 4) to match joints, got {palm_pose.shape}")
    bad = ~np.isfinite(joints).all(1)
    if bad.any():
        raise ValueError(f"joints: expected finite values, got NaN/inf in grasp {int(np.argmax(bad))}")
    bad = ~np.isfinite(palm_pose).reshape(g, -1).all(1)
    if bad.any():
        raise ValueError(f"palm_pose: expected finite values, got NaN/inf in grasp {int(np.argmax(bad))}")
    for i in range(g):
        _as_pose(palm_pose[i], f"palm_pose[{i}]")
    if lower is not None and upper is not None:
        out = (joints < np.asarray(lower) - 1e-3) | (joints > np.asarray(upper) + 1e-3)
        if out.any():
            gi, ji = np.argwhere(out)[0]
            raise ValueError(
                f"joints[{gi}, {ji}]: expected within [{lower[ji]:+.3f}, {upper[ji]:+.3f}] rad, got {joints[gi, ji]:+.4f}"
            )
    target = np.asarray(_to_numpy(target))
    if target.ndim == 0:
        target = np.full(g, int(target))
    if target.shape != (g,) or not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target: expected ({g},) integer object indices, got shape {target.shape} {target.dtype}")
    if target.min() < 0 or target.max() >= num_objects:
        raise ValueError(f"target: expected object indices in [0, {num_objects}), got {target.min()}..{target.max()}")
    return GraspBatch(palm_pose, joints, target.astype(np.int64))


def _to_numpy(x):
    if hasattr(x, "detach"):  # torch tensor, without importing torch
        return x.detach().cpu().numpy()
    return x


# ---------------------------------------------------------------------------- files
def load_scene(path: str | Path) -> SceneSpec:
    """Read a ``scene.json`` (format in this module's docstring) into a validated SceneSpec."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"scene: expected a JSON file, got no file at {path}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"scene {path}: expected JSON, got a parse error: {err}") from None
    return scene_from_dict(meta, base_dir=path.parent)


def scene_from_dict(meta: dict, base_dir: str | Path = ".") -> SceneSpec:
    """Build a validated SceneSpec from the JSON structure (dict)."""
    if not isinstance(meta, dict) or "objects" not in meta:
        raise ValueError("scene: expected an object with an 'objects' list, got none")
    if not isinstance(meta["objects"], list):
        raise ValueError(f"scene.objects: expected a list of objects, got {meta['objects']!r}")
    objects = []
    for i, entry in enumerate(meta["objects"]):
        name = f"scene.objects[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: expected an object, got {type(entry).__name__}")
        known = {"kind", "size", "pose", "position", "quaternion_xyzw", "mass", "friction"}
        known |= {"vertices", "faces", "mesh", "convex", "object_id"}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"{name}: unknown keys {unknown}; expected some of {sorted(known)}")
        if "pose" in entry:
            pose = entry["pose"]
        elif "position" in entry:
            try:
                pose = pose_from_position_quaternion(entry["position"], entry.get("quaternion_xyzw"))
            except ValueError as err:
                raise ValueError(f"{name}.{err}") from None
        else:
            raise ValueError(f"{name}: expected 'pose' (4x4) or 'position' (+ 'quaternion_xyzw'), got neither")
        vertices, faces = entry.get("vertices"), entry.get("faces")
        if entry.get("kind") == "mesh" and "mesh" in entry:
            if not isinstance(entry["mesh"], str):
                raise ValueError(f"{name}.mesh: expected a file path, got {entry['mesh']!r}")
            vertices, faces = _read_mesh(Path(base_dir) / entry["mesh"], name)
        size = entry.get("size", ())
        if not isinstance(size, list | tuple):
            raise ValueError(f"{name}.size: expected a list of numbers, got {size!r}")
        if entry.get("convex") is not None and not isinstance(entry["convex"], bool):
            raise ValueError(f"{name}.convex: expected true, false or null, got {entry['convex']!r}")
        objects.append(
            ObjectSpec(
                kind=entry.get("kind", ""),
                size=tuple(size),
                pose=_array(pose, f"{name}.pose"),
                mass=entry.get("mass"),
                friction=entry.get("friction"),
                vertices=None if vertices is None else _array(vertices, f"{name}.vertices"),
                faces=None if faces is None else _array(faces, f"{name}.faces", np.int64),
                convex=entry.get("convex"),
                object_id=str(entry.get("object_id", i)),
            )
        )
    scene = SceneSpec(objects, table_height=meta.get("table_height", 0.0), name=str(meta.get("name", "scene")))
    scene.validate()
    return scene


def scene_to_dict(scene: SceneSpec) -> dict:
    """The JSON structure of a scene (meshes inline)."""
    objects = []
    for obj in scene.objects:
        entry = {"kind": obj.kind, "pose": np.asarray(obj.pose).tolist(), "object_id": obj.object_id}
        if obj.kind == "mesh":
            entry |= {"vertices": obj.vertices.tolist(), "faces": obj.faces.tolist()}
            if obj.convex is not None:
                entry["convex"] = bool(obj.convex)
        else:
            entry["size"] = list(obj.size)
        if obj.mass is not None:
            entry["mass"] = obj.mass
        if obj.friction is not None:
            entry["friction"] = obj.friction
        objects.append(entry)
    return {"name": scene.name, "table_height": scene.table_height, "objects": objects}


def _read_mesh(path: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise ValueError(f"{name}.mesh: expected a mesh file, got no file at {path}")
    import trimesh

    try:
        mesh = trimesh.load(path, force="mesh", process=True)
        vertices, faces = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)
    except Exception as err:  # trimesh raises anything from a bad file: one clear line instead
        raise ValueError(f"{name}.mesh: cannot read {path} as a mesh ({type(err).__name__}: {err})") from None
    if vertices.ndim != 2 or len(vertices) < 4 or faces.ndim != 2 or len(faces) < 4:
        raise ValueError(
            f"{name}.mesh: expected a triangle mesh in {path}, got {len(vertices)} vertices, {len(faces)} faces"
        )
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"{name}.mesh: {path} has face indices outside its {len(vertices)} vertices")
    return vertices, faces


def load_grasps(path: str | Path, *, num_objects: int, dof: int = 16, lower=None, upper=None) -> GraspBatch:
    """Read a ``grasps.npz`` (format in this module's docstring) into a validated GraspBatch."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"grasps: expected an .npz file, got no file at {path}")
    try:
        data = dict(np.load(path, allow_pickle=False))  # read every array now: a torn member fails here
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        why = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise ValueError(f"grasps {path}: expected an .npz archive, got an unreadable file ({why})") from None
    keys = set(data)
    if "joints" not in keys:
        raise ValueError(f"grasps {path}: expected key 'joints' (G, {dof}), got keys {sorted(keys)}")
    joints = data["joints"]
    if "palm_pose" in keys:
        pose = data["palm_pose"]
    elif {"palm_position", "palm_quaternion_xyzw"} <= keys:
        pos = _array(data["palm_position"], f"grasps {path}: palm_position")
        quat = _array(data["palm_quaternion_xyzw"], f"grasps {path}: palm_quaternion_xyzw")
        if pos.ndim != 2 or pos.shape[1] != 3 or quat.shape != (len(pos), 4):
            raise ValueError(
                f"grasps {path}: expected palm_position (G, 3) and palm_quaternion_xyzw (G, 4), "
                f"got {pos.shape} and {quat.shape}"
            )
        pose = np.tile(np.eye(4), (len(pos), 1, 1))
        pose[:, :3, :3] = quat_xyzw_to_matrix(quat)
        pose[:, :3, 3] = pos
    else:
        raise ValueError(
            f"grasps {path}: expected 'palm_pose' (G, 4, 4) or 'palm_position' + 'palm_quaternion_xyzw', "
            f"got keys {sorted(keys)}"
        )
    target = data["target"] if "target" in keys else 0
    return check_grasps(pose, joints, target, num_objects=num_objects, dof=dof, lower=lower, upper=upper)


def save_grasps(path: str | Path, palm_pose, joints, target=0) -> Path:
    """Write grasps in the ``grasps.npz`` format."""
    path = Path(path)
    palm_pose = np.asarray(_to_numpy(palm_pose), dtype=np.float64)
    target = np.broadcast_to(np.asarray(target, dtype=np.int64), (len(palm_pose),))
    np.savez(path, palm_pose=palm_pose, joints=np.asarray(_to_numpy(joints), dtype=np.float64), target=target)
    return path
