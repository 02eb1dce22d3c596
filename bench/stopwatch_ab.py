"""Stage timing by CUDA events against a synchronize per stage, side by side in one process: the
planner's ``Stopwatch`` records an event per stage and reads them once; the old way (synchronize,
then read the host clock) is patched back in for the alternate runs. p50 / p95 of the whole
``plan()`` (bench/latency.py's ``measure``) and its stage p50s, per cloud size.

    python bench/stopwatch_ab.py --model sceneleap_core/assets/default_model --points 20000,100000
"""

from __future__ import annotations

import argparse
import warnings

import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from latency import measure


def main(argv=None) -> None:
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer import planner as planner_module

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sceneleap_core/assets/default_model")
    ap.add_argument("--backend", default="cuda_graph")
    ap.add_argument("--points", default="20000,100000")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two ways per cloud size")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if not torch.cuda.is_available():
        raise SystemExit("needs CUDA: off CUDA the stopwatch reads the host clock either way")
    planner = GraspPlanner.from_pretrained(args.model, device="cuda", backend=args.backend)
    by_events = planner_module.Stopwatch.lap

    def synchronized(self, name):
        torch.cuda.synchronize()
        by_events(self, name)

    print(f"{torch.cuda.get_device_name()}, {args.backend}, DDIM 10, G = 32, the model's oversampling")
    try:
        for points in (int(p) for p in args.points.split(",")):
            cloud = tabletop(points)
            for mode in ("events", "sync") * args.rounds:
                planner_module.Stopwatch.lap = by_events if mode == "events" else synchronized
                r = measure(planner, cloud, 32, "ddim", 10, args.repeats)
                stages = " ".join(f"{k} {v:.1f}" for k, v in r.items() if k not in ("p50", "p95", "kept"))
                print(f"{points:7d} {mode:6s} p50 {r['p50']:.1f} p95 {r['p95']:.1f}  {stages}", flush=True)
    finally:
        planner_module.Stopwatch.lap = by_events


if __name__ == "__main__":
    main()
