"""The ``grasp_node`` executable: rclpy wiring around :class:`sceneleap_ros.node_logic.GraspNodeCore`.

Topics: ``points`` (sensor_msgs/PointCloud2 in, sensor-data QoS, depth 1), ``grasps``
(sceneleap_ros/DexGraspArray, reliable), ``grasp_markers`` (visualization_msgs/MarkerArray),
``/diagnostics`` (when diagnostic_msgs is installed; else a log line). Service: ``plan_grasps``
(sceneleap_ros/PlanGrasps). Parameters: :data:`sceneleap_ros.parameters.SCHEMA`.

This class only converts and delegates: planning runs on the core's worker thread, so the
subscription callback returns at once.
"""

from __future__ import annotations

import copy

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from sceneleap_ros.messages import RclpyFactory
from sceneleap_ros.msg import DexGraspArray
from sceneleap_ros.node_logic import GraspNodeCore, load_planner
from sceneleap_ros.parameters import SCHEMA, NodeParams, parse_gravity
from sceneleap_ros.srv import PlanGrasps


def _descriptor(spec) -> ParameterDescriptor:
    text = spec.description + (f" (one of {list(spec.choices)})" if spec.choices else "")
    desc = ParameterDescriptor(description=text, read_only=not spec.dynamic)
    if spec.low is not None and spec.kind is int:
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=0)]
    elif spec.low is not None and spec.kind is float:
        desc.floating_point_range = [
            FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
        ]
    return desc


class GraspNode(Node):
    """``kwargs`` go to :class:`rclpy.node.Node` (tests pass ``parameter_overrides``)."""

    def __init__(self, **kwargs):
        super().__init__("grasp_node", **kwargs)
        for spec in SCHEMA:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        params = NodeParams().updated({spec.name: self.get_parameter(spec.name).value for spec in SCHEMA})
        self.tf_buffer = None
        if params.target_frame or isinstance(parse_gravity(params.gravity), str):
            from tf2_ros import Buffer, TransformListener  # only when a frame must be looked up

            self.tf_buffer = Buffer()
            self._tf_listener = TransformListener(self.tf_buffer, self)
        planner = load_planner(params, self.get_logger())
        self.core = GraspNodeCore(
            planner, params, RclpyFactory(), now=lambda: self.get_clock().now().nanoseconds * 1e-9,
            lookup_transform=self._lookup if self.tf_buffer is not None else None, log=self.get_logger(),
        )  # fmt: skip
        if params.warm_up:
            self.core.warm_up()
        self.grasps_pub = self.create_publisher(
            DexGraspArray, "grasps", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.markers_pub = self.create_publisher(MarkerArray, "grasp_markers", 10)
        sensor_qos = copy.copy(qos_profile_sensor_data)  # best effort, volatile
        sensor_qos.depth = 1  # keep only the newest cloud in the middleware too
        self.create_subscription(PointCloud2, "points", self.core.submit, sensor_qos)
        self.create_service(PlanGrasps, "plan_grasps", self._on_request)
        self.add_on_set_parameters_callback(self._on_parameters)
        self.diag_pub = None
        try:
            from diagnostic_msgs.msg import DiagnosticArray

            self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        except ImportError:
            self.get_logger().info("diagnostic_msgs not installed: health goes to the log")
        self.create_timer(params.diagnostics_period, self._report_health)
        self.core.start_worker(self._publish)
        self.get_logger().info(f"planning grasps for {self.core.hand.description.name} on 'points' ({params.mode})")

    def _lookup(self, target: str, source: str, stamp) -> np.ndarray:
        from rclpy.time import Time

        from sceneleap_ros.grasps import quaternion_to_matrix_np

        tf = self.tf_buffer.lookup_transform(target, source, Time.from_msg(stamp), timeout=Duration(seconds=0.1))
        q, t = tf.transform.rotation, tf.transform.translation
        out = np.eye(4)
        out[:3, :3] = quaternion_to_matrix_np(np.array([q.x, q.y, q.z, q.w]))
        out[:3, 3] = [t.x, t.y, t.z]
        return out

    def _publish(self, grasps, markers) -> None:
        self.grasps_pub.publish(grasps)
        if markers is not None:
            self.markers_pub.publish(markers)

    def _on_request(self, request, response):
        result, markers = self.core.handle_request(request)
        if markers is not None:
            self.markers_pub.publish(markers)
        response.success, response.message, response.grasps = result.success, result.message, result.grasps
        return response

    def _on_parameters(self, changes) -> SetParametersResult:
        ok, reason = self.core.set_params({p.name: p.value for p in changes})
        return SetParametersResult(successful=ok, reason=reason)

    def _report_health(self) -> None:
        if self.diag_pub is not None:
            stamp = self.get_clock().now().to_msg()
            self.diag_pub.publish(
                self.core.health.diagnostic_array(
                    self.core.factory, "sceneleap_ros: grasp_node", (stamp.sec, stamp.nanosec)
                )
            )
        else:
            self.get_logger().info(self.core.health.summary_line(), throttle_duration_sec=30.0)

    def destroy_node(self):
        self.core.stop_worker()
        return super().destroy_node()


def spin(node_class, args=None) -> None:
    """Init, spin one node, shut down (``rclpy.init`` is a context manager only from Iron on, so
    this stays explicit to run on Humble too); Ctrl-C and external shutdown end quietly."""
    rclpy.init(args=args)
    try:
        node = node_class()
        try:
            rclpy.spin(node)
        finally:
            node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


def main(args=None) -> None:
    spin(GraspNode, args)


if __name__ == "__main__":
    main()
