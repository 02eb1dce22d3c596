"""The ``cuda_graph`` planner backend: the network's calls captured as CUDA graphs and replayed.

At G = 32 the eager 10-step loop on an H200 is launch-bound (~4 ms a step for a few hundred small
kernels). :class:`GraphedDenoiser` captures ``denoiser(x, t, cache)`` once per input shape (a
:class:`GraphedCall` over the noisy grasps, the timestep and the scene cache's tensors), optionally
under bf16 autocast; each call copies its inputs into the graph's buffers and replays it. The scheduler's
arithmetic between steps stays eager (a handful of kernels). On one H200 (the bundled model,
DPM-Solver++ 10, G = 32) the bf16 graph sampled in 17 ms against 41 ms eager, but its grasps left
the fp32 trajectory (palms up to 12 cm apart on the same seed), so the planner's backend captures
in fp32 (equal to eager to 1e-4) until bf16's lift success is measured.

The rest of the network's work per plan (the scene encoder with its farthest-point sampling, the
anchor score of the candidate pool, the per-scene cache the denoiser reads) is as launch-bound: a
profile of one eager plan on the H200 showed ~13 ms of GPU work under ~80 ms of wall time and
~2,750 kernel launches. :class:`GraphedCall` captures any such function of tensors (no host sync
inside) per input shape; a function that cannot be captured (a host sync, a data-dependent shape)
is run eagerly from then on, with one warning.

Off CUDA, or with a grasp mask, both call through directly (same results as eager).
Shapes: B clouds, G grasps, D grasp dimension, M scene tokens, H heads.
"""

from __future__ import annotations

import torch

from sceneleap_core.models.denoisers import SceneCache


class GraphedDenoiser:
    """``denoiser(x (B, G, D), t (B,), cache) -> (B, G, D)`` replayed from a CUDA graph per shape:
    a :class:`GraphedCall` over the flat tensors ``(x, t, *cache.to_tuple())``.

    Args:
        denoiser: the model's denoiser module (eval mode; its weights must not change afterwards).
        autocast_dtype: run the captured step under ``torch.autocast`` with this dtype (e.g.
            ``torch.bfloat16``); None = the weights' dtype. The output is returned as float32.
        max_graphs: captured shapes kept (oldest dropped first).
    """

    def __init__(self, denoiser: torch.nn.Module, autocast_dtype: torch.dtype | None = None,
                 max_graphs: int = 8) -> None:  # fmt: skip
        self.denoiser = denoiser
        self.autocast_dtype = autocast_dtype
        self._call = GraphedCall(self._step, name="denoiser step", max_graphs=max_graphs)

    def _step(self, x: torch.Tensor, t: torch.Tensor, *cache: torch.Tensor) -> torch.Tensor:
        scene = SceneCache.from_tuple(cache)
        if self.autocast_dtype is None:
            return self.denoiser(x, t, scene).float()
        with torch.autocast("cuda", dtype=self.autocast_dtype):
            return self.denoiser(x, t, scene).float()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cache: SceneCache, mask: torch.Tensor | None = None):
        if x.device.type != "cuda" or mask is not None:
            return self.denoiser(x, t, cache) if mask is None else self.denoiser(x, t, cache, mask)
        return self._call(x, t, *cache.to_tuple())  # a clone: multistep solvers keep outputs across steps


class GraphedCall:
    """``fn(*tensors) -> tensor or tuple of tensors`` replayed from a CUDA graph per input signature.

    Each call copies its inputs into the captured graph's static buffers, replays it and returns
    clones of its outputs. Inputs off CUDA call ``fn`` directly. A signature whose capture fails
    (``fn`` syncs with the host or allocates by data) is remembered and run eagerly, with a warning.

    Args:
        fn: a pure function of its tensor arguments (module weights must not change afterwards).
        name: what ``fn`` is, for the warning.
        max_graphs: captured signatures kept (oldest dropped first).
    """

    def __init__(self, fn, name: str = "call", max_graphs: int = 8) -> None:
        self.fn, self.name, self.max_graphs = fn, name, int(max_graphs)
        self._graphs: dict[tuple, tuple] = {}
        self._eager: set[tuple] = set()

    @staticmethod
    def _key(inputs: tuple[torch.Tensor, ...]) -> tuple:
        return tuple((tuple(x.shape), x.dtype, x.device.index) for x in inputs)

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> tuple:
        static_in = tuple(x.detach().clone() for x in inputs)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad():  # warm-up outside capture (allocator, kernels, JIT)
            for _ in range(2):
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            out = self.fn(*static_in)
        single = isinstance(out, torch.Tensor)
        return graph, static_in, (out,) if single else tuple(out), single

    @torch.no_grad()
    def __call__(self, *inputs: torch.Tensor):
        if not inputs or any(not isinstance(x, torch.Tensor) or x.device.type != "cuda" for x in inputs):
            return self.fn(*inputs)
        key = self._key(inputs)
        if key in self._eager:
            return self.fn(*inputs)
        if key not in self._graphs:
            try:
                captured = self._capture(inputs)
            except RuntimeError as err:  # a host sync or a data-dependent allocation inside fn
                import warnings

                torch.cuda.synchronize()
                warnings.warn(f"GraphedCall({self.name}): cannot capture it as a CUDA graph, running it eagerly: "
                              f"{str(err).splitlines()[0]}", stacklevel=2)  # fmt: skip
                self._eager.add(key)
                return self.fn(*inputs)
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))
            self._graphs[key] = captured
        graph, static_in, static_out, single = self._graphs[key]
        for buf, x in zip(static_in, inputs):
            buf.copy_(x)
        graph.replay()
        out = tuple(y.clone() for y in static_out)
        return out[0] if single else out
