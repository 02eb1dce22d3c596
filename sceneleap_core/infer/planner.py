"""Cloud -> grasps: the one home of sampling, decoding and mapping grasps back to the cloud's frame.

Training's validation (:meth:`GraspTrainingModule.sample_grasps`), the learning ladder
(``bench/learning.py``) and every front end call :func:`decode_grasps` / :class:`GraspPlanner`, so
what is measured is what ships. The network frame is the one the training data uses
(:func:`sceneleap_core.geometry.frames.network_frame`): camera or gravity-aligned, centred on the cloud.

Shapes: B clouds, N points, G grasps, J joints, D = 3 + J + 6.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sceneleap_core.geometry.anchors import grasp_centres, pick_scored, select_anchors
from sceneleap_core.geometry.rotations import nearest_rotation
from sceneleap_core.hand import GraspNormalizer, HandModel, anchor_absolute, vector_to_pose
from sceneleap_core.infer.postprocess import (
    PairBudget,
    PostConfig,
    collision_check,
    counts_by_reason,
    diverse_select,
    finger_clearance,
    grasp_energy,
    plane_tensors,
    reason_histogram,
    refine,
)
from sceneleap_core.models.denoisers import SceneCache
from sceneleap_core.models.objectives import check_guidance, check_temperature, initial_noise

BACKENDS = ("eager", "compile", "cuda_graph", "aoti", "onnx", "tensorrt")
CONDITIONAL_ONLY_BACKENDS = ("aoti", "onnx", "tensorrt")  # export the conditional network: guidance 1 only
log = logging.getLogger(__name__)


@dataclass
class PreparedCloud:
    """A cloud ready for the network, and what the checks need of it.

    Attributes:
        points: (1, N', 3) network-frame points; frame: (1, 4, 4) input <- network;
        up_net: (1, 3) world up in the network frame, or None;
        cloud: (N', 3) the same points in the input frame (collision checks): float64 numpy, or a
            float32 tensor on the model's device when prepared there (``prepare_on_device``);
        plane: the support plane (:class:`sceneleap_core.infer.preprocess.SupportPlane`) or None;
        up: (3,) world up in the input frame (numpy, or a device tensor), or None;
        stats: point counts after each step (input, nonfinite dropped, cropped, voxel).
    """

    points: torch.Tensor
    frame: torch.Tensor
    up_net: torch.Tensor | None
    cloud: np.ndarray | torch.Tensor
    plane: object | None
    up: np.ndarray | torch.Tensor | None
    stats: dict


@dataclass
class GraspSet:
    """Grasps for one or more clouds, in the input cloud's frame.

    Attributes:
        palm_pose: (B, G, 4, 4) pose of the palm frame.
        joints: (B, G, J) joint angles, clamped to the limits.
        vectors: (B, G, D) the normalized network output they were decoded from (before any refinement);
            a non-learned planner (:mod:`sceneleap_core.infer.baselines`) gives the grasps' physical 25-vectors.
        anchors: (B, G, 3) the anchor point of each grasp (anchored generators), else None.

    Filled by :meth:`GraspPlanner.plan` (None / empty from :meth:`GraspPlanner.sample_network`):
        scores: (B, G) ranking score (higher first): the learned ranker's logit when the planner
            has one, else -energy (:func:`sceneleap_core.infer.postprocess.grasp_energy`),
            best first.
        pregrasp_pose: (B, G, 4, 4) the palm backed off along the approach axis;
        pregrasp_joints: (B, G, J) the open hand the approach starts with.
        target: (B, G, 3) the point each grasp is meant for: its anchor, else the observed point
            nearest its grasp centre.
        joint_names, hand_name: the hand's joint order and name.
        timings: milliseconds per stage (prepare, sample, decode, refine, filter, rank, total; on the
            ``cuda_graph`` backend one ``post`` stage, the graph of filter and rank, in place of those two).
        rejected: grasps dropped per reason (:data:`sceneleap_core.infer.postprocess.REASONS`);
        candidates: how many were sampled before filtering.
        terms: per-grasp ranking evidence {name: (B, G)}: the energy terms (``penetration``,
            ``table``, ``contact``, ``self``, ``total``) and, for models with a trained anchor score,
            ``anchor_logit`` (the score of each grasp's anchor).
        score_kind: what ``scores`` are: ``"ranker"`` (the learned ranker's logit of lift success,
            fitted on lift-tested grasps) or ``"energy"`` (-energy); "" before ranking.
    """

    palm_pose: torch.Tensor
    joints: torch.Tensor
    vectors: torch.Tensor
    anchors: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    pregrasp_pose: torch.Tensor | None = None
    pregrasp_joints: torch.Tensor | None = None
    target: torch.Tensor | None = None
    joint_names: list[str] = field(default_factory=list)
    hand_name: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    candidates: int = 0
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    score_kind: str = ""

    def __len__(self) -> int:
        return int(self.palm_pose.shape[1])

    def transformed(self, transform) -> GraspSet:
        """The same grasps in another frame: ``transform`` (4, 4) rigid, new <- current (e.g. world <-
        camera, a camera pose). Moves ``palm_pose``, ``pregrasp_pose``, ``target`` and ``anchors``;
        joints, scores, the network ``vectors`` and the bookkeeping stay as they are."""
        t = torch.as_tensor(np.asarray(transform, dtype=np.float64))
        if t.shape != (4, 4) or not torch.isfinite(t).all():
            raise ValueError(f"transform: expected a finite (4, 4) matrix, got shape {tuple(t.shape)}")
        rot = t[:3, :3]
        rigid = torch.allclose(rot @ rot.T, torch.eye(3, dtype=t.dtype), atol=1e-5) and torch.det(rot) > 0
        if not rigid or not torch.allclose(t[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=t.dtype)):
            raise ValueError("transform: expected a rigid transform (proper rotation, last row 0 0 0 1), got "
                             f"{np.round(t.numpy(), 4).tolist()}")  # fmt: skip

        def pose(x):
            return None if x is None else (t.to(x.device) @ x.double()).to(x.dtype)  # (B, G, 4, 4)

        def point(x):
            if x is None:
                return None
            tt = t.to(x.device)
            return (x.double() @ tt[:3, :3].T + tt[:3, 3]).to(x.dtype)  # (B, G, 3)

        return dataclasses.replace(self, palm_pose=pose(self.palm_pose), pregrasp_pose=pose(self.pregrasp_pose),
                                   target=point(self.target), anchors=point(self.anchors))  # fmt: skip


def decode_grasps(
    vectors: torch.Tensor, normalizer: GraspNormalizer, hand: HandModel, anchors: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalized network vectors (B, G, D) -> palm poses (B, G, 4, 4) (proper rotations, network
    frame) and joints (B, G, J) clamped to the hand's limits. ``anchors`` (B, G, 3): the vectors'
    translations are relative to them (anchored generators)."""
    phys = normalizer.denormalize(vectors.float())
    if anchors is not None:
        phys = anchor_absolute(phys, anchors.float())
    pose, joints = vector_to_pose(phys, hand.dof)
    lower, upper = hand.joint_lower.to(joints), hand.joint_upper.to(joints)
    return pose, torch.maximum(torch.minimum(joints, upper), lower)


def to_input_frame(frame: torch.Tensor, palm_pose: torch.Tensor) -> torch.Tensor:
    """Network-frame palm poses (B, G, 4, 4) -> the input cloud's frame with ``frame`` (B, 4, 4) =
    input <- network (a similarity: rotation / scale + shift). Rotations are projected onto the
    nearest proper rotation (an augmentation scale or an untrained model's output cannot leak a
    reflection or a shear into the result; :func:`nearest_rotation`, no host sync on a GPU)."""
    lin = frame[:, None, :3, :3].to(palm_pose)  # (B, 1, 3, 3)
    rot = lin @ palm_pose[..., :3, :3]
    out = palm_pose.clone()
    out[..., :3, :3] = nearest_rotation(rot.double()).to(palm_pose)
    out[..., :3, 3] = (lin @ palm_pose[..., :3, 3:4]).squeeze(-1) + frame[:, None, :3, 3].to(palm_pose)
    return out


def draw_scored_anchors(model, points: torch.Tensor, up: torch.Tensor, pool_uniforms: torch.Tensor,
                        gumbel_uniforms: torch.Tensor, scene, num: int) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """An anchored generator's anchors for clouds (B, N, 3): a pool of P points drawn above the
    support plane (:func:`select_anchors` with ``pool_uniforms`` (B, P)), scored by the model, and
    ``num`` of them kept by Gumbel top-k (:func:`pick_scored` with ``gumbel_uniforms`` (B, P)).
    ``up``: (B, 3) or (3,) world up in the clouds' frame; ``scene``: the encoder's (tokens, xyz) or
    None. A pure function of tensors (the draws come in), so one CUDA graph holds it.

    Returns the kept anchors (B, num, 3), their anchor-encoder features (B, num, D0) (the scene
    cache takes them instead of encoding the anchors again) and their score logits (B, num)."""
    pool = select_anchors(points, up, pool_uniforms.shape[1], uniforms=pool_uniforms)
    logits, features = model.score_anchors(points, pool, scene, return_features=True)  # (B, P), (B, P, D0)
    kept, idx = pick_scored(pool, logits, num, uniforms=gumbel_uniforms, return_index=True)
    features = torch.gather(features, 1, idx[..., None].expand(-1, -1, features.shape[-1]))
    return kept, features, torch.gather(logits, 1, idx)


class Stopwatch:
    """Milliseconds per stage of a plan: ``lap(name)`` closes a stage, ``total()`` adds ``total``
    (host wall time since the start) and returns the dict.

    On CUDA a lap records an event on the current stream instead of synchronizing: a sync per stage
    left the GPU idle while the host prepared the next stage's launches (the decode stage was host
    time alone). A stage's time is then the GPU timeline between its events, which counts GPU work
    where it runs and host work where the GPU waits for it; ``total()`` reads them all, once. Off
    CUDA, host time per stage."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.start = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}
        self._events: list[tuple[str, torch.cuda.Event]] = []
        self._first = self._record() if self.cuda else None

    @staticmethod
    def _record() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def lap(self, name: str) -> None:
        if self.cuda:
            self._events.append((name, self._record()))
            return
        now = time.perf_counter()
        self.timings[name] = 1e3 * (now - self.last)
        self.last = now

    def total(self) -> dict[str, float]:
        if self._events:
            self._events[-1][1].synchronize()
            before = self._first
            for name, event in self._events:
                self.timings[name] = before.elapsed_time(event)
                before = event
            self._first, self._events = self._events[-1][1], []
        self.timings["total"] = 1e3 * (time.perf_counter() - self.start)
        return self.timings


def plan_settings(default_post: PostConfig, default_oversample: float, num_grasps: int, *, seed: int | None,
                  post: PostConfig | dict | None, oversample: float | None, refine_steps: int | None,
                  filter: bool | None, diversity: float | None) -> tuple[int, PostConfig, int]:  # fmt: skip
    """The arguments every planner's ``plan`` shares -> (seed, post-processing config, candidates):
    a fresh seed when None; ``post`` (or the planner's) with the ``refine_steps`` / ``filter`` /
    ``diversity`` overrides; ``ceil(oversample x num_grasps)`` candidates. ValueError for
    ``num_grasps < 1`` or ``oversample < 1``."""
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    cfg = default_post if post is None else (PostConfig.from_dict(post) if isinstance(post, dict) else post)
    changes = {"refine_steps": refine_steps, "filter": filter, "diversity": diversity}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    if num_grasps < 1:
        raise ValueError(f"num_grasps: expected >= 1, got {num_grasps}")
    over = default_oversample if oversample is None else float(oversample)
    if over < 1:
        raise ValueError(f"oversample: expected >= 1, got {over}")
    return seed, cfg, int(np.ceil(over * num_grasps))


def geometry_terms(hand: HandModel, pose: torch.Tensor, check: dict, plane) -> dict[str, torch.Tensor]:
    """Per-candidate evidence (C,) the collision check already measured, plus the palm's placement:
    ``hits_grasp`` / ``hits_sweep`` (observed points inside the closed hand / the most inside the open
    hand along the approach), ``clearance`` (lowest hand point above the table, m; 0 without one),
    ``palm_height`` (palm origin above the table, m) and ``approach_up`` (cosine between the
    approach axis and world up: -1 = from straight above)."""
    hits = check["hits"].to(pose.dtype)  # (C, S): sweep states, then the grasp
    out = {"hits_grasp": hits[:, -1], "hits_sweep": hits[:, :-1].amax(-1) if hits.shape[1] > 1 else hits[:, 0] * 0}
    zero = torch.zeros(len(pose), dtype=pose.dtype, device=pose.device)
    if plane is None:
        return {**out, "clearance": zero, "palm_height": zero, "approach_up": zero}
    normal, offset = plane_tensors(plane, pose.dtype, pose.device)
    approach = pose[:, :3, :3] @ hand.approach_axis.to(pose)  # (C, 3)
    return {**out, "clearance": check["table"].to(pose.dtype),
            "palm_height": pose[:, :3, 3] @ normal - offset, "approach_up": approach @ normal}  # fmt: skip


def select_grasps(hand: HandModel, cloud: torch.Tensor, plane, pose: torch.Tensor, joints: torch.Tensor,
                  num_grasps: int, config: PostConfig, *, anchors: torch.Tensor | None = None,
                  terms: dict[str, torch.Tensor] | None = None, ranker=None, up: torch.Tensor | None = None,
                  budget: PairBudget | None = None, lap=None) -> dict:  # fmt: skip
    """The work of :func:`finish_grasps` after refinement, on the hand's device: C candidates ->
    which to return, in order, and everything returned about them.

    Without a ``budget`` the kept candidates are found with a host sync and only they are scored.
    With a :class:`~sceneleap_core.infer.postprocess.PairBudget` every shape is fixed and nothing
    syncs with the host: all C are scored (the rejected ones masked), so the call can be captured
    as one CUDA graph (:class:`sceneleap_core.infer.cuda_graph.GraphedPost`); both give the same
    grasps.

    Args:
        cloud: (N, 3) observed points; plane: the support plane (numpy or tensor fields) or None.
        pose: (C, 4, 4), joints: (C, J) candidates; anchors: (C, 3) or None; terms: {name: (C,)};
        ranker, up (3,): as :func:`finish_grasps`; lap: called with each finished stage's name.

    Returns:
        ``order`` (min(G, C),) candidate indices, best first, and ``count`` (device scalar): the
        first ``count`` are the selection; ``pose`` / ``joints`` (C, ...) with the returned finger
        clearance applied to the ordered rows; ``scores`` (C,) (-inf where rejected);
        ``pregrasp_pose`` (C, 4, 4), ``pregrasp_joints`` (C, J); ``target`` (min(G, C), 3);
        ``terms`` {name: (C,)} (energy: 0 where rejected); ``rejected`` (len(REASONS),) counts;
        ``overflow``: the budget's flag (False without one).
    """
    c = len(pose)
    check = collision_check(hand, pose, joints, cloud, plane, config, budget)
    keep = check["keep"]
    if lap is not None:
        lap("filter")
    rows = torch.arange(c, device=pose.device) if budget is not None else keep.nonzero().squeeze(-1)
    with torch.no_grad():
        energy = grasp_energy(hand, pose[rows], joints[rows], cloud, plane, config, budget)
    extra = {**geometry_terms(hand, pose, check, plane), **(terms or {})}
    if ranker is not None:  # every term of the scored candidates (and, for a critic, the points under each hand)
        row_terms = {**{k: v[rows] for k, v in extra.items()}, **energy}
        row_scores = ranker.score_grasps(hand=hand, cloud=cloud, pose=pose[rows], joints=joints[rows], up=up,
                                         terms=row_terms).to(energy["total"].dtype)  # fmt: skip
    else:
        row_scores = -energy["total"]
    scores = torch.full((c,), -torch.inf, dtype=row_scores.dtype, device=pose.device).index_copy(0, rows, row_scores)
    order, count = diverse_select(pose, scores, keep, num_grasps, config.diversity, config.rotation_scale)
    pregrasp_joints = check["pregrasp_joints"]
    if config.clearance == "returned":  # the ranked grasps only: the ranker judged them as sampled
        cleared = finger_clearance(hand, pose[order], joints[order], cloud, config, budget)[1]
        joints = joints.index_copy(0, order, cleared)
        pregrasp_joints = pregrasp_joints.index_copy(0, order, hand.open_joints(cleared))  # the open hand as returned
    if anchors is not None:
        target = anchors[order]
    else:
        centres = grasp_centres(hand, pose[order], joints[order])
        target = cloud[torch.cdist(centres, cloud).argmin(-1)] if len(order) else centres
    ranked = {name: torch.zeros(c, dtype=v.dtype, device=v.device).index_copy(0, rows, v) for name, v in energy.items()}
    overflow = budget.overflow if budget is not None else torch.zeros((), dtype=torch.bool, device=pose.device)
    return {"order": order, "count": count, "pose": pose, "joints": joints, "scores": scores,
            "pregrasp_pose": check["pregrasp_pose"], "pregrasp_joints": pregrasp_joints, "target": target,
            "terms": {**ranked, **extra}, "rejected": reason_histogram(check["reason"]), "overflow": overflow}  # fmt: skip


def finish_grasps(hand: HandModel, cloud: np.ndarray | torch.Tensor, plane, pose: torch.Tensor, joints: torch.Tensor,
                  num_grasps: int, config: PostConfig, *, vectors: torch.Tensor, anchors: torch.Tensor | None = None,
                  watch: Stopwatch | None = None, terms: dict[str, torch.Tensor] | None = None,
                  ranker=None, up: np.ndarray | torch.Tensor | None = None, graphs=None) -> GraspSet:  # fmt: skip
    """Candidate grasps of one cloud -> the ranked :class:`GraspSet` (1, G, ...): the post-processing
    every planner shares (the learned :meth:`GraspPlanner.plan` and the non-learned baselines of
    :mod:`sceneleap_core.infer.baselines`), so they are filtered and ranked alike.

    Recipe: refine (``config.refine_steps``) and finger clearance (``config.clearance``: each
    finger unflexed out of the observed points, :func:`finger_clearance`; both timed as ``refine``)
    -> reject collisions with the cloud / table / approach
    sweep (:func:`collision_check`) -> score (-:func:`grasp_energy`, or the logit of ``ranker``: a
    :class:`sceneleap_core.infer.ranker.GraspRanker` over every term, or a
    :class:`sceneleap_core.infer.critic.GraspCritic` that also reads the points under each hand)
    -> diverse top-k (:func:`select_grasps`).

    Args:
        hand: the hand model (its device and dtype run the checks).
        cloud: (N, 3) observed points in the input frame; plane: the support plane or None.
        pose: (C, 4, 4) candidate palm poses and joints: (C, J), both in the input frame.
        num_grasps: G, grasps kept at most.
        config: post-processing settings.
        vectors: (C, D) what the candidates were decoded from (kept rows are returned).
        anchors: (C, 3) anchor points in the input frame, or None (targets: the observed point
            nearest each grasp centre).
        watch: the plan's stopwatch (its earlier stages kept; ``refine``, ``filter``, ``rank`` and
            ``total`` are added, or ``refine``, ``post`` and ``total`` with ``graphs``), or None (a new one).
        terms: more per-candidate ranking evidence {name: (C,)} (e.g. the anchor score), returned
            in ``GraspSet.terms`` beside the energy terms.
        ranker: anything with ``score_grasps(hand=, cloud=, pose=, joints=, up=, terms=) -> (K,)``
            logits of the K kept candidates, or None (rank by -energy).
        up: (3,) world up in the input frame for the ranker (None: the plane's normal, else +z).
        graphs: a :class:`sceneleap_core.infer.cuda_graph.GraphedPost` that runs :func:`select_grasps`
            as one CUDA graph (eagerly off CUDA; its ``post`` stage times filter and rank together),
            or None. A plan whose pair searches outgrow its budget is redone without one.
    """
    device = hand.device
    watch = Stopwatch(device) if watch is None else watch
    dt, f32 = hand.dtype, torch.float32
    cloud_t = torch.as_tensor(cloud, dtype=dt, device=device)
    pose, joints = refine(hand, pose.to(device, dt), joints.to(device, dt), cloud_t, plane, config)
    if config.clearance == "candidates":
        pose, joints = finger_clearance(hand, pose, joints, cloud_t, config)
    watch.lap("refine")
    if up is None and plane is not None:
        up = plane.normal
    up_t = None if up is None or ranker is None else torch.as_tensor(up, dtype=dt, device=device)
    anchors = None if anchors is None else anchors.to(device)
    terms = {k: v.to(device) for k, v in (terms or {}).items()}
    args = (hand, cloud_t, plane, pose, joints, num_grasps, config)
    kwargs = {"anchors": anchors, "terms": terms, "ranker": ranker, "up": up_t}

    def summary(result: dict) -> list[int]:  # [overflow, count, rejected per reason...]: one host copy
        parts = (result["overflow"], result["count"], result["rejected"])
        return torch.cat([x.reshape(-1).to(device=device, dtype=torch.long) for x in parts]).tolist()

    out = graphs(*args, **kwargs) if graphs is not None else None
    numbers = None if out is None else summary(out)
    if numbers is not None and numbers[0]:  # a search outgrew its budget: redo it exactly
        log.info("post-processing: a pair search outgrew its budget; redoing the plan's checks without one")
        out = None
    graphed = out is not None
    if graphed:
        watch.lap("post")
    else:
        out = select_grasps(*args, **kwargs, lap=watch.lap)
        numbers = summary(out)
    order = out["order"][: numbers[1]]
    picked_terms = {name: value[order][None].float() for name, value in out["terms"].items()}
    rejected = counts_by_reason(numbers[2:])
    if not graphed:
        watch.lap("rank")

    def pick(x):
        return None if x is None else x.to(device)[order][None]

    return GraspSet(
        palm_pose=pick(out["pose"]).to(f32), joints=pick(out["joints"]).to(f32), vectors=pick(vectors),
        anchors=pick(anchors), scores=pick(out["scores"]).to(f32), pregrasp_pose=pick(out["pregrasp_pose"]).to(f32),
        pregrasp_joints=pick(out["pregrasp_joints"]).to(f32), target=out["target"][: len(order)][None].to(f32),
        joint_names=list(hand.joint_names), hand_name=hand.description.name, timings=watch.total(),
        rejected=rejected, candidates=len(pose), terms=picked_terms,
        score_kind="ranker" if ranker is not None else "energy",
    )  # fmt: skip


class GraspPlanner:
    """A trained generator + its normalizer -> grasps for raw clouds.

    Args:
        model: a :class:`sceneleap_core.models.GraspGenerator` (eval mode).
        normalizer: the checkpoint's grasp statistics.
        hand: the hand model (joint limits, DoF); loaded on the model's device when None.
        num_points: points fed to the network (subsampled with a fixed seed; with replacement when fewer).
        center: cloud centring used in training (``"mean"``, ``"bbox"`` or ``"none"``).
        frame: network frame used in training (``"camera"`` or ``"gravity"``).
        anchor_pool: anchored generators draw ``anchor_pool x G`` candidate anchors above the support
            plane and keep G by their learned score (Gumbel top-k); 1 keeps G drawn uniformly. On the
            CPU fit rung after 3,000 steps the score lifted 45 % vs 25 % uniform (after 1,500 steps,
            with the score head still untrained, 6 % vs 16 %): bench/RESULTS.md. None = 4 when the
            model trained its score (``anchor_score_weight > 0``), else 1.
        voxel_size: voxel downsampling (m) before sampling ``num_points``; 0 (default) = off, as
            the training clouds were not voxelized (it evens out the camera's density).
        oversample: candidates sampled per grasp asked of :meth:`plan` (filtering drops some).
        post: post-processing settings (:class:`sceneleap_core.infer.postprocess.PostConfig`).
        backend: the network's runtime (``BACKENDS``): ``eager`` (the model's own ``sample``);
            ``compile`` (``torch.compile`` of the denoiser, dynamic shapes; the encoder runs once per
            cloud, eager); ``aoti`` (the denoiser step as a ``torch.export`` + AOTInductor package
            compiled into ``onnx_dir``, :mod:`sceneleap_core.infer.aoti`; guidance 1, one cloud);
            ``cuda_graph`` (the whole reverse process of a noise-free sampler captured as one CUDA
            graph per sampler / steps / shape, fp32, :class:`sceneleap_core.infer.cuda_graph.GraphedLoop`;
            for DDPM one denoiser step per shape, :class:`~sceneleap_core.infer.cuda_graph.GraphedDenoiser`;
            the scene encoder, the anchor score and the scene cache as graphs of their own,
            ``GraphedCall``; and the filter and ranking as one more, ``GraphedPost``; eager off
            CUDA); ``onnx`` (encoder + one denoiser step exported to ``onnx_dir``, a temp
            folder when None, run by ONNX Runtime; guidance 1 only); ``tensorrt`` (engines built
            from that ONNX, :class:`sceneleap_core.infer.export.TrtNetworks`; needs TensorRT and CUDA).
            The scheduler loop stays in Python for every other backend.
        ranker: a :class:`sceneleap_core.infer.ranker.GraspRanker` that orders the filtered grasps
            (else -energy); :meth:`from_pretrained` loads the model directory's ``ranker.json``.
        graph_precision: the ``cuda_graph`` backend's network arithmetic: the denoiser, the scene
            encoder, the anchor score and the scene cache
            (:func:`sceneleap_core.infer.cuda_graph.precision_context`): ``tf32`` (default: float32
            matmuls on the tensor cores), ``fp32`` (equal to eager to 1e-4) or ``bf16`` (autocast;
            the bundled model trained in bf16). The geometry (decoding, checks) stays float32.
            On one H200 (bundled model, critic, 8x, DDIM 10, 32 unseen-object views x 32 grasps)
            fp32 / tf32 / bf16 lifted 82.8 / 82.7 / 83.1 % of grasps (top-1 90.6 / 90.6 / 93.8 %)
            with sampling at 17.8 / 14.2 / 15.3 ms: the same seed takes another trajectory (palms
            13-15 cm apart), not a worse one (bench/RESULTS.md).
        temperature: scale of the sampler's initial noise
            (:func:`sceneleap_core.models.objectives.initial_noise`; 1 = the trained prior, below 1
            sharper samples); :meth:`from_pretrained` reads ``extra.planner.temperature``.
        prepare_on_device: run :meth:`prepare` with torch on the model's device
            (:class:`sceneleap_core.infer.device_prepare.DevicePreparer`: fixed shapes, one host
            sync, its own random draws; a CUDA graph per padded size on the ``cuda_graph`` backend)
            instead of numpy on the host; None (default): on CUDA, unless the planner voxelizes (no
            fixed shape). On one H200 host the numpy steps took ~5 ms.
        graph_post: on the ``cuda_graph`` backend, run the filter and ranking as one CUDA graph
            (:class:`sceneleap_core.infer.cuda_graph.GraphedPost`, the same grasps); False keeps them
            eager (bench comparisons).
        graph_compile: on the ``cuda_graph`` backend, capture ``torch.compile``'d functions: the
            denoiser in the reverse process, the anchor draw and score, and the post-processing
            (fused kernels; the first plan of each shape compiles them, tens of seconds; nothing is
            compiled on the CPU; a compilation that fails warns once and runs uncompiled). On one
            H200 (bf16, critic, 8x, DDIM 10, 20k points) the plan 17.6 -> 10.4 ms p50 at the same
            lift (bench/RESULTS.md).
        guidance: the classifier-free guidance scale ``plan`` and ``sample_network`` use unless
            given (1 = conditional only, one network pass; above 1 a second, unconditional pass per
            step); :meth:`from_pretrained` reads ``extra.planner.guidance``.
    """

    def __init__(self, model, normalizer: GraspNormalizer, hand: HandModel | None = None, *,
                 num_points: int = 4096, center: str = "mean", frame: str = "camera", anchor_pool: int | None = None,
                 voxel_size: float = 0.0, oversample: float = 2.0, post: PostConfig | None = None,
                 backend: str = "eager", onnx_dir=None, ranker=None, graph_precision: str = "tf32",
                 temperature: float = 1.0, guidance: float = 1.0, graph_post: bool = True,
                 graph_compile: bool = False, prepare_on_device: bool | None = None):  # fmt: skip
        self.model, self.normalizer = model, normalizer
        device = next(model.parameters()).device
        self.hand = hand if hand is not None else HandModel.load().to(device)
        self.num_points, self.center, self.frame = int(num_points), center, frame
        if anchor_pool is None:
            cfg = getattr(model, "config", None)
            anchor_pool = 4 if getattr(cfg, "anchor_score_weight", 0.0) > 0 else 1
        if int(anchor_pool) < 1:
            raise ValueError(f"anchor_pool: expected >= 1, got {anchor_pool}")
        self.anchor_pool = int(anchor_pool)
        self.voxel_size = float(voxel_size)
        self.oversample = float(oversample)
        self.temperature = check_temperature(temperature)
        self.guidance = check_guidance(guidance)
        self.post = post or PostConfig()
        if ranker is not None and "anchor_logit" in ranker.features and not (
            getattr(model, "anchored", False) and self.anchor_pool > 1
            and getattr(getattr(model, "config", None), "anchor_score_weight", 0.0) > 0
        ):  # fmt: skip
            raise ValueError("ranker: it reads the anchor score, which this model / anchor_pool does not give")
        self.ranker = ranker
        from sceneleap_core.infer.cuda_graph import PRECISIONS

        if graph_precision not in PRECISIONS:
            raise ValueError(f"graph_precision: expected one of {PRECISIONS}, got {graph_precision!r}")
        self.graph_precision, self.graph_post, self.graph_compile = graph_precision, bool(graph_post), bool(graph_compile)
        self.prepare_on_device, self._preparer = prepare_on_device, None
        self._setup_backend(backend, onnx_dir)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _setup_backend(self, backend: str, onnx_dir) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.backend, self._networks, self._graphed, self._loop, self._post = backend, None, None, None, None
        if backend == "compile":
            self._denoiser = torch.compile(self.model.denoiser, dynamic=True)
        elif backend == "cuda_graph":
            from sceneleap_core.infer.cuda_graph import (
                CompiledOrPlain,
                GraphedCall,
                GraphedDenoiser,
                GraphedLoop,
                GraphedPost,
                in_precision,
            )

            self._denoiser = GraphedDenoiser(self.model.denoiser, precision=self.graph_precision)
            m, hand, norm, prec = self.model, self.hand, self.normalizer, self.graph_precision
            self._loop = GraphedLoop(m.denoiser, m.objective, m.make_scheduler, precision=prec,
                                     compile=self.graph_compile)  # fmt: skip
            pool = self.anchor_pool
            draw = CompiledOrPlain(  # the anchor score: a PointNet over 128 neighbours of each pool anchor
                lambda p, up, u, g, tok, xyz: draw_scored_anchors(m, p, up, u, g, (tok, xyz), u.shape[1] // pool),
                "the anchor score", compile=self.graph_compile)  # fmt: skip
            self._graphed = {  # the per-cloud work around the loop, captured too; the networks at `prec`
                "encode": GraphedCall(in_precision(lambda p: m.encoder(p, deterministic=True), prec), "scene encoder"),
                "anchors": GraphedCall(in_precision(draw, prec), "anchor draw and score"),
                "cache": GraphedCall(in_precision(
                    lambda p, tok, xyz, anchors=None, features=None: m._cache(p, tok, xyz, None, anchors, features).to_tuple(),
                    prec), "scene cache"),
                "decode": GraphedCall(lambda z, *anchors: decode_grasps(z, norm, hand, *anchors), "decoding"),
                "to_input": GraphedCall(to_input_frame, "frame change"),
            }  # fmt: skip
            # filter and rank as one graph (select_grasps)
            self._post = GraphedPost(compile=self.graph_compile) if self.graph_post else None
        elif backend == "aoti":
            import tempfile

            from sceneleap_core.infer.aoti import AotiDenoiser, export_aoti

            if onnx_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="sceneleap_aoti_")
                onnx_dir = self._tmp.name
            export_aoti(self.model, onnx_dir, device=self.device, num_points=self.num_points)  # reused if weights match
            self._denoiser = AotiDenoiser(onnx_dir)
        elif backend in ("onnx", "tensorrt"):
            import tempfile

            from sceneleap_core.infer.export import OnnxNetworks, TrtNetworks, export_onnx

            if onnx_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="sceneleap_onnx_")
                onnx_dir = self._tmp.name
            export_onnx(self.model, onnx_dir, num_points=self.num_points)
            self._networks = OnnxNetworks(onnx_dir) if backend == "onnx" else TrtNetworks(onnx_dir)
            self._denoiser = self._networks.denoise

    @torch.no_grad()
    def _sample_backend(self, points, num_grasps, steps, sampler, guidance_scale, generator, anchors, scene=None,
                        temperature: float = 1.0, anchor_features: torch.Tensor | None = None):  # fmt: skip
        """The model's ``sample`` with the network calls of the backend (compiled / ONNX / TensorRT);
        ``scene``: the torch encoder's (tokens, xyz) of ``points`` if already computed;
        ``anchor_features``: the anchor encoder's features of ``anchors`` if already computed."""
        from sceneleap_core.models.denoising_loop import DenoisingLoop

        m = self.model
        if anchors is not None:
            num_grasps = anchors.shape[1]
        if num_grasps < 1 or steps < 1:
            raise ValueError(f"num_grasps/steps: expected >= 1, got {num_grasps}/{steps}")
        scheduler = m.make_scheduler(sampler)
        null = None
        if self.backend == "aoti" and (guidance_scale != 1.0 or points.shape[0] != 1):
            raise ValueError(f"the aoti backend compiles the conditional step for one cloud: expected guidance 1.0 "
                             f"and 1 cloud, got {guidance_scale} and {points.shape[0]}")  # fmt: skip
        if self._networks is None:
            tokens, xyz = self._encode(points) if scene is None else scene
            cache = self._scene_cache(points, tokens, xyz, anchors, anchor_features)
            if guidance_scale != 1.0:
                null = m._cache(points, tokens, xyz, True, anchors)
        else:
            if guidance_scale != 1.0:
                raise ValueError(f"guidance_scale: the {self.backend} backend exports the conditional network "
                                 f"only; expected 1.0, got {guidance_scale}")  # fmt: skip
            if points.shape[0] != 1:
                raise ValueError(f"points: the {self.backend} backend takes one cloud, got {points.shape[0]}")
            cache = self._networks.encode(points, anchors)
        x_init = initial_noise(m.objective, (points.shape[0], num_grasps, m.grasp_dim), cache.cond, generator,
                               temperature)  # fmt: skip
        if self._loop is not None and scheduler is not None and not scheduler.draws_noise:
            return self._loop(sampler or m.default_sampler, steps, cache, x_init, guidance_scale=guidance_scale,
                              null_cache=null)  # fmt: skip
        loop = DenoisingLoop(self._denoiser, m.objective, scheduler, guidance_scale=guidance_scale)
        return loop(cache, x_init, num_inference_steps=steps, null_cache=null, generator=generator)

    def _encode(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The scene encoder's (tokens (B, M, C), xyz (B, M, 3)) of clouds (B, N, 3) (graphed on ``cuda_graph``)."""
        if self._graphed is not None:
            return self._graphed["encode"](points)
        return self.model.encoder(points, deterministic=True)

    def _draw_anchors(self, points, up, pool_uniforms, gumbel_uniforms, scene) -> tuple[torch.Tensor, ...]:
        """:func:`draw_scored_anchors` with this planner's pool (graphed on ``cuda_graph``, with
        the scene): the kept anchors (B, G, 3), their features (B, G, D0) and logits (B, G)."""
        num = pool_uniforms.shape[1] // self.anchor_pool
        if self._graphed is not None and scene is not None:
            return self._graphed["anchors"](points, up, pool_uniforms, gumbel_uniforms, *scene)
        return draw_scored_anchors(self.model, points, up, pool_uniforms, gumbel_uniforms, scene, num)

    def _decode(self, vectors: torch.Tensor, anchors: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`decode_grasps` (graphed on ``cuda_graph``)."""
        extra = () if anchors is None else (anchors,)
        if self._graphed is not None:
            return self._graphed["decode"](vectors, *extra)
        return decode_grasps(vectors, self.normalizer, self.hand, *extra)

    def _to_input(self, frame: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """:func:`to_input_frame` (graphed on ``cuda_graph``)."""
        return self._graphed["to_input"](frame, pose) if self._graphed is not None else to_input_frame(frame, pose)

    def _scene_cache(self, points, tokens, xyz, anchors, anchor_features=None):
        """The conditional :class:`SceneCache` the denoiser reads every step (``anchor_features``:
        the anchors' encoder features when the scored pool gave them)."""
        if self._graphed is None:
            return self.model._cache(points, tokens, xyz, None, anchors, anchor_features)
        extra = () if anchors is None else (anchors,) if anchor_features is None else (anchors, anchor_features)
        return SceneCache.from_tuple(self._graphed["cache"](points, tokens, xyz, *extra))

    @classmethod
    def from_pretrained(cls, directory, *, device: str = "cpu", backend: str = "eager", **kwargs) -> GraspPlanner:
        """Load a ``save_pretrained`` directory (safetensors + JSON); its ``extra`` data settings
        (``num_points``, ``center``, ``frame``) and planner defaults (``extra.planner.oversample``,
        ``temperature``, ``guidance`` and ``post`` (PostConfig fields), recorded by ``sceneleap model
        pack --oversample`` / ``--temperature`` / ``--guidance`` / ``--post``) are used unless given
        (a recorded guidance other than 1 is dropped, with a warning, on the backends that export
        the conditional network only: aoti, onnx, tensorrt), and its learned ranking unless
        ``ranker`` is given (None = rank by -energy): the grasp critic (``critic.json`` +
        ``critic.safetensors``) when present, else the logistic ``ranker.json``."""
        from pathlib import Path

        from sceneleap_core.infer.critic import CRITIC_NAME, GraspCritic
        from sceneleap_core.infer.ranker import RANKER_NAME, GraspRanker
        from sceneleap_core.models import GraspGenerator

        model, normalizer, extra = GraspGenerator.load_pretrained(directory, device=device)
        if normalizer is None:
            raise ValueError(f"{directory}: expected grasp statistics (normalizer) in the checkpoint, got none")
        data = extra.get("data", {}) if isinstance(extra, dict) else {}
        for key in ("num_points", "center", "frame"):
            if key in data and key not in kwargs:
                kwargs[key] = data[key]
        defaults = extra.get("planner", {}) if isinstance(extra, dict) else {}
        for key in ("oversample", "temperature", "guidance"):
            if key in defaults and key not in kwargs:
                kwargs[key] = float(defaults[key])
                if key == "guidance" and backend in CONDITIONAL_ONLY_BACKENDS and kwargs[key] != 1.0:
                    log.warning("%s: the %s backend runs the conditional network only; planning without the "
                                "recorded guidance %s", directory, backend, kwargs[key])  # fmt: skip
                    kwargs[key] = 1.0
        if defaults.get("post") and "post" not in kwargs:
            kwargs["post"] = PostConfig.from_dict(defaults["post"])
        if "ranker" not in kwargs and (Path(directory) / CRITIC_NAME).is_file():
            kwargs["ranker"] = GraspCritic.load(directory, device=device)
        elif "ranker" not in kwargs and (Path(directory) / RANKER_NAME).is_file():
            kwargs["ranker"] = GraspRanker.load(Path(directory) / RANKER_NAME)
        return cls(model, normalizer, backend=backend, **kwargs)

    def prepare(self, points, seed: int = 0, up: np.ndarray | None = None, *, workspace=None,
                voxel_size: float | None = None) -> PreparedCloud:  # fmt: skip
        """One raw cloud -> :class:`PreparedCloud` (module :mod:`sceneleap_core.infer.preprocess`):
        xyz of (N, 3), (N, 3 + C) or organized (H, W, 3 + C) input; NaN/inf rows dropped; cropped to
        ``workspace`` ((min xyz), (max xyz), the cloud's frame) when given; voxel-downsampled by
        ``voxel_size`` (m; the planner's default when None, 0 = off); ``num_points`` drawn (seeded,
        with replacement when fewer); the support plane found (``up`` or RANSAC); the network frame.
        ValueError naming the problem for empty, all-NaN, degenerate or wrongly shaped clouds.
        With ``prepare_on_device`` (the default on CUDA) the same steps run in torch on the model's
        device (:mod:`sceneleap_core.infer.device_prepare`: its own draws; ``cloud``, ``up`` and the
        plane's fields come back as device tensors); a voxel size is then an error."""
        from sceneleap_core.geometry.frames import network_frame
        from sceneleap_core.infer.preprocess import prepare_cloud

        voxel = self.voxel_size if voxel_size is None else voxel_size
        device = self.device
        on_device = self.prepare_on_device
        if on_device is None:
            on_device = device.type == "cuda" and not voxel
        if on_device:
            if voxel:
                raise ValueError(f"voxel_size: preparing on the device takes no voxel downsampling, got {voxel}")
            if self._preparer is None:
                from sceneleap_core.infer.device_prepare import DevicePreparer

                self._preparer = DevicePreparer(self.num_points, frame=self.frame, center=self.center,
                                                need_up=getattr(self.model, "anchored", False),
                                                graphed=self.backend == "cuda_graph")  # fmt: skip
            d = self._preparer(points, device, seed=seed, up=up, workspace=workspace)
            return PreparedCloud(d["net"][None], d["frame"][None], None if d["up_net"] is None else d["up_net"][None],
                                 d["cloud"], d["plane"], d["up"], d["stats"])  # fmt: skip
        pts, plane, stats = prepare_cloud(points, self.num_points, seed=seed, up=up, workspace=workspace,
                                          voxel_size=voxel)  # fmt: skip
        if up is None and (self.frame == "gravity" or getattr(self.model, "anchored", False)):
            if plane is None:
                from sceneleap_core.geometry.frames import estimate_up

                up = estimate_up(pts, seed=seed)
            else:
                up = plane.normal
        net, frame, rot = network_frame(pts, frame=self.frame, center=self.center, up=up)
        net_up = None if up is None else torch.from_numpy(rot @ (np.asarray(up, float) / np.linalg.norm(up)))
        net, frame = torch.from_numpy(net), torch.from_numpy(frame)
        net, frame, net_up = (None if a is None else a.float()[None].to(device) for a in (net, frame, net_up))
        return PreparedCloud(net, frame, net_up, pts, plane, up, stats)

    def preprocess(
        self, points: np.ndarray | torch.Tensor, seed: int = 0, up: np.ndarray | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One cloud (N, 3) in its own frame -> network points (1, N', 3), frame (1, 4, 4) = input <-
        network, and world up in the network frame (1, 3) (None when neither given nor needed).
        The tensor part of :meth:`prepare`."""
        p = self.prepare(points, seed, up)
        return p.points, p.frame, p.up_net

    @torch.no_grad()
    def sample_network(self, points: torch.Tensor, num_grasps: int = 32, *, steps: int = 10,
                       sampler: str | None = None, guidance_scale: float | None = None, seed: int = 0,
                       up: torch.Tensor | None = None, anchors: torch.Tensor | None = None,
                       temperature: float | None = None) -> GraspSet:  # fmt: skip
        """Network-frame clouds (B, N, 3) -> grasps in the network frame (no preprocessing).

        Anchored generators condition each grasp on an anchor: ``anchors`` (B, G, 3) when given,
        else G of ``anchor_pool x G`` points drawn on the objects above the support plane, kept by
        the model's anchor score (``up`` (B, 3) or (3,): world up in the network frame; +z, the
        gravity frame's, when None). ``temperature``: the initial noise's scale, ``guidance_scale``:
        classifier-free guidance (None: the planner's)."""
        temperature = self.temperature if temperature is None else check_temperature(temperature)
        guidance_scale = self.guidance if guidance_scale is None else check_guidance(guidance_scale)
        gen = torch.Generator(device=points.device).manual_seed(int(seed))
        anchor_logit = scene = features = None
        if getattr(self.model, "anchored", False) and anchors is None:
            if up is None:
                up = torch.tensor([0.0, 0.0, 1.0], device=points.device)
            shape = (points.shape[0], num_grasps * self.anchor_pool)
            pool_uniforms = torch.rand(shape, generator=gen, device=points.device)
            if self.anchor_pool > 1:
                if self.model.anchor_encoder.needs_scene or self._graphed is not None:  # once for score + sampler
                    scene = self._encode(points)
                gumbel_uniforms = torch.rand(shape, generator=gen, device=points.device)
                # the kept anchors' features come along: the scene cache does not encode them again
                anchors, features, logits = self._draw_anchors(points, up, pool_uniforms, gumbel_uniforms, scene)
                if getattr(self.model.config, "anchor_score_weight", 0) > 0:  # a trained score: ranking evidence
                    anchor_logit = logits  # (B, G)
            else:
                anchors = select_anchors(points, up, shape[1], uniforms=pool_uniforms)
        kwargs = {"anchors": anchors} if anchors is not None else {}
        if self.backend == "eager":
            z = self.model.sample(points, num_grasps=num_grasps, steps=steps, sampler=sampler,
                                  guidance_scale=guidance_scale, generator=gen, scene=scene, temperature=temperature,
                                  anchor_features=features, **kwargs)  # fmt: skip
        else:
            z = self._sample_backend(points, num_grasps, steps, sampler, guidance_scale, gen, anchors, scene,
                                     temperature, features)  # fmt: skip
        pose, joints = self._decode(z, anchors)
        terms = {} if anchor_logit is None else {"anchor_logit": anchor_logit.float()}
        return GraspSet(pose, joints, z, anchors, terms=terms)

    def plan(self, points, num_grasps: int = 32, *, steps: int = 10, sampler: str | None = None,
             guidance_scale: float | None = None, seed: int | None = 0, up: np.ndarray | None = None,
             guidance: float | None = None, workspace=None, voxel_size: float | None = None,
             oversample: float | None = None, refine_steps: int | None = None, filter: bool | None = None,
             diversity: float | None = None, post: PostConfig | dict | None = None,
             temperature: float | None = None) -> GraspSet:  # fmt: skip
        """One raw cloud -> up to ``num_grasps`` ranked, filtered grasps (1, G, ...) in the cloud's frame.

        Args:
            points: (N, 3), (N, 3 + C) or organized (H, W, 3 + C); NaN/inf rows are dropped.
            num_grasps: grasps returned at most (fewer when filtering leaves fewer).
            steps, sampler: the sampler (``ddim``, ``dpmpp``, ``ddpm``, ...) and its steps.
            guidance_scale (alias ``guidance``): classifier-free guidance w (1 = off; None: the
                planner's ``guidance``).
            seed: sampling seed (None = fresh entropy).
            up: world up in the cloud's frame (estimated from the table when None).
            workspace: ((xmin, ymin, zmin), (xmax, ymax, zmax)) crop in the cloud's frame.
            voxel_size: voxel downsampling (m) before sampling the network's points.
            oversample: candidates sampled per returned grasp (``self.oversample`` when None).
            refine_steps, filter, diversity: overrides of ``post`` (:class:`PostConfig`).
            temperature: the sampler's initial noise scale (``self.temperature`` when None).

        Recipe: prepare -> sample ``ceil(oversample G)`` candidates -> decode -> refine (optional)
        -> reject collisions with the cloud / table / approach sweep -> score (-energy) -> diverse top-k.
        """
        watch = Stopwatch(self.device)
        if guidance is not None:
            guidance_scale = guidance
        seed, cfg, candidates = plan_settings(self.post, self.oversample, num_grasps, seed=seed, post=post,
                                              oversample=oversample, refine_steps=refine_steps, filter=filter,
                                              diversity=diversity)  # fmt: skip
        prep = self.prepare(points, seed, up, workspace=workspace, voxel_size=voxel_size)
        watch.lap("prepare")
        out = self.sample_network(prep.points, candidates, steps=steps, sampler=sampler,
                                  guidance_scale=guidance_scale, seed=seed, up=prep.up_net,
                                  temperature=temperature)  # fmt: skip
        watch.lap("sample")
        frame = prep.frame
        pose = self._to_input(frame, out.palm_pose)[0]  # (C, 4, 4)
        anchors = None
        if out.anchors is not None:
            anchors = (out.anchors @ frame[:, :3, :3].transpose(1, 2) + frame[:, None, :3, 3])[0]
        watch.lap("decode")
        return finish_grasps(self.hand, prep.cloud, prep.plane, pose, out.joints[0], num_grasps, cfg,
                             vectors=out.vectors[0], anchors=anchors, watch=watch,
                             terms={k: v[0] for k, v in out.terms.items()}, ranker=self.ranker, up=prep.up,
                             graphs=self._post if self.device.type == "cuda" else None)  # fmt: skip
