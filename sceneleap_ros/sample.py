"""The bundled sample cloud (a depth view of ``sceneleap_core/data/sample``), for the demo publisher,
the replay tests and trying the node without a camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sceneleap_core" / "data" / "sample"
SAMPLE_FRAME = "camera_depth_optical_frame"


def sample_cloud(index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """View ``index`` of the bundled sample: points (N, 3) float64 in the camera's optical frame
    (z forward, REP-103 ``_optical``) and world up (3,) in that frame (from the stored camera pose)."""
    from sceneleap_core.data.shards import ShardDataset

    source = ShardDataset(SAMPLE_ROOT)
    if not 0 <= index < len(source):
        raise ValueError(f"index: expected 0 <= index < {len(source)}, got {index}")
    s = source[index]
    up = np.asarray(s.camera_pose, dtype=np.float64)[:3, :3].T @ np.array([0.0, 0.0, 1.0])
    return np.asarray(s.points, dtype=np.float64), up
