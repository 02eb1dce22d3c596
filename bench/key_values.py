"""The bench scripts' ``KEY=VALUE`` items (``bench/train.py --model-args``, ``bench/results.py
--post``: :func:`sceneleap_core.cli.key_values.parse_key_values`) and their backend names."""

from __future__ import annotations

from sceneleap_core.cli.key_values import parse_key_values

__all__ = ["backend_spec", "parse_key_values"]


def backend_spec(spec: str) -> tuple[str, dict]:
    """A bench script's backend name -> (``GraspPlanner`` backend, its extra keyword arguments):
    ``cuda_graph:tf32`` -> ``("cuda_graph", {"graph_precision": "tf32"})``, ``eager`` -> ``("eager", {})``;
    further fields are flags: ``eager-post`` keeps the filter and ranking out of the graphs
    (``graph_post=False``), ``compile`` captures a compiled denoiser (``graph_compile=True``),
    ``host-prepare`` / ``device-prepare`` prepare the cloud with numpy on the host / torch on the
    model's device (``prepare_on_device=False`` / ``True``; the default: on CUDA), ``unfused-depth``
    keeps the checks' pair searches instead of the fused depth kernels (``extra["post"]``: PostConfig
    overrides for the caller to apply, ``{"fused_depth": False}``)."""
    parts = spec.split(":")
    name, precision, flags = parts[0], (parts[1] if len(parts) > 1 else ""), parts[2:]
    known = {
        "eager-post": ("graph_post", False),
        "compile": ("graph_compile", True),
        "host-prepare": ("prepare_on_device", False),
        "device-prepare": ("prepare_on_device", True),
        "unfused-depth": ("post", {"fused_depth": False}),
    }
    bad = [f for f in flags if f not in known]
    if bad:
        raise ValueError(f"{spec}: unknown backend flag {bad[0]!r}; expected some of {sorted(known)}")
    extra = {"graph_precision": precision} if precision else {}
    return name, {**extra, **dict(known[f] for f in flags)}
