"""Learning diagnostics: is the model using the scene, and do its sampled grasps work?

A falling loss proves little (on the sample data a memorizing model scores 0.033, a scene-blind
one 0.063). These measurements are what training validation and ``bench/learning.py`` report:

* :func:`conditioning_gap`: the objective's loss with the real cloud, with the null (blanked)
  scene, and with another sample's cloud, at identical timesteps and noise. A model that uses the
  scene has ``gap_blank`` and ``gap_foreign`` clearly above zero;
* simulated lift success of sampled grasps (:class:`sceneleap_core.train.sim_validation.SimLiftEvaluator`
  through :func:`sceneleap_core.infer.planner.decode_grasps`).

Shapes: B samples, N points, K grasps, D grasp width.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def conditioning_gap(
    model,
    points: torch.Tensor,
    grasps: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    seed: int = 0,
    repeats: int = 4,
    anchors: torch.Tensor | None = None,
) -> dict[str, float]:
    """Loss with the real cloud vs the blanked (null) scene vs another sample's cloud.

    Args:
        model: a generator with ``training_loss(points, grasps, generator, mask, cond_drop=...)``.
        points: (B, N, 3) network-frame clouds; B >= 2 for the foreign-cloud term.
        grasps: (B, K, D) normalized grasp sets.
        mask: (B, K) bool real-grasp mask or None.
        seed: the noise and timesteps of every variant come from generators seeded alike.
        repeats: independent draws of (t, noise) averaged (lowers the variance of the gaps).
        anchors: (B, K, 3) anchor points (anchored generators; kept for every variant).

    Returns:
        ``loss_real``, ``loss_blank``, ``loss_foreign`` (nan when B < 2), ``gap_blank`` = blank - real,
        ``gap_foreign`` = foreign - real.
    """
    if points.shape[0] != grasps.shape[0]:
        raise ValueError(f"points/grasps: expected equal batch sizes, got {points.shape[0]} and {grasps.shape[0]}")
    was_training = model.training
    model.eval()
    sums = {"real": 0.0, "blank": 0.0, "foreign": 0.0}
    foreign = points.roll(1, dims=0)
    variants = {"real": (points, False), "blank": (points, True), "foreign": (foreign, False)}
    if points.shape[0] < 2:
        variants.pop("foreign")
    gen = torch.Generator(device=points.device)
    kwargs = {} if anchors is None else {"anchors": anchors}
    for r in range(repeats):
        for name, (cloud, drop) in variants.items():
            gen.manual_seed(1_000_003 * int(seed) + r)
            out = model.training_loss(cloud, grasps, generator=gen, mask=mask, cond_drop=drop, **kwargs)
            sums[name] += float(out["loss"]) / repeats
    model.train(was_training)
    real = sums["real"]
    result = {"loss_real": real, "loss_blank": sums["blank"], "gap_blank": sums["blank"] - real}
    if "foreign" in variants:
        result.update(loss_foreign=sums["foreign"], gap_foreign=sums["foreign"] - real)
    else:
        result.update(loss_foreign=float("nan"), gap_foreign=float("nan"))
    return result
