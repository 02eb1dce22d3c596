"""Message construction that works the same on rclpy and on ``rosbags`` messages.

Conversions in this package build messages through a small factory (:class:`MessageFactory`):
``new(typename, **fields)`` and ``bytes_field(array)``. :class:`RosbagsFactory` builds ``rosbags``
dataclasses from a typestore (Humble, Jazzy, ...), filling unset fields with their zero values as
rclpy does; the node uses :class:`RclpyFactory`, which imports the generated Python classes.

``register_interfaces(typestore)`` adds this package's ``msg/`` and ``srv/`` definitions (parsed from
the files themselves, so the tests and the bag tools see exactly what rosidl generates).
"""

from __future__ import annotations

import array
import importlib
import os
import sys
from pathlib import Path

import numpy as np

PACKAGE = "sceneleap_ros"
MESSAGES = ("DexGrasp", "DexGraspArray")
SERVICES = ("PlanGrasps",)

_NUMPY_TYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}  # fmt: skip


def interface_dir() -> Path:
    """The folder holding ``msg/`` and ``srv/``: the source checkout, or an install's
    ``share/sceneleap_ros`` (colcon: ``AMENT_PREFIX_PATH``; pip: ``sys.prefix``)."""
    candidates = [Path(__file__).resolve().parents[1]]
    for prefix in [*os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep), sys.prefix]:
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE)
    for root in candidates:
        if (root / "msg" / "DexGrasp.msg").is_file():
            return root
    raise FileNotFoundError(f"{PACKAGE}: msg/DexGrasp.msg not found in any of {[str(c) for c in candidates]}")


def interface_definitions(root: Path | None = None) -> dict[str, str]:
    """``{ros type name: msg text}`` for this package's messages and the request / response halves
    of its services (``sceneleap_ros/srv/PlanGrasps_Request``, as rosidl names them)."""
    root = interface_dir() if root is None else Path(root)
    defs = {f"{PACKAGE}/msg/{name}": (root / "msg" / f"{name}.msg").read_text() for name in MESSAGES}
    for name in SERVICES:
        text = (root / "srv" / f"{name}.srv").read_text()
        parts = text.split("\n---\n")
        if len(parts) != 2:
            raise ValueError(
                f"srv/{name}.srv: expected one '---' line between request and response, got {len(parts) - 1}"
            )
        defs[f"{PACKAGE}/srv/{name}_Request"], defs[f"{PACKAGE}/srv/{name}_Response"] = parts
    return defs


def register_interfaces(typestore, root: Path | None = None):
    """Register this package's messages and service halves in a ``rosbags`` typestore (idempotent)."""
    from rosbags.typesys import get_types_from_msg

    types = {}
    for name, text in interface_definitions(root).items():
        if name not in typestore.types:
            # rosbags resolves bare names (DexGraspArray) in <pkg>/msg/, so parse service halves
            # as messages and file them under srv/ as rosidl does
            parsed = get_types_from_msg(text, name.replace("/srv/", "/msg/"))
            types.update(
                {name if key == name.replace("/srv/", "/msg/") else key: value for key, value in parsed.items()}
            )
    if types:
        typestore.register(types)
    return typestore


def ros_typestore(distro: str = "jazzy"):
    """A ``rosbags`` typestore of a ROS 2 distribution with this package's interfaces registered."""
    from rosbags.typesys import Stores, get_typestore

    try:
        store = Stores[f"ROS2_{distro.upper()}"]
    except KeyError:
        raise ValueError(f"distro: expected a ROS 2 distribution such as humble or jazzy, got {distro!r}") from None
    return register_interfaces(get_typestore(store))


class MessageFactory:
    """Builds messages by ROS type name (``sensor_msgs/msg/PointCloud2``)."""

    def new(self, typename: str, **fields):  # pragma: no cover - interface
        raise NotImplementedError

    def bytes_field(self, data: np.ndarray):
        """A ``uint8[]`` field value from a uint8 numpy array."""
        return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)

    def float_array(self, values) -> object:
        """A ``float64[]`` field value."""
        return np.asarray(values, dtype=np.float64).reshape(-1)

    def byte(self, value: int):
        """A ``byte`` field value (rosbags: an int; rclpy: one byte)."""
        return int(value)


class RosbagsFactory(MessageFactory):
    """``rosbags`` dataclasses; missing fields get zero values (0, '', empty sequences, nested
    messages of zeros), so the same call works for every distribution's definitions."""

    def __init__(self, typestore):
        self.typestore = typestore

    def new(self, typename: str, **fields):
        cls = self.typestore.types[typename]
        _, defs = self.typestore.fielddefs[typename]
        names = {name for name, _ in defs}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ValueError(f"{typename}: unknown fields {unknown}, expected some of {sorted(names)}")
        values = {name: fields[name] if name in fields else self._zero(desc) for name, desc in defs}
        return cls(**values)

    def _zero(self, desc):
        from rosbags.typesys.base import Nodetype

        kind, rest = desc
        if kind == Nodetype.BASE:
            base = rest[0]
            return "" if base in ("string", "wstring") else _NUMPY_TYPES[base](0).item()
        if kind == Nodetype.NAME:
            return self.new(rest)
        inner, length = rest
        if inner[0] == Nodetype.BASE and inner[1][0] in _NUMPY_TYPES:
            return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=_NUMPY_TYPES[inner[1][0]])
        if kind == Nodetype.ARRAY:
            return [self._zero(inner) for _ in range(length)]
        return []


class RclpyFactory(MessageFactory):
    """Generated rclpy message classes (imported on first use by package: ``sensor_msgs.msg``)."""

    def new(self, typename: str, **fields):
        package, kind, name = typename.split("/")
        module = importlib.import_module(f"{package}.{kind}")
        if kind == "srv" and name.endswith(("_Request", "_Response")):  # rclpy: PlanGrasps.Request
            base, half = name.rsplit("_", 1)
            cls = getattr(getattr(module, base), half)
        else:
            cls = getattr(module, name)
        return cls(**fields)

    # array.array of the right typecode is stored as is; any other sequence is checked element by
    # element in Python by the generated setters (seconds for a 640x480 cloud)
    def bytes_field(self, data: np.ndarray):
        return array.array("B", np.ascontiguousarray(data, dtype=np.uint8).tobytes())

    def float_array(self, values):
        return array.array("d", np.ascontiguousarray(values, dtype=np.float64).tobytes())

    def byte(self, value: int):
        return bytes([int(value)])


def header(factory: MessageFactory, frame_id: str, stamp: tuple[int, int] = (0, 0)):
    """``std_msgs/Header`` with ``stamp`` = (sec, nanosec)."""
    time = factory.new("builtin_interfaces/msg/Time", sec=int(stamp[0]), nanosec=int(stamp[1]))
    return factory.new("std_msgs/msg/Header", stamp=time, frame_id=str(frame_id))


def stamp_seconds(stamp) -> float:
    """``builtin_interfaces/Time`` -> seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)
