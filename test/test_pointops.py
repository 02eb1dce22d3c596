import numpy as np
import pytest
import torch

from sceneleap_core.geometry.box_sdf import box_signed_distance
from sceneleap_core.geometry.pointops import (
    chamfer_distance,
    farthest_point_sample,
    gather_points,
    knn,
    nearest_distance,
)


def _fps_reference(points: np.ndarray, m: int) -> list[int]:
    chosen, dist = [0], np.full(len(points), np.inf)
    for _ in range(m - 1):
        dist = np.minimum(dist, ((points - points[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(dist.argmax()))
    return chosen


def test_fps_matches_reference_per_batch_item():
    pts = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    idx = farthest_point_sample(pts, 32)
    for b in range(3):
        assert idx[b].tolist() == _fps_reference(pts[b].numpy(), 32)
    assert len(set(idx[0].tolist())) == 32


def test_fps_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_samples"):
        farthest_point_sample(torch.rand(1, 10, 3), 11)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        farthest_point_sample(torch.rand(10, 3), 4)


def test_knn_and_nearest_match_brute_force():
    g = torch.Generator().manual_seed(2)
    q, p = torch.rand(2, 50, 3, generator=g), torch.rand(2, 80, 3, generator=g)
    dist, idx = knn(q, p, 4)
    full = torch.cdist(q, p)
    ref_d, ref_i = full.sort(dim=-1)
    assert torch.allclose(dist, ref_d[..., :4], atol=1e-5)
    assert torch.equal(idx, ref_i[..., :4])
    assert torch.allclose(nearest_distance(q, p), ref_d[..., 0], atol=1e-5)
    assert torch.equal(gather_points(p, idx)[0, 0, 0], p[0, idx[0, 0, 0]])


def test_chamfer_zero_on_identity_and_symmetric():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 40, 3, generator=g), torch.rand(2, 60, 3, generator=g)
    assert torch.allclose(chamfer_distance(a, a), torch.zeros(2))
    assert torch.allclose(chamfer_distance(a, b), chamfer_distance(b, a))
    assert (chamfer_distance(a, b + 1.0) > chamfer_distance(a, b)).all()


def test_box_sdf_equals_brute_force():
    """Against a dense sampling of the box surface (distance to surface, sign by containment)."""
    half = torch.tensor([0.03, 0.01, 0.02], dtype=torch.float64)
    g = torch.Generator().manual_seed(4)
    pts = (torch.rand(400, 3, generator=g, dtype=torch.float64) - 0.5) * 0.12
    # surface grid, spacing ~0.25 mm
    lin = [torch.linspace(-h, h, int(2 * h / 2.5e-4) + 1, dtype=torch.float64) for h in half.tolist()]
    faces = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        u, v = torch.meshgrid(lin[others[0]], lin[others[1]], indexing="ij")
        for sign in (-1.0, 1.0):
            f = torch.empty(u.numel(), 3, dtype=torch.float64)
            f[:, others[0]], f[:, others[1]], f[:, axis] = u.ravel(), v.ravel(), sign * half[axis]
            faces.append(f)
    surface = torch.cat(faces)
    unsigned = torch.cdist(pts, surface).min(dim=1).values
    inside = (pts.abs() < half).all(dim=1)
    brute = torch.where(inside, -unsigned, unsigned)
    sdf = box_signed_distance(pts, half)
    assert torch.allclose(sdf, brute, atol=2.5e-4)
    assert ((sdf < 0) == inside).all()


def test_box_sdf_gradient_is_finite_inside_and_outside():
    half = torch.tensor([0.02, 0.02, 0.02], dtype=torch.float64)
    pts = torch.tensor(
        [[0.0, 0.0, 0.001], [0.05, 0.0, 0.0], [0.03, 0.03, 0.03]], dtype=torch.float64, requires_grad=True
    )
    box_signed_distance(pts, half).sum().backward()
    assert torch.isfinite(pts.grad).all()
    # the gradient of a distance field has unit norm away from the medial axis
    assert torch.allclose(pts.grad.norm(dim=-1), torch.ones(3, dtype=torch.float64))
