"""The grasp node's behaviour without rclpy (GraspNodeCore on rosbags messages): newest cloud only,
dropped and stale counting, bad clouds, the service, run-time parameters, tf, health."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from ros_helpers import save_tiny_model, tabletop

from sceneleap_ros.cloud import numpy_to_cloud
from sceneleap_ros.markers import DELETEALL
from sceneleap_ros.messages import RosbagsFactory, ros_typestore
from sceneleap_ros.node_logic import GraspNodeCore, LatestSlot, load_planner
from sceneleap_ros.parameters import NodeParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ListLog:
    def __init__(self):
        self.records = []

    def warning(self, msg):
        self.records.append(("warning", msg))

    info = error = warning


@pytest.fixture(scope="module")
def setup(tmp_path_factory, hand):
    ts = ros_typestore("jazzy")
    params = NodeParams().updated({"model": str(save_tiny_model(tmp_path_factory.mktemp("m"))), "num_grasps": 4,
                                   "steps": 1, "gravity": "0 0 -9.81", "max_cloud_age": 0.0, "top_k_markers": 2,
                                   "oversample": 4.0})  # fmt: skip (4x: a random model's candidates hit the table)
    planner = load_planner(params, hand=hand)
    return ts, RosbagsFactory(ts), planner, params


def _core(setup, **changes):
    _, factory, planner, params = setup
    return GraspNodeCore(planner, params.updated(changes), factory, log=ListLog())


def _cloud(factory, sec=1, frame="cam", points=None, shape=None):
    pts = tabletop() if points is None else points
    return numpy_to_cloud(factory, pts, frame_id=frame, stamp=(sec, 0), shape=shape)


def test_a_cloud_yields_grasps_and_markers(setup, hand):
    ts, factory, _, _ = setup
    core = _core(setup)
    core.submit(_cloud(factory, sec=5))
    grasps, markers = core.step(0)
    # the planner filters colliding candidates: at most the 4 asked for (a random model loses some)
    assert grasps.header.frame_id == "cam" and grasps.header.stamp.sec == 5 and 1 <= len(grasps.grasps) <= 4
    assert grasps.joint_names == hand.description.joint_names and grasps.planning_time > 0
    assert markers.markers[0].action == DELETEALL and len(markers.markers) == 1 + 2 * (hand.box_half.shape[0] + 1)
    ts.serialize_cdr(grasps, "sceneleap_ros/msg/DexGraspArray")
    assert core.health.planned == 1 and core.step(0) is None  # nothing waiting


def test_only_the_newest_cloud_is_planned_and_the_others_count_as_dropped(setup):
    _, factory, _, _ = setup
    core = _core(setup)
    for sec in (1, 2, 3):
        core.submit(_cloud(factory, sec=sec))
    grasps, _ = core.step(0)
    assert grasps.header.stamp.sec == 3
    assert core.health.dropped == 2 and core.health.received == 3 and core.health.planned == 1


def test_clouds_older_than_max_cloud_age_are_skipped(setup):
    _, factory, planner, params = setup
    core = GraspNodeCore(planner, params.updated({"max_cloud_age": 0.5}), factory, now=lambda: 100.0, log=ListLog())
    core.submit(_cloud(factory, sec=99))
    assert core.step(0) is None and core.health.stale == 1
    core.submit(numpy_to_cloud(factory, tabletop(), frame_id="cam", stamp=(99, 800_000_000)))
    assert core.step(0) is not None


def test_a_bad_cloud_is_logged_once_per_kind_and_planning_goes_on(setup):
    _, factory, _, _ = setup
    core = _core(setup)
    bad = _cloud(factory)
    bad.fields = bad.fields[:2]  # no z
    for _ in range(3):
        core.submit(bad)
        assert core.step(0) is None
    core.submit(_cloud(factory, points=np.full((480 * 640, 3), np.nan), shape=(480, 640)))
    assert core.step(0) is None
    warnings = [m for level, m in core.log.records if level == "warning"]
    assert len(warnings) == 2 and "no z field" in warnings[0] and "480 x 640" in warnings[1]
    assert core.health.bad == {"no_xyz": 3, "all_nan": 1}
    core.submit(_cloud(factory))
    assert core.step(0) is not None and "480 x 640" in core.health.values()["last_error"]


def test_points_outside_the_workspace_are_cropped(setup):
    _, factory, _, _ = setup
    core = _core(setup, workspace_min=[-1.0, -1.0, 0.5], workspace_max=[1.0, 1.0, 1.0])
    core.submit(_cloud(factory))
    assert core.step(0) is None and core.health.bad == {"outside_workspace": 1}


def test_the_worker_plans_off_the_callback_thread(setup):
    _, factory, _, _ = setup
    core = _core(setup)
    published, cloud = [], _cloud(factory)
    done = threading.Event()

    def publish(grasps, markers):
        published.append(grasps)
        done.set()

    core.start_worker(publish)
    try:
        start = time.perf_counter()
        for _ in range(30):  # a 30 Hz burst arrives faster than planning
            core.submit(cloud)
        assert time.perf_counter() - start < 0.5, "submit must never wait for planning"
        assert done.wait(20.0)
    finally:
        core.stop_worker()
    h = core.health
    assert h.received == 30 and h.dropped >= 1 and h.planned >= 1
    assert h.dropped + h.planned <= 30 and threading.current_thread().name != "sceneleap_planner"


def test_the_service_plans_a_given_or_the_newest_cloud(setup):
    _, factory, _, _ = setup
    core = _core(setup, mode="on_request")
    req = factory.new("sceneleap_ros/srv/PlanGrasps_Request", use_latest=True)
    res, _ = core.handle_request(req)
    assert not res.success and "no cloud" in res.message
    core.submit(_cloud(factory, sec=8))
    assert core.step(0) is None, "on_request mode plans only through the service"
    res, markers = core.handle_request(req)
    assert res.success and res.grasps.header.stamp.sec == 8 and markers is not None
    res, _ = core.handle_request(factory.new("sceneleap_ros/srv/PlanGrasps_Request", cloud=_cloud(factory, sec=9),
                                             num_grasps=2))  # fmt: skip
    assert res.success and len(res.grasps.grasps) == 2 and res.grasps.header.stamp.sec == 9
    res, _ = core.handle_request(factory.new("sceneleap_ros/srv/PlanGrasps_Request"))  # an empty cloud
    assert not res.success and "empty cloud" in res.message


def test_sampling_parameters_change_at_run_time(setup):
    _, factory, _, _ = setup
    core = _core(setup)
    assert core.set_params({"num_grasps": 3, "steps": 2}) == (True, "")
    core.submit(_cloud(factory))
    grasps, _ = core.step(0)
    assert len(grasps.grasps) == 3
    ok, reason = core.set_params({"model": "elsewhere"})
    assert not ok and "cannot change" in reason
    ok, reason = core.set_params({"steps": 0, "num_grasps": 5})
    assert not ok and "steps" in reason and core.params.num_grasps == 3  # all or nothing

    def passed_to_plan(param: str, keyword: str, values) -> list:
        """Set ``param`` to each value, plan once each; the planner's ``keyword`` argument each time."""
        seen, plan = [], core.planner.plan
        core.planner.plan = lambda *a, **k: seen.append(k[keyword]) or plan(*a, **k)
        try:
            for value in values:
                assert core.set_params({param: value}) == (True, "")
                core.submit(_cloud(factory))
                core.step(0)
        finally:
            del core.planner.plan
        return seen

    # 0 / -1 = the model's default (None to the planner), else passed on
    assert passed_to_plan("oversample", "oversample", (0, 3)) == [None, 3.0]
    assert passed_to_plan("temperature", "temperature", (-1.0, 0.0, 0.5)) == [None, 0.0, 0.5]
    ok, reason = core.set_params({"temperature": -0.5})
    assert not ok and "temperature" in reason
    assert passed_to_plan("guidance", "guidance_scale", (-1.0, 1.0, 1.5)) == [None, 1.0, 1.5]
    ok, reason = core.set_params({"guidance": -0.5})
    assert not ok and "guidance" in reason
    posts = passed_to_plan("clearance", "post", ("", "off", "returned"))  # "" = the model's, else that stage
    assert posts[0] is None and [p.clearance for p in posts[1:]] == ["off", "returned"]
    assert posts[1].grasp_tolerance == core.planner.post.grasp_tolerance, "the rest of the planner's settings kept"


def test_target_frame_and_gravity_frame_go_through_the_transform_lookup(setup):
    _, factory, planner, params = setup
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 2.0, 0.5]
    calls = []

    def lookup(target, source, stamp):
        calls.append((target, source))
        return shift if source == "cam" else np.eye(4)

    core = GraspNodeCore(planner, params.updated({"target_frame": "base", "gravity": "world"}), factory,
                         lookup_transform=lookup, log=ListLog())  # fmt: skip
    core.submit(_cloud(factory))
    grasps, _ = core.step(0)
    assert grasps.header.frame_id == "base" and ("base", "cam") in calls and ("base", "world") in calls
    targets = np.array([[g.target_point.x, g.target_point.y, g.target_point.z] for g in grasps.grasps])
    moved = tabletop() + shift[:3, 3]
    assert (
        np.linalg.norm(moved[None] - targets[:, None], axis=-1).min(axis=1).max() < 1e-5
    )  # anchors on the moved cloud
    no_tf = _core(setup, target_frame="base")
    no_tf.submit(_cloud(factory))
    assert no_tf.step(0) is None and "no tf2 lookup" in no_tf.health.last_error


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_health_reports_as_diagnostics(setup, distro):
    _, factory, _, _ = setup
    core = _core(setup)
    core.submit(_cloud(factory))
    core.submit(_cloud(factory))
    core.step(0)
    ts = ros_typestore(distro)
    diag = core.health.diagnostic_array(RosbagsFactory(ts), "grasp_node", (1, 0))
    back = ts.deserialize_cdr(
        ts.serialize_cdr(diag, "diagnostic_msgs/msg/DiagnosticArray"), "diagnostic_msgs/msg/DiagnosticArray"
    )
    values = {kv.key: kv.value for kv in back.status[0].values}
    assert back.status[0].level == 0 and values["clouds_dropped"] == "1" and values["clouds_planned"] == "1"
    assert float(values["latency_p50_ms"]) > 0 and "1 dropped" in core.health.summary_line()


def test_latest_slot_keeps_only_the_newest():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True
    assert slot.take(0) == 2 and slot.take(0.01) is None


def test_load_planner_explains_missing_models(setup, hand, tmp_path, monkeypatch):
    import sceneleap_ros.node_logic as node_logic

    bundled = load_planner(NodeParams(), hand=hand)  # the shipped model, with its training's data settings
    assert bundled.model.anchored and bundled.num_points == 8192 and bundled.frame == "gravity"
    monkeypatch.setattr(node_logic, "BUNDLED_MODEL", tmp_path / "absent")
    with pytest.raises(ValueError, match="model:=untrained:tiny"):
        load_planner(NodeParams(), hand=hand)
    with pytest.raises(ValueError, match=r"config\.json"):
        load_planner(NodeParams().updated({"model": str(tmp_path)}), hand=hand)
    planner = load_planner(NodeParams().updated({"model": "untrained:tiny"}), logging.getLogger("t"), hand=hand)
    assert planner.hand is hand and planner.num_points == 1024


def test_backend_parameter_reaches_the_planner_and_onnx_plans(setup, hand, tmp_path):
    _, factory, _, params = setup
    with pytest.raises(ValueError, match="backend"):
        params.updated({"backend": "cuda-graph"})
    with pytest.raises(ValueError, match="graph_precision"):
        params.updated({"graph_precision": "fp16"})
    graphed = load_planner(params.updated({"backend": "cuda_graph", "graph_precision": "bf16", "graph_compile": True}),
                           hand=hand)  # fmt: skip
    assert graphed.backend == "cuda_graph" and graphed._loop.precision == "bf16", "the parameter reaches the graphs"
    assert graphed.graph_compile, "and so does graph_compile"
    onnx = params.updated({"backend": "onnx", "engine_path": str(tmp_path / "onnx")})
    planner = load_planner(onnx, hand=hand)
    assert planner.backend == "onnx" and any((tmp_path / "onnx").glob("*.onnx")), "exported where engine_path says"
    core = GraspNodeCore(planner, onnx, factory, log=ListLog())
    core.submit(_cloud(factory, sec=5))
    grasps, _ = core.step(0)
    assert 1 <= len(grasps.grasps) <= 4


def test_warm_up_plans_once_on_a_gpu_with_the_nodes_settings_and_survives_a_failure(setup, hand):
    """On a GPU the node plans a synthetic tabletop before the first cloud (graphs captured, a
    compiled denoiser compiled) with its own settings; on a CPU it does nothing; a failing warm-up
    is logged and the node goes on."""
    _, factory, planner, params = setup

    class Recorder:
        def __init__(self, device, fail=False):
            self.device, self.hand, self.post, self.fail, self.calls = device, planner.hand, planner.post, fail, []

        def plan(self, points, num_grasps, **kwargs):
            self.calls.append((points, num_grasps, kwargs))
            if self.fail:
                raise RuntimeError("CUDA out of memory")

    log = ListLog()
    settings = params.updated({"steps": 3, "seed": 7, "clearance": "returned"})
    gpu = Recorder("cuda:0")
    took = GraspNodeCore(gpu, settings, factory, log=log).warm_up(points=5000)
    assert took is not None and took >= 0 and len(gpu.calls) == 1
    points, num_grasps, kwargs = gpu.calls[0]
    assert points.shape == (5000, 3) and np.isfinite(points).all() and num_grasps == settings.num_grasps
    assert kwargs["steps"] == 3 and kwargs["seed"] == 7 and kwargs["post"].clearance == "returned"
    assert np.allclose(kwargs["up"], [0, 0, 1]) and any("warm-up plan on cuda:0" in m for _, m in log.records)
    cpu = Recorder("cpu")
    assert GraspNodeCore(cpu, settings, factory, log=log).warm_up() is None and cpu.calls == []
    broken = Recorder("cuda", fail=True)
    assert GraspNodeCore(broken, settings, factory, log=log).warm_up(points=100) is None
    assert any("warm-up plan failed (RuntimeError: CUDA out of memory)" in m for _, m in log.records)
