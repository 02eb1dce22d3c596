"""``sceneleap train``: train (or resume) a grasp generator from YAML configs and overrides.

    sceneleap train --config config/train/default.yaml trainer.max_steps=100 model.depth=4
    sceneleap train --resume runs/dit [trainer.max_steps=40000]
    sceneleap train --config config/train/tiny.yaml --print-config

Multi-GPU, torchrun and SLURM commands: see ``sceneleap_core.train``.
"""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from sceneleap_core.train.config import config_to_dict, load_config

    base = None
    if args.resume:
        from sceneleap_core.train.runner import find_checkpoint

        run, _ = find_checkpoint(args.resume)
        saved = run / "config.yaml"
        if not saved.is_file():
            raise ValueError(f"--resume: expected {saved} (written when the run started), got none")
        base = OmegaConf.to_container(OmegaConf.load(saved))
        base["run_dir"] = str(run)
    elif not args.config:
        raise ValueError("expected --config FILE.yaml (or --resume RUN_DIR), got neither")
    cfg = load_config(args.config or [], args.overrides, base=base)
    if args.print_config:
        print(OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg))))
        return 0
    from sceneleap_core.train.runner import train

    out = train(cfg, resume=args.resume)
    print(f"exported model: {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train or resume a grasp generator",
        description="Train a grasp generator. Overrides are dotted keys: trainer.max_steps=100 model.depth=4 logger=wandb",
    )
    parser.add_argument("--config", action="append", default=[], help="YAML config (repeatable; later files win)")
    parser.add_argument("--resume", default=None, help="run directory (uses checkpoints/last.ckpt) or a .ckpt file")
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_steps=100")
    parser.set_defaults(func=_run)
