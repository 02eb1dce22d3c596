"""The bench scripts' ``KEY=VALUE`` items (``bench/train.py --model-args``, ``bench/results.py
--post``: :func:`sceneleap_core.cli.key_values.parse_key_values`) and their backend names."""

from __future__ import annotations

from sceneleap_core.cli.key_values import parse_key_values

__all__ = ["backend_spec", "parse_key_values"]


def backend_spec(spec: str) -> tuple[str, dict]:
    """A bench script's backend name -> (``GraspPlanner`` backend, its extra keyword arguments):
    ``cuda_graph:tf32`` -> ``("cuda_graph", {"graph_precision": "tf32"})``, ``eager`` -> ``("eager", {})``."""
    name, _, precision = spec.partition(":")
    return name, ({"graph_precision": precision} if precision else {})
