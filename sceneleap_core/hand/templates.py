"""Point templates fixed once per hand, in each link's frame: surface points, contact candidates,
penetration keypoints. :class:`HandModel` stores them as buffers and moves them by forward
kinematics; nothing here runs per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneleap_core.geometry.box_sdf import box_signed_distance
from sceneleap_core.geometry.pointops import farthest_point_sample
from sceneleap_core.hand.description import BoxGeom, HandDescription

_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass(frozen=True)
class PointTemplate:
    """Points in link frames: ``points`` (P, 3), ``link_index`` (P,), optional ``normals`` (P, 3)
    and ``radius`` (P,)."""

    points: np.ndarray
    link_index: np.ndarray
    normals: np.ndarray | None = None
    radius: np.ndarray | None = None


def _box_local_to_link(box: BoxGeom, pts: np.ndarray) -> np.ndarray:
    return pts @ box.box_in_link[:3, :3].T + box.box_in_link[:3, 3]


def _sample_box_surface(box: BoxGeom, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) points uniform on the surface of a box, in the link frame."""
    h = box.half_extents
    areas = np.array([h[1] * h[2], h[1] * h[2], h[0] * h[2], h[0] * h[2], h[0] * h[1], h[0] * h[1]])
    face = rng.choice(6, size=n, p=areas / areas.sum())
    pts = rng.uniform(-1.0, 1.0, size=(n, 3)) * h
    axis, sign = face // 2, np.where(face % 2 == 0, 1.0, -1.0)
    pts[np.arange(n), axis] = sign * h[axis]
    return _box_local_to_link(box, pts)


def _inside_other_boxes(pts: np.ndarray, boxes: list[BoxGeom], skip: int) -> np.ndarray:
    inside = np.zeros(len(pts), dtype=bool)
    for j, other in enumerate(boxes):
        if j == skip:
            continue
        local = (pts - other.box_in_link[:3, 3]) @ other.box_in_link[:3, :3]
        sdf = box_signed_distance(torch.from_numpy(local), torch.from_numpy(other.half_extents)).numpy()
        inside |= sdf < -1e-4
    return inside


def surface_template(desc: HandDescription, total: int | None = None, seed: int = 0) -> PointTemplate:
    """Area-weighted, farthest-point-thinned points on the outer surface of every link's boxes.

    Recipe:
    1. per link, sample dense points on each box surface (about 40 per cm^2);
    2. drop points buried inside another box of the same link (they are not on the outer surface);
    3. give each link a share of ``total`` proportional to its remaining area (at least 8);
    4. thin each link's points to its share by farthest point sampling (even spacing).
    """
    total = total or desc.surface_points
    rng = np.random.default_rng(seed)
    per_link: dict[int, np.ndarray] = {}
    for li, link in enumerate(desc.links):
        boxes = [b for b in desc.boxes if b.link == link.name]
        chunks = []
        for bi, box in enumerate(boxes):
            h = box.half_extents
            area = 8 * (h[0] * h[1] + h[1] * h[2] + h[0] * h[2])
            pts = _sample_box_surface(box, max(64, int(area * 4e5)), rng)
            chunks.append(pts[~_inside_other_boxes(pts, boxes, bi)])
        if chunks:
            per_link[li] = np.concatenate(chunks)
    dense_total = sum(len(p) for p in per_link.values())
    points, links = [], []
    for li, pts in per_link.items():
        share = max(8, round(total * len(pts) / dense_total))
        share = min(share, len(pts))
        idx = farthest_point_sample(torch.from_numpy(pts)[None], share)[0].numpy()
        points.append(pts[idx])
        links.append(np.full(share, li))
    return PointTemplate(np.concatenate(points), np.concatenate(links))


def contact_template(desc: HandDescription) -> PointTemplate:
    """Contact candidates: a grid on the contact face of each pad box, with outward normals."""
    boxes = {b.name: b for b in desc.boxes}
    points, links, normals = [], [], []
    for pad in desc.contact_pads:
        box = boxes[pad.box]
        sign = -1.0 if pad.face.startswith("-") else 1.0
        axis = _AXES[pad.face[-1]]
        others = [a for a in range(3) if a != axis]
        others.sort(key=lambda a: -box.half_extents[a])  # grid[0] along the longer side
        h = box.half_extents
        u = np.linspace(-0.75, 0.75, pad.grid[0]) * h[others[0]]
        v = np.linspace(-0.6, 0.6, pad.grid[1]) * h[others[1]]
        uu, vv = np.meshgrid(u, v, indexing="ij")
        local = np.zeros((uu.size, 3))
        local[:, others[0]], local[:, others[1]] = uu.ravel(), vv.ravel()
        local[:, axis] = sign * h[axis]
        normal = np.zeros(3)
        normal[axis] = sign
        points.append(_box_local_to_link(box, local))
        normals.append(np.tile(box.box_in_link[:3, :3] @ normal, (len(local), 1)))
        links.append(np.full(len(local), desc.link_index(pad.link)))
    return PointTemplate(np.concatenate(points), np.concatenate(links), normals=np.concatenate(normals))


def keypoint_template(desc: HandDescription) -> PointTemplate:
    """Penetration keypoints: spheres inscribed in each box, spaced one radius apart along its
    larger axes. Boxes thinner than ``penetration_keypoint_min_radius`` are skipped (thin covers)."""
    points, links, radius = [], [], []
    for box in desc.boxes:
        h = box.half_extents
        r = float(h.min())
        if r < desc.penetration_keypoint_min_radius:
            continue
        axes = [
            np.linspace(-(ha - r), ha - r, int(np.ceil((ha - r) / r)) + 1) if ha - r > 1e-9 else np.zeros(1) for ha in h
        ]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        points.append(_box_local_to_link(box, grid))
        links.append(np.full(len(grid), desc.link_index(box.link)))
        radius.append(np.full(len(grid), r))
    return PointTemplate(np.concatenate(points), np.concatenate(links), radius=np.concatenate(radius))


def self_collision_link_mask(desc: HandDescription) -> np.ndarray:
    """(L, L) bool: True where two links may be tested against each other for self-penetration
    (not the same link, not parent and child, not listed in ``self_collision_exclude``)."""
    n = len(desc.links)
    mask = ~np.eye(n, dtype=bool)
    for i, link in enumerate(desc.links):
        if link.parent is not None:
            j = desc.link_index(link.parent)
            mask[i, j] = mask[j, i] = False
    for a, b in desc.self_collision_exclude:
        i, j = desc.link_index(a), desc.link_index(b)
        mask[i, j] = mask[j, i] = False
    return mask
