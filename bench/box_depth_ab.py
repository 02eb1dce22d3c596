"""The checks' depth reductions through the fused Triton kernels (``sceneleap_core.geometry.box_depth``)
against the budgeted pair searches they replace, side by side in one process, at a plan's sizes:
the collision check of 256 candidates x 10 hand states against 2,048 points, the ranking energy of
256 grasps, finger clearance of the 32 returned grasps (7 levels, 8,192 points). GPU time per call
(CUDA events, median), and whether the two ways agree (hits, reasons, penetration, joints).

    python bench/box_depth_ab.py --repeats 50
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time

import numpy as np
import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud


def gpu_ms(fn, repeats: int) -> tuple[float, object]:
    """Median time (ms) of ``fn()`` over ``repeats`` calls after two warm-ups (GPU time by CUDA
    events on CUDA, else the host clock), and its last result."""
    out = fn()
    fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            out = fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            out = fn()
            times.append(1e3 * (time.perf_counter() - t))
    return float(np.median(times)), out


def candidates(n: int, seed: int, hand) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` palms over the tabletop's box (some in it, some in the table, some free), joints half-closed."""
    g = torch.Generator().manual_seed(seed)
    pose = torch.eye(4).repeat(n, 1, 1)
    pose[:, :3, 3] = torch.tensor([0.05, 0.0, -0.5]) + (torch.rand(n, 3, generator=g) - 0.5) * torch.tensor(
        [0.3, 0.3, 0.15]
    )
    lo, hi = hand.joint_lower.float().cpu(), hand.joint_upper.float().cpu()
    return pose, lo + (hi - lo) * torch.rand(n, len(lo), generator=g) * 0.5


def main(argv=None) -> None:
    from sceneleap_core.geometry.box_depth import fused_available
    from sceneleap_core.hand import HandModel
    from sceneleap_core.infer.postprocess import (
        PairBudget,
        PostConfig,
        collision_check,
        finger_clearance,
        grasp_energy,
    )
    from sceneleap_core.infer.preprocess import SupportPlane

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=256)
    ap.add_argument("--returned", type=int, default=32)
    ap.add_argument("--points", type=int, default=8192, help="observed points (the model's count)")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if not fused_available(torch.zeros(1, 3, device=dev)):
        raise SystemExit("needs Triton and CUDA (or TRITON_INTERPRET=1 on the CPU: a check of agreement, not of speed)")
    hand = copy.deepcopy(HandModel.load()).to(dev)
    cloud = torch.tensor(tabletop(args.points), dtype=torch.float32, device=dev)
    plane = SupportPlane(np.array([0.0, 0.0, 1.0]), -0.6, 1.0)
    pose, joints = (t.to(dev) for t in candidates(args.candidates, 0, hand))
    fused = PostConfig(clearance="returned")
    pairs = dataclasses.replace(fused, fused_depth=False)
    where = torch.cuda.get_device_name() if dev == "cuda" else "CPU (Triton interpreter)"
    print(f"{where}, torch {torch.__version__}; {args.candidates} candidates x "
          f"{fused.sweep_steps + 2} states, {args.points} points (checks: {fused.max_points}); median ms "
          f"of {args.repeats}")  # fmt: skip
    print(f"{'call':18s} {'fused':>8s} {'pairs':>8s} {'ratio':>6s}  agreement")
    rows = []

    def run(name, call, agree):
        t_f, a = gpu_ms(lambda: call(fused, None), args.repeats)
        budget = PairBudget(dev)  # the planner's graphed default
        t_p, b = gpu_ms(lambda: call(pairs, budget), args.repeats)
        note = agree(a, b) + (", the pair budget overflowed (truncated search)" if bool(budget.overflow) else "")
        rows.append((name, t_f, t_p))
        print(f"{name:18s} {t_f:8.3f} {t_p:8.3f} {t_p / t_f:5.1f}x  {note}", flush=True)

    run("collision_check", lambda cfg, bud: collision_check(hand, pose, joints, cloud, plane, cfg, bud),
        lambda a, b: f"hits differ by <= {int((a['hits'] - b['hits']).abs().max())}, reasons equal "
                     f"{bool(torch.equal(a['reason'], b['reason']))}, rejected {int((~a['keep']).sum())}")  # fmt: skip
    with torch.no_grad():
        run("grasp_energy", lambda cfg, bud: grasp_energy(hand, pose, joints, cloud, plane, cfg, bud),
            lambda a, b: f"penetration max |diff| {float((a['penetration'] - b['penetration']).abs().max()):.2e} "
                         f"of max {float(b['penetration'].max()):.3f}")  # fmt: skip
    top_pose, top_joints = pose[: args.returned], joints[: args.returned]
    run("finger_clearance", lambda cfg, bud: finger_clearance(hand, top_pose, top_joints, cloud, cfg, bud)[1],
        lambda a, b: f"joints max |diff| {float((a - b).abs().max()):.2e} rad, opened "
                     f"{int(((a - top_joints).abs().amax(1) > 1e-6).sum())} of {args.returned}")  # fmt: skip
    total_f, total_p = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"{'the three':18s} {total_f:8.3f} {total_p:8.3f} {total_p / total_f:5.1f}x")


if __name__ == "__main__":
    main()
