"""The ``cuda_graph`` planner backend: the network's calls captured as CUDA graphs and replayed.

At G = 32 the eager 10-step loop on an H200 is launch-bound (~4 ms a step for a few hundred small
kernels). :class:`GraphedLoop` captures the whole reverse process of a scheduler that draws no
noise (DDIM with eta 0, DPM-Solver++, the flow ODE solvers): every denoiser call and the scheduler's
arithmetic between them, one graph per (sampler, steps, guidance, shapes), one replay per plan; the
scene cache is copied in once instead of at every step. :class:`GraphedDenoiser` captures one
``denoiser(x, t, cache)`` step per input shape (a :class:`GraphedCall` over the noisy grasps, the
timestep and the scene cache's tensors) for the schedulers that draw noise (DDPM): each step copies
its inputs into the graph's buffers and replays it, and the scheduler's arithmetic between steps
stays eager.

Both run the denoiser at a chosen precision (:func:`precision_context`): ``fp32`` equals eager to
1e-4; ``tf32`` (the planner's default) and ``bf16`` send the same seed down another trajectory
(palms 13-15 cm apart) without losing lift success. On one H200 (bundled model, critic, 8x, DDIM 10,
32 unseen-object views x 32 grasps): mean lift 82.8 / 82.7 / 83.1 % for fp32 / tf32 / bf16, sampling
17.8 / 14.2 / 15.3 ms per plan (bench/RESULTS.md).

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

import contextlib

import torch

from sceneleap_core.models.denoisers import SceneCache

PRECISIONS = ("fp32", "tf32", "bf16")


def bf16_weights(module: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``module`` whose parameters are bfloat16 (buffers, such as timestep frequencies,
    stay as they are) for the ``bf16`` precision: autocast casts float32 weights to bfloat16 at
    every matmul, and inside a captured loop those casts are replayed every step (on an H200, 1,350
    copy kernels and ~2 ms of a 10-step plan); with the weights already bfloat16 they are gone and
    the arithmetic is autocast's."""
    import copy

    out = copy.deepcopy(module)
    for param in out.parameters():
        param.data = param.data.to(torch.bfloat16)
    return out


@contextlib.contextmanager
def precision_context(precision: str):
    """The denoiser's arithmetic inside a captured graph: ``fp32`` (as the weights), ``tf32``
    (float32 matmuls on the tensor cores: ``torch.set_float32_matmul_precision("high")``, restored
    on exit; the captured kernels keep it) or ``bf16`` (``torch.autocast`` on CUDA)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def _any_on_cuda(values) -> bool:
    return any(isinstance(v, torch.Tensor) and v.is_cuda for v in values)


class CompiledOrPlain:
    """``fn`` through ``torch.compile`` (static shapes, fused Triton kernels) when ``compile`` and a
    tensor argument is on CUDA, else ``fn`` itself (calls on the CPU compile nothing: the graphed
    backend's calls run eagerly there). torch.compile fails at the first call where a machine lacks
    what inductor needs (no C compiler, an operator it cannot lower), as many exception types: then
    one warning names ``name`` and ``fn`` runs uncompiled from then on.

    Args:
        fn: the function; name: what it is, for the warning; compile: False = ``fn`` as it is.
    """

    def __init__(self, fn, name: str, compile: bool = True) -> None:
        self.plain, self.name = fn, name
        self.active = torch.compile(fn, dynamic=False) if compile else fn

    @property
    def compiled(self) -> bool:
        """Whether calls go through the compiled function (False once compiling failed)."""
        return self.active is not self.plain

    def __call__(self, *args, **kwargs):
        if not (self.compiled and _any_on_cuda((*args, *kwargs.values()))):
            return self.plain(*args, **kwargs)
        try:
            return self.active(*args, **kwargs)
        except Exception as err:  # torch.compile's failures surface at the first call, as many types
            import warnings

            first = str(err).splitlines()[0] if str(err) else ""
            warnings.warn(f"compiling {self.name} failed ({type(err).__name__}: {first}); running it uncompiled",
                          stacklevel=2)  # fmt: skip
            self.active = self.plain
            return self.plain(*args, **kwargs)


def in_precision(fn, precision: str):
    """``fn`` run under :func:`precision_context` (``precision``) at every call with a tensor on
    CUDA; calls on the CPU run as they are (eager's arithmetic, as the loop's)."""

    def run(*args, **kwargs):
        if not _any_on_cuda((*args, *kwargs.values())):
            return fn(*args, **kwargs)
        with precision_context(precision):
            return fn(*args, **kwargs)

    return run


class GraphedDenoiser:
    """``denoiser(x (B, G, D), t (B,), cache) -> (B, G, D)`` replayed from a CUDA graph per shape:
    a :class:`GraphedCall` over the flat tensors ``(x, t, *cache.to_tuple())``.

    Args:
        denoiser: the model's denoiser module (eval mode; its weights must not change afterwards).
        precision: the denoiser's arithmetic, ``fp32``, ``tf32`` or ``bf16`` (:func:`precision_context`);
            the output is returned as float32.
        max_graphs: captured shapes kept (oldest dropped first).
    """

    def __init__(self, denoiser: torch.nn.Module, precision: str = "fp32", max_graphs: int = 8) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        self.denoiser, self.precision = denoiser, precision
        self._net = bf16_weights(denoiser) if precision == "bf16" else denoiser  # what the graph runs
        self._call = GraphedCall(self._step, name="denoiser step", max_graphs=max_graphs)

    def _step(self, x: torch.Tensor, t: torch.Tensor, *cache: torch.Tensor) -> torch.Tensor:
        with precision_context(self.precision):
            return self._net(x, t, SceneCache.from_tuple(cache)).float()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cache: SceneCache, mask: torch.Tensor | None = None):
        if x.device.type != "cuda" or mask is not None:
            return self.denoiser(x, t, cache) if mask is None else self.denoiser(x, t, cache, mask)
        return self._call(x, t, *cache.to_tuple())  # a clone: multistep solvers keep outputs across steps


class GraphedLoop:
    """The reverse process ``x_init (B, G, D) -> x_0 (B, G, D)`` replayed from one CUDA graph per
    (sampler, steps, guidance) and input shapes: a :class:`GraphedCall` over ``(x_init, *cache,
    *null_cache)`` running :meth:`DenoisingLoop.reverse` with the eager denoiser.

    Only for schedulers that draw no noise (``scheduler.draws_noise`` False): a captured random draw
    would replay the same noise. Off CUDA it runs the loop directly (the eager result, fp32).

    Args:
        denoiser: the model's denoiser module (eval mode; its weights must not change afterwards).
        objective: the model's objective (``model_time``).
        make_scheduler: ``sampler name -> scheduler`` (the model's ``make_scheduler``).
        precision: the denoiser's arithmetic on CUDA (:func:`precision_context`); the scheduler's
            update stays float32.
        max_graphs: captured (sampler, steps, guidance, shapes) kept per sampler setting.
        compile: on CUDA, capture a ``torch.compile``'d denoiser (static shapes, fused Triton
            kernels; compiled in the warm-up before the first capture, about a minute) instead of
            the eager one. A compilation that fails (no C compiler, an operator inductor cannot
            lower) is reported once as a warning and the eager denoiser takes its place.
    """

    def __init__(self, denoiser: torch.nn.Module, objective, make_scheduler, precision: str = "fp32",
                 max_graphs: int = 8, compile: bool = False) -> None:  # fmt: skip
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        self.denoiser, self.objective, self.make_scheduler = denoiser, objective, make_scheduler
        self.precision, self.max_graphs = precision, int(max_graphs)
        net = bf16_weights(denoiser) if precision == "bf16" else denoiser  # what the graphs run on CUDA
        self._net = CompiledOrPlain(net, "the denoiser", compile=compile)  # plain for good if compiling fails
        self._calls: dict[tuple, GraphedCall] = {}

    def _denoise(self, x: torch.Tensor, t: torch.Tensor, cache: SceneCache) -> torch.Tensor:
        if x.device.type != "cuda":
            return self.denoiser(x, t, cache)
        with precision_context(self.precision):
            return self._net(x, t, cache).float()

    def _graphed(self, sampler: str, steps: int, guidance_scale: float, device: torch.device) -> GraphedCall:
        from sceneleap_core.models.denoising_loop import DenoisingLoop

        key = (sampler, int(steps), float(guidance_scale), device)
        if key not in self._calls:
            scheduler = self.make_scheduler(sampler)
            if scheduler is None or scheduler.draws_noise:
                raise ValueError(f"GraphedLoop: expected a scheduler that draws no noise, got {sampler!r}")
            scheduler.set_timesteps(int(steps), device)  # the timesteps' host -> device copy stays outside
            loop = DenoisingLoop(self._denoise, self.objective, scheduler, guidance_scale=guidance_scale)

            def reverse(x: torch.Tensor, *flat: torch.Tensor) -> torch.Tensor:
                half = len(flat) // 2 if loop.guided else len(flat)
                null = SceneCache.from_tuple(flat[half:]) if loop.guided else None
                return loop.reverse(SceneCache.from_tuple(flat[:half]), x, null_cache=null)

            if len(self._calls) >= self.max_graphs:
                self._calls.pop(next(iter(self._calls)))
            self._calls[key] = GraphedCall(reverse, f"{sampler} {steps}-step loop", max_graphs=self.max_graphs)
        return self._calls[key]

    @torch.no_grad()
    def __call__(self, sampler: str, steps: int, cache: SceneCache, x_init: torch.Tensor, *,
                 guidance_scale: float = 1.0, null_cache: SceneCache | None = None) -> torch.Tensor:  # fmt: skip
        """``steps`` of ``sampler`` from ``x_init`` (B, G, D) over the conditional ``cache`` (and the
        unconditional ``null_cache`` when ``guidance_scale`` != 1) -> (B, G, D)."""
        if guidance_scale != 1.0 and null_cache is None:
            raise ValueError(f"null_cache: expected the unconditional scene cache for guidance_scale={guidance_scale}")
        call = self._graphed(sampler, steps, guidance_scale, x_init.device)
        flat = cache.to_tuple() + (null_cache.to_tuple() if guidance_scale != 1.0 else ())
        return call(x_init, *flat)


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


class GraphedPost:
    """The planner's post-processing (:func:`sceneleap_core.infer.planner.select_grasps`: collision
    check, energy, ranking, diverse top-k, finger clearance of the returned grasps) replayed from
    one CUDA graph per (settings, ranker, shapes), with a :class:`~sceneleap_core.infer.postprocess.PairBudget`
    fixing the sizes of its pair searches. Called like ``select_grasps`` (same arguments, no
    ``budget`` / ``lap``); returns its dict. Off CUDA it calls ``select_grasps`` with the budget.

    Eagerly that work is ~1,600 small kernels and several host syncs per plan (8x candidates of
    G = 32): launch-bound on a GPU.

    Args:
        budget: ``PairBudget`` keyword arguments (sizes).
        max_graphs: captured settings kept (oldest dropped first).
        compile: capture a ``torch.compile``'d post-processing (:class:`CompiledOrPlain`: the plain
            one for good if compiling fails).
    """

    def __init__(self, budget: dict | None = None, max_graphs: int = 8, compile: bool = False) -> None:
        self.budget, self.max_graphs, self.compile = dict(budget or {}), int(max_graphs), bool(compile)
        self._calls: dict[tuple, tuple] = {}

    def _entry(self, key: tuple, layout: tuple, hand, num_grasps: int, config, ranker) -> tuple:
        from sceneleap_core.infer.planner import select_grasps
        from sceneleap_core.infer.postprocess import PairBudget
        from sceneleap_core.infer.preprocess import SupportPlane

        has_plane, has_anchors, has_up, names = layout
        holder: dict[str, tuple] = {}  # the output layout, filled at the first (warm-up) call

        def run(pose, joints, cloud, *rest):
            rest = list(rest)
            plane = SupportPlane(rest.pop(0), rest.pop(0)) if has_plane else None
            anchors = rest.pop(0) if has_anchors else None
            up = rest.pop(0) if has_up else None
            terms = dict(zip(names, rest))
            out = select_grasps(hand, cloud, plane, pose, joints, num_grasps, config, anchors=anchors, terms=terms,
                                ranker=ranker, up=up, budget=PairBudget(cloud.device, **self.budget))  # fmt: skip
            flat_terms = out.pop("terms")
            holder["keys"], holder["terms"] = tuple(out), tuple(flat_terms)
            return tuple(out.values()) + tuple(flat_terms.values())

        if len(self._calls) >= self.max_graphs:
            self._calls.pop(next(iter(self._calls)))
        fn = CompiledOrPlain(run, "the post-processing", compile=self.compile)
        self._calls[key] = (GraphedCall(fn, "post-processing", max_graphs=self.max_graphs), holder)
        return self._calls[key]

    @torch.no_grad()
    def __call__(self, hand, cloud: torch.Tensor, plane, pose: torch.Tensor, joints: torch.Tensor, num_grasps: int,
                 config, *, anchors: torch.Tensor | None = None, terms: dict | None = None, ranker=None,
                 up: torch.Tensor | None = None) -> dict:  # fmt: skip
        import dataclasses

        terms = dict(terms or {})
        names = tuple(sorted(terms))
        layout = (plane is not None, anchors is not None, up is not None, names)
        key = (layout, id(hand), int(num_grasps), dataclasses.astuple(config), id(ranker))
        call, holder = self._calls.get(key) or self._entry(key, layout, hand, num_grasps, config, ranker)
        dt, dev = hand.dtype, hand.device
        inputs = [pose, joints, cloud]
        if plane is not None:
            from sceneleap_core.infer.postprocess import plane_tensors

            inputs += list(plane_tensors(plane, dt, dev))
        inputs += [x for x in (anchors, up) if x is not None] + [terms[n] for n in names]
        flat = call(*inputs)
        keys, term_names = holder["keys"], holder["terms"]
        out = dict(zip(keys, flat[: len(keys)]))
        out["terms"] = dict(zip(term_names, flat[len(keys) :]))
        return out
