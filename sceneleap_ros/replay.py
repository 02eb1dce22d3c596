"""Offline: a rosbag2 of point clouds -> a new rosbag2 with grasps and markers (no ROS install).

Reads ``sensor_msgs/PointCloud2`` from a rosbag2 (sqlite3 or MCAP) with ``rosbags``, plans every
cloud with the node's own logic (:class:`~sceneleap_ros.node_logic.GraspNodeCore`), and writes
``sceneleap_ros/msg/DexGraspArray`` and ``visualization_msgs/msg/MarkerArray`` (types registered
from ``msg/``) at the cloud's bag time, plus (by default) the clouds themselves, so Foxglove or
``ros2 bag play`` shows them together. Bad clouds are skipped and counted, as the node does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from sceneleap_ros.messages import RosbagsFactory, ros_typestore
from sceneleap_ros.node_logic import GraspNodeCore
from sceneleap_ros.parameters import NodeParams

CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
GRASPS_TYPE = "sceneleap_ros/msg/DexGraspArray"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"


@dataclass
class ReplaySummary:
    clouds: int = 0
    planned: int = 0
    bad: dict = field(default_factory=dict)
    failed: int = 0

    def line(self) -> str:
        bad = ", ".join(f"{k}={v}" for k, v in sorted(self.bad.items())) or "none"
        return f"{self.clouds} clouds, {self.planned} planned, bad: {bad}, failed: {self.failed}"


def check_bag(in_bag: str | Path, topic: str) -> int:
    """Check that ``in_bag`` opens and ``topic`` carries PointCloud2 (before loading a model);
    returns the number of clouds."""
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(Path(in_bag))
        reader.open()
    except Exception as err:  # rosbags raises its own error types for missing / unreadable bags
        raise ValueError(f"{in_bag}: cannot open as a rosbag2 ({type(err).__name__}: {err})") from None
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            found = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
            raise ValueError(f"--topic: {topic!r} is not in {in_bag}; topics: {found}")
        wrong = [c.msgtype for c in connections if c.msgtype != CLOUD_TYPE]
        if wrong:
            raise ValueError(f"--topic: {topic!r} carries {wrong[0]}, expected {CLOUD_TYPE}")
        return sum(c.msgcount for c in connections)
    finally:
        reader.close()


def replay_bag(in_bag: str | Path, out_bag: str | Path, *, topic: str, planner, params: NodeParams | None = None,
               distro: str = "jazzy", storage: str = "mcap", grasps_topic: str = "/grasps",
               markers_topic: str = "/grasp_markers", copy_clouds: bool = True,
               log: logging.Logger | None = None) -> ReplaySummary:  # fmt: skip
    """Plan every cloud of ``topic`` in ``in_bag`` and write the results to ``out_bag`` (must not exist).

    Args:
        planner: a :class:`~sceneleap_core.infer.GraspPlanner`.
        params: node parameters (``max_cloud_age`` is ignored: bag clouds are old by nature).
        distro: ROS 2 definitions used to read and write (``humble``, ``jazzy``, ...).
        storage: ``mcap`` or ``sqlite3`` for the output bag.
    """
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    log = log or logging.getLogger("sceneleap_ros.replay")
    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage: expected one of {sorted(plugins)}, got {storage!r}")
    out_bag = Path(out_bag)
    if out_bag.exists():
        raise ValueError(f"--out: {out_bag} exists; rosbag2 writers need a new folder")
    typestore = ros_typestore(distro)
    factory = RosbagsFactory(typestore)
    params = (params or NodeParams()).updated({"max_cloud_age": 0.0, "mode": "continuous"})
    core = GraspNodeCore(planner, params, factory, log=log)
    summary = ReplaySummary()
    check_bag(in_bag, topic)
    reader = Reader(Path(in_bag))
    reader.open()
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        with Writer(out_bag, version=9, storage_plugin=plugins[storage]) as writer:
            out_grasps = writer.add_connection(grasps_topic, GRASPS_TYPE, typestore=typestore)
            out_markers = writer.add_connection(markers_topic, MARKERS_TYPE, typestore=typestore)
            out_cloud = writer.add_connection(topic, CLOUD_TYPE, typestore=typestore) if copy_clouds else None
            for _, timestamp, raw in reader.messages(connections=connections):
                summary.clouds += 1
                if out_cloud is not None:
                    writer.write(out_cloud, timestamp, raw)
                cloud = typestore.deserialize_cdr(raw, CLOUD_TYPE)
                result = core.process(cloud)
                if result is None:
                    continue
                grasps, markers = result
                writer.write(out_grasps, timestamp, typestore.serialize_cdr(grasps, GRASPS_TYPE))
                if markers is not None:
                    writer.write(out_markers, timestamp, typestore.serialize_cdr(markers, MARKERS_TYPE))
                summary.planned += 1
    finally:
        reader.close()
    summary.bad, summary.failed = dict(core.health.bad), core.health.failed
    return summary
