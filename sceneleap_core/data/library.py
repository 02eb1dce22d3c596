"""The object grasp library: per object and resting pose, validated grasps, built once and cached.

Scenes are composed from it (:mod:`sceneleap_core.data.compose`) instead of re-synthesizing grasps
per scene. Frames: every object has R resting poses ``rest_pose`` (4, 4) = table <- object, with the
table top at z = 0 and the object's centroid above the table origin (x = y = 0). A grasp belongs to
one resting pose and is stored in the **object frame**; in a scene where the object sits at planar
placement P (a rotation about z and an xy shift), the grasp's world pose is ``P @ rest @ grasp``.
That transfer keeps every grasp valid against the table (the table is invariant under P).

Notation: O objects, R resting poses (all objects together), G grasps, J hand DoF.

File (``library.npz``, written atomically; version :data:`LIBRARY_VERSION`):

=====================  ==================  =======================================================
key                    shape, dtype        meaning
=====================  ==================  =======================================================
``objects``            () str              JSON list of :class:`LibraryObject` dicts
``rest_object``        (R,) int32          object id of each resting pose
``rest_pose``          (R, 4, 4) float32   table <- object
``grasp_rest``         (G,) int32          resting-pose index of each grasp
``grasp_translation``  (G, 3) float32      palm position, object frame (m)
``grasp_quaternion``   (G, 4) float16      palm orientation, object frame (x, y, z, w)
``grasp_joints``       (G, J) float16      joint angles (rad)
``grasp_type``         (G,) uint8          :data:`GRASP_TYPES` index (precision / power)
``grasp_approach``     (G,) uint8          :data:`APPROACHES` index (top / side), in the rest pose
``metadata``           () str              JSON: version, hand, seed, command, counts, per-object stats
=====================  ==================  =======================================================

float16 quaternions and joints are ~5e-4 relative: < 0.1 mm at the fingertips; positions stay float32.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sceneleap_core.data.objects import LibraryObject
from sceneleap_core.sim.scene import quat_xyzw_to_matrix

LIBRARY_VERSION = 1
LIBRARY_FILE = "library.npz"
GRASP_TYPES = ("precision", "power")
APPROACHES = ("top", "side")


def _matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) proper rotations -> (..., 4) xyzw with w >= 0."""
    from scipy.spatial.transform import Rotation

    m = np.asarray(m, dtype=np.float64)
    q = Rotation.from_matrix(m.reshape(-1, 3, 3)).as_quat().reshape(*m.shape[:-2], 4)
    return q * np.where(q[..., 3:] < 0, -1.0, 1.0)


@dataclass
class GraspLibrary:
    """Validated grasps of many objects in their resting poses (see the module docstring).

    Attributes:
        objects: the O library objects (ids unique).
        rest_object: (R,) object id of each resting pose.
        rest_pose: (R, 4, 4) table <- object.
        grasp_rest: (G,) resting-pose index of each grasp.
        grasp_pose: (G, 4, 4) palm poses in the object frame (float64 in memory).
        grasp_joints: (G, J).
        grasp_type: (G,) index into :data:`GRASP_TYPES`.
        grasp_approach: (G,) index into :data:`APPROACHES`.
        metadata: free-form JSON-serializable dict (build settings, counts, per-object stats).
    """

    objects: list[LibraryObject]
    rest_object: np.ndarray
    rest_pose: np.ndarray
    grasp_rest: np.ndarray
    grasp_pose: np.ndarray
    grasp_joints: np.ndarray
    grasp_type: np.ndarray
    grasp_approach: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.rest_object = np.asarray(self.rest_object, dtype=np.int32).reshape(-1)
        self.rest_pose = np.asarray(self.rest_pose, dtype=np.float64).reshape(-1, 4, 4)
        self.grasp_rest = np.asarray(self.grasp_rest, dtype=np.int32).reshape(-1)
        self.grasp_pose = np.asarray(self.grasp_pose, dtype=np.float64).reshape(-1, 4, 4)
        g = len(self.grasp_rest)
        joints = np.asarray(self.grasp_joints, dtype=np.float64)
        self.grasp_joints = joints if joints.ndim == 2 and len(joints) == g else joints.reshape(g, -1)
        self.grasp_type = np.asarray(self.grasp_type, dtype=np.uint8).reshape(-1)
        self.grasp_approach = np.asarray(self.grasp_approach, dtype=np.uint8).reshape(-1)
        self.validate()
        self._by_id = {o.id: o for o in self.objects}

    # ------------------------------------------------------------------ checks and queries
    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        r, g = len(self.rest_object), len(self.grasp_rest)
        ids = [o.id for o in self.objects]
        if len(set(ids)) != len(ids):
            raise ValueError("library: expected unique object ids, got duplicates")
        if self.rest_pose.shape != (r, 4, 4):
            raise ValueError(f"library.rest_pose: expected ({r}, 4, 4), got {self.rest_pose.shape}")
        unknown = set(self.rest_object.tolist()) - set(ids)
        if unknown:
            raise ValueError(f"library.rest_object: expected ids of library objects, got unknown {sorted(unknown)[:5]}")
        for key in ("grasp_pose", "grasp_joints", "grasp_type", "grasp_approach"):
            if len(getattr(self, key)) != g:
                raise ValueError(f"library.{key}: expected {g} rows (one per grasp), got {len(getattr(self, key))}")
        if g and (self.grasp_rest.min() < 0 or self.grasp_rest.max() >= r):
            raise ValueError(
                f"library.grasp_rest: expected indices in [0, {r}), got {self.grasp_rest.min()}..{self.grasp_rest.max()}"
            )
        if g and (self.grasp_type.max() >= len(GRASP_TYPES) or self.grasp_approach.max() >= len(APPROACHES)):
            raise ValueError("library.grasp_type/grasp_approach: expected indices into GRASP_TYPES/APPROACHES")

    @property
    def num_grasps(self) -> int:
        return len(self.grasp_rest)

    @property
    def dof(self) -> int:
        return self.grasp_joints.shape[1]

    def object(self, object_id: int) -> LibraryObject:
        try:
            return self._by_id[int(object_id)]
        except KeyError:
            raise ValueError(f"library: no object with id {object_id}") from None

    def grasp_object(self) -> np.ndarray:
        """(G,) object id of every grasp."""
        return self.rest_object[self.grasp_rest]

    def rests_of(self, object_id: int) -> np.ndarray:
        """Resting-pose indices of one object (possibly empty)."""
        return np.flatnonzero(self.rest_object == int(object_id))

    def grasps_of_rest(self, rest_index: int) -> np.ndarray:
        """Grasp indices of one resting pose."""
        return np.flatnonzero(self.grasp_rest == int(rest_index))

    def split(self, name: str) -> list[LibraryObject]:
        """Objects of split ``name`` that have at least one grasp."""
        with_grasps = set(self.grasp_object().tolist())
        return [o for o in self.objects if o.split == name and o.id in with_grasps]

    # ------------------------------------------------------------------ assembly
    @classmethod
    def concatenate(cls, parts: list[GraspLibrary], metadata: dict | None = None) -> GraspLibrary:
        """One library from parts over disjoint objects (resting-pose indices are re-based)."""
        if not parts:
            raise ValueError("library parts: expected at least one, got none")
        offsets = np.cumsum([0] + [len(p.rest_object) for p in parts[:-1]])
        return cls(
            objects=[o for p in parts for o in p.objects],
            rest_object=np.concatenate([p.rest_object for p in parts]),
            rest_pose=np.concatenate([p.rest_pose for p in parts]),
            grasp_rest=np.concatenate([p.grasp_rest + off for p, off in zip(parts, offsets, strict=True)]),
            grasp_pose=np.concatenate([p.grasp_pose for p in parts]),
            grasp_joints=np.concatenate([p.grasp_joints for p in parts]),
            grasp_type=np.concatenate([p.grasp_type for p in parts]),
            grasp_approach=np.concatenate([p.grasp_approach for p in parts]),
            metadata=metadata or {},
        )

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (a ``.npz`` file, or a directory that gets :data:`LIBRARY_FILE`) atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path / LIBRARY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        rot = self.grasp_pose[:, :3, :3]
        meta = {"version": LIBRARY_VERSION, **self.metadata}
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(
            tmp,
            objects=np.array(json.dumps([o.to_dict() for o in self.objects])),
            rest_object=self.rest_object.astype(np.int32),
            rest_pose=self.rest_pose.astype(np.float32),
            grasp_rest=self.grasp_rest.astype(np.int32),
            grasp_translation=self.grasp_pose[:, :3, 3].astype(np.float32),
            grasp_quaternion=(_matrix_to_quat(rot) if len(rot) else np.zeros((0, 4))).astype(np.float16),
            grasp_joints=self.grasp_joints.astype(np.float16),
            grasp_type=self.grasp_type.astype(np.uint8),
            grasp_approach=self.grasp_approach.astype(np.uint8),
            metadata=np.array(json.dumps(meta)),
        )
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GraspLibrary:
        """Read a library written by :meth:`save` (a ``.npz`` file or its directory); no pickle."""
        path = Path(path)
        if path.is_dir():
            path = path / LIBRARY_FILE
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as err:
            raise ValueError(
                f"{path}: expected a grasp library ({LIBRARY_FILE}), got an unreadable file: {err}"
            ) from None
        missing = {"objects", "rest_object", "rest_pose", "grasp_rest", "grasp_translation", "grasp_quaternion",
                   "grasp_joints", "grasp_type", "grasp_approach", "metadata"} - set(data)  # fmt: skip
        if missing:
            raise ValueError(f"{path}: expected a grasp library, missing keys {sorted(missing)}")
        meta = json.loads(str(data["metadata"]))
        if meta.get("version", 0) > LIBRARY_VERSION:
            raise ValueError(f"{path}: expected library version <= {LIBRARY_VERSION}, got {meta.get('version')}")
        g = len(data["grasp_rest"])
        pose = np.tile(np.eye(4), (g, 1, 1))
        if g:
            pose[:, :3, :3] = quat_xyzw_to_matrix(data["grasp_quaternion"])  # normalizes (float16)
            pose[:, :3, 3] = data["grasp_translation"]
        return cls(
            objects=[LibraryObject.from_dict(d) for d in json.loads(str(data["objects"]))],
            rest_object=data["rest_object"],
            rest_pose=data["rest_pose"],
            grasp_rest=data["grasp_rest"],
            grasp_pose=pose,
            grasp_joints=data["grasp_joints"].astype(np.float64),
            grasp_type=data["grasp_type"],
            grasp_approach=data["grasp_approach"],
            metadata=meta,
        )


def planar_placement(x: float, y: float, yaw: float) -> np.ndarray:
    """(4, 4) world <- table-placement: rotation ``yaw`` about z, then shift to (x, y) on the table."""
    c, s = np.cos(yaw), np.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = [x, y]
    return out
