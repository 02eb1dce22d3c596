"""Point-cloud operators in plain torch: farthest point sampling, kNN, nearest distance, chamfer.

These replace pytorch3d / compiled CUDA ops so that everything runs on CPU, exports to ONNX and
needs no build step. Shapes: B batch, N points, M queries or samples, K neighbours.
"""

from __future__ import annotations

import torch


def check_points(name: str, points: torch.Tensor) -> None:
    """Raise ValueError unless ``points`` has shape (B, N, 3)."""
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (B, N, 3), got {tuple(points.shape)}")


def farthest_point_sample(
    points: torch.Tensor, num_samples: int, *, start_index: torch.Tensor | int | None = 0
) -> torch.Tensor:
    """Indices of ``num_samples`` farthest-point samples per batch item.

    Recipe (notation: d the squared distance of every point to its nearest chosen sample,
    c the current sample per cloud):
    1. ``d[b, n] = inf``; ``c[b] = start_index``;
    2. for i in 0..M-1: record ``c``; gather its point ``p_c`` (B, 3) with a flat index;
       ``d = min(d, |p - p_c|^2)``; ``c = argmax_n d``.
    The loop runs over the M samples only; every step is vectorized over (B, N), shape-static and
    free of host synchronization, so the whole loop can be captured in a CUDA graph
    (``sceneleap_core.models.pointops.CudaGraphFPS``) or compiled.

    Args:
        points: (B, N, 3).
        num_samples: M, 1 <= M <= N.
        start_index: first sample: an int for all items, a (B,) tensor, or None for index 0.

    Returns:
        (B, M) int64 indices into N.
    """
    check_points("points", points)
    b, n, _ = points.shape
    if not 1 <= num_samples <= n:
        raise ValueError(f"num_samples: expected 1 <= num_samples <= {n} (points per cloud), got {num_samples}")
    device = points.device
    if isinstance(start_index, torch.Tensor):
        current = start_index.to(device=device, dtype=torch.long)
    else:
        current = torch.full((b,), int(start_index or 0), dtype=torch.long, device=device)
    flat = points.reshape(b * n, 3)  # (B*N, 3)
    offset = torch.arange(b, device=device) * n  # (B,)
    idx = torch.empty(num_samples, b, dtype=torch.long, device=device)
    min_sq = torch.full((b, n), float("inf"), dtype=points.dtype, device=device)
    for i in range(num_samples):
        idx[i] = current
        chosen = flat.index_select(0, current + offset)  # (B, 3)
        torch.minimum(min_sq, (points - chosen[:, None, :]).square().sum(-1), out=min_sq)
        current = min_sq.argmax(dim=-1)
    return idx.t().contiguous()  # (B, M)


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather rows of (B, N, C) values by (B, M) or (B, M, K) indices -> (B, M, C) or (B, M, K, C)."""
    if values.dim() != 3:
        raise ValueError(f"values: expected shape (B, N, C), got {tuple(values.shape)}")
    b = values.shape[0]
    flat = index.reshape(b, -1)  # (B, M*K)
    out = torch.gather(values, 1, flat[..., None].expand(-1, -1, values.shape[-1]))
    return out.reshape(*index.shape, values.shape[-1])


def knn(queries: torch.Tensor, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours by brute force.

    Args:
        queries: (B, M, 3).
        points: (B, N, 3).
        k: neighbours per query, 1 <= k <= N.

    Returns:
        distances (B, M, K) (Euclidean, ascending) and indices (B, M, K) into N.
    """
    check_points("queries", queries)
    check_points("points", points)
    if not 1 <= k <= points.shape[1]:
        raise ValueError(f"k: expected 1 <= k <= {points.shape[1]}, got {k}")
    sq = torch.cdist(queries, points).square()  # (B, M, N)
    dist_sq, idx = sq.topk(k, dim=-1, largest=False)
    return dist_sq.clamp_min(0).sqrt(), idx


def nearest_distance(queries: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Distance (B, M) from each query (B, M, 3) to its nearest point in (B, N, 3)."""
    check_points("queries", queries)
    check_points("points", points)
    diff = queries[:, :, None, :] - points[:, None, :, :]  # (B, M, N, 3)
    return diff.square().sum(-1).min(dim=-1).values.clamp_min(1e-12).sqrt()


def chamfer_distance(a: torch.Tensor, b: torch.Tensor, *, squared: bool = True) -> torch.Tensor:
    """Symmetric chamfer distance (B,) between point sets (B, N, 3) and (B, M, 3).

    ``mean_a min_b d(a, b) + mean_b min_a d(a, b)``, with squared distances by default (the
    pytorch3d convention) or Euclidean ones with ``squared=False``.
    """
    check_points("a", a)
    check_points("b", b)
    sq = (a[:, :, None, :] - b[:, None, :, :]).square().sum(-1)  # (B, N, M)
    d_ab, d_ba = sq.min(dim=2).values, sq.min(dim=1).values
    if not squared:
        d_ab, d_ba = d_ab.clamp_min(1e-12).sqrt(), d_ba.clamp_min(1e-12).sqrt()
    return d_ab.mean(-1) + d_ba.mean(-1)
