"""Anchors: the observed scene point each grasp is conditioned on and expressed relative to.

A scene-level generator that places every grasp in absolute coordinates must solve two problems at
once: *which* object (a far-apart, many-moded choice over the table) and *how* (a precise pose on
it). With anchors (as DexGraspNet 2.0 conditions each grasp on a seed point) the first is taken
out of the diffusion model: each grasp token gets one observed point on the object it grasps, and
its palm translation is predicted relative to that point (a few centimetres instead of tens).

* training: :func:`training_anchors` picks, for each ground-truth grasp, a visible point of the
  grasped object near the grasp's centre (:func:`grasp_centres`: mean of the fingertips and the palm
  origin), at random among the closest few so the model tolerates imprecise anchors;
* inference: :func:`select_anchors` draws anchors on the observed objects: points that stand above
  the support plane (the dominant height along ``up``); a generator with an anchor score draws a
  larger pool and keeps the best-scored (:func:`pick_scored`);
* the score's labels: :func:`anchor_labels` marks a candidate point positive when it lies within a
  radius of a point where some ground-truth grasp of its object would be anchored.

Shapes: N points, K grasps, J joints; batched functions take B clouds.
"""

from __future__ import annotations

import numpy as np
import torch

ANCHOR_MODES = ("none", "seed")


def grasp_centres(hand, palm_pose: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
    """Palm poses (K, 4, 4) and joints (K, J) -> (K, 3) grasp centres: the mean of the fingertip
    tips and the palm origin (inside the grasped object for precision and power grasps alike)."""
    state = hand(joints.to(hand.dtype), palm_pose.to(hand.dtype), validate=False)
    tips = hand.tip_positions(state)  # (K, F, 3)
    pts = torch.cat([tips, palm_pose[:, None, :3, 3].to(tips)], dim=1)  # (K, F + 1, 3)
    return pts.mean(dim=1)


def training_anchors(
    points: np.ndarray,
    point_object: np.ndarray,
    centres: np.ndarray,
    grasp_object: np.ndarray,
    rng: np.random.Generator,
    *,
    candidates: int = 4,
) -> np.ndarray:
    """One anchor per grasp: a random one of the ``candidates`` visible points of the grasped object
    closest to the grasp centre (any point when the object has none in view).

    Args:
        points: (N, 3) cloud.  point_object: (N,) object id per point (-1 = background).
        centres: (K, 3) grasp centres in the cloud's frame.  grasp_object: (K,) object id per grasp.

    Returns:
        (K, 3) anchors, each one of ``points``.
    """
    if len(points) == 0:
        raise ValueError("points: expected a non-empty cloud to anchor grasps on, got 0 points")
    out = np.empty((len(centres), 3), dtype=points.dtype)
    for obj in np.unique(grasp_object):
        rows = np.flatnonzero(grasp_object == obj)
        pool = np.flatnonzero(point_object == obj)
        if len(pool) == 0:
            pool = np.arange(len(points))
        d = np.linalg.norm(points[pool][None] - centres[rows][:, None], axis=-1)  # (k, P)
        c = min(candidates, len(pool))
        nearest = np.argpartition(d, c - 1, axis=1)[:, :c] if c < len(pool) else np.tile(np.arange(c), (len(rows), 1))
        pick = nearest[np.arange(len(rows)), rng.integers(0, c, size=len(rows))]
        out[rows] = points[pool[pick]]
    return out


def anchor_labels(
    points: np.ndarray,
    point_object: np.ndarray,
    candidates: np.ndarray,
    centres: np.ndarray,
    grasp_object: np.ndarray,
    *,
    radius: float = 0.02,
) -> np.ndarray:
    """(C,) float labels of candidate points (indices ``candidates`` into ``points``): 1 when within
    ``radius`` of the nearest visible point of some grasp's object to that grasp's centre (where
    :func:`training_anchors` would anchor it) and on the same object, else 0.

    Args:
        points: (N, 3).  point_object: (N,).  candidates: (C,) int.  centres: (G, 3) grasp centres
        of every grasp of the view.  grasp_object: (G,).
    """
    labels = np.zeros(len(candidates), dtype=np.float32)
    cand_obj = point_object[candidates]
    for obj in np.unique(grasp_object):
        pool = np.flatnonzero(point_object == obj)
        mine = np.flatnonzero(cand_obj == obj)
        if len(pool) == 0 or len(mine) == 0:
            continue
        c = centres[grasp_object == obj]  # (g, 3)
        spots = points[pool[np.linalg.norm(points[pool][None] - c[:, None], axis=-1).argmin(axis=1)]]  # (g, 3)
        d = np.linalg.norm(points[candidates[mine]][:, None] - spots[None], axis=-1).min(axis=1)
        labels[mine] = (d <= radius).astype(np.float32)
    return labels


def pick_scored(
    pool: torch.Tensor, logits: torch.Tensor, num: int, *, temperature: float = 0.5, generator=None,
    return_index: bool = False, uniforms: torch.Tensor | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep ``num`` of a pool of anchors (B, P, 3) by their scores (B, P): Gumbel top-k on
    ``logits / temperature`` (without replacement; high scores first, still diverse and seeded).
    ``uniforms`` (B, P) in [0, 1): the Gumbel draws' uniforms (else drawn from ``generator``).
    Returns the kept anchors (B, num, 3), and their pool indices (B, num) with ``return_index``."""
    if pool.shape[1] < num:
        raise ValueError(f"pool: expected at least num={num} candidates, got {pool.shape[1]}")
    if uniforms is None:
        uniforms = torch.rand(logits.shape, generator=generator, device=logits.device)
    elif uniforms.shape != logits.shape:
        raise ValueError(f"uniforms: expected shape {tuple(logits.shape)}, got {tuple(uniforms.shape)}")
    u = uniforms.float().clamp(1e-9, 1 - 1e-9)
    keys = logits.float() / temperature - torch.log(-torch.log(u))
    idx = keys.topk(num, dim=1).indices  # (B, num)
    kept = torch.gather(pool, 1, idx[..., None].expand(-1, -1, 3))
    return (kept, idx) if return_index else kept


def _quantile_sorted(ordered: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q`` quantile (B, 1) of rows already sorted (B, N), linear interpolation (torch.quantile's)."""
    pos = q * (ordered.shape[1] - 1)
    i = int(np.floor(pos))
    j = min(i + 1, ordered.shape[1] - 1)
    return ordered[:, i : i + 1] + (pos - i) * (ordered[:, j : j + 1] - ordered[:, i : i + 1])


def support_height(heights: torch.Tensor, bin_size: float = 0.005, max_bins: int = 512) -> torch.Tensor:
    """Heights (B, N) along up -> (B,) the support plane's height: the most populated ``bin_size``
    bin among the lower half of the points (the table dominates a tabletop view).

    The bins span the 2 % quantile to just above the median, at most ``max_bins`` of them (2.56 m
    at 5 mm: a fixed shape, so no host sync, and a CUDA graph can hold it; a wider lower half
    searches its lowest ``max_bins - 1`` bins only)."""
    # one sort for both quantiles (2 x faster than two quantile calls), interpolated as torch.quantile
    # does, with indices from the shape alone (a quantile tensor would be a host copy: no CUDA graph)
    ordered = heights.sort(dim=1).values
    low, mid = (_quantile_sorted(ordered, q) for q in (0.02, 0.5))  # (B, 1) each
    idx = ((heights - low) / bin_size).floor().clamp_min(0).long()  # (B, N)
    last = (((mid - low) / bin_size).ceil().long() + 1).clamp_max(max_bins - 1)  # (B, 1): above the median
    idx = torch.minimum(idx, last)
    counts = torch.zeros(heights.shape[0], max_bins, device=heights.device).scatter_add_(1, idx, torch.ones_like(heights))
    counts = counts * (torch.arange(max_bins, device=heights.device) < last)  # the bin above the median: 0
    best = counts.argmax(dim=1).to(heights.dtype)  # (B,)
    return low[:, 0] + (best + 0.5) * bin_size


def select_anchors(
    points: torch.Tensor,
    up: torch.Tensor,
    num: int,
    *,
    min_height: float = 0.01,
    generator: torch.Generator | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Anchors for inference: ``num`` points per cloud drawn uniformly (with replacement) among
    the points more than ``min_height`` above the support plane (all points when a cloud has none
    above it).

    Args:
        points: (B, N, 3) clouds.  up: (B, 3) or (3,) world up in the clouds' frame.
        generator: the draws' generator; uniforms: the draws themselves, (B, num) in [0, 1) (then
            ``generator`` is unused). Given uniforms the call is a pure function of tensors: no host
            sync, no random state, so a CUDA graph can hold it.

    Returns:
        (B, num, 3) anchors, each one of the cloud's points.
    """
    if points.dim() != 3 or points.shape[-1] != 3 or points.shape[1] == 0:
        raise ValueError(f"points: expected a non-empty (B, N, 3) batch, got {tuple(points.shape)}")
    if num < 1:
        raise ValueError(f"num: expected >= 1 anchors, got {num}")
    if uniforms is None:
        uniforms = torch.rand((points.shape[0], num), generator=generator, device=points.device)
    elif uniforms.shape != (points.shape[0], num):
        raise ValueError(f"uniforms: expected shape {(points.shape[0], num)}, got {tuple(uniforms.shape)}")
    up = torch.as_tensor(up, dtype=points.dtype, device=points.device).expand(points.shape[0], 3)
    up = up / up.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    heights = (points * up[:, None]).sum(-1)  # (B, N)
    above = heights > (support_height(heights) + min_height)[:, None]  # (B, N)
    above = above | ~above.any(dim=1, keepdim=True)
    # inverse CDF of the 0/1 weights: the first point whose running count exceeds u x count
    running = above.to(torch.float32).cumsum(dim=1)  # (B, N), exact integers
    count = running[:, -1:]  # (B, 1), >= 1
    # below count - 1/2: a product u x count that rounds up to count still lands on the last point above
    target = torch.minimum(uniforms.to(torch.float32) * count, count - 0.5)  # (B, num)
    idx = torch.searchsorted(running, target, right=True)  # (B, num)
    return torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
