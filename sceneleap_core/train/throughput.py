"""Training throughput: steps/s, samples/s and the share of wall time spent waiting for data.

A run that is slower than its GPU allows is held back either by the loader (the step waits for
the next batch) or by the host issuing the step's kernels (launch-bound: the GPU idles between
small kernels). The data-wait share tells the two apart: the time between the end of one training
batch and the start of the next is the loader's (plus Lightning's bookkeeping); everything else is
the step. Validation pauses the clock.
"""

from __future__ import annotations

import logging
import time

import lightning as L

log = logging.getLogger(__name__)


class ThroughputWindow:
    """Accumulates step intervals and data waits of one logging window (plain state, no Lightning).

    ``batch_start(t)`` / ``batch_end(t)`` take ``time.perf_counter()`` readings; ``pause()`` drops
    the interval in progress (validation, checkpoints); ``summary(batch_size)`` returns the window's
    rates and starts a new one.
    """

    def __init__(self) -> None:
        self.last_end: float | None = None
        self.window_start: float | None = None
        self.wait = 0.0
        self.steps = 0

    def batch_start(self, now: float) -> None:
        if self.last_end is not None:  # the window opens at the first batch end: earlier waits do not count
            self.wait += now - self.last_end

    def batch_end(self, now: float) -> None:
        if self.window_start is None:
            self.window_start = now
        else:
            self.steps += 1
        self.last_end = now

    def pause(self) -> None:
        """Forget the interval in progress and restart the window at the next batch."""
        self.last_end = self.window_start = None
        self.wait, self.steps = 0.0, 0

    def summary(self, batch_size: int) -> dict[str, float] | None:
        """Rates of the window so far (None before two batches have ended); resets the window."""
        if self.steps == 0 or self.last_end is None or self.window_start is None:
            return None
        span = self.last_end - self.window_start
        if span <= 0:
            return None
        out = {
            "steps_per_s": self.steps / span,
            "samples_per_s": self.steps * batch_size / span,
            "data_wait_frac": min(1.0, self.wait / span),
        }
        self.window_start, self.wait, self.steps = self.last_end, 0.0, 0
        return out


class ThroughputMonitor(L.Callback):
    """Logs ``perf/steps_per_s``, ``perf/samples_per_s`` (per rank) and ``perf/data_wait_frac``
    every ``log_every`` training batches, and a summary line to the Python log every
    ``print_every`` batches (runs without a progress bar still show their speed)."""

    def __init__(self, log_every: int = 50, print_every: int = 500):
        super().__init__()
        self.log_every, self.print_every = max(1, int(log_every)), max(1, int(print_every))
        self.window = ThroughputWindow()
        self.printed = ThroughputWindow()
        self.last: dict[str, float] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self.window.batch_start(now)
        self.printed.batch_start(now)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self.window.batch_end(now)
        self.printed.batch_end(now)
        size = _batch_size(batch)
        if (batch_idx + 1) % self.log_every == 0:
            rates = self.window.summary(size)
            if rates is not None:
                self.last = rates
                if trainer.is_global_zero:
                    for logger in trainer.loggers:
                        logger.log_metrics({f"perf/{k}": v for k, v in rates.items()}, step=trainer.global_step)
        if (batch_idx + 1) % self.print_every == 0:
            rates = self.printed.summary(size)
            if rates is not None and trainer.is_global_zero:
                log.info(
                    "step %d: %.2f steps/s, %.0f samples/s per rank, %.0f %% of the time waiting for data",
                    trainer.global_step, rates["steps_per_s"], rates["samples_per_s"], 100 * rates["data_wait_frac"],
                )  # fmt: skip

    def _pause(self, *args) -> None:
        self.window.pause()
        self.printed.pause()

    on_validation_start = _pause
    on_save_checkpoint = _pause


def _batch_size(batch) -> int:
    if isinstance(batch, dict) and "points" in batch:
        return int(batch["points"].shape[0])
    return 1
