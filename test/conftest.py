"""Shared fixtures: one hand model per session (templates are built once)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids spin contention on the shared 2-core machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def hand():
    from sceneleap_core.hand import HandModel

    return HandModel.load()


@pytest.fixture(scope="session")
def hand64(hand):
    from sceneleap_core.hand import HandModel

    return HandModel.load(dtype=torch.float64)


def random_joints(hand, n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """(n, J) joint vectors uniform within the limits."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = hand.joint_lower.to(dtype), hand.joint_upper.to(dtype)
    return lo + (hi - lo) * torch.rand(n, hand.dof, generator=g, dtype=dtype)


def random_poses(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """(n, 4, 4) random rigid transforms, translations within 0.3 m."""
    from sceneleap_core.geometry.rotations import make_transform, random_rotation

    g = torch.Generator().manual_seed(seed)
    rot = random_rotation(n, generator=g, dtype=dtype)
    return make_transform(rot, 0.3 * (torch.rand(n, 3, generator=g, dtype=dtype) - 0.5))
