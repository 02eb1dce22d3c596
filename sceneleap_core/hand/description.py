"""Hand descriptions: a URDF with box collision geometry plus a YAML of hand-specific facts.

`HandDescription.load("leap_hand_right")` reads the bundled LEAP Hand; a path to another YAML
loads another hand. Nothing here is torch: the description is plain data, turned into buffers
by :class:`sceneleap_core.hand.HandModel`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_HAND = "leap_hand_right"


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF fixed-axis roll-pitch-yaw: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


def _origin(elem: ET.Element | None) -> np.ndarray:
    """4x4 transform of a URDF <origin> element (identity when absent)."""
    tf = np.eye(4)
    if elem is None:
        return tf
    xyz = [float(v) for v in elem.get("xyz", "0 0 0").split()]
    rpy = [float(v) for v in elem.get("rpy", "0 0 0").split()]
    tf[:3, :3] = rpy_to_matrix(*rpy)
    tf[:3, 3] = xyz
    return tf


@dataclass(frozen=True)
class BoxGeom:
    """A collision box: ``half_extents`` (3,) in a frame ``box_in_link`` (4, 4) of ``link``."""

    name: str
    link: str
    half_extents: np.ndarray
    box_in_link: np.ndarray


@dataclass(frozen=True)
class LinkSpec:
    """A link and the joint that attaches it to its parent (None for the root)."""

    name: str
    parent: str | None
    joint: str | None
    joint_type: str  # "root", "revolute" or "fixed"
    origin: np.ndarray  # (4, 4) parent -> joint frame at q = 0
    axis: np.ndarray  # (3,) joint axis in the child frame
    mass: float


@dataclass(frozen=True)
class JointSpec:
    name: str
    lower: float
    upper: float
    effort: float
    velocity: float


@dataclass(frozen=True)
class ContactPad:
    link: str
    box: str
    face: str  # signed axis, e.g. "-x"
    grid: tuple[int, int]


@dataclass
class HandDescription:
    """Everything the code knows about one hand. Links are in topological order (root first)."""

    name: str
    links: list[LinkSpec]
    joints: list[JointSpec]  # in the project's joint order
    boxes: list[BoxGeom]
    root_link: str
    closing_direction: np.ndarray
    open_pose: np.ndarray
    approach_axis: np.ndarray
    palm_inner_face_offset: float
    fingers: dict[str, dict]
    contact_pads: list[ContactPad]
    pad_friction: float
    body_friction: float
    self_collision_exclude: list[tuple[str, str]] = field(default_factory=list)
    surface_points: int = 1024
    penetration_keypoint_min_radius: float = 0.004
    urdf_path: Path | None = None
    joint_roles: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, name_or_path: str | Path = DEFAULT_HAND) -> HandDescription:
        """Load a bundled hand by name (``leap_hand_right``) or a description YAML by path."""
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml"):
            path = ASSETS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            bundled = sorted(p.stem for p in ASSETS_DIR.glob("*.yaml"))
            raise ValueError(f"hand description: no file {path} (bundled hands: {bundled})")
        with path.open() as handle:
            meta = yaml.safe_load(handle)
        return cls._from_meta(meta, path.parent)

    @classmethod
    def _from_meta(cls, meta: dict, base_dir: Path) -> HandDescription:
        required = ["name", "urdf", "root_link", "joint_order", "closing_direction", "open_pose", "approach_axis"]
        missing = [k for k in required if k not in meta]
        if missing:
            raise ValueError(f"hand description {meta.get('name', '?')}: missing keys {missing}")
        urdf_path = base_dir / meta["urdf"]
        links, joints_by_name, boxes = _parse_urdf(urdf_path, meta["root_link"])
        order = list(meta["joint_order"])
        unknown = [j for j in order if j not in joints_by_name]
        if unknown or len(order) != len(joints_by_name):
            raise ValueError(
                f"hand description {meta['name']}: joint_order must list each of the URDF's "
                f"{len(joints_by_name)} movable joints once; unknown {unknown}, got {len(order)}"
            )
        dof = len(order)
        for key in ("closing_direction", "open_pose"):
            if len(meta[key]) != dof:
                raise ValueError(f"hand description {meta['name']}: {key} expected {dof} values, got {len(meta[key])}")
        box_names = {b.name for b in boxes}
        pads = [ContactPad(p["link"], p["box"], p["face"], tuple(p["grid"])) for p in meta.get("contact_pads", [])]
        for pad in pads:
            if pad.box not in box_names:
                raise ValueError(f"hand description {meta['name']}: contact pad box {pad.box!r} is not in the URDF")
        link_names = {link.name for link in links}
        for finger, spec in meta.get("fingers", {}).items():
            bad = [n for n in [*spec.get("links", []), spec.get("tip_frame")] if n not in link_names]
            if bad:
                raise ValueError(f"hand description {meta['name']}: finger {finger} names unknown links {bad}")
        return cls(
            name=meta["name"],
            links=links,
            joints=[joints_by_name[j] for j in order],
            boxes=boxes,
            root_link=meta["root_link"],
            closing_direction=np.asarray(meta["closing_direction"], dtype=np.float64),
            open_pose=np.asarray(meta["open_pose"], dtype=np.float64),
            approach_axis=np.asarray(meta["approach_axis"], dtype=np.float64),
            palm_inner_face_offset=float(meta.get("palm_inner_face_offset", 0.0)),
            fingers=dict(meta.get("fingers", {})),
            contact_pads=pads,
            pad_friction=float(meta.get("pad_friction", 0.5)),
            body_friction=float(meta.get("body_friction", 0.2)),
            self_collision_exclude=[tuple(p) for p in meta.get("self_collision_exclude", [])],
            surface_points=int(meta.get("surface_points", 1024)),
            penetration_keypoint_min_radius=float(meta.get("penetration_keypoint_min_radius", 0.004)),
            urdf_path=urdf_path,
            joint_roles=list(meta.get("joint_roles", [])),
        )

    # ------------------------------------------------------------------ queries
    @property
    def dof(self) -> int:
        return len(self.joints)

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def link_names(self) -> list[str]:
        return [link.name for link in self.links]

    @property
    def lower_limits(self) -> np.ndarray:
        return np.array([j.lower for j in self.joints])

    @property
    def upper_limits(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints])

    def link_index(self, name: str) -> int:
        try:
            return self.link_names.index(name)
        except ValueError:
            raise ValueError(f"hand {self.name}: unknown link {name!r}") from None

    def tip_frames(self) -> list[str]:
        return [spec["tip_frame"] for spec in self.fingers.values()]

    def summary(self) -> str:
        lines = [
            f"hand {self.name}: {self.dof} joints, {len(self.links)} links, {len(self.boxes)} collision boxes, "
            f"{len(self.contact_pads)} contact pads",
            f"  root (grasp) frame: {self.root_link}; approach axis {self.approach_axis.tolist()}",
            "  joint  role                    lower    upper",
        ]
        roles = self.joint_roles or [""] * self.dof
        for joint, role in zip(self.joints, roles, strict=False):
            lines.append(f"  {joint.name:<5}  {role:<22} {joint.lower:+.3f}   {joint.upper:+.3f}")
        return "\n".join(lines)


def _parse_urdf(path: Path, root: str) -> tuple[list[LinkSpec], dict[str, JointSpec], list[BoxGeom]]:
    """Parse links, joints and box collisions of a URDF; links in topological order from ``root``."""
    if not path.is_file():
        raise ValueError(f"hand description: URDF {path} does not exist")
    tree = ET.parse(path).getroot()
    masses, boxes = {}, []
    for link in tree.findall("link"):
        name = link.get("name")
        mass = link.find("inertial/mass")
        masses[name] = float(mass.get("value")) if mass is not None else 0.0
        for i, col in enumerate(link.findall("collision")):
            box = col.find("geometry/box")
            if box is None:
                raise ValueError(f"{path}: link {name} collision {i} is not a box (only boxes are supported)")
            size = np.array([float(v) for v in box.get("size").split()])
            boxes.append(BoxGeom(col.get("name") or f"{name}_box{i}", name, size / 2.0, _origin(col.find("origin"))))
    children: dict[str, list[ET.Element]] = {}
    for joint in tree.findall("joint"):
        children.setdefault(joint.find("parent").get("link"), []).append(joint)
    if root not in masses:
        raise ValueError(f"{path}: root link {root!r} not found")
    links = [LinkSpec(root, None, None, "root", np.eye(4), np.zeros(3), masses[root])]
    joints: dict[str, JointSpec] = {}
    frontier = [root]
    while frontier:  # breadth-first: parents always precede children
        nxt = []
        for parent in frontier:
            for joint in children.get(parent, []):
                child = joint.find("child").get("link")
                jtype = joint.get("type")
                if jtype not in ("revolute", "fixed"):
                    raise ValueError(f"{path}: joint {joint.get('name')} has unsupported type {jtype}")
                axis_elem = joint.find("axis")
                axis = np.array(
                    [float(v) for v in (axis_elem.get("xyz") if axis_elem is not None else "1 0 0").split()]
                )
                axis = axis / np.linalg.norm(axis)
                links.append(
                    LinkSpec(
                        child,
                        parent,
                        joint.get("name"),
                        jtype,
                        _origin(joint.find("origin")),
                        axis,
                        masses.get(child, 0.0),
                    )
                )
                if jtype == "revolute":
                    lim = joint.find("limit")
                    joints[joint.get("name")] = JointSpec(
                        joint.get("name"),
                        float(lim.get("lower")),
                        float(lim.get("upper")),
                        float(lim.get("effort", "0")),
                        float(lim.get("velocity", "0")),
                    )
                nxt.append(child)
        frontier = nxt
    reached = {link.name for link in links}
    boxes = [b for b in boxes if b.link in reached]
    return links, joints, boxes
