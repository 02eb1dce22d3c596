"""Why do raw samples fail the lift test? Swap parts of each sampled grasp for its nearest
ground-truth grasp and lift-test every hybrid, side by side on the same views and seeds.

For each view, G grasps are sampled (no planner filter or ranking) and matched to the nearest
ground-truth grasp of the view (mean keypoint distance: palm origin + fingertips). Rows:

* ``sample``: the sampled grasps as they are;
* ``sample palm + GT joints``: the sampled palm pose with the matched grasp's joints;
* ``GT palm + sample joints``: the matched grasp's palm pose with the sampled joints;
* ``sample + GT translation``: the sampled rotation and joints at the matched palm position;
* ``nearest GT``: the matched grasps themselves (the ceiling of this matching);
* ``backed off``: the palm moved back along the approach axis; ``fingers opened``: every closing
  joint unflexed by a fixed angle;
* ``finger clearance``: :func:`sceneleap_core.infer.postprocess.finger_clearance` against the view's
  cloud (only the fingers that observed points lie inside, just out of them) at a few tolerances.

Each row also gives the share failing each gate of the lift test. Also prints the sampled grasps' errors to their matches (palm translation mm, rotation deg, joints
rad RMS), split by lift outcome, and writes a histogram picture with ``--png``.

    python bench/failure_modes.py DATA --model sceneleap_core/assets/default_model --views 12 --grasps 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REASONS = ("pregrasp_penetration", "grasp_penetration", "not_lifted")


def rotation_angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle (...,) in degrees between rotation matrices a, b (..., 3, 3)."""
    rel = a.transpose(-1, -2) @ b
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


def main(argv=None) -> int:
    from sceneleap_core.data.shards import ShardDataset
    from sceneleap_core.hand.description import HandDescription
    from sceneleap_core.hand.representation import vector_to_pose
    from sceneleap_core.models import GraspGenerator
    from sceneleap_core.train.config import ValConfig, load_config
    from sceneleap_core.train.data import GraspSceneDataset, usable_indices
    from sceneleap_core.train.ladder import spread_indices, view_batch
    from sceneleap_core.train.metrics import grasp_keypoints
    from sceneleap_core.train.module import GraspTrainingModule
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="composed dataset (shards + objects.json)")
    ap.add_argument("--model", default="sceneleap_core/assets/default_model", help="model directory")
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--grasps", type=int, default=16, help="sampled grasps per view")
    ap.add_argument("--sampler", default="ddim:10", help="sampler:steps")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--png", help="write error histograms (lifted vs failed) here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)

    model_dir = Path(args.model)
    cfg = load_config(model_dir / "training_config.yaml", [])
    model, normalizer, _ = GraspGenerator.load_pretrained(model_dir, device=args.device)
    module = GraspTrainingModule(model, normalizer, val=ValConfig(), seed=cfg.seed).to(args.device).eval()
    source = ShardDataset(args.data)
    ds = GraspSceneDataset(source, usable_indices(source), num_points=cfg.data.num_points, num_grasps=256,
                           center=cfg.data.center, frame=cfg.data.frame, augment=None, seed=cfg.seed + 1)  # fmt: skip
    views = spread_indices(len(ds), args.views)
    batch = view_batch(ds, views)
    sampler, steps = args.sampler.split(":")
    dev = {k: v.to(args.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    with torch.no_grad():
        pose, joints = module.sample_grasps(dev["points"], args.grasps, seed=args.seed, sampler=sampler,
                                            steps=int(steps), up=dev["up"])  # fmt: skip
    pose, joints = pose.cpu().double(), joints.cpu().double()  # (B, G, 4, 4), (B, G, J)
    hand = module.hand.to("cpu")
    gt_pose, gt_joints = vector_to_pose(batch["grasps"].double(), hand.dof)  # (B, K, 4, 4), (B, K, J)
    mask = batch["grasp_mask"].bool()  # (B, K)
    kp = grasp_keypoints(hand, pose.float(), joints.float()).double()  # (B, G, P, 3)
    kp_gt = grasp_keypoints(hand, gt_pose.float(), gt_joints.float()).double()  # (B, K, P, 3)
    dist = (kp[:, :, None] - kp_gt[:, None]).norm(dim=-1).mean(-1)  # (B, G, K)
    dist = dist.masked_fill(~mask[:, None, :], float("inf"))
    match = dist.argmin(-1)  # (B, G)

    def take(x: torch.Tensor) -> torch.Tensor:  # (B, K, ...) -> the matched rows (B, G, ...)
        index = match.reshape(*match.shape, *([1] * (x.dim() - 2)))
        return torch.gather(x, 1, index.expand(-1, -1, *x.shape[2:]))

    m_pose, m_joints = take(gt_pose), take(gt_joints)  # (B, G, 4, 4), (B, G, J)

    err_t = (pose[..., :3, 3] - m_pose[..., :3, 3]).norm(dim=-1) * 1000  # (B, G) mm
    err_r = rotation_angle_deg(pose[..., :3, :3], m_pose[..., :3, :3])  # (B, G) deg
    err_q = (joints - m_joints).pow(2).mean(-1).sqrt()  # (B, G) rad
    err_kp = dist.min(-1).values * 1000  # (B, G) mm
    desc = HandDescription.load()
    closing = torch.as_tensor(desc.closing_direction, dtype=joints.dtype)  # (J,)
    over_close = ((joints - m_joints) * closing)[..., closing != 0].mean(-1)  # (B, G) rad, > 0: closed further

    hybrid_t = pose.clone()
    hybrid_t[..., :3, 3] = m_pose[..., :3, 3]
    approach = pose[..., :3, :3] @ torch.as_tensor(desc.approach_axis, dtype=pose.dtype)  # (B, G, 3)

    def backed_off(mm: float) -> torch.Tensor:
        out = pose.clone()
        out[..., :3, 3] -= mm / 1000 * approach
        return out

    def opened(rad: float) -> torch.Tensor:
        return joints - rad * closing  # every closing joint unflexed by ``rad``

    from sceneleap_core.infer.postprocess import PostConfig, finger_clearance

    def cleared(tolerance: float, levels=PostConfig.clearance_levels) -> torch.Tensor:
        post = PostConfig(clearance_tolerance=tolerance, clearance_levels=levels)
        return torch.stack([finger_clearance(hand.double(), pose[b], joints[b], batch["points"][b, :, :3].double(), post)[1]
                            for b in range(len(views))])  # fmt: skip

    rows = {
        "sample": (pose, joints),
        "sample palm + GT joints": (pose, m_joints),
        "GT palm + sample joints": (m_pose, joints),
        "sample + GT translation": (hybrid_t, joints),
        "nearest GT": (m_pose, m_joints),
        "backed off 3 mm": (backed_off(3), joints),
        "backed off 6 mm": (backed_off(6), joints),
        "fingers opened 0.05 rad": (pose, opened(0.05)),
        "fingers opened 0.1 rad": (pose, opened(0.1)),
        "backed off 3 mm, opened 0.05": (backed_off(3), opened(0.05)),
        "finger clearance 2 mm": (pose, cleared(0.002)),
        "finger clearance 0 mm": (pose, cleared(0.0)),
        "finger clearance 4 mm": (pose, cleared(0.004)),
        "clearance 0 mm from 0.025": (pose, cleared(0.0, (0.025, 0.05, 0.075, 0.1, 0.15, 0.2))),
        "clearance 0 mm, fine levels": (pose, cleared(0.0, (0.0, 0.0125, 0.025, 0.0375, 0.05, 0.075, 0.1, 0.15))),
    }
    evaluator = SimLiftEvaluator(args.data, workers=args.workers, max_scenes=len(views), max_grasps=args.grasps)
    from sceneleap_core.infer.planner import to_input_frame

    success, failure, tips, pen_obj, pen_scene = {}, {}, {}, {}, {}
    try:
        for name, (p, q) in rows.items():
            per_view, why, touch, po, ps = [], [], [], [], []
            for b in range(len(views)):
                index = int(batch["index"][b])
                scene = evaluator.scene(index)
                pose_cam = to_input_frame(batch["frame"][b : b + 1].double(), p[b : b + 1])[0].numpy()
                res = evaluator.evaluate_world(index, scene[1] @ pose_cam, q[b].numpy(), scene=scene).lift
                per_view.append(np.asarray(res.success, dtype=bool))
                why.append(np.asarray(res.failure, dtype=str))
                touch.append(np.asarray(res.tip_contacts))
                po.append(np.asarray(res.penetration_object_mm))
                ps.append(np.asarray(res.penetration_scene_mm))
            pen_obj[name], pen_scene[name] = np.stack(po), np.stack(ps)
            success[name], failure[name], tips[name] = np.stack(per_view), np.stack(why), np.stack(touch)  # (B, G)
            reasons = ", ".join(f"{r} {100 * (failure[name] == r).mean():.1f} %" for r in REASONS)
            print(f"{name:<26} lift {100 * success[name].mean():5.1f} %   failed: {reasons}", flush=True)
    finally:
        evaluator.close()

    ok = success["sample"]
    print(f"\n{len(views)} views x {args.grasps} grasps, {args.sampler}, model {model_dir}, data {args.data}")
    print(f"{'error to the nearest GT grasp':<30} {'lifted':>10} {'failed':>10}")
    for label, e in [("keypoints mean (mm)", err_kp), ("palm translation (mm)", err_t),
                     ("palm rotation (deg)", err_r), ("joints RMS (rad)", err_q)]:  # fmt: skip
        e = e.numpy()
        print(f"{label:<30} {np.median(e[ok]):>10.2f} {np.median(e[~ok]):>10.2f}   (medians)")
    print(
        f"{'fingertips touching the target':<30} {tips['sample'][ok].mean():>10.2f} {tips['sample'][~ok].mean():>10.2f}   (means)"
    )
    print(
        f"{'closing beyond the match (rad)':<30} {np.median(over_close.numpy()[ok]):>10.3f} "
        f"{np.median(over_close.numpy()[~ok]):>10.3f}   (medians; mean of flexing joints)"
    )
    gated = failure["sample"] == "grasp_penetration"
    if gated.any():
        po, ps = pen_obj["sample"][gated], pen_scene["sample"][gated]
        print(
            f"grasp-penetration failures: target deeper than 5 mm {100 * (po > 5).mean():.0f} %, other objects or "
            f"table {100 * (ps > 5).mean():.0f} %; median depth target {np.median(po):.1f} mm, scene {np.median(ps):.1f} mm"
        )
    fails = ~ok
    if fails.any():
        print("\nof the failed samples, lifted after swapping in the match's:")
        for name in list(rows)[1:]:
            print(f"  {name:<26} {100 * success[name][fails].mean():5.1f} %")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 4, figsize=(14, 3))
        for ax, (label, e) in zip(axes, [("keypoints mm", err_kp), ("translation mm", err_t),
                                         ("rotation deg", err_r), ("joints rad RMS", err_q)]):  # fmt: skip
            e = e.numpy()
            bins = np.linspace(0, np.quantile(e, 0.95), 20)
            ax.hist(e[ok], bins=bins, alpha=0.6, label="lifted")
            ax.hist(e[~ok], bins=bins, alpha=0.6, label="failed")
            ax.set_xlabel(label)
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
