"""``sceneleap demo-plan``: the planner on the bundled sample scenes, every grasp lift-tested in MuJoCo.

    sceneleap demo-plan [--model DIR] [--data DIR] [--scenes 3] [--num-grasps 16] [--sampler S] [--steps 10]
        [--seed 0] [--device cpu] [--workers 1] [--repeats 1] [--threads 0] [--png-grasps 5]
        [--out demo_out/planner]

For the first view of each of the first ``--scenes`` scenes of the dataset (default: the bundled
sample, ``sceneleap_core/data/sample``), ``GraspPlanner.plan`` gets the view's camera-frame cloud and
world up from its camera pose (what tf gives a robot); the grasps are moved to the scene's world
frame with the camera pose and each one runs the lift test (:mod:`sceneleap_core.infer.demo`; its
target is the object nearest its fingertips, as in training's validation). Prints one row per scene
(grasps planned, rejected by the filter, lift success of the top-1 grasp and mean over all planned
grasps, mean penetration, plan() latency) and a total row, and writes:

- ``OUT/scene_<id>/grasps.json``: ``sceneleap plan``'s JSON, poses in the scene's world frame, with
  the ``evaluation`` block (per-grasp lift results) and the view (dataset, index, camera pose);
- ``OUT/scene_<id>/grasps.png``: the cloud (world frame) and the top grasps, one colour per rank;
- ``OUT/summary.json``: the table's numbers, the settings and the definitions.

``--model`` defaults to the bundled model (``sceneleap_core.assets.DEFAULT_MODEL_DIR``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("scene", "view", "objects", "planned", "rejected", "top-1 lift", "mean lift %", "pen mm", "plan ms p50")
DEFINITIONS = {
    "planned": "grasps returned by plan() (at most --num-grasps)",
    "rejected": "candidates the planner's collision filter dropped",
    "top1_success": "the rank-1 grasp lifts its target; total: fraction of scenes (a scene without grasps counts as a failure)",
    "lift_success": "mean lift success over the planned grasps; total: over all planned grasps",
    "penetration_mm": "mean over grasps of the deepest penetration into the target or the rest of the scene",
    "plan_ms_p50": "median wall-clock ms of plan() (cloud in, ranked world-frame-ready grasps out)",
}


def _model_dir(path) -> Path:
    from sceneleap_core.assets import DEFAULT_MODEL_DIR

    path = Path(path)
    if not (path / "config.json").is_file():
        bundled = "the bundled model" if path.resolve() == DEFAULT_MODEL_DIR else "a model"
        raise ValueError(
            f"--model: no trained model at {path} (expected {bundled}: config.json + model*.safetensors). "
            f"The default model ships in {DEFAULT_MODEL_DIR} with the repository versions that include it; "
            "else pass --model DIR, a save_pretrained directory (a training run's model/, packed with "
            "`sceneleap model pack RUN/model --out DIR --dtype float16`; bench/gpu_default_model.sh trains "
            "and packs the default one)"
        )
    return path


def _fmt(value, spec: str = ".1f", scale: float = 1.0) -> str:
    return "-" if value is None else f"{scale * value:{spec}}"


def _run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from sceneleap_core.atomic import write_text_atomic
    from sceneleap_core.cli.eval_cmd import _json_ready
    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.demo import lift_metrics, plan_view, scene_views
    from sceneleap_core.infer.show import grasps_to_records, plan_report, render_plan
    from sceneleap_core.sim import result_rows
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    for name in ("num_grasps", "steps", "workers", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    if args.png_grasps < 0:
        raise ValueError(f"--png-grasps: expected >= 0, got {args.png_grasps}")
    if args.threads < 0:
        raise ValueError(f"--threads: expected >= 0 (0 = torch's default), got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = ShardDataset(args.data)
    views = scene_views(dataset, args.scenes)
    model_dir = _model_dir(args.model)
    console = Console() if Console().is_terminal else Console(width=160)
    planner = GraspPlanner.from_pretrained(model_dir, device=args.device)
    sampler = args.sampler or planner.model.default_sampler
    settings = {"num_grasps": args.num_grasps, "steps": args.steps, "sampler": sampler, "guidance": planner.guidance,
                "temperature": planner.temperature,
                "seed": args.seed, "backend": "eager", "device": args.device, "up": "from the camera pose",
                "repeats": args.repeats, "torch_threads": torch.get_num_threads()}  # fmt: skip
    out = Path(args.out)
    evaluator = SimLiftEvaluator(args.data, workers=args.workers)
    rows, latencies = [], []
    try:
        for index in views:
            sample = dataset[index]
            sid = int(sample.scene_id)
            console.print(f"scene {sid} (view {index}, {len(sample.points)} points, {len(sample.object_ids)} "
                          f"objects): planning {args.num_grasps} grasps, {sampler} {args.steps} steps")  # fmt: skip
            grasps, lat = plan_view(planner, sample, args.num_grasps, repeats=args.repeats, steps=args.steps,
                                    sampler=sampler, seed=args.seed)  # fmt: skip
            latencies += lat
            records = grasps_to_records(grasps)
            evaluation, lift = None, None
            if len(grasps):
                ev = evaluator.evaluate_world(index, grasps.palm_pose[0].double().cpu().numpy(),
                                              grasps.joints[0].double().cpu().numpy())  # fmt: skip
                lift = ev.lift
                evaluation = {"scene": f"{args.data} sample {index} (scene {sid})", "summary": ev.summary(),
                              "grasps": result_rows(ev)}  # fmt: skip
            report = plan_report(grasps, cloud=f"{args.data} sample {index}", model=model_dir, settings=settings,
                                 frame="the scene's world frame (world <- camera: view.camera_pose)",
                                 records=records, evaluation=evaluation)  # fmt: skip
            report["view"] = {"dataset": str(args.data), "index": index, "scene_id": sid,
                              "camera_pose": np.asarray(sample.camera_pose, float).tolist()}  # fmt: skip
            folder = out / f"scene_{sid:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / "grasps.json", json.dumps(_json_ready(report), indent=1, allow_nan=False))
            metrics = lift_metrics(lift)
            cam = np.asarray(sample.camera_pose, np.float64)
            cloud_world = np.asarray(sample.points, np.float64) @ cam[:3, :3].T + cam[:3, 3]  # (N, 3)
            title = (f"scene {sid}, view {index}: {len(grasps)} planned grasps (world frame); lift top-1 "
                     f"{'-' if metrics['top1_success'] is None else 'ok' if metrics['top1_success'] else 'fail'}, "
                     f"mean {_fmt(metrics['lift_success'], '.2f')}")  # fmt: skip
            render_plan(cloud_world, grasps, folder / "grasps.png", hand=planner.hand, max_grasps=args.png_grasps,
                        title=title, views=((60.0, -90.0), (15.0, -35.0)))  # fmt: skip
            rows.append({"scene_id": sid, "view": index, "objects": len(sample.object_ids), **metrics,
                         "candidates": grasps.candidates, "rejected": int(sum(grasps.rejected.values())),
                         "rejected_by_reason": grasps.rejected, "plan_ms": lat, "plan_ms_p50": float(np.median(lat)),
                         "grasps_json": str(folder / "grasps.json"), "grasps_png": str(folder / "grasps.png")})  # fmt: skip
    finally:
        evaluator.close()
    successes = [r for r in rows if r["grasps"]]
    pooled = sum(r["lift_success"] * r["grasps"] for r in successes)
    n = sum(r["grasps"] for r in rows)
    total = {
        "scenes": len(rows), "grasps": n, "candidates": sum(r["candidates"] for r in rows),
        "rejected": sum(r["rejected"] for r in rows),
        "top1_success": sum(bool(r["top1_success"]) for r in rows) / len(rows),
        "lift_success": pooled / n if n else None,
        "penetration_mm": sum(r["penetration_mm"] * r["grasps"] for r in successes) / n if n else None,
        "plan_ms_p50": float(np.median(latencies)),
    }  # fmt: skip
    table = Table(title=f"planner demo: {model_dir}, {sampler} {args.steps} steps, {args.num_grasps} grasps asked "
                  f"per scene, lift test in MuJoCo (world frame)")  # fmt: skip
    for col in COLUMNS:
        table.add_column(col, justify="right")
    for r in rows:
        top1 = "-" if r["top1_success"] is None else "[green]ok[/green]" if r["top1_success"] else "[red]fail[/red]"
        table.add_row(str(r["scene_id"]), str(r["view"]), str(r["objects"]), str(r["grasps"]), str(r["rejected"]),
                      top1, _fmt(r["lift_success"], scale=100), _fmt(r["penetration_mm"], ".2f"),
                      _fmt(r["plan_ms_p50"], ".0f"))  # fmt: skip
    table.add_row("total", "", str(sum(r["objects"] for r in rows)), str(n), str(total["rejected"]),
                  f"{sum(bool(r['top1_success']) for r in rows)}/{len(rows)}", _fmt(total["lift_success"], scale=100),
                  _fmt(total["penetration_mm"], ".2f"), _fmt(total["plan_ms_p50"], ".0f"), style="bold")  # fmt: skip
    console.print(table)
    summary = {"model": str(model_dir), "dataset": str(args.data), "settings": settings, "scenes": rows,
               "total": total, "definitions": DEFINITIONS}  # fmt: skip
    write_text_atomic(out / "summary.json", json.dumps(_json_ready(summary), indent=1, allow_nan=False))
    console.print(f"wrote {out}/summary.json and {len(rows)} x scene_<id>/grasps.json, grasps.png")
    return 0


def register(sub) -> None:
    from sceneleap_core.assets import DEFAULT_MODEL_DIR

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    p = sub.add_parser("demo-plan", help="plan grasps on the bundled sample scenes and lift-test them in MuJoCo",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="save_pretrained directory (default: bundled)")
    p.add_argument("--data", default=str(sample), help="dataset with objects.json (default: the bundled sample)")
    p.add_argument("--scenes", type=int, default=3, help="scenes (first view of each)")
    p.add_argument("--num-grasps", type=int, default=16)
    p.add_argument("--sampler", default=None, help="ddim, dpmpp, ddpm, euler, heun (default: the model's deployed sampler)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1, help="lift-test processes")
    p.add_argument("--repeats", type=int, default=1, help="plan() calls per scene (latency)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads of the planner (0 = torch's default)")
    p.add_argument("--png-grasps", type=int, default=5, help="grasps drawn per picture")
    p.add_argument("--out", default="demo_out/planner", help="output folder")
    p.set_defaults(func=_run)
