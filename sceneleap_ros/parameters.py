"""The grasp node's parameters: one schema (name, default, type, description, range or choices,
whether it may change at run time) used to declare them in rclpy, to validate values and to check
``config/grasp.yaml``.

``model`` empty means the bundled model (``sceneleap_core/assets/default_model``, the one constant
``sceneleap_core.assets.DEFAULT_MODEL_DIR``); while there is none, the node stops with a message
naming ``model:=DIR``. ``model: untrained:tiny`` builds a randomly initialised tiny model (real code
paths, meaningless grasps) for wiring tests and demos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    dynamic: bool = False  # may change at run time (parameter callback)

    @property
    def kind(self) -> type:
        return list if isinstance(self.default, list) else type(self.default)


SCHEMA: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "model directory (save_pretrained); empty = the bundled model; "
              "'untrained:tiny' = a random tiny model for wiring tests"),
    ParamSpec("backend", "cuda_graph", "inference backend: eager, compile, cuda_graph (the default: network calls "
              "replayed as CUDA graphs on a GPU, eager on a CPU), aoti, onnx, tensorrt (sceneleap_core.infer)",
              choices=("eager", "compile", "cuda_graph", "aoti", "onnx", "tensorrt")),
    ParamSpec("graph_precision", "bf16", "the cuda_graph backend's network arithmetic (the model trained in bf16): "
              "bf16 (the default), tf32, fp32 (equal to eager); on an H200 all three lift alike",
              choices=("tf32", "fp32", "bf16")),
    ParamSpec("graph_compile", True, "cuda_graph: capture torch.compile'd networks and post-processing (compiled at "
              "the first plan or the warm-up: tens of seconds; on an H200 with bf16 the plan 17.6 -> 10.4 ms at the same "
              "lift; nothing is compiled on a CPU)"),
    ParamSpec("warm_up", True, "on a GPU, plan once for a synthetic tabletop at start-up, so that the CUDA graphs "
              "(and a compiled denoiser) are ready before the first cloud"),
    ParamSpec("engine_path", "", "folder of the exported ONNX files / TensorRT engines / AOTInductor package (onnx, tensorrt, aoti); "
              "empty = a temporary folder"),
    ParamSpec("device", "cpu", "torch device: cpu, cuda or cuda:N"),
    ParamSpec("num_grasps", 32, "grasps sampled per cloud", 1, 1024, dynamic=True),
    ParamSpec("sampler", "", "scheduler (ddim, ddpm, dpmpp; euler, heun for flow models); empty = the model's default",
              choices=("", "ddim", "ddpm", "dpmpp", "euler", "heun"), dynamic=True),
    ParamSpec("steps", 10, "denoising steps", 1, 1000, dynamic=True),
    ParamSpec("oversample", 0.0, "candidates sampled per returned grasp (>= 1); 0 = the model's default (the bundled "
              "model's 8: best lift; 2 plans ~3x faster)", 0.0, 64.0, dynamic=True),
    ParamSpec("clearance", "", "finger clearance: each finger that observed points lie inside unflexed just out of "
              "them (sceneleap_core.infer.postprocess.finger_clearance): off, candidates (before the collision "
              "filter), returned (the ranked grasps only); empty = the model's default (the bundled model's: "
              "returned; candidates costs 16 ms more on an H200)", choices=("", "off", "candidates", "returned"), dynamic=True),
    ParamSpec("guidance", -1.0, "classifier-free guidance scale (1 = off; above 1 a second network pass per "
              "step); -1 = the model's default (the bundled model's 1)", -1.0, 20.0, dynamic=True),
    ParamSpec("temperature", -1.0, "sampler temperature, the initial noise's scale (0 = one grasp per anchor, "
              "1 = the trained prior); -1 = the model's default (the bundled model's 0.5)", -1.0, 4.0, dynamic=True),
    ParamSpec("seed", 0, "sampling seed", 0, 2**31 - 1, dynamic=True),
    ParamSpec("num_points", 0, "points fed to the network; 0 = the checkpoint's", 0, 1_000_000),
    ParamSpec("workspace_min", [-10.0, -10.0, -10.0], "workspace box lower corner (m, output frame)", dynamic=True),
    ParamSpec("workspace_max", [10.0, 10.0, 10.0], "workspace box upper corner (m, output frame)", dynamic=True),
    ParamSpec("target_frame", "", "output frame (tf2); empty = the cloud's frame"),
    ParamSpec("gravity", "", "gravity: 'gx gy gz' in the output frame, or a tf frame whose -z is down; "
              "empty = estimated from the table plane", dynamic=True),
    ParamSpec("max_cloud_age", 0.5, "skip clouds older than this (s); 0 = never skip", 0.0, 3600.0, dynamic=True),
    ParamSpec("max_points", 5_000_000, "reject clouds with more points than this", 1, 100_000_000),
    ParamSpec("publish_markers", True, "publish grasp_markers", dynamic=True),
    ParamSpec("top_k_markers", 5, "grasps drawn as markers", 0, 64, dynamic=True),
    ParamSpec("score_threshold", 0.0, "drop grasps scoring below this (DexGrasp.score: the learned ranker's lift "
              "probability, or exp(-energy) for a model without one)", 0.0, 1.0, dynamic=True),
    ParamSpec("mode", "continuous", "continuous: plan every newest cloud; on_request: only through plan_grasps",
              choices=("continuous", "on_request"), dynamic=True),
    ParamSpec("diagnostics_period", 1.0, "seconds between health reports", 0.1, 3600.0),
)  # fmt: skip
SPECS = {spec.name: spec for spec in SCHEMA}


@dataclass
class NodeParams:
    """Validated parameter values (attribute per :data:`SCHEMA` entry)."""

    values: dict = field(default_factory=lambda: {s.name: s.default for s in SCHEMA})

    def __getattr__(self, name: str):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def updated(self, changes: dict, *, running: bool = False) -> NodeParams:
        """A copy with ``changes`` validated; ``running``: only dynamic parameters may change."""
        values = dict(self.values)
        for name, value in changes.items():
            spec = SPECS.get(name)
            if spec is None:
                raise ValueError(f"unknown parameter {name!r}, expected one of {sorted(SPECS)}")
            if running and not spec.dynamic and value != values[name]:
                raise ValueError(f"{name}: cannot change while the node runs (restart it with the new value)")
            values[name] = validate_value(spec, value)
        lo, hi = np.asarray(values["workspace_min"]), np.asarray(values["workspace_max"])
        if np.any(lo >= hi):
            raise ValueError(
                f"workspace_min: expected below workspace_max on every axis, got {lo.tolist()} vs {hi.tolist()}"
            )
        parse_gravity(values["gravity"])
        for name in ("guidance", "temperature"):  # -1 = the model's recorded default
            if -1.0 < values[name] < 0.0:
                raise ValueError(f"{name}: expected -1 (the model's default) or >= 0, got {values[name]!r}")
        if 0.0 < values["oversample"] < 1.0:
            raise ValueError(f"oversample: expected 0 (the model's default) or >= 1, got {values['oversample']!r}")
        return NodeParams(values)


def validate_value(spec: ParamSpec, value):
    """Check one value against its spec; returns it in the spec's type (ints accepted for floats)."""
    kind = spec.kind
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:
        if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 3:  # rclpy: array.array('d')
            raise ValueError(f"{spec.name}: expected 3 numbers, got {value!r}")
        try:
            value = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"{spec.name}: expected 3 numbers, got {value!r}") from None
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{spec.name}: expected finite numbers, got {value!r}")
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{spec.name}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    if kind is float and not np.isfinite(value):
        raise ValueError(f"{spec.name}: expected a finite number, got {value!r}")
    if spec.low is not None and not (spec.low <= value <= spec.high):
        raise ValueError(f"{spec.name}: expected a value in [{spec.low}, {spec.high}], got {value!r}")
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"{spec.name}: expected one of {list(spec.choices)}, got {value!r}")
    return value


def parse_gravity(text: str) -> np.ndarray | str | None:
    """``gravity`` parameter -> None (estimate), a unit up vector (3,) (opposite to gravity), or a
    frame name (its +z is up)."""
    text = text.strip()
    if not text:
        return None
    parts = text.replace(",", " ").split()
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        if len(parts) != 1:
            raise ValueError(f"gravity: expected 'gx gy gz' or a frame name, got {text!r}") from None
        return text
    g = np.asarray(numbers, dtype=np.float64)
    if g.shape != (3,) or not np.isfinite(g).all() or np.linalg.norm(g) < 1e-9:
        raise ValueError(f"gravity: expected 3 finite numbers, not all zero, got {text!r}")
    return -g / np.linalg.norm(g)


def load_params_file(path: str | Path, node_name: str = "grasp_node") -> NodeParams:
    """Read a ROS 2 parameters YAML (``<node>: {ros__parameters: {...}}``, ``/**`` matches any node)
    and validate it against :data:`SCHEMA`."""
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    values: dict = {}
    for key in ("/**", node_name, f"/{node_name}"):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ValueError(f"{path}: {key}: expected a ros__parameters mapping")
        values.update(section["ros__parameters"] or {})
    if not values and data:
        raise ValueError(f"{path}: expected a '{node_name}' or '/**' section with ros__parameters, got {sorted(data)}")
    return NodeParams().updated(values)
