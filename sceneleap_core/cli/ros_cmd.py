"""``sceneleap ros replay``: plan the clouds of a rosbag2 offline (no ROS install; needs ``rosbags``).

    sceneleap ros replay IN_BAG --topic /camera/depth/points --out OUT_BAG [--model DIR]
        [--params config/grasp.yaml] [--device cpu] [--num-grasps G] [--steps T]
        [--distro jazzy] [--storage mcap|sqlite3] [--no-clouds]

Writes ``/grasps`` (sceneleap_ros/msg/DexGraspArray) and ``/grasp_markers`` (MarkerArray) at each
cloud's bag time, plus the clouds, to a new bag (see :mod:`sceneleap_ros.replay`).
"""

from __future__ import annotations

import argparse
import logging


def _replay(args: argparse.Namespace) -> int:
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise ValueError("rosbags is not installed: pip install 'sceneleap[ros-offline]'") from None
    from sceneleap_ros.node_logic import load_planner
    from sceneleap_ros.parameters import NodeParams, load_params_file
    from sceneleap_ros.replay import check_bag, replay_bag

    check_bag(args.in_bag, args.topic)  # before the model loads: a wrong topic fails fast
    params = load_params_file(args.params) if args.params else NodeParams()
    changes = {}
    if args.device is not None:
        changes["device"] = args.device
    if args.model is not None:
        changes["model"] = args.model
    if args.num_grasps is not None:
        changes["num_grasps"] = args.num_grasps
    if args.steps is not None:
        changes["steps"] = args.steps
    params = params.updated(changes)
    log = logging.getLogger("sceneleap.ros")
    planner = load_planner(params, log)
    summary = replay_bag(args.in_bag, args.out, topic=args.topic, planner=planner, params=params,
                         distro=args.distro, storage=args.storage, copy_clouds=not args.no_clouds, log=log)  # fmt: skip
    print(f"{args.out}: {summary.line()}")
    return 0 if summary.planned or not summary.clouds else 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ros", help="ROS 2 tools that need no ROS install (rosbags)")
    ros_sub = parser.add_subparsers(dest="ros_command", metavar="ACTION", required=True)
    replay = ros_sub.add_parser("replay", help="plan every cloud of a rosbag2 and write grasps + markers to a new bag")
    replay.add_argument("in_bag", metavar="IN_BAG", help="input rosbag2 folder (sqlite3 or MCAP)")
    replay.add_argument("--topic", required=True, help="sensor_msgs/PointCloud2 topic, e.g. /camera/depth/points")
    replay.add_argument("--out", required=True, help="output rosbag2 folder (must not exist)")
    replay.add_argument("--model", default=None, help="model directory ('' = bundled; 'untrained:tiny' = wiring test)")
    replay.add_argument(
        "--params", default=None, help="grasp_node parameters YAML (ros__parameters), e.g. config/grasp.yaml"
    )
    replay.add_argument("--device", default=None, help="torch device (default: the parameters', cpu)")
    replay.add_argument("--num-grasps", type=int, default=None, help="grasps per cloud (default: the parameters')")
    replay.add_argument("--steps", type=int, default=None, help="denoising steps (default: the parameters')")
    replay.add_argument("--distro", default="jazzy", help="ROS 2 message definitions (humble, jazzy, ...)")
    replay.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"], help="output bag storage")
    replay.add_argument("--no-clouds", action="store_true", help="do not copy the input clouds to the output bag")
    replay.set_defaults(func=_replay)
