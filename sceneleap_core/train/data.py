"""Training data: shard samples -> fixed-size, centred, augmented (cloud, grasp set) pairs.

Notation: N points per cloud, K grasps per sample (``num_grasps``), J hand DoF, D = 3 + J + 6.

Pipeline of one sample (:meth:`GraspSceneDataset.make_item`), all in float64 then cast:

1. decode the shard sample (per-worker LRU cache of decoded samples);
2. choose K grasps: without replacement when G >= K, else all G plus repeats; ``grasp_mask``
   marks the first occurrence of each distinct grasp;
3. cut ``dropout`` holes (balls around random points), then subsample N points (with
   replacement when fewer);
4. network frame (:func:`sceneleap_core.geometry.frames.network_frame`, shared with inference):
   translate by the cloud centre c, rotate into the canonical frame (``camera`` or ``gravity``),
   optionally augment by a yaw about the world up axis (u = R_wc^T e_z, from ``camera_pose``) and
   a scale s: ``x_net = s R (x_cam - c)``; grasp poses get the same rigid part and a scaled translation;
   ``frame`` (4, 4) stores the inverse, camera <- network (its scale is 1/s), so predictions map back;
5. jitter the points (not the grasps: sensor noise);
6. grasp vectors ``[t | q | r6d]`` (K, D), unnormalized; the LightningModule normalizes them with
   the :class:`GraspNormalizer` fitted here on augmented training samples (:func:`fit_normalizer`);
7. anchors (K, 3): per grasp one input point on the grasped object near the grasp centre
   (:mod:`sceneleap_core.geometry.anchors`), used by generators with ``anchor="seed"``.

Randomness is a pure function of ``(seed, position)``, the sample's position in the endless
training stream, so batches do not depend on the number of workers and a resumed run sees
exactly the batches an uninterrupted run would (:class:`StreamSampler`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sceneleap_core.data.shards import Sample, ShardDataset
from sceneleap_core.geometry.anchors import anchor_labels, grasp_centres, training_anchors
from sceneleap_core.geometry.frames import network_frame
from sceneleap_core.hand import GraspNormalizer, HandModel, anchor_relative, pose_to_vector
from sceneleap_core.train.config import AugmentConfig, DataConfig

log = logging.getLogger(__name__)

WORLD_UP = np.array([0.0, 0.0, 1.0])


def gravity_up_in_camera(camera_pose: np.ndarray) -> np.ndarray:
    """World up (+z) expressed in the camera frame: ``R_wc^T e_z`` (3,), camera_pose = world <- camera."""
    return np.asarray(camera_pose, dtype=np.float64)[:3, :3].T @ WORLD_UP


def choose_grasps(num_available: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """K grasp indices out of G and a (K,) mask of first occurrences (False marks repeats)."""
    if num_available >= k:
        return rng.choice(num_available, size=k, replace=False), np.ones(k, dtype=bool)
    extra = rng.integers(0, num_available, size=k - num_available)
    index = np.concatenate([rng.permutation(num_available), extra])
    mask = np.zeros(k, dtype=bool)
    mask[:num_available] = True
    return index, mask


def cut_holes(points: np.ndarray, holes: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Keep-mask (N,) removing balls of ``radius`` around ``holes`` random points; never empties the cloud."""
    keep = np.ones(len(points), dtype=bool)
    for centre in points[rng.integers(0, len(points), size=holes)]:
        keep &= ((points - centre) ** 2).sum(-1) > radius**2
    if keep.sum() < max(16, len(points) // 4):  # a hole may not eat most of a small cloud
        return np.ones(len(points), dtype=bool)
    return keep


# --------------------------------------------------------------------------------------- dataset
class GraspSceneDataset(Dataset):
    """Map-style dataset of fixed-size training items from HDF5 shards.

    Indexed by ``(sample_index, position)`` pairs (what :class:`StreamSampler` yields) or by a plain
    int (position = index, for validation). Each item is a dict:

    ========================  ==================  ==============================================
    key                        shape, dtype        meaning
    ========================  ==================  ==============================================
    ``points``                 (N, 3) float32      cloud in the network frame (centred, augmented)
    ``grasps``                 (K, D) float32      grasp vectors [t | q | r6d], network frame
    ``grasp_mask``             (K,) bool           False for repeats (scene had fewer than K)
    ``frame``                  (4, 4) float32      camera <- network transform (similarity)
    ``up``                     (3,) float32        world up in the network frame
    ``anchors``                (K, 3) float32      per grasp, an input point on its object
    ``candidates``             (K, 3) float32      input points to train the anchor score on
    ``candidate_labels``       (K,) float32        1 where a ground-truth grasp would be anchored
    ``scene_id``, ``index``    () int64
    ========================  ==================  ==============================================

    Args:
        source: a :class:`ShardDataset` (or anything indexable returning :class:`Sample`).
        indices: global sample indices to use (defaults to all with at least one grasp).
        num_points: N.
        num_grasps: K.
        center: "mean", "bbox" or "none".
        frame: the canonical network frame, "camera" or "gravity" (:mod:`sceneleap_core.geometry.frames`).
        augment: augmentation settings, or None for none (validation).
        seed: base seed of the per-item random generators.
        cache_size: decoded samples kept in this process's LRU cache.
        hand: hand description (grasp centres for the anchors).
    """

    def __init__(
        self,
        source: ShardDataset,
        indices: np.ndarray | list[int] | None = None,
        *,
        num_points: int = 4096,
        num_grasps: int = 64,
        center: str = "mean",
        frame: str = "camera",
        augment: AugmentConfig | None = None,
        seed: int = 0,
        cache_size: int = 256,
        hand: str = "leap_hand_right",
    ):
        self.source = source
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) == 0:
            raise ValueError("dataset: expected at least one sample with grasps, got none")
        self.num_points, self.num_grasps, self.center, self.frame = int(num_points), int(num_grasps), center, frame
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[int, Sample] = OrderedDict()
        self.hand_name, self._hand = hand, None
        self.cache_hits = self.cache_misses = 0

    def __len__(self) -> int:
        return len(self.indices)

    def decode(self, sample_index: int) -> Sample:
        """The shard sample at global index ``sample_index`` through the per-process LRU cache."""
        cached = self._cache.get(sample_index)
        if cached is not None:
            self._cache.move_to_end(sample_index)
            self.cache_hits += 1
            return cached
        self.cache_misses += 1
        sample = self.source[int(sample_index)]
        if self.cache_size > 0:
            self._cache[sample_index] = sample
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return sample

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple):
            local, position = int(key[0]), int(key[1])
        else:
            local, position = int(key), int(key)
        sample_index = int(self.indices[local])
        rng = np.random.default_rng([self.seed, position, sample_index])
        return self.make_item(self.decode(sample_index), rng, sample_index)

    def make_item(self, s: Sample, rng: np.random.Generator, index: int = 0) -> dict[str, torch.Tensor]:
        """Steps 2-6 of the module recipe for one decoded sample (see the module docstring)."""
        aug = self.augment
        g = len(s.grasp_pose)
        if g == 0:
            raise ValueError(f"sample {index} (scene {s.scene_id}): expected at least one grasp, got 0")
        # 2. K grasps
        gi, mask = choose_grasps(g, self.num_grasps, rng)
        pose = np.asarray(s.grasp_pose, dtype=np.float64)  # (G, 4, 4): all, for the anchor labels
        joints_all = np.asarray(s.grasp_joints, dtype=np.float64)  # (G, J)
        grasp_obj = np.asarray(s.grasp_object)  # (G,)
        # 3. holes, then N points
        pts = np.asarray(s.points, dtype=np.float64)
        pobj = np.asarray(s.point_object)
        if aug is not None and aug.dropout_holes > 0 and aug.dropout_radius > 0 and rng.random() < aug.dropout_prob:
            keep = cut_holes(pts, int(rng.integers(1, aug.dropout_holes + 1)), aug.dropout_radius, rng)
            pts, pobj = pts[keep], pobj[keep]
        pi = rng.choice(len(pts), size=self.num_points, replace=len(pts) < self.num_points)
        pts, pobj = pts[pi], pobj[pi]  # (N, 3), (N,)
        # 4. network frame (camera or gravity-aligned, centred), plus augmentation: x_net = s R (x_cam - c)
        up = gravity_up_in_camera(s.camera_pose)
        yaw, scale = 0.0, 1.0
        if aug is not None:
            if aug.rotate_gravity and aug.max_angle > 0:
                yaw = rng.uniform(-aug.max_angle, aug.max_angle)
            if aug.scale_max > aug.scale_min or aug.scale_min != 1.0:
                scale = rng.uniform(aug.scale_min, aug.scale_max)
        pts, frame, rot = network_frame(pts, frame=self.frame, center=self.center, up=up, yaw=yaw, scale=scale)
        c = frame[:3, 3]
        all_pose = pose.copy()
        all_pose[:, :3, :3] = rot @ pose[:, :3, :3]
        all_pose[:, :3, 3] = scale * (pose[:, :3, 3] - c) @ rot.T
        new_pose, joints = all_pose[gi], joints_all[gi]  # (K, 4, 4), (K, J)
        # 5. jitter points only
        if aug is not None and aug.jitter_sigma > 0:
            noise = rng.normal(0.0, aug.jitter_sigma, size=pts.shape)
            pts = pts + np.clip(noise, -aug.jitter_clip, aug.jitter_clip)
        # 6. grasp vectors
        new_pose_t, joints_t = torch.from_numpy(new_pose), torch.from_numpy(joints)
        vec = pose_to_vector(new_pose_t, joints_t)  # (K, D)
        # 7. anchors: a visible point of the grasped object near each grasp's centre; K candidate
        #    points (half on objects, half anywhere) labelled for the anchor score
        centres_all = grasp_centres(self.hand, torch.from_numpy(all_pose).float(), torch.from_numpy(joints_all).float())
        centres_all = centres_all.double().numpy()  # (G, 3)
        anchors = training_anchors(pts, pobj, centres_all[gi], grasp_obj[gi], rng)
        on_objects = np.flatnonzero(pobj >= 0)
        half = self.num_grasps // 2 if len(on_objects) else 0
        cand = np.concatenate([
            on_objects[rng.integers(0, max(1, len(on_objects)), size=half)] if half else np.zeros(0, np.int64),
            rng.integers(0, len(pts), size=self.num_grasps - half),
        ])  # fmt: skip
        labels = anchor_labels(pts, pobj, cand, centres_all, grasp_obj)
        return {
            "points": torch.from_numpy(pts).float(),
            "grasps": vec.float(),
            "grasp_mask": torch.from_numpy(mask),
            "frame": torch.from_numpy(frame).float(),
            "up": torch.from_numpy(rot @ up).float(),
            "anchors": torch.from_numpy(anchors).float(),
            "candidates": torch.from_numpy(pts[cand]).float(),
            "candidate_labels": torch.from_numpy(labels),
            "scene_id": torch.tensor(int(s.scene_id), dtype=torch.int64),
            "index": torch.tensor(int(index), dtype=torch.int64),
        }

    @property
    def hand(self) -> HandModel:
        """The hand model (loaded on first use in each process)."""
        if self._hand is None:
            self._hand = HandModel.load(self.hand_name, surface_points=1)  # kinematics only: skip the dense template
        return self._hand

    def __getstate__(self):  # workers start with an empty cache (and hand model) of their own
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_hand"] = None
        return state


def map_to_camera(frame: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Network-frame points (B, M, 3) -> camera frame with ``frame`` (B, 4, 4)."""
    return points @ frame[:, :3, :3].transpose(1, 2) + frame[:, None, :3, 3]


# --------------------------------------------------------------------------------------- sampler
class StreamSampler(Sampler):
    """Endless, epoch-shuffled stream of ``(local_index, position)`` pairs, resumable at any position.

    Position p (global over all ranks) maps to the sample ``perm(seed, p // L)[p % L]`` (L = dataset
    length). Rank r of W takes positions ``r, r + W, r + 2W, ...`` starting at ``start * W``; the
    stream stops after ``length`` items (one epoch = the whole run).

    Resuming: ``consumed`` items of the stream were already trained on. They still count in
    ``len`` (so the loader's length stays that of the whole run, and the trainer's restored batch
    index, s * a after optimizer step s with accumulation a, lines up with it), but are not yielded:
    iteration continues at item ``start + consumed``. A run resumed at step s with batch b passes
    ``consumed = s * a * b``.
    """

    def __init__(
        self, size: int, *, seed: int, start: int = 0, length: int, rank: int = 0, world: int = 1, consumed: int = 0
    ):
        if size < 1:
            raise ValueError(f"sampler: expected a non-empty dataset, got size {size}")
        if not 0 <= consumed <= length:
            raise ValueError(f"sampler: expected 0 <= consumed <= length ({length}), got {consumed}")
        self.size, self.seed, self.start, self.length = int(size), int(seed), int(start), int(length)
        self.rank, self.world, self.consumed = int(rank), int(world), int(consumed)
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return self.length

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, 7919, epoch]).permutation(self.size)
            self._perm_epoch = epoch
        return self._perm

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in range(self.start + self.consumed, self.start + self.length):
            p = i * self.world + self.rank
            yield int(self._permutation(p // self.size)[p % self.size]), p


# ------------------------------------------------------------------------------------ normalizer
def fit_normalizer(
    dataset: GraspSceneDataset, num_samples: int, *, seed: int = 0, anchored: bool = False
) -> GraspNormalizer:
    """Fit the grasp normalization on ``num_samples`` (augmented) items of the training set.

    The statistics cover what the network sees: centred, rotated (and scaled) grasp vectors, with
    translations relative to the anchors when ``anchored`` (generators with ``anchor="seed"``).
    """
    rng = np.random.default_rng([seed, 104729])
    picks = rng.choice(len(dataset), size=num_samples, replace=num_samples > len(dataset))
    vectors = []
    for j, local in enumerate(picks):
        item = dataset[(int(local), (1 << 48) + j)]  # positions far beyond any training stream
        vec = anchor_relative(item["grasps"], item["anchors"]) if anchored else item["grasps"]
        vectors.append(vec[item["grasp_mask"]])
    return GraspNormalizer.fit(torch.cat(vectors).double())


# ------------------------------------------------------------------------------------ datamodule
def split_by_scene(source: ShardDataset, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation global indices of samples with grasps, split by ``scene_id``."""
    scene_of, grasps = source.scene_ids(), source.grasp_counts()
    usable = np.nonzero(grasps > 0)[0]
    if len(usable) == 0:
        raise ValueError("data.root: expected samples with at least one grasp, got none")
    unique = np.unique(scene_of[usable])
    n_val = round(val_fraction * len(unique))
    if val_fraction > 0 and len(unique) > 1:
        n_val = max(1, min(n_val, len(unique) - 1))
    val_scenes = np.random.default_rng([seed, 31337]).permutation(unique)[:n_val]
    is_val = np.isin(scene_of[usable], val_scenes)
    return usable[~is_val], usable[is_val]


def usable_indices(source: ShardDataset) -> np.ndarray:
    """Global indices of the samples that carry at least one grasp."""
    return np.nonzero(source.grasp_counts() > 0)[0]


class GraspDataModule(L.LightningDataModule):
    """Loaders over the shards described by a :class:`DataConfig`.

    The training loader is one stream (:class:`StreamSampler`) as long as the whole run, one epoch;
    a run restarted from a checkpoint at step s skips the stream's first s steps, so it continues at
    exactly the next batch and ends at the last. Worker processes
    open their own HDF5 handles (fork-safe readers) and keep their own LRU caches.

    Args:
        cfg: data settings.
        seed: base seed (data order and augmentation).
        max_steps: optimizer steps of the whole run.
        accumulate: micro-batches per optimizer step.
    """

    def __init__(self, cfg: DataConfig, *, seed: int = 0, max_steps: int = 1000, accumulate: int = 1):
        super().__init__()
        self.cfg, self.seed, self.max_steps, self.accumulate = cfg, int(seed), int(max_steps), int(accumulate)
        self.train_set: GraspSceneDataset | None = None
        self.val_set: GraspSceneDataset | None = None
        self.start_step_override: int | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        cfg = self.cfg
        if getattr(cfg, "source", "shards") == "compose":  # fresh scenes per index; validation from shards
            from sceneleap_core.train.composed import ComposedSource

            source = ComposedSource(cfg.library, "train", seed=self.seed)
            train_idx = np.arange(len(source))
            val_source = _open_dataset(cfg.val_root or cfg.root, "data.val_root")
            val_idx = usable_indices(val_source)
        elif cfg.val_root:
            source = _open_dataset(cfg.root, "data.root")
            train_idx = usable_indices(source)
            val_source = _open_dataset(cfg.val_root, "data.val_root")
            val_idx = usable_indices(val_source)
        else:
            source = _open_dataset(cfg.root, "data.root")
            train_idx, val_idx = split_by_scene(source, cfg.val_fraction, self.seed)
            val_source = source
        for data, key in ((source, "data.root"), (val_source, "data.val_root" if cfg.val_root else "data.root")):
            if isinstance(data, ShardDataset):
                _check_hand(data, cfg.hand, key)
        if len(train_idx) == 0:
            raise ValueError(f"data.root: expected training samples with grasps in {cfg.root}, got none")
        if cfg.train_samples:
            train_idx = train_idx[: cfg.train_samples]
        common = {"num_points": cfg.num_points, "num_grasps": cfg.num_grasps, "center": cfg.center, "frame": cfg.frame,
                  "hand": cfg.hand}  # fmt: skip
        self.train_set = GraspSceneDataset(
            source, train_idx, augment=cfg.augment, seed=self.seed, cache_size=cfg.cache_size, **common
        )
        if len(val_idx):
            if cfg.val_samples:
                val_idx = val_idx[: cfg.val_samples]
            self.val_set = GraspSceneDataset(
                val_source, val_idx, augment=None, seed=self.seed + 1, cache_size=cfg.cache_size, **common
            )
        log.info("data: %d training samples, %d validation samples", len(train_idx), len(val_idx))

    def fit_normalizer(self, *, anchored: bool = False) -> GraspNormalizer:
        self.setup("fit")
        return fit_normalizer(self.train_set, self.cfg.normalizer_samples, seed=self.seed, anchored=anchored)

    def _loader_kwargs(self) -> dict:
        cfg = self.cfg
        kwargs = {"batch_size": cfg.batch_size, "num_workers": cfg.num_workers}
        kwargs["pin_memory"] = bool(cfg.pin_memory and torch.cuda.is_available())
        if cfg.num_workers > 0:
            kwargs.update(prefetch_factor=cfg.prefetch_factor, persistent_workers=cfg.persistent_workers)
        return kwargs

    def _start_step(self) -> int:
        if self.start_step_override is not None:
            return self.start_step_override
        trainer = getattr(self, "trainer", None)
        return int(trainer.global_step) if trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        trainer = getattr(self, "trainer", None)
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        # the whole run's stream; a resumed run skips the items of its first `start_step` steps (Lightning
        # restores its batch index within this one epoch, so the loader keeps the whole run's length)
        per_step = self.cfg.batch_size * self.accumulate
        length = self.max_steps * per_step
        consumed = min(self._start_step() * per_step, length)
        sampler = StreamSampler(
            len(self.train_set), seed=self.seed, length=length, consumed=consumed, rank=rank, world=world
        )
        return DataLoader(self.train_set, sampler=sampler, drop_last=True, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader | list:
        self.setup("fit")
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, shuffle=False, drop_last=False, **self._loader_kwargs())


def _check_hand(source: ShardDataset, hand: str, key: str) -> None:
    """Every shard holds grasps of ``hand`` (``data.hand``) with its DoF, checked before training."""
    from sceneleap_core.hand import HandDescription

    try:
        desc = HandDescription.load(hand)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"data.hand: expected a bundled hand name or a description YAML, got {hand!r} ({err})"
        ) from None
    for reader in source.readers:
        if reader.hand != desc.name or reader.dof != desc.dof:
            raise ValueError(
                f"{key}: {reader.path} holds grasps of hand {reader.hand!r} with {reader.dof} DoF, "
                f"expected data.hand {desc.name!r} with {desc.dof} DoF"
            )


def _open_dataset(root: str, key: str) -> ShardDataset:
    """The shard dataset at ``root`` with every shard's sha256 checked against its manifest (once per
    size and mtime: :func:`sceneleap_core.data.shards.verify_shards`); errors name ``key``."""
    path = Path(root)
    if not path.is_dir():
        raise ValueError(f"{key}: expected a dataset directory with manifest.json, got {root!r} (not a directory)")
    try:
        return ShardDataset(path, verify="cached")
    except ValueError as err:  # ShardError is a ValueError
        raise ValueError(f"{key}: {err}") from None
