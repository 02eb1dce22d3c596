"""HDF5 shards of scene observations with their grasps: schema, atomic writer, fork-safe reader,
and the dataset manifest.

Schema (version 1). A shard holds S samples; a sample is one depth observation (one camera view of
one scene) with every valid grasp expressed in that camera's frame. Ragged arrays are stored
concatenated with ``*_offsets`` (S + 1,) so sample i owns rows ``offsets[i]:offsets[i+1]``.

============================  =====================  =========================================
dataset                        shape, dtype            meaning
============================  =====================  =========================================
``points``                     (sum N, 3) float32      cloud in the camera frame (m)
``point_object``               (sum N,) int32          object id per point, -1 table/background
``point_offsets``              (S + 1,) int64
``camera_pose``                (S, 4, 4) float64       world <- camera (camera: x right, y down,
                                                       z forward, the ROS optical convention)
``scene_id``                   (S,) int64              scene the view belongs to
``grasp_pose``                 (sum G, 4, 4) float32   palm (root link) pose in the camera frame
``grasp_joints``               (sum G, J) float32      joint angles, description order
``grasp_object``               (sum G,) int32          object id the grasp holds
``grasp_offsets``              (S + 1,) int64
``object_ids``                 (sum O,) int32          objects present in the sample's scene
``object_pose``                (sum O, 4, 4) float64   world <- object
``object_offsets``             (S + 1,) int64
============================  =====================  =========================================

File attributes: ``schema_version``, ``hand`` (description name), ``dof`` (J), ``num_samples``,
``created_utc``, ``metadata`` (JSON string: generator settings, object table, ...).

Writes are atomic: a shard is written to ``<name>.tmp`` and renamed, so a killed run never
leaves a half-written shard under the final name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
COMPRESSIONS = ("gzip", "lzf", "none")
_RAGGED = {
    "point": ("points", "point_object"),
    "grasp": ("grasp_pose", "grasp_joints", "grasp_object"),
    "object": ("object_ids", "object_pose"),
}
_PER_SAMPLE = ("camera_pose", "scene_id")


class ShardError(ValueError):
    """A shard or dataset file is missing, truncated, corrupt or of another schema."""


@dataclass
class Sample:
    """One observation with its grasps. Shapes: N points, G grasps, O objects, J joints.

    Attributes:
        points: (N, 3) float32, camera frame.
        point_object: (N,) int32, object id per point (-1 = table/background).
        camera_pose: (4, 4) float64, world <- camera.
        grasp_pose: (G, 4, 4) float32, palm pose in the camera frame.
        grasp_joints: (G, J) float32.
        grasp_object: (G,) int32 object id held by each grasp.
        scene_id: scene index.
        object_ids: (O,) int32 objects in the scene.
        object_pose: (O, 4, 4) float64, world <- object.
    """

    points: np.ndarray
    point_object: np.ndarray
    camera_pose: np.ndarray
    grasp_pose: np.ndarray
    grasp_joints: np.ndarray
    grasp_object: np.ndarray
    scene_id: int = 0
    object_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    object_pose: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 4)))

    def validate(self, dof: int) -> None:
        """Raise ValueError naming the first inconsistent field."""
        n, g, o = len(self.points), len(self.grasp_pose), len(self.object_ids)
        expected = {
            "points": (n, 3),
            "point_object": (n,),
            "camera_pose": (4, 4),
            "grasp_pose": (g, 4, 4),
            "grasp_joints": (g, dof),
            "grasp_object": (g,),
            "object_ids": (o,),
            "object_pose": (o, 4, 4),
        }
        for name, shape in expected.items():
            got = np.shape(getattr(self, name))
            if tuple(got) != shape:
                raise ValueError(f"sample.{name}: expected shape {shape}, got {tuple(got)}")
        for name in ("points", "camera_pose", "grasp_pose", "grasp_joints", "object_pose"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"sample.{name}: contains NaN/inf")
        if n == 0:
            raise ValueError("sample.points: empty cloud")


class ShardWriter:
    """Collect samples and write them as one shard, atomically, on :meth:`close`.

    Args:
        path: final shard path (``.h5``).
        hand: hand description name stored in the file.
        dof: joints per grasp (J).
        compression: "gzip" (level 4), "lzf" or "none".
        metadata: JSON-serializable dict stored as the ``metadata`` attribute.
    """

    def __init__(
        self, path: str | Path, *, hand: str, dof: int, compression: str = "lzf", metadata: dict | None = None
    ):
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression: expected one of {COMPRESSIONS}, got {compression!r}")
        self.path = Path(path)
        self.hand, self.dof, self.compression = hand, int(dof), compression
        self.metadata = dict(metadata or {})
        self.samples: list[Sample] = []
        self._closed = False

    def add(self, sample: Sample) -> None:
        sample.validate(self.dof)
        self.samples.append(sample)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def close(self) -> Path:
        """Write ``<path>.tmp``, flush, rename to ``path``. Returns the final path."""
        import h5py

        if self._closed:
            return self.path
        if not self.samples:
            raise ValueError(f"shard {self.path}: no samples to write")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        comp = None if self.compression == "none" else self.compression
        opts = {"compression": comp, "compression_opts": 4} if comp == "gzip" else {"compression": comp}
        s = self.samples
        with h5py.File(tmp, "w") as f:
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["hand"] = self.hand
            f.attrs["dof"] = self.dof
            f.attrs["num_samples"] = len(s)
            f.attrs["created_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            f.attrs["metadata"] = json.dumps(self.metadata)
            dtypes = {
                "points": np.float32, "point_object": np.int32, "grasp_pose": np.float32,
                "grasp_joints": np.float32, "grasp_object": np.int32, "object_ids": np.int32,
                "object_pose": np.float64,
            }  # fmt: skip
            for prefix, names in _RAGGED.items():
                counts = [len(getattr(x, names[0])) for x in s]
                f.create_dataset(f"{prefix}_offsets", data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
                for name in names:
                    data = np.concatenate([np.asarray(getattr(x, name), dtype=dtypes[name]) for x in s])
                    chunks = (min(max(len(data), 1), 16384), *data.shape[1:]) if len(data) else None
                    f.create_dataset(name, data=data, chunks=chunks, **(opts if len(data) else {}))
            f.create_dataset("camera_pose", data=np.stack([x.camera_pose for x in s]).astype(np.float64))
            f.create_dataset("scene_id", data=np.array([x.scene_id for x in s], dtype=np.int64))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._closed = True
        return self.path


class ShardReader:
    """Random access to the samples of one shard. The HDF5 handle is opened lazily and re-opened
    in each process (safe with forked DataLoader workers).

    Raises:
        ShardError: naming the file, when it is missing, truncated, corrupt or of another schema.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = None
        self._pid = None
        f = self._open()
        self.num_samples = int(f.attrs["num_samples"])
        self.dof = int(f.attrs["dof"])
        self.hand = str(f.attrs["hand"])
        self.metadata = json.loads(f.attrs.get("metadata", "{}"))
        self._offsets = {p: f[f"{p}_offsets"][()] for p in _RAGGED}
        for prefix, names in _RAGGED.items():
            off = self._offsets[prefix]
            if len(off) != self.num_samples + 1 or (np.diff(off) < 0).any():
                raise ShardError(f"{self.path}: {prefix}_offsets inconsistent with {self.num_samples} samples")
            for name in names:
                if f[name].shape[0] != off[-1]:
                    raise ShardError(f"{self.path}: dataset {name} has {f[name].shape[0]} rows, offsets say {off[-1]}")

    def _open(self):
        import h5py

        if self._file is not None and self._pid == os.getpid():
            return self._file
        if not self.path.is_file():
            raise ShardError(f"{self.path}: shard file does not exist")
        try:
            f = h5py.File(self.path, "r")
        except OSError as err:
            raise ShardError(f"{self.path}: cannot open shard (truncated or corrupt HDF5): {err}") from None
        version = f.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            f.close()
            raise ShardError(f"{self.path}: schema_version {version}, this reader expects {SCHEMA_VERSION}")
        missing = [n for names in _RAGGED.values() for n in names if n not in f] + [
            n for n in _PER_SAMPLE if n not in f
        ]
        if missing:
            f.close()
            raise ShardError(f"{self.path}: missing datasets {missing}")
        self._file, self._pid = f, os.getpid()
        return f

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Sample:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"{self.path}: sample {index} out of range [0, {self.num_samples})")
        index %= self.num_samples
        f = self._open()
        try:
            rows = {}
            for prefix, names in _RAGGED.items():
                a, b = self._offsets[prefix][index : index + 2]
                for name in names:
                    rows[name] = f[name][a:b]
            return Sample(
                camera_pose=f["camera_pose"][index],
                scene_id=int(f["scene_id"][index]),
                **rows,
            )
        except (OSError, KeyError) as err:
            raise ShardError(f"{self.path}: cannot read sample {index} (corrupt data): {err}") from None

    def grasp_counts(self) -> np.ndarray:
        """(S,) number of grasps of each sample, without decoding the samples."""
        return np.diff(self._offsets["grasp"])

    def scene_ids(self) -> np.ndarray:
        """(S,) scene id of each sample, without decoding the samples."""
        return np.asarray(self._open()["scene_id"][()], dtype=np.int64)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self):  # picklable for DataLoader workers: the handle is re-opened there
        state = self.__dict__.copy()
        state["_file"], state["_pid"] = None, None
        return state


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


VERIFIED_NAME = "manifest.verified.json"  # {file: {size, mtime_ns, sha256}} of shards hashed and matched
_VERIFIED: dict[tuple[str, int, int], str] = {}  # in-process: (resolved path, size, mtime_ns) -> sha256


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), int(st.st_size), int(st.st_mtime_ns)


def read_manifest(root: str | Path) -> dict:
    """The ``manifest.json`` of a dataset directory; ShardError naming the file when missing or corrupt."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise ShardError(f"{root}: no {MANIFEST_NAME} (run the data generator or write_manifest)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ShardError(f"{path}: corrupt manifest: {err}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise ShardError(f"{path}: corrupt manifest: expected a 'shards' list")
    for entry in manifest["shards"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "sha256" not in entry:
            raise ShardError(
                f"{path}: corrupt manifest: expected shard entries with 'file' and 'sha256', got {entry!r}"
            )
    return manifest


def verify_shards(root: str | Path, entries: list[dict], *, cache: bool = True) -> None:
    """Check each shard of ``entries`` (manifest ``shards``) against its recorded sha256.

    With ``cache``, a shard already matched at the same size and mtime is not hashed again: in this
    process (memory) and across processes (``root/manifest.verified.json``, rewritten atomically;
    skipped where ``root`` is read-only). Raises ShardError naming the first missing or changed shard.
    """
    from sceneleap_core.atomic import write_text_atomic

    root = Path(root)
    cache_path = root / VERIFIED_NAME
    on_disk: dict = {}
    if cache and cache_path.is_file():
        try:
            on_disk = json.loads(cache_path.read_text())
            on_disk = on_disk if isinstance(on_disk, dict) else {}
        except (OSError, ValueError):
            on_disk = {}  # an unreadable cache is an empty one
    changed = False
    for entry in entries:
        path = root / entry["file"]
        if not path.is_file():
            raise ShardError(f"{path}: shard listed in {MANIFEST_NAME} does not exist")
        key = _stat_key(path)
        want = entry["sha256"]
        known = on_disk.get(entry["file"], {})
        if cache and (
            _VERIFIED.get(key) == want
            or (known.get("size"), known.get("mtime_ns"), known.get("sha256")) == (key[1], key[2], want)
        ):
            _VERIFIED[key] = want
            continue
        if file_sha256(path) != want:
            raise ShardError(
                f"{path}: checksum does not match {root / MANIFEST_NAME} (corrupt or changed shard); "
                "regenerate it (sceneleap data generate resumes) or restore it"
            )
        _VERIFIED[key] = want
        on_disk[entry["file"]] = {"size": key[1], "mtime_ns": key[2], "sha256": want}
        changed = True
    if cache and changed:
        try:
            write_text_atomic(cache_path, json.dumps(on_disk, indent=1))
        except OSError as err:  # read-only dataset: the in-memory cache still serves this process
            log.debug("cannot write %s: %s", cache_path, err)


def _shard_entry(root: Path, path: Path) -> dict:
    reader = ShardReader(path)
    try:
        return {
            "file": str(path.relative_to(root)),
            "num_samples": len(reader),
            "num_grasps": int(reader.grasp_counts().sum()),
            "sha256": file_sha256(path),
        }
    finally:
        reader.close()


def write_manifest(
    root: str | Path,
    *,
    metadata: dict | None = None,
    pattern: str = "**/*.h5",
    written: list[str | Path] | None = None,
) -> Path:
    """Scan ``root`` for finished shards and write ``manifest.json`` with per-shard sample/grasp
    counts and sha256 checksums.

    Safe with concurrent writers (``--shard i/n`` processes): the read-merge-write runs under an
    exclusive lock (``manifest.json.lock``) and goes through a per-process temp file, so n processes
    end with one manifest listing every shard.

    Args:
        root: dataset directory.
        metadata: stored under ``metadata``.
        pattern: glob of the shards, relative to ``root``.
        written: None = hash every shard found (the caller vouches for all of them). A list = the
            shards this caller just wrote: only those, and shards the manifest does not list yet,
            are hashed; a listed shard keeps its recorded checksum, so a shard corrupted since it
            was recorded still fails verification instead of being re-hashed into the manifest.
    """
    from sceneleap_core.atomic import file_lock, write_text_atomic

    root = Path(root)
    out = root / MANIFEST_NAME
    fresh = None if written is None else {Path(p).resolve() for p in written}
    with file_lock(out.with_name(out.name + ".lock")):
        recorded: dict[str, dict] = {}
        if fresh is not None and out.is_file():
            try:
                recorded = {e["file"]: e for e in read_manifest(root)["shards"]}
            except ShardError as err:
                log.warning("%s: re-hashing every shard", err)
        shards = []
        for path in sorted(root.glob(pattern)):
            rel = str(path.relative_to(root))
            if fresh is not None and path.resolve() not in fresh and rel in recorded:
                shards.append(recorded[rel])
            else:
                shards.append(_shard_entry(root, path))
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "num_samples": sum(s["num_samples"] for s in shards),
            "num_grasps": sum(s["num_grasps"] for s in shards),
            "shards": shards,
            "metadata": metadata or {},
        }
        write_text_atomic(out, json.dumps(manifest, indent=1))
    return out


class ShardDataset:
    """All samples of the shards listed in a dataset's manifest (or of a list of shard paths),
    addressed by one global index.

    Args:
        root_or_paths: a dataset directory (its ``manifest.json``) or a list of shard files.
        verify: check each shard's sha256 against the manifest on open: True = hash every shard,
            "cached" = only shards not yet matched at their current size and mtime
            (:func:`verify_shards`), False = no check.
    """

    def __init__(self, root_or_paths: str | Path | list[str | Path], *, verify: bool | str = False):
        if verify not in (False, True, "cached"):
            raise ValueError(f"verify: expected False, True or 'cached', got {verify!r}")
        if isinstance(root_or_paths, (list, tuple)):
            paths = [Path(p) for p in root_or_paths]
        else:
            root = Path(root_or_paths)
            entries = read_manifest(root)["shards"]
            if verify:
                verify_shards(root, entries, cache=verify == "cached")
            paths = [root / entry["file"] for entry in entries]
        if not paths:
            raise ShardError(f"{root_or_paths}: dataset has no shards")
        self.readers = [ShardReader(p) for p in paths]
        self.cumulative = np.cumsum([0] + [len(r) for r in self.readers])

    def __len__(self) -> int:
        return int(self.cumulative[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Global index -> (shard number, index within the shard)."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range [0, {len(self)})")
        shard = int(np.searchsorted(self.cumulative, index, side="right") - 1)
        return shard, index - int(self.cumulative[shard])

    def grasp_counts(self) -> np.ndarray:
        """(S,) grasps per sample over all shards, in global index order."""
        return np.concatenate([r.grasp_counts() for r in self.readers])

    def scene_ids(self) -> np.ndarray:
        """(S,) scene id per sample over all shards, in global index order."""
        return np.concatenate([r.scene_ids() for r in self.readers])

    def __getitem__(self, index: int) -> Sample:
        shard, local = self.locate(index)
        return self.readers[shard][local]
