"""Why library grasps fail: per object kind, per init kind (plain/side/power) and per approach
label (top/side), the prefilter and simulator outcome of every synthesized grasp.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/library_failures.py [--batch 48] [--steps 150]

Outcomes: ``prefilter`` (dropped before simulation), then the simulator's failure string with
``pregrasp_penetration`` split into ``pregrasp_table`` / ``pregrasp_object`` (which the open,
backed-off hand touches), ``ok`` for grasps that passed both tests. Also prints the yield table
(synthesized, prefiltered, lift-passed, both-passed, yield, CPU-s per validated grasp).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--rests", type=int, default=2)
    ap.add_argument("--kinds", default="box,cylinder,sphere")
    ap.add_argument("--ids", default="0,1,2", help="object ids (one per kind)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sceneleap_core.data.library_build import BuildConfig, LibraryBuilder, grasp_labels, resting_poses
    from sceneleap_core.data.objects import build_mesh, make_procedural
    from sceneleap_core.data.synthesis import object_geometry, prefilter
    from sceneleap_core.data.validate import sim_object, sim_scene
    from sceneleap_core.sim.scene import SceneSpec
    from sceneleap_core.sim.simulator import GraspSim

    cfg = BuildConfig(synth_batch=args.batch, synth_steps=args.steps, rests_per_object=args.rests, workers=1)
    builder = LibraryBuilder(cfg)
    hand, synth, desc = builder.hand, builder.synth, None
    from sceneleap_core.hand.description import HandDescription

    desc = HandDescription.load()
    hist: dict = defaultdict(Counter)
    rows = []
    for kind, oid in zip(args.kinds.split(","), (int(i) for i in args.ids.split(",")), strict=True):
        spec = make_procedural(oid, kind=kind)
        rng = np.random.default_rng([cfg.seed, spec.id])
        rests = resting_poses(spec, rng, count=cfg.rests_per_object, trials=cfg.rest_trials)
        geom = object_geometry(build_mesh(spec), seed=spec.id)
        gen = torch.Generator().manual_seed(int(cfg.seed) * 1_000_003 + spec.id)
        st = Counter()
        t_synth = t_lift = t_dist = 0.0
        for rest in rests:
            on_table = geom.on_table(rest, 0.0)
            t0 = time.perf_counter()
            res = synth.run(on_table, generator=gen)
            ok = prefilter(hand, res, on_table).cpu().numpy()
            t_synth += time.perf_counter() - t0
            b = len(ok)
            n_side, n_power = round(synth.side_fraction * b), round(synth.power_fraction * b)
            init = np.array(["side" if i < n_side else ("power" if i >= b - n_power else "plain") for i in range(b)])
            _, app = grasp_labels(hand, res.pose.detach(), res.joints.detach(), torch.as_tensor(rest), geom.surface)
            pose = res.pose.detach().double().numpy()
            joints = res.joints.detach().double().numpy()
            sim = GraspSim(sim_scene([spec], rest[None], 0.0), hand=desc)
            dsim = GraspSim(SceneSpec([sim_object(spec)], table_height=None), hand=desc)
            st["synthesized"] += b
            st["prefiltered"] += int(ok.sum())
            for g in range(b):
                if not ok[g]:
                    why = "prefilter"
                else:
                    world = rest @ pose[g]
                    t0 = time.perf_counter()
                    out = sim.run_lift(world, joints[g], 0)
                    t_lift += time.perf_counter() - t0
                    why = out.failure or "ok"
                    if why == "pregrasp_penetration":
                        d = sim.hand_penetration(sim.pregrasp_pose(world), sim.open_joints(joints[g]))
                        why = "pregrasp_table" if d[-1] >= d[0] else "pregrasp_object"
                    if why == "ok":
                        st["lift_passed"] += 1
                        t0 = time.perf_counter()
                        d_out = dsim.run_disturbance(pose[g], joints[g], 0)
                        t_dist += time.perf_counter() - t0
                        why = "ok" if d_out.success else f"dist:{d_out.failure}"
                        st["both_passed"] += int(d_out.success)
                hist[(kind, init[g], ("top", "side")[int(app[g])])][why] += 1
                hist[(kind, "*", "*")][why] += 1
                hist[("*", init[g], "*")][why] += 1
                hist[("*", "*", ("top", "side")[int(app[g])])][why] += 1
        cpu = t_synth + t_lift + t_dist
        rows.append((kind, st, t_synth, t_lift, t_dist, cpu))
    reasons = sorted({r for c in hist.values() for r in c}, key=lambda r: (r != "ok", r))
    print("\nfailure reasons (count) per object kind / init kind / approach label")
    head = f"{'kind':<9}{'init':<7}{'appr':<6}{'n':>5}" + "".join(f"{r[:16]:>17}" for r in reasons)
    print(head)
    for key in sorted(hist, key=lambda k: (k[0] == "*", k)):
        c = hist[key]
        print(f"{key[0]:<9}{key[1]:<7}{key[2]:<6}{sum(c.values()):>5}" + "".join(f"{c[r]:>17}" for r in reasons))
    print("\nyield per object kind")
    print(f"{'kind':<9}{'synth':>7}{'prefilt':>8}{'lift':>6}{'both':>6}{'yield':>7}{'synth_s':>9}{'lift_s':>8}"
          f"{'dist_s':>8}{'cpu-s/valid':>12}")  # fmt: skip
    for kind, st, ts, tl, td, cpu in rows:
        y = st["both_passed"] / max(st["synthesized"], 1)
        per = cpu / st["both_passed"] if st["both_passed"] else float("inf")
        print(f"{kind:<9}{st['synthesized']:>7}{st['prefiltered']:>8}{st['lift_passed']:>6}{st['both_passed']:>6}"
              f"{y:>7.3f}{ts:>9.1f}{tl:>8.1f}{td:>8.1f}{per:>12.2f}")  # fmt: skip
    builder.close()


if __name__ == "__main__":
    main()
