import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from sceneleap_core.geometry.rotations import (
    axis_angle_to_matrix,
    geodesic_angle,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    matrix_to_rot6d,
    nearest_rotation,
    quaternion_to_matrix,
    random_rotation,
    rot6d_to_matrix,
    transform_points,
)


def _rots(n=512, seed=0):
    return random_rotation(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_quaternion_matches_scipy_xyzw():
    rot = _rots()
    quat = matrix_to_quaternion(rot)
    ref = Rotation.from_matrix(rot.numpy()).as_quat()  # scipy is (x, y, z, w)
    ref = np.where(ref[:, 3:4] < 0, -ref, ref)
    np.testing.assert_allclose(quat.numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(quaternion_to_matrix(quat).numpy(), rot.numpy(), atol=1e-12)


def test_quaternion_round_trip_near_half_turns():
    # rotations by ~pi are where naive trace-based conversion fails
    axes = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)
    rot = axis_angle_to_matrix(axes, torch.full((64,), np.pi - 1e-9, dtype=torch.float64))
    back = quaternion_to_matrix(matrix_to_quaternion(rot))
    assert torch.allclose(back, rot, atol=1e-9)
    assert (matrix_to_quaternion(rot)[:, 3] >= 0).all()


def test_rot6d_round_trip_and_gram_schmidt():
    rot = _rots()
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(rot)), rot, atol=1e-12)
    # a perturbed 6D vector still maps to a proper rotation
    noisy = rot6d_to_matrix(matrix_to_rot6d(rot) + 0.1 * torch.randn(512, 6, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64).expand(512, 3, 3)
    assert torch.allclose(noisy.transpose(-1, -2) @ noisy, eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(noisy), torch.ones(512, dtype=torch.float64), atol=1e-10)


def test_axis_angle_matches_scipy():
    axes = torch.nn.functional.normalize(torch.randn(100, 3, dtype=torch.float64), dim=-1)
    angles = torch.rand(100, dtype=torch.float64) * 6 - 3
    ref = Rotation.from_rotvec((axes * angles[:, None]).numpy()).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(axes, angles).numpy(), ref, atol=1e-12)


def test_transform_helpers_invert_and_apply():
    rot = _rots(16)
    tf = make_transform(rot, torch.randn(16, 3, dtype=torch.float64))
    pts = torch.randn(16, 10, 3, dtype=torch.float64)
    back = transform_points(invert_transform(tf), transform_points(tf, pts))
    assert torch.allclose(back, pts, atol=1e-12)
    assert torch.allclose(geodesic_angle(rot, rot), torch.zeros(16, dtype=torch.float64), atol=1e-3)


def test_nearest_rotation_matches_the_svd_polar_factor():
    gen = torch.Generator().manual_seed(3)
    rot = _rots(256, seed=3)
    scale = torch.rand(256, 1, 1, generator=gen, dtype=torch.float64) * 4 + 0.2
    # a scaled rotation comes back as the rotation itself
    torch.testing.assert_close(nearest_rotation(scale * rot), rot, atol=1e-12, rtol=0)
    # general matrices with det > 0 (shear, scale): the SVD's U V^T, the nearest in Frobenius norm
    m = torch.randn(256, 3, 3, generator=gen, dtype=torch.float64)
    m = torch.where(torch.linalg.det(m)[:, None, None] < 0, -m, m)
    u, _, vt = torch.linalg.svd(m)
    torch.testing.assert_close(nearest_rotation(m), u @ vt, atol=1e-9, rtol=0)
    # reflections and singular matrices still give proper rotations, finite
    for bad in (-rot[:8], torch.zeros(2, 3, 3, dtype=torch.float64), torch.ones(2, 3, 3, dtype=torch.float64)):
        out = nearest_rotation(bad)
        assert torch.isfinite(out).all()
        eye = torch.eye(3, dtype=torch.float64).expand_as(out)
        torch.testing.assert_close(out.transpose(-1, -2) @ out, eye, atol=1e-9, rtol=0)
        torch.testing.assert_close(torch.linalg.det(out), torch.ones(len(out), dtype=torch.float64), atol=1e-9, rtol=0)


@pytest.mark.parametrize(
    "fn,arg",
    [
        (matrix_to_quaternion, torch.zeros(3, 4)),
        (quaternion_to_matrix, torch.zeros(2, 3)),
        (rot6d_to_matrix, torch.zeros(5)),
    ],
)
def test_wrong_shapes_raise(fn, arg):
    with pytest.raises(ValueError, match="expected shape"):
        fn(arg)
