#!/usr/bin/env python3
"""Training throughput: samples/s and peak GPU memory of one optimizer step of the grasp generator
(forward + backward + clip + fused AdamW + EMA), for fp32 / bf16 / bf16 + torch.compile, with and
without gradient checkpointing; then the same step with DDP on several GPUs (weak scaling: the
per-GPU batch is fixed) against one GPU. Synthetic data already on the GPU (no loader cost).

    python bench/train.py                                   # one GPU: the whole matrix, default model
    python bench/train.py --ddp 2                           # + DDP on 2 GPUs (spawns the ranks itself)
    python bench/train.py --ddp 2 --modes bf16 --ckpt off   # only the DDP comparison, bf16
    torchrun --standalone --nproc_per_node=2 bench/train.py --modes bf16 --ckpt off   # DDP under torchrun
    python bench/train.py --device cpu --preset tiny --batch 4 --points 512 --steps 3 --modes fp32  # smoke
    # the bundled model's training step (config/train/default.yaml: anchors with context, d288, N = 8192)
    python bench/train.py --points 8192 --ckpt off --modes fp32,bf16,fp32+compile,bf16+compile \
        --model-args anchor=seed anchor_region_knn=128 anchor_scene=true d_model=288 heads=6

Prints one table (copy it into bench/RESULTS.md with the date and machine); ``--json`` also writes
the rows. A "sample" is one scene: a cloud of ``--points`` points with ``--grasps`` grasps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.distributed as dist
from key_values import parse_key_values  # bench/ is the script's directory
from torch import nn

from sceneleap_core.models import build_generator
from sceneleap_core.train.ema import EMA
from sceneleap_core.train.module import compile_model


class LossWrapper(nn.Module):
    """Routes ``forward`` to ``training_loss`` so DDP's gradient hooks see the call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, points: torch.Tensor, grasps: torch.Tensor, generator: torch.Generator,
                anchors: dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
        return self.model.training_loss(points, grasps, generator=generator, **anchors)["loss"]


def synthetic_anchors(model, points: torch.Tensor, grasps: int, seed: int) -> dict[str, torch.Tensor]:
    """Anchored generators: one cloud point per grasp as its anchor, as many anchor-score
    candidates with random 0/1 labels (the training step's shapes and work); {} otherwise."""
    if not getattr(model, "anchored", False):
        return {}
    g = torch.Generator(device="cpu").manual_seed(seed + 7)
    b, n, _ = points.shape
    pick = torch.randint(0, n, (b, 2 * grasps), generator=g).to(points.device)
    chosen = torch.gather(points, 1, pick[..., None].expand(-1, -1, 3))
    labels = (torch.rand(b, grasps, generator=g) < 0.5).float().to(points.device)
    return {"anchors": chosen[:, :grasps], "candidates": chosen[:, grasps:], "candidate_labels": labels}


def synthetic_batch(args, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A table-top-like cloud (B, N, 3) in a 0.4 m box and normalized grasps (B, G, 25)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    pts = 0.2 * (2 * torch.rand(args.batch, args.points, 3, generator=g) - 1)
    pts[..., 2] = pts[..., 2].abs() * 0.5
    grasps = 2 * torch.rand(args.batch, args.grasps, 25, generator=g) - 1
    return pts.to(device), grasps.to(device)


def run_config(args, mode: str, ckpt: bool, device: torch.device, rank: int = 0, world: int = 1) -> dict:
    """Time ``args.steps`` optimizer steps after ``args.warmup`` (more for compile); returns one row."""
    torch.manual_seed(0)
    overrides = {**parse_key_values(args.model_args, "--model-args"), "grad_checkpointing": ckpt}
    model = build_generator(args.preset, **overrides).to(device)
    params = sum(p.numel() for p in model.parameters())
    if mode.endswith("compile"):
        compile_model(model)
    net: nn.Module = LossWrapper(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
            gradient_as_bucket_view=True,
        )  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    ema = EMA(model, decay=0.999) if args.ema else None
    if ema is not None:
        ema.to(device)
    points, grasps = synthetic_batch(args, device, seed=rank)
    anchors = synthetic_anchors(model, points, args.grasps, seed=rank)
    gen = torch.Generator(device=device)
    dtype = torch.bfloat16 if mode.startswith("bf16") else None

    def step(i: int) -> None:
        gen.manual_seed(1000 * rank + i)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = net(points, grasps, gen, anchors)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(model)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    warmup = args.warmup + (args.compile_warmup if mode.endswith("compile") else 0)
    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync()
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(args.steps):
        sync()
        t = time.perf_counter()
        step(warmup + i)
        sync()
        times.append(time.perf_counter() - t)
    if world > 1:  # the slowest rank sets the pace
        med = torch.tensor([statistics.median(times)], device=device)
        dist.all_reduce(med, op=dist.ReduceOp.MAX)
        step_s = float(med)
    else:
        step_s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "mode": mode,
        "grad_ckpt": ckpt,
        "gpus": world,
        "batch_per_gpu": args.batch,
        "step_ms": 1e3 * step_s,
        "samples_per_s": world * args.batch / step_s,
        "peak_gib": peak,
        "warmup_s": warm_s,
        "params_m": params / 1e6,
    }


def matrix(args) -> list[tuple[str, bool]]:
    ckpts = {"off": [False], "on": [True], "both": [False, True]}[args.ckpt]
    return [(m, c) for c in ckpts for m in args.modes.split(",")]


# ------------------------------------------------------------------------------------- DDP ranks
def _ddp_worker(rank: int, world: int, args, queue) -> None:
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(args.port))
    backend = "nccl" if args.device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    device = torch.device(args.device, rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rows = []
    try:
        for mode, ckpt in matrix(args):
            rows.append(run_config(args, mode, ckpt, device, rank, world))
            dist.barrier()
    finally:
        if rank == 0 and queue is not None:
            queue.put(rows)
        dist.destroy_process_group()
    if queue is None and rank == 0:
        print_table(rows, args)


def run_ddp(args, world: int) -> list[dict]:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_ddp_worker, args=(world, args, queue), nprocs=world, join=True)
    return queue.get()


# ------------------------------------------------------------------------------------------ report
def print_table(rows: list[dict], args) -> None:
    base = {(r["grad_ckpt"]): r for r in rows if r["mode"] == "fp32" and r["gpus"] == 1}
    single = {(r["mode"], r["grad_ckpt"]): r for r in rows if r["gpus"] == 1}
    head = "| mode | grad ckpt | GPUs | batch/GPU | step (ms) | samples/s | vs fp32 | scaling | peak mem (GiB) |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for r in rows:
        b = base.get(r["grad_ckpt"])
        vs = f"{r['samples_per_s'] / b['samples_per_s'] * (1 if r['gpus'] == 1 else 1 / r['gpus']):.2f}x" if b else "-"
        one = single.get((r["mode"], r["grad_ckpt"]))
        scale = f"{r['samples_per_s'] / (r['gpus'] * one['samples_per_s']):.0%}" if one and r["gpus"] > 1 else "-"
        print(
            f"| {r['mode']} | {'on' if r['grad_ckpt'] else 'off'} | {r['gpus']} | {r['batch_per_gpu']} | "
            f"{r['step_ms']:.1f} | {r['samples_per_s']:.1f} | {vs} | {scale} | {r['peak_gib']:.2f} |"
        )
    print(
        f"\npreset {args.preset} ({rows[0]['params_m']:.1f} M params), N={args.points} points, K={args.grasps} grasps, "
        f"median of {args.steps} steps after warm-up; 'vs fp32' is per GPU; 'scaling' = samples/s / (GPUs x one-GPU samples/s)."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="dit_s", help="generator preset (GENERATOR_PRESETS)")
    p.add_argument("--model-args", nargs="*", default=[], metavar="KEY=VALUE",
                   help="preset overrides, e.g. the default config's model: anchor=seed anchor_region_knn=128 "
                        "anchor_scene=true d_model=288 heads=6")  # fmt: skip
    p.add_argument("--batch", type=int, default=32, help="scenes per GPU and step")
    p.add_argument("--points", type=int, default=4096)
    p.add_argument("--grasps", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--compile-warmup", type=int, default=10, help="extra warm-up steps for compiled modes")
    p.add_argument("--modes", default="fp32,bf16,bf16+compile")
    p.add_argument("--ckpt", default="both", choices=["off", "on", "both"], help="gradient checkpointing")
    p.add_argument("--ddp", type=int, default=0, help="also run DDP on this many GPUs (spawned ranks)")
    p.add_argument("--no-ema", dest="ema", action="store_false", help="leave the EMA update out of the step")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--port", type=int, default=29512)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = p.parse_args()
    try:
        parse_key_values(args.model_args, "--model-args")
    except ValueError as err:
        p.error(str(err))
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (TF32 would blur the bf16 comparison)
    torch.backends.cudnn.allow_tf32 = False

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:  # torchrun
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)))
        _ddp_worker(rank, world, args, None)
        return

    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"# bench/train.py on {gpu}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}\n")
    rows = []
    for mode, ckpt in matrix(args):
        rows.append(run_config(args, mode, ckpt, device))
        print(
            f"  done: {mode}, grad ckpt {'on' if ckpt else 'off'}: {rows[-1]['samples_per_s']:.1f} samples/s",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.ddp > 1:
        if device.type == "cuda" and torch.cuda.device_count() < args.ddp:
            raise SystemExit(f"--ddp {args.ddp}: expected that many GPUs, got {torch.cuda.device_count()}")
        rows.extend(run_ddp(args, args.ddp))
    print()
    print_table(rows, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
