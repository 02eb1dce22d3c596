"""Small matrix products (``sceneleap_core.geometry.rotations.small_matmul``) as one broadcast
multiply and sum on CUDA (the planner now) against ``torch.matmul`` (cuBLAS batched GEMMs / GEMVs,
before), side by side in one process: GPU time of the hand's forward kinematics and box poses at the
collision check's size (256 candidates x 10 hand states), and p50 of the whole ``plan()`` with each
way (each planner captures its graphs under its own way), alternating.

    python bench/hand_fk_ab.py --repeats 30
"""

from __future__ import annotations

import argparse
import unittest.mock
import warnings

import torch
from box_depth_ab import gpu_ms
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from latency import measure

WAYS = {"broadcast (now)": True, "torch.matmul (before)": False}


def main(argv=None) -> None:
    import sceneleap_core.geometry.rotations as rotations
    from sceneleap_core.hand import HandModel
    from sceneleap_core.infer import GraspPlanner

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sceneleap_core/assets/default_model")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="cuda_graph")
    ap.add_argument("--states", type=int, default=2560, help="hand states of the kinematics call")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two ways (plans)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    hand = HandModel.load().to(args.device)
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(args.states, hand.dof, generator=gen, dtype=torch.float64).to(args.device)
    joints = hand.joint_lower + u * (hand.joint_upper - hand.joint_lower)
    pose = torch.eye(4, dtype=torch.float64, device=args.device).repeat(args.states, 1, 1)

    def kinematics():
        state = hand(joints, pose, validate=False)
        return hand.box_poses(state)

    print(f"{args.device}, {args.states} hand states: forward kinematics + box poses, GPU ms (median)")
    boxes = {}
    for way, flag in WAYS.items():
        with unittest.mock.patch.object(rotations, "BROADCAST_SMALL_MATMUL_ON_CUDA", flag):
            ms, boxes[way] = gpu_ms(kinematics, args.repeats)
        print(f"  {way:22s} {ms:8.3f} ms")
    (rot_a, ctr_a), (rot_b, ctr_b) = boxes.values()
    print(f"  largest difference: rotations {float((rot_a - rot_b).abs().max()):.1e}, "
          f"centres {float((ctr_a - ctr_b).abs().max()):.1e} m")  # fmt: skip
    cloud = tabletop(args.points)
    planners = {way: GraspPlanner.from_pretrained(args.model, device=args.device, backend=args.backend) for way in WAYS}
    print(f"plan() p50, {args.backend}, {args.points} points, G = 32, DDIM 10, the model's oversampling")
    for _ in range(args.rounds):
        for way, planner in planners.items():
            with unittest.mock.patch.object(rotations, "BROADCAST_SMALL_MATMUL_ON_CUDA", WAYS[way]):
                r = measure(planner, cloud, 32, "ddim", 10, args.repeats)
            stages = "  ".join(f"{k} {v:.1f}" for k, v in r.items() if k not in ("p50", "p95", "kept"))
            print(f"  {way:22s} {r['p50']:8.1f} ms  ({stages})", flush=True)


if __name__ == "__main__":
    main()
