"""bench/ladder_compare.py: runs' ladders side by side, rungs matched by name and sampler, a rung a
run lacks shown as missing, bad arguments refused by name, the plot written."""

from __future__ import annotations

import json

import pytest
from _bench_common import load_bench_script


def _write(path, rows):
    path.mkdir(parents=True, exist_ok=True)
    (path / "ladder.json").write_text(json.dumps({"config": "x", "rows": rows}))
    return path


def _row(name, sampler, steps, lift, pen=0.5, gap=0.1):
    return {"name": name, "sampler": sampler, "steps": steps, "lift": lift, "penetration_mm": pen,
            "gap_foreign": gap}  # fmt: skip


def test_rungs_line_up_by_name_and_sampler(tmp_path):
    cmp = load_bench_script("ladder_compare")
    a = _write(tmp_path / "a", [_row("ground_truth", None, 0, 0.98, float("nan"), float("nan")),
                                _row("train_views", "ddim", 10, 0.5), _row("unseen", "ddim", 10, 0.25)])  # fmt: skip
    b = _write(tmp_path / "b", [_row("unseen", "ddim", 10, 0.75, 0.2, 0.3), _row("unseen", "ddpm", 100, 0.4)])
    ladders = [cmp.load_ladder(f"base={a}"), cmp.load_ladder(f"new={b / 'ladder.json'}")]
    lines = cmp.table(ladders)
    unseen = next(line for line in lines if line.startswith("unseen") and "ddim 10" in line)
    assert "25.0 %" in unseen and "75.0 %" in unseen and "0.20 mm" in unseen and "+0.300" in unseen
    ddpm = next(line for line in lines if "ddpm 100" in line)
    assert ddpm.split()[-1] == "+0.100" and " - " in ddpm  # base lacks this rung
    gt = next(line for line in lines if line.startswith("ground_truth"))
    assert "nan" not in gt and "98.0 %" in gt
    png = tmp_path / "cmp.png"
    assert cmp.main([f"base={a}", f"new={b}", "--png", str(png)]) == 0
    assert png.stat().st_size > 1000
    with pytest.raises(SystemExit, match="expected NAME=PATH"):
        cmp.load_ladder(str(a))
    with pytest.raises(SystemExit, match="ladder c: cannot read"):
        cmp.load_ladder(f"c={tmp_path / 'none'}")
