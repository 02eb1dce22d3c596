"""MJCF of a grasp scene, generated from the project's hand description and a SceneSpec.

The hand is built from :class:`~sceneleap_core.hand.HandDescription` (never from a copied XML):
one body per link (URDF inertials), a hinge per revolute joint with its limits, a position actuator
per joint, the URDF collision boxes. Layout and naming follow MuJoCo Menagerie:
``compiler`` → nested ``default`` classes → ``asset`` → ``worldbody`` → ``contact`` excludes →
``equality`` → ``actuator``; the ``visual`` class is ``contype=0 conaffinity=0 group=2``, the
``collision`` class ``group=3``.

Derivation, step by step (what :func:`build_scene_xml` writes):

1. Defaults: class ``hand`` (joint damping/armature, position actuator kp + torque cap), its
   children ``visual``, ``collision`` (body friction) and ``pad`` (pad friction); class ``object``.
2. Assets: the convex pieces of every mesh object (inline ``vertex``/``face``) and the original
   mesh for display.
3. World: a ``hand_target`` mocap body; the hand root ``palm_lower`` with a free joint, gravity
   compensated (``gravcomp=1``), followed by its links in description (breadth-first) order, each at
   its URDF joint origin; the objects as free bodies; the table (:func:`table_xml`) with its top at
   ``table_height``.
4. Contact excludes for every parent/child link pair (and the description's extra pairs).
5. A weld from ``hand_target`` to ``palm_lower`` with identity relative pose: moving the mocap body
   drags the free palm onto the commanded pose while the hand stays fully dynamic.
6. One ``position`` actuator ``a_jK`` per joint ``jK``, ctrlrange = joint range.

Collision filtering: hand geoms ``contype=1 conaffinity=1`` (fingers collide with each other and
with everything), objects and table the same. Friction of a hand–object contact: MuJoCo takes the
friction of the geom with the higher ``priority``; hand geoms have priority 1, so pads use
``pad_friction`` and other boxes ``hand_friction``, unless the object is more slippery than the
pads, in which case the object (priority 2) sets it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sceneleap_core.atomic import load_npz_or_none, remove_stale_temps, write_atomic
from sceneleap_core.hand.description import HandDescription, rpy_to_matrix
from sceneleap_core.sim.config import SimConfig
from sceneleap_core.sim.scene import TABLE_HALF_EXTENTS, ObjectSpec, SceneSpec

log = logging.getLogger(__name__)

HAND_TARGET = "hand_target"
MIN_LINK_MASS = 1e-3  # kg, given to links whose URDF inertial is missing or zero (MuJoCo needs mass > 0)


def _f(values) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.ravel(values))


def mat_to_quat_wxyz(rot: np.ndarray) -> np.ndarray:
    """MuJoCo quaternion (w, x, y, z) of a rotation matrix (3, 3)."""
    import mujoco

    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=np.float64).ravel())
    return quat


def _pose_attrs(pose: np.ndarray) -> str:
    return f'pos="{_f(pose[:3, 3])}" quat="{_f(mat_to_quat_wxyz(pose[:3, :3]))}"'


# ---------------------------------------------------------------------------- URDF inertials
@dataclass(frozen=True)
class _Inertial:
    mass: float
    com: np.ndarray  # (3,) in the link frame
    inertia: np.ndarray  # (3, 3) about the COM, link axes


def _urdf_inertials(urdf_path: Path) -> dict[str, _Inertial]:
    """Mass, COM and inertia tensor (in the link frame) of every link of a URDF."""
    out = {}
    for link in ET.parse(urdf_path).getroot().findall("link"):
        inertial = link.find("inertial")
        if inertial is None:
            continue
        mass = float(inertial.find("mass").get("value")) if inertial.find("mass") is not None else 0.0
        origin = inertial.find("origin")
        xyz = [float(v) for v in (origin.get("xyz", "0 0 0") if origin is not None else "0 0 0").split()]
        rpy = [float(v) for v in (origin.get("rpy", "0 0 0") if origin is not None else "0 0 0").split()]
        tensor = np.zeros((3, 3))
        elem = inertial.find("inertia")
        if elem is not None:
            g = {k: float(elem.get(k, "0")) for k in ("ixx", "iyy", "izz", "ixy", "ixz", "iyz")}
            tensor = np.array(
                [[g["ixx"], g["ixy"], g["ixz"]], [g["ixy"], g["iyy"], g["iyz"]], [g["ixz"], g["iyz"], g["izz"]]]
            )
        rot = rpy_to_matrix(*rpy)
        out[link.get("name")] = _Inertial(mass, np.array(xyz), rot @ tensor @ rot.T)
    return out


def _inertial_xml(inertial: _Inertial | None) -> str:
    if inertial is None or inertial.mass <= 0:
        return f'<inertial pos="0 0 0" mass="{MIN_LINK_MASS}" diaginertia="1e-8 1e-8 1e-8"/>'
    i = inertial.inertia
    diag = np.maximum(np.diag(i), 1e-9)
    full = [diag[0], diag[1], diag[2], i[0, 1], i[0, 2], i[1, 2]]
    return f'<inertial pos="{_f(inertial.com)}" mass="{inertial.mass:.9g}" fullinertia="{_f(full)}"/>'


# ---------------------------------------------------------------------------- meshes
def _hull(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    hull = trimesh.Trimesh(vertices, faces, process=True).convex_hull
    return np.asarray(hull.vertices), np.asarray(hull.faces)


def _cache_dir(config: SimConfig) -> Path:
    if config.cache_dir:
        return Path(config.cache_dir)
    return Path(os.environ.get("SCENELEAP_CACHE", Path.home() / ".cache" / "sceneleap")) / "coacd"


def convex_pieces(obj: ObjectSpec, config: SimConfig, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Convex pieces [(V_k, 3), (F_k, 3)] of a mesh object, in its frame.

    ``hull``: the convex hull; ``coacd``: a CoACD decomposition, cached on disk under
    ``cache_dir`` by a hash of the mesh, the CoACD parameters and ``seed``; ``auto``: the hull
    when the mesh fills at least ``convex_volume_ratio`` of it (or is not watertight), else CoACD.
    """
    import trimesh

    mode = config.mesh_mode if obj.convex is None else ("hull" if obj.convex else "coacd")
    mesh = trimesh.Trimesh(obj.vertices, obj.faces, process=True)
    if mode == "auto":
        hull_volume = mesh.convex_hull.volume
        convex_enough = not mesh.is_watertight or mesh.volume >= config.convex_volume_ratio * hull_volume
        mode = "hull" if convex_enough else "coacd"
    if mode == "hull":
        return [_hull(mesh.vertices, mesh.faces)]
    key = hashlib.sha256()
    for arr in (np.ascontiguousarray(mesh.vertices, np.float64), np.ascontiguousarray(mesh.faces, np.int64)):
        key.update(arr.tobytes())
    key.update(f"{config.coacd_threshold}|{config.coacd_max_pieces}|{seed}".encode())
    path = _cache_dir(config) / f"{key.hexdigest()[:24]}.npz"
    cached = load_npz_or_none(path, lambda z: [(z[f"v{k}"], z[f"f{k}"]) for k in range(int(z["count"]))])
    if cached:  # an unreadable cache file counts as missing: recomputed and rewritten
        return cached
    import coacd

    coacd.set_log_level("error")
    parts = coacd.run_coacd(
        coacd.Mesh(np.asarray(mesh.vertices), np.asarray(mesh.faces)),
        threshold=config.coacd_threshold,
        max_convex_hull=config.coacd_max_pieces,
        seed=seed,
    )
    pieces = [(np.asarray(v, dtype=np.float64), np.asarray(f, dtype=np.int64)) for v, f in parts]
    arrays = {f"v{k}": v for k, (v, _) in enumerate(pieces)} | {f"f{k}": f for k, (_, f) in enumerate(pieces)}
    remove_stale_temps(path.parent)  # temps of killed processes
    write_atomic(path, lambda tmp: np.savez(tmp, count=len(pieces), **arrays))  # pid temp + fsync + rename
    log.info("CoACD: %d pieces, cached at %s", len(pieces), path)
    return pieces


def _piece_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    import trimesh

    return float(abs(trimesh.Trimesh(vertices, faces, process=False).volume))


# ---------------------------------------------------------------------------- the model
def _hand_xml(desc: HandDescription, config: SimConfig) -> tuple[str, list[str], str]:
    """(worldbody XML of the hand, contact-exclude lines, actuator XML)."""
    inertials = _urdf_inertials(desc.urdf_path) if desc.urdf_path else {}
    pad_boxes = {pad.box for pad in desc.contact_pads}
    limits = {j.name: j for j in desc.joints}
    boxes_of: dict[str, list] = {}
    for box in desc.boxes:
        boxes_of.setdefault(box.link, []).append(box)
    children: dict[str | None, list] = {}
    for link in desc.links:
        children.setdefault(link.parent, []).append(link)

    def body(link, depth: int) -> str:
        pad = "  " * depth
        lines = []
        if link.parent is None:
            lines.append(f'{pad}<body name="{link.name}" childclass="hand" gravcomp="1">')
            lines.append(f'{pad}  <freejoint name="hand_root"/>')
        else:
            lines.append(f'{pad}<body name="{link.name}" {_pose_attrs(link.origin)} gravcomp="1">')
            if link.joint_type == "revolute":
                lim = limits[link.joint]
                lines.append(
                    f'{pad}  <joint name="{link.joint}" axis="{_f(link.axis)}" range="{lim.lower:.9g} {lim.upper:.9g}"/>'
                )
        has_geom = bool(boxes_of.get(link.name))
        if link.joint_type != "fixed" or has_geom:
            lines.append(f"{pad}  {_inertial_xml(inertials.get(link.name))}")
        for box in boxes_of.get(link.name, []):
            attrs = f'size="{_f(box.half_extents)}" {_pose_attrs(box.box_in_link)}'
            cls = "pad" if box.name in pad_boxes else "collision"
            lines.append(f'{pad}  <geom name="{box.name}" class="{cls}" {attrs}/>')
            lines.append(f'{pad}  <geom class="visual_{cls}" {attrs}/>')
        if link.joint_type == "fixed" and not has_geom:
            lines.append(f'{pad}  <site name="{link.name}" size="0.002"/>')
        for child in children.get(link.name, []):
            lines.append(body(child, depth + 1))
        lines.append(f"{pad}</body>")
        return "\n".join(lines)

    root = next(link for link in desc.links if link.parent is None)
    with_geoms = {b.link for b in desc.boxes}
    excludes = []
    for link in desc.links:
        if link.parent is not None and link.name in with_geoms and link.parent in with_geoms:
            excludes.append(f'    <exclude body1="{link.parent}" body2="{link.name}"/>')
    for a, b in desc.self_collision_exclude:
        excludes.append(f'    <exclude body1="{a}" body2="{b}"/>')
    actuators = []
    for j in desc.joints:
        cap = config.force_limit if config.force_limit is not None else (j.effort or 1.0)
        actuators.append(
            f'    <position name="a_{j.name}" class="hand" joint="{j.name}" ctrlrange="{j.lower:.9g} {j.upper:.9g}" '
            f'forcerange="{-cap:.9g} {cap:.9g}"/>'
        )
    return body(root, 2), excludes, "\n".join(actuators)


def _object_xml(i: int, obj: ObjectSpec, config: SimConfig, pieces, assets: list[str]) -> str:
    mass = obj.mass if obj.mass is not None else config.object_mass
    friction = obj.friction if obj.friction is not None else config.object_friction
    pad_friction = config.pad_friction if config.pad_friction is not None else 0.5
    priority = 2 if friction < pad_friction else 0
    common = f'friction="{friction:.9g} 0.005 0.0001" priority="{priority}"'
    lines = [f'    <body name="object_{i}" {_pose_attrs(obj.pose)}>', f'      <freejoint name="object_{i}_free"/>']
    if obj.kind == "mesh":
        volumes = np.array([max(_piece_volume(v, f), 1e-12) for v, f in pieces])
        for k, (v, f) in enumerate(pieces):
            assets.append(f'    <mesh name="object_{i}_p{k}" vertex="{_f(v)}" face="{_f(f.astype(int))}"/>')
            piece_mass = mass * volumes[k] / volumes.sum()
            lines.append(
                f'      <geom name="object_{i}_g{k}" class="object" type="mesh" mesh="object_{i}_p{k}" '
                f'mass="{piece_mass:.9g}" {common}/>'
            )
        assets.append(f'    <mesh name="object_{i}_visual" vertex="{_f(obj.vertices)}" face="{_f(obj.faces)}"/>')
        lines.append(f'      <geom class="object_visual" type="mesh" mesh="object_{i}_visual"/>')
    else:
        size = _f(obj.size)
        lines.append(
            f'      <geom name="object_{i}_g0" class="object" type="{obj.kind}" size="{size}" mass="{mass:.9g}" {common}/>'
        )
        lines.append(f'      <geom class="object_visual" type="{obj.kind}" size="{size}"/>')
    lines.append("    </body>")
    return "\n".join(lines)


def table_xml(table_height: float | None, config: SimConfig) -> str:
    """The table geoms (one definition for settling, validation and evaluation): a collision box of
    half extents :data:`~sceneleap_core.sim.scene.TABLE_HALF_EXTENTS` whose top face is
    z = ``table_height``, friction ``config.table_friction``, ``condim`` 6 (torsional and rolling
    resistance 0.01 and 0.005, the values settling always used, so round objects come to rest), and its visual twin. "" without a table."""
    if table_height is None:
        return ""
    hx, hy, hz = TABLE_HALF_EXTENTS
    z = table_height - hz
    return (
        f'    <geom name="table" type="box" size="{hx:.9g} {hy:.9g} {hz:.9g}" pos="0 0 {z:.9g}" condim="6" '
        f'friction="{config.table_friction:.9g} 0.01 0.005" rgba="0.55 0.45 0.35 1" group="3"/>\n'
        f'    <geom class="table_visual" type="box" size="{hx:.9g} {hy:.9g} {hz:.9g}" pos="0 0 {z:.9g}"/>'
    )


def build_objects_xml(scene: SceneSpec, config: SimConfig, *, seed: int = 0) -> str:
    """The MJCF of the scene's objects and table without the hand (settling objects on the table):
    the same object bodies (``object_i``, geoms ``object_i_gK``, convex pieces, masses, friction)
    and the same table as :func:`build_scene_xml`. Only difference: object geoms use ``condim`` 6
    here (torsional and rolling resistance in every contact, whatever the geoms' priorities), so that
    round objects come to rest when settling instead of rolling off the table."""
    assets: list[str] = []
    objects = []
    for i, obj in enumerate(scene.objects):  # no hand here: _object_xml's default pad friction decides priority
        pieces = convex_pieces(obj, config, seed=seed) if obj.kind == "mesh" else None
        objects.append(_object_xml(i, obj, config, pieces, assets))
    # collision geoms only (every geom is a named object piece or the table: ray casts label points by name)
    collision = lambda block: "\n".join(ln for ln in block.split("\n") if "_visual" not in ln)  # noqa: E731
    asset_block = "\n".join(a for a in assets if "_visual" not in a)
    object_block = collision("\n".join(objects))
    return f"""<mujoco model="sceneleap_objects_{scene.name}">
  <compiler angle="radian" autolimits="true" inertiafromgeom="auto"/>
  <option timestep="{config.timestep:.9g}" integrator="{config.integrator}" cone="{config.cone}"
          impratio="{config.impratio:.9g}" gravity="0 0 {-config.gravity:.9g}"/>
  <default>
    <default class="object">
      <geom group="3" contype="1" conaffinity="1" condim="6" rgba="0.9 0.6 0.2 0.5"/>
    </default>
  </default>
  <asset>
{asset_block}
  </asset>
  <worldbody>
{object_block}
{collision(table_xml(scene.table_height, config))}
  </worldbody>
</mujoco>
"""


def build_scene_xml(
    scene: SceneSpec,
    desc: HandDescription,
    config: SimConfig,
    *,
    seed: int = 0,
    render_size: tuple[int, int] = (640, 480),
) -> str:
    """The MJCF (a string) of the hand, the scene's objects and its table.

    Args:
        scene: validated SceneSpec (objects in order; object ``i`` is body ``object_i``).
        desc: the hand description.
        config: physics parameters.
        seed: CoACD seed for non-convex meshes.
        render_size: offscreen framebuffer (width, height) for the renderer.
    """
    pad_friction = config.pad_friction if config.pad_friction is not None else desc.pad_friction
    hand_friction = config.hand_friction if config.hand_friction is not None else desc.body_friction
    config_for_objects = config if config.pad_friction is not None else _with_pad(config, pad_friction)
    hand_body, excludes, actuators = _hand_xml(desc, config)
    assets: list[str] = []
    objects = []
    for i, obj in enumerate(scene.objects):
        pieces = convex_pieces(obj, config, seed=seed) if obj.kind == "mesh" else None
        objects.append(_object_xml(i, obj, config_for_objects, pieces, assets))
    table = table_xml(scene.table_height, config)
    cap = config.force_limit if config.force_limit is not None else 0.95
    solref = _f(config.weld_solref)
    root = desc.root_link
    asset_block = "\n".join(assets)
    object_block = "\n".join(objects)
    exclude_block = "\n".join(excludes)
    self_aff = 1 if config.hand_self_collision else 0
    hand_contype, hand_aff = (1, 1) if self_aff else (2, 1)
    other_aff = 1 if self_aff else 3
    return f"""<mujoco model="sceneleap_{desc.name}_{scene.name}">
  <compiler angle="radian" autolimits="true" inertiafromgeom="auto"/>
  <option timestep="{config.timestep:.9g}" integrator="{config.integrator}" cone="{config.cone}"
          impratio="{config.impratio:.9g}" gravity="0 0 {-config.gravity:.9g}"/>
  <visual>
    <global offwidth="{render_size[0]}" offheight="{render_size[1]}"/>
  </visual>
  <default>
    <default class="hand">
      <joint damping="{config.joint_damping:.9g}" armature="{config.joint_armature:.9g}"/>
      <position kp="{config.kp:.9g}" forcerange="{-cap:.9g} {cap:.9g}"/>
      <geom type="box" density="0"/>
      <default class="visual_collision">
        <geom contype="0" conaffinity="0" group="2" rgba="0.3 0.3 0.3 1"/>
      </default>
      <default class="visual_pad">
        <geom contype="0" conaffinity="0" group="2" rgba="0.9 0.9 0.9 1"/>
      </default>
      <default class="collision">
        <geom group="3" contype="{hand_contype}" conaffinity="{hand_aff}" priority="1"
              friction="{hand_friction:.9g} 0.005 0.0001" rgba="0.2 0.4 0.8 0.5"/>
        <default class="pad">
          <geom friction="{pad_friction:.9g} 0.005 0.0001" rgba="0.9 0.3 0.3 0.5"/>
        </default>
      </default>
    </default>
    <default class="object">
      <geom group="3" contype="1" conaffinity="{other_aff}" rgba="0.9 0.6 0.2 0.5"/>
    </default>
    <default class="object_visual">
      <geom contype="0" conaffinity="0" group="2" density="0" rgba="0.95 0.65 0.2 1"/>
    </default>
    <default class="table_visual">
      <geom contype="0" conaffinity="0" group="2" density="0" rgba="0.55 0.45 0.35 1"/>
    </default>
  </default>
  <asset>
{asset_block}
  </asset>
  <worldbody>
    <light pos="0 0 1.5" dir="0 0 -1" directional="true"/>
    <body name="{HAND_TARGET}" mocap="true"/>
{hand_body}
{object_block}
{table}
  </worldbody>
  <contact>
{exclude_block}
  </contact>
  <equality>
    <weld name="hand_weld" body1="{HAND_TARGET}" body2="{root}" relpose="0 0 0 1 0 0 0" solref="{solref}"/>
  </equality>
  <actuator>
{actuators}
  </actuator>
</mujoco>
"""


def _with_pad(config: SimConfig, pad_friction: float) -> SimConfig:
    from dataclasses import replace

    return replace(config, pad_friction=pad_friction)
