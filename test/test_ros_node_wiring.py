"""Smoke test of the rclpy wiring in sceneleap_ros/grasp_node.py without ROS: a minimal stand-in
for the rclpy API the node uses (recording publishers, subscriptions, services, timers and
parameter callbacks) with rosbags messages. It checks that the node declares every parameter
with its range, routes clouds, requests, parameter changes and health to the core, and publishes
what the core produces. It does not prove the real rclpy API matches the stand-in:
test_ros_node_rclpy.py does that where ROS 2 is installed."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest
from ros_helpers import tabletop

from sceneleap_ros.cloud import numpy_to_cloud
from sceneleap_ros.messages import RosbagsFactory, ros_typestore
from sceneleap_ros.parameters import SCHEMA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Record:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _Pub:
    def __init__(self, msg_type, topic):
        self.msg_type, self.topic, self.published = msg_type, topic, []
        self.event = threading.Event()

    def publish(self, msg):
        self.published.append(msg)
        self.event.set()


class _Logger:
    def __init__(self):
        self.lines = []

    def _log(self, msg, **kwargs):
        self.lines.append(str(msg))

    info = warning = error = debug = _log


class _Time:
    nanoseconds = 5_000_000_000

    def to_msg(self):
        return _Record(sec=5, nanosec=0)


class _Node:
    def __init__(self, name, parameter_overrides=()):
        self.name, self.overrides = name, {p.name: p.value for p in parameter_overrides}
        self.params, self.descriptors, self.pubs, self.subs, self.services, self.timers = {}, {}, {}, {}, {}, []
        self.param_callbacks, self.logger = [], _Logger()

    def declare_parameter(self, name, value, descriptor=None):
        self.params[name], self.descriptors[name] = self.overrides.get(name, value), descriptor
        return _Record(value=self.params[name])

    def get_parameter(self, name):
        return _Record(value=self.params[name])

    def create_publisher(self, msg_type, topic, qos):
        self.pubs[topic] = _Pub(msg_type, topic)
        return self.pubs[topic]

    def create_subscription(self, msg_type, topic, callback, qos):
        self.subs[topic] = (msg_type, callback, qos)

    def create_service(self, srv_type, name, callback):
        self.services[name] = callback

    def add_on_set_parameters_callback(self, callback):
        self.param_callbacks.append(callback)

    def create_timer(self, period, callback):
        self.timers.append((period, callback))

    def get_logger(self):
        return self.logger

    def get_clock(self):
        return _Record(now=_Time)

    def destroy_node(self):
        return None


def _fake_modules(diagnostics: bool) -> dict:
    mods = {name: types.ModuleType(name) for name in [
        "rclpy", "rclpy.node", "rclpy.duration", "rclpy.executors", "rclpy.qos", "rcl_interfaces",
        "rcl_interfaces.msg", "sensor_msgs", "sensor_msgs.msg", "visualization_msgs", "visualization_msgs.msg",
        "sceneleap_ros.msg", "sceneleap_ros.srv", "diagnostic_msgs", "diagnostic_msgs.msg"]}  # fmt: skip
    mods["rclpy.node"].Node = _Node
    mods["rclpy.duration"].Duration = _Record
    mods["rclpy.executors"].ExternalShutdownException = type("ExternalShutdownException", (Exception,), {})
    qos = mods["rclpy.qos"]
    qos.QoSProfile, qos.ReliabilityPolicy, qos.qos_profile_sensor_data = (
        _Record,
        _Record(RELIABLE="reliable"),
        _Record(depth=5),
    )
    for name in ("FloatingPointRange", "IntegerRange", "ParameterDescriptor", "SetParametersResult"):
        setattr(mods["rcl_interfaces.msg"], name, type(name, (_Record,), {}))
    mods["sensor_msgs.msg"].PointCloud2 = "PointCloud2"
    mods["visualization_msgs.msg"].MarkerArray = "MarkerArray"
    mods["sceneleap_ros.msg"].DexGraspArray = "DexGraspArray"
    mods["sceneleap_ros.srv"].PlanGrasps = "PlanGrasps"
    if diagnostics:
        mods["diagnostic_msgs.msg"].DiagnosticArray = "DiagnosticArray"
    else:
        del mods["diagnostic_msgs"], mods["diagnostic_msgs.msg"]
    return mods


@pytest.fixture(params=[True, False], ids=["diagnostics", "no_diagnostics"])
def node(request, monkeypatch, hand):
    from sceneleap_core.hand import HandModel

    for name, module in _fake_modules(request.param).items():
        monkeypatch.setitem(sys.modules, name, module)
    if not request.param:
        monkeypatch.setitem(sys.modules, "diagnostic_msgs", None)  # import fails as when not installed
    monkeypatch.delitem(sys.modules, "sceneleap_ros.grasp_node", raising=False)
    monkeypatch.setattr(HandModel, "load", classmethod(lambda cls, *a, **k: hand))
    import sceneleap_ros.grasp_node as grasp_node

    ts = ros_typestore("jazzy")
    monkeypatch.setattr(grasp_node, "RclpyFactory", lambda: RosbagsFactory(ts))
    overrides = [_Record(name=k, value=v) for k, v in {"model": "untrained:tiny", "num_grasps": 3, "steps": 1,
                                                       "gravity": "0 0 -1", "max_cloud_age": 0.0,
                                                       "oversample": 4.0}.items()]  # fmt: skip
    warm_ups = []  # the real warm-up does nothing on a CPU: record that the node asks for it
    monkeypatch.setattr(grasp_node.GraspNodeCore, "warm_up", lambda core: warm_ups.append(core))
    n = grasp_node.GraspNode(parameter_overrides=overrides)
    n.warm_ups = warm_ups
    yield n, ts, request.param
    n.destroy_node()


def test_node_wiring(node):
    n, ts, diagnostics = node
    factory = RosbagsFactory(ts)
    assert set(n.params) == {s.name for s in SCHEMA} and n.params["num_grasps"] == 3
    assert n.warm_ups == [n.core], "warm_up (default on) runs once, before any cloud"
    assert n.descriptors["steps"].integer_range[0].to_value == 1000 and n.descriptors["model"].read_only
    assert n.descriptors["guidance"].floating_point_range[0].from_value == -1.0
    msg_type, callback, qos = n.subs["points"]
    assert msg_type == "PointCloud2" and qos.depth == 1
    assert {"grasps", "grasp_markers"} <= set(n.pubs) and ("/diagnostics" in n.pubs) == diagnostics
    # a bad cloud, then a good one: the worker publishes grasps and markers for the good one
    callback(numpy_to_cloud(factory, np.full((10, 3), np.nan), frame_id="cam"))
    callback(numpy_to_cloud(factory, tabletop(), frame_id="cam", stamp=(4, 0)))
    assert n.pubs["grasps"].event.wait(30.0)
    grasps = n.pubs["grasps"].published[-1]
    assert grasps.header.stamp.sec == 4 and len(grasps.grasps) == 3 and n.pubs["grasp_markers"].published
    # the service
    request = factory.new("sceneleap_ros/srv/PlanGrasps_Request", cloud=numpy_to_cloud(factory, tabletop(), frame_id="cam"),
                          num_grasps=2)  # fmt: skip
    response = n.services["plan_grasps"](request, factory.new("sceneleap_ros/srv/PlanGrasps_Response"))
    assert response.success and len(response.grasps.grasps) == 2
    # run-time parameters
    result = n.param_callbacks[0]([_Record(name="steps", value=0)])
    assert not result.successful and "steps" in result.reason
    assert n.param_callbacks[0]([_Record(name="num_grasps", value=5)]).successful and n.core.params.num_grasps == 5
    # health
    n.timers[0][1]()
    if diagnostics:
        diag = n.pubs["/diagnostics"].published[-1]
        ts.serialize_cdr(diag, "diagnostic_msgs/msg/DiagnosticArray")
    else:
        assert any(line.startswith("health:") for line in n.logger.lines)


def test_demo_publisher_plays_the_sample_cloud(monkeypatch):
    from sceneleap_ros.cloud import cloud_to_numpy
    from sceneleap_ros.sample import sample_cloud

    for name, module in _fake_modules(True).items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("sceneleap_ros.grasp_node", "sceneleap_ros.demo_publisher"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import sceneleap_ros.demo_publisher as demo

    monkeypatch.setattr(demo, "RclpyFactory", lambda: RosbagsFactory(ros_typestore("humble")))
    node = demo.DemoCloudPublisher()
    period, tick = node.timers[0]
    assert period == pytest.approx(0.5)
    tick()
    cloud = cloud_to_numpy(node.pubs["points"].published[-1])
    assert cloud.frame_id == "camera_depth_optical_frame" and cloud.stamp == (5, 0)
    np.testing.assert_allclose(cloud.points, sample_cloud()[0].astype(np.float32), atol=1e-7)
