"""Decoded grasps -> the grasps a robot may execute: refinement, rejection, ranking, diverse top-k.

All in the cloud's frame, against what the camera saw: the observed points (the cloud the network
was fed) and the support plane (:class:`sceneleap_core.infer.preprocess.SupportPlane`), with the
hand's collision boxes (:class:`sceneleap_core.hand.HandModel`).

* :func:`collision_check`: every grasp at the states of its approach
  (:func:`sceneleap_core.data.hand_collision.sweep_states`, the data engine's and the lift test's:
  the open hand from the pregrasp, backed off along the approach axis, to the grasp pose, then the
  grasp). Rejected, first reason wins: ``nonfinite``; ``table`` (a box corner under the plane in
  any state); ``cloud`` (observed points inside the closed hand deeper than ``grasp_tolerance``:
  the closed fingers touch their object by design, hence the tolerance); ``sweep`` (points inside
  the open hand on its way in). A reason fires at ``min_hits`` points, so a few flying pixels do
  not veto a grasp.
* :func:`grasp_energy`: penetration of observed points into the hand, hand under the table,
  distance of the finger pads to the cloud, self-penetration (a weighted sum, lower is better);
  :func:`refine` takes a few Adam steps on it (palm translation and rotation, joints).
* :func:`diverse_topk`: greedy by score, skipping grasps within ``min_distance`` of one already kept.

Every step has fixed shapes except the sparse (box, point) pair searches; given a :class:`PairBudget`
those take fixed sizes too, so the whole post-processing of a plan can be captured as one CUDA graph
(:meth:`sceneleap_core.infer.GraspPlanner.plan` on the ``cuda_graph`` backend).

Shapes: G grasps, J joints, S states per grasp, N observed points, K hand boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from sceneleap_core.data.hand_collision import sweep_states
from sceneleap_core.geometry.box_depth import box_max_depth, box_point_depth, fused_available, hand_depth_stats
from sceneleap_core.geometry.box_sdf import box_signed_distance
from sceneleap_core.geometry.rotations import axis_angle_to_matrix
from sceneleap_core.infer.cuda_graph import precision_context
from sceneleap_core.infer.greedy_select import greedy_rounds

REASONS = ("nonfinite", "table", "cloud", "sweep")
CLEARANCE_STAGES = ("off", "candidates", "returned")


@dataclass
class PostConfig:
    """Post-processing settings (metres, radians).

    Attributes:
        filter: reject colliding grasps (``collision_check``).
        pregrasp_distance: back-off of the pregrasp along the approach axis (the lift test's 10 cm).
        sweep_steps: open-hand states between pregrasp and grasp.
        grasp_tolerance / sweep_tolerance: depth of an observed point inside the closed / open hand
            that counts as a hit (a box's depth is at most its half-width, ~1 cm on the fingers, so
            these stay at a few mm: camera noise, and the data engine's validated grasps penetrate
            their object by ~0 mm along the open sweep, ``data.compose.TARGET_TOLERANCE``).
        table_tolerance: how far a box corner may dip under the support plane.
        min_hits: points at which the cloud / sweep reasons fire.
        refine_steps, refine_lr: gradient refinement (0 = off).
        w_penetration, w_table, w_contact, w_self: energy weights (the ranking score is -energy).
        contact_k: finger-pad candidates averaged by the contact term.
        contact_min_height: the contact term measures distances to observed points at least this high
            above the support plane (the objects; fingers near the table are not contact).
        diversity: minimum palm distance (m) between kept grasps (0 = plain top-k); rotations count
            ``rotation_scale`` m per radian.
        max_points: observed points used by the checks (strided).
        cull: how :func:`hand_depth` finds the (box, point) pairs it measures: ``levels`` (points
            near a state's whole hand, then near a link, then near a box: three host syncs, little
            memory), ``dense`` (every box centre against every point in one pass) or ``auto``
            (levels on the CPU, dense on a GPU).
        chunk: grasps whose hand states go through the collision check at once; 0 = automatic:
            64 on the CPU, on a GPU as many as keep the dense (state box, point) distance matrix under
            ``2**28`` entries (1 GiB; at 2,048 points and 10 states, 184 grasps). Each chunk costs a
            few hundred kernel launches and a host sync (on an H200, 4 -> 2 chunks for 256 candidates
            moved the filter by ~1 ms of its ~12: bench/RESULTS.md). Finger clearance takes it as its
            grasps per pass too (0: the same automatic choice for its own matrices).
        clearance: finger clearance (:func:`finger_clearance`): ``off``, ``candidates`` (every
            candidate, before the collision filter) or ``returned`` (the ranked grasps only).
        clearance_levels: unflexing steps (rad) tried in order, the first 0; clearance_tolerance:
            depth (m) of an observed point inside a finger's boxes that still counts as clear (1 mm:
            chosen on the development set over 0 and 2 mm, bench/RESULTS.md);
            clearance_points: observed points it uses (strided).
        fused_depth: where Triton runs (CUDA), the checks' gradient-free depth reductions (the
            collision check's hits, the ranking energy's penetration, finger clearance) run as the
            fused kernels of :mod:`sceneleap_core.geometry.box_depth`: no (box, point) matrix and
            no pair search, so no budget to outgrow. False keeps the pair searches (``cull``).
    """

    filter: bool = True
    pregrasp_distance: float = 0.10
    sweep_steps: int = 8
    grasp_tolerance: float = 0.004
    sweep_tolerance: float = 0.003
    table_tolerance: float = 0.005
    min_hits: int = 3
    refine_steps: int = 0
    refine_lr: float = 2e-3
    w_penetration: float = 100.0
    w_table: float = 100.0
    w_contact: float = 1.0
    w_self: float = 10.0
    contact_k: int = 8
    contact_min_height: float = 0.01
    diversity: float = 0.02
    rotation_scale: float = 0.05
    max_points: int = 2048
    cull: str = "auto"
    chunk: int = 0
    clearance: str = "off"
    clearance_levels: tuple = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2)
    clearance_tolerance: float = 0.001
    clearance_points: int = 8192
    fused_depth: bool = True

    def __post_init__(self):
        if self.clearance not in CLEARANCE_STAGES:
            raise ValueError(f"clearance: expected one of {CLEARANCE_STAGES}, got {self.clearance!r}")

    @classmethod
    def from_dict(cls, data: dict) -> PostConfig:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"PostConfig: unknown keys {bad}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})  # JSON lists -> tuples


class PairBudget:
    """Fixed sizes for the sparse searches of the checks, so that they run without a host sync
    (inside a CUDA graph): at most ``pairs`` (box, point) pairs per pass of :func:`hand_depth` /
    :func:`box_depth` and ``points`` observed points per hand in :func:`finger_clearance`.

    A search that needs more is truncated and sets ``overflow`` (a device bool), which the caller
    reads once with the results and then redoes the work without a budget (exact). On the
    development set a pass of 640 hand states met 200-1,200 pairs, one of 256 grasps up to 1,500,
    finger clearance up to 1,825 points of 4,096; the synthetic 20k-point tabletop of
    bench/latency.py, where every candidate has a finger to open, ~4,500, 16,800 and 2,800: the
    defaults (the energy pass of 256 grasps: 32,768 pairs; clearance: the whole 4,096-point cloud)
    cover both.

    Args:
        device: where ``overflow`` lives (the checks' device).
        pairs_per_state: pairs budgeted per hand state of a pass (at least ``min_pairs`` a pass).
        points: observed points per hand in finger clearance.
    """

    def __init__(self, device, *, pairs_per_state: int = 128, min_pairs: int = 8192, points: int = 4096) -> None:
        if min(pairs_per_state, min_pairs, points) < 1:
            raise ValueError(f"PairBudget: expected sizes >= 1, got pairs_per_state={pairs_per_state}, "
                             f"min_pairs={min_pairs}, points={points}")  # fmt: skip
        self.pairs_per_state, self.min_pairs, self.points = int(pairs_per_state), int(min_pairs), int(points)
        self.overflow = torch.zeros((), dtype=torch.bool, device=device)

    def note(self, needed: torch.Tensor, budget: int) -> None:
        """Record a search that needed ``needed`` (a device scalar) of ``budget`` places."""
        self.overflow = self.overflow | (needed > budget)

    def pairs(self, near: torch.Tensor, states: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The true entries of ``near`` (R, N) as (row, column, live) of fixed length: the first
        ``max(min_pairs, pairs_per_state x states)`` found, padded with (0, 0) entries that ``live``
        (bool) marks dead."""
        size = max(self.min_pairs, self.pairs_per_state * int(states))
        flat = torch.nonzero_static(near.flatten(), size=size, fill_value=-1).squeeze(-1)
        live = flat >= 0
        # a full budget may have dropped pairs (no count of them: that would be one more pass over ``near``)
        self.overflow = self.overflow | live[-1]
        flat = flat.clamp_min(0)
        return flat // near.shape[1], flat % near.shape[1], live


def plane_tensors(plane, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The support plane's ``normal`` (3,) and ``offset`` () as tensors (no copy when they already
    are: a captured graph's inputs)."""
    return (torch.as_tensor(plane.normal, dtype=dtype, device=device),
            torch.as_tensor(plane.offset, dtype=dtype, device=device))  # fmt: skip


def device_constant(values, dtype, device) -> torch.Tensor:
    """``values`` as a tensor on ``device``, made once per (values, dtype, device) and cached, so a
    CUDA graph captured after a warm-up reads it without a host -> device copy."""
    key = (tuple(values), dtype, torch.device(device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(key[0], dtype=dtype, device=device)
    return _CONSTANTS[key]


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def within_radius(centres: torch.Tensor, radius: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """(R, N) bool: point n of ``cloud`` (N, 3) lies within ``radius`` (R,) of centre r (R, 3).

    One (R, 5) x (5, N) float32 product of the squared terms (``|c|^2 - r^2 - 2 c.p + |p|^2 < 0``,
    both sides shifted to the cloud's mean to keep them small) and one comparison with 0: on an
    H200 the dense pass of the checks is memory-bound, and ``cdist`` then ``< radius`` wrote and
    read the (R, N) matrix some six times (norms, clamp, sqrt, a broadcast comparison). The
    product runs at full float32 whatever the matmul precision setting (tf32 would blur 1 cm radii)."""
    origin = cloud.mean(0)
    c, p = centres - origin, cloud - origin
    one_c, one_p = torch.ones_like(c[:, :1]), torch.ones_like(p[:, :1])
    a = torch.cat([-2 * c, (c * c).sum(-1, keepdim=True) - radius[:, None] ** 2, one_c], 1)  # (R, 5)
    b = torch.cat([p, one_p, (p * p).sum(-1, keepdim=True)], 1)  # (N, 5)
    with precision_context("fp32"):
        return (a @ b.T) < 0


def use_fused(config: PostConfig, cloud: torch.Tensor | None) -> bool:
    """Whether the checks on ``cloud`` take the fused depth kernels (``PostConfig.fused_depth``)."""
    return config.fused_depth and cloud is not None and fused_available(cloud)


def _cloud(points: torch.Tensor, max_points: int) -> torch.Tensor:
    step = max(1, -(-points.shape[0] // max_points))
    return points[::step]


def _near_pairs(hand, ctr: torch.Tensor, cloud: torch.Tensor, reach: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(box index b * K + k, point index) of every point within a box's bounding sphere (radius
    ``reach`` (K,)) of the boxes ``ctr`` (B, K, 3), found in three levels so that no level pays
    B x K x N: points near the whole hand of a state (bounding sphere of all its boxes), then near a
    link (the sphere of the link's boxes), then near a box of that link."""
    k = ctr.shape[1]
    table, valid = hand.link_box_table, hand.link_box_valid  # (L, M) boxes of each link
    box_c = ctr[:, table]  # (B, L, M, 3)
    link_c = (box_c * valid[..., None]).sum(2) / valid.sum(1)[:, None]  # (B, L, 3)
    link_r = (((box_c - link_c[:, :, None]).norm(dim=-1) + reach[table]) * valid).amax(2)  # (B, L)
    hand_c = ctr.mean(1)  # (B, 3)
    hand_r = ((link_c - hand_c[:, None]).norm(dim=-1) + link_r).amax(1)  # (B,)
    bs, n = (torch.cdist(hand_c, cloud) < hand_r[:, None]).nonzero(as_tuple=True)  # (P,)
    near_link = (cloud[n][:, None] - link_c[bs]).norm(dim=-1) < link_r[bs]  # (P, L)
    pi, li = near_link.nonzero(as_tuple=True)
    bs, n, boxes = bs[pi], n[pi], table[li]  # (Q,), (Q,), (Q, M)
    near_box = ((cloud[n][:, None] - ctr[bs[:, None], boxes]).norm(dim=-1) < reach[boxes]) & valid[li]  # (Q, M)
    qi, mi = near_box.nonzero(as_tuple=True)
    return bs[qi] * k + boxes[qi, mi], n[qi]


CULLS = ("auto", "levels", "dense")


def _pair_depths(hand, state, cloud: torch.Tensor, cull: str,
                 budget: PairBudget | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(box index b * K + k, point index, depth) of every (state box, observed point) pair within
    the box's bounding sphere (:func:`hand_depth` says how they are found); depth 0 outside. With a
    ``budget`` the search is dense whatever ``cull`` says, of fixed size, without a host sync."""
    if cull not in CULLS:
        raise ValueError(f"cull: expected one of {CULLS}, got {cull!r}")
    rot, ctr = hand.box_poses(state)  # (B, K, 3, 3), (B, K, 3)
    b, k = ctr.shape[:2]
    half = hand.box_half.to(ctr)
    live = None
    with torch.no_grad():
        reach = half.norm(dim=-1) + 1e-6  # (K,) box bounding-sphere radii
        if budget is None and (cull == "levels" or (cull == "auto" and ctr.device.type == "cpu")):
            bk, n = _near_pairs(hand, ctr.detach(), cloud, reach)  # CPU: 3.3x faster filter (636 -> 192 ms)
        else:  # on a GPU the one dense pass is cheap and each culling level would add a host sync
            near = within_radius(ctr.detach().reshape(b * k, 3), reach.repeat(b), cloud)  # (B K, N)
            bk, n, live = (*near.nonzero(as_tuple=True), None) if budget is None else budget.pairs(near, b)
    local = ((cloud[n] - ctr.reshape(b * k, 3)[bk])[:, None] @ rot.reshape(b * k, 3, 3)[bk]).squeeze(1)
    depth = (-box_signed_distance(local, half[bk % k])).clamp_min(0)  # (pairs,)
    return bk, n, depth if live is None else depth * live


def hand_depth(hand, state, cloud: torch.Tensor, cull: str = "auto", budget: PairBudget | None = None) -> torch.Tensor:
    """Depth (B, N) of points (N, 3) inside the hand of each of B states (0 outside), as
    ``hand.penetration_depth`` but sparse: only the (box, point) pairs within a box's bounding
    sphere get the box SDF (a tabletop cloud touches few boxes; the dense form costs B N K). On a
    CPU even the distances of every point to the K = 71 box centres dominated a plan, so there the
    pairs are found hand -> link -> box (:func:`_near_pairs`); on a GPU in one pass (``cull``:
    ``auto`` chooses so, ``levels`` / ``dense`` force one; a :class:`PairBudget` forces the dense
    pass at a fixed size). Differentiable in the state."""
    b, k = state.link_rot.shape[0], hand.box_half.shape[0]
    cloud = cloud.to(state.link_trans)
    bk, n, depth = _pair_depths(hand, state, cloud, cull, budget)
    out = torch.zeros(b * cloud.shape[0], dtype=depth.dtype, device=depth.device)
    return out.scatter_reduce(0, (bk // k) * cloud.shape[0] + n, depth, "amax").view(b, cloud.shape[0])  # (B, N)


def box_depth(hand, state, cloud: torch.Tensor, cull: str = "auto", budget: PairBudget | None = None) -> torch.Tensor:
    """Depth (B, K) of the deepest observed point (N, 3) inside each collision box of each of B
    states (0 when none is inside); the pairs as in :func:`hand_depth`."""
    b, k = state.link_rot.shape[0], hand.box_half.shape[0]
    bk, _, depth = _pair_depths(hand, state, cloud.to(state.link_trans), cull, budget)
    out = torch.zeros(b * k, dtype=depth.dtype, device=depth.device)
    return out.scatter_reduce(0, bk, depth, "amax").view(b, k)


def lowest_height(hand, state, normal: torch.Tensor, offset: float | torch.Tensor) -> torch.Tensor:
    """(B,) height above the plane (``normal . x = offset``) of the lowest hand-box corner."""
    rot, ctr = hand.box_poses(state)  # (B, K, 3, 3), (B, K, 3)
    n = normal.to(ctr)
    # elementwise rather than matrix-vector products: a GPU runs those as one cuBLAS gemv per call
    along = (rot * n[:, None]).sum(-2).abs()  # (B, K, 3): |R^T n|
    low = (ctr * n).sum(-1) - (along * hand.box_half.to(ctr)).sum(-1) - offset  # (B, K)
    return low.amin(-1)


def check_chunk(chunk: int, states: int, boxes: int, points: int, device) -> int:
    """Grasps per pass of :func:`collision_check` (``PostConfig.chunk``; 0 = automatic)."""
    if chunk > 0:
        return int(chunk)
    if torch.device(device).type == "cpu":
        return 64
    return max(1, (1 << 28) // max(1, states * boxes * points))


@torch.no_grad()
def collision_check(hand, pose: torch.Tensor, joints: torch.Tensor, points: torch.Tensor | None,
                    plane=None, config: PostConfig | None = None, budget: PairBudget | None = None) -> dict:  # fmt: skip
    """Which of G grasps (pose (G, 4, 4), joints (G, J)) collide (module docstring); ``budget``:
    fixed-size pair searches (:class:`PairBudget`).

    Returns ``keep`` (G,) bool, ``reason`` (G,) int64 index into ``REASONS`` (-1 = kept),
    ``hits`` (G, S) observed points inside the hand per state, ``table`` (G,) lowest box corner above
    the plane over all states (inf without a plane), ``pregrasp_pose`` (G, 4, 4) and
    ``pregrasp_joints`` (G, J).
    """
    cfg = config or PostConfig()
    g, j = joints.shape
    dt, dev = hand.dtype, hand.device
    pose, joints = pose.to(dev, dt), joints.to(dev, dt)
    finite = torch.isfinite(pose).flatten(1).all(1) & torch.isfinite(joints).all(1)
    pose = torch.where(finite[:, None, None], pose, torch.eye(4, dtype=dt, device=dev))
    joints = torch.where(finite[:, None], joints, hand.open_pose.to(joints))
    poses, q = sweep_states(hand, pose, joints, pregrasp_distance=cfg.pregrasp_distance, sweep_steps=cfg.sweep_steps)
    s = poses.shape[1]
    flat_pose, flat_q = poses.reshape(g * s, 4, 4), q.reshape(g * s, j)
    cloud = None if points is None or len(points) == 0 else _cloud(points.to(dev, dt), cfg.max_points)
    # (no item assignment: a Python scalar set into a CUDA tensor is a host copy, which a graph refuses)
    tol = torch.cat([torch.full((s - 1,), cfg.sweep_tolerance, dtype=dt, device=dev),
                     torch.full((1,), cfg.grasp_tolerance, dtype=dt, device=dev)])  # fmt: skip
    hits = torch.zeros(g * s, dtype=torch.long, device=dev)
    table = torch.full((g * s,), float("inf"), dtype=dt, device=dev)
    normal, offset = (None, None) if plane is None else plane_tensors(plane, dt, dev)
    fused = use_fused(cfg, cloud)
    chunk = g if fused else check_chunk(cfg.chunk, s, hand.box_half.shape[0], 0 if cloud is None else len(cloud), dev)
    for a in range(0, g * s, chunk * s):
        sl = slice(a, min(a + chunk * s, g * s))
        state = hand(flat_q[sl], flat_pose[sl], validate=False)
        if fused:
            hits[sl] = hand_depth_stats(*hand.box_poses(state), hand.box_half, cloud, tol.repeat(g)[sl], fused=True)[1]
        elif cloud is not None:
            depth = hand_depth(hand, state, cloud, cfg.cull, budget)  # (b, N)
            hits[sl] = (depth > tol.repeat(g)[sl, None]).sum(-1)
        if normal is not None:
            table[sl] = lowest_height(hand, state, normal, offset)
    hits, table = hits.view(g, s), table.view(g, s).amin(-1)
    reason = torch.full((g,), -1, dtype=torch.long, device=dev)
    checks = (
        ~finite,
        table < -cfg.table_tolerance,
        hits[:, -1] >= cfg.min_hits,
        (hits[:, :-1] >= cfg.min_hits).any(-1),
    )
    for i in reversed(range(len(REASONS))):  # first reason wins
        reason = torch.where(checks[i], torch.full_like(reason, i), reason)
    if not cfg.filter:
        reason = torch.where(finite, torch.full_like(reason, -1), reason)
    return {"keep": reason < 0, "reason": reason, "hits": hits, "table": table,
            "pregrasp_pose": poses[:, 0], "pregrasp_joints": q[:, 0]}  # fmt: skip


def reason_histogram(reason: torch.Tensor) -> torch.Tensor:
    """(len(REASONS),) rejected grasps per reason, on the device (no host sync)."""
    index = torch.arange(len(REASONS), device=reason.device)
    return (reason.flatten()[:, None] == index).sum(0)


def reason_counts(reason: torch.Tensor) -> dict[str, int]:
    """``{reason: count}`` of rejected grasps (every reason present, zeros included)."""
    return counts_by_reason(reason_histogram(reason))


def counts_by_reason(histogram: torch.Tensor | list[int]) -> dict[str, int]:
    """:func:`reason_histogram` (or its values already on the host) -> ``{reason: count}`` (one host
    copy)."""
    values = histogram.tolist() if isinstance(histogram, torch.Tensor) else histogram
    return dict(zip(REASONS, (int(c) for c in values)))


def object_points(cloud: torch.Tensor, plane, min_height: float, fixed: bool = False) -> torch.Tensor:
    """The points of the cloud (N, 3) at least ``min_height`` above the support plane (the whole
    cloud when none is that high, or without a plane). ``fixed``: the same for nearest-point
    queries at a fixed shape, without a host sync: (N, 3) with the other points moved 1 km away."""
    if plane is None:
        return cloud
    normal, offset = plane_tensors(plane, cloud.dtype, cloud.device)
    above = cloud @ normal - offset > min_height  # (N,)
    if not fixed:
        return cloud[above] if above.any() else cloud
    return torch.where((above | ~above.any())[:, None], cloud, cloud + 1e3 * normal)


def grasp_energy(hand, pose: torch.Tensor, joints: torch.Tensor, points: torch.Tensor | None,
                 plane=None, config: PostConfig | None = None, budget: PairBudget | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Differentiable per-grasp energy terms (G,) and their weighted ``total`` (lower is better);
    ``budget``: fixed-size pair searches (:class:`PairBudget`)."""
    cfg = config or PostConfig()
    state = hand(joints.to(hand.dtype), pose.to(hand.dtype), validate=False)
    g = joints.shape[0]
    zero = torch.zeros(g, dtype=hand.dtype, device=hand.device)
    out = {"penetration": zero, "table": zero, "contact": zero}
    if points is not None and len(points):
        cloud = _cloud(points.to(hand.device, hand.dtype), cfg.max_points)
        if use_fused(cfg, cloud) and not state.link_rot.requires_grad:
            none = torch.zeros(g, dtype=hand.dtype, device=hand.device)
            out["penetration"] = hand_depth_stats(*hand.box_poses(state), hand.box_half, cloud, none, fused=True)[0]
        else:  # differentiable (refinement) or without the kernels
            out["penetration"] = hand_depth(hand, state, cloud, cfg.cull, budget).sum(-1)
        objects = object_points(cloud, plane, cfg.contact_min_height, fixed=budget is not None)
        dist = hand.contact_distance(state, objects[None].expand(g, -1, -1))
        out["contact"] = dist.topk(min(cfg.contact_k, dist.shape[-1]), dim=-1, largest=False).values.mean(-1)
    if plane is not None:
        out["table"] = (-lowest_height(hand, state, *plane_tensors(plane, hand.dtype, hand.device))).clamp_min(0)
    out["self"] = hand.self_penetration(state)
    out["total"] = (cfg.w_penetration * out["penetration"] + cfg.w_table * out["table"]
                    + cfg.w_contact * out["contact"] + cfg.w_self * out["self"])  # fmt: skip
    return out


def refine(hand, pose: torch.Tensor, joints: torch.Tensor, points: torch.Tensor | None, plane=None,
           config: PostConfig | None = None, steps: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """A few Adam steps on :func:`grasp_energy` over palm translation, palm rotation (axis-angle
    about the palm origin) and joints; joints stay inside their limits. -> pose (G, 4, 4), joints (G, J)."""
    cfg = config or PostConfig()
    steps = cfg.refine_steps if steps is None else steps
    if steps <= 0 or joints.shape[0] == 0:
        return pose, joints
    dt = hand.dtype
    pose0, q0 = pose.detach().to(dt), joints.detach().to(dt)
    d_t = torch.zeros(q0.shape[0], 3, dtype=dt, device=q0.device, requires_grad=True)
    d_r = torch.zeros(q0.shape[0], 3, dtype=dt, device=q0.device, requires_grad=True)
    d_q = torch.zeros_like(q0, requires_grad=True)
    opt = torch.optim.Adam([d_t, d_r, d_q], lr=cfg.refine_lr)
    lo, hi = hand.joint_lower.to(q0), hand.joint_upper.to(q0)

    def current():
        angle = d_r.norm(dim=-1).clamp_min(1e-12)
        rot = axis_angle_to_matrix(d_r / angle[:, None], angle) @ pose0[:, :3, :3]
        p = torch.cat([torch.cat([rot, (pose0[:, :3, 3] + d_t)[:, :, None]], -1), pose0[:, 3:]], 1)
        return p, torch.maximum(torch.minimum(q0 + d_q, hi), lo)

    with torch.enable_grad():
        for _ in range(steps):
            p, q = current()
            energy = grasp_energy(hand, p, q, points, plane, cfg)["total"].sum()
            opt.zero_grad()
            energy.backward()
            opt.step()
    p, q = current()
    return p.detach().to(pose.dtype), q.detach().to(joints.dtype)


def pose_distance(pose: torch.Tensor, rotation_scale: float = 0.05) -> torch.Tensor:
    """(G, G) palm distance: translation (m) + ``rotation_scale`` x geodesic angle (rad)."""
    t = torch.cdist(pose[:, :3, 3].double(), pose[:, :3, 3].double())
    r = pose[:, :3, :3].double()
    cos = ((torch.einsum("aij,bij->ab", r, r) - 1) / 2).clamp(-1, 1)
    return t + rotation_scale * torch.arccos(cos)


def diverse_topk(pose: torch.Tensor, scores: torch.Tensor, k: int, min_distance: float = 0.02,
                 rotation_scale: float = 0.05) -> torch.Tensor:  # fmt: skip
    """Indices (<= k,) of grasps, best score first, skipping any within ``min_distance``
    (:func:`pose_distance`) of one kept; the skipped fill the remaining places by score when fewer
    than k are that far apart (diversity is preferred, not bought with fewer grasps)."""
    valid = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
    order, count = diverse_select(pose, scores, valid, k, min_distance, rotation_scale)
    return order[: int(count)]


def diverse_select(pose: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, k: int,
                   min_distance: float = 0.02, rotation_scale: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """:func:`diverse_topk` of the ``valid`` (C,) grasps at fixed shapes, without a host sync.

    Greedy on the device: each of ``min(k, C)`` rounds keeps the best-scoring valid grasp not within
    ``min_distance`` of one already kept (the host loop's choice in score order); when fewer than k
    are that far apart, the valid rest follow by score, then the invalid ones (padding).

    Returns:
        (min(k, C),) distinct grasp indices and the device scalar ``count`` of valid ones among
        them, which come first: ``order[:count]`` is the selection.
    """
    c = len(scores)
    k = min(int(k), c)
    masked = torch.where(valid, scores, torch.full_like(scores, -torch.inf))
    count = valid.sum().clamp(max=k)
    if min_distance <= 0 or c <= 1:
        return _by_tier(masked, valid.long())[:k], count
    near = pose_distance(pose, rotation_scale) < min_distance  # (C, C)
    by_score = torch.argsort(masked, descending=True, stable=True)  # ties: the lower index first
    rank = torch.empty_like(by_score).scatter_(0, by_score, torch.arange(c, device=scores.device))
    picks, alive = greedy_rounds(rank, valid, near, k)  # (k,): the alive ones form a prefix
    chosen = torch.zeros(c, dtype=torch.long, device=scores.device).scatter_add_(0, picks, alive.long()) > 0
    kept = alive.sum()
    rest = _by_tier(masked, (valid & ~chosen).long() * 2 + (~valid).long())  # the chosen last: no repeats
    slot = torch.arange(k, device=scores.device)
    order = torch.where(slot < kept, picks, rest[(slot - kept).clamp(0, c - 1)])
    return order, count


def _by_tier(scores: torch.Tensor, tier: torch.Tensor) -> torch.Tensor:
    """(C,) indices sorted by ``tier`` (C,) int, highest first, and within a tier by score, best first."""
    order = torch.argsort(scores, descending=True, stable=True)
    return order[torch.argsort(tier[order], descending=True, stable=True)]


def finger_index(hand) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Finger of each collision box (K,) and of each joint (J,), -1 for the palm, and the indices
    (Kf,) of the boxes on a finger, on the hand's device: a finger is the chain of links from one of
    the description's tip frames up to (not including) the root link. Cached on the hand per device
    (a plan's checks need no host copy)."""
    cache = hand.__dict__.setdefault("_finger_index", {})
    if hand.device not in cache:
        desc = hand.description
        by_name = {link.name: link for link in desc.links}
        link_finger = [-1] * len(desc.links)
        for f, tip in enumerate(desc.tip_frames()):
            name = tip
            while name is not None and by_name[name].parent is not None:
                link_finger[desc.link_index(name)] = f
                name = by_name[name].parent
        joint_finger = [-1] * desc.dof
        for link in desc.links:
            if link.joint_type == "revolute":
                joint_finger[desc.joint_names.index(link.joint)] = link_finger[desc.link_index(link.name)]
        box_finger = torch.tensor(link_finger)[hand.box_link.cpu()]
        cache[hand.device] = (box_finger.to(hand.device), torch.tensor(joint_finger, device=hand.device),
                              torch.nonzero(box_finger >= 0).squeeze(-1).to(hand.device))  # fmt: skip
    return cache[hand.device]


def _finger_depth(
    hand,
    q: torch.Tensor,
    pose: torch.Tensor,
    cloud: torch.Tensor,
    on: torch.Tensor,
    finger: torch.Tensor,
    fingers: int,
    cull: str,
    chunk: int,
) -> torch.Tensor:
    """(A, F) deepest observed point inside each finger's boxes (``on`` (Kf,), their fingers
    ``finger`` (Kf,)), hands q (A, J) at pose (A, 4, 4)."""
    depth = torch.cat([box_depth(hand, hand(q[a : a + chunk], pose[a : a + chunk], validate=False), cloud, cull)
                       for a in range(0, len(q), chunk)])  # (A, K)  # fmt: skip
    out = torch.zeros(len(q), fingers, dtype=depth.dtype, device=depth.device)
    return out.scatter_reduce(1, finger.expand(len(q), -1), depth[:, on], "amax")


def _finger_depth_near(rot: torch.Tensor, ctr: torch.Tensor, half: torch.Tensor, near: torch.Tensor,
                       finger: torch.Tensor, fingers: int) -> torch.Tensor:  # fmt: skip
    """(A, F) deepest of each hand's own points ``near`` (A, M, 3) inside each finger's boxes, the
    boxes given: rotations (A, Kf, 3, 3), centres (A, Kf, 3), half extents (Kf, 3), their fingers
    ``finger`` (Kf,). Dense, no host sync."""
    a = ctr.shape[0]
    depth = box_point_depth(rot, ctr, half, near).amax(1)  # (A, Kf)
    out = torch.zeros(a, fingers, dtype=depth.dtype, device=depth.device)
    return out.scatter_reduce(1, finger.expand(a, -1), depth, "amax")


@torch.no_grad()
def finger_clearance(hand, pose: torch.Tensor, joints: torch.Tensor, points: torch.Tensor | None,
                     config: PostConfig | None = None, budget: PairBudget | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Unflex each finger that observed points lie inside of, just enough that they no longer do.

    Sampled grasps tend to close a finger a few millimetres into their object, and the lift test's
    first gate rejects a commanded grasp that penetrates its object by more than 5 mm
    (``bench/failure_modes.py``). For every grasp and finger this picks the first of
    ``clearance_levels`` (unflexing in radians of the finger's closing joints, along the
    description's closing direction) at which no observed point (``clearance_points`` of them,
    strided) lies deeper than ``clearance_tolerance`` inside the finger's boxes; a finger clear at
    no level takes the last. A finger's boxes move with its own joints only, so one hand state per
    grasp and level settles all its fingers.

    Two ways to the same joints, as ``cull`` (:func:`hand_depth`) chooses: ``levels`` (the CPU's
    ``auto``) computes a level only for the grasps with a finger still unsettled, each against the
    whole cloud (sparse pairs, a few host syncs per level); ``dense`` (a GPU's ``auto``) computes
    every level of every grasp in one batch against the grasp's own points (all within the reach
    of its finger boxes at any level; one host sync for their most, or none with a ``budget``:
    :class:`PairBudget` ``points`` per hand, the dense way whatever ``cull`` says). With the fused
    kernels (``fused_depth``, CUDA) the batch of every level measures each finger box against the
    whole cloud in one :func:`~sceneleap_core.geometry.box_depth.box_max_depth`, without a host
    sync or a budget. pose (G, 4, 4), joints (G, J) -> the same pose, joints (G, J)."""
    cfg = config or PostConfig()
    if cfg.cull not in CULLS:
        raise ValueError(f"cull: expected one of {CULLS}, got {cfg.cull!r}")
    if points is None or len(points) == 0 or joints.shape[0] == 0 or not cfg.clearance_levels:
        return pose, joints
    dt, dev = hand.dtype, hand.device
    g = joints.shape[0]
    levels = device_constant(cfg.clearance_levels, dt, dev)  # (L,)
    closing = hand.joint_closing.to(dev, dt)  # (J,)
    lo, hi = hand.joint_lower.to(dev, dt), hand.joint_upper.to(dev, dt)
    q0, pose_d = joints.to(dev, dt), pose.to(dev, dt)
    box_finger, joint_finger, on = finger_index(hand)  # on: (Kf,) the boxes on a finger
    fingers = len(hand.description.tip_frames())
    cloud = _cloud(points.to(dev, dt), cfg.clearance_points)

    def at(level, rows=slice(None)):  # the joints of ``rows`` unflexed by ``level``
        return torch.maximum(torch.minimum(q0[rows] - level * closing, hi), lo)

    fused = use_fused(cfg, cloud)
    if fused or budget is not None or cfg.cull == "dense" or (cfg.cull == "auto" and dev.type != "cpu"):
        q = torch.stack([at(v) for v in levels])  # (L, G, J)
        rot, ctr = hand.box_poses(hand(q.flatten(0, 1), pose_d.repeat(len(levels), 1, 1), validate=False))
        rot, ctr = (
            rot[:, on].unflatten(0, (len(levels), g)),
            ctr[:, on].unflatten(0, (len(levels), g)),
        )  # (L, G, Kf, ...)
        if fused:  # every finger box of every level against the whole cloud, one kernel
            box = box_max_depth(rot.flatten(0, 1), ctr.flatten(0, 1), hand.box_half[on], cloud, fused=True)  # (L G, Kf)
            depth = torch.zeros(len(box), fingers, dtype=box.dtype, device=dev)
            depth = depth.scatter_reduce(1, box_finger[on].expand(len(box), -1), box, "amax")
            depth = depth.unflatten(0, (len(levels), g))  # (L, G, F)
        else:
            # each hand's points: every observed point that a finger box reaches at some level (its
            # bounding sphere about the hand's centre), so the result is exact; M, the most any hand
            # has, costs the one host sync
            centre = ctr[0].mean(1)  # (G, 3)
            half = hand.box_half[on]  # (Kf, 3)
            radius = half.norm(dim=-1).to(ctr)  # (Kf,)
            reach = ((ctr - centre[None, :, None]).norm(dim=-1) + radius).amax(2).amax(0)  # (G,)
            dist = torch.cdist(centre, cloud)  # (G, N)
            needed = (dist <= reach[:, None]).sum(1).max()
            if budget is None:
                m = max(1, int(needed))
            else:
                m = min(budget.points, cloud.shape[0])
                budget.note(needed, m)
            near = cloud[dist.topk(m, largest=False).indices]  # (G, M, 3)
            # grasps per pass: ``chunk``, or as many as keep (rows, M, Kf, 3) under 2**28 entries
            rows = cfg.chunk if cfg.chunk > 0 else max(1, (1 << 28) // (m * len(on) * 3))
            depth = torch.stack([torch.cat([_finger_depth_near(rot[i, a : a + rows], ctr[i, a : a + rows], half,
                                                               near[a : a + rows], box_finger[on], fingers)
                                            for a in range(0, g, rows)]) for i in range(len(levels))])  # (L, G, F)  # fmt: skip
        clear = depth <= cfg.clearance_tolerance
        level = torch.where(clear.any(0), clear.to(torch.int8).argmax(0), len(levels) - 1)  # (G, F)
    else:
        chunk = check_chunk(cfg.chunk, 1, hand.box_half.shape[0], len(cloud), dev)
        level = torch.full((g, fingers), len(levels) - 1, dtype=torch.long, device=dev)  # (G, F)
        settled = torch.zeros(g, fingers, dtype=torch.bool, device=dev)
        for li in range(len(levels)):
            active = (~settled.all(1)).nonzero().squeeze(-1)  # grasps with a finger to settle
            if len(active) == 0:
                break
            depth = _finger_depth(
                hand, at(levels[li], active), pose_d[active], cloud, on, box_finger[on], fingers, cfg.cull, chunk
            )
            newly = (depth <= cfg.clearance_tolerance) & ~settled[active]
            level[active] = torch.where(newly, li, level[active])
            settled[active] |= newly
    alpha = torch.cat([levels[level], levels.new_zeros(g, 1)], 1)[:, joint_finger]  # (G, J); palm joints: 0
    return pose, (torch.maximum(torch.minimum(q0 - alpha * closing, hi), lo)).to(joints.dtype)
