"""The node's first cloud with and without its start-up warm-up (``GraspNodeCore.warm_up``): a fresh
planner's first ``plan()`` captures the CUDA graphs (and compiles a ``graph_compile`` denoiser);
with the warm-up that happens at start-up, on a synthetic tabletop, and the first real cloud costs
what the later ones do. Prints, per setting: the warm-up's seconds, the first real plan's ms and the
p50 of the next ones, the planners built fresh in one process, cold first: the warm-up row then
pays only the planner's own set-up (its graph captures); the process's (CUDA context, libraries,
Triton and inductor caches) went to the cold row, so in a fresh node the warm-up takes about what
the cold first plan takes.

    python bench/first_plan.py --model sceneleap_core/assets/default_model --device cuda
    python bench/first_plan.py --device cuda --graph-precision bf16 --graph-compile
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud


def first_plans(params, cloud: np.ndarray, warm: bool, repeats: int, hand=None) -> dict:
    """A fresh node core (its planner loaded from ``params``), warmed up or not, then ``1 + repeats``
    plans of ``cloud``: {"warm_up_s", "first_ms", "p50_ms"}."""
    from sceneleap_ros.node_logic import GraspNodeCore, load_planner

    # no message factory: the warm-up and the planner settings build no messages
    core = GraspNodeCore(load_planner(params, hand=hand), params, None, log=logging.getLogger("first_plan"))
    warm_up = core.warm_up() if warm else None
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        core.planner.plan(cloud, params.num_grasps, up=np.array([0.0, 0.0, 1.0]), **core._plan_settings())
        times.append(1e3 * (time.perf_counter() - start))
    return {"warm_up_s": warm_up, "first_ms": times[0], "p50_ms": float(np.median(times[1:]))}


def main(argv=None) -> None:
    from sceneleap_ros.parameters import NodeParams

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="", help="save_pretrained directory (empty: the bundled model)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--graph-precision", default="tf32", choices=("tf32", "fp32", "bf16"))
    ap.add_argument("--graph-compile", action="store_true")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = NodeParams().updated({"model": args.model, "device": args.device, "backend": "cuda_graph",
                                   "graph_precision": args.graph_precision, "graph_compile": args.graph_compile})  # fmt: skip
    cloud = tabletop(args.points)
    print(f"{args.device}, cuda_graph:{args.graph_precision}{':compile' if args.graph_compile else ''}, "
          f"{args.points} points, {params.num_grasps} grasps, DDIM {params.steps}")  # fmt: skip
    print(f"{'start-up':10s} {'warm-up s':>9s} {'first plan ms':>14s} {'next p50 ms':>12s}")
    for warm in (False, True):
        r = first_plans(params, cloud, warm, args.repeats)
        warm_s = "-" if r["warm_up_s"] is None else f"{r['warm_up_s']:.1f}"
        print(f"{'warm-up' if warm else 'cold':10s} {warm_s:>9s} {r['first_ms']:14.1f} {r['p50_ms']:12.1f}", flush=True)


if __name__ == "__main__":
    main()
