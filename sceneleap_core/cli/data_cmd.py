"""``sceneleap data generate|stats|show|export|distill``: make, summarize, picture and export grasp
datasets, and distill a model's lift-verified grasps into one (:mod:`sceneleap_core.data.distill`).

The committed sample dataset (``sceneleap_core/data/sample``: 2 shards, 8 samples of 4 scenes,
112 lift-validated scene grasps, 0.5 MB) is made by::

    rm -rf sceneleap_core/data/sample
    OMP_NUM_THREADS=1 sceneleap data generate --out sceneleap_core/data/sample --num-scenes 4 \\
        --scenes-per-shard 2 --num-objects 24 --objects-per-scene 1 3 --views 2 --max-points 4096 \\
        --synth-batch 64 --synth-steps 200

It is deterministic (every random choice is seeded by the scene index or object id) and takes
about 4.5 minutes on one CPU core (synthesis 64 x 200 steps per object and scene, each grasp
lift-tested in MuJoCo alone and again in its scene).
"""

from __future__ import annotations

import argparse
import json


def _generate(args: argparse.Namespace) -> int:
    from sceneleap_core.data.pipeline import GenerateConfig, generate, parse_shard

    shard = parse_shard(args.shard)
    cfg = GenerateConfig(
        num_scenes=args.num_scenes,
        scenes_per_shard=args.scenes_per_shard,
        num_objects=args.num_objects,
        object_seed=args.object_seed,
        seed=args.seed,
        split=args.split,
        objects_per_scene=tuple(args.objects_per_scene),
        views_per_scene=args.views,
        max_points=args.max_points,
        synth_batch=args.synth_batch,
        synth_steps=args.synth_steps,
        synth_rounds=args.synth_rounds,
        device=args.device,
        protocol=args.protocol,
        workers=args.workers,
        scene_lift=not args.no_scene_lift,
        scene_synthesis=not args.object_level_grasps,
        compression=args.compression,
        use_pybullet=args.pybullet,
    )
    if (
        cfg.objects_per_scene[0] < 1
        or cfg.objects_per_scene[1] < cfg.objects_per_scene[0]
        or cfg.objects_per_scene[1] > 8
    ):
        raise ValueError(f"--objects-per-scene: expected 1 <= MIN <= MAX <= 8, got {args.objects_per_scene}")
    report = generate(args.out, cfg, shard=shard, progress=not args.quiet)
    print(json.dumps(report, indent=1))
    return 0


def _distill(args: argparse.Namespace) -> int:
    from sceneleap_core.data.distill import DistillConfig, distill
    from sceneleap_core.data.pipeline import parse_shard
    from sceneleap_core.infer.planner import GraspPlanner

    for name in ("grasps", "views_per_shard", "steps", "workers"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    if args.views is not None and args.views < 1:
        raise ValueError(f"--views: expected >= 1, got {args.views}")
    shard = parse_shard(args.shard)
    config = DistillConfig(views=args.views, num_grasps=args.grasps, seed=args.seed,
                           keep_ground_truth=args.keep_ground_truth, views_per_shard=args.views_per_shard,
                           steps=args.steps, sampler=args.sampler)  # fmt: skip
    planner = GraspPlanner.from_pretrained(args.model, device=args.device, backend=args.backend)
    stats = distill(planner, args.root, args.out, config, workers=args.workers, model_name=str(args.model),
                    shard=shard, progress=not args.quiet)  # fmt: skip
    print(json.dumps(stats))
    return 0


def _stats(args: argparse.Namespace) -> int:
    from sceneleap_core.data.show import dataset_stats

    print(dataset_stats(args.root, verify=args.verify))
    return 0


def _show(args: argparse.Namespace) -> int:
    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.data.show import render_sample

    ds = ShardDataset(args.root)
    if not 0 <= args.index < len(ds):
        raise ValueError(f"--index: expected 0 <= index < {len(ds)}, got {args.index}")
    out = render_sample(ds[args.index], args.out, max_grasps=args.grasps, title=f"{args.root} sample {args.index}")
    print(f"wrote {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sceneleap_core.data.export import export_sample

    n_obj, n_grasps = export_sample(args.root, args.index, args.scene, args.grasps)
    print(f"wrote {args.scene} ({n_obj} objects) and {args.grasps} ({n_grasps} grasps)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="generate, summarize or picture grasp datasets (HDF5 shards)")
    data_sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    gen = data_sub.add_parser("generate", help="objects -> validated grasps -> scenes -> depth views -> shards")
    gen.add_argument("--out", required=True, help="dataset directory (created; existing shards are skipped)")
    gen.add_argument("--shard", default="0/1", help="'i/n': this process makes shards k with k %% n == i")
    gen.add_argument("--num-scenes", type=int, default=4)
    gen.add_argument("--scenes-per-shard", type=int, default=2)
    gen.add_argument("--num-objects", type=int, default=24, help="procedural objects in the library (all splits)")
    gen.add_argument("--object-seed", type=int, default=0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--split", default="train", choices=("train", "val", "test"), help="objects used in the scenes")
    gen.add_argument("--objects-per-scene", type=int, nargs=2, default=(1, 4), metavar=("MIN", "MAX"))
    gen.add_argument("--views", type=int, default=2, help="camera views (samples) per scene")
    gen.add_argument("--max-points", type=int, default=4096, help="random subsample of each cloud")
    gen.add_argument("--synth-batch", type=int, default=64, help="grasps optimized per object and round")
    gen.add_argument("--synth-steps", type=int, default=200)
    gen.add_argument("--synth-rounds", type=int, default=1, help="more rounds for objects with too few grasps")
    gen.add_argument("--device", default="cpu", help="torch device of the synthesis (cpu, cuda)")
    gen.add_argument("--protocol", default="lift", choices=("lift", "disturbance", "lift+disturbance"))
    gen.add_argument("--workers", type=int, default=1, help="validation processes")
    gen.add_argument("--no-scene-lift", action="store_true", help="skip the lift test of grasps in the scene")
    gen.add_argument(
        "--object-level-grasps",
        action="store_true",
        help="synthesize once per object in free space (cached across scenes) instead of per scene on the table",
    )
    gen.add_argument("--compression", default="lzf", choices=("gzip", "lzf", "none"))
    gen.add_argument("--pybullet", action="store_true", help="add pybullet_data random_urdfs 000-799 (if installed)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_generate)
    stats = data_sub.add_parser("stats", help="summarize a dataset (counts, grasps per sample, objects, splits)")
    stats.add_argument("root", help="dataset directory (with manifest.json)")
    stats.add_argument("--verify", action="store_true", help="check shard checksums against the manifest")
    stats.set_defaults(func=_stats)
    show = data_sub.add_parser("show", help="render one sample (cloud + grasps as hand boxes) to a PNG")
    show.add_argument("root", help="dataset directory")
    show.add_argument("--index", type=int, default=0, help="global sample index")
    show.add_argument("--grasps", type=int, default=4, help="grasps drawn")
    show.add_argument("--out", default="sample.png")
    show.set_defaults(func=_show)
    export = data_sub.add_parser("export", help="write a sample's scene and grasps for `sceneleap eval-grasps`")
    export.add_argument("root", help="dataset directory")
    export.add_argument("--index", type=int, default=0, help="global sample index")
    export.add_argument("--scene", default="scene.json", help="output scene JSON (world frame, table)")
    export.add_argument("--grasps", default="grasps.npz", help="output grasps NPZ (world frame, targets)")
    export.set_defaults(func=_export)
    dist = data_sub.add_parser(
        "distill", help="plan grasps on a dataset's views with a model, lift-test them, keep those that lift"
    )
    dist.add_argument("root", help="source dataset directory (its views are planned on)")
    dist.add_argument("--model", required=True, help="save_pretrained directory (the planner's defaults apply)")
    dist.add_argument("--out", required=True, help="distilled dataset directory (a re-run resumes)")
    dist.add_argument("--views", type=int, default=None, help="views used, a seeded random choice (default: all)")
    dist.add_argument("--grasps", type=int, default=32, help="grasps planned per view")
    dist.add_argument("--seed", type=int, default=0, help="seed of the view choice; view i plans with seed + i")
    dist.add_argument("--keep-ground-truth", action="store_true", help="keep each view's own grasps too")
    dist.add_argument("--views-per-shard", type=int, default=64, help="views per written shard (the unit of resume)")
    dist.add_argument("--steps", type=int, default=10, help="denoising steps")
    dist.add_argument("--sampler", default=None, help="ddim, dpmpp, ddpm, ... (default: the model's)")
    dist.add_argument("--workers", type=int, default=1, help="simulation processes")
    dist.add_argument("--device", default="cpu", help="torch device of the planner (cpu, cuda)")
    dist.add_argument("--backend", default="eager", help="planner backend (eager, cuda_graph, ...)")
    dist.add_argument("--shard", default="0/1", help="'i/n': this process writes shards k with k %% n == i")
    dist.add_argument("--quiet", action="store_true", help="no progress bar")
    dist.set_defaults(func=_distill)
