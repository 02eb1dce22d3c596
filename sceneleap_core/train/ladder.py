"""The learning ladder: each rung checks one link of the chain from data to grasps that lift.

Rungs (``bench/learning.py`` runs them in order and prints one table; the small ones are CPU tests):

0. ``ground_truth``: the data's own grasps through the sampled-grasp path (normalize ->
   denormalize -> decode -> network frame -> world -> lift test) lift: the path and labels work;
1. ``oracle``: a denoiser that knows the answer makes every scheduler return the ground truth;
2. ``fit``: a trained model's sampled grasps lift on its training views (it can fit);
3. ``held_out``: ... on held-out views / held-out scenes of unseen objects (it generalizes);
beside 2-3 the conditioning gap (:func:`sceneleap_core.train.diagnostics.conditioning_gap`).

Shapes: S scenes, G grasps per scene, K ground-truth grasps, D grasp width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import default_collate


@dataclass
class RungResult:
    """One rung's figures: ``name``, ``sampler``/``steps`` (when sampled), lift success, chamfer
    (mm), penetration into the cloud (mm), conditioning gaps, and how many scenes x grasps."""

    name: str
    sampler: str = "-"
    steps: int = 0
    lift: float = float("nan")
    chamfer_mm: float = float("nan")
    penetration_mm: float = float("nan")
    gap_blank: float = float("nan")
    gap_foreign: float = float("nan")
    scenes: int = 0
    grasps: int = 0

    def row(self) -> str:
        def f(x, spec):
            return "-" if x != x else format(x, spec)

        return (
            f"{self.name:<22} {self.sampler:>6} {self.steps:>5} {f(100 * self.lift, '6.1f'):>7} "
            f"{f(self.chamfer_mm, '7.1f'):>8} {f(self.penetration_mm, '6.2f'):>7} "
            f"{f(self.gap_blank, '+7.4f'):>8} {f(self.gap_foreign, '+7.4f'):>8} {self.scenes:>4}x{self.grasps:<3}"
        )


HEADER = f"{'rung':<22} {'sampler':>6} {'steps':>5} {'lift %':>7} {'chamf mm':>8} {'pen mm':>7} {'gap blk':>8} {'gap frgn':>8} {'SxG':>8}"


def view_batch(dataset, indices) -> dict:
    """A collated batch (S items) of a :class:`GraspSceneDataset` (its local indices), unaugmented."""
    return default_collate([dataset[int(i)] for i in indices])


def ground_truth_rung(
    dataset, evaluator, normalizer, hand, indices, max_grasps: int = 16, *, anchored: bool = False
) -> RungResult:
    """Rung 0: the ground-truth grasp sets of ``indices`` through the decode path and the lift test
    (relative to the views' anchors and back when ``anchored``)."""
    from sceneleap_core.hand import anchor_relative
    from sceneleap_core.infer.planner import decode_grasps

    batch = view_batch(dataset, indices)
    anchors = batch["anchors"][:, :max_grasps] if anchored else None  # relative, then back
    grasps = batch["grasps"][:, :max_grasps]
    vectors = normalizer.normalize(grasps if anchors is None else anchor_relative(grasps, anchors))
    pose, joints = decode_grasps(vectors, normalizer, hand, anchors)
    evaluator.max_scenes, evaluator.max_grasps = len(indices), max_grasps
    res = evaluator(batch, pose, joints)
    return RungResult("ground_truth", lift=res["sim_lift_success"], scenes=len(indices), grasps=vectors.shape[1])


def oracle_rung(model, samplers: list[tuple[str, int]], *, seed: int = 0) -> list[RungResult]:
    """Rung 1: a denoiser returning the exact prediction for a one-grasp set x0 (B, 1, D) must make
    every (sampler, steps) land on x0; the result's ``chamfer_mm`` holds the max |x - x0| instead
    (normalized units, reported x1000)."""
    from sceneleap_core.models.denoising_loop import DenoisingLoop
    from sceneleap_core.models.noise import prediction_target

    obj = model.objective
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.rand(4, 1, model.grasp_dim, generator=gen, dtype=torch.float64) * 1.6 - 0.8

    class Oracle(torch.nn.Module):
        def forward(self, x, t_model, cache, mask=None):
            if hasattr(obj, "sqrt_abar"):  # diffusion: recover (alpha, sigma) of this model time
                t = round(float(t_model) * obj.num_train_timesteps / 1000.0)
                a, s = float(obj.sqrt_abar[t]), float(obj.sqrt_one_minus_abar[t])
                eps = (x - a * x0) / s
                return prediction_target(obj.prediction, x0, eps, a, s)
            t = float(t_model) / 1000.0  # flow: v = eps - x0 with x = (1 - t) x0 + t eps
            return (x - x0) / max(t, 1e-6)

    out = []
    for name, steps in samplers:
        loop = DenoisingLoop(Oracle(), obj, model.make_scheduler(name))
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        x = loop(None, noise, num_inference_steps=steps, generator=gen)
        err = float((x - x0).abs().max())
        out.append(RungResult("oracle", sampler=name, steps=steps, chamfer_mm=1e3 * err))
    return out


def sampled_rung(
    name: str,
    module,
    dataset,
    evaluator,
    indices,
    *,
    sampler: str,
    steps: int,
    num_grasps: int = 16,
    gap_repeats: int = 4,
    seed: int = 0,
    anchors: str = "deployed",
    clearance: float | None = None,
    temperature: float | None = None,
) -> RungResult:
    """Rungs 2-3: sample ``num_grasps`` grasps per view of ``indices`` with a trained
    :class:`GraspTrainingModule` (EMA weights swapped in by the caller), lift-test them, score
    chamfer / penetration against the views' ground truth, and measure the conditioning gap.
    ``anchors`` (anchored generators): ``deployed`` (the planner's default: 4 x G candidates above
    the table kept by the learned anchor score), ``uniform`` (G drawn uniformly above the table) or
    ``true`` (the ground truth's anchors: separates "where" from "how"); rows other than
    ``deployed`` are named ``<name>+<anchors>_anchors``. ``clearance`` (m): the planner's finger
    clearance at that tolerance on each view's cloud before the lift test
    (:func:`sceneleap_core.infer.postprocess.finger_clearance`; the row gets ``+clearance``).
    ``temperature``: the sampler's initial noise scale (None: the module's validation setting,
    ``val.temperature``; rows at other than 1 get ``@t<value>``)."""
    from sceneleap_core.train.diagnostics import conditioning_gap

    batch = view_batch(dataset, indices)
    device = module.device
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    if anchors not in ("deployed", "uniform", "true"):
        raise ValueError(f"anchors: expected 'deployed', 'uniform' or 'true', got {anchors!r}")
    given = None
    if anchors != "deployed" and module.anchored:
        name = f"{name}+{anchors}_anchors"
        if anchors == "true":
            given = batch["anchors"][:, :num_grasps]  # the first K grasps are distinct (grasp_mask)
            num_grasps = given.shape[1]
    pose, joints = module.sample_grasps(
        batch["points"],
        num_grasps,
        seed=seed,
        sampler=sampler,
        steps=steps,
        up=batch["up"],
        anchors=given,
        anchor_pool=1 if anchors == "uniform" else None,
        temperature=temperature,
    )
    if temperature is None:
        temperature = module.val_cfg.temperature
    if float(temperature) != 1.0:
        name = f"{name}@t{float(temperature):g}"
    if clearance is not None:
        from sceneleap_core.infer.postprocess import PostConfig, finger_clearance

        name = f"{name}+clearance"
        post = PostConfig(clearance_tolerance=float(clearance))
        joints = torch.stack([finger_clearance(module.hand, pose[b], joints[b], batch["points"][b, :, :3], post)[1]
                              for b in range(len(pose))])  # fmt: skip
    metrics = module.grasp_metrics(batch, pose, joints)
    evaluator.max_scenes, evaluator.max_grasps = len(indices), num_grasps
    res = evaluator(
        {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}, pose.cpu(), joints.cpu()
    )
    target = module.network_target(batch)
    anchors = batch["anchors"] if module.anchored else None
    gap = conditioning_gap(
        module.model, batch["points"], target, batch["grasp_mask"], seed=seed, repeats=gap_repeats, anchors=anchors
    )
    return RungResult(
        name,
        sampler=sampler,
        steps=steps,
        lift=res["sim_lift_success"],
        chamfer_mm=float(metrics["chamfer_mm"]),
        penetration_mm=float(metrics["penetration_mm"]),
        gap_blank=gap["gap_blank"],
        gap_foreign=gap["gap_foreign"],
        scenes=len(indices),
        grasps=num_grasps,
    )


def spread_indices(n: int, count: int) -> np.ndarray:
    """``count`` evenly spread indices out of ``n`` (all when fewer)."""
    return np.unique(np.linspace(0, n - 1, min(n, count)).round().astype(int))
