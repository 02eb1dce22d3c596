"""Shared timing helper of the benchmark scripts (imported as ``timing`` from ``bench/``)."""

from __future__ import annotations

import statistics
import time

import torch


def timed(fn, device: str, repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in ms over ``repeat`` calls after ``warmup`` calls,
    synchronizing CUDA around each call when ``device`` is "cuda"."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
