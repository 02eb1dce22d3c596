"""Shared by the tests of the scripts in bench/ (a folder of scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench_script(name: str):
    """bench/<name>.py as the module ``bench_<name>``, loaded once, with bench/ on sys.path for its
    sibling modules (as when it runs as a script)."""
    key = f"bench_{name}"
    if key not in sys.modules:
        if str(ROOT / "bench") not in sys.path:
            sys.path.insert(0, str(ROOT / "bench"))
        spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
        sys.modules[key] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[key]


def compose_test_scenes(out: Path, num_scenes: int, views: int, seed: int) -> Path:
    """``num_scenes`` composed scenes of unseen (test-split) objects of the bundled library, ``views``
    views each, in one shard under ``out``, as `sceneleap scenes compose` writes them."""
    from sceneleap_core.cli import main

    assert main(["scenes", "compose", "--library", str(ROOT / "sceneleap_core" / "data" / "library_default"),
                 "--split", "test", "--num-scenes", str(num_scenes), "--views", str(views),
                 "--scenes-per-shard", str(num_scenes), "--seed", str(seed), "--out", str(out)]) == 0  # fmt: skip
    return out
