"""Planner latency: p50/p95 of the whole ``GraspPlanner.plan()`` and of each stage, side by side in
one run, for samplers x steps, grasp counts G and raw cloud sizes, per backend. Synthetic tabletop
clouds (a plane and a box); with ``--model`` a trained model, else random weights of ``--preset``.

    python bench/latency.py --model sceneleap_core/assets/default_model --device cuda \
        --samplers ddpm:100,ddim:20,ddim:10,dpmpp:10,dpmpp:5 --grasps 8,32,128 --points 5000,20000,100000
    python bench/latency.py --preset tiny --device cpu --repeats 2 --grasps 8 --points 5000 --samplers ddim:10

Grid: every sampler at every G on the first cloud size, then the first sampler at G = 32 (or the
first G) on every cloud size. Prints one table; ``--png`` plots latency against G.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings

import numpy as np
import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from key_values import backend_spec, parse_key_values


def measure(planner, cloud: np.ndarray, grasps: int, sampler: str, steps: int, repeats: int,
            oversample: float | None = None) -> dict:  # fmt: skip
    """p50/p95 (ms) of plan() and p50 of each stage over ``repeats`` runs after one warm-up;
    ``oversample``: candidates per grasp (None: the planner's default)."""
    opts = {"steps": steps, "sampler": sampler, "seed": 0, "oversample": oversample}
    planner.plan(cloud, grasps, **opts)
    totals, stages, kept = [], [], []
    for r in range(repeats):
        t = time.perf_counter()
        out = planner.plan(cloud, grasps, **{**opts, "seed": r})
        totals.append(1e3 * (time.perf_counter() - t))
        stages.append(out.timings)
        kept.append(out.palm_pose.shape[1])
    row = {"p50": float(np.percentile(totals, 50)), "p95": float(np.percentile(totals, 95)), "kept": float(np.mean(kept))}
    for key in stages[0]:
        if key != "total":
            row[key] = float(np.median([s[key] for s in stages]))
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="save_pretrained directory (default: random weights of --preset)")
    ap.add_argument("--preset", default="lite")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", default="eager", help="comma list of eager, compile, cuda_graph[:tf32|:bf16], aoti, onnx")
    ap.add_argument("--samplers", default="ddpm:100,ddim:20,ddim:10,dpmpp:10,dpmpp:5")
    ap.add_argument("--grasps", default="8,32,128")
    ap.add_argument("--points", default="20000,5000,100000", help="raw cloud sizes; the first is the grid's")
    ap.add_argument("--oversample", default="",
                    help="comma list of candidates per grasp, each a grid of its own (default: the model's)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--engine-dir", default=None,
                    help="where the aoti / onnx / tensorrt backends keep their compiled artifacts (reused; default: a temp dir)")  # fmt: skip
    ap.add_argument("--post", action="append", default=[], metavar="KEY=VALUE",
                    help="post-processing override (PostConfig field, e.g. cull=levels); repeatable")  # fmt: skip
    ap.add_argument("--png", help="latency vs G plot")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    from sceneleap_core.hand import GraspNormalizer, HandModel
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.postprocess import PostConfig
    from sceneleap_core.models import build_generator

    post = parse_key_values(args.post, "--post", PostConfig())

    samplers = [(s.split(":")[0], int(s.split(":")[1])) for s in args.samplers.split(",")]
    grasps = [int(g) for g in args.grasps.split(",")]
    sizes = [int(n) for n in args.points.split(",")]
    overs = [float(x) for x in args.oversample.split(",")] if args.oversample else [None]
    planners = {}
    for backend in args.backends.split(","):
        name, extra = backend_spec(backend)
        flagged = extra.pop("post", {})
        if args.engine_dir and name in ("aoti", "onnx", "tensorrt"):
            extra["onnx_dir"] = f"{args.engine_dir}/{name}"
        if args.model:
            planners[backend] = GraspPlanner.from_pretrained(args.model, device=args.device, backend=name, **extra)
        else:
            torch.manual_seed(0)
            hand = HandModel.load()
            norm = GraspNormalizer.from_hand_limits(hand.joint_lower, hand.joint_upper, translation_range=0.08)
            model = build_generator(args.preset, anchor="seed").eval().to(args.device)
            planners[backend] = GraspPlanner(model, norm, hand, backend=name, frame="gravity", **extra)
        planners[backend].post = dataclasses.replace(planners[backend].post, **{**post, **flagged})
    device = args.device + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    first = next(iter(planners.values()))
    print(f"model {args.model or 'random ' + args.preset}, device {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads, {args.repeats} repeats after a warm-up, ranking by "
          f"{type(first.ranker).__name__ if first.ranker is not None else '-energy'}, model's oversample "
          f"{first.oversample:g}, post-processing overrides {post or '-'}")  # fmt: skip
    g_mid = 32 if 32 in grasps else grasps[0]
    grid = []
    for x in overs:
        grid += [(b, s, n, g, sizes[0], x) for b in planners for s, n in samplers for g in grasps]
        grid += [(b, samplers[0][0], samplers[0][1], g_mid, n, x) for b in planners for n in sizes[1:]]
    rows = []
    header = (f"{'backend':15s} {'sampler':8s} {'steps':>5s} {'G':>4s} {'x':>4s} {'points':>7s} {'p50 ms':>8s} "
              f"{'p95 ms':>8s}  stages p50 ms")  # fmt: skip
    print(header)
    for backend, sampler, steps, g, n, x in grid:
        r = measure(planners[backend], tabletop(n), g, sampler, steps, args.repeats, oversample=x)
        x = planners[backend].oversample if x is None else x
        rows.append({"backend": backend, "sampler": sampler, "steps": steps, "G": g, "oversample": x, "points": n, **r})
        stages = "  ".join(f"{k} {v:.1f}" for k, v in r.items() if k not in ("p50", "p95", "kept"))
        print(f"{backend:15s} {sampler:8s} {steps:5d} {g:4d} {x:4g} {n:7d} {r['p50']:8.1f} {r['p95']:8.1f}  {stages}",
              flush=True)  # fmt: skip
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for backend in planners:
            for sampler, steps in samplers:
                for x in sorted({r["oversample"] for r in rows}):
                    sel = [r for r in rows if (r["backend"], r["sampler"], r["steps"], r["points"], r["oversample"])
                           == (backend, sampler, steps, sizes[0], x)]  # fmt: skip
                    ax.plot([r["G"] for r in sel], [r["p50"] for r in sel], "o-",
                            label=f"{backend} {sampler}-{steps} {x:g}x")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("grasps G")
        ax.set_ylabel("plan() p50 ms")
        ax.set_title(f"{device}, {sizes[0]} points", fontsize=8)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
