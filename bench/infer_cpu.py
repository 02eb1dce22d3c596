"""CPU figures of the planner: whole plan() and its stages, eager vs ONNX Runtime vs dynamic int8
quantization of the linear layers (``torch.ao.quantization.quantize_dynamic``). Prints figures; no
timed tests. Random weights (no trained model yet): the int8 row reports speed and how far its
network output moves from fp32, not grasp quality.

    python bench/infer_cpu.py --preset lite --points 20000 --grasps 32 --steps 10 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
import warnings

import numpy as np
import torch


def tabletop(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = n // 4
    table = np.c_[rng.uniform(-0.3, 0.3, (n - k, 2)), np.full(n - k, -0.6)]
    box = rng.uniform(-0.04, 0.04, (k, 3)) + np.array([0.05, 0.0, -0.56])
    return np.concatenate([table, box]) + rng.normal(0, 0.001, (n, 3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="lite")
    ap.add_argument("--points", type=int, default=20000, help="raw cloud size")
    ap.add_argument("--num-points", type=int, default=2048, help="points fed to the network")
    ap.add_argument("--grasps", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")  # the tracer's and torch.ao's deprecation chatter
    if args.threads:
        torch.set_num_threads(args.threads)
    from sceneleap_core.hand import GraspNormalizer, HandModel
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.models import build_generator

    torch.manual_seed(0)
    hand = HandModel.load()
    norm = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper, translation_range=0.08)
    model = build_generator(args.preset, anchor="seed").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    int8 = copy.deepcopy(model)
    # the DiT blocks' linear layers (embeddings stay float: the denoiser reads their dtype)
    int8.denoiser.blocks = torch.ao.quantization.quantize_dynamic(
        int8.denoiser.blocks, {torch.nn.Linear}, dtype=torch.qint8
    )
    cloud = tabletop(args.points)
    kw = {"num_points": args.num_points, "frame": "gravity"}
    tmp = tempfile.TemporaryDirectory()
    planners = {
        "eager fp32": GraspPlanner(model, norm, hand, **kw),
        "eager int8-dynamic": GraspPlanner(int8, norm, hand, **kw),
        "onnxruntime fp32": GraspPlanner(model, norm, hand, backend="onnx", onnx_dir=tmp.name, **kw),
    }
    opts = {"steps": args.steps, "sampler": args.sampler, "seed": 0}
    ref = None
    print(f"{args.preset}, cloud {args.points} -> {args.num_points} points, G={args.grasps}, {args.sampler}-{args.steps}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for name, planner in planners.items():
        planner.plan(cloud, args.grasps, **opts)  # warm-up
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            out = planner.plan(cloud, args.grasps, **opts)
            runs.append((1e3 * (time.perf_counter() - t), out.timings))
        total = np.array([r[0] for r in runs])
        stages = {k: np.median([r[1][k] for r in runs]) for k in runs[0][1]}
        z = planner.sample_network(planner.prepare(cloud, 0).points, args.grasps, steps=args.steps,
                                   sampler=args.sampler, seed=0).vectors  # fmt: skip
        ref = z if ref is None else ref
        print(f"{name:20s} p50 {np.percentile(total, 50):8.1f} ms  p95 {np.percentile(total, 95):8.1f} ms  "
              + "  ".join(f"{k} {v:.1f}" for k, v in stages.items() if k != "total")
              + f"  | max |dz| vs eager fp32 {float((z - ref).abs().max()):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
