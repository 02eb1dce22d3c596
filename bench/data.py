"""Data-engine benchmark: validated grasps per second, yield, and shard read throughput by compression.

    python bench/data.py --device cpu --objects 2 --batch 64 --steps 200 --workers 2
    python bench/data.py --device cuda --objects 8 --batch 1024 --steps 200 --workers 16   # one H100/H200

Validated grasps/s = grasps passing the MuJoCo lift test / wall time of the whole loop, where the
synthesis of the next object (on ``--device``) overlaps the validation of the previous ones (a
persistent pool of ``--workers`` MuJoCo processes, :meth:`SimValidator.submit`). The generation
pipeline shares the persistent pool but still validates each object before synthesizing the next.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def bench_synthesis(args) -> dict:
    from sceneleap_core.data.objects import build_mesh, make_library
    from sceneleap_core.data.synthesis import GraspSynthesizer, object_geometry, prefilter
    from sceneleap_core.data.validate import SimValidator
    from sceneleap_core.hand import HandModel

    hand = HandModel.load().to(args.device)
    syn = GraspSynthesizer(hand, batch_size=args.batch, steps=args.steps, close_in=not args.no_close_in)
    validator = SimValidator(protocol=args.protocol, workers=args.workers)
    total = {"synthesized": 0, "prefiltered": 0, "valid": 0, "t_synth": 0.0, "t_valid_wait": 0.0}
    pending = []
    t_start = time.perf_counter()
    # synthesis of object k+1 on the device overlaps the MuJoCo validation of object k on the CPUs
    for spec in make_library(args.objects, seed=args.seed):
        geom = object_geometry(build_mesh(spec), seed=spec.id)
        t0 = time.perf_counter()
        res = syn.run(geom, generator=torch.Generator().manual_seed(spec.id), progress=True)
        ok = prefilter(hand, res, geom).cpu().numpy()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        total["t_synth"] += time.perf_counter() - t0
        pose, joints = res.pose.cpu().double().numpy()[ok], res.joints.cpu().double().numpy()[ok]
        pending.append((spec, len(ok), int(ok.sum()), validator.submit(spec, pose, joints)))
    t_wait = time.perf_counter()
    for spec, n, n_ok, job in pending:
        v = job.result()
        total["synthesized"] += n
        total["prefiltered"] += n_ok
        total["valid"] += int(v.success.sum())
        print(f"object {spec.id} ({spec.kind}): {n_ok}/{n} prefiltered, {v.success.sum()} valid")
    total["t_valid_wait"] = time.perf_counter() - t_wait
    total["t_wall"] = time.perf_counter() - t_start
    validator.close()
    total["validated_per_s"] = total["valid"] / total["t_wall"]
    total["synthesized_per_s"] = total["synthesized"] / total["t_synth"]
    total["yield_all"] = total["valid"] / max(total["synthesized"], 1)
    total["yield_prefiltered"] = total["valid"] / max(total["prefiltered"], 1)
    return total


def bench_read(args) -> dict:
    from sceneleap_core.data.shards import Sample, ShardReader, ShardWriter

    rng = np.random.default_rng(0)
    samples = [
        Sample(
            points=rng.normal(size=(args.points, 3)).astype(np.float32) * 0.1 + [0, 0, 0.7],
            point_object=rng.integers(-1, 4, args.points).astype(np.int32),
            camera_pose=np.eye(4),
            grasp_pose=np.tile(np.eye(4, dtype=np.float32), (64, 1, 1)),
            grasp_joints=rng.normal(size=(64, 16)).astype(np.float32),
            grasp_object=rng.integers(0, 4, 64).astype(np.int32),
        )
        for _ in range(args.samples)
    ]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for comp in ("gzip", "lzf", "none"):
            path = Path(tmp) / f"{comp}.h5"
            w = ShardWriter(path, hand="leap_hand_right", dof=16, compression=comp)
            for s in samples:
                w.add(s)
            t0 = time.perf_counter()
            w.close()
            t_write = time.perf_counter() - t0
            reader = ShardReader(path)
            order = rng.permutation(len(reader))
            t0 = time.perf_counter()
            for i in order:
                reader[int(i)]
            dt = time.perf_counter() - t0
            out[comp] = {"MB": path.stat().st_size / 1e6, "samples_per_s": len(order) / dt, "write_s": t_write}
            reader.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--objects", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--workers", type=int, default=1, help="MuJoCo validation processes")
    p.add_argument("--protocol", default="lift")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=200, help="samples in the read benchmark shard")
    p.add_argument("--points", type=int, default=4096, help="points per sample in the read benchmark")
    p.add_argument("--skip-synthesis", action="store_true")
    p.add_argument("--no-close-in", action="store_true", help="skip the close-in post-processing (for comparison)")
    args = p.parse_args()
    result = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "close_in": not args.no_close_in,
    }
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name()
    result["read"] = bench_read(args)
    if not args.skip_synthesis:
        result["synthesis"] = bench_synthesis(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
