"""ROS 2 interface of SceneLeapUltra. Conversions and markers are plain Python over message fields
(usable with rclpy or rosbags messages); only the node module imports rclpy."""
