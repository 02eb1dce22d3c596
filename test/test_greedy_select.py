"""The greedy rounds of the diverse top-k: the torch loop's contract (always), and the one-program
Triton kernel against it (on CUDA, or in Triton's interpreter on the CPU: ``TRITON_INTERPRET=1``
with Triton installed)."""

import os

import pytest
import torch

from sceneleap_core.infer import greedy_select as gs

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNEL = gs.triton is not None and (DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1")
needs_kernel = pytest.mark.skipif(not KERNEL, reason="needs Triton and CUDA, or Triton with TRITON_INTERPRET=1")


def _case(c: int, seed: int, density: float):
    """A random rank permutation, free mask and symmetric near matrix (each candidate near itself)."""
    g = torch.Generator().manual_seed(seed)
    rank = torch.randperm(c, generator=g)
    free = torch.rand(c, generator=g) < 0.7
    near = torch.rand(c, c, generator=g) < density
    near = near | near.T | torch.eye(c, dtype=torch.bool)
    return rank, free, near


def test_greedy_rounds_keep_the_best_free_and_retire_their_neighbours():
    for seed in range(20):
        c = 5 + seed * 3
        rank, free, near = _case(c, seed, density=0.08)
        k = min(c, 3 + seed)
        picks, alive = gs.greedy_rounds(rank, free, near, k, fused=False)
        assert picks.shape == (k,) and alive.shape == (k,) and alive.dtype == torch.bool
        n = int(alive.sum())
        assert alive[:n].all() and not alive[n:].any(), "the alive rounds form a prefix"
        # by hand: walk the candidates best first, keep a free one not near any kept
        kept = []
        for i in torch.argsort(rank).tolist():
            if len(kept) < k and free[i] and not any(near[j, i] for j in kept):
                kept.append(i)
        assert picks[:n].tolist() == kept
    with pytest.raises(ValueError, match="greedy_rounds"):
        gs.greedy_rounds(rank, free, near[:-1], 2)
    with pytest.raises(ValueError, match="1 <= k"):
        gs.greedy_rounds(rank, free, near, 0)


@needs_kernel
def test_the_kernel_makes_the_loops_picks():
    for seed, (c, density) in enumerate([(1, 0.0), (7, 0.3), (33, 0.05), (256, 0.02), (300, 0.2), (1000, 0.003)]):
        rank, free, near = (x.to(DEVICE) for x in _case(c, seed, density))
        k = min(c, 32)
        picks, alive = gs.greedy_rounds(rank, free, near, k, fused=True)
        ref_picks, ref_alive = gs.greedy_rounds(rank, free, near, k, fused=False)
        assert torch.equal(alive, ref_alive), f"C={c}"
        n = int(alive.sum())
        assert torch.equal(picks[:n], ref_picks[:n]), f"C={c}"  # dead rounds' picks are unspecified
    rank, free, near = (x.to(DEVICE) for x in _case(20, 9, 0.1))
    none = gs.greedy_rounds(rank, torch.zeros_like(free), near, 5, fused=True)[1]
    assert not none.any(), "nothing free: every round is dead"
