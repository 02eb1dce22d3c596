"""``sceneleap plan``: grasps for one point-cloud file.

    sceneleap plan CLOUD --model DIR --out grasps.json [--png view.png] [--eval scene.json]
        [--num-grasps 32] [--steps 10] [--sampler ddim] [--guidance 1] [--seed 0] [--device cpu]
        [--backend eager|compile|cuda_graph|aoti|onnx|tensorrt] [--graph-precision tf32|fp32|bf16] [--graph-compile] [--up X Y Z] [--workspace X0 Y0 Z0 X1 Y1 Z1] [--voxel M]
        [--refine-steps N] [--no-filter]

CLOUD: ``.npy``/``.npz`` (N, 3 + C), ``.pcd`` (ascii / binary / binary_compressed) or ``.ply``.
Prints a ranked table, writes the grasps as JSON (atomically; cloud frame, palm pose 4x4 and
position + quaternion xyzw, joints in the hand's order, pregrasp, target point, score, timings,
rejection counts) and optionally a picture. ``--eval``: the cloud's frame is the scene file's world
frame; each grasp's target object is the one whose origin is nearest its target point, and the grasps
run the physics lift test (the table gains its outcome, the JSON an ``evaluation`` block).
"""

from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from sceneleap_core.atomic import write_text_atomic
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.infer.cloud_io import load_cloud
    from sceneleap_core.infer.show import grasps_to_records, plan_report

    if args.num_grasps < 1 or args.steps < 1:
        raise ValueError(f"--num-grasps/--steps: expected >= 1, got {args.num_grasps}/{args.steps}")
    cloud = load_cloud(args.cloud)
    planner = GraspPlanner.from_pretrained(args.model, device=args.device, backend=args.backend,
                                           graph_precision=args.graph_precision,
                                           graph_compile=args.graph_compile)  # fmt: skip
    workspace = None if args.workspace is None else np.asarray(args.workspace, float).reshape(2, 3)
    up = None if args.up is None else np.asarray(args.up, float)
    grasps = planner.plan(cloud, args.num_grasps, steps=args.steps, sampler=args.sampler, guidance=args.guidance,
                          seed=args.seed, up=up, workspace=workspace, voxel_size=args.voxel,
                          refine_steps=args.refine_steps, filter=not args.no_filter,
                          temperature=args.temperature)  # fmt: skip
    records = grasps_to_records(grasps)
    evaluation = None
    if args.eval and records:
        evaluation = _evaluate(args.eval, grasps, records)
    console = Console() if Console().is_terminal else Console(width=160)
    table = Table(title=f"{len(records)} grasps for {args.cloud} ({grasps.candidates} sampled, "
                  f"rejected {sum(grasps.rejected.values())}: "
                  + ", ".join(f"{k} {v}" for k, v in grasps.rejected.items()) + ")")  # fmt: skip
    for col in ("#", "score", "x", "y", "z", "approach", "target"):
        table.add_column(col, justify="right")
    if evaluation is not None:
        table.add_column("lift", justify="right")
    axis = planner.hand.approach_axis.double().cpu().numpy()
    for i, rec in enumerate(records):
        a = np.asarray(rec["palm_pose"])[:3, :3] @ axis
        cells = [str(rec["rank"]), f"{rec['score']:.4f}", *(f"{v:+.3f}" for v in rec["position"]),
                 " ".join(f"{v:+.2f}" for v in a), " ".join(f"{v:+.3f}" for v in rec.get("target_point", []))]  # fmt: skip
        if evaluation is not None:
            ok = evaluation["grasps"][i]["lift.success"]
            cells.append("[green]ok[/green]" if ok else f"[red]{evaluation['grasps'][i]['lift.failure']}[/red]")
        table.add_row(*cells)
    console.print(table)
    console.print("timings ms: " + ", ".join(f"{k} {v:.1f}" for k, v in grasps.timings.items()))
    settings = {"num_grasps": args.num_grasps, "steps": args.steps, "sampler": args.sampler,
                "guidance": planner.guidance if args.guidance is None else args.guidance,
                "temperature": planner.temperature if args.temperature is None else args.temperature,
                "seed": args.seed, "backend": args.backend, "graph_precision": args.graph_precision,
                "graph_compile": args.graph_compile, "device": args.device}  # fmt: skip
    report = plan_report(grasps, cloud=args.cloud, model=args.model, frame="the cloud's frame", settings=settings,
                         records=records, evaluation=evaluation)  # fmt: skip
    if evaluation is not None:
        console.print("lift success: " + f"{evaluation['summary'].get('lift_success', float('nan')):.3f}")
    from sceneleap_core.cli.eval_cmd import _json_ready

    write_text_atomic(args.out, json.dumps(_json_ready(report), indent=1, allow_nan=False))
    console.print(f"wrote {args.out}")
    if args.png:
        from sceneleap_core.infer.show import render_plan

        render_plan(cloud, grasps, args.png, hand=planner.hand, max_grasps=args.png_grasps)
        console.print(f"wrote {args.png}")
    return 0


def _evaluate(scene_path, grasps, records) -> dict:
    import os

    import numpy as np

    os.environ.setdefault("MUJOCO_GL", "egl")
    from sceneleap_core.sim import evaluate_grasps, load_scene, result_rows

    scene = load_scene(scene_path)
    if not scene.objects:
        raise ValueError(f"--eval {scene_path}: expected a scene with objects, got none")
    origins = np.stack([np.asarray(o.pose)[:3, 3] for o in scene.objects])
    points = np.asarray([r["target_point"] for r in records])
    target = np.linalg.norm(points[:, None] - origins[None], axis=-1).argmin(1)
    result = evaluate_grasps(scene, grasps.palm_pose[0].double().numpy(), grasps.joints[0].double().numpy(),
                             target, protocol="lift")  # fmt: skip
    return {"scene": str(scene_path), "summary": result.summary(), "grasps": result_rows(result)}


def register(sub) -> None:
    p = sub.add_parser("plan", help="plan grasps for a point-cloud file", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("cloud", help="point cloud: .npy, .npz, .pcd or .ply")
    p.add_argument("--model", required=True, help="save_pretrained directory")
    p.add_argument("--out", required=True, help="grasps JSON (written atomically)")
    p.add_argument("--png", help="picture of the cloud and the top grasps")
    p.add_argument("--png-grasps", type=int, default=5, help="grasps drawn in the picture")
    p.add_argument("--eval", help="scene JSON (sceneleap_core.sim.scene): lift-test the planned grasps")
    p.add_argument("--num-grasps", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sampler", default=None, help="ddim, dpmpp, ddpm, euler, heun (default: the model's)")
    p.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale (1 = off; default: the model's)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="sampler temperature: the initial noise's scale (default: the model's; the bundled model's 0.5)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="eager", choices=("eager", "compile", "cuda_graph", "aoti", "onnx", "tensorrt"))
    p.add_argument("--graph-precision", default="tf32", choices=("tf32", "fp32", "bf16"),
                   help="the cuda_graph backend's network arithmetic (fp32: eager's grasps exactly)")  # fmt: skip
    p.add_argument("--graph-compile", action="store_true",
                   help="cuda_graph: capture the torch.compile'd denoiser, anchor score and post-processing "
                        "(compiles at the first plan, tens of seconds; pays off in long-running processes)")  # fmt: skip
    p.add_argument("--up", type=float, nargs=3, help="world up in the cloud's frame (default: from the table)")
    p.add_argument("--workspace", type=float, nargs=6, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"),
                   help="crop box in the cloud's frame")  # fmt: skip
    p.add_argument("--voxel", type=float, default=None, help="voxel downsampling (m)")
    p.add_argument("--refine-steps", type=int, default=None, help="gradient refinement steps")
    p.add_argument("--no-filter", action="store_true", help="keep colliding grasps (debugging)")
    p.set_defaults(func=_run)
