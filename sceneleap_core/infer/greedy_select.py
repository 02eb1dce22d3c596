"""The greedy rounds of the diverse top-k (:func:`sceneleap_core.infer.postprocess.diverse_select`):
k times, keep the best-ranked free candidate and retire every candidate near it.

The rounds depend on each other, so in torch each is a few kernels of its own (an argmax, a row of
the near matrix, two masks): 32 rounds are ~150 launches, ~0.7 ms of a plan's CUDA graph on an H200
spent mostly between kernels. On CUDA with Triton installed all rounds run in one program of one
kernel, the candidates in registers (C <= 4,096). The torch loop serves everywhere else and is the
reference the kernel is tested against; ``TRITON_INTERPRET=1`` runs the kernel on the CPU (tests).

Shapes: C candidates, k rounds.
"""

from __future__ import annotations

import torch

from sceneleap_core.geometry.box_depth import fused_available

try:  # optional: the fused kernel on CUDA
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None

MAX_FUSED_CANDIDATES = 4096  # one program holds every candidate in registers

if triton is not None:

    @triton.jit
    def _greedy_kernel(rank_ptr, free_ptr, near_ptr, picks_ptr, alive_ptr, c, k, BLOCK: tl.constexpr):
        # one program: the candidates as one block; each round a min over ranks and a row of `near`
        offs = tl.arange(0, BLOCK)
        inside = offs < c
        rank = tl.load(rank_ptr + offs, mask=inside, other=c)
        free = (tl.load(free_ptr + offs, mask=inside, other=0) != 0) & inside
        chosen = offs < 0
        for i in range(0, k):
            key = tl.where(free, rank, c)  # ranks are 0 .. c-1: c marks a candidate not free
            best = tl.argmin(key, axis=0)
            ok = tl.min(key, axis=0) < c  # False once every candidate is kept or near a kept one
            chosen = chosen | ((offs == best) & ok)
            near = tl.load(near_ptr + best * c + offs, mask=inside, other=0) != 0
            free = free & ~(near & ok) & ~chosen
            tl.store(picks_ptr + i, best.to(tl.int64))
            tl.store(alive_ptr + i, ok.to(tl.int8))


def greedy_rounds_reference(rank: torch.Tensor, free: torch.Tensor, near: torch.Tensor, k: int):
    """The rounds in torch (the kernel's reference); arguments and result as :func:`greedy_rounds`."""
    c = len(rank)
    free = free.clone()
    chosen = torch.zeros(c, dtype=torch.bool, device=rank.device)
    slots = torch.arange(c, device=rank.device)
    picks, alive = [], []
    for _ in range(k):
        # (1,) indices throughout: a 0-dim tensor index would be read on the host (a sync)
        best = torch.where(free, rank, torch.full_like(rank, c)).argmin(0, keepdim=True)
        ok = free[best]
        picks.append(best)
        alive.append(ok)
        chosen = chosen | (slots == best) & ok
        free = free & ~(near[best][0] & ok) & ~chosen
    return torch.cat(picks), torch.cat(alive)


def greedy_rounds(rank: torch.Tensor, free: torch.Tensor, near: torch.Tensor, k: int,
                  fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``k`` greedy rounds over C candidates, without a host sync: each keeps the free candidate of
    lowest ``rank`` and retires it and every candidate ``near`` it.

    Args:
        rank: (C,) int64, a permutation of 0 .. C-1 (0 = best).
        free: (C,) bool, the candidates that may be kept.
        near: (C, C) bool, ``near[i, j]``: keeping i retires j.
        k: rounds, 1 <= k <= C.
        fused: the Triton kernel (True), the torch loop (False), or whichever runs here (None: the
            kernel on CUDA with Triton, or under ``TRITON_INTERPRET=1``, for C <= 4,096).

    Returns:
        picks (k,) int64 and alive (k,) bool: round i kept ``picks[i]`` when ``alive[i]``; once a
        round finds nothing free every later one is dead too (the alive ones form a prefix).
    """
    c = len(rank)
    if rank.shape != (c,) or free.shape != (c,) or near.shape != (c, c) or not 1 <= k <= c:
        raise ValueError(f"greedy_rounds: expected rank (C,), free (C,), near (C, C), 1 <= k <= C; got "
                         f"{tuple(rank.shape)}, {tuple(free.shape)}, {tuple(near.shape)}, k={k}")  # fmt: skip
    if fused is None:
        fused = fused_available(rank) and c <= MAX_FUSED_CANDIDATES
    elif fused and triton is None:
        raise ValueError("fused=True: the greedy kernel needs Triton, which is not installed")
    if not fused:
        return greedy_rounds_reference(rank, free, near, k)
    picks = torch.empty(k, dtype=torch.int64, device=rank.device)
    alive = torch.empty(k, dtype=torch.int8, device=rank.device)
    _greedy_kernel[(1,)](rank.to(torch.int32).contiguous(), free.to(torch.int8).contiguous(),
                         near.to(torch.int8).contiguous(), picks, alive, c, k,
                         BLOCK=max(16, triton.next_power_of_2(c)), num_warps=4)  # fmt: skip
    return picks, alive.bool()
