"""Hand-vs-scene collision tests for composed scenes: a tensor core, batched over grasps, on any device.

The filter (:func:`hand_collisions`, a tensor core) checks every grasp at S = ``sweep_steps`` + 2
hand states: the open hand at ``sweep_steps`` + 1 palm poses evenly spaced from the pregrasp
(backed off ``pregrasp_distance`` along the approach axis, as in the lift test) to the grasp, and the
grasp itself with the grasp joints. Against

* the table: the lowest corner of every hand box, exact (boxes are the hand's collision geometry);
* other objects, two conservative tests, a grasp is dropped when either fires in any state:
  (1) the box signed distance at the object's surface samples (1024: the convex hull's corners,
  then even samples) closer than ``clearance`` to any box; (2) the hand's surface (a 5 mm grid on
  every box face, :class:`HandPatches`) within ``clearance`` of the object's convex hull, tested
  as half-spaces (:func:`hull_planes`; max_k(n_k . x - d_k) bounds the distance to the hull from
  below and the hull contains the object, so no hand point that touches the object slips through
  between samples). Broad and mid phases: spheres per (state, box or patch, object), then sample
  leaves vs the box SDF and the patch centre's plane bound (both 1-Lipschitz bounds);
* its target: only the open-hand states (the closed grasp touches it by design), with the
  tolerance ``target_tolerance`` (the library's grasps close onto the surface; some open-hand
  boxes graze it at the end of the approach, see the value's note).

The table and target checks do not depend on the placement (P leaves the table and the grasp's
relation to its object unchanged), so they are computed once per library grasp and cached; a scene
only pays for its neighbours.

Notation: G grasps, J hand DoF, S hand states per grasp (sweep + grasp), K hand collision boxes, O
objects, M surface samples per object, T (state, box, object) triples that pass the broad phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sceneleap_core.geometry.box_sdf import box_signed_distance


def sweep_states(
    hand,
    pose: torch.Tensor,
    joints: torch.Tensor,
    *,
    pregrasp_distance: float = 0.10,
    sweep_steps: int = 8,
    close_steps: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Palm poses (G, S, 4, 4) and joints (G, S, J) of the checked hand states,
    S = sweep_steps + close_steps + 2.

    States 0..sweep_steps: the open hand (``HandModel.open_joints``: closing joints unflexed to the
    open pose, never past the grasp, as the simulator's) from the pregrasp (0) to the grasp palm pose
    (sweep_steps); then ``close_steps`` states at the grasp palm pose with the joints evenly
    between open and grasp (a curling finger sweeps beyond both ends: the simulator's close
    phase); state S - 1: the grasp with its joints.
    """
    g, j = joints.shape
    dt = pose.dtype
    q_open = hand.open_joints(joints)
    axis = pose[:, :3, :3] @ hand.approach_axis.to(dtype=dt, device=pose.device)  # (G, 3)
    back = pregrasp_distance * (1 - torch.linspace(0, 1, sweep_steps + 1, dtype=dt, device=pose.device))
    poses = pose[:, None].repeat(1, sweep_steps + 2, 1, 1)  # (G, S, 4, 4)
    poses[:, : sweep_steps + 1, :3, 3] -= back[None, :, None] * axis[:, None]
    f = torch.arange(1, close_steps + 1, dtype=dt, device=pose.device) / (close_steps + 1)  # (C,)
    q_close = q_open[:, None] + f[None, :, None] * (joints - q_open)[:, None]  # (G, C, J)
    poses = torch.cat([poses[:, :-1], pose[:, None].expand(g, close_steps, 4, 4), poses[:, -1:]], 1)
    q = torch.cat([q_open[:, None].expand(g, sweep_steps + 1, j), q_close, joints[:, None]], 1)  # (G, S, J)
    return poses, q


@dataclass
class HandPatches:
    """The hand's collision-box surfaces as patches of points, for the hull check.

    Every box face carries a grid of spacing at most ``spacing`` (edges and corners included);
    points buried inside another box of the same link are dropped (not on the hand's surface);
    each box's points are cut into patches of ``size`` (the last one padded by repeating a point).

    Attributes:
        points: (N, size, 3) box-frame points; box: (N,) box index; centre: (N, 3) box frame;
        radius: (N,) bounding radius of each patch about its centre; homogeneous: (N, size, 4)
        the points with a trailing 1.
    """

    points: torch.Tensor
    box: torch.Tensor
    centre: torch.Tensor
    radius: torch.Tensor

    @property
    def homogeneous(self) -> torch.Tensor:
        out = self.__dict__.get("_homogeneous")
        if out is None:
            out = self.__dict__["_homogeneous"] = torch.cat([self.points, torch.ones_like(self.points[..., :1])], -1)
        return out

    @classmethod
    def build(cls, hand, spacing: float = 0.005, size: int = 32) -> HandPatches:
        half = hand.box_half.double().cpu().numpy()
        link = hand.box_link.cpu().numpy()
        rot, trans = hand.box_rot.double().cpu().numpy(), hand.box_trans.double().cpu().numpy()
        pts, box = [], []
        for k, h in enumerate(half):
            grid = []
            for a in range(3):
                b, c = [i for i in range(3) if i != a]
                u = np.linspace(-h[b], h[b], int(np.ceil(2 * h[b] / spacing)) + 1)
                v = np.linspace(-h[c], h[c], int(np.ceil(2 * h[c] / spacing)) + 1)
                uu, vv = (x.ravel() for x in np.meshgrid(u, v, indexing="ij"))
                for sign in (-1.0, 1.0):
                    f = np.zeros((len(uu), 3))
                    f[:, a], f[:, b], f[:, c] = sign * h[a], uu, vv
                    grid.append(f)
            grid = np.unique(np.round(np.concatenate(grid), 9), axis=0)
            # drop points deeper than 0.5 mm inside another box of the same link
            in_link = rot[k] @ grid.T + trans[k][:, None]  # (3, n) link frame
            keep = np.ones(len(grid), bool)
            for j in np.flatnonzero((link == link[k]) & (np.arange(len(half)) != k)):
                q = np.abs(rot[j].T @ (in_link - trans[j][:, None])).T - half[j]
                keep &= q.max(1) > -0.0005
            grid = grid[keep]
            grid = grid[leaf_order(grid, size)]  # compact patches
            for a in range(0, len(grid), size):
                chunk = grid[a : a + size]
                pts.append(np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk), 0)]))
                box.append(k)
        pts = np.stack(pts)
        centre = pts.mean(1)
        kw = {"dtype": hand.dtype, "device": hand.device}
        return cls(
            points=torch.as_tensor(pts, **kw),
            box=torch.as_tensor(np.array(box), device=hand.device),
            centre=torch.as_tensor(centre, **kw),
            radius=torch.as_tensor(np.linalg.norm(pts - centre[:, None], axis=-1).max(1), **kw),
        )

    def to(self, device=None, dtype=None) -> HandPatches:
        return HandPatches(
            self.points.to(device, dtype),
            self.box.to(device),
            self.centre.to(device, dtype),
            self.radius.to(device, dtype),
        )


def leaf_order(points: np.ndarray, leaf: int) -> np.ndarray:
    """Permutation of points (M, 3) into consecutive groups of ``leaf`` spatially coherent points
    (the last one shorter when ``leaf`` does not divide M): recursive splits along the widest axis
    at a multiple of ``leaf`` near the median (a balanced k-d tree; exact halves when M = leaf 2^k)."""

    def split(idx: np.ndarray) -> list[np.ndarray]:
        if len(idx) <= leaf:
            return [idx]
        p = points[idx]
        axis = int(np.argmax(p.max(0) - p.min(0)))
        order = idx[np.argsort(p[:, axis], kind="stable")]
        half = leaf * -(-len(idx) // (2 * leaf))
        return split(order[:half]) + split(order[half:])

    return np.concatenate(split(np.arange(len(points))))


def hull_planes(mesh, max_planes: int = 128) -> np.ndarray:
    """(F, 4) half-spaces (n, d), |n| = 1, of the object's convex hull in its frame: x is inside when
    max_k (n_k . x - d_k) <= 0. Coplanar facets are merged; with more than ``max_planes`` facets a
    spread subset of normals is kept (farthest point sampling on the sphere) and each offset is
    recomputed as max over the hull's vertices, so the polytope still contains the hull (looser by
    at most a few % of the radius on smooth objects: conservative)."""
    hull = mesh.convex_hull
    verts = np.asarray(hull.vertices)
    normals = np.asarray(hull.face_normals)
    normals = np.unique(np.round(normals, 6), axis=0)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    if len(normals) > max_planes:
        chosen = [int(np.argmax(normals[:, 2]))]
        dist = np.linalg.norm(normals - normals[chosen[0]], axis=1)
        for _ in range(max_planes - 1):
            chosen.append(int(np.argmax(dist)))
            dist = np.minimum(dist, np.linalg.norm(normals - normals[chosen[-1]], axis=1))
        normals = normals[chosen]
    offset = (verts @ normals.T).max(0)
    return np.concatenate([normals, offset[:, None]], 1)


def hand_collisions(
    hand,
    pose: torch.Tensor,
    joints: torch.Tensor,
    target: torch.Tensor,
    samples: torch.Tensor,
    centre: torch.Tensor,
    radius: torch.Tensor,
    *,
    pregrasp_distance: float = 0.10,
    sweep_steps: int = 8,
    clearance: float = 0.0,
    check_target: bool = True,
    hull: torch.Tensor | None = None,
    patches: HandPatches | None = None,
    leaf: int = 64,
    grasp_objects: torch.Tensor | None = None,
    close_steps: int = 0,
    chunk: int = 8192,
) -> dict[str, torch.Tensor]:
    """Collision measures of G grasps along their approach (module docstring).

    Args:
        hand: HandModel.
        pose: (G, 4, 4) grasp palm poses, world frame.
        joints: (G, J).
        target: (G,) int64 index (into the O objects) of each grasp's object; -1 = none.
        samples: (O, M, 3) object surface samples, world frame.
        centre: (O, 3) bounding-sphere centres; radius: (O,) their radii.
        clearance: broad-phase and narrow-phase margin (m): a sample closer than this to a box counts.
        check_target: measure the target too (False when its depth is known already: scenes).
        hull: (O, F, 4) convex-hull half-spaces (n, d) of the objects, world frame (pad with
            n = 0, d = 1e9); with ``patches``, the hand's surface points are also tested against
            every non-target hull (a point counts when max_k(n_k . x - d_k) < clearance, a lower
            bound of its distance to the hull: conservative).
        patches: :class:`HandPatches` of the hand (box frames).
        leaf: the samples of each object come in groups of ``leaf`` consecutive, spatially
            coherent points (see :func:`leaf_order`; M divisible by it): the mid-phase unit.
        close_steps: closing states at the grasp pose (:func:`sweep_states`; no target check there).
        grasp_objects: (G, Q) int64, the objects (indices, -1 = none) each grasp may meet: its
            scene's, when several scenes share one query (the work then grows with G Q, not G O).
            Default: every object.

    Returns:
        ``table_z`` (G,): lowest hand-box corner over all states (m, table top = 0);
        ``target_depth`` (G,): deepest target sample inside an open-hand box (m);
        ``other_depth`` (G,): largest ``clearance - distance`` of any non-target sample to any box
        over all states (> 0 means a hit), ``-inf`` when nothing is near; with ``hull``, also
        ``clearance`` minus the hull distance bound of any hand point (the larger of the two);
        ``hull_depth`` (G,): that hull part alone (``-inf`` without ``hull``).

    Recipe: 1. hand states (G, S); 2. FK, box poses (G S, K); 3. table: box corner heights;
    4. broad phase: box sphere (centre, half-diagonal) vs object sphere, + clearance -> triples;
    5. mid phase per triple: leaf spheres vs the box SDF; narrow phase per (triple, leaf): its
    samples into the box frame, box SDF, min; 6. reduce; 7. hull check (patches vs hulls: sphere
    broad phase, patch-centre plane bound, every point against every plane).
    """
    g, j = joints.shape
    dt, dev = pose.dtype, pose.device
    out = {
        "table_z": torch.full((g,), float("inf"), dtype=dt, device=dev),
        "target_depth": torch.zeros(g, dtype=dt, device=dev),
        "other_depth": torch.full((g,), float("-inf"), dtype=dt, device=dev),
        "hull_depth": torch.full((g,), float("-inf"), dtype=dt, device=dev),
    }
    if g == 0:
        return out
    # 1-2. states, forward kinematics, boxes
    poses, q = sweep_states(
        hand, pose, joints, pregrasp_distance=pregrasp_distance, sweep_steps=sweep_steps, close_steps=close_steps
    )
    s = poses.shape[1]
    state = hand(q.reshape(g * s, j), poses.reshape(g * s, 4, 4), validate=False)  # (G S, ...)
    rot, ctr = hand.box_poses(state)  # (G S, K, 3, 3), (G S, K, 3)
    half = hand.box_half.to(dt)  # (K, 3)
    # 3. table: lowest corner = c_z - sum_i |R_zi| h_i
    low = ctr[..., 2] - (rot[..., 2, :].abs() * half).sum(-1)  # (G S, K)
    out["table_z"] = low.amin(-1).view(g, s).amin(-1)
    if samples.shape[0] == 0:
        return out
    # 4. broad phase
    box_r = half.norm(dim=-1)  # (K,)
    # object slots (G S, Q): the objects each state may meet
    if grasp_objects is None:
        slots = torch.arange(samples.shape[0], device=dev)[None].expand(g * s, -1)
    else:
        slots = grasp_objects.repeat_interleave(s, dim=0)
    valid = slots >= 0
    slots = slots.clamp_min(0)
    gap = (ctr[:, :, None] - centre[slots][:, None]).norm(dim=-1) - box_r[None, :, None] - radius[slots][:, None]
    tgt = target.repeat_interleave(s)  # (G S,)
    is_target = slots == tgt[:, None]  # (G S, Q)
    open_state = (torch.arange(g * s, device=dev) % s) <= sweep_steps  # (G S,)
    # the target only in open states; its tolerance is applied by the caller
    relevant = valid & (~is_target | (open_state[:, None] if check_target else False))  # (G S, Q)
    near = (gap < clearance) & relevant[:, None, :]  # (G S, K, Q)
    b_idx, k_idx, j_idx = near.nonzero(as_tuple=True)  # (T,)
    o_idx = slots[b_idx, j_idx]
    # 5. mid phase: sample leaves (L consecutive groups of M / L samples) whose bounding sphere
    # reaches the box (the box SDF is 1-Lipschitz); narrow phase: their samples, chunked
    o_n, m = samples.shape[:2]
    leaves = samples.view(o_n, m // leaf, leaf, 3)  # (O, L, Ls, 3)
    leaf_c = leaves.mean(2)  # (O, L, 3)
    leaf_r = (leaves - leaf_c[:, :, None]).norm(dim=-1).amax(-1)  # (O, L)
    r, c = rot[b_idx, k_idx], ctr[b_idx, k_idx]  # (T, 3, 3), (T, 3)
    lc = torch.bmm(leaf_c[o_idx], r) - (c[:, None] @ r)  # (T, L, 3) leaf centres in the box frame
    reach = box_signed_distance(lc, half[k_idx][:, None]) - leaf_r[o_idx] < clearance  # (T, L)
    t_idx, l_idx = reach.nonzero(as_tuple=True)
    sd = torch.full((len(b_idx),), float("inf"), dtype=dt, device=dev)
    for a in range(0, len(t_idx), chunk):
        tt, ll = t_idx[a : a + chunk], l_idx[a : a + chunk]
        rr, cc = r[tt], c[tt]
        # rows p @ R - c @ R = (R^T (p - c))^T: the samples in each box frame, (t, Ls, 3)
        local = torch.bmm(leaves[o_idx[tt], ll], rr) - (cc[:, None] @ rr)
        part = box_signed_distance(local, half[k_idx[tt]][:, None]).amin(-1)
        sd.scatter_reduce_(0, tt, part, "amin")
    # 6. reduce to grasps
    grasp = b_idx // s
    hit_target = is_target[b_idx, j_idx]
    out["target_depth"].scatter_reduce_(0, grasp[hit_target], (-sd[hit_target]).clamp_min(0), "amax")
    out["other_depth"].scatter_reduce_(0, grasp[~hit_target], clearance - sd[~hit_target], "amax")
    # 7. hand surface points against every non-target hull: patch sphere broad phase; mid phase:
    # the patch centre's plane bound minus the patch radius; narrow: every point, planes in the box frame
    if hull is not None and patches is not None:
        pk = patches.box  # (N,)
        pc = (rot[:, pk] @ patches.centre[None, :, :, None]).squeeze(-1) + ctr[:, pk]  # (G S, N, 3)
        gap = (pc[:, :, None] - centre[slots][:, None]).norm(dim=-1) - patches.radius[None, :, None]
        near = (gap - radius[slots][:, None] < clearance) & (valid & ~is_target)[:, None, :]  # (G S, N, Q)
        b_idx, p_idx, j_idx = near.nonzero(as_tuple=True)
        o_idx = slots[b_idx, j_idx]
        h = hull[o_idx]  # (T, F, 4)
        bound = torch.bmm(h[..., :3], pc[b_idx, p_idx][:, :, None]).squeeze(-1) - h[..., 3]  # (T, F)
        near = bound.amax(-1) - patches.radius[p_idx] < clearance
        b_idx, p_idx, o_idx, h = b_idx[near], p_idx[near], o_idx[near], h[near]
        hd = torch.empty(len(b_idx), dtype=dt, device=dev)
        step = max(1, chunk // 4)
        for a in range(0, len(b_idx), step):
            bb, pp, hh = b_idx[a : a + step], p_idx[a : a + step], h[a : a + step]
            kk = pk[pp]
            r, c = rot[bb, kk], ctr[bb, kk]  # (t, 3, 3), (t, 3)
            # planes in the box frame, homogeneous: [n^T R, n.c - d] (t, F, 4); points [x, 1]
            planes = torch.cat([torch.bmm(hh[..., :3], r), (hh[..., :3] @ c[:, :, None]) - hh[..., 3:]], -1)
            val = torch.bmm(patches.homogeneous[pp], planes.transpose(1, 2))  # (t, P, F)
            hd[a : a + step] = val.amax(-1).amin(-1)
        out["hull_depth"].scatter_reduce_(0, b_idx // s, clearance - hd, "amax")
        out["sample_depth"] = out["other_depth"]
        out["other_depth"] = torch.maximum(out["other_depth"], out["hull_depth"])
    return out
