"""`sceneleap ros replay`: a small generated rosbag2 (sqlite3 and MCAP) through the planner."""

from __future__ import annotations

import numpy as np
import pytest
from ros_helpers import save_tiny_model, tabletop

from sceneleap_ros.cloud import numpy_to_cloud
from sceneleap_ros.grasps import msg_to_grasps
from sceneleap_ros.markers import DELETEALL
from sceneleap_ros.messages import RosbagsFactory, ros_typestore
from sceneleap_ros.node_logic import load_planner
from sceneleap_ros.parameters import NodeParams
from sceneleap_ros.replay import replay_bag

pytestmark = pytest.mark.usefixtures("one_torch_thread")
TOPIC = "/camera/depth/points"


def write_cloud_bag(path, storage: str, clouds: list, distro: str = "jazzy", extra_topic: bool = True):
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = ros_typestore(distro)
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(TOPIC, "sensor_msgs/msg/PointCloud2", typestore=ts)
        other = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ts) if extra_topic else None
        for i, msg in enumerate(clouds):
            t = 1_000_000_000 + i * 100_000_000
            writer.write(conn, t, ts.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))
            if other is not None:
                writer.write(
                    other, t + 1, ts.serialize_cdr(ts.types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String")
                )
    return path


def read_bag(path, distro: str = "jazzy"):
    from rosbags.rosbag2 import Reader

    ts = ros_typestore(distro)
    out: dict = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, ts.deserialize_cdr(raw, conn.msgtype)))
    return out


@pytest.fixture(scope="module")
def planner(tmp_path_factory, hand):
    params = NodeParams().updated({"model": str(save_tiny_model(tmp_path_factory.mktemp("m")))})
    return load_planner(params, hand=hand)


@pytest.mark.parametrize(("storage", "distro"), [("sqlite3", "humble"), ("mcap", "jazzy")])
def test_replay_writes_one_grasp_array_and_one_marker_array_per_cloud(tmp_path, planner, hand, storage, distro):
    factory = RosbagsFactory(ros_typestore(distro))
    clouds = [numpy_to_cloud(factory, tabletop(seed=i), frame_id="cam", stamp=(10 + i, 0)) for i in range(3)]
    bad = numpy_to_cloud(factory, np.full((20, 3), np.nan), frame_id="cam", stamp=(20, 0))
    bag = write_cloud_bag(tmp_path / "in", storage, [*clouds[:2], bad, clouds[2]], distro)
    params = NodeParams().updated({"num_grasps": 3, "steps": 1, "gravity": "0 0 -1", "top_k_markers": 1,
                                   "oversample": 4.0})
    summary = replay_bag(bag, tmp_path / "out", topic=TOPIC, planner=planner, params=params, distro=distro,
                         storage=storage)  # fmt: skip
    assert (summary.clouds, summary.planned, summary.bad) == (4, 3, {"all_nan": 1})
    out = read_bag(tmp_path / "out", distro)
    assert sorted(out) == sorted(["/grasps", "/grasp_markers", TOPIC])
    assert len(out[TOPIC]) == 4 and len(out["/grasps"]) == 3 and len(out["/grasp_markers"]) == 3
    for (t, grasps), (tm, markers), sec in zip(out["/grasps"], out["/grasp_markers"], (10, 11, 12), strict=True):
        assert t == tm and grasps.header.stamp.sec == sec and grasps.header.frame_id == "cam"
        assert len(grasps.grasps) == 3 and grasps.joint_names == hand.description.joint_names
        assert markers.markers[0].action == DELETEALL and len(markers.markers) == 1 + hand.box_half.shape[0] + 1
        assert np.isfinite(msg_to_grasps(grasps).palm_pose).all()
    with pytest.raises(ValueError, match="exists"):
        replay_bag(bag, tmp_path / "out", topic=TOPIC, planner=planner)


def test_cli_replay_reports_bad_topics_and_bags(tmp_path, capsys):
    from sceneleap_core.cli import main

    factory = RosbagsFactory(ros_typestore("jazzy"))
    bag = write_cloud_bag(tmp_path / "in", "mcap", [numpy_to_cloud(factory, tabletop(), frame_id="cam")])
    assert main(["ros", "replay", str(bag), "--topic", "/nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "'/nope' is not in" in err and TOPIC in err
    assert main(["ros", "replay", str(bag), "--topic", "/chatter", "--out", str(tmp_path / "o")]) == 2
    assert "expected sensor_msgs/msg/PointCloud2" in capsys.readouterr().err
    assert main(["ros", "replay", str(tmp_path / "missing"), "--topic", TOPIC, "--out", str(tmp_path / "o")]) == 2
    assert "cannot open as a rosbag2" in capsys.readouterr().err


def test_cli_replay_end_to_end(tmp_path, hand, monkeypatch, capsys):
    from sceneleap_core.cli import main
    from sceneleap_core.hand import HandModel

    monkeypatch.setattr(HandModel, "load", classmethod(lambda cls, *a, **k: hand))  # the session's (loading: seconds)
    model = save_tiny_model(tmp_path / "m")
    factory = RosbagsFactory(ros_typestore("jazzy"))
    clouds = [numpy_to_cloud(factory, tabletop(seed=i), frame_id="cam", stamp=(i, 0)) for i in range(2)]
    bag = write_cloud_bag(tmp_path / "in", "sqlite3", clouds, extra_topic=False)
    argv = ["ros", "replay", str(bag), "--topic", TOPIC, "--out", str(tmp_path / "out"), "--model", str(model),
            "--params", "config/grasp.yaml", "--num-grasps", "2", "--steps", "1", "--storage", "mcap", "--no-clouds"]  # fmt: skip
    monkeypatch.chdir(__import__("pathlib").Path(__file__).resolve().parents[1])
    assert main(argv) == 0
    assert "2 clouds, 2 planned" in capsys.readouterr().out
    out = read_bag(tmp_path / "out")
    assert sorted(out) == ["/grasp_markers", "/grasps"] and [len(g.grasps) for _, g in out["/grasps"]] == [2, 2]
