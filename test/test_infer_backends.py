"""Backends of the planner: ONNX export parity (onnxruntime CPU vs torch), the non-eager sampling path,
the TensorRT engine cache key (the build itself skips where TensorRT is absent)."""

import copy
import json

import numpy as np
import pytest
import torch
from _infer_common import hand as _hand
from _infer_common import normalizer, randomize, tabletop

from sceneleap_core.infer.export import OnnxNetworks, engine_cache_key, export_onnx, trt_available
from sceneleap_core.infer.planner import GraspPlanner
from sceneleap_core.models import build_generator
from sceneleap_core.models.objectives import check_guidance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("anchor", ["seed", "none", "seed+context"])
def test_onnx_encoder_and_denoiser_step_match_torch_with_a_dynamic_grasp_count(tmp_path, anchor):
    torch.manual_seed(0)
    context = {"anchor_region_knn": 8, "anchor_scene": True} if anchor == "seed+context" else {}
    anchor = anchor.split("+")[0]
    model = randomize(build_generator("tiny", anchor=anchor, **context).eval())
    export_onnx(model, tmp_path, num_points=200, num_grasps=8)
    runner = OnnxNetworks(tmp_path, providers=["CPUExecutionProvider"])
    pts = torch.rand(1, 200, 3) - 0.5
    for g in (3, 17):  # neither is the exported G
        anchors = pts[:, torch.randperm(200)[:g]] if anchor == "seed" else None
        ours = runner.encode(pts, anchors)
        ref = model.encode_scene(pts, anchors=anchors, deterministic=True)
        for a, b in zip(ours.to_tuple(), ref.to_tuple(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        x, t = torch.randn(1, g, 25), torch.tensor(370.0)
        out, want = runner.denoise(x, t, ours), model.denoiser(x, t, ref)
        assert want.abs().max() > 1e-2, "a non-trivial output"
        torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="points"):
        runner.encode(torch.rand(1, 100, 3), None if anchor == "none" else pts[:, :3])


PLAN_ARGS = {"num_grasps": 6, "steps": 3, "sampler": "ddim", "seed": 2, "filter": False, "oversample": 1, "diversity": 0}
PLANNER_KW = {"num_points": 200, "frame": "gravity"}


def _eager_and_backend(backend: str, directory, seed: int):
    """A random tiny model, a tabletop cloud, and its eager planner next to one with ``backend``
    (files in ``directory``): (model, points, eager planner, backend planner)."""
    torch.manual_seed(seed)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    pts, _ = tabletop(n_table=500, n_box=200)
    eager = GraspPlanner(model, normalizer(), _hand(), **PLANNER_KW)
    other = GraspPlanner(model, normalizer(), _hand(), backend=backend, onnx_dir=directory, **PLANNER_KW)
    return model, pts, eager, other


def test_planner_onnx_backend_plans_the_eager_grasps(tmp_path):
    model, pts, eager, onnx = _eager_and_backend("onnx", tmp_path, seed=0)
    args = PLAN_ARGS
    a, b = eager.plan(pts, **args), onnx.plan(pts, **args)
    torch.testing.assert_close(b.vectors, a.vectors, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.palm_pose, a.palm_pose, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="guidance"):
        onnx.plan(pts, guidance=2.0, **args)
    with pytest.raises(ValueError, match="backend"):
        GraspPlanner(model, normalizer(), _hand(), backend="tflite")


def test_the_backend_sampling_path_matches_the_model_with_guidance():
    torch.manual_seed(1)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    planner = GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity")
    planner.backend, planner._networks, planner._denoiser = "compile", None, model.denoiser  # the path, uncompiled
    pts = torch.rand(1, 128, 3) - 0.5
    anchors = pts[:, :5]
    for w in (1.0, 2.5):
        z = planner._sample_backend(pts, 5, 3, "ddim", w, torch.Generator().manual_seed(3), anchors)
        ref = model.sample(pts, steps=3, sampler="ddim", guidance_scale=w, generator=torch.Generator().manual_seed(3),
                           anchors=anchors)  # fmt: skip
        torch.testing.assert_close(z, ref)


def test_the_planner_guidance_is_the_default_and_a_caller_s_wins():
    torch.manual_seed(1)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    pts = torch.rand(1, 128, 3) - 0.5
    anchors = pts[:, :5]
    guided = GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity", guidance=2.5)
    plain = GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity")

    def sample(planner, **kwargs):
        return planner.sample_network(pts, anchors=anchors, steps=3, sampler="ddim", seed=3, **kwargs).vectors

    ref = model.sample(pts, steps=3, sampler="ddim", guidance_scale=2.5, generator=torch.Generator().manual_seed(3),
                       anchors=anchors)  # fmt: skip
    torch.testing.assert_close(sample(guided), ref)  # the planner's own scale is used
    torch.testing.assert_close(sample(guided, guidance_scale=1.0), sample(plain))  # and a caller's wins
    assert not torch.allclose(sample(guided), sample(plain), atol=1e-3)
    for bad in (-0.5, float("nan"), float("inf"), "strong", None):
        with pytest.raises(ValueError, match="guidance"):
            check_guidance(bad)
    with pytest.raises(ValueError, match="guidance"):
        GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity", guidance=-1.0)


def test_sampler_temperature_scales_the_start_alike_on_every_path_and_zero_forgets_the_seed():
    """The planner's backend path and the model's ``sample`` start from the same scaled noise; at
    temperature 0 every seed gives the same grasps (the start is the prior's centre), at 1 they differ."""
    torch.manual_seed(1)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    planner = GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity", temperature=0.5)
    pts = torch.rand(1, 128, 3) - 0.5
    anchors = pts[:, :5]

    def sample(seed, temperature):
        return model.sample(pts, steps=3, sampler="ddim", generator=torch.Generator().manual_seed(seed),
                            anchors=anchors, temperature=temperature)  # fmt: skip

    planner.backend, planner._networks, planner._denoiser = "compile", None, model.denoiser  # the path, uncompiled
    z = planner._sample_backend(pts, 5, 3, "ddim", 1.0, torch.Generator().manual_seed(3), anchors, temperature=0.5)
    torch.testing.assert_close(z, sample(3, 0.5))
    assert not torch.allclose(sample(3, 0.5), sample(3, 1.0), atol=1e-3)
    torch.testing.assert_close(sample(3, 0.0), sample(4, 0.0))
    assert not torch.allclose(sample(3, 1.0), sample(4, 1.0), atol=1e-3)
    eager = GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity", temperature=0.0)
    a = eager.sample_network(pts, anchors=anchors, steps=3, sampler="ddim", seed=1)
    b = eager.sample_network(pts, anchors=anchors, steps=3, sampler="ddim", seed=2)
    torch.testing.assert_close(a.vectors, b.vectors)  # the planner's own temperature is used
    c = eager.sample_network(pts, anchors=anchors, steps=3, sampler="ddim", seed=2, temperature=1.0)
    assert not torch.allclose(a.vectors, c.vectors, atol=1e-3)  # and a caller's wins
    for bad in (-0.1, float("nan"), float("inf"), "warm"):
        with pytest.raises(ValueError, match="temperature"):
            GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity", temperature=bad)
    with pytest.raises(ValueError, match="temperature"):
        sample(3, -1.0)


def test_engine_cache_key_changes_with_model_library_gpu_and_precision():
    base = engine_cache_key(b"onnx-bytes", "10.9.0", "NVIDIA H200", "fp16", {"x": [[1, 1, 25], [1, 32, 25]]})
    assert base == engine_cache_key(b"onnx-bytes", "10.9.0", "NVIDIA H200", "fp16", {"x": [[1, 1, 25], [1, 32, 25]]})
    others = [
        engine_cache_key(b"onnx-bytez", "10.9.0", "NVIDIA H200", "fp16", {"x": [[1, 1, 25], [1, 32, 25]]}),
        engine_cache_key(b"onnx-bytes", "10.10.0", "NVIDIA H200", "fp16", {"x": [[1, 1, 25], [1, 32, 25]]}),
        engine_cache_key(b"onnx-bytes", "10.9.0", "NVIDIA A100", "fp16", {"x": [[1, 1, 25], [1, 32, 25]]}),
        engine_cache_key(b"onnx-bytes", "10.9.0", "NVIDIA H200", "bf16", {"x": [[1, 1, 25], [1, 32, 25]]}),
        engine_cache_key(b"onnx-bytes", "10.9.0", "NVIDIA H200", "fp16", {"x": [[1, 1, 25], [1, 64, 25]]}),
    ]
    assert len({base, *others}) == 6


_TRT, _WHY = trt_available()


@pytest.mark.skipif(not (_TRT and torch.cuda.is_available()), reason=f"needs TensorRT and CUDA: {_WHY}")
def test_tensorrt_engine_is_built_once_and_reused(tmp_path):  # pragma: no cover - no TensorRT in CI
    from sceneleap_core.infer.export import TrtNetworks

    model = randomize(build_generator("tiny", anchor="seed").eval()).cuda()
    export_onnx(model, tmp_path, num_points=200)
    nets = TrtNetworks(tmp_path, precision="fp16")
    engines = sorted((tmp_path / "trt_cache").glob("*.engine"))
    assert len(engines) == 2
    stamp = [e.stat().st_mtime_ns for e in engines]
    TrtNetworks(tmp_path, precision="fp16")
    assert [e.stat().st_mtime_ns for e in engines] == stamp, "cached engines reused"
    pts = torch.rand(1, 200, 3, device="cuda") - 0.5
    cache = nets.encode(pts, pts[:, :4])
    ref = model.encode_scene(pts, anchors=pts[:, :4], deterministic=True)
    assert np.allclose(cache.cond.cpu(), ref.cond.cpu(), atol=2e-2)


def test_every_front_end_offers_every_planner_backend():
    import argparse

    from sceneleap_core.cli.plan_cmd import register
    from sceneleap_core.infer.planner import BACKENDS
    from sceneleap_ros.parameters import SPECS

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    plan = sub.choices["plan"]
    cli = next(a.choices for a in plan._actions if a.dest == "backend")
    ros = SPECS["backend"].choices
    assert tuple(cli) == tuple(ros) == BACKENDS


def test_cuda_graph_backend_replays_the_eager_denoiser():
    from sceneleap_core.infer.cuda_graph import GraphedDenoiser

    torch.manual_seed(2)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    pts = torch.rand(1, 128, 3) - 0.5
    anchors = pts[:, :6]
    cache = model.encode_scene(pts, anchors=anchors, deterministic=True)
    x, t = torch.randn(1, 6, 25), torch.tensor(40.0)
    graphed = GraphedDenoiser(model.denoiser)
    torch.testing.assert_close(graphed(x, t, cache), model.denoiser(x, t, cache))  # off CUDA: the eager call
    planner = GraspPlanner(model, normalizer(), _hand(), num_points=128, frame="gravity", backend="cuda_graph")
    assert isinstance(planner._denoiser, GraphedDenoiser)
    assert planner.graph_precision == "tf32" == planner._loop.precision, "the default: lift-tested on the H200"
    if not torch.cuda.is_available():
        pytest.skip("the graph capture itself needs CUDA (measured by bench/latency.py --backends cuda_graph)")
    model_gpu, g_pts = model.cuda(), pts.cuda()
    cache = model_gpu.encode_scene(g_pts, anchors=anchors.cuda(), deterministic=True)
    graphed = GraphedDenoiser(model_gpu.denoiser, precision="fp32")
    for seed in (0, 1):  # the second call replays the captured graph with new inputs
        xg = torch.randn(1, 6, 25, generator=torch.Generator().manual_seed(seed)).cuda()
        torch.testing.assert_close(graphed(xg, t.cuda(), cache), model_gpu.denoiser(xg, t.cuda(), cache), atol=1e-4, rtol=1e-4)
    assert len(graphed._call._graphs) == 1


@pytest.mark.parametrize("sampler,guidance", [("ddim", 1.0), ("dpmpp", 1.0), ("ddim", 2.0)])
def test_graphed_loop_replays_the_eager_reverse_process(sampler, guidance):
    """The whole noise-free reverse process as one graph: the eager loop's result off CUDA (a call
    through) and on it (captured once per sampler / steps / guidance / shape, then replayed)."""
    from sceneleap_core.infer.cuda_graph import GraphedLoop
    from sceneleap_core.models.denoising_loop import DenoisingLoop

    torch.manual_seed(5)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    pts = torch.rand(1, 128, 3) - 0.5
    with pytest.raises(ValueError, match="draws no noise"):
        GraphedLoop(model.denoiser, model.objective, model.make_scheduler)("ddpm", 3, None, torch.zeros(1, 6, 25))
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        model, p = model.to(device), pts.to(device)
        anchors = p[:, :6]
        cache = model.encode_scene(p, anchors=anchors, deterministic=True)
        null = model.encode_scene(p, anchors=anchors, deterministic=True, drop=True) if guidance != 1 else None
        graphed = GraphedLoop(model.denoiser, model.objective, model.make_scheduler)
        eager = DenoisingLoop(model.denoiser, model.objective, model.make_scheduler(sampler), guidance_scale=guidance)
        for seed in (0, 1):  # on CUDA the second call replays the captured graph with new noise
            x = torch.randn(1, 6, 25, generator=torch.Generator().manual_seed(seed)).to(device)
            ref = eager(cache, x, num_inference_steps=4, null_cache=null)
            out = graphed(sampler, 4, cache, x, guidance_scale=guidance, null_cache=null)
            torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        (call,) = graphed._calls.values()
        assert len(call._graphs) == (1 if device == "cuda" else 0) and not call._eager


def test_graph_precision_is_checked_and_tf32_bf16_graphs_stay_near_fp32():
    """``graph_precision``: named values only; off CUDA the eager fp32 result whatever it says; on
    CUDA the tf32 / bf16 loops are captured and stay near the fp32 loop (random tiny weights; the
    trained model's lift success under each is bench/results.py's to measure)."""
    from sceneleap_core.infer.cuda_graph import GraphedLoop, precision_context

    torch.manual_seed(6)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    with pytest.raises(ValueError, match="graph_precision"):
        GraspPlanner(model, normalizer(), _hand(), backend="cuda_graph", graph_precision="fp16", **PLANNER_KW)
    with pytest.raises(ValueError, match="precision"):
        GraphedLoop(model.denoiser, model.objective, model.make_scheduler, precision="int8")
    before = torch.get_float32_matmul_precision()
    with precision_context("tf32"):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == before, "restored on exit"
    pts = torch.rand(1, 128, 3) - 0.5
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        model, p = model.to(device), pts.to(device)
        cache = model.encode_scene(p, anchors=p[:, :6], deterministic=True)
        x = torch.randn(1, 6, 25, generator=torch.Generator().manual_seed(0)).to(device)
        loops = {k: GraphedLoop(model.denoiser, model.objective, model.make_scheduler, precision=k)
                 for k in ("fp32", "tf32", "bf16")}  # fmt: skip
        # a compiled denoiser captured in the graph (off CUDA: the eager one, nothing compiled)
        loops["compiled"] = GraphedLoop(model.denoiser, model.objective, model.make_scheduler, compile=True)
        out = {k: loop("ddim", 4, cache, x) for k, loop in loops.items()}
        for k in ("tf32", "bf16", "compiled"):
            assert torch.isfinite(out[k]).all() and out[k].dtype == torch.float32
            tol = 0 if device == "cpu" else (1e-3 if k == "compiled" else 0.1)
            assert (out[k] - out["fp32"]).abs().max() <= tol, f"{k} on {device}"
        if device == "cuda":
            assert all(len(next(iter(loop._calls.values()))._graphs) == 1 for loop in loops.values())


def test_a_denoiser_that_fails_to_compile_runs_uncompiled_after_one_warning(monkeypatch):
    """``graph_compile``: torch.compile fails at the first call where a machine lacks what inductor
    needs; the loop then warns once and runs the plain denoiser for good. Calls on the CPU never
    take the compiled function."""
    from sceneleap_core.infer import cuda_graph
    from sceneleap_core.infer.cuda_graph import CompiledOrPlain, GraphedLoop

    never = CompiledOrPlain(lambda x: x + 1, "a function")
    never.active = lambda x: pytest.fail("compiled on the CPU")
    assert never(torch.ones(2)).tolist() == [2.0, 2.0] and never.compiled
    monkeypatch.setattr(cuda_graph, "_any_on_cuda", lambda values: True)  # as if the tensors were on CUDA

    torch.manual_seed(8)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    loop = GraphedLoop(model.denoiser, model.objective, model.make_scheduler, compile=True)
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("InductorError: no working C compiler\nmore detail")

    loop._net.active = broken  # what a failing torch.compile wrapper does at its first call
    pts = torch.rand(1, 128, 3) - 0.5
    with torch.no_grad():
        cache = model.encode_scene(pts, anchors=pts[:, :6], deterministic=True)
        x, t = torch.randn(1, 6, 25, generator=torch.Generator().manual_seed(0)), torch.full((1,), 300.0)
        with pytest.warns(UserWarning, match="compiling the denoiser failed .*no working C compiler.*uncompiled"):
            got = loop._net(x, t, cache)
        torch.testing.assert_close(got, model.denoiser(x, t, cache))
        again = loop._net(x, t, cache)  # no second attempt, no second warning
    torch.testing.assert_close(again, got)
    assert calls == [1] and not loop._net.compiled


def test_bf16_weights_copy_computes_what_autocast_computes():
    """The ``bf16`` graphs run a copy of the denoiser with bfloat16 parameters (no weight casts to
    replay every step); under autocast it computes what autocast makes of the float32 original."""
    from sceneleap_core.infer.cuda_graph import bf16_weights

    torch.manual_seed(7)
    model = randomize(build_generator("tiny", anchor="seed").eval())
    net = bf16_weights(model.denoiser)
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())
    assert all(p.dtype == torch.float32 for p in model.denoiser.parameters()), "the original is untouched"
    assert all(a.dtype == b.dtype for a, b in zip(net.buffers(), model.denoiser.buffers())), "buffers stay"
    pts = torch.rand(1, 128, 3) - 0.5
    with torch.no_grad():
        cache = model.encode_scene(pts, anchors=pts[:, :6], deterministic=True)
        x, t = torch.randn(1, 6, 25, generator=torch.Generator().manual_seed(0)), torch.full((1,), 300.0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, ref = net(x, t, cache).float(), model.denoiser(x, t, cache).float()
        full = model.denoiser(x, t, cache)
    torch.testing.assert_close(got, ref)
    assert 0 < (got - full).abs().max() < 0.1, "bfloat16 arithmetic, near the float32 result"


@pytest.mark.parametrize("anchor", ["seed", "none", "seed+context"])
def test_cuda_graph_planner_plans_the_eager_grasps(anchor):
    """The encoder, the anchor score and the flattened scene cache go through GraphedCall (a call
    through off CUDA, graphs on it): the same grasps as eager either way."""
    from sceneleap_core.infer.cuda_graph import GraphedCall

    torch.manual_seed(4)
    context = {"anchor_region_knn": 8, "anchor_scene": True} if anchor == "seed+context" else {}
    model = randomize(build_generator("tiny", anchor=anchor.split("+")[0], **context).eval())
    pts, _ = tabletop(n_table=500, n_box=200)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        model = model.to(device)
        hand = _hand() if device == "cpu" else copy.deepcopy(_hand()).to(device)  # (the shared one stays on the CPU)
        eager = GraspPlanner(model, normalizer().to(device), hand, **PLANNER_KW)
        graph = GraspPlanner(model, normalizer().to(device), hand, backend="cuda_graph", graph_precision="fp32",
                             **PLANNER_KW)  # fmt: skip
        assert isinstance(graph._graphed["encode"], GraphedCall)
        for seed in (2, 3):  # on CUDA the second plan replays the captured graphs with new inputs
            a, b = eager.plan(pts, **{**PLAN_ARGS, "seed": seed}), graph.plan(pts, **{**PLAN_ARGS, "seed": seed})
            torch.testing.assert_close(b.vectors, a.vectors, atol=1e-4, rtol=1e-4)
            assert set(b.terms) == set(a.terms)
            if anchor != "none":
                torch.testing.assert_close(b.terms["anchor_logit"], a.terms["anchor_logit"], atol=1e-4, rtol=1e-4)
            # the filter and ranking (one graph on CUDA) return the eager plan's grasps
            assert len(b) == len(a) and b.rejected == a.rejected
            torch.testing.assert_close(b.palm_pose, a.palm_pose, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(b.joints, a.joints, atol=1e-4, rtol=1e-4)
            assert ("post" in b.timings) == (device == "cuda")
            stages = sum(v for k, v in b.timings.items() if k != "total")
            assert 0 < stages <= b.timings["total"] + 0.5, "stages (GPU timeline on CUDA) within the wall time"
        if device == "cuda":
            assert len(graph._graphed["encode"]._graphs) == 1 and len(graph._graphed["cache"]._graphs) == 1
            (loop,) = graph._loop._calls.values()  # DDIM: the whole reverse process as one graph
            assert len(loop._graphs) == 1 and not loop._eager
            ((post, _),) = graph._post._calls.values()  # captured once, replayed by the second plan
            assert len(post._graphs) == 1 and not post._eager
            prepare = graph._preparer._calls.values()  # the cloud's preparation: one graph, no fallback
            assert sum(len(c._graphs) for c in prepare) == 1 and not any(c._eager for c in prepare)


def test_graphed_call_runs_through_off_cuda_and_eagerly_what_it_cannot_capture():
    from sceneleap_core.infer.cuda_graph import GraphedCall

    calls = []

    def fn(x, y):
        calls.append(1)
        return x * 2, x + y

    two = GraphedCall(fn, "test")
    a, b = two(torch.ones(3), torch.arange(3.0))
    assert torch.equal(a, torch.full((3,), 2.0)) and torch.equal(b, torch.tensor([1.0, 2.0, 3.0])) and calls
    if not torch.cuda.is_available():
        pytest.skip("capture and its fallback need CUDA (bench/profile_plan.py measures them on the GPU)")
    x = torch.arange(4.0, device="cuda")
    out = GraphedCall(lambda v: v[v > 1.5], "data-dependent")  # a host sync: not capturable
    with pytest.warns(UserWarning, match="cannot capture"):
        torch.testing.assert_close(out(x), x[2:])
    torch.testing.assert_close(out(x + 1), (x + 1)[1:])  # remembered: eager, no second warning needed
    one = GraphedCall(lambda v: v.sin(), "sin")
    for k in range(3):
        torch.testing.assert_close(one(x + k), (x + k).sin())
    assert len(one._graphs) == 1


def test_aoti_backend_plans_the_eager_grasps_and_reuses_its_package(tmp_path):
    """torch.export + AOTInductor of the denoiser step (compiles C++: about a minute on a small CPU)."""
    from sceneleap_core.infer.aoti import PACKAGE_NAME, model_key

    try:
        model, pts, eager, aoti = _eager_and_backend("aoti", tmp_path, seed=3)
    except RuntimeError as err:  # the loader of torch 2.11 (the GPU machine's) crashed the probe child
        if "cannot load the compiled package" in str(err) and torch.__version__ < "2.12":
            pytest.skip(f"torch {torch.__version__} cannot load its own AOTInductor package here: {err}")
        raise
    args = PLAN_ARGS
    a, b = eager.plan(pts, **args), aoti.plan(pts, **args)
    torch.testing.assert_close(b.vectors, a.vectors, atol=1e-4, rtol=1e-4)
    c = aoti.plan(pts, **{**args, "num_grasps": 11})  # G is dynamic in the package
    assert c.vectors.shape[1] == 11
    stamp = (tmp_path / PACKAGE_NAME).stat().st_mtime_ns
    GraspPlanner(model, normalizer(), _hand(), backend="aoti", onnx_dir=tmp_path, **PLANNER_KW)  # same weights: reused
    assert (tmp_path / PACKAGE_NAME).stat().st_mtime_ns == stamp
    key = model_key(model, "cpu")
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert model_key(model, "cpu") != key, "changed weights invalidate the package"
    with pytest.raises(ValueError, match="guidance"):
        aoti.plan(pts, guidance=2.0, **args)
    meta = json.loads((tmp_path / "aoti.json").read_text())
    assert meta["probed"] == meta["key"] and meta["probe_error"] is None, "loaded once in a child process first"


def test_aoti_package_that_fails_to_load_is_a_clear_error_not_a_crash(tmp_path):
    from sceneleap_core.infer.aoti import META_NAME, PACKAGE_NAME, AotiDenoiser

    (tmp_path / PACKAGE_NAME).write_bytes(b"not a package")
    (tmp_path / META_NAME).write_text(json.dumps({"key": "k1", "device": "cuda", "cache_len": 3}))
    with pytest.raises(RuntimeError, match=r"cannot load the compiled package.*cuda_graph"):
        AotiDenoiser(tmp_path)
    meta = json.loads((tmp_path / META_NAME).read_text())
    assert meta["probed"] == "k1" and "exit status" in meta["probe_error"]
    with pytest.raises(RuntimeError, match="cannot load"):  # the cached verdict, no second child
        AotiDenoiser(tmp_path)


def test_same_device_reads_an_unindexed_cuda_as_the_current_device(monkeypatch):
    """export_aoti(device="cuda") must accept a model on cuda:0 (the H200 run refused it once)."""
    from sceneleap_core.infer.aoti import same_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert same_device(torch.device("cpu"), "cpu") and same_device(torch.device("cpu"), torch.device("cpu"))
    assert same_device(torch.device("cuda", 0), "cuda") and same_device(torch.device("cuda", 0), "cuda:0")
    assert not same_device(torch.device("cuda", 1), "cuda") and not same_device(torch.device("cuda", 0), "cuda:1")
    assert not same_device(torch.device("cpu"), "cuda") and not same_device(torch.device("cuda", 0), "cpu")


def test_stopwatch_on_cuda_records_events_and_reads_them_once(monkeypatch):
    """On CUDA a lap records an event (no synchronize: the GPU keeps working while the host
    launches the next stage); ``total()`` waits for the last event once and turns the events into
    stage times in lap order. A fake event class stands in for CUDA here."""
    import time

    from sceneleap_core.infer.planner import Stopwatch

    waits = []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.at = None

        def record(self):
            self.at = time.perf_counter()

        def synchronize(self):
            waits.append(self)

        def elapsed_time(self, end):
            return 1e3 * (end.at - self.at)

    def no_sync():
        raise AssertionError("a lap synchronized the device")

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", no_sync)
    watch = Stopwatch("cuda")
    for name, pause in (("prepare", 0.002), ("sample", 0.004), ("post", 0.001)):
        time.sleep(pause)
        watch.lap(name)
    timings = watch.total()
    assert list(timings) == ["prepare", "sample", "post", "total"] and len(waits) == 1
    assert timings["sample"] >= 4.0 and timings["prepare"] >= 2.0 and timings["post"] >= 1.0
    assert sum(timings[k] for k in ("prepare", "sample", "post")) <= timings["total"]
    cpu = Stopwatch("cpu")  # off CUDA: the host clock, no events
    cpu.lap("prepare")
    assert set(cpu.total()) == {"prepare", "total"}
