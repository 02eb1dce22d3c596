"""Where one ``GraspPlanner.plan()`` makes the host wait for the GPU: every synchronizing CUDA call
(``torch.cuda.set_sync_debug_mode("warn")``) with the chain of project frames that made it, per
backend. A plan's wall time exceeds its GPU kernel time by what the GPU idles while the host
catches up after each of these waits, so they are the first thing to remove.

    python bench/sync_audit.py --model sceneleap_core/assets/default_model --backends cuda_graph:tf32
    python bench/sync_audit.py --model sceneleap_core/assets/default_model --backends cuda_graph:bf16:compile

CUDA only (the debug mode watches CUDA streams).
"""

from __future__ import annotations

import argparse
import collections
import traceback
import warnings

import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from profile_plan import build_planner, plan_arguments


def project_frames(stack: list[traceback.FrameSummary], depth: int) -> str:
    """The innermost ``depth`` frames of this project's code (sceneleap_core, bench), innermost first."""
    mine = [f for f in stack if "sceneleap_core" in f.filename or "/bench/" in f.filename]
    mine = [f for f in mine if not f.filename.endswith("sync_audit.py")]
    names = [f"{f.filename.split('sceneleap_core/')[-1]}:{f.lineno} {f.name}" for f in reversed(mine[-depth:])]
    return " <- ".join(names) or "(outside the project)"


def audit(planner, cloud, args) -> collections.Counter:
    """Synchronizing calls of ``args.repeats`` plans after two warm-up plans -> Counter{frames: count}."""
    opts = {"sampler": args.sampler, "steps": args.steps, "oversample": args.oversample}
    for r in range(2):  # graphs captured, kernels compiled: their one-off syncs are not the plan's
        planner.plan(cloud, args.grasps, seed=r, **opts)
    torch.cuda.synchronize()
    seen: collections.Counter = collections.Counter()
    original = warnings.showwarning

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message).lower():
            seen[project_frames(traceback.extract_stack()[:-1], args.depth)] += 1
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for r in range(args.repeats):
                planner.plan(cloud, args.grasps, seed=r, **opts)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = original
    return seen


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan_arguments(ap, repeats=3)
    ap.add_argument("--backends", default="cuda_graph:tf32")
    ap.add_argument("--depth", type=int, default=3, help="project frames shown per call site")
    args = ap.parse_args(argv)
    if not (args.device.startswith("cuda") and torch.cuda.is_available()):
        raise SystemExit("sync_audit: needs a CUDA device (the sync debug mode watches CUDA streams)")
    cloud = tabletop(args.points)
    for backend in args.backends.split(","):
        seen = audit(build_planner(args, backend), cloud, args)
        total = sum(seen.values()) / args.repeats
        print(f"{backend}: {total:.1f} synchronizing calls per plan ({args.repeats} plans)")
        for frames, count in seen.most_common():
            print(f"  {count / args.repeats:5.1f}  {frames}")


if __name__ == "__main__":
    main()
