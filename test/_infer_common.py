"""Shared helpers of the inference tests: a tabletop cloud and small random planners."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "sample"


def tabletop(n_table=600, n_box=200, seed=0):
    """A 40 cm table at z = -0.5 (camera at the origin, up = +z) with a 6 cm cube standing on it:
    points (N, 3), is_box (N,)."""
    rng = np.random.default_rng(seed)
    table = np.c_[rng.uniform(-0.2, 0.2, (n_table, 2)), np.full(n_table, -0.5)]
    box = rng.uniform(-0.03, 0.03, (n_box, 3)) + np.array([0.05, 0.0, -0.47])
    pts = np.concatenate([table, box]) + rng.normal(0, 0.001, (n_table + n_box, 3))
    return pts, np.r_[np.zeros(n_table, bool), np.ones(n_box, bool)]


_CACHE = {}


def hand():
    """One hand model per test process (its templates take a second or two to build)."""
    if "hand" not in _CACHE:
        from sceneleap_core.hand import HandModel

        _CACHE["hand"] = HandModel.load()
    return _CACHE["hand"]


def normalizer():
    """Anchor-relative statistics: translations within 8 cm of the anchor, joints within their limits
    (``fit_normalizer`` on the sample data takes ~15 s on the shared CPU)."""
    from sceneleap_core.hand import GraspNormalizer

    h = hand()
    return GraspNormalizer.from_hand_limits(h.joint_lower, h.joint_upper, translation_range=0.08)


def randomize(model, scale=0.1, seed=0):
    """Perturb every weight (adaLN-Zero starts the denoiser at a zero output: parity on zeros proves nothing)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return model


def tiny_planner(num_points=256, seed=0, **kw):
    import torch

    from sceneleap_core.infer.planner import GraspPlanner
    from sceneleap_core.models import build_generator

    torch.manual_seed(seed)
    model = build_generator("tiny", anchor="seed").eval()
    return GraspPlanner(model, normalizer(), hand(), num_points=num_points, frame="gravity", **kw)


def save_tiny(directory, num_points=256, seed=0):
    import torch

    from sceneleap_core.models import build_generator

    torch.manual_seed(seed)
    model = randomize(build_generator("tiny", anchor="seed").eval(), seed=seed)
    model.save_pretrained(directory, normalizer=normalizer(),
                          extra_config={"data": {"num_points": num_points, "frame": "gravity"}})  # fmt: skip
    return directory
