"""Several runs' learning ladders side by side: one table (lift %, penetration, conditioning gap per
rung and run) and, with ``--png``, grouped bars of lift success per rung.

    python bench/ladder_compare.py ctl=runs/ctl/ladder.json aux=runs/aux/ladder.json --png cmp.png

Each argument is NAME=PATH, PATH a ``ladder.json`` written by ``bench/learning.py`` (or the run
directory holding it). Rungs are matched by name and sampler; a rung a run lacks shows as ``-``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def load_ladder(spec: str) -> tuple[str, dict[tuple[str, str, int], dict]]:
    """``NAME=PATH`` -> (name, {(rung, sampler, steps): row}) of a ladder.json (or its run dir)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise SystemExit(f"ladder: expected NAME=PATH, got {spec!r}")
    p = Path(path)
    p = p / "ladder.json" if p.is_dir() else p
    try:
        rows = json.loads(p.read_text())["rows"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise SystemExit(f"ladder {name}: cannot read the rows of {p}: {err}") from None
    return name, {(r["name"], r.get("sampler") or "-", int(r.get("steps") or 0)): r for r in rows}


def rung_keys(ladders: list[tuple[str, dict]]) -> list[tuple[str, str, int]]:
    """Every (rung, sampler, steps) of the ladders, in first-seen order."""
    keys: list[tuple[str, str, int]] = []
    for _, rows in ladders:
        keys += [k for k in rows if k not in keys]
    return keys


def table(ladders: list[tuple[str, dict]]) -> list[str]:
    """The side-by-side text table, one line per rung."""
    keys = rung_keys(ladders)
    names = [n for n, _ in ladders]
    lines = [f"{'rung':28s} {'sampler':>10s}  " + "  ".join(f"{n + ' lift/pen/gap':>24s}" for n in names)]
    for key in keys:
        cells = []
        for _, rows in ladders:
            r = rows.get(key)
            if r is None:
                cells.append(f"{'-':>24s}")
                continue
            pen, gap = (r.get(k) for k in ("penetration_mm", "gap_foreign"))
            pen, gap = (v if isinstance(v, (int, float)) and math.isfinite(v) else None for v in (pen, gap))
            cell = f"{100 * r['lift']:5.1f} % " + (f"{pen:4.2f} mm " if pen is not None else "   -    ")
            cells.append(f"{cell + (f'{gap:+.3f}' if gap is not None else '   -  '):>24s}")
        sampler = f"{key[1]} {key[2]}" if key[2] else key[1]
        lines.append(f"{key[0]:28s} {sampler:>10s}  " + "  ".join(cells))
    return lines


def plot(ladders: list[tuple[str, dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = [k for k in rung_keys(ladders) if any(rows.get(k, {}).get("sampler") for _, rows in ladders)]
    x = np.arange(len(keys))
    width = 0.8 / max(1, len(ladders))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(keys)), 3.8))
    for i, (name, rows) in enumerate(ladders):
        values = [100 * rows[k]["lift"] if k in rows else np.nan for k in keys]
        bars = ax.bar(x + (i - (len(ladders) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x, [f"{k[0]}\n{k[1]} {k[2]}" for k in keys], fontsize=7)
    ax.set_ylabel("lift success %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ladders", nargs="+", help="NAME=PATH of a ladder.json or its run directory")
    ap.add_argument("--png", help="grouped bars of lift success per rung")
    args = ap.parse_args(argv)
    ladders = [load_ladder(s) for s in args.ladders]
    print("\n".join(table(ladders)))
    if args.png:
        plot(ladders, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
