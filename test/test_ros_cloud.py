"""PointCloud2 <-> numpy over rosbags messages (real ROS 2 definitions, CDR round trips)."""

from __future__ import annotations

import numpy as np
import pytest

from sceneleap_ros.cloud import FLOAT32, FLOAT64, UINT16, CloudError, cloud_to_numpy, numpy_to_cloud
from sceneleap_ros.messages import RosbagsFactory, ros_typestore

DISTROS = ("humble", "jazzy")
CLOUD = "sensor_msgs/msg/PointCloud2"


@pytest.fixture(scope="module", params=DISTROS)
def store(request):
    ts = ros_typestore(request.param)
    return ts, RosbagsFactory(ts)


def _round_trip(ts, msg):
    return ts.deserialize_cdr(ts.serialize_cdr(msg, CLOUD), CLOUD)


def _points(n=60, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_rgb", [False, True])
@pytest.mark.parametrize("shape", [None, (6, 10)])
@pytest.mark.parametrize("padding", [(0, 0), (4, 12)])
def test_layouts_round_trip_through_cdr(store, dtype, with_rgb, shape, padding):
    ts, factory = store
    pts = _points()
    rgb = np.random.default_rng(1).integers(0, 256, (len(pts), 3)).astype(np.uint8) if with_rgb else None
    msg = numpy_to_cloud(factory, pts, frame_id="cam", stamp=(7, 11), rgb=rgb, dtype=dtype, shape=shape,
                         point_padding=padding[0], row_padding=padding[1])  # fmt: skip
    out = cloud_to_numpy(_round_trip(ts, msg))
    tol = 1e-7 if dtype == np.float32 else 0.0
    np.testing.assert_allclose(out.points, pts.astype(dtype), atol=tol)
    assert out.frame_id == "cam" and out.stamp == (7, 11) and out.shape == (shape or (1, len(pts)))
    if with_rgb:
        np.testing.assert_array_equal(out.rgb, rgb)
    else:
        assert out.rgb is None


def test_not_dense_clouds_drop_nan_points(store):
    ts, factory = store
    pts = _points(48)
    pts[::3] = np.nan
    pts[1, 2] = np.inf
    msg = numpy_to_cloud(factory, pts, frame_id="cam", shape=(6, 8))
    assert msg.is_dense is False
    out = cloud_to_numpy(_round_trip(ts, msg))
    keep = np.isfinite(pts).all(axis=1)
    assert out.num_invalid == (~keep).sum() and len(out.points) == keep.sum()
    np.testing.assert_allclose(out.points, pts[keep].astype(np.float32), atol=1e-7)


def test_driver_layout_with_reordered_fields_and_extra_channels(store):
    """A hand-made driver layout: z, y, x out of order, float64, a uint16 ring and a float32
    intensity between them, padding at the end of each point."""
    ts, factory = store
    pts = _points(20)
    dt = np.dtype({"names": ["z", "ring", "y", "intensity", "x"], "formats": ["<f8", "<u2", "<f8", "<f4", "<f8"],
                   "offsets": [0, 8, 16, 24, 32], "itemsize": 48})  # fmt: skip
    rec = np.zeros(len(pts), dt)
    rec["x"], rec["y"], rec["z"], rec["ring"], rec["intensity"] = pts[:, 0], pts[:, 1], pts[:, 2], 3, 0.5
    fields = [factory.new("sensor_msgs/msg/PointField", name=n, offset=o, datatype=t, count=1)
              for n, o, t in [("z", 0, FLOAT64), ("ring", 8, UINT16), ("y", 16, FLOAT64), ("intensity", 24, FLOAT32),
                              ("x", 32, FLOAT64)]]  # fmt: skip
    msg = factory.new(CLOUD, height=1, width=len(pts), fields=fields, point_step=48, row_step=48 * len(pts),
                      data=rec.view(np.uint8).copy(), is_dense=True)  # fmt: skip
    np.testing.assert_array_equal(cloud_to_numpy(_round_trip(ts, msg)).points, pts)


def _good(factory, n=40, shape=None):
    return numpy_to_cloud(factory, _points(n), frame_id="cam", shape=shape)


def _no_z(factory):
    msg = _good(factory)
    msg.fields = [f for f in msg.fields if f.name != "z"]
    return msg


def _set(**changes):
    def make(factory):
        msg = _good(factory)
        for key, value in changes.items():
            setattr(msg, key, value)
        return msg

    return make


def _truncated(factory):
    msg = _good(factory)
    msg.data = msg.data[:-5]
    return msg


def _int_xyz(factory):
    msg = _good(factory)
    for f in msg.fields:
        f.datatype = UINT16
    return msg


def _field_past_point(factory):
    msg = _good(factory)
    msg.fields[2].offset = 10  # a float32 z at bytes 10..14 in a 12-byte point
    return msg


def _all_nan(factory):
    return numpy_to_cloud(factory, np.full((30, 3), np.nan), frame_id="cam")


def _organized_nan_vga(factory):
    pts = np.full((480 * 640, 3), np.nan)
    return numpy_to_cloud(factory, pts, frame_id="cam", shape=(480, 640))


MALFORMED = {
    "no_xyz": (_no_z, "no_xyz", "no z field"),
    "point_step": (_set(point_step=8), "layout", "beyond point_step"),
    "row_step": (_set(row_step=100), "layout", "row_step 100 <"),
    "data_length": (_truncated, "layout", "expected height 1 x row_step"),
    "big_endian": (_set(is_bigendian=True), "big_endian", "little-endian"),
    "empty": (_set(width=0, row_step=0, data=np.zeros(0, np.uint8)), "empty", "empty cloud"),
    "all_nan": (_all_nan, "all_nan", "all 30 points"),
    "organized_nan_640x480": (_organized_nan_vga, "all_nan", r"480 x 640"),
    "too_large": (_set(height=10_000, width=10_000), "too_large", "at most"),
    "int_xyz": (_int_xyz, "bad_field", "float32 or float64"),
    "field_past_point": (_field_past_point, "layout", "field 'z' ends at byte 14"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_clouds_raise_with_a_reason(store, case):
    ts, factory = store
    make, kind, match = MALFORMED[case]
    msg = make(factory)
    if case != "data_length":  # a truncated payload cannot be CDR-encoded consistently anyway: test it as is
        msg = _round_trip(ts, msg)
    with pytest.raises(CloudError, match=match) as info:
        cloud_to_numpy(msg)
    assert info.value.kind == kind


def test_numpy_to_cloud_checks_its_input(store):
    _, factory = store
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        numpy_to_cloud(factory, np.zeros((4, 2)), frame_id="cam")
    with pytest.raises(ValueError, match="height x width"):
        numpy_to_cloud(factory, np.zeros((4, 3)), frame_id="cam", shape=(3, 3))
