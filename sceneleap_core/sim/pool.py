"""Worker processes of the simulator: the one pool implementation behind the data engine's grasp
validator (:class:`sceneleap_core.data.validate.SimValidator`), :func:`sceneleap_core.sim.evaluate_grasps`
and training's simulated validation (:class:`sceneleap_core.train.sim_validation.SimLiftEvaluator`).

Workers never come from a plain ``fork`` of the caller: callers have usually run multi-threaded
torch (synthesis, training), and a forked child can inherit a lock held by one of those threads and
hang forever with the parent waiting on it. The default start method is ``forkserver`` (children
fork from a clean, single-threaded server) where available, else ``spawn``.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor


def default_start_method() -> str:
    """``"forkserver"`` where the platform has it (Linux), else ``"spawn"``."""
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class WorkerPool:
    """A persistent process pool, started on first :meth:`submit` and kept until :meth:`close`
    (or the end of a ``with`` block), so repeated calls pay the process start-up once.

    Args:
        workers: processes (>= 1).
        start_method: "forkserver", "spawn" or "fork" (None: :func:`default_start_method`; "fork" is
            only safe from a process that never started threads).
        initializer, initargs: run once in each worker.
    """

    def __init__(
        self,
        workers: int,
        *,
        start_method: str | None = None,
        initializer: Callable | None = None,
        initargs: tuple = (),
    ):
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers: expected a positive int, got {workers!r}")
        method = start_method or default_start_method()
        if method not in mp.get_all_start_methods():
            raise ValueError(f"start_method: expected one of {mp.get_all_start_methods()}, got {method!r}")
        self.workers, self.start_method = workers, method
        self._initializer, self._initargs = initializer, initargs
        self._executor: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in a worker (``fn`` and ``args`` must be picklable)."""
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context(self.start_method),
                initializer=self._initializer,
                initargs=self._initargs,
            )
        return self._executor.submit(fn, *args)

    @property
    def started(self) -> bool:
        return self._executor is not None

    def close(self) -> None:
        """Shut the workers down (waits for submitted work); the pool restarts on the next submit."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        raise TypeError("WorkerPool is not picklable (it owns processes); create one per process")
