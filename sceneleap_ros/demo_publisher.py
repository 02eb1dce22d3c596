"""The ``demo_cloud_publisher`` executable: plays the bundled sample cloud on ``points`` in a loop,
stamped now, so the grasp node and RViz can be tried without a camera (``demo:=true``).

Parameters: ``frame_id`` (default ``camera_depth_optical_frame``), ``rate`` (Hz), ``view`` (sample
view index).
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2

from sceneleap_ros.cloud import numpy_to_cloud
from sceneleap_ros.grasp_node import spin
from sceneleap_ros.messages import RclpyFactory
from sceneleap_ros.sample import SAMPLE_FRAME, sample_cloud


class DemoCloudPublisher(Node):
    def __init__(self):
        super().__init__("demo_cloud_publisher")
        self.frame_id = self.declare_parameter("frame_id", SAMPLE_FRAME).value
        rate = float(self.declare_parameter("rate", 2.0).value)
        self.points, _ = sample_cloud(int(self.declare_parameter("view", 0).value))
        self.factory = RclpyFactory()
        self.publisher = self.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
        self.create_timer(1.0 / max(rate, 1e-3), self._tick)
        self.get_logger().info(
            f"publishing the sample cloud ({len(self.points)} points) in {self.frame_id} at {rate} Hz"
        )

    def _tick(self) -> None:
        stamp = self.get_clock().now().to_msg()
        self.publisher.publish(
            numpy_to_cloud(self.factory, self.points, frame_id=self.frame_id, stamp=(stamp.sec, stamp.nanosec))
        )


def main(args=None) -> None:
    spin(DemoCloudPublisher, args)


if __name__ == "__main__":
    main()
