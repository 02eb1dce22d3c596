"""Shared by the test_ros_* files: a randomly initialised tiny anchored model saved the real way
(save_pretrained + from_pretrained; statistics from the hand's limits as in test_learning, since
fitting them on the sample costs ~13 s on this machine), and a small tabletop cloud."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_tiny_model(directory: Path, num_points: int = 256) -> Path:
    from sceneleap_core.hand import GraspNormalizer
    from sceneleap_core.hand.description import HandDescription
    from sceneleap_core.models import build_generator

    desc = HandDescription.load()
    norm = GraspNormalizer.from_hand_limits(desc.lower_limits, desc.upper_limits, translation_range=0.15)
    model = build_generator("tiny", anchor="seed").eval()
    model.save_pretrained(directory, normalizer=norm,
                          extra_config={"data": {"num_points": num_points, "frame": "gravity"}})  # fmt: skip
    return directory


def tabletop(n_table: int = 600, n_box: int = 200, seed: int = 0) -> np.ndarray:
    """(N, 3) a table plane z = 0 with a 6 cm box on it (z up)."""
    rng = np.random.default_rng(seed)
    table = np.c_[rng.uniform(-0.3, 0.3, (n_table, 2)), np.zeros(n_table)]
    box = rng.uniform(-0.03, 0.03, (n_box, 3)) + np.array([0.0, 0.0, 0.03])
    return np.concatenate([table, box])
