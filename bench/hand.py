#!/usr/bin/env python3
"""Hand model throughput: FK, surface points, SDF, self-penetration for a batch of grasps, ms per
call, side by side with pytorch-kinematics' FK on the same URDF (CPU, and CUDA when present).

    python bench/hand.py [--batch 1024] [--points 256] [--repeat 20] [--devices cpu,cuda]

Prints one table; copy it into bench/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import platform

import torch
from timing import timed

from sceneleap_core.geometry.rotations import make_transform, random_rotation
from sceneleap_core.hand import HandModel


def bench_device(device: str, args: argparse.Namespace, pk) -> tuple:
    """All timings for one device."""
    hand = HandModel.load().to(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    b = args.batch
    joints = (
        hand.joint_lower.cpu() + (hand.joint_upper - hand.joint_lower).cpu() * torch.rand(b, hand.dof, generator=g)
    ).to(device)
    pose = make_transform(random_rotation(b, generator=g), 0.1 * torch.randn(b, 3, generator=g)).to(device)
    cloud = (0.1 * torch.randn(b, args.points, 3, generator=g)).to(device)
    with torch.no_grad():
        state = hand(joints, pose, validate=False)
        ours_fk = timed(lambda: hand(joints, pose, validate=False), device, args.repeat)
        ours_fk_checked = timed(lambda: hand(joints, pose), device, args.repeat)
        surf = timed(lambda: hand.surface_points(hand(joints, pose, validate=False)), device, args.repeat)
        sdf = timed(lambda: hand.signed_distance(state, cloud), device, args.repeat)
        selfpen = timed(lambda: hand.self_penetration(state), device, args.repeat)
        full = timed(
            lambda: (
                hand.signed_distance(s := hand(joints, pose, validate=False), cloud),
                hand.surface_points(s),
            ),
            device,
            args.repeat,
        )
        pk_fk = float("nan")
        if pk is not None:
            chain = pk.build_chain_from_urdf(hand.description.urdf_path.read_bytes()).to(device=device)
            order = [hand.joint_names.index(n) for n in chain.get_joint_parameter_names()]
            q_pk = joints[:, order].contiguous()
            pk_fk = timed(lambda: chain.forward_kinematics(q_pk), device, args.repeat)
    # gradient of the full energy w.r.t. joints and pose (what the optimizers pay)
    jg = joints.clone().requires_grad_(True)

    def backward():
        s = hand(jg, pose, validate=False)
        (hand.signed_distance(s, cloud).sum() + hand.self_penetration(s).sum()).backward()

    grad = timed(backward, device, max(3, args.repeat // 4))
    return (device, ours_fk, ours_fk_checked, pk_fk, surf, sdf, selfpen, full, grad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--points", type=int, default=256, help="query points per grasp for the SDF")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--devices", default="cpu,cuda")
    args = parser.parse_args()
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    try:
        import pytorch_kinematics as pk
    except ImportError:
        pk = None

    rows = [bench_device(device, args, pk) for device in devices]

    name = torch.cuda.get_device_name() if "cuda" in devices else platform.processor() or platform.machine()
    print(
        f"# bench/hand.py  batch {args.batch}, {args.points} SDF points/grasp, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {name}"
    )
    print(
        "| device | FK (ms) | FK + validation | pytorch-kinematics FK | FK + surface pts | SDF | self-pen | FK+surf+SDF | energy fwd+bwd | FK speed-up vs pk |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for device, fk, fkc, pkfk, surf, sdf, sp, full, grad in rows:
        print(
            f"| {device} | {fk:.2f} | {fkc:.2f} | {pkfk:.2f} | {surf:.2f} | {sdf:.2f} | {sp:.2f} | {full:.2f} | {grad:.2f} | {pkfk / fk:.1f}x |"
        )


if __name__ == "__main__":
    main()
