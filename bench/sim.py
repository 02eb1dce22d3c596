#!/usr/bin/env python3
"""Physics evaluator throughput: grasps evaluated per second, per protocol, against the number of
worker processes and the number of objects in the scene (MuJoCo on CPU).

    python bench/sim.py [--grasps 64] [--workers 1,2] [--objects 1,4,8] [--protocols lift,disturbance]

Grasps are the tests' enveloping grasp on a 5 cm cube with the palm jittered (±6 mm, ±10° yaw), so
both successes and failures are timed; extra objects are distractors on the table around the cube.
Prints markdown tables; copy them into bench/RESULTS.md with the date and machine.
There is no GPU-batched path (MJX / MuJoCo Warp) yet: ``--device`` accepts only ``cpu``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

ENVELOP_Q = [-0.02, 0.35, 0.72, 1.32, 0.02, 0.23, 0.55, 1.24, 0.01, 1.05, 1.61, 1.52, 0.65, 0.74, 0.56, 1.37]
ENVELOP_AT = (-0.01, 0.03, 0.112)


def make_scene(num_objects: int):
    from sceneleap_core.sim import ObjectSpec, SceneSpec

    cube = np.eye(4)
    cube[2, 3] = 0.025
    objects = [ObjectSpec("box", (0.025,) * 3, cube, mass=0.1, object_id="cube")]
    for k in range(num_objects - 1):  # distractors on a ring 22 cm around the cube
        angle = 2 * np.pi * k / max(1, num_objects - 1)
        pose = np.eye(4)
        pose[:3, 3] = [0.22 * np.cos(angle), 0.22 * np.sin(angle), 0.03]
        kind, size = ("cylinder", (0.025, 0.03)) if k % 2 else ("box", (0.02, 0.03, 0.03))
        objects.append(ObjectSpec(kind, size, pose, mass=0.1, object_id=f"d{k}"))
    return SceneSpec(objects, table_height=0.0)


def make_grasps(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4, 4) palm poses around the enveloping grasp, (n, 16) joints."""
    rng = np.random.default_rng(seed)
    poses = np.tile(np.eye(4), (n, 1, 1))
    yaw = np.deg2rad(rng.uniform(-10, 10, n))
    poses[:, 0, 0], poses[:, 0, 1], poses[:, 1, 0], poses[:, 1, 1] = np.cos(yaw), -np.sin(yaw), np.sin(yaw), np.cos(yaw)
    poses[:, :3, 3] = np.asarray(ENVELOP_AT) + rng.uniform(-0.006, 0.006, (n, 3))
    return poses, np.tile(ENVELOP_Q, (n, 1))


def timed_eval(scene, poses, joints, protocol: str, workers: int) -> tuple[float, object]:
    from sceneleap_core.sim import evaluate_grasps

    evaluate_grasps(scene, poses[:1], joints[:1], 0, protocol=protocol)  # warm-up: imports, model build
    t0 = time.perf_counter()
    report = evaluate_grasps(scene, poses, joints, 0, protocol=protocol, workers=workers)
    return time.perf_counter() - t0, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grasps", type=int, default=64)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--objects", default="1,4,8", help="comma-separated object counts (lift test)")
    parser.add_argument("--protocols", default="lift,disturbance")
    parser.add_argument("--device", default="cpu", help="only 'cpu' (no MJX / Warp path yet)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.device != "cpu":
        raise SystemExit(
            f"--device: expected 'cpu' (a GPU-batched MJX/Warp path is not implemented), got {args.device!r}"
        )
    import mujoco

    workers = [int(w) for w in args.workers.split(",")]
    objects = [int(o) for o in args.objects.split(",")]
    protocols = args.protocols.split(",")
    poses, joints = make_grasps(args.grasps, args.seed)
    print(
        f"# bench/sim.py  {args.grasps} grasps, MuJoCo {mujoco.__version__}, {os.cpu_count()} CPU cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print("\n| protocol | workers | grasps/s | grasps/s per worker | success rate | s per grasp (1 core) |")
    print("|---|---|---|---|---|---|")
    scene = make_scene(1)
    for protocol in protocols:
        base = None
        for w in workers:
            seconds, report = timed_eval(scene, poses, joints, protocol, w)
            rate = args.grasps / seconds
            base = base or seconds
            res = report.lift if protocol == "lift" else report.disturbance
            print(
                f"| {protocol} | {w} | {rate:.1f} | {rate / w:.1f} | {res.success.mean():.2f} | "
                f"{seconds / args.grasps * w:.3f} |"
            )
    print("\n| objects in scene | lift grasps/s (1 worker) | success rate |")
    print("|---|---|---|")
    for n in objects:
        seconds, report = timed_eval(make_scene(n), poses, joints, "lift", 1)
        print(f"| {n} | {args.grasps / seconds:.1f} | {report.lift.success.mean():.2f} |")


if __name__ == "__main__":
    main()
