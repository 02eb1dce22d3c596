"""Training data composed on the fly: every index is a fresh scene drawn from the grasp library and
rendered by the depth camera, returned as a :class:`~sceneleap_core.data.shards.Sample`, so
:class:`~sceneleap_core.train.data.GraspSceneDataset` reads it exactly like a shard sample.

Deterministic: item ``i`` depends only on (library, split, seed, i) and the settings. Safe in
DataLoader workers: the library, hand and composer are built lazily in each process.
"""

from __future__ import annotations

import os

import numpy as np

from sceneleap_core.data.shards import Sample


class ComposedSource:
    """Indexable source of composed samples (``source[i] -> Sample``, ``len(source)``).

    Args:
        library: path of a ``library.npz`` (or its directory).
        split: object split to draw from.
        seed: base seed; item i uses ``np.random.default_rng([seed, i, attempt])``.
        length: nominal number of items (an epoch).
        device: where composing and rendering run ("cpu" in DataLoader workers).
        max_attempts: redraws (deterministic) when a scene keeps no grasp or no view.
        camera: :class:`~sceneleap_core.data.depth.DepthCamera` keyword arguments (default D435-like).
        workspace: :class:`~sceneleap_core.data.depth.Workspace` keyword arguments.
        composer_kwargs: :class:`~sceneleap_core.data.compose.SceneComposer` keyword arguments.
    """

    def __init__(
        self,
        library: str,
        split: str = "train",
        *,
        seed: int = 0,
        length: int = 100_000,
        device: str = "cpu",
        max_attempts: int = 8,
        camera: dict | None = None,
        workspace: dict | None = None,
        **composer_kwargs,
    ):
        if length < 1:
            raise ValueError(f"length: expected >= 1, got {length}")
        self.library, self.split, self.seed, self.length = str(library), split, int(seed), int(length)
        self.device, self.max_attempts, self.composer_kwargs = device, int(max_attempts), composer_kwargs
        self.camera, self.workspace = dict(camera or {}), dict(workspace or {})
        self._composer, self._pid = None, None

    def __len__(self) -> int:
        return self.length

    def composer(self):
        """This process's composer (built on first use, rebuilt after a fork)."""
        if self._composer is None or self._pid != os.getpid():
            import torch

            from sceneleap_core.data.compose import SceneComposer
            from sceneleap_core.data.library import GraspLibrary
            from sceneleap_core.hand import HandModel

            if torch.utils.data.get_worker_info() is not None:
                torch.set_num_threads(1)
            lib = GraspLibrary.load(self.library)
            self._composer = SceneComposer(lib, self.split, HandModel.load(), self.device, **self.composer_kwargs)
            self._pid = os.getpid()
        return self._composer

    def __getitem__(self, index: int) -> Sample:
        from sceneleap_core.data.compose import render_samples
        from sceneleap_core.data.depth import DepthCamera, Workspace, sample_robot_cameras

        if not -self.length <= index < self.length:
            raise IndexError(f"composed source: index {index} out of range [0, {self.length})")
        index %= self.length
        comp = self.composer()
        for attempt in range(self.max_attempts):
            rng = np.random.default_rng([self.seed, index, attempt])
            scene = comp.compose(index, rng)
            if len(scene.grasp_pose) == 0:
                continue
            samples, _ = render_samples(
                comp,
                scene,
                sample_robot_cameras(1, rng),
                camera=DepthCamera(**self.camera),
                workspace=Workspace(**self.workspace),
                seed=int(rng.integers(1 << 31)),
            )
            if samples:
                return samples[0]
        raise ValueError(f"composed source: item {index} kept no grasp in {self.max_attempts} attempts")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_composer"], state["_pid"] = None, None
        return state
