"""The kept anchors' encoder features taken from the scored pool (the planner now) against encoding
them a second time for the scene cache (before), side by side in one process, alternating: p50 of
the whole ``plan()`` and of its sampling stage (bench/latency.py's ``measure``), and the largest
difference of the sampled grasp vectors on the same seed.

    python bench/anchor_reuse_ab.py --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import unittest.mock
import warnings

import torch
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud
from latency import measure


def main(argv=None) -> None:
    from sceneleap_core.infer import GraspPlanner
    from sceneleap_core.models.generator import GraspGenerator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sceneleap_core/assets/default_model")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backend", default="cuda_graph")
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two ways")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    cloud = tabletop(args.points)
    reuse = GraspGenerator._cache

    def encode_again(self, points, tokens, xyz, drop, anchors, anchor_features=None):
        return reuse(self, points, tokens, xyz, drop, anchors)

    planners = {way: GraspPlanner.from_pretrained(args.model, device=args.device, backend=args.backend)
                for way in ("reuse", "encode again")}  # fmt: skip
    print(f"{args.device}, {args.backend}, {torch.get_num_threads()} threads, {args.points} points, G = 32, DDIM 10, "
          f"the model's anchor pool {planners['reuse'].anchor_pool} x and oversampling")  # fmt: skip
    vectors = {}
    for _ in range(args.rounds):
        for way, planner in planners.items():
            patch = unittest.mock.patch.object(GraspGenerator, "_cache", encode_again if way != "reuse" else reuse)
            with patch:
                r = measure(planner, cloud, 32, "ddim", 10, args.repeats)
                vectors[way] = planner.plan(cloud, 32, steps=10, sampler="ddim", seed=0).vectors
            print(f"{way:13s} plan p50 {r['p50']:8.1f} ms  sample {r['sample']:8.1f} ms", flush=True)
    diff = (vectors["reuse"] - vectors["encode again"]).abs().max()
    print(f"same seed, largest grasp-vector difference: {float(diff):.2e}")


if __name__ == "__main__":
    main()
