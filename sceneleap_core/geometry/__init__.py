"""Tensor geometry shared by the hand model, data engine and networks.

Everything here is pure torch, batched over leading dimensions, differentiable and exportable.
"""

from sceneleap_core.geometry.box_sdf import box_signed_distance
from sceneleap_core.geometry.pointops import (
    chamfer_distance,
    farthest_point_sample,
    gather_points,
    knn,
    nearest_distance,
)
from sceneleap_core.geometry.rotations import (
    axis_angle_to_matrix,
    make_transform,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_matrix,
    rot6d_to_matrix,
    transform_points,
)

__all__ = [
    "axis_angle_to_matrix",
    "box_signed_distance",
    "chamfer_distance",
    "farthest_point_sample",
    "gather_points",
    "knn",
    "make_transform",
    "matrix_to_quaternion",
    "matrix_to_rot6d",
    "nearest_distance",
    "quaternion_to_matrix",
    "rot6d_to_matrix",
    "transform_points",
]
