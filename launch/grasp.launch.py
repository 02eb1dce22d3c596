"""``ros2 launch sceneleap_ros grasp.launch.py [cloud_topic:=...] [model:=DIR] [device:=cuda] [rviz:=true] [demo:=true]``

Starts ``grasp_node`` with ``config/grasp.yaml`` (``params_file:=``), its ``points`` input remapped
to ``cloud_topic``; ``rviz:=true`` opens ``config/grasp.rviz`` with ``fixed_frame`` as the fixed
frame (the cloud's frame); ``demo:=true`` adds ``demo_cloud_publisher``, which plays the bundled
sample cloud on ``cloud_topic`` in ``fixed_frame`` (no camera needed).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "sceneleap_ros"


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arg = LaunchConfiguration
    sim_time = {"use_sim_time": arg("use_sim_time")}
    args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "grasp.yaml"),
                              description="grasp_node parameters (ros__parameters YAML)"),
        DeclareLaunchArgument("cloud_topic", default_value="/points", description="input sensor_msgs/PointCloud2"),
        DeclareLaunchArgument("model", default_value="",
                              description="model directory; '' = the bundled one; 'untrained:tiny' = wiring test"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device (cpu, cuda, cuda:N)"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
        DeclareLaunchArgument("rviz", default_value="false", description="open RViz with config/grasp.rviz"),
        DeclareLaunchArgument("demo", default_value="false", description="publish the bundled sample cloud in a loop"),
        DeclareLaunchArgument("fixed_frame", default_value="camera_depth_optical_frame",
                              description="RViz fixed frame and the demo cloud's frame"),
    ]  # fmt: skip
    nodes = [
        Node(
            package=PACKAGE, executable="grasp_node", name="grasp_node", output="screen",
            parameters=[arg("params_file"), {"model": arg("model"), "device": arg("device")}, sim_time],
            remappings=[("points", arg("cloud_topic"))],
        ),
        Node(
            package=PACKAGE, executable="demo_cloud_publisher", name="demo_cloud_publisher", output="screen",
            parameters=[{"frame_id": arg("fixed_frame")}, sim_time], remappings=[("points", arg("cloud_topic"))],
            condition=IfCondition(arg("demo")),
        ),
        Node(
            package="rviz2", executable="rviz2", name="rviz2", output="screen",
            arguments=["-d", os.path.join(share, "config", "grasp.rviz"), "--fixed-frame", arg("fixed_frame")],
            parameters=[sim_time], condition=IfCondition(arg("rviz")),
        ),
    ]  # fmt: skip
    return LaunchDescription(args + nodes)
