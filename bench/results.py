"""Results on held-out scenes of unseen objects: every planner on the same views, through the same lift
test, into one table (SPEC section 5's quality and latency targets).

    sceneleap scenes compose --library LIB --split test --num-scenes 200 --views 4 --out data/test
    python bench/results.py data/test --model runs/x/model --views 64 --grasps 32 \\
        --methods ddpm:100,ddim:20,ddim:10,dpmpp:10,dpmpp:5,baseline --device cuda --workers 15 \\
        --latency-g 8,32,128 --out results/ --markdown bench/RESULTS.md
    python bench/results.py data/test --methods baseline --views 16 --out results/   # no model needed
    python bench/results.py --merge a/results.json b/results.json --out merged/   # earlier runs, same views

Per view (a seeded pick spread over the dataset: one view drawn in each of N equal slices), every
method plans from the view's cloud in the camera frame, as a robot's camera delivers it, with the
world's up given in that frame (the camera pose's, as tf gives it; ``--estimate-up``: from the
table). Learned methods (``SAMPLER:STEPS``) go through :meth:`GraspPlanner.plan` (the one home of
cloud -> grasps), ``baseline`` through :class:`NormalApproachPlanner` (same filter and ranking).
The returned grasps (camera frame) go to the scene's world frame (``world <- camera`` of the view:
:func:`grasps_to_world`) and into the MuJoCo lift test of the scene the view was rendered from
(:class:`sceneleap_core.train.sim_validation.SimLiftEvaluator`: objects from the shard, target =
the object nearest the grasp's fingertips).

Metrics per method (results.json holds them and every view's raw figures):

* ``top1_lift``: fraction of views whose best-ranked grasp lifts (a view with no grasp returned
  counts as a failure);
* ``mean_lift``: fraction of all returned grasps that lift (pooled over views);
* ``disturbance`` (``--disturbance``): fraction of all returned grasps that pass the disturbance
  protocol (shaken in six directions) on their target object alone, no table or neighbours;
* ``penetration_mm``: mean over returned grasps of the commanded grasp's deepest penetration into
  the target or the rest of the scene (MuJoCo contact depth with the hand placed kinematically);
* ``diversity_mm`` / ``diversity_deg``: mean over views (with two grasps or more) of the mean
  pairwise distance between palm origins (mm) / geodesic angle between palm orientations (deg);
* ``latency_p50_ms``: median over views of the planner's wall time, cloud in -> ranked grasps out
  (``GraspSet.timings["total"]``, CUDA synchronized), after one untimed warm-up plan; on ``device``;
* ``rejected``: mean number of candidates per plan the collision filter rejected (of ``candidates``),
  and ``returned``: mean grasps returned per plan (at most G).

Outputs in ``--out``: results.json, success_vs_steps.png (lift against sampler steps, a line per
sampler family, the baseline dashed), latency_vs_g.png with ``--latency-g`` (p50 latency against
G per method); ``--markdown FILE`` appends a dated section (machine, device, the command, the table).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from key_values import backend_spec, parse_key_values  # bench/ is the script's directory

BASELINE = "baseline"
DEFAULT_METHODS = "ddpm:100,ddim:20,ddim:10,dpmpp:10,dpmpp:5,baseline"
COLUMNS = (  # (json key, header, format); percentages x100
    ("top1_lift", "top-1 lift %", "pct"),
    ("mean_lift", "mean lift %", "pct"),
    ("disturbance", "dist. %", "pct"),
    ("penetration_mm", "pen. mm", ".2f"),
    ("diversity_mm", "div. mm", ".1f"),
    ("diversity_deg", "div. deg", ".1f"),
    ("latency_p50_ms", "p50 ms", ".1f"),
    ("rejected", "rejected", ".1f"),
    ("candidates", "cand.", ".0f"),
    ("returned", "returned", ".1f"),
)


@dataclass(frozen=True)
class Method:
    """One row: ``name`` as given (``ddim:10``, ``ddim:10x4``, ``ddim:10t0.5``,
    ``cvae:1@runs/cvae/model`` or ``baseline``), the sampler and its steps (learned), candidates per
    returned grasp (None = the planner's ``oversample``), its own model directory (None =
    ``--model``), the sampler temperature and classifier-free guidance scale (None = the planner's)."""

    name: str
    sampler: str | None = None
    steps: int = 0
    model: str | None = None
    oversample: float | None = None
    temperature: float | None = None
    guidance: float | None = None

    @property
    def learned(self) -> bool:
        return self.name != BASELINE


def parse_methods(spec: str) -> list[Method]:
    """``"ddpm:100,ddim:10,baseline"`` -> methods, in order; ValueError naming a bad entry.
    ``SAMPLER:STEPS@DIR`` plans with the model in DIR instead of ``--model`` (e.g. a CVAE beside
    the diffusion model, ``cvae:1@runs/cvae/model``); ``SAMPLER:STEPSxK`` samples K candidates per
    returned grasp (the planner's ``oversample``; e.g. ``ddim:10x4``); ``tT`` after them sets the
    initial noise's scale (the planner's ``temperature``; e.g. ``ddim:10t0.5``, ``ddim:10x4t0.5``) and
    ``gW`` after those the classifier-free guidance scale (e.g. ``ddim:10g1.3``, ``ddim:10t0.5g1.3``)."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item == BASELINE:
            out.append(Method(BASELINE))
            continue
        spec, at, model = item.partition("@")
        sampler, _, steps = spec.partition(":")
        steps, g, guide = steps.partition("g")
        steps, t, temp = steps.partition("t")
        steps, x, over = steps.partition("x")
        over_ok = not x or (over.replace(".", "", 1).isdigit() and float(over) >= 1)
        temp_ok = not t or temp.replace(".", "", 1).isdigit()
        guide_ok = not g or guide.replace(".", "", 1).isdigit()
        if (not sampler or not steps.isdigit() or int(steps) < 1 or (at and not model) or not over_ok or not temp_ok
                or not guide_ok):  # fmt: skip
            raise ValueError(
                f"--methods: expected SAMPLER:STEPS[xOVERSAMPLE][tTEMPERATURE][gGUIDANCE][@MODEL_DIR] (e.g. "
                f"ddim:10, ddim:10x4, ddim:10t0.5g1.3) or '{BASELINE}', got {item!r}"
            )
        out.append(Method(item, sampler, int(steps), model or None, float(over) if x else None,
                          float(temp) if t else None, float(guide) if g else None))  # fmt: skip
    if not out:
        raise ValueError("--methods: expected at least one method, got none")
    if len({m.name for m in out}) != len(out):
        raise ValueError(f"--methods: expected distinct methods, got {spec!r}")
    return out


def pick_views(total: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` view indices out of ``total``, spread over the set and fixed by ``seed``: the range
    is cut into ``count`` equal slices and one index is drawn in each (all views when fewer)."""
    if total < 1 or count < 1:
        raise ValueError(f"views: expected a non-empty dataset and count >= 1, got {total} views, count {count}")
    if count >= total:
        return np.arange(total)
    edges = np.floor(np.linspace(0, total, count + 1)).astype(int)  # slices [a, b), b > a as total > count
    rng = np.random.default_rng(seed)
    return np.array([int(rng.integers(a, b)) for a, b in itertools.pairwise(edges)])


def grasps_to_world(camera_pose: np.ndarray, palm_pose) -> np.ndarray:
    """Palm poses (G, 4, 4) in the camera frame -> the scene's world frame: ``world <- palm =
    (world <- camera) @ (camera <- palm)``, with ``camera_pose`` (4, 4) = world <- camera. Float64."""
    pose = palm_pose.detach().cpu().double().numpy() if isinstance(palm_pose, torch.Tensor) else palm_pose
    return np.asarray(camera_pose, np.float64) @ np.asarray(pose, np.float64).reshape(-1, 4, 4)


def diversity(palm_pose: np.ndarray) -> tuple[float, float]:
    """Mean pairwise distance between palm origins (mm) and geodesic angle between palm rotations
    (deg) of a set of poses (G, 4, 4); NaN for fewer than two."""
    g = len(palm_pose)
    if g < 2:
        return float("nan"), float("nan")
    iu = np.triu_indices(g, 1)
    t = palm_pose[:, :3, 3]
    dist = np.linalg.norm(t[:, None] - t[None], axis=-1)[iu]
    r = palm_pose[:, :3, :3]
    cos = np.clip((np.einsum("aij,bij->ab", r, r)[iu] - 1) / 2, -1, 1)
    return float(1e3 * dist.mean()), float(np.degrees(np.arccos(cos)).mean())


def lift_test(evaluator, index: int, palm_pose_cam, joints, *, disturbance: bool = False) -> dict:
    """Lift-test grasps planned on view ``index`` of the evaluator's dataset: palm poses (G, 4, 4) in
    that view's camera frame and joints (G, J) -> per-grasp ``success`` (G,) bool and
    ``penetration_mm`` (G,) (deepest of target and scene), ``failure`` (G,) reasons, ``target`` (G,);
    with ``disturbance`` also ``disturbance`` (G,) bool: the disturbance protocol on each grasp's
    target object alone (no table, no neighbours: the single-object test), else None."""
    q = joints.detach().cpu().double().numpy() if isinstance(joints, torch.Tensor) else np.asarray(joints, float)
    if len(q) == 0:
        empty = np.zeros(0)
        return {"success": empty.astype(bool), "penetration_mm": empty, "failure": [], "target": [],
                "disturbance": [] if disturbance else None}
    scene = evaluator.scene(int(index))
    palm_world = grasps_to_world(scene[1], palm_pose_cam)
    both = evaluator.evaluate_world(int(index), palm_world, q, scene=scene, protocol="both" if disturbance else "lift")
    target = both.target
    res = both.lift
    pen = np.maximum(res.penetration_object_mm, res.penetration_scene_mm)
    dist = [bool(s) for s in both.disturbance.success] if disturbance else None
    return {"success": res.success, "penetration_mm": pen, "failure": res.failure.tolist(), "target": target.tolist(),
            "disturbance": dist}  # fmt: skip


def summarize(views: list[dict]) -> dict:
    """A method's metrics (module docstring) from its per-view records (``results.json``'s ``per_view``)."""
    success = [s for v in views for s in v["success"]]
    pen = [p for v in views for p in v["penetration_mm"]]
    div = [(v["diversity_mm"], v["diversity_deg"]) for v in views if v["returned"] >= 2]

    def mean(x):
        return float(np.mean(x)) if len(x) else float("nan")

    return {
        "top1_lift": mean([bool(v["success"][0]) if v["success"] else False for v in views]),
        "mean_lift": mean(success),
        "disturbance": mean([d for v in views for d in (v.get("disturbance") or [])]),
        "penetration_mm": mean(pen),
        "diversity_mm": mean([d[0] for d in div]),
        "diversity_deg": mean([d[1] for d in div]),
        "latency_p50_ms": float(statistics.median(v["latency_ms"] for v in views)) if views else float("nan"),
        "rejected": mean([sum(v["rejected"].values()) for v in views]),
        "candidates": mean([v["candidates"] for v in views]),
        "returned": mean([v["returned"] for v in views]),
        "views": len(views),
        "grasps": len(success),
    }


def json_safe(obj):
    """``obj`` with every NaN float replaced by None (``results.json`` is strict JSON: null, not NaN)."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def format_cell(value: float | None, fmt: str) -> str:
    if value is None or value != value:
        return "-"
    return f"{100 * value:.1f}" if fmt == "pct" else format(value, fmt)


def table_rows(results: dict) -> list[list[str]]:
    """The printed table's rows, one per method, from ``results.json``'s content."""
    return [[name] + [format_cell(m["summary"][key], fmt) for key, _, fmt in COLUMNS]
            for name, m in results["methods"].items()]  # fmt: skip


def markdown_section(results: dict) -> str:
    """A dated ``## Results`` section: date, machine, device, the command, the table."""
    head = ["method"] + [h for _, h, _ in COLUMNS]
    lines = [
        f"## bench/results.py on held-out scenes, {results['date']}",
        "",
        f"- dataset: `{results['dataset']}`, {len(results['views'])} views, G = {results['grasps']} grasps per plan"
        f", model: `{results['model'] or '-'}`",
        f"- machine: {results['machine']}; planner device: {results['device_name']}",
        f"- command: `{results['command']}`",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(results)]
    if results.get("latency_vs_g"):
        lines += ["", "p50 latency (ms) against G: " + "; ".join(
            f"{name}: " + ", ".join(f"G={g} {ms:.1f}" for g, ms in series.items())
            for name, series in results["latency_vs_g"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(results['views'])} views of {results['dataset']}, G = {results['grasps']}, "
                        f"planner on {results['device_name']}")  # fmt: skip
    table.add_column("method")
    for _, header, _ in COLUMNS:
        table.add_column(header, justify="right")
    for row in table_rows(results):
        table.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 150).print(table)


def merge_results(runs: list[dict], sources: list[str]) -> dict:
    """Several ``results.json`` of the same views (same ``views``, ``grasps``, ``seed``, ``up``) ->
    one, methods side by side (a name met twice gets `` [source]``). ValueError naming the first
    field that differs."""
    if not runs:
        raise ValueError("--merge: expected at least one results.json")
    first = runs[0]
    for run, src in zip(runs[1:], sources[1:]):
        for key in ("views", "grasps", "seed", "up"):
            if run.get(key) != first.get(key):
                raise ValueError(f"--merge: {src} has {key} {run.get(key)!r}, {sources[0]} has {first.get(key)!r}: "
                                 "not the same views")  # fmt: skip
    merged = {k: v for k, v in first.items() if k not in ("methods", "latency_vs_g", "seconds")}
    merged["methods"], merged["latency_vs_g"] = {}, {}
    devices = []
    for run, src in zip(runs, sources):
        for name, method in run["methods"].items():
            key = name if name not in merged["methods"] else f"{name} [{src}]"
            merged["methods"][key] = {**method, "device_name": run.get("device_name", "")}
            if name in run.get("latency_vs_g", {}):
                merged["latency_vs_g"][key] = run["latency_vs_g"][name]
        devices.append(run.get("device_name", ""))
    merged["device_name"] = " + ".join(dict.fromkeys(devices))
    merged["command"] = "merged: " + "; ".join(run.get("command", "") for run in runs)
    merged["date"] = max(run.get("date", "") for run in runs)
    return merged


def sampler_families(methods: dict, grasps: int) -> dict[str, list[tuple[int, dict]]]:
    """{sampler family: [(steps, summary)]} of the learned methods; a family is the sampler and the
    candidates sampled per grasp (measured: candidates per plan / G; ``ddim 8x`` and ``ddim 2x`` are
    separate lines, ``ddim:10`` of a model whose default is 8x joins ``ddim:4x8``)."""
    families: dict[str, list] = {}
    for m in methods.values():
        if m["sampler"]:
            cand = m["summary"].get("candidates")
            over = cand / grasps if cand else m.get("oversample")
            fam = m["sampler"] + (f" {over:.3g}x" if over else "")
            families.setdefault(fam, []).append((m["steps"], m["summary"]))
    return families


def plot(results: dict, out: Path) -> list[Path]:
    """success_vs_steps.png (learned methods present) and latency_vs_g.png (``latency_vs_g`` present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    methods = results["methods"]
    families = sampler_families(methods, results["grasps"])
    if families:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
        for ax, key, title in zip(axes, ("top1_lift", "mean_lift"), ("top-1 grasp", f"all {results['grasps']}")):
            for fam, pts in sorted(families.items()):
                pts = sorted(pts, key=lambda p: p[0])
                ax.plot([p[0] for p in pts], [100 * (p[1][key] or 0.0) for p in pts], "o-", label=fam)
            if BASELINE in methods:
                ax.axhline(100 * (methods[BASELINE]["summary"][key] or 0.0), color="k", ls="--", label=BASELINE)
            ax.set_xscale("log")
            ax.set_xlabel("sampler steps")
            ax.set_title(f"lift success, {title}")
        axes[0].set_ylabel("lift success %")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        written.append(out / "success_vs_steps.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    if results.get("latency_vs_g"):
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        for name, series in results["latency_vs_g"].items():
            gs = sorted(int(g) for g in series)
            ax.plot(gs, [series[str(g)] for g in gs], "o-", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("grasps per plan G")
        ax.set_ylabel(f"p50 latency ms ({results['device_name']})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / "latency_vs_g.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


class Planners:
    """The methods' planners (the learned one loaded once) and how each plans one view."""

    def __init__(self, methods: list[Method], model: str | None, device: str, backend: str = "eager",
                 post: dict | None = None):  # fmt: skip
        self.learned = {}  # model directory -> its planner (loaded once)
        self.baseline = None
        self.model = model
        if any(m.learned and m.model is None for m in methods) and not model:
            names = ",".join(m.name for m in methods if m.learned and m.model is None)
            raise ValueError(f"--methods {names}: learned methods need --model DIR (a save_pretrained directory)")
        from sceneleap_core.infer import GraspPlanner

        for path in dict.fromkeys(m.model or model for m in methods if m.learned):
            name, extra = backend_spec(backend)  # e.g. cuda_graph:tf32
            post = {**extra.pop("post", {}), **(post or {})}
            self.learned[path] = GraspPlanner.from_pretrained(path, device=device, backend=name, **extra)
        if any(not m.learned for m in methods):
            from sceneleap_core.infer.baselines import NormalApproachPlanner

            self.baseline = NormalApproachPlanner(device=device)
        if post:  # PostConfig overrides for every planner (e.g. refine_steps=10)
            import dataclasses

            from sceneleap_core.infer.postprocess import PostConfig

            for planner in (*self.learned.values(), self.baseline):
                if planner is not None:
                    planner.post = PostConfig.from_dict({**dataclasses.asdict(planner.post), **post})

    def plan(self, method: Method, points: np.ndarray, num_grasps: int, seed: int, up):
        if method.learned:
            planner = self.learned[method.model or self.model]
            return planner.plan(points, num_grasps, steps=method.steps, sampler=method.sampler, seed=seed, up=up,
                                oversample=method.oversample, temperature=method.temperature,
                                guidance_scale=method.guidance)  # fmt: skip
        return self.baseline.plan(points, num_grasps, seed=seed, up=up)


def run(args: argparse.Namespace, command: str) -> dict:
    """Plan, lift-test and summarize (module docstring); returns what ``results.json`` holds."""
    from tqdm import tqdm

    from sceneleap_core.infer.demo import camera_up
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    methods = parse_methods(args.methods)
    from sceneleap_core.infer.postprocess import PostConfig

    post = parse_key_values(args.post, "--post", PostConfig())
    planners = Planners(methods, args.model, args.device, args.backend, post)
    evaluator = SimLiftEvaluator(args.root, workers=args.workers)
    try:
        views = pick_views(len(evaluator.dataset), args.views, args.seed)
        per_view: dict[str, list[dict]] = {m.name: [] for m in methods}
        first = evaluator.dataset[int(views[0])]
        first_up = None if args.estimate_up else camera_up(first.camera_pose)
        for m in methods:  # warm-up (lazy init, allocator, kernels): not timed
            planners.plan(m, first.points, args.grasps, args.seed, first_up)
        for index in tqdm(views, desc="views", unit="view"):
            sample = evaluator.dataset[int(index)]
            up = None if args.estimate_up else camera_up(sample.camera_pose)
            seed = args.seed + int(index)
            for m in methods:
                gs = planners.plan(m, sample.points, args.grasps, seed, up)
                pose = gs.palm_pose[0].detach().cpu().double().numpy()
                res = lift_test(evaluator, int(index), pose, gs.joints[0], disturbance=args.disturbance)
                div = diversity(grasps_to_world(sample.camera_pose, pose))
                per_view[m.name].append({
                    "view": int(index), "scene_id": int(sample.scene_id), "returned": len(gs),
                    "success": [bool(s) for s in res["success"]], "failure": res["failure"],
                    "disturbance": res["disturbance"],
                    "penetration_mm": [float(p) for p in res["penetration_mm"]],
                    "diversity_mm": div[0], "diversity_deg": div[1],
                    "latency_ms": float(gs.timings["total"]), "timings_ms": {k: float(v) for k, v in gs.timings.items()},
                    "rejected": {k: int(v) for k, v in gs.rejected.items()}, "candidates": int(gs.candidates),
                })  # fmt: skip
        latency = {}
        if args.latency_g:
            sizes = [int(g) for g in args.latency_g.split(",") if g.strip()]
            sample = evaluator.dataset[int(views[0])]
            up = None if args.estimate_up else camera_up(sample.camera_pose)
            for m in tqdm(methods, desc="latency vs G", unit="method"):
                latency[m.name] = {}
                for g in sizes:
                    planners.plan(m, sample.points, g, args.seed, up)  # warm-up at this G
                    times = [planners.plan(m, sample.points, g, args.seed + r, up).timings["total"]
                             for r in range(args.latency_repeats)]  # fmt: skip
                    latency[m.name][str(g)] = float(statistics.median(times))
    finally:
        evaluator.close()
    device = torch.device(args.device)
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "command": command,
        "machine": f"{platform.node()} {platform.platform()}, Python {platform.python_version()}, torch {torch.__version__}",
        "device": str(device),
        "device_name": device_name,
        "dataset": str(args.root),
        "model": args.model,
        "views": [int(v) for v in views],
        "grasps": int(args.grasps),
        "seed": int(args.seed),
        "up": "estimated" if args.estimate_up else "camera pose",
        "methods": {
            m.name: {
                "sampler": m.sampler,
                "steps": m.steps,
                "oversample": m.oversample,
                "summary": summarize(per_view[m.name]),
                "per_view": per_view[m.name],
            }
            for m in methods
        },
        "latency_vs_g": latency,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", nargs="?", help="held-out dataset of composed scenes (sceneleap scenes compose --split test)")
    ap.add_argument("--merge", nargs="+", metavar="RESULTS_JSON", default=None,
                    help="instead of running: put earlier results.json of the same views side by side (table, plots)")  # fmt: skip
    ap.add_argument("--model", default=None, help="save_pretrained directory (needed by learned methods)")
    ap.add_argument(
        "--methods", default=DEFAULT_METHODS, help=f"SAMPLER:STEPS and/or {BASELINE} (default {DEFAULT_METHODS})"
    )
    ap.add_argument("--views", type=int, default=32, help="views, a seeded pick spread over the dataset")
    ap.add_argument("--grasps", type=int, default=32, help="G, grasps asked of each plan")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="eager", help="learned planner's backend (eager, compile, cuda_graph, onnx, tensorrt; "
                    "cuda_graph:tf32 / cuda_graph:bf16: the graphs' precision)")
    ap.add_argument("--workers", type=int, default=1, help="lift-test processes")
    ap.add_argument(
        "--estimate-up", action="store_true", help="planners estimate up from the table (default: camera pose)"
    )
    ap.add_argument("--latency-g", default="", help="comma list of G for latency_vs_g.png (e.g. 8,32,128)")
    ap.add_argument("--latency-repeats", type=int, default=5, help="timed plans per G")
    ap.add_argument("--disturbance", action="store_true",
                    help="also run the disturbance protocol on each grasp's target object alone (single objects)")
    ap.add_argument("--post", action="append", default=[], metavar="KEY=VALUE",
                    help="post-processing override for every planner (PostConfig field, e.g. refine_steps=10)")
    ap.add_argument("--out", default="results", help="output directory")
    ap.add_argument("--markdown", default=None, help="append a dated section to this file (e.g. bench/RESULTS.md)")
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.merge:
        try:
            runs = [json.loads(Path(f).read_text()) for f in args.merge]
            return finish(merge_results(runs, [Path(f).name for f in args.merge]), args)
        except (OSError, json.JSONDecodeError, KeyError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.root is None:
        ap.error("root: expected the held-out dataset (or --merge RESULTS_JSON ...)")
    try:
        parse_methods(args.methods)
    except ValueError as err:
        ap.error(str(err))
    if args.grasps < 1 or args.views < 1:
        ap.error(f"--grasps/--views: expected >= 1, got {args.grasps}/{args.views}")
    command = "python bench/results.py " + " ".join(shlex.quote(a) for a in argv)
    t0 = time.perf_counter()
    try:
        results = run(args, command)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results["seconds"] = round(time.perf_counter() - t0, 1)
    return finish(results, args)


def finish(results: dict, args) -> int:
    """results.json, the table, the plots and the optional markdown section of a run or a merge."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from sceneleap_core.atomic import write_text_atomic

    results = json_safe(results)
    write_text_atomic(out / "results.json", json.dumps(results, indent=1, allow_nan=False))
    print_table(results)
    written = [out / "results.json", *plot(results, out)]
    if args.markdown:
        path = Path(args.markdown)
        with open(path, "a") as handle:
            handle.write(("\n" if path.exists() and path.stat().st_size else "") + markdown_section(results))
        written.append(path)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
