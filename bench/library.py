"""Library build benchmark: ``python bench/library.py --out DIR --num-objects N [--workers W]
[--device cpu|cuda] [--shard i/n] [--synth-batch B] [--synth-steps T] [--merge-only]``.

Builds (or resumes) a library, merges it and prints one table: objects, rests, synthesized,
validated grasps, seconds, validated grasps/s, yield per family, file size (MiB). Runs on CPU at
tiny size (``--num-objects 2 --synth-batch 16 --synth-steps 40``).
"""

import argparse
import os
import time

from sceneleap_core.data.library import LIBRARY_FILE
from sceneleap_core.data.library_build import BuildConfig, build, merge
from sceneleap_core.data.pipeline import parse_shard


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--num-objects", type=int, default=2)
    p.add_argument("--first-id", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--shard", default="0/1")
    p.add_argument("--synth-batch", type=int, default=64)
    p.add_argument("--synth-steps", type=int, default=150)
    p.add_argument("--rests", type=int, default=2)
    p.add_argument("--merge-only", action="store_true", help="only merge and print (after shard processes)")
    args = p.parse_args()
    t0 = time.perf_counter()
    if not args.merge_only:
        cfg = BuildConfig(num_objects=args.num_objects, first_id=args.first_id, workers=args.workers,
                          device=args.device, synth_batch=args.synth_batch, synth_steps=args.synth_steps,
                          rests_per_object=args.rests)  # fmt: skip
        build(args.out, cfg, shard=parse_shard(args.shard), progress=True)
        if args.shard != "0/1":
            print(f"shard {args.shard} done in {time.perf_counter() - t0:.1f} s")
            return
    meta = merge(args.out)
    t = meta["totals"]
    size = os.path.getsize(os.path.join(args.out, LIBRARY_FILE)) / 2**20
    wall = max(meta["shard_wall_seconds"].values())
    print(f"\n{'objects':<22}{t['objects']}\n{'rests':<22}{t['rests']}\n{'synthesized':<22}{t['synthesized']}")
    print(f"{'prefiltered':<22}{t['prefiltered']}\n{'lift passed':<22}{t['lift_passed']}")
    print(f"{'validated grasps':<22}{t['grasps']}\n{'seconds (wall)':<22}{wall:.1f}")
    print(f"{'validated grasps/s':<22}{meta['validated_grasps_per_s']:.2f}\n{'file MiB':<22}{size:.2f}")
    obj = max(t["objects"], 1)
    print(f"per object: synth {t['synth_s'] / obj:.1f} s, lift {t['lift_cpu_s'] / obj:.1f} CPU-s, "
          f"disturbance {t['disturbance_cpu_s'] / obj:.1f} CPU-s, rests {t['rest_s'] / obj:.2f} s")  # fmt: skip
    n_lift = max(t["prefiltered"], 1)
    print(
        f"per grasp: lift {t['lift_cpu_s'] / n_lift:.3f} CPU-s (of {t['prefiltered']}), "
        f"disturbance {t['disturbance_cpu_s'] / max(t['lift_passed'], 1):.3f} CPU-s (of {t['lift_passed']})"
    )
    print(f"{'family':<14}{'objects':>8}{'synth':>8}{'valid':>8}{'yield':>7}")
    for kind, f in sorted(meta["families"].items()):
        print(f"{kind:<14}{f['objects']:>8}{f['synthesized']:>8}{f['validated']:>8}{f['yield']:>7.3f}")


if __name__ == "__main__":
    main()
