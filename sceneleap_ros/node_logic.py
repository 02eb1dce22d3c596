"""Everything the grasp node does, without rclpy: the newest-cloud slot and its worker thread,
stale-cloud and bad-cloud handling, planning, the service, run-time parameter changes and the
health counters. :mod:`sceneleap_ros.grasp_node` only wires this to topics, services, tf2 and
parameters, so the behaviour is tested here against ``rosbags`` messages.

Threading: subscription callbacks call :meth:`GraspNodeCore.submit` (never blocks: it replaces the
waiting cloud and counts the one it replaced as dropped); one worker thread plans the newest cloud.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sceneleap_core.assets import DEFAULT_MODEL_DIR
from sceneleap_ros.cloud import CloudError, cloud_to_numpy
from sceneleap_ros.grasps import grasps_to_msg, rank_grasps
from sceneleap_ros.markers import grasp_markers
from sceneleap_ros.messages import MessageFactory, header, stamp_seconds
from sceneleap_ros.parameters import NodeParams, parse_gravity

BUNDLED_MODEL = DEFAULT_MODEL_DIR
UNTRAINED_PREFIX = "untrained:"

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2


def load_planner(params: NodeParams, log: logging.Logger | None = None, hand=None):
    """The :class:`~sceneleap_core.infer.GraspPlanner` the parameters name (model, device, backend);
    ``hand``: a loaded :class:`~sceneleap_core.hand.HandModel` to reuse (loading one takes seconds)."""
    from sceneleap_core.infer import GraspPlanner

    log = log or logging.getLogger(__name__)
    kwargs = {"num_points": params.num_points} if params.num_points > 0 else {}
    kwargs.update(backend=params.backend, onnx_dir=params.engine_path or None, graph_precision=params.graph_precision,
                  graph_compile=params.graph_compile)  # fmt: skip
    if hand is not None:
        kwargs["hand"] = hand.to(params.device)
    model = params.model
    if model.startswith(UNTRAINED_PREFIX):
        from sceneleap_core.hand import GraspNormalizer, HandModel
        from sceneleap_core.models import build_generator

        preset = model[len(UNTRAINED_PREFIX) :] or "tiny"
        # one formatted string: rclpy's logger takes no %-style arguments
        log.warning(
            f"model {model}: a randomly initialised {preset} model; its grasps are meaningless (wiring test only)"
        )
        gen = build_generator(preset, anchor="seed").eval().to(params.device)
        hand = kwargs.pop("hand", None) or HandModel.load().to(params.device)
        norm = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper, translation_range=0.15)
        kwargs.setdefault("num_points", 1024)
        return GraspPlanner(gen, norm, hand, frame="gravity", **kwargs)
    directory = Path(model) if model else BUNDLED_MODEL
    if not (directory / "config.json").is_file():
        if not model:
            raise ValueError(
                f"model: no bundled model at {BUNDLED_MODEL} (a partial install?); pass "
                "model:=DIR (a save_pretrained directory) or model:=untrained:tiny for a wiring test"
            )
        raise ValueError(f"model: expected a save_pretrained directory with config.json, got {directory}")
    return GraspPlanner.from_pretrained(directory, device=params.device, **kwargs)


class LatestSlot:
    """Holds only the newest item; ``put`` never blocks and returns whether it replaced (dropped) one."""

    def __init__(self):
        self._item = None
        self._cond = threading.Condition()

    def put(self, item) -> bool:
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None):
        """The waiting item (None after ``timeout`` s without one)."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item


class Health:
    """Counters and latencies of the node, as a ``DiagnosticArray`` or one log line."""

    def __init__(self, window: int = 100):
        self.lock = threading.Lock()
        self.received = self.planned = self.dropped = self.stale = self.failed = 0
        self.bad: collections.Counter = collections.Counter()
        self.latencies: collections.deque = collections.deque(maxlen=window)
        self.arrivals: collections.deque = collections.deque(maxlen=window)
        self.last_error = ""

    def input_rate(self) -> float:
        """Clouds per second over the last arrivals (0 with fewer than two)."""
        with self.lock:
            if len(self.arrivals) < 2 or self.arrivals[-1] <= self.arrivals[0]:
                return 0.0
            return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])

    def values(self) -> dict[str, str]:
        lat = np.asarray(self.latencies, dtype=np.float64)
        rate = self.input_rate()
        with self.lock:
            return {
                "clouds_received": str(self.received), "input_rate_hz": f"{rate:.2f}",
                "clouds_planned": str(self.planned), "clouds_dropped": str(self.dropped),
                "clouds_stale": str(self.stale), "clouds_bad": str(sum(self.bad.values())),
                "bad_by_kind": ", ".join(f"{k}={v}" for k, v in sorted(self.bad.items())),
                "planning_failed": str(self.failed),
                "latency_p50_ms": f"{1e3 * np.median(lat):.1f}" if lat.size else "",
                "latency_max_ms": f"{1e3 * lat.max():.1f}" if lat.size else "",
                "last_error": self.last_error,
            }  # fmt: skip

    def level(self) -> tuple[int, str]:
        with self.lock:
            if self.failed and not self.planned:
                return ERROR, f"planning fails: {self.last_error}"
            if self.last_error:
                return WARN, f"planning; last problem: {self.last_error}"
        return OK, "planning"

    def summary_line(self) -> str:
        v = self.values()
        return ("health: {clouds_received} clouds in ({input_rate_hz} Hz), {clouds_planned} planned, "
                "{clouds_dropped} dropped, {clouds_stale} stale, {clouds_bad} bad, latency p50 {latency_p50_ms} ms; "
                "last error: {last_error}").format(**v)  # fmt: skip

    def diagnostic_array(self, factory: MessageFactory, name: str, stamp: tuple[int, int]):
        level, message = self.level()
        values = [factory.new("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in self.values().items()]
        status = factory.new("diagnostic_msgs/msg/DiagnosticStatus", level=factory.byte(level), name=name,
                             message=message, hardware_id="sceneleap", values=values)  # fmt: skip
        return factory.new("diagnostic_msgs/msg/DiagnosticArray", header=header(factory, "", stamp), status=[status])


class GraspNodeCore:
    """Plans grasps for clouds and builds the messages; the rclpy node wires it to the graph.

    Args:
        planner: a :class:`~sceneleap_core.infer.GraspPlanner`.
        params: validated :class:`NodeParams`.
        factory: builds output messages (rclpy or rosbags classes).
        now: current ROS time in seconds (the node's clock, sim time aware) for ``max_cloud_age``.
        lookup_transform: ``(target, source, stamp) -> (4, 4)`` target <- source (tf2); needed only
            with ``target_frame`` or a gravity frame.
        log: a logger with ``warning``/``info``/``error`` (rclpy's or :mod:`logging`'s).
    """

    def __init__(self, planner, params: NodeParams, factory: MessageFactory, *, now: Callable[[], float] = time.time,
                 lookup_transform: Callable | None = None, log=None):  # fmt: skip
        self.planner, self.params, self.factory = planner, params, factory
        self.hand = planner.hand
        self.now, self.lookup_transform = now, lookup_transform
        self.log = log or logging.getLogger("sceneleap_ros")
        self.health = Health()
        self.slot = LatestSlot()
        self.latest = None  # newest cloud received (for the service's use_latest)
        self._warned: set[str] = set()
        self._plan_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ parameters
    def set_params(self, changes: dict) -> tuple[bool, str]:
        """Apply run-time parameter changes (all or none); returns (successful, reason)."""
        try:
            self.params = self.params.updated(changes, running=True)
        except ValueError as err:
            return False, str(err)
        return True, ""

    # ------------------------------------------------------------------ input
    def submit(self, msg) -> None:
        """Subscription callback: keep the cloud as the newest one (never blocks)."""
        self.latest = msg
        with self.health.lock:
            self.health.received += 1
            self.health.arrivals.append(time.monotonic())
        if self.params.mode == "continuous" and self.slot.put(msg):
            with self.health.lock:
                self.health.dropped += 1

    def _warn_once(self, kind: str, message: str) -> None:
        with self.health.lock:
            self.health.last_error = message
        if kind not in self._warned:
            self._warned.add(kind)
            self.log.warning(f"{message} (further problems of this kind are counted, not logged)")

    # ------------------------------------------------------------------ planning
    def is_stale(self, msg) -> bool:
        max_age = self.params.max_cloud_age
        return max_age > 0 and self.now() - stamp_seconds(msg.header.stamp) > max_age

    def _output_frame(self, msg) -> tuple[str, np.ndarray | None]:
        target = self.params.target_frame
        if not target or target == msg.header.frame_id:
            return msg.header.frame_id, None
        if self.lookup_transform is None:
            raise ValueError(f"target_frame {target!r}: no tf2 lookup available")
        return target, self.lookup_transform(target, msg.header.frame_id, msg.header.stamp)

    def _up(self, out_frame: str, stamp) -> np.ndarray | None:
        gravity = parse_gravity(self.params.gravity)
        if gravity is None or isinstance(gravity, np.ndarray):
            return gravity
        if self.lookup_transform is None:
            raise ValueError(f"gravity frame {gravity!r}: no tf2 lookup available")
        return np.asarray(self.lookup_transform(out_frame, gravity, stamp))[:3, 2]

    def _plan_settings(self) -> dict:
        """The planner's keyword arguments from the parameters (sampler, steps, seed, ...)."""
        p = self.params
        post = None if not p.clearance else dataclasses.replace(self.planner.post, clearance=p.clearance)
        return {"steps": p.steps, "sampler": p.sampler or None, "guidance_scale": None if p.guidance < 0 else p.guidance,
                "seed": p.seed, "oversample": p.oversample or None, "post": post,
                "temperature": None if p.temperature < 0 else p.temperature}  # fmt: skip

    def warm_up(self, points: int = 20000) -> float | None:
        """On a GPU, plan once for a synthetic tabletop (a 60 cm table and a 6 cm box, ``points``
        points, up = +z) with the node's settings before the first real cloud, so that the CUDA
        graphs are captured, and a ``graph_compile`` denoiser compiled, here and not on the first
        frame. Returns the seconds it took, or None: on a CPU (nothing to capture) or when it failed
        (logged, not raised: the first cloud then pays it)."""
        device = getattr(self.planner, "device", None)
        if getattr(device, "type", str(device).split(":")[0]) != "cuda":
            return None
        rng = np.random.default_rng(0)
        n_box = points // 5
        table = np.c_[rng.uniform(-0.3, 0.3, (points - n_box, 2)), np.zeros(points - n_box)]
        box = rng.uniform(-0.03, 0.03, (n_box, 3)) + np.array([0.0, 0.0, 0.03])
        start = time.perf_counter()
        try:
            with self._plan_lock:
                self.planner.plan(np.concatenate([table, box]), self.params.num_grasps, up=np.array([0.0, 0.0, 1.0]),
                                  **self._plan_settings())  # fmt: skip
        except Exception as err:  # the node keeps going; the first cloud retries the capture
            self.log.warning(f"warm-up plan failed ({type(err).__name__}: {err}); the first cloud pays the set-up")
            return None
        elapsed = time.perf_counter() - start
        self.log.info(f"warm-up plan on {device}: {elapsed:.1f} s (graphs captured before the first cloud)")
        return elapsed

    def plan(self, msg, *, num_grasps: int | None = None):
        """One cloud -> (DexGraspArray, MarkerArray or None). Raises :class:`CloudError` for a bad
        cloud and ``ValueError`` for other input problems."""
        p = self.params
        cloud = cloud_to_numpy(msg, max_points=p.max_points)
        frame_id, transform = self._output_frame(msg)
        points = cloud.points
        if transform is not None:
            transform = np.asarray(transform, dtype=np.float64)
            points = points @ transform[:3, :3].T + transform[:3, 3]
        inside = np.all((points >= p.workspace_min) & (points <= p.workspace_max), axis=1)
        if not inside.any():
            raise CloudError("outside_workspace", f"none of the {len(points)} points lies inside the workspace box")
        points = points[inside]
        up = self._up(frame_id, msg.header.stamp)
        start = time.perf_counter()
        with self._plan_lock:
            out = self.planner.plan(points, num_grasps or p.num_grasps, up=up, **self._plan_settings())
            ranked = rank_grasps(out, self.hand, points, score_threshold=p.score_threshold)
        elapsed = time.perf_counter() - start
        grasps_msg = grasps_to_msg(self.factory, ranked, frame_id=frame_id, stamp=cloud.stamp,
                                   hand_name=self.hand.description.name, joint_names=list(self.hand.joint_names),
                                   planning_time=elapsed)  # fmt: skip
        markers = None
        if p.publish_markers:
            markers = grasp_markers(self.factory, self.hand, ranked, frame_id=frame_id, stamp=cloud.stamp,
                                    top_k=p.top_k_markers)  # fmt: skip
        with self.health.lock:
            self.health.planned += 1
            self.health.latencies.append(elapsed)
        return grasps_msg, markers

    def process(self, msg, *, num_grasps: int | None = None):
        """:meth:`plan` that never raises: problems are counted and logged once per kind; None then."""
        try:
            return self.plan(msg, num_grasps=num_grasps)
        except CloudError as err:
            with self.health.lock:
                self.health.bad[err.kind] += 1
            self._warn_once(f"cloud:{err.kind}", f"bad cloud skipped: {err}")
        except Exception as err:  # a long-running node must outlive any single cloud
            with self.health.lock:
                self.health.failed += 1
            self._warn_once(f"error:{type(err).__name__}", f"planning failed: {type(err).__name__}: {err}")
        return None

    def step(self, timeout: float | None = 0.1):
        """Worker body: plan the newest waiting cloud (None if none came, it is stale, or it failed)."""
        msg = self.slot.take(timeout)
        if msg is None:
            return None
        if self.is_stale(msg):
            with self.health.lock:
                self.health.stale += 1
            return None
        return self.process(msg)

    def start_worker(self, publish: Callable) -> None:
        """Run :meth:`step` on a daemon thread; ``publish(grasps_msg, markers_msg_or_None)``."""

        def loop():
            while not self._stop.is_set():
                out = self.step(0.1)
                if out is not None:
                    publish(*out)

        self._stop.clear()
        self._worker = threading.Thread(target=loop, name="sceneleap_planner", daemon=True)
        self._worker.start()

    def stop_worker(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    # ------------------------------------------------------------------ service
    def handle_request(self, request):
        """``PlanGrasps`` request -> (response, MarkerArray or None): plans on the given cloud, or on
        the newest one received; a bad cloud gives ``success`` false and the reason."""
        cloud = self.latest if request.use_latest else request.cloud
        response = self.factory.new("sceneleap_ros/srv/PlanGrasps_Response")
        if cloud is None:
            response.success, response.message = False, "use_latest: no cloud received yet"
            return response, None
        try:
            grasps_msg, markers = self.plan(cloud, num_grasps=int(request.num_grasps) or None)
        except ValueError as err:  # CloudError included
            with self.health.lock:
                self.health.last_error = str(err)
            response.success, response.message = False, str(err)
            return response, None
        response.success, response.grasps = True, grasps_msg
        return response, markers
