"""Where a plan's time goes: wall time against GPU kernel time and kernel launches per
``GraspPlanner.plan()``, per backend side by side on one cloud, with the top operators by device
time, and each backend's grasps against eager's on the same seed (parity).

    python bench/profile_plan.py --model sceneleap_core/assets/default_model --device cuda \
        --backends eager,cuda_graph --sampler ddim --steps 10 --grasps 32 --points 20000
    python bench/profile_plan.py --preset tiny --device cpu --backends eager --repeats 2 --points 5000

A plan whose GPU time is far below its wall time is launch- or sync-bound (the cure is fewer
launches: graphs, fusion), one close to it is compute-bound (the cure is less arithmetic).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from key_values import backend_spec
from latency import measure  # the same timing of plan() and its stages


def build_planner(args, backend: str):
    from sceneleap_core.hand import GraspNormalizer, HandModel
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.models import build_generator

    name, extra = backend_spec(backend)
    post = extra.pop("post", {})
    if args.model:
        planner = GraspPlanner.from_pretrained(args.model, device=args.device, backend=name, **extra)
    else:
        torch.manual_seed(0)
        hand = HandModel.load().to(args.device)
        norm = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper, translation_range=0.08)
        model = build_generator(args.preset, anchor="seed").eval().to(args.device)
        planner = GraspPlanner(model, norm, hand, backend=name, frame="gravity", **extra)
    planner.post = dataclasses.replace(planner.post, **post)
    return planner


def profile_backend(planner, cloud: np.ndarray, args) -> dict:
    """Wall p50 (ms) and stage p50s over ``repeats`` plans (:func:`latency.measure`, after a
    warm-up that also captures graphs), then one profiled pass of the same plans: device kernel
    time and launches per plan and the top operators by device time (CPU time off CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    row = measure(planner, cloud, args.grasps, args.sampler, args.steps, args.repeats, oversample=args.oversample)
    cuda = args.device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for r in range(args.repeats):
            planner.plan(cloud, args.grasps, sampler=args.sampler, steps=args.steps, seed=r, oversample=args.oversample)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    # device time of the kernels themselves (an operator's row repeats its kernels' time)
    device_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch"))
    graphs = sum(e.count for e in events if e.key == "cudaGraphLaunch")
    syncs = sum(
        e.count for e in events if e.key in ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpyAsync")
    )
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    top = sorted(events, key=lambda e: -getattr(e, key))
    n = args.repeats
    return {
        "wall_p50_ms": row["p50"],
        "stages_p50_ms": {k: v for k, v in row.items() if k not in ("p50", "p95", "kept")},
        "device_ms_per_plan": device_us / 1e3 / n,
        "launches_per_plan": launches / n,
        "graph_launches_per_plan": graphs / n,
        "copies_syncs_per_plan": syncs / n,
        "top": [(e.key[:58], getattr(e, key) / 1e3 / n, e.count / n) for e in top[: args.top] if getattr(e, key) > 0],
    }


def parity(reference, other, cloud: np.ndarray, args) -> dict:
    """Same seed through both planners: the largest palm translation difference (mm) and joint
    difference (rad) of the ranked grasps, and whether both returned as many."""
    opts = {"sampler": args.sampler, "steps": args.steps, "seed": 7, "oversample": args.oversample}
    a, b = reference.plan(cloud, args.grasps, **opts), other.plan(cloud, args.grasps, **opts)
    if a.palm_pose.shape != b.palm_pose.shape:
        return {"palm_mm": float("inf"), "joints_rad": float("inf"), "same_count": False}
    if a.palm_pose.numel() == 0:  # both returned nothing (e.g. random weights, all rejected)
        return {"palm_mm": 0.0, "joints_rad": 0.0, "same_count": True}
    return {
        "palm_mm": float((a.palm_pose[..., :3, 3] - b.palm_pose[..., :3, 3]).norm(dim=-1).max()) * 1e3,
        "joints_rad": float((a.joints - b.joints).abs().max()),
        "same_count": True,
    }


def plan_arguments(ap: argparse.ArgumentParser, repeats: int) -> None:
    """The options of one profiled plan (model, device, sampler, G, cloud size, oversampling,
    repeats), shared with bench/plan_breakdown.py."""
    ap.add_argument("--model", default=None, help="save_pretrained directory (default: random --preset)")
    ap.add_argument("--preset", default="dit_s")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--grasps", type=int, default=32)
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--oversample", type=float, default=None, help="candidates per grasp (default: the model's)")
    ap.add_argument("--repeats", type=int, default=repeats)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan_arguments(ap, repeats=10)
    ap.add_argument("--backends", default="eager,cuda_graph")
    ap.add_argument("--top", type=int, default=8, help="operators listed per backend")
    args = ap.parse_args(argv)

    cloud = tabletop(args.points)
    device = args.device + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    print(f"model {args.model or 'random ' + args.preset}, device {device}, torch {torch.__version__}, "
          f"{args.sampler} {args.steps} steps, G = {args.grasps}, oversample {args.oversample or 'model'}, "
          f"{args.points} points, {args.repeats} plans")  # fmt: skip
    planners = {b: build_planner(args, b) for b in args.backends.split(",")}
    rows = {b: profile_backend(p, cloud, args) for b, p in planners.items()}
    first = next(iter(planners))
    print(f"{'backend':10s} {'wall p50':>9s} {'GPU/plan':>9s} {'launches':>9s} {'graphs':>7s} {'copies':>7s}"
          f" {'palm diff':>10s}  stages p50 ms")  # fmt: skip
    for b, r in rows.items():
        diff = parity(planners[first], planners[b], cloud, args) if b != first else None
        diff_s = "-" if diff is None else f"{diff['palm_mm']:.3f}mm"
        stage_s = "  ".join(f"{k} {v:.1f}" for k, v in r["stages_p50_ms"].items())
        print(f"{b:10s} {r['wall_p50_ms']:8.1f}ms {r['device_ms_per_plan']:7.2f}ms {r['launches_per_plan']:9.0f}"
              f" {r['graph_launches_per_plan']:7.0f} {r['copies_syncs_per_plan']:7.0f} {diff_s:>10s}  {stage_s}")  # fmt: skip
    for b, r in rows.items():
        print(
            f"\n{b}: top operators by {'device' if args.device.startswith('cuda') else 'CPU'} time per plan (ms, calls)"
        )
        for name, ms, calls in r["top"]:
            print(f"  {name:58s} {ms:7.3f} {calls:7.1f}")


if __name__ == "__main__":
    main()
