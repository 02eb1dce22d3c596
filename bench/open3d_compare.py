"""The planner's CPU preprocessing and cloud readers against Open3D, side by side on the same clouds:
voxel downsampling, support-plane RANSAC and reading .pcd (ascii / binary / binary_compressed) and
.ply files. Decides whether Open3D (a design-card dependency) should replace the NumPy versions in
``sceneleap_core.infer``. Prints one table; Open3D is optional (the script says so when it is absent).

    python bench/open3d_compare.py --cloud demo_out/composed --points 16384,100000 --repeats 20
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from infer_cpu import tabletop  # bench/ is the script's directory: the same synthetic tabletop cloud


def load_view(root: str | None, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) cloud: the first view of a composed shard set (tiled with jitter to reach n points), or
    the benches' synthetic tabletop (``infer_cpu.tabletop``) when ``root`` is None."""
    if not root:
        return tabletop(n, seed)
    from sceneleap_core.data.shards import ShardDataset

    rng = np.random.default_rng(seed)
    pts = np.asarray(ShardDataset(root)[0].points, dtype=np.float64)
    reps = int(np.ceil(n / len(pts)))
    tiled = np.concatenate([pts + rng.normal(0, 0.0005, pts.shape) * (i > 0) for i in range(reps)])
    return tiled[rng.permutation(len(tiled))[:n]]


def best_ms(fn, repeats: int) -> tuple[float, object]:
    """Median wall time (ms) of ``fn()`` over ``repeats`` calls after one warm-up, and its last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(1e3 * (time.perf_counter() - t))
    return float(np.median(times)), out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cloud", default=None, help="composed shard set whose first view is used (default: synthetic)")
    ap.add_argument("--points", default="16384,100000", help="cloud sizes")
    ap.add_argument("--voxel", type=float, default=0.005, help="voxel size (m)")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    try:
        import open3d as o3d
    except ImportError as exc:
        raise SystemExit(f"open3d is not importable ({exc}); install it (pip install open3d) to run this comparison") from exc

    from sceneleap_core.geometry.frames import estimate_up
    from sceneleap_core.infer.cloud_io import load_cloud, write_pcd, write_ply
    from sceneleap_core.infer.preprocess import support_plane, voxel_downsample

    print(f"open3d {o3d.__version__}; {args.repeats} repeats after a warm-up, median ms")
    print(f"{'points':>7s} {'operation':28s} {'ours ms':>8s} {'open3d ms':>9s}  agreement")
    for n in (int(x) for x in args.points.split(",")):
        xyz = load_view(args.cloud, n)
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz))
        t_ours, ours = best_ms(lambda xyz=xyz: voxel_downsample(xyz, args.voxel), args.repeats)
        t_o3d, theirs = best_ms(lambda pc=pc: pc.voxel_down_sample(args.voxel), args.repeats)
        print(f"{n:7d} {'voxel downsample ' + str(args.voxel) + ' m':28s} {t_ours:8.2f} {t_o3d:9.2f}  "
              f"{len(ours)} vs {len(theirs.points)} points")  # fmt: skip

        t_ours, up = best_ms(lambda xyz=xyz: estimate_up(xyz, threshold=0.006), args.repeats)
        t_plane, plane = best_ms(lambda xyz=xyz: support_plane(xyz, threshold=0.006), args.repeats)

        def o3d_plane(pc=pc):
            return pc.segment_plane(distance_threshold=0.006, ransac_n=3, num_iterations=200, probability=1.0)

        t_o3d, (model, inliers) = best_ms(o3d_plane, args.repeats)
        normal = np.asarray(model[:3]) / np.linalg.norm(model[:3])
        angle = np.degrees(np.arccos(min(1.0, abs(float(normal @ up)))))
        frac = "-" if plane is None else f"{plane.inliers:.2f}"
        print(f"{n:7d} {'plane RANSAC (200 hyp.)':28s} {t_ours:8.2f} {t_o3d:9.2f}  normals {angle:.2f} deg apart; "
              f"inliers {frac} vs {len(inliers) / n:.2f}; support_plane() in all {t_plane:.2f} ms")  # fmt: skip

        with tempfile.TemporaryDirectory() as tmp:
            files = {f"pcd {kind}": write_pcd(Path(tmp) / f"c_{kind}.pcd", xyz.astype(np.float32), data=kind)
                     for kind in ("ascii", "binary", "binary_compressed")}  # fmt: skip
            files["ply binary"] = write_ply(Path(tmp) / "c.ply", xyz.astype(np.float32))
            for name, path in files.items():
                t_ours, a = best_ms(lambda path=path: load_cloud(path), max(3, args.repeats // 4))
                t_o3d, b = best_ms(lambda path=path: o3d.io.read_point_cloud(str(path)), max(3, args.repeats // 4))
                b = np.asarray(b.points)
                same = len(a) == len(b) and np.allclose(a[:, :3], b, atol=1e-6)
                print(f"{n:7d} {'read ' + name:28s} {t_ours:8.2f} {t_o3d:9.2f}  "
                      f"{'same points' if same else f'DIFFER: {len(a)} vs {len(b)}'}")  # fmt: skip


if __name__ == "__main__":
    main()
