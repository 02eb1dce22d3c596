"""Where one ``plan()`` spends its time, call by call: the planner's inner calls (the preprocessing
steps, the anchor draw, encoder, anchor score, scene cache, denoising loop, decoding, and each part
of the filter and ranking) wrapped in profiler ranges, run eagerly, so each row gets its host time
and the device time of the kernels it launched. Eager rows show the work; the graphed backend's
stage p50s (``bench/latency.py``) show what is left of it once launches are gone.

    python bench/plan_breakdown.py --model sceneleap_core/assets/default_model --device cuda --oversample 8
    python bench/plan_breakdown.py --preset tiny --device cpu --repeats 2 --points 5000

The post-processing runs at the fixed shapes of the ``cuda_graph`` backend (a ``PairBudget``), so
its rows are the work that backend's post graph replays.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from profile_plan import build_planner, plan_arguments

# ("module[:Class]", attribute, row name): the calls timed, in the order a plan makes them
WRAPPED = (
    ("sceneleap_core.infer.planner:GraspPlanner", "prepare", "prepare"),
    ("sceneleap_core.infer.preprocess", "as_xyz", "prepare/as_xyz"),
    ("sceneleap_core.infer.preprocess", "drop_nonfinite", "prepare/drop_nonfinite"),
    ("sceneleap_core.infer.preprocess", "check_spread", "prepare/check_spread"),
    ("sceneleap_core.infer.preprocess", "support_plane", "prepare/support_plane"),
    ("sceneleap_core.geometry.frames", "estimate_up", "prepare/estimate_up"),
    ("sceneleap_core.geometry.frames", "network_frame", "prepare/network_frame"),
    ("sceneleap_core.infer.planner", "select_anchors", "sample/select_anchors"),
    ("sceneleap_core.infer.planner:GraspPlanner", "_encode", "sample/encode"),
    ("sceneleap_core.infer.planner:GraspPlanner", "_score_anchors", "sample/score_anchors"),
    ("sceneleap_core.infer.planner", "pick_scored", "sample/pick_scored"),
    ("sceneleap_core.infer.planner:GraspPlanner", "_scene_cache", "sample/scene_cache"),
    ("sceneleap_core.infer.planner", "initial_noise", "sample/initial_noise"),
    ("sceneleap_core.models.denoising_loop:DenoisingLoop", "__call__", "sample/loop"),
    ("sceneleap_core.infer.cuda_graph:GraphedLoop", "__call__", "sample/loop (graph)"),
    ("sceneleap_core.infer.planner", "decode_grasps", "sample/decode"),
    ("sceneleap_core.infer.planner", "to_input_frame", "decode/to_input_frame"),
    ("sceneleap_core.infer.planner", "refine", "refine"),
    ("sceneleap_core.infer.planner", "collision_check", "post/collision_check"),
    ("sceneleap_core.infer.planner", "grasp_energy", "post/grasp_energy"),
    ("sceneleap_core.infer.planner", "geometry_terms", "post/geometry_terms"),
    ("sceneleap_core.infer.planner", "diverse_select", "post/diverse_select"),
    ("sceneleap_core.infer.planner", "finger_clearance", "post/finger_clearance"),
    ("sceneleap_core.infer.planner", "reason_histogram", "post/reason_histogram"),
    ("sceneleap_core.infer.planner", "select_grasps", "post (exact)"),
    ("sceneleap_core.infer.cuda_graph:GraphedPost", "__call__", "post (graph)"),
)


def wrap(fn, name: str):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        with torch.profiler.record_function(name):
            return fn(*args, **kwargs)

    return timed


@contextlib.contextmanager
def wrapped_calls():
    """Every call of ``WRAPPED`` inside a profiler range named by its row (restored on exit)."""
    import importlib

    saved = []
    for path, attr, name in WRAPPED:
        mod_name, _, cls_name = path.partition(":")
        owner = importlib.import_module(mod_name)
        owner = getattr(owner, cls_name) if cls_name else owner
        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, wrap(getattr(owner, attr), name))
    try:
        yield
    finally:
        for owner, attr, fn in reversed(saved):
            setattr(owner, attr, fn)


def budgeted_post(planner):
    """The planner's post-processing at the ``cuda_graph`` backend's fixed shapes, run eagerly."""
    from sceneleap_core.infer.cuda_graph import GraphedPost
    from sceneleap_core.infer.planner import select_grasps
    from sceneleap_core.infer.postprocess import PairBudget

    sizes = GraphedPost().budget

    def run(hand, cloud, plane, pose, joints, num_grasps, config, **kwargs):
        with torch.profiler.record_function("post"):
            return select_grasps(hand, cloud, plane, pose, joints, num_grasps, config, **kwargs,
                                 budget=PairBudget(cloud.device, **sizes))  # fmt: skip

    return run


def main(argv=None) -> None:
    from torch.profiler import ProfilerActivity, profile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan_arguments(ap, repeats=5)
    ap.add_argument("--kernels", type=int, default=12, help="top kernels listed (device time)")
    ap.add_argument("--backend", default="eager",
                    help="eager (post at the graph's fixed shapes, run eagerly) or e.g. cuda_graph:tf32 (the graphs' rows)")  # fmt: skip
    args = ap.parse_args(argv)
    planner = build_planner(args, args.backend)
    if planner.backend == "eager":
        planner._post = budgeted_post(planner)  # plan() hands it to finish_grasps on CUDA
    if planner.ranker is not None:
        planner.ranker.score_grasps = wrap(planner.ranker.score_grasps, "post/ranker")
    cloud = tabletop(args.points)
    opts = {"sampler": args.sampler, "steps": args.steps, "oversample": args.oversample}
    cuda = args.device.startswith("cuda")
    if (
        not cuda and planner.backend == "eager"
    ):  # plan() passes the post graph on CUDA only: time the budgeted post here too
        import sceneleap_core.infer.planner as planner_module

        original = planner_module.finish_grasps
        planner_module.finish_grasps = lambda *a, **k: original(*a, **{**k, "graphs": planner._post})
    try:
        for r in range(2):  # warm-up
            planner.plan(cloud, args.grasps, seed=r, **opts)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with wrapped_calls(), profile(activities=activities) as prof:
            for r in range(args.repeats):
                planner.plan(cloud, args.grasps, seed=r, **opts)
            if cuda:
                torch.cuda.synchronize()
    finally:
        if not cuda and planner.backend == "eager":
            planner_module.finish_grasps = original
    averages = prof.key_averages()
    cpu = torch.autograd.DeviceType.CPU
    events = {e.key: e for e in averages if e.device_type == cpu}  # a range's device time: its kernels'
    n = args.repeats
    device = args.device + (f" ({torch.cuda.get_device_name()})" if cuda else "")
    print(f"model {args.model or 'random ' + args.preset}, device {device}, torch {torch.__version__}, "
          f"{args.sampler} {args.steps} steps, G = {args.grasps}, oversample {planner.oversample if args.oversample is None else args.oversample}, "
          f"{args.points} points, backend {args.backend}, {n} plans")  # fmt: skip
    print(f"{'call':28s} {'host ms':>8s} {'device ms':>10s} {'calls':>6s}")
    rows = [name for _, _, name in WRAPPED] + ["post"]
    rows.insert(rows.index("post/collision_check"), rows.pop())
    for name in rows:
        e = events.get(name)
        if e is None:
            continue
        dev = e.device_time_total / 1e3 / n if cuda else float("nan")
        print(f"{name:28s} {e.cpu_time_total / 1e3 / n:8.2f} {dev:10.2f} {e.count / n:6.1f}")
    if cuda:
        kernels = [e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA and e.key not in events]
        print(f"kernel time per plan: {sum(e.self_device_time_total for e in kernels) / 1e3 / n:.2f} ms")
        print(f"\ntop {args.kernels} kernels by device time per plan (ms, launches)")
        for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[: args.kernels]:
            print(f"  {e.key[:90]:90s} {e.self_device_time_total / 1e3 / n:7.3f} {e.count / n:7.1f}")


if __name__ == "__main__":
    main()
