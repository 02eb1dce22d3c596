"""Analytic signed distance to oriented boxes."""

from __future__ import annotations

import torch


def box_signed_distance(points_local: torch.Tensor, half_extents: torch.Tensor) -> torch.Tensor:
    """Exact signed distance from points to axis-aligned boxes centred at the origin.

    Recipe (notation: p the point in the box frame, h the half extents):
    1. ``q = |p| - h``, the per-axis excess;
    2. outside distance ``||max(q, 0)||`` (zero inside);
    3. inside distance ``min(max_i q_i, 0)`` (zero outside, negative depth inside);
    4. sum of the two: positive outside, negative inside, exact everywhere.

    The norm in step 2 is written so its gradient is finite where the point is inside.

    Args:
        points_local: (..., 3) points in each box's frame.
        half_extents: (..., 3) half sizes, broadcastable against ``points_local``.

    Returns:
        (...) signed distances.
    """
    q = points_local.abs() - half_extents  # (..., 3)
    outside_sq = q.clamp_min(0.0).square().sum(-1)
    is_outside = outside_sq > 0
    outside = torch.where(is_outside, outside_sq.clamp_min(1e-30).sqrt(), torch.zeros_like(outside_sq))
    inside = q.max(dim=-1).values.clamp_max(0.0)
    return outside + inside
