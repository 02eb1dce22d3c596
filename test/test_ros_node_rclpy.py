"""The rclpy node itself. These run only where rclpy and the built interfaces import (a sourced
ROS 2 workspace after ``colcon build``); rclpy is installable neither from PyPI nor Debian 12, so
on these machines they skip and the behaviour is covered by test_ros_node_logic.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not installed (no ROS 2 here); node logic is tested without it")
pytest.importorskip(
    "sceneleap_ros.msg", reason="sceneleap_ros interfaces are not built (colcon build, then source install/setup.bash)"
)

from rclpy.parameter import Parameter  # noqa: E402
from ros_helpers import tabletop  # noqa: E402

from sceneleap_ros.cloud import numpy_to_cloud  # noqa: E402
from sceneleap_ros.messages import RclpyFactory  # noqa: E402
from sceneleap_ros.parameters import load_params_file  # noqa: E402

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def node():
    from sceneleap_ros.grasp_node import GraspNode

    rclpy.init()
    values = load_params_file(ROOT / "config" / "grasp.yaml").values
    values.update(model="untrained:tiny", num_grasps=4, steps=1, gravity="0 0 -1", max_cloud_age=0.0)
    overrides = [Parameter(k, value=v) for k, v in values.items()]
    grasp_node = GraspNode(parameter_overrides=overrides)
    helper = rclpy.create_node("sceneleap_test_helper")
    executor = rclpy.executors.MultiThreadedExecutor()
    executor.add_node(grasp_node)
    executor.add_node(helper)
    yield grasp_node, helper, executor
    executor.shutdown()
    grasp_node.destroy_node()
    helper.destroy_node()
    rclpy.try_shutdown()


def _spin_until(executor, done, timeout=30.0):
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    return done()


def test_parameters_load_from_grasp_yaml(node):
    grasp_node, _, _ = node
    assert grasp_node.get_parameter("num_grasps").value == 4
    assert grasp_node.get_parameter("mode").value == "continuous"
    result = grasp_node.set_parameters([Parameter("steps", value=0)])[0]
    assert not result.successful and "steps" in result.reason


def test_a_cloud_yields_grasps_and_markers_and_a_bad_one_leaves_the_node_alive(node):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from sceneleap_ros.msg import DexGraspArray

    grasp_node, helper, executor = node
    got_grasps, got_markers = [], []
    helper.create_subscription(DexGraspArray, "grasps", got_grasps.append, 10)
    helper.create_subscription(MarkerArray, "grasp_markers", got_markers.append, 10)
    pub = helper.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
    factory = RclpyFactory()
    bad = numpy_to_cloud(factory, np.full((480 * 640, 3), np.nan), frame_id="cam", shape=(480, 640))
    pub.publish(bad)
    _spin_until(executor, lambda: grasp_node.core.health.bad, 10.0)
    pub.publish(numpy_to_cloud(factory, tabletop(), frame_id="cam", stamp=(3, 0)))
    assert _spin_until(executor, lambda: got_grasps and got_markers)
    assert got_grasps[0].header.frame_id == "cam" and len(got_grasps[0].grasps) == 4
    assert grasp_node.core.health.bad["all_nan"] == 1


def test_the_service_answers(node):
    from sceneleap_ros.srv import PlanGrasps

    _, helper, executor = node
    client = helper.create_client(PlanGrasps, "plan_grasps")
    assert _spin_until(executor, lambda: client.service_is_ready(), 10.0)
    request = PlanGrasps.Request(cloud=numpy_to_cloud(RclpyFactory(), tabletop(), frame_id="cam"), num_grasps=2)
    future = client.call_async(request)
    assert _spin_until(executor, future.done)
    assert future.result().success and len(future.result().grasps.grasps) == 2
