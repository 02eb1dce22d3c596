"""Non-learned grasp planners: what a learned planner has to beat, through the same post-processing.

:class:`NormalApproachPlanner` is the textbook geometric baseline: find the table, take the points
above it, group them into objects, estimate surface normals, and bring the palm in along the
negative normal of sampled surface points, at a standoff, rolled at random about the approach axis,
then close each finger towards the typical grasp posture until it touches the observed points.
Its candidates go through
:func:`sceneleap_core.infer.planner.finish_grasps` (refine, collision filter against the cloud, the
table and the approach sweep, ranking, diverse top-k) like the learned planner's, and it returns
the same :class:`sceneleap_core.infer.GraspSet` in the cloud's frame, with timings.

Nothing about the hand's posture is invented here: the closed joints, where the grasped object sits
in the palm frame and how far the palm stands off the surface are measured on the shipped grasp
library (:func:`library_posture`, ``sceneleap_core/data/library_default``: 10,666 grasps of 240
objects that pass the lift and disturbance tests); the module constants are its figures.

Measured (lift test in MuJoCo, CPU; bench/RESULTS.md): on 32 views of 16 composed scenes of unseen
(test-split) objects, G = 32, ``bench/results.py --methods baseline``: the top-ranked grasp lifts on
22 % of the views, 16 % of all returned grasps lift (most failures: fingers closed without holding,
then a commanded grasp more than 5 mm inside an unseen part), 3.6 mm mean penetration; the filter
rejects 76 % of the 4 x G candidates, nearly all for the table. While building it (16 grasps per
view): closing until contact lifted 34 % on 8 one-box scenes (train-split boxes of the library,
4-12 cm) where the plain typical posture lifted 5 % (it closes through big boxes), 36 % vs 31 % on
12 one-object test-split scenes. Left out because they lifted less: contact against the object's
points mirrored about its vertical axis (the unseen back, by symmetry; no better), or against their
convex hull extruded to the table (15 %: the hull over-approximates the unseen parts, fingers stop
short), and backing the open hand off along the normal until it clears that hull (17 %).

Frames: the palm approaches along -z of ``palm_lower`` (``hand.approach_axis``); the fingers point
along +x of the palm frame, the thumb opposes them from -x, so a roll about z turns the closing
direction. Shapes: N points, C candidates, G grasps, J joints, K neighbours.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from sceneleap_core.hand import HandModel, pose_to_vector
from sceneleap_core.infer.planner import GraspSet, Stopwatch, finish_grasps, plan_settings
from sceneleap_core.infer.postprocess import PostConfig

# Measured on sceneleap_core/data/library_default (library_posture(), 10,666 grasps):
# the median joint angles (j0..j15) of the validated grasps: fingers flexed ~0.4-0.55 rad per joint,
# spread by abduction (index +0.15, ring -0.2), the thumb rotated into opposition (CMC 1.53 rad).
LIBRARY_CLOSED_POSE = (0.145, 0.460, 0.488, 0.500, -0.032, 0.398, 0.455, 0.495,
                       -0.195, 0.434, 0.494, 0.552, 1.526, 0.306, 0.453, 0.361)  # fmt: skip
# the median position of the grasped object's centroid in the palm frame, x and y (m): the line
# along the approach axis through it is where the palm meets the object (between fingers and thumb).
LIBRARY_GRASP_CENTRE = (0.021, -0.034)
# distance (m) along the approach, from the palm frame's origin to the object's surface on that
# line (ray cast on the library objects' meshes, 600 grasps): 10th and 90th percentiles (median 0.086).
LIBRARY_STANDOFF = (0.070, 0.104)


def library_posture(library, *, samples: int = 600, seed: int = 0) -> dict:
    """The figures behind the module constants, measured on a :class:`sceneleap_core.data.library.GraspLibrary`.

    Returns ``closed_pose`` (J,) median joints, ``grasp_centre`` (2,) median x, y of the object
    centroid in the palm frame, and ``standoff`` (10th, 50th, 90th percentile) of the distance from
    the palm origin to the object's surface along the approach line through ``grasp_centre`` (ray
    cast on ``samples`` grasps' object meshes; trimesh; skipped with ``samples=0``).
    """
    from sceneleap_core.data.objects import build_mesh

    joints = np.median(library.grasp_joints, axis=0)
    centre = np.median(np.linalg.inv(library.grasp_pose)[:, :3, 3], axis=0)[:2]
    out = {"closed_pose": joints, "grasp_centre": centre, "standoff": None}
    if samples <= 0:
        return out
    rng = np.random.default_rng(seed)
    picked = rng.choice(library.num_grasps, min(samples, library.num_grasps), replace=False)
    meshes, dist = {}, []
    for g in picked:
        oid = int(library.rest_object[library.grasp_rest[g]])
        mesh = meshes.setdefault(oid, build_mesh(library.object(oid)))
        pose = library.grasp_pose[g]
        origin = pose[:3, :3] @ np.array([centre[0], centre[1], 0.0]) + pose[:3, 3]
        hits, _, _ = mesh.ray.intersects_location([origin], [-pose[:3, 2]])
        if len(hits):
            dist.append(np.linalg.norm(hits - origin, axis=1).min())
    out["standoff"] = np.percentile(dist, [10, 50, 90]) if dist else None
    return out


##################################################################################################
# Tensor core
##################################################################################################
def estimate_normals(points: torch.Tensor, queries: torch.Tensor, k: int = 16,
                     viewpoint: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:  # fmt: skip
    """Unit surface normals (C, 3) at ``queries`` (C, 3) from their ``k`` nearest ``points`` (N, 3).

    Recipe: 1. the k nearest neighbours of each query (``chunk`` queries at a time); 2. their
    covariance (PCA); 3. the normal is the eigenvector of the smallest eigenvalue; 4. it is flipped
    to face ``viewpoint`` (3,) (the camera: the origin of a camera-frame cloud when None), the side
    the camera saw.
    """
    k = min(int(k), points.shape[0])
    out = []
    for a in range(0, len(queries), chunk):
        q = queries[a : a + chunk]
        idx = torch.cdist(q, points).topk(k, dim=-1, largest=False).indices  # (c, K)
        nb = points[idx]  # (c, K, 3)
        centred = nb - nb.mean(dim=1, keepdim=True)
        cov = centred.transpose(1, 2) @ centred / k  # (c, 3, 3)
        out.append(torch.linalg.eigh(cov.double()).eigenvectors[..., 0].to(points.dtype))  # (c, 3) smallest
    normal = torch.cat(out) if out else queries.new_zeros(0, 3)
    view = torch.zeros(3, dtype=points.dtype, device=points.device) if viewpoint is None else viewpoint
    flip = ((view - queries) * normal).sum(-1) < 0
    return torch.where(flip[:, None], -normal, normal)


def _basis(w: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) right-handed orthonormal bases whose third column is the unit ``w`` (..., 3)."""
    ref = torch.zeros_like(w)
    ref[..., 0] = 1.0
    ref = torch.where(w[..., :1].abs() > 0.9, torch.roll(ref, 1, dims=-1), ref)  # x, or y when w ~ x
    u = torch.linalg.cross(ref, w)
    u = u / u.norm(dim=-1, keepdim=True)
    return torch.stack([u, torch.linalg.cross(w, u), w], dim=-1)


def normal_approach_poses(surface: torch.Tensor, normal: torch.Tensor, roll: torch.Tensor, standoff: torch.Tensor,
                          centre: torch.Tensor, approach_axis: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Palm poses (C, 4, 4) that approach surface points (C, 3) against their unit normals (C, 3).

    Recipe: 1. rotate the palm's approach axis (``approach_axis`` (3,), palm frame: -z for LEAP)
    onto -normal: R = B_world(-n) Rz(roll) B_palm(a)^T, with B(w) a basis whose third column is w;
    ``roll`` (C,) rad turns the hand about the approach; 2. place the palm so that the approach
    line through the palm-frame point (cx, cy, 0) (``centre`` (2,), the grasp centre) meets the
    surface point, the palm origin ``standoff`` (C,) m from the surface: origin = s + standoff n -
    R (cx, cy, 0) (for an approach along -z; in general the centre is taken in the plane normal to it).
    """
    dt, dev = normal.dtype, normal.device
    a = approach_axis.to(dev, dt)
    palm = _basis(a / a.norm())  # (3, 3)
    world = _basis(-normal)  # (C, 3, 3)
    c, s = torch.cos(roll), torch.sin(roll)
    spin = torch.zeros(len(roll), 3, 3, dtype=dt, device=dev)
    spin[:, 0, 0], spin[:, 0, 1], spin[:, 1, 0], spin[:, 1, 1], spin[:, 2, 2] = c, -s, s, c, 1.0
    rot = world @ spin @ palm.T  # (C, 3, 3)
    offset = torch.cat([centre.to(dev, dt), normal.new_zeros(1)])  # (3,) palm frame
    offset = offset - (offset @ a) * a / (a @ a)  # in the plane normal to the approach
    origin = surface + standoff[:, None] * normal - rot @ offset  # (C, 3)
    pose = torch.eye(4, dtype=dt, device=dev).repeat(len(normal), 1, 1)
    pose[:, :3, :3], pose[:, :3, 3] = rot, origin
    return pose


def finger_groups(hand: HandModel) -> tuple[list[list[int]], torch.Tensor]:
    """Per finger of the description: its joint indices; and (K,) the finger index of every
    collision box (-1 for boxes on no finger: the palm)."""
    desc = hand.description
    joints, box_finger = [], torch.full((len(hand.box_names),), -1, dtype=torch.long)
    box_link = hand.box_link.cpu()
    for f, spec in enumerate(desc.fingers.values()):
        links = [desc.link_index(name) for name in spec["links"]]
        joints.append(sorted(hand.joint_names.index(desc.links[i].joint) for i in links if desc.links[i].joint))
        box_finger[torch.isin(box_link, torch.tensor(links))] = f
    return joints, box_finger.to(hand.device)


def box_clearance(hand: HandModel, state, points: torch.Tensor, reach: float = 0.01) -> torch.Tensor:
    """(B, K) smallest signed distance (m) from the points (N, 3) to each collision box of B hand
    states, capped at ``reach``: only (box, point) pairs within the box's bounding sphere + ``reach``
    are evaluated (as :func:`sceneleap_core.infer.postprocess.hand_depth`)."""
    from sceneleap_core.geometry.box_sdf import box_signed_distance

    rot, ctr = hand.box_poses(state)  # (B, K, 3, 3), (B, K, 3)
    b, k = ctr.shape[:2]
    half = hand.box_half.to(ctr)
    points = points.to(ctr)
    near = torch.cdist(ctr.reshape(b * k, 3), points) < half.norm(dim=-1).repeat(b)[:, None] + reach
    bk, n = near.nonzero(as_tuple=True)
    local = ((points[n] - ctr.reshape(b * k, 3)[bk])[:, None] @ rot.reshape(b * k, 3, 3)[bk]).squeeze(1)
    sd = box_signed_distance(local, half[bk % k]).clamp_max(reach)  # (pairs,)
    out = torch.full((b * k,), reach, dtype=ctr.dtype, device=ctr.device)
    return out.scatter_reduce(0, bk, sd, "amin").view(b, k)


@torch.no_grad()
def close_until_contact(hand: HandModel, pose: torch.Tensor, open_pose: torch.Tensor, closed_pose: torch.Tensor,
                        points: torch.Tensor, *, contact: float = 0.002, levels: int = 12,
                        bisect: int = 5) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Close every finger of C hands (palm poses (C, 4, 4)) from ``open_pose`` (J,) towards
    ``closed_pose`` (J,) until it touches the observed points (N, 3): GraspIt's auto-grasp on a
    point cloud.

    Finger f follows q_f(t) = open_f + t (closed_f - open_f), t in [0, 1]; it stops at the last t
    whose boxes stay ``contact`` m clear of every point. A finger that touches nothing closes to the
    typical posture (t = 1): what the camera did not see is not known to be in the way. Recipe:
    1. ``levels`` even steps of t, all fingers at once (fingers are independent chains, so one
    forward-kinematics pass serves all four); 2. the first step in contact brackets the stop,
    ``bisect`` halvings narrow it.

    Returns joints (C, J) and each finger's t (C, F).
    """
    fingers, box_finger = finger_groups(hand)
    dt, dev = hand.dtype, hand.device
    c, f = len(pose), len(fingers)
    pose, points = pose.to(dev, dt), points.to(dev, dt)
    open_pose, closed_pose = open_pose.to(dev, dt), closed_pose.to(dev, dt)
    finger_of_joint = torch.full((hand.dof,), -1, dtype=torch.long, device=dev)
    for i, js in enumerate(fingers):
        finger_of_joint[js] = i
    on_finger = torch.nn.functional.one_hot(box_finger.clamp_min(0), f).to(dt) * (box_finger >= 0)[:, None].to(dt)

    def joints_at(t: torch.Tensor) -> torch.Tensor:  # (C, F) -> (C, J); joints on no finger stay closed
        tj = torch.where(finger_of_joint >= 0, t[:, finger_of_joint.clamp_min(0)], torch.ones_like(t[:, :1]))
        return open_pose + tj * (closed_pose - open_pose)

    def touching(t: torch.Tensor) -> torch.Tensor:  # (C, F) bool
        state = hand(joints_at(t), pose, validate=False)
        hit = box_clearance(hand, state, points, reach=abs(contact) + 0.005) < contact  # (C, K)
        return (hit.to(dt) @ on_finger) > 0

    # 1. coarse scan: the first step at which each finger touches (levels = never)
    grid = torch.linspace(0, 1, levels, dtype=dt, device=dev)
    first = torch.full((c, f), levels, dtype=torch.long, device=dev)
    for k in range(levels - 1, -1, -1):
        first = torch.where(touching(grid[k].expand(c, f)), torch.full_like(first, k), first)
    # 2. bisection between the last free and the first touching step
    lo, hi = grid[(first - 1).clamp_min(0)], grid[first.clamp_max(levels - 1)]
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        hit = touching(mid)
        hi, lo = torch.where(hit, mid, hi), torch.where(hit, lo, mid)
    t = torch.where(first == levels, torch.ones_like(lo), torch.where(first == 0, torch.zeros_like(lo), lo))
    return joints_at(t), t


##################################################################################################
# Planner
##################################################################################################
class NormalApproachPlanner:
    """Approach along estimated surface normals and close the hand: the geometric baseline.

    Args:
        hand: the hand model (its device and dtype run everything); the bundled LEAP Hand on
            ``device`` when None.
        device: where the hand model is built when ``hand`` is None.
        num_points: points drawn from the cleaned cloud (the depth camera's budget: normals and
            clustering need the density; the filter strides them to ``post.max_points``).
        oversample: candidates per returned grasp (the filter drops some).
        min_height: points this far (m) above the support plane count as objects.
        cluster_radius: neighbours closer than this (m) belong to one object (Euclidean clustering).
        min_cluster: smaller clusters are dropped (flying pixels, noise).
        normal_k: neighbours of the PCA normal.
        max_below: normals pointing further below the horizontal than this (the sine of the angle)
            are not approached (the palm would come from under the object, into the table).
        standoff: (min, max) palm-origin-to-surface distance (m), drawn uniformly per candidate.
        grasp_centre: (x, y) palm-frame point on the approach line (m).
        closed_pose: (J,) the typical grasp posture, clamped to the limits; the pregrasp opens the
            hand (``hand.open_pose`` for the closing joints, as the lift test and the filter's sweep do).
        close: close each finger only until it touches the observed object points
            (:func:`close_until_contact`, ``contact`` m clearance); False: every grasp commands
            ``closed_pose`` (a position-controlled hand then stops where it meets the object, but
            a posture closed through a large object fails the lift test's 5 mm gate).
        post: post-processing settings (:class:`sceneleap_core.infer.postprocess.PostConfig`).
    """

    def __init__(self, hand: HandModel | None = None, *, device: str | torch.device = "cpu",
                 num_points: int = 16384, oversample: float = 4.0, min_height: float = 0.01,
                 cluster_radius: float = 0.015, min_cluster: int = 20, normal_k: int = 16, max_below: float = 0.1,
                 standoff: tuple[float, float] = LIBRARY_STANDOFF,
                 grasp_centre: tuple[float, float] = LIBRARY_GRASP_CENTRE,
                 closed_pose=LIBRARY_CLOSED_POSE, close: bool = True, contact: float = 0.002,
                 post: PostConfig | None = None):  # fmt: skip
        self.hand = hand if hand is not None else HandModel.load().to(device)
        if not 0 < standoff[0] <= standoff[1]:
            raise ValueError(f"standoff: expected 0 < min <= max, got {standoff}")
        if oversample < 1:
            raise ValueError(f"oversample: expected >= 1, got {oversample}")
        closed = torch.as_tensor(closed_pose, dtype=self.hand.dtype, device=self.hand.device)
        if closed.shape != (self.hand.dof,):
            raise ValueError(f"closed_pose: expected {self.hand.dof} joint angles, got shape {tuple(closed.shape)}")
        self.closed_pose = torch.clamp(closed, self.hand.joint_lower, self.hand.joint_upper)
        self.num_points, self.oversample = int(num_points), float(oversample)
        self.min_height, self.cluster_radius = float(min_height), float(cluster_radius)
        self.min_cluster = int(min_cluster)
        self.normal_k, self.max_below = int(normal_k), float(max_below)
        self.standoff, self.grasp_centre = tuple(map(float, standoff)), tuple(map(float, grasp_centre))
        self.close, self.contact = bool(close), float(contact)
        self.post = post or PostConfig()

    @property
    def device(self) -> torch.device:
        return self.hand.device

    def objects(self, cloud: np.ndarray, plane) -> list[np.ndarray]:
        """Point indices of each object of a cleaned cloud (N, 3): the points above the support plane
        (all of them without a plane), grouped by Euclidean clustering (``cluster_radius``), clusters
        of at least ``min_cluster`` points, largest first (one group of every point above the table
        when none qualifies)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components
        from scipy.spatial import cKDTree

        above = np.arange(len(cloud))
        if plane is not None:
            above = np.flatnonzero(plane.height(cloud) > self.min_height)
        if len(above) == 0:
            return []
        pairs = cKDTree(cloud[above]).query_pairs(self.cluster_radius, output_type="ndarray")  # (E, 2)
        graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(above), len(above)))
        _, label = connected_components(graph, directed=False)
        groups = [above[label == c] for c in np.argsort(-np.bincount(label))]
        groups = [g for g in groups if len(g) >= self.min_cluster]
        return groups or [above]

    def candidates(self, cloud: np.ndarray, plane, up: np.ndarray | None, count: int, rng: np.random.Generator,
                   viewpoint=None) -> tuple[torch.Tensor, torch.Tensor, dict]:  # fmt: skip
        """``count`` candidate grasps of a cleaned cloud (N, 3): palm poses (C, 4, 4) and joints (C, J)
        in the input frame, and what they were built from: ``surface`` (C, 3) points, their
        ``normal`` (C, 3), ``object`` (C,) cluster index and ``closure`` (C, F) how far each finger
        closed (:func:`close_until_contact`; None without ``close``).

        Recipe: 1. objects: clusters of the points above the table (:meth:`objects`); 2. a PCA
        normal at every object point (neighbours among object points, so the table does not tilt
        them at the base), facing the camera; those pointing under the horizontal are dropped;
        3. surface points drawn round-robin over the objects (a small object gets as many
        candidates as a big one), a roll and a standoff drawn per point;
        4. :func:`normal_approach_poses`; 5. the fingers close towards the typical posture until
        they touch the object points.
        """
        dev, dt = self.device, self.hand.dtype
        pts = torch.as_tensor(cloud, dtype=dt, device=dev)
        view = None if viewpoint is None else torch.as_tensor(viewpoint, dtype=dt, device=dev)
        # 1.-2. objects, normals, approachable points
        groups = self.objects(cloud, plane) or [np.arange(len(cloud))]
        members = np.concatenate(groups)
        obj = pts[torch.as_tensor(members, device=dev)]
        normals = estimate_normals(obj, obj, self.normal_k, view)
        ok = np.ones(len(members), bool)
        if up is not None:
            upv = torch.as_tensor(np.asarray(up, float) / np.linalg.norm(up), dtype=dt, device=dev)
            ok = (normals @ upv >= -self.max_below).cpu().numpy()
        start = np.cumsum([0] + [len(g) for g in groups])
        pools = [np.flatnonzero(ok[a:b]) + a for a, b in itertools.pairwise(start)]
        pools = [p for p in pools if len(p)] or [np.arange(len(members))]
        # 3. draws
        pick = np.concatenate([rng.choice(pools[i % len(pools)], 1) for i in range(count)])  # (C,) into members
        index = torch.as_tensor(pick, device=dev)
        surface, normal = obj[index], normals[index]
        roll = torch.as_tensor(rng.uniform(0, 2 * math.pi, count), dtype=dt, device=dev)
        standoff = torch.as_tensor(rng.uniform(*self.standoff, count), dtype=dt, device=dev)
        # 4. poses; 5. joints
        centre = torch.as_tensor(self.grasp_centre, dtype=dt, device=dev)
        pose = normal_approach_poses(surface, normal, roll, standoff, centre, self.hand.approach_axis)
        joints, closure = self.closed_pose.expand(count, -1).clone(), None
        if self.close:
            joints, closure = close_until_contact(self.hand, pose, self.hand.open_pose, self.closed_pose, obj,
                                                  contact=self.contact)  # fmt: skip
        object_of = np.repeat(np.arange(len(groups)), [len(g) for g in groups])[pick]
        return pose, joints, {"surface": surface, "normal": normal, "object": object_of, "closure": closure}

    @torch.no_grad()
    def plan(self, points, num_grasps: int = 32, *, seed: int | None = 0, up: np.ndarray | None = None,
             viewpoint=None, workspace=None, voxel_size: float = 0.0, oversample: float | None = None,
             refine_steps: int | None = None, filter: bool | None = None, diversity: float | None = None,
             post: PostConfig | dict | None = None) -> GraspSet:  # fmt: skip
        """One raw cloud -> up to ``num_grasps`` ranked, filtered grasps (1, G, ...) in the cloud's
        frame (the arguments of :meth:`sceneleap_core.infer.GraspPlanner.plan`, less the sampler's).

        Args:
            points: (N, 3), (N, 3 + C) or organized (H, W, 3 + C); NaN/inf rows are dropped.
            seed: seeds the point draw and every candidate (None = fresh entropy).
            up: world up in the cloud's frame (the table's RANSAC normal when None).
            viewpoint: (3,) the camera's position in the cloud's frame (normals face it); None = the
                origin (a camera-frame cloud).
            workspace, voxel_size: crop and voxel downsampling (:func:`~sceneleap_core.infer.preprocess.prepare_cloud`).
            oversample, refine_steps, filter, diversity, post: as the learned planner's.

        ``vectors`` of the result are the physical 25-vectors of the grasps (there is no network).
        Timings: ``prepare``, ``sample`` (clustering, normals, poses), ``decode`` (0), then the shared
        ``refine``, ``filter``, ``rank`` and ``total``.
        """
        from sceneleap_core.geometry.frames import estimate_up
        from sceneleap_core.infer.preprocess import prepare_cloud

        watch = Stopwatch(self.device)
        seed, cfg, count = plan_settings(self.post, self.oversample, num_grasps, seed=seed, post=post,
                                         oversample=oversample, refine_steps=refine_steps, filter=filter,
                                         diversity=diversity)  # fmt: skip
        cloud, plane, _ = prepare_cloud(points, self.num_points, seed=seed, up=up, workspace=workspace,
                                        voxel_size=voxel_size)  # fmt: skip
        if up is None:
            up = plane.normal if plane is not None else estimate_up(cloud, seed=seed)
        watch.lap("prepare")
        rng = np.random.default_rng(seed)
        pose, joints, _ = self.candidates(cloud, plane, np.asarray(up, float), count, rng, viewpoint)
        watch.lap("sample")
        watch.lap("decode")
        vectors = pose_to_vector(pose, joints)
        return finish_grasps(self.hand, cloud, plane, pose, joints, num_grasps, cfg, vectors=vectors, watch=watch)
