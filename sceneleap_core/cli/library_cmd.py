"""``sceneleap library build|merge|stats``: the object grasp library (per object and resting pose,
validated grasps; :mod:`sceneleap_core.data.library_build`).

Two GPUs, one process each (``bench/library_2gpu.sh`` does this)::

    sceneleap library build --out LIB --num-objects 1000 --device cuda --workers 15 --shard 0/2 &
    sceneleap library build --out LIB --num-objects 1000 --device cuda --workers 15 --shard 1/2 &
    wait; sceneleap library merge LIB; sceneleap library stats LIB --png LIB/stats.png
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def _build(args: argparse.Namespace) -> int:
    from sceneleap_core.data.library_build import BuildConfig, build
    from sceneleap_core.data.pipeline import parse_shard

    shard = parse_shard(args.shard)
    for name in ("num_objects", "workers", "synth_batch", "synth_rounds", "rests", "objects_per_part"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    for name in ("first_id", "synth_steps"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')}: expected >= 0, got {getattr(args, name)}")
    if not 0.0 <= args.side_fraction <= 1.0:
        raise ValueError(f"--side-fraction: expected a fraction in [0, 1], got {args.side_fraction}")
    cfg = BuildConfig(
        num_objects=args.num_objects,
        first_id=args.first_id,
        object_seed=args.object_seed,
        seed=args.seed,
        use_pybullet=args.pybullet,
        objects_per_part=args.objects_per_part,
        rests_per_object=args.rests,
        synth_batch=args.synth_batch,
        synth_steps=args.synth_steps,
        synth_rounds=args.synth_rounds,
        side_fraction=args.side_fraction,
        device=args.device,
        workers=args.workers,
        protocol=args.protocol,
    )
    command = "sceneleap " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = build(args.out, cfg, shard=shard, progress=not args.quiet, command=command)
    print(json.dumps(report, indent=1))
    return 0


def _merge(args: argparse.Namespace) -> int:
    from sceneleap_core.data.library_build import merge

    meta = merge(args.root)
    print(json.dumps({k: meta[k] for k in ("parts", "totals", "validated_grasps_per_s", "grasp_types", "approaches")}))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from sceneleap_core.data.library_build import library_stats

    print(library_stats(args.root, args.png))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("library", help="build, merge or summarize the object grasp library")
    lib_sub = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    b = lib_sub.add_parser("build", help="objects -> resting poses -> synthesized grasps -> lift + disturbance")
    b.add_argument("--out", required=True, help="library directory (parts in OUT/parts; finished parts are skipped)")
    b.add_argument("--num-objects", type=int, required=True, help="procedural objects (ids FIRST..FIRST+N-1)")
    b.add_argument("--first-id", type=int, default=0, help="first object id")
    b.add_argument("--object-seed", type=int, default=0)
    b.add_argument("--seed", type=int, default=0, help="seed of rests and synthesis (per object id)")
    b.add_argument("--shard", default="0/1", help="'i/n': this process makes parts k with k %% n == i")
    b.add_argument("--device", default="cpu", help="synthesis device: cpu, cuda (cuda:{i %% GPUs}) or cuda:N")
    b.add_argument("--workers", type=int, default=1, help="validation processes (spawned, persistent)")
    b.add_argument("--synth-batch", type=int, default=64, help="grasps optimized per rest and round")
    b.add_argument("--synth-steps", type=int, default=150)
    b.add_argument("--synth-rounds", type=int, default=1)
    b.add_argument("--rests", type=int, default=2, help="resting poses per object (at most)")
    b.add_argument("--side-fraction", type=float, default=0.35, help="fraction of near-horizontal initializations")
    b.add_argument("--objects-per-part", type=int, default=8)
    b.add_argument("--protocol", default="lift+disturbance", choices=("lift", "lift+disturbance"))
    b.add_argument("--pybullet", action="store_true", help="add pybullet_data random_urdfs (if installed)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    m = lib_sub.add_parser("merge", help="concatenate OUT/parts/*.npz into OUT/library.npz with metadata")
    m.add_argument("root", help="library directory")
    m.set_defaults(func=_merge)
    s = lib_sub.add_parser("stats", help="grasp types, approaches and per-family yield (text, optional PNG)")
    s.add_argument("root", help="library directory or .npz")
    s.add_argument("--png", default=None, help="write the histograms to this PNG")
    s.set_defaults(func=_stats)
