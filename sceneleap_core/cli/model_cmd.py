"""``sceneleap model``: inspect and pack a trained model directory.

    sceneleap model info DIR
    sceneleap model pack DIR --out OUT [--dtype float16] [--max-shard-mb 15] [--sampler S] [--oversample K]
                         [--temperature T] [--guidance W] [--post KEY=VALUE ...]

``pack`` re-writes a ``save_pretrained`` directory (a run's ``model/``) for shipping: floating-point
weights in a smaller dtype, split into safetensors files of at most ``--max-shard-mb`` MiB, the
config and normalizer unchanged; then loads the result and reports the largest weight change.
"""

from __future__ import annotations

import argparse

_DTYPES = ("float32", "float16", "bfloat16")


def _info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sceneleap_core.models import GraspGenerator

    model, normalizer, extra = GraspGenerator.load_pretrained(args.dir)
    meta = json.loads((Path(args.dir) / "config.json").read_text())
    files = sorted(Path(args.dir).glob("model*.safetensors"))
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.dir}: {params / 1e6:.2f} M parameters, weights {meta.get('weights_dtype', 'float32')} in "
          f"{len(files)} file(s), {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB")  # fmt: skip
    cfg = model.config
    print(f"encoder {cfg.encoder}, denoiser {cfg.denoiser} d{cfg.d_model} x {cfg.depth}, objective {cfg.objective}, "
          f"prediction {cfg.prediction}, anchor {cfg.anchor}, normalizer {'yes' if normalizer is not None else 'no'}")  # fmt: skip
    if extra:
        print("extra:", json.dumps(extra, sort_keys=True)[:400])
    return 0


def _pack(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from sceneleap_core.infer.critic import CRITIC_NAME, GraspCritic
    from sceneleap_core.infer.ranker import RANKER_NAME, GraspRanker
    from sceneleap_core.models import GraspGenerator

    if args.max_shard_mb <= 0:
        raise ValueError(f"--max-shard-mb: expected > 0, got {args.max_shard_mb}")
    if Path(args.out).resolve() == Path(args.dir).resolve():
        raise ValueError("--out: expected a directory other than the source")
    if args.oversample is not None and not args.oversample >= 1:
        raise ValueError(f"--oversample: expected >= 1 candidates per returned grasp, got {args.oversample}")
    from sceneleap_core.models.objectives import check_guidance, check_temperature

    if args.temperature is not None:
        check_temperature(args.temperature)
    if args.guidance is not None:
        check_guidance(args.guidance)
    post = None
    if args.post:  # validated against PostConfig now, not at the first plan
        from dataclasses import asdict

        from sceneleap_core.cli.key_values import parse_key_values
        from sceneleap_core.infer.postprocess import PostConfig

        post = parse_key_values(args.post, "--post", PostConfig())
        post = {k: v for k, v in asdict(PostConfig.from_dict(post)).items() if k in post}
    model, normalizer, extra = GraspGenerator.load_pretrained(args.dir)
    if post is not None:  # post-processing defaults, read back by GraspPlanner.from_pretrained
        planner = (extra or {}).get("planner", {})
        extra = {**(extra or {}), "planner": {**planner, "post": {**planner.get("post", {}), **post}}}
    # the planner's defaults, read back by GraspPlanner.from_pretrained
    for key in ("oversample", "temperature", "guidance"):
        if getattr(args, key) is not None:
            extra = {**(extra or {}), "planner": {**(extra or {}).get("planner", {}), key: float(getattr(args, key))}}
    if args.sampler is not None:  # the deployed sampler, recorded in the config (validated there)
        model.config = model.config.replace(sampler=args.sampler)
    out = model.save_pretrained(
        args.out, normalizer, extra, dtype=getattr(torch, args.dtype), max_shard_bytes=int(args.max_shard_mb * 2**20)
    )
    ranker = Path(args.dir) / RANKER_NAME
    if ranker.is_file():  # the learned grasp ranker and critic travel with the model
        GraspRanker.load(ranker).save(Path(out) / RANKER_NAME)
    if (Path(args.dir) / CRITIC_NAME).is_file():
        GraspCritic.load(args.dir).save(out)
    packed, _, _ = GraspGenerator.load_pretrained(out)
    change = max(
        float((a - b).abs().max()) if a.is_floating_point() else 0.0
        for a, b in zip(model.state_dict().values(), packed.state_dict().values())
    )
    files = sorted(out.glob("model*.safetensors"))
    print(f"wrote {out}: {len(files)} file(s), largest {max(f.stat().st_size for f in files) / 2**20:.1f} MiB, "
          f"total {sum(f.stat().st_size for f in files) / 2**20:.1f} MiB, {args.dtype}; largest weight change {change:.2e}")  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="inspect or pack a trained model directory", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    msub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    q = msub.add_parser("info", help="parameters, sizes and config of a model directory")
    q.add_argument("dir", help="save_pretrained directory")
    q.set_defaults(func=_info)
    q = msub.add_parser("pack", help="re-write a model directory in a smaller dtype, sharded, for shipping")
    q.add_argument("dir", help="save_pretrained directory (e.g. runs/x/model)")
    q.add_argument("--out", required=True, help="output directory")
    q.add_argument("--dtype", choices=_DTYPES, default="float16", help="dtype of the stored weights")
    q.add_argument("--max-shard-mb", type=float, default=15.0, help="largest weight file, MiB")
    q.add_argument(
        "--sampler",
        default=None,
        help="record the deployed sampler (ddim, dpmpp, ddpm, ...) in the config; default: keep the source's",
    )
    q.add_argument(
        "--oversample",
        type=float,
        default=None,
        help="record the planner's candidates per returned grasp (extra.planner.oversample); default: keep the source's",
    )
    q.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="record the planner's sampler temperature (initial noise scale, extra.planner.temperature); "
        "default: keep the source's",
    )
    q.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="record the planner's classifier-free guidance scale (extra.planner.guidance; 1 = off); "
        "default: keep the source's",
    )
    q.add_argument(
        "--post",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="record a post-processing default (a PostConfig field, e.g. clearance=candidates; extra.planner.post); "
        "repeatable, merged into the source's",
    )
    q.set_defaults(func=_pack)
