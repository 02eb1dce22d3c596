#!/usr/bin/env python3
"""Model timings: farthest point sampling, encoders, one DiT denoising step, full sampling.

    python bench/models.py --device cuda                      # everything, H100 sizes
    python bench/models.py --device cpu --quick               # small CPU run (minutes)
    python bench/models.py --device cuda --sections fps --fps-sizes 10000:2048,20000:1024
    python bench/models.py --device cuda --sections step --presets dit_s,dit_upstream --compile

Sections (medians in ms, CUDA synchronized; ``--repeat`` timed calls after warm-up):
* ``fps``: torch loop (eager) vs the same loop as a CUDA graph vs Triton kernel vs
  voxel / voxel+FPS / random sampling, with each method's coverage (max and mean distance
  from a cloud point to its nearest sample) relative to FPS on a synthetic table-top cloud;
* ``encoder``: each encoder preset on one N-point cloud (fp32; bf16 autocast on CUDA);
* ``step``: one denoiser call over K grasp tokens with the scene cached: eager fp32, eager
  bf16 autocast, bf16 weights, bf16 weights as a CUDA graph, and torch.compile + graph
  (``--compile``);
* ``sample``: cloud in -> K grasps out (encoder + loop): DDPM 100 vs DDIM 10 (eager fp32,
  eager bf16 weights, and the whole pipeline as one CUDA graph on CUDA).

Models are randomly initialized (timing only). Prints Markdown tables for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time

import torch
from timing import timed

from sceneleap_core.geometry.pointops import farthest_point_sample, gather_points
from sceneleap_core.models import build_generator
from sceneleap_core.models import pointops as mp


def table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) else ("-" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def scene_cloud(n: int, batch: int, device: str, seed: int = 0) -> torch.Tensor:
    """(B, N, 3) synthetic depth-like cloud: a table plane (60 %) and 5 object surfaces (spheres
    and boxes) of 3-15 cm, with uneven density, centred (metres)."""
    g = torch.Generator().manual_seed(seed)
    clouds = []
    for _ in range(batch):
        n_table = int(0.6 * n)
        table_pts = torch.cat([(torch.rand(n_table, 2, generator=g) - 0.5) * 0.8, torch.zeros(n_table, 1)], 1)
        parts, left = [table_pts], n - n_table
        for k in range(5):
            m = left // (5 - k)
            left -= m
            centre = torch.cat([(torch.rand(2, generator=g) - 0.5) * 0.5, torch.zeros(1)])
            size = 0.03 + 0.12 * torch.rand(1, generator=g)
            d = torch.randn(m, 3, generator=g)
            if k % 2 == 0:  # sphere
                p = d / d.norm(dim=1, keepdim=True) * size / 2
            else:  # box surface: project onto the cube
                p = d / d.abs().amax(dim=1, keepdim=True) * size / 2
            parts.append(p + centre + torch.tensor([0, 0, 1.0]) * size / 2)
        cloud = torch.cat(parts)
        clouds.append(cloud[torch.randperm(n, generator=g)])
    pts = torch.stack(clouds)
    return (pts - pts.mean(1, keepdim=True)).to(device)


################################################################################
#                                     FPS                                      #
################################################################################


def bench_fps(args) -> str:
    rows, graph_fps = [], mp.CudaGraphFPS()
    for spec in args.fps_sizes.split(","):
        n, m = (int(x) for x in spec.split(":"))
        rows += fps_rows(scene_cloud(n, args.batch, args.device), m, args, graph_fps)
    return f"### FPS and alternatives (batch {args.batch})\n\n" + table(
        ["N->M", "method", "ms", "max dist / FPS's", "mean dist / FPS's", "idx = FPS"], rows
    )


def fps_rows(pts: torch.Tensor, m: int, args, graph_fps) -> list[list]:
    """Every sampling method on one (B, N, 3) cloud: time and coverage relative to FPS."""
    dev, n = args.device, pts.shape[1]

    def cover(idx):
        d = torch.cdist(pts, gather_points(pts, idx)).min(-1).values  # (B, N)
        return d.amax(-1).mean().item(), d.mean().item()

    ref_idx = farthest_point_sample(pts, m)
    ref_cover = cover(ref_idx)
    methods = {
        "torch loop (eager)": lambda: farthest_point_sample(pts, m),
    }
    if dev == "cuda":
        methods["torch loop + CUDA graph"] = lambda: graph_fps(pts, m)
        if mp.triton_fps_available(pts):
            methods["Triton kernel"] = lambda: mp.farthest_point_sample_triton(pts, m)
    methods["voxel"] = lambda: mp.voxel_sample(pts, m, deterministic=True)
    methods["voxel (4M) + FPS"] = lambda: mp.voxel_fps_sample(pts, m, deterministic=True)
    methods["random"] = lambda: mp.random_sample(pts, m, deterministic=True)
    rows = []
    for name, fn in methods.items():
        repeat = max(3, args.repeat // 4) if name == "torch loop (eager)" else args.repeat
        ms = timed(fn, dev, repeat, warmup=1)
        idx = fn()
        exact = name.startswith(("torch loop", "Triton"))
        same = "=" if torch.equal(idx, ref_idx) else ("~ (ties)" if exact else "")
        c = cover(idx)
        rows.append([f"{n}->{m}", name, ms, c[0] / ref_cover[0], c[1] / ref_cover[1], same])
    return rows


def capture(fn):
    """Warm ``fn`` up on a side stream, capture it in a CUDA graph, return a replay closure
    that returns the captured outputs."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay():
        graph.replay()
        return out

    return replay


################################################################################
#                         Encoders, denoiser step, sampling                    #
################################################################################


def bench_encoders(args) -> str:
    pts = scene_cloud(args.points, args.batch, args.device)
    rows = [encoder_row(preset, pts, args) for preset in args.encoders.split(",")]
    return f"### Encoders ({args.points} points, batch {args.batch})\n\n" + table(
        ["preset", "encoder", "samplers", "tokens M", "params (M)", "fp32 ms", "bf16 autocast ms"], rows
    )


@torch.no_grad()
def encoder_row(preset: str, pts: torch.Tensor, args) -> list:
    dev = args.device
    model = build_generator(preset).to(dev).eval()
    enc, cfg = model.encoder, model.config
    fp32, bf16 = timed(lambda: enc(pts), dev, args.repeat), float("nan")
    if dev == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = timed(lambda: enc(pts), dev, args.repeat)
    params = sum(p.numel() for p in enc.parameters()) / 1e6
    return [preset, cfg.encoder, f"{cfg.point_sampler}/{cfg.centre_sampler}", enc.num_tokens, params, fp32, bf16]


def bench_step(args) -> str:
    pts = scene_cloud(args.points, args.batch, args.device)
    rows = [row for preset in args.presets.split(",") for row in step_rows(preset, pts, args)]
    tokens = build_generator(args.presets.split(",")[0]).config.num_scene_tokens
    title = f"### One denoiser step (K = {args.grasps} grasps, {tokens} scene tokens, batch {args.batch})"
    return title + "\n\n" + table(["preset", "size", "params (M)", "variant", "ms / step"], rows)


@torch.no_grad()
def step_rows(preset: str, pts: torch.Tensor, args) -> list[list]:
    """One cached denoiser call in each precision / execution mode."""
    dev = args.device
    model = build_generator(preset).to(dev).eval()
    den, cfg = model.denoiser, model.config
    cache = model.encode_scene(pts)
    x = torch.randn(args.batch, args.grasps, model.grasp_dim, device=dev)
    t = torch.tensor(500.0, device=dev)
    res = {"fp32": timed(lambda: den(x, t, cache), dev, args.repeat)}
    if dev == "cuda":
        with torch.autocast("cuda", dtype=torch.bfloat16):
            res["bf16 autocast"] = timed(lambda: den(x, t, cache), dev, args.repeat)
        den_bf = copy.deepcopy(den).to(torch.bfloat16)
        cache_bf = den_bf.precompute_scene(*model.encoder(pts))
        res["bf16 weights"] = timed(lambda: den_bf(x, t, cache_bf), dev, args.repeat)
        res["bf16 + CUDA graph"] = timed(capture(lambda: den_bf(x, t, cache_bf)), dev, args.repeat)
        if args.compile:
            comp = torch.compile(den_bf, mode="max-autotune-no-cudagraphs", dynamic=False)
            res["bf16 + compile + graph"] = timed(capture(lambda: comp(x, t, cache_bf)), dev, args.repeat)
    params = sum(p.numel() for p in den.parameters()) / 1e6
    return [[preset, f"d{cfg.d_model} x{cfg.depth} h{cfg.heads}", params, k, v] for k, v in res.items()]


def bench_sample(args) -> str:
    pts = scene_cloud(args.points, args.batch, args.device)
    runs = [("ddpm", 100), ("ddim", 10)] + ([("dpmpp", 5)] if args.extra_samplers else [])
    rows = [row for preset in args.presets.split(",") for run in runs for row in sample_rows(preset, pts, *run, args)]
    title = f"### Cloud -> grasps ({args.points} points, K = {args.grasps}, batch {args.batch}, guidance 1)"
    return title + "\n\n" + table(["preset", "sampler", "variant", "ms"], rows)


@torch.no_grad()
def sample_rows(preset: str, pts: torch.Tensor, sampler: str, steps: int, args) -> list[list]:
    dev = args.device
    model = build_generator(preset).to(dev).eval()
    rep = max(3, args.repeat // (4 if steps > 20 else 1))
    label = f"{sampler} {steps}"
    rows = [[preset, label, "eager fp32", timed(lambda: model.sample(pts, args.grasps, steps, sampler), dev, rep, 1)]]
    if dev == "cuda":
        replay = graphed_pipeline(copy.deepcopy(model), pts, args.grasps, steps, sampler)
        rows.append([preset, label, "CUDA graph, bf16 denoiser (whole pipeline)", timed(replay, dev, rep, 1)])
    return rows


def graphed_pipeline(model, pts, k, steps, sampler):
    """Encoder (fp32) + cached scene + the whole denoising loop (bf16 denoiser) in one CUDA graph."""
    model.denoiser.to(torch.bfloat16)
    sched = model.make_scheduler(sampler)
    sched.set_timesteps(steps, pts.device)
    times = [model.objective.model_time(t) for t in sched.timesteps]

    def run():
        sched.reset()
        cache = model.encode_scene(pts)
        x = torch.randn(pts.shape[0], k, model.grasp_dim, device=pts.device)
        for t, tm in zip(sched.timesteps, times):
            x = sched.step(model.denoiser(x, tm, cache), t, x).prev_sample
        return x

    with torch.no_grad():
        replay = capture(run)
    return replay


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sections", default="fps,encoder,step,sample")
    p.add_argument("--fps-sizes", default="10000:2048,20000:1024", help="N:M pairs")
    p.add_argument("--points", type=int, default=20000, help="cloud size for encoder/sample sections")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--grasps", type=int, default=32, help="K grasp tokens")
    p.add_argument("--presets", default="dit_s,dit_b,dit_upstream", help="generator presets for step/sample")
    p.add_argument("--encoders", default="dit_s,ptv_s,lite", help="presets whose encoders are timed")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--compile", action="store_true", help="also time torch.compile variants (slow to build)")
    p.add_argument("--extra-samplers", action="store_true", help="also time DPM-Solver++(2M) 5 steps")
    p.add_argument("--quick", action="store_true", help="CPU-sized run: 10k points, lite/dit_s, few repeats")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.fps_sizes, args.points, args.repeat = "10000:2048,20000:1024", 10000, 3
        args.presets, args.encoders = "lite,dit_s", "dit_s,ptv_s,lite"
    torch.manual_seed(0)
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "none"
    print(f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device} ({gpu}), triton {'yes' if mp.triton is not None else 'no'}\n")  # fmt: skip
    sections = {"fps": bench_fps, "encoder": bench_encoders, "step": bench_step, "sample": bench_sample}
    for name in args.sections.split(","):
        if name not in sections:
            raise SystemExit(f"--sections: expected names among {sorted(sections)}, got {name!r}")
        print(sections[name](args), "\n", flush=True)


if __name__ == "__main__":
    main()
