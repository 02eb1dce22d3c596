"""Interfaces, grasp messages and markers against rosbags (Humble and Jazzy definitions), and the
package's ROS files (package.xml, CMakeLists.txt, launch, config)."""

from __future__ import annotations

import array
import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from ros_helpers import save_tiny_model, tabletop

from sceneleap_ros.grasps import grasps_to_msg, msg_to_grasps, rank_grasps
from sceneleap_ros.markers import CUBE, DELETEALL, TEXT_VIEW_FACING, grasp_markers, hand_boxes
from sceneleap_ros.messages import RosbagsFactory, interface_definitions, ros_typestore
from sceneleap_ros.parameters import SCHEMA, NodeParams, load_params_file

ROOT = Path(__file__).resolve().parents[1]
ARRAY, MARKERS = "sceneleap_ros/msg/DexGraspArray", "visualization_msgs/msg/MarkerArray"


@pytest.fixture(scope="module", params=["humble", "jazzy"])
def store(request):
    ts = ros_typestore(request.param)
    return ts, RosbagsFactory(ts)


@pytest.fixture(scope="module")
def planned(tmp_path_factory, hand):
    """A GraspSet of a random tiny model on a tabletop cloud, ranked."""
    from sceneleap_core.infer import GraspPlanner

    planner = GraspPlanner.from_pretrained(save_tiny_model(tmp_path_factory.mktemp("m")), hand=hand)
    pts = tabletop()
    out = planner.plan(pts, num_grasps=6, steps=2, seed=0, up=np.array([0.0, 0.0, 1.0]), filter=False)  # random model
    return out, rank_grasps(out, hand, pts), pts


def test_interfaces_parse_and_round_trip(store):
    ts, factory = store
    defs = interface_definitions()
    assert set(defs) == {ARRAY, "sceneleap_ros/msg/DexGrasp", "sceneleap_ros/srv/PlanGrasps_Request",
                         "sceneleap_ros/srv/PlanGrasps_Response"}  # fmt: skip
    fields = {name: [f for f, _ in ts.fielddefs[name][1]] for name in defs}
    assert fields["sceneleap_ros/msg/DexGrasp"] == ["id", "palm_pose", "joint_positions", "pregrasp_pose",
                                                    "pregrasp_joint_positions", "score", "target_point"]  # fmt: skip
    assert fields[ARRAY] == ["header", "hand_name", "joint_names", "grasps", "planning_time"]
    assert fields["sceneleap_ros/srv/PlanGrasps_Request"] == ["use_latest", "cloud", "num_grasps"]
    assert fields["sceneleap_ros/srv/PlanGrasps_Response"] == ["success", "message", "grasps"]
    for name in defs:
        msg = factory.new(name)
        back = ts.deserialize_cdr(ts.serialize_cdr(msg, name), name)
        assert type(back) is type(msg)
    req = factory.new("sceneleap_ros/srv/PlanGrasps_Request", use_latest=True, num_grasps=4)
    name = "sceneleap_ros/srv/PlanGrasps_Request"
    back = ts.deserialize_cdr(ts.serialize_cdr(req, name), name)
    assert back.use_latest is True and back.num_grasps == 4
    with pytest.raises(ValueError, match="unknown fields"):
        factory.new(ARRAY, stamp=1)


def test_grasp_set_to_dex_grasp_array_and_back(store, planned, hand):
    ts, factory = store
    out, ranked, _ = planned
    msg = grasps_to_msg(factory, ranked, frame_id="cam", stamp=(3, 4), hand_name=hand.description.name,
                        joint_names=list(hand.joint_names), planning_time=0.25)  # fmt: skip
    back_msg = ts.deserialize_cdr(ts.serialize_cdr(msg, ARRAY), ARRAY)
    assert back_msg.header.frame_id == "cam" and back_msg.header.stamp.sec == 3 and back_msg.header.stamp.nanosec == 4
    assert back_msg.hand_name == "leap_hand_right" and back_msg.joint_names == hand.description.joint_names
    assert back_msg.planning_time == pytest.approx(0.25)
    back = msg_to_grasps(back_msg)
    scores = np.array([g.score for g in back_msg.grasps])
    # the planner's ranking travels: its order, its score (-energy without a ranker) as exp(score)
    assert out.score_kind == "energy" and back.ids.tolist() == list(range(6))
    np.testing.assert_allclose(scores, np.exp(np.minimum(out.scores[0].double().numpy(), 0)), rtol=1e-6)
    # each message grasp is the planner's grasp of that id
    pose = out.palm_pose[0].double().numpy()[back.ids]
    np.testing.assert_allclose(back.palm_pose, pose, atol=1e-5)
    np.testing.assert_allclose(back.joints, out.joints[0].double().numpy()[back.ids], atol=1e-12)
    np.testing.assert_allclose(back.target, out.anchors[0].double().numpy()[back.ids], atol=1e-12)
    # the pregrasp is the planner's (the approach start its filter checks): 10 cm back along the approach
    np.testing.assert_allclose(back.pregrasp_joints, out.pregrasp_joints[0].double().numpy()[back.ids], atol=1e-6)
    np.testing.assert_allclose(back.pregrasp_pose, out.pregrasp_pose[0].double().numpy()[back.ids], atol=1e-5)
    approach = pose[:, :3, :3] @ hand.approach_axis.double().numpy()
    np.testing.assert_allclose(back.pregrasp_pose[:, :3, 3], pose[:, :3, 3] - 0.1 * approach, atol=1e-5)
    assert np.all((back.scores > 0) & (back.scores <= 1))


def test_score_is_low_for_a_hand_through_the_cloud(hand):
    from sceneleap_core.infer import GraspSet
    from sceneleap_ros.grasps import score_grasps

    pose = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    pose[1, 2, 3] = 1.0  # the second hand far above the points
    joints = hand.open_pose.double().expand(2, -1)
    state = hand(joints, pose)
    inside = hand.box_poses(state)[1][0].numpy()  # centres of the first hand's boxes: deep inside it
    scores = score_grasps(hand, pose, joints, inside)
    assert scores[0] < 0.05 and scores[1] == pytest.approx(1.0)
    ranked = rank_grasps(GraspSet(pose[None], joints[None], torch.zeros(1, 2, 25)), hand, inside, score_threshold=0.5)
    assert ranked.ids.tolist() == [1], "unranked grasps: scored by penetration and sorted"


def test_the_learned_rankers_order_and_lift_probability_reach_the_message(hand):
    from sceneleap_core.infer import GraspSet

    pose = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    joints = hand.open_pose.double().expand(3, -1)
    logits = torch.tensor([[2.0, 2.5, -1.0]])  # diverse top-k may put a lower score first: kept
    gs = GraspSet(pose[None], joints[None], torch.zeros(1, 3, 25), scores=logits, score_kind="ranker")
    ranked = rank_grasps(gs, hand, np.zeros((4, 3)))
    assert ranked.ids.tolist() == [0, 1, 2]
    np.testing.assert_allclose(ranked.scores, torch.sigmoid(logits[0]).numpy())
    assert rank_grasps(gs, hand, np.zeros((4, 3)), score_threshold=0.5).ids.tolist() == [0, 1]


def test_the_planners_pregrasp_reaches_the_message(hand):
    from sceneleap_core.infer import GraspSet

    pose = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    joints = hand.open_pose.double().expand(2, -1)
    pre = pose.clone()
    pre[:, 2, 3] = torch.tensor([0.3, 0.4])  # not the default 10 cm back-off
    pre_q = joints + 0.01 * torch.arange(2, dtype=torch.float64)[:, None]
    gs = GraspSet(pose[None], joints[None], torch.zeros(1, 2, 25), pregrasp_pose=pre[None], pregrasp_joints=pre_q[None],
                  scores=torch.tensor([[1.0, 0.0]]), score_kind="ranker")  # fmt: skip
    ranked = rank_grasps(gs, hand, np.zeros((4, 3)))
    np.testing.assert_allclose(ranked.pregrasp_pose, pre.numpy())
    np.testing.assert_allclose(ranked.pregrasp_joints, pre_q.numpy())


def test_markers_are_the_fk_boxes_of_the_top_grasps(store, planned, hand):
    ts, factory = store
    _, ranked, _ = planned
    msg = grasp_markers(factory, hand, ranked, frame_id="cam", stamp=(1, 2), top_k=3)
    msg = ts.deserialize_cdr(ts.serialize_cdr(msg, MARKERS), MARKERS)
    first, rest = msg.markers[0], msg.markers[1:]
    assert first.action == DELETEALL
    k = hand.box_half.shape[0]
    assert len(rest) == 3 * (k + 1)
    rot, centre, size = hand_boxes(hand, ranked.palm_pose[:3], ranked.joints[:3])
    # independent FK: the hand model's own forward pass
    state = hand(
        torch.as_tensor(ranked.joints[:3], dtype=hand.dtype), torch.as_tensor(ranked.palm_pose[:3], dtype=hand.dtype)
    )
    ref_rot, ref_centre = hand.box_poses(state)
    np.testing.assert_allclose(rot, ref_rot.double().numpy(), atol=1e-9)
    np.testing.assert_allclose(centre, ref_centre.double().numpy(), atol=1e-9)
    np.testing.assert_allclose(size, 2 * hand.box_half.double().numpy())
    from sceneleap_core.geometry.rotations import quaternion_to_matrix

    for rank in range(3):
        boxes = [m for m in rest if m.ns == f"grasp_{rank}" and m.type == CUBE]
        texts = [m for m in rest if m.ns == f"grasp_{rank}" and m.type == TEXT_VIEW_FACING]
        assert len(boxes) == k and len(texts) == 1 and f"{ranked.scores[rank]:.2f}" in texts[0].text
        pos = np.array([[m.pose.position.x, m.pose.position.y, m.pose.position.z] for m in boxes])
        np.testing.assert_allclose(pos, ref_centre[rank].double().numpy(), atol=1e-5)
        quat = torch.tensor([[m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w]
                             for m in boxes], dtype=torch.float64)  # fmt: skip
        np.testing.assert_allclose(quaternion_to_matrix(quat).numpy(), ref_rot[rank].double().numpy(), atol=1e-5)
        scale = np.array([[m.scale.x, m.scale.y, m.scale.z] for m in boxes])
        np.testing.assert_allclose(scale, 2 * hand.box_half.double().numpy(), atol=1e-12)
        assert all(m.header.frame_id == "cam" for m in boxes)
        colour = boxes[0].color
        assert colour.g == pytest.approx(min(1.0, 2 * ranked.scores[rank]), abs=1e-6)
    empty = grasp_markers(factory, hand, ranked, frame_id="cam", stamp=(1, 2), top_k=0)
    assert [m.action for m in empty.markers] == [DELETEALL]


# ---------------------------------------------------------------------- package files
def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


# import name -> rosdep key (ROS packages are their own key)
ROSDEP = {"numpy": "python3-numpy", "yaml": "python3-yaml", "scipy": "python3-scipy", "h5py": "python3-h5py",
          "tf2_ros": "tf2_ros_py"}  # fmt: skip
PIP_ONLY = {"torch", "safetensors", "rosbags"}  # said in a package.xml comment; no rosdep key everywhere
FIRST_PARTY = {"sceneleap_ros", "sceneleap_core"}


def test_package_xml_is_format_3_and_declares_every_import():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3" and root.findtext("name") == "sceneleap_ros"
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend", "build_depend")}
    assert {"rosidl_default_generators"} <= {e.text for e in root if e.tag == "buildtool_depend"}
    assert root.findtext("export/build_type") == "ament_cmake"
    assert "rosidl_interface_packages" in [e.text for e in root.findall("member_of_group")]
    files = [*(ROOT / "sceneleap_ros").glob("*.py"), ROOT / "launch" / "grasp.launch.py"]
    imported = set().union(*(_imports(f) for f in files)) - set(sys.stdlib_module_names) - FIRST_PARTY
    text = (ROOT / "package.xml").read_text()
    for name in sorted(imported):
        if name in PIP_ONLY:
            assert name in text, f"package.xml should say that {name} comes from pip"
        else:
            assert ROSDEP.get(name, name) in deps, f"package.xml does not declare {ROSDEP.get(name, name)} ({name})"
    # message packages the interfaces use
    for line in (ROOT / "msg" / "DexGrasp.msg").read_text().splitlines() + (
        ROOT / "srv" / "PlanGrasps.srv"
    ).read_text().splitlines():
        m = re.match(r"^([a-z_]+)/\w+", line)
        if m:
            assert m.group(1) in deps


def test_cmake_generates_the_interfaces_and_installs_launch_config_rviz():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    block = re.search(r"rosidl_generate_interfaces\((.*?)\)", cmake, re.S).group(1)
    for path in [*sorted((ROOT / "msg").glob("*.msg")), *sorted((ROOT / "srv").glob("*.srv"))]:
        assert f'"{path.relative_to(ROOT)}"' in block
    for pkg in ("std_msgs", "geometry_msgs", "sensor_msgs", "builtin_interfaces"):
        assert pkg in block.split("DEPENDENCIES")[1]
    installed = re.search(r"install\(DIRECTORY ([^)]*?) DESTINATION share/\$\{PROJECT_NAME\}\)", cmake).group(1).split()
    assert {"launch", "config", "msg", "srv"} <= set(installed)
    assert (ROOT / "config" / "grasp.rviz").is_file() and (ROOT / "config" / "grasp.yaml").is_file()
    assert "ament_python_install_package(sceneleap_ros)" in cmake
    programs = re.search(r"install\(PROGRAMS(.*?)DESTINATION lib/\$\{PROJECT_NAME\}", cmake, re.S).group(1).split()
    for exe in programs:
        assert (ROOT / exe).is_file() and (ROOT / exe).stat().st_mode & 0o111
    assert {Path(p).name for p in programs} == {"grasp_node", "demo_cloud_publisher"}


def test_launch_file_declares_its_arguments():
    tree = ast.parse((ROOT / "launch" / "grasp.launch.py").read_text())
    declared = {
        node.args[0].value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"
    }  # fmt: skip
    assert {"params_file", "cloud_topic", "model", "device", "use_sim_time", "rviz", "demo"} <= declared
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_rviz_config_shows_the_cloud_and_markers():
    import yaml

    rviz = yaml.safe_load((ROOT / "config" / "grasp.rviz").read_text())
    displays = {d["Class"]: d for d in rviz["Visualization Manager"]["Displays"]}
    assert displays["rviz_default_plugins/PointCloud2"]["Topic"]["Value"] == "/points"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/grasp_markers"


def test_grasp_yaml_matches_the_parameter_schema():
    params = load_params_file(ROOT / "config" / "grasp.yaml")
    assert set(params.values) == {s.name for s in SCHEMA}
    import yaml

    written = yaml.safe_load((ROOT / "config" / "grasp.yaml").read_text())["grasp_node"]["ros__parameters"]
    assert set(written) == {s.name for s in SCHEMA}, "config/grasp.yaml lists every parameter"
    assert all(s.description for s in SCHEMA)


def test_parameters_are_validated_with_clear_errors(tmp_path):
    p = NodeParams()
    assert p.steps == 10 and p.mode == "continuous"
    assert p.updated({"guidance": 2}).guidance == 2.0
    assert p.updated({"workspace_min": array.array("d", [0.0, 0.0, 0.0])}).workspace_min == [0.0, 0.0, 0.0]  # rclpy
    bad = {"steps": 0, "mode": "sometimes", "num_grasps": "8", "guidance": float("nan"), "nope": 1,
           "workspace_min": [0, 0], "gravity": "0 0 0", "sampler": "euler2", "oversample": 0.5,
           "clearance": "always"}  # fmt: skip
    for key, value in bad.items():
        with pytest.raises(ValueError, match=key):
            p.updated({key: value})
    with pytest.raises(ValueError, match="workspace_min: expected below"):
        p.updated({"workspace_min": [1.0, 0.0, 0.0], "workspace_max": [0.5, 1.0, 1.0]})
    with pytest.raises(ValueError, match="cannot change while the node runs"):
        p.updated({"model": "x"}, running=True)
    assert p.updated({"steps": 3}, running=True).steps == 3
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    steps: 4\n")
    assert load_params_file(f).steps == 4
    f.write_text("other_node:\n  ros__parameters:\n    steps: 4\n")
    with pytest.raises(ValueError, match="grasp_node"):
        load_params_file(f)
