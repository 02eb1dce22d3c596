"""``sceneleap eval-grasps``: evaluate grasps in MuJoCo and print a table.

    sceneleap eval-grasps --scene scene.json --grasps grasps.npz [--protocol lift|disturbance|both]
        [--workers N] [--seed S] [--config sim.json] [--json out.json]
        [--render-grasp I] [--png out.png] [--video out.gif|out.mp4]

File formats: see :mod:`sceneleap_core.sim.scene`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path


def _json_ready(value):
    """``value`` with NaN/inf floats as null and numpy scalars as Python ones: strict JSON (a grasp
    that was not simulated has a NaN lift height)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless offscreen rendering; must precede the MuJoCo import
    from rich.console import Console
    from rich.table import Table

    from sceneleap_core.hand.description import HandDescription
    from sceneleap_core.sim import SimConfig, evaluate_grasps, load_grasps, load_scene, result_rows

    if args.workers < 1:
        raise ValueError(f"--workers: expected a positive integer, got {args.workers}")
    config = SimConfig()
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise ValueError(f"--config: expected a JSON file of SimConfig fields, got no file at {path}")
        try:
            overrides = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"--config {path}: expected JSON, got a parse error: {err}") from None
        if not isinstance(overrides, dict):
            raise ValueError(f"--config {path}: expected an object of SimConfig fields, got {type(overrides).__name__}")
        config = SimConfig.from_dict(overrides)
    scene = load_scene(args.scene)
    desc = HandDescription.load()
    grasps = load_grasps(
        args.grasps, num_objects=len(scene.objects), dof=desc.dof, lower=desc.lower_limits, upper=desc.upper_limits
    )
    if args.render_grasp is not None and not 0 <= args.render_grasp < len(grasps):
        raise ValueError(f"--render-grasp: expected an index in [0, {len(grasps)}), got {args.render_grasp}")
    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console = Console(width=200)
    result = evaluate_grasps(
        scene,
        grasps.palm_pose,
        grasps.joints,
        grasps.target,
        protocol=args.protocol,
        config=config,
        workers=args.workers,
        seed=args.seed,
        progress=not args.no_progress,
    )
    rows = result_rows(result)
    table = Table(
        title=f"{len(grasps)} grasps on {scene.name} ({len(scene.objects)} objects), protocol {args.protocol}"
    )
    for col in ("#", "target"):
        table.add_column(col, justify="right")
    if result.lift is not None:
        for col in ("lift", "why", "height cm", "pen obj mm", "pen scene mm", "pregrasp mm", "tips", "Q1"):
            table.add_column(col, justify="right")
    if result.disturbance is not None:
        for col in ("disturb", "why", "max move cm", "max rot °"):
            table.add_column(col, justify="right")
    shown = rows if args.max_rows <= 0 else rows[: args.max_rows]
    for row in shown:
        cells = [str(row["grasp"]), scene.objects[row["target"]].object_id]
        if result.lift is not None:
            ok = row["lift.success"]
            cells += [
                "[green]ok[/green]" if ok else "[red]fail[/red]",
                row["lift.failure"],
                f"{100 * row['lift.lift_height']:.1f}",
                f"{row['lift.penetration_object_mm']:.1f}",
                f"{row['lift.penetration_scene_mm']:.1f}",
                f"{row['lift.pregrasp_penetration_mm']:.1f}",
                str(row["lift.tip_contacts"]),
                f"{row['lift.q1']:.3f}",
            ]
        if result.disturbance is not None:
            ok = row["dist.success"]
            cells += [
                "[green]ok[/green]" if ok else "[red]fail[/red]",
                row["dist.failure"],
                f"{100 * max(row['dist.translation']):.1f}",
                f"{max(row['dist.rotation_deg']):.1f}",
            ]
        table.add_row(*cells)
    console.print(table)
    if len(shown) < len(rows):
        console.print(f"... {len(rows) - len(shown)} more rows (--max-rows 0 shows all)")
    summary = result.summary()
    console.print("summary: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    if args.json:
        from sceneleap_core.atomic import write_text_atomic

        report = _json_ready({"summary": summary, "grasps": rows, "config": config.to_dict()})
        write_text_atomic(args.json, json.dumps(report, indent=1, allow_nan=False))
        console.print(f"wrote {args.json}")
    if args.png or args.video:
        from sceneleap_core.sim.render import render_grasp

        index = args.render_grasp
        if index is None:  # the first failure, else grasp 0
            failed = (~result.success).nonzero()[0]
            index = int(failed[0]) if len(failed) else 0
        protocol = "disturbance" if args.protocol == "disturbance" else "lift"
        outcome = render_grasp(
            scene,
            grasps.palm_pose[index],
            grasps.joints[index],
            int(grasps.target[index]),
            protocol=protocol,
            config=config,
            png=args.png,
            video=args.video,
            seed=args.seed,
        )
        verdict = "success" if outcome.success else f"failure ({outcome.failure})"
        for out in (args.png, args.video):
            if out:
                console.print(f"wrote {out}: grasp {index}, {protocol} test, {verdict}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval-grasps",
        help="evaluate grasps in MuJoCo (lift / disturbance tests) and print a table",
        description="Evaluate grasps (grasps.npz) on a scene (scene.json) in MuJoCo. Formats: see the README "
        "or sceneleap_core/sim/scene.py.",
    )
    parser.add_argument("--scene", required=True, help="scene JSON (objects, poses, table height)")
    parser.add_argument("--grasps", required=True, help="grasps NPZ: palm_pose (G,4,4), joints (G,16), target (G,)")
    parser.add_argument("--protocol", choices=("lift", "disturbance", "both"), default="both")
    parser.add_argument("--workers", type=int, default=1, help="processes (results do not depend on it)")
    parser.add_argument("--seed", type=int, default=0, help="seed of mesh decomposition (CoACD)")
    parser.add_argument("--config", help="JSON of SimConfig fields to override (friction, gains, timing, ...)")
    parser.add_argument("--json", help="write per-grasp results and the summary to this JSON file")
    parser.add_argument("--max-rows", type=int, default=50, help="table rows to print (0 = all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--render-grasp", type=int, help="grasp index to render (default: the first failure)")
    parser.add_argument("--png", help="write a contact sheet of the rendered grasp's key frames")
    parser.add_argument("--video", help="write a video (.gif, or .mp4 with PyAV/imageio-ffmpeg) of its rollout")
    parser.set_defaults(func=_run)
