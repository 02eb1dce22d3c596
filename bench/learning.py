"""The learning ladder, rung by rung (sceneleap_core.train.ladder): does the model learn, and does
it generalize? Prints one table (lift success of sampled grasps, chamfer, penetration,
conditioning gap) and writes ladder.json + ladder.png into the run directory.

    # train with a config, then climb the ladder (CPU: small sizes; GPU: the default config)
    python bench/learning.py --config config/train/default.yaml data.root=data/train run_dir=runs/x \
        --held-out unseen=data/test --views 16 --grasps 16
    # climb the ladder of an existing run (its config.yaml and model/)
    python bench/learning.py --run runs/x --held-out unseen=data/test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main(argv=None) -> int:
    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.hand import HandModel
    from sceneleap_core.models import GraspGenerator
    from sceneleap_core.train.config import ValConfig, load_config
    from sceneleap_core.train.data import GraspSceneDataset, usable_indices
    from sceneleap_core.train.ladder import HEADER, ground_truth_rung, oracle_rung, sampled_rung, spread_indices
    from sceneleap_core.train.module import GraspTrainingModule
    from sceneleap_core.train.runner import train
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="training config YAML (trains first)")
    ap.add_argument("--run", help="an existing run directory (config.yaml + model/): skip training")
    ap.add_argument("--held-out", action="append", default=[], metavar="NAME=ROOT", help="held-out dataset(s)")
    ap.add_argument("--views", type=int, default=8, help="views per rung")
    ap.add_argument("--grasps", type=int, default=16, help="sampled grasps per view")
    ap.add_argument("--samplers", default="ddim:10,dpmpp:10,ddpm:100", help="sampler:steps list")
    ap.add_argument("--workers", type=int, default=2, help="lift-test processes")
    ap.add_argument("--anchor-rows", default="uniform,true",
                    help="extra rows of anchored models with the first sampler and other anchors ('' = none)")
    ap.add_argument("--no-oracle", action="store_true", help="skip the oracle-denoiser rung")
    ap.add_argument("--clearance", type=float, default=None, metavar="M",
                    help="add a row per set: the first sampler with the planner's finger clearance at tolerance M (m)")  # fmt: skip
    ap.add_argument("--no-train-views", action="store_true", help="only the --held-out sets")
    ap.add_argument("--temperatures", default="", metavar="T,T",
                    help="more rows: the first sampler at these initial-noise scales (rows named @t<T>)")
    ap.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale of every row")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampler temperature of every row (initial noise scale)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = ap.parse_args(argv)
    if bool(args.config) == bool(args.run):
        ap.error("give exactly one of --config (train, then evaluate) or --run (evaluate a finished run)")
    if not args.temperature >= 0:
        ap.error(f"--temperature: expected a number >= 0, got {args.temperature}")
    t0 = time.perf_counter()
    if args.config:
        cfg = load_config(args.config, args.overrides)
        model_dir = train(cfg)
        run = Path(cfg.run_dir)
    else:
        run = Path(args.run)
        cfg = load_config(run / "config.yaml", args.overrides)
        model_dir = run / "model"
    t_train = time.perf_counter() - t0
    model, normalizer, _ = GraspGenerator.load_pretrained(model_dir, device=args.device)
    val = ValConfig(guidance_scale=args.guidance, temperature=args.temperature)
    module = GraspTrainingModule(model, normalizer, val=val, seed=cfg.seed).to(args.device)
    module.eval()
    samplers = [(s.split(":")[0], int(s.split(":")[1])) for s in args.samplers.split(",")]
    common = dict(num_points=cfg.data.num_points, num_grasps=cfg.data.num_grasps, center=cfg.data.center,
                  frame=cfg.data.frame, augment=None, seed=cfg.seed + 1)  # fmt: skip
    sets = [] if args.no_train_views else [("train_views", cfg.data.root)]
    for spec in args.held_out:
        name, _, root = spec.partition("=")
        if not root:
            ap.error(f"--held-out: expected NAME=ROOT, got {spec!r}")
        sets.append((name, root))
    rows = []
    try:
        temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    except ValueError:
        ap.error(f"--temperatures: expected comma-separated numbers, got {args.temperatures!r}")
    anchor_rows = [a for a in args.anchor_rows.split(",") if a]
    unknown = sorted(set(anchor_rows) - {"uniform", "true"})
    if unknown:
        ap.error(f"--anchor-rows: expected names from uniform,true, got {unknown}")
    if not args.no_oracle:
        rows += oracle_rung(model.cpu().double(), samplers)
        model.float().to(args.device)
    for name, root in sets:
        source = ShardDataset(root)
        usable = usable_indices(source)
        if name == "train_views" and cfg.data.train_samples and not cfg.data.val_root and cfg.data.val_fraction == 0:
            usable = usable[: cfg.data.train_samples]  # exactly the views it was trained on
        ds = GraspSceneDataset(source, usable, **common)
        views = spread_indices(len(ds), args.views)
        evaluator = SimLiftEvaluator(root, workers=args.workers)
        if name == "train_views":
            rows.append(ground_truth_rung(ds, evaluator, normalizer.to("cpu"), HandModel.load(), views, args.grasps,
                                          anchored=model.anchored))  # fmt: skip
            normalizer.to(args.device)
        for sampler, steps in samplers:
            rows.append(sampled_rung(name, module, ds, evaluator, views, sampler=sampler, steps=steps,
                                     num_grasps=args.grasps))  # fmt: skip
            print(rows[-1].row(), flush=True)
        if args.clearance is not None:  # the first sampler, then the planner's finger clearance
            rows.append(sampled_rung(name, module, ds, evaluator, views, sampler=samplers[0][0], steps=samplers[0][1],
                                     num_grasps=args.grasps, clearance=args.clearance))  # fmt: skip
            print(rows[-1].row(), flush=True)
        for temp in temperatures:  # the first sampler, sharper or broader initial noise
            rows.append(sampled_rung(name, module, ds, evaluator, views, sampler=samplers[0][0], steps=samplers[0][1],
                                     num_grasps=args.grasps, temperature=temp))  # fmt: skip
            print(rows[-1].row(), flush=True)
        for anchors in anchor_rows if model.anchored else ():  # the first sampler, other anchors
            rows.append(sampled_rung(name, module, ds, evaluator, views, sampler=samplers[0][0], steps=samplers[0][1],
                                     num_grasps=args.grasps, anchors=anchors))  # fmt: skip
            print(rows[-1].row(), flush=True)
    print(f"\nladder of {run} ({cfg.model_preset}, frame {cfg.data.frame}, prediction {model.config.prediction}, "
          f"guidance {args.guidance:g}, temperature {args.temperature:g}, "
          f"{cfg.trainer.max_steps} steps, train {t_train:.0f} s, device {args.device}"
          f"{' ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else ''})")  # fmt: skip
    print(HEADER)
    for r in rows:
        print(r.row())
    out = run / "ladder.json"
    out.write_text(json.dumps({"config": str(run / "config.yaml"), "rows": [asdict(r) for r in rows]}, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sampled = [r for r in rows if r.sampler != "-" and r.name != "oracle"]
        fig, ax = plt.subplots(figsize=(1.2 * len(sampled) + 2, 3.2))
        ax.bar(range(len(sampled)), [100 * r.lift for r in sampled], color="tab:blue")
        ax.set_xticks(range(len(sampled)), [f"{r.name}\n{r.sampler} {r.steps}" for r in sampled], fontsize=7)
        ax.set_ylabel("lift success %")
        ax.set_ylim(0, 100)
        fig.tight_layout()
        fig.savefig(run / "ladder.png", dpi=120)
    except ImportError:
        pass
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
