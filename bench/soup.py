#!/usr/bin/env python3
"""Interpolate the weights of two fine-tunes of one model (a "model soup"): (1 - alpha) A + alpha B.

    python bench/soup.py A B --alpha 0.5 --out SOUP [--ranking-from A|B]

A and B are ``save_pretrained`` directories of the same architecture and grasp normalization (e.g.
the bundled model and its self-distilled fine-tune); the result keeps A's config, normalizer and
planner defaults, stored as float16 like the bundled model, plus the critic / ranker files of
``--ranking-from``. Then measure it like any model (``bench/learning.py``, ``bench/results.py``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="model directory A (config, normalizer and planner defaults kept)")
    ap.add_argument("b", help="model directory B (same architecture and normalization)")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of B, in [0, 1]")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ranking-from", choices=("a", "b"), default="a", help="whose critic / ranker files to copy")
    args = ap.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        ap.error(f"--alpha: expected a weight in [0, 1], got {args.alpha}")
    from sceneleap_core.models import GraspGenerator

    model_a, norm_a, extra = GraspGenerator.load_pretrained(args.a)
    model_b, norm_b, _ = GraspGenerator.load_pretrained(args.b)
    if model_a.config != model_b.config:
        ap.error("a, b: expected the same model config")
    if (
        norm_a is not None
        and norm_b is not None
        and not all(torch.equal(x, y) for x, y in zip(norm_a.state_dict().values(), norm_b.state_dict().values()))
    ):
        ap.error("a, b: expected the same grasp normalization (fine-tunes of one model)")
    state_b = model_b.state_dict()
    mixed = {
        k: torch.lerp(v, state_b[k], args.alpha) if v.is_floating_point() else v
        for k, v in model_a.state_dict().items()
    }
    model_a.load_state_dict(mixed)
    model_a.save_pretrained(args.out, norm_a, extra, dtype=torch.float16, max_shard_bytes=15 * 2**20)
    source = Path(args.a if args.ranking_from == "a" else args.b)
    for name in ("critic.json", "critic.safetensors", "ranker.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, Path(args.out) / name)
    print(f"wrote {args.out}: (1 - {args.alpha:g}) {args.a} + {args.alpha:g} {args.b}, ranking from {source}")


if __name__ == "__main__":
    main()
