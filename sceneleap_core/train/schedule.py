"""Learning-rate schedules stepped once per optimizer step."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float,
                         time_progress: float = 0.0) -> float:  # fmt: skip
    """Multiplier of the peak lr at optimizer step ``step``: linear warmup over ``warmup_steps`` from
    1/warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps`` (held there after).
    ``time_progress`` (fraction of a wall-clock budget spent, 0 = none) advances the decay when the
    clock runs out before the steps do: progress = max(step progress, time progress)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max((step - warmup_steps) / span, time_progress))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_constant_factor(step: int, *, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps if warmup_steps > 0 and step < warmup_steps else 1.0


class _Factor:
    """Picklable lr-lambda (a module-level callable, not a closure). ``time_progress``: the fraction
    of the run's wall-clock budget spent, set by the training loop before each step
    (:func:`set_time_progress`); the cosine ends at whichever runs out first."""

    def __init__(self, kind: str, warmup_steps: int, total_steps: int, min_ratio: float):
        self.kind, self.warmup_steps, self.total_steps, self.min_ratio = kind, warmup_steps, total_steps, min_ratio
        self.time_progress = 0.0

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return warmup_constant_factor(step, warmup_steps=self.warmup_steps)
        return warmup_cosine_factor(step, warmup_steps=self.warmup_steps, total_steps=self.total_steps,
                                    min_ratio=self.min_ratio, time_progress=self.time_progress)  # fmt: skip


def set_time_progress(scheduler, fraction: float) -> bool:
    """Tell a :func:`build_scheduler` cosine schedule how much of the wall-clock budget is spent
    (0..1); False when the scheduler has no such notion (onecycle, another scheduler)."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or []
    factors = [f for f in lambdas if isinstance(f, _Factor)]
    for f in factors:
        f.time_progress = min(1.0, max(0.0, float(fraction)))
    return bool(factors)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    kind: str,
    *,
    max_steps: int,
    warmup_steps: int,
    min_lr_ratio: float,
    lr: float,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step scheduler: "cosine" / "constant" (LambdaLR with warmup) or "onecycle"."""
    if kind == "onecycle":
        pct = min(0.5, max(warmup_steps / max(1, max_steps), 1e-3))
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=lr,
            total_steps=max(2, max_steps),
            pct_start=pct,
            final_div_factor=1.0 / max(min_lr_ratio, 1e-4) / 25.0,
        )
    if kind in ("cosine", "constant"):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _Factor(kind, warmup_steps, max_steps, min_lr_ratio))
    raise ValueError(f"optim.schedule: expected one of ('cosine', 'onecycle', 'constant'), got {kind!r}")
