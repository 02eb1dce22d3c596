"""``sensor_msgs/PointCloud2`` <-> numpy, over the message fields only (rclpy or rosbags messages).

Reading accepts any little-endian layout with float32 or float64 ``x``/``y``/``z`` fields: extra
fields and padding inside a point (``point_step``), padding at the end of a row (``row_step``),
organized (H x W) or unorganized (1 x N) clouds, ``is_dense`` false (non-finite points are dropped
and counted), and a packed ``rgb``/``rgba`` field. Anything else raises :class:`CloudError`, whose
``kind`` names the problem (the node logs each kind once and keeps running).

Shapes: N points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sceneleap_ros.messages import MessageFactory, header

# sensor_msgs/PointField datatypes
INT8, UINT8, INT16, UINT16, INT32, UINT32, FLOAT32, FLOAT64 = range(1, 9)
_DTYPES = {INT8: "i1", UINT8: "u1", INT16: "i2", UINT16: "u2", INT32: "i4", UINT32: "u4", FLOAT32: "f4", FLOAT64: "f8"}

MAX_POINTS = 5_000_000  # a 4K depth image has 8.3 M pixels; beyond this a cloud is a bug, not a camera


class CloudError(ValueError):
    """A cloud that cannot be read; ``kind`` is one of ``empty``, ``no_xyz``, ``bad_field``,
    ``layout``, ``big_endian``, ``too_large``, ``all_nan``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class CloudArrays:
    """A decoded cloud.

    Attributes:
        points: (N, 3) float64 finite points, in ``frame_id``.
        rgb: (N, 3) uint8 colours of those points, or None without an rgb field.
        frame_id: the cloud's frame.
        stamp: (sec, nanosec) of the cloud's header.
        shape: (height, width) of the message (height 1: unorganized).
        num_invalid: points dropped for a non-finite coordinate.
    """

    points: np.ndarray
    rgb: np.ndarray | None
    frame_id: str
    stamp: tuple[int, int]
    shape: tuple[int, int]
    num_invalid: int = 0


def _fields(msg) -> dict[str, tuple[int, int, int]]:
    return {f.name: (int(f.offset), int(f.datatype), int(f.count)) for f in msg.fields}


def cloud_to_numpy(msg, *, max_points: int = MAX_POINTS) -> CloudArrays:
    """PointCloud2 -> finite points (N, 3) float64 (+ colours); raises :class:`CloudError`."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    stamp = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
    # 1. header-level checks (cheap, before touching the data)
    if height * width == 0:
        raise CloudError("empty", f"empty cloud: height {height} x width {width}")
    if height * width > max_points:
        raise CloudError("too_large", f"cloud of {height} x {width} points, expected at most {max_points}")
    if bool(msg.is_bigendian):
        raise CloudError("big_endian", "is_bigendian is true: only little-endian clouds are supported")
    fields = _fields(msg)
    missing = [name for name in "xyz" if name not in fields]
    if missing:
        raise CloudError("no_xyz", f"cloud has no {'/'.join(missing)} field (fields: {sorted(fields)})")
    xyz_type = {fields[name][1] for name in "xyz"}
    if len(xyz_type) != 1 or next(iter(xyz_type)) not in (FLOAT32, FLOAT64):
        raise CloudError(
            "bad_field", f"x/y/z must share a float32 or float64 datatype, got datatypes {sorted(xyz_type)}"
        )
    # 2. layout: every field inside a point, every point inside a row, the data exactly height rows
    for name, (offset, datatype, count) in fields.items():
        if datatype not in _DTYPES:
            raise CloudError("bad_field", f"field {name!r}: unknown datatype {datatype}")
        end = offset + np.dtype(_DTYPES[datatype]).itemsize * max(count, 1)
        if end > point_step:
            raise CloudError("layout", f"field {name!r} ends at byte {end}, beyond point_step {point_step}")
    if row_step < width * point_step:
        raise CloudError("layout", f"row_step {row_step} < width {width} x point_step {point_step}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != height * row_step:
        raise CloudError("layout", f"data has {data.size} bytes, expected height {height} x row_step {row_step}")
    # 3. decode through a structured dtype (strided view, one copy for xyz)
    rows = data.reshape(height, row_step)[:, : width * point_step].reshape(-1)
    names = ["x", "y", "z"]
    formats = [np.dtype("<" + _DTYPES[fields[n][1]]) for n in names]
    offsets = [fields[n][0] for n in names]
    colour = next((n for n in ("rgb", "rgba") if n in fields), None)
    if colour is not None:
        names.append(colour)
        formats.append(np.dtype("<u4"))
        offsets.append(fields[colour][0])
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    rec = rows.view(dtype)  # (H * W,)
    xyz = np.stack([rec["x"], rec["y"], rec["z"]], axis=-1).astype(np.float64)  # (H * W, 3)
    ok = np.isfinite(xyz).all(axis=1)
    if not ok.any():
        raise CloudError("all_nan", f"all {xyz.shape[0]} points ({height} x {width}) have NaN or inf coordinates")
    rgb = None
    if colour is not None:
        packed = rec[colour][ok]
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)
    return CloudArrays(xyz[ok], rgb, str(msg.header.frame_id), stamp, (height, width), int((~ok).sum()))


def numpy_to_cloud(factory: MessageFactory, points: np.ndarray, *, frame_id: str, stamp: tuple[int, int] = (0, 0),
                   rgb: np.ndarray | None = None, dtype=np.float32, shape: tuple[int, int] | None = None,
                   point_padding: int = 0, row_padding: int = 0, is_dense: bool | None = None):  # fmt: skip
    """Points (N, 3) (+ colours (N, 3) uint8) -> PointCloud2.

    Args:
        dtype: float32 or float64 coordinates.
        shape: (height, width) of an organized cloud (height * width = N); (1, N) when None.
        point_padding: extra bytes at the end of each point (as drivers leave for alignment).
        row_padding: extra bytes at the end of each row.
        is_dense: defaults to whether every point is finite.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points: expected shape (N, 3), got {pts.shape}")
    height, width = shape if shape is not None else (1, len(pts))
    if height * width != len(pts):
        raise ValueError(f"shape: expected height x width = {len(pts)} points, got {height} x {width}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
    size, datatype = dtype.itemsize, FLOAT32 if dtype == np.float32 else FLOAT64
    specs = [("x", 0, datatype), ("y", size, datatype), ("z", 2 * size, datatype)]
    step = 3 * size
    if rgb is not None:
        specs.append(("rgb", step, FLOAT32))  # PCL's packed float rgb: the uint32 0x00RRGGBB bits
        step += 4
    step += int(point_padding)
    names, formats, offsets = zip(*[(n, dtype if n != "rgb" else np.dtype("<u4"), o) for n, o, _ in specs], strict=True)
    rec = np.zeros(len(pts), dtype=np.dtype({"names": list(names), "formats": list(formats), "offsets": list(offsets),
                                             "itemsize": step}))  # fmt: skip
    for i, name in enumerate("xyz"):
        rec[name] = pts[:, i]
    if rgb is not None:
        c = np.asarray(rgb, dtype=np.uint32)
        rec["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    row_step = width * step + int(row_padding)
    data = np.zeros((height, row_step), dtype=np.uint8)
    data[:, : width * step] = rec.view(np.uint8).reshape(height, width * step)
    fields = [factory.new("sensor_msgs/msg/PointField", name=n, offset=o, datatype=t, count=1) for n, o, t in specs]
    dense = bool(np.isfinite(pts).all()) if is_dense is None else bool(is_dense)
    return factory.new(
        "sensor_msgs/msg/PointCloud2", header=header(factory, frame_id, stamp), height=height, width=width,
        fields=fields, is_bigendian=False, point_step=step, row_step=row_step,
        data=factory.bytes_field(data), is_dense=dense,
    )  # fmt: skip
