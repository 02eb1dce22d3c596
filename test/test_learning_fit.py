"""The learning ladder's fit rung in CI: a small anchored model trained on two views of the bundled
sample (two scenes) with the default augmentation (jitter, dropout holes) must sample grasps that
lift in MuJoCo, with the deployed sampler and with DDPM 100, and must read the scene (positive
conditioning gap). The recipe with absolute grasps lifted 0 % here; this one 44 % (DPM++ 10).

About 3 minutes of one CPU core: the slowest test, and the one that says the model learns at all."""

from pathlib import Path

import pytest
import torch

from sceneleap_core.data.shards import ShardDataset
from sceneleap_core.models import GraspGenerator
from sceneleap_core.train.config import ValConfig, load_config
from sceneleap_core.train.data import GraspSceneDataset, usable_indices
from sceneleap_core.train.ladder import sampled_rung
from sceneleap_core.train.module import GraspTrainingModule
from sceneleap_core.train.runner import train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sceneleap_core" / "data" / "sample"
TINY = ROOT / "config" / "train" / "tiny.yaml"
FIT = [
    "model.d_model=128", "model.depth=3", "model.heads=4", "model.mlp_ratio=2.0", "model.num_scene_tokens=32",
    "model.scene_dim=64", "model.encoder_points=256", "model.anchor_knn=16", "model.anchor_region_knn=8",
    f"data.root={SAMPLE}", "data.val_fraction=0.0", "data.train_samples=2", "data.num_points=512",
    "data.num_grasps=8", "data.normalizer_samples=8", "optim.lr=2e-3", "optim.warmup_steps=20", "ema.decay=0.98",
    "val.every=100000", "trainer.max_steps=3000", "trainer.checkpoint_every=100000", "trainer.log_every=500",
]  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # xdist runs two workers on two cores
    try:
        cfg = load_config(TINY, [f"run_dir={tmp_path_factory.mktemp('fit')}", *FIT])
        assert cfg.model.anchor == "seed" and cfg.data.augment.enabled, "the rung trains the default recipe"
        model, normalizer, _ = GraspGenerator.load_pretrained(train(cfg))
    finally:
        torch.set_num_threads(threads)
    source = ShardDataset(SAMPLE)
    usable = usable_indices(source)[: cfg.data.train_samples]
    ds = GraspSceneDataset(source, usable, num_points=cfg.data.num_points, num_grasps=cfg.data.num_grasps,
                           center=cfg.data.center, frame=cfg.data.frame, augment=None, seed=cfg.seed + 1)  # fmt: skip
    return GraspTrainingModule(model, normalizer, val=ValConfig(), seed=cfg.seed).eval(), ds


@pytest.mark.parametrize(("sampler", "steps", "min_lift"), [("dpmpp", 10, 0.25), ("ddpm", 100, 0.125)])
def test_small_model_fits_two_views_so_that_its_sampled_grasps_lift(fitted, sampler, steps, min_lift):
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    module, ds = fitted
    res = sampled_rung("train_views", module, ds, SimLiftEvaluator(SAMPLE, workers=1), [0, 1],
                       sampler=sampler, steps=steps, num_grasps=16)  # fmt: skip
    print(res.row())
    assert res.lift >= min_lift, f"{sampler} {steps}: {res.lift:.0%} of 32 sampled grasps lifted"
    assert res.gap_blank > 0 and res.gap_foreign > 0, f"conditioning gap {res.gap_blank}, {res.gap_foreign}"
    assert res.penetration_mm < 5.0


def test_finger_clearance_keeps_the_fitted_grasps_lifting(fitted):
    """The ladder's clearance row: the same samples, each finger unflexed out of the view's cloud as
    the planner does, still lift (and the row says what it measured)."""
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    module, ds = fitted
    res = sampled_rung("train_views", module, ds, SimLiftEvaluator(SAMPLE, workers=1), [0, 1],
                       sampler="dpmpp", steps=10, num_grasps=16, clearance=0.001)  # fmt: skip
    print(res.row())
    assert res.name == "train_views+clearance"
    assert res.lift >= 0.25, f"{res.lift:.0%} of 32 sampled grasps lifted after finger clearance"
    assert res.penetration_mm < 5.0


def test_a_sharper_sampler_temperature_keeps_the_fitted_grasps_lifting(fitted):
    """The ladder's temperature row: the start drawn at half the prior's scale (the shipped planner's
    default) still lifts the fitted grasps, and the row is named for it."""
    from sceneleap_core.train.sim_validation import SimLiftEvaluator

    module, ds = fitted
    res = sampled_rung("train_views", module, ds, SimLiftEvaluator(SAMPLE, workers=1), [0, 1],
                       sampler="dpmpp", steps=10, num_grasps=16, temperature=0.5)  # fmt: skip
    print(res.row())
    assert res.name == "train_views@t0.5"
    # (this tiny model lifted 28 % at 0.5 vs 41 % at 1 on the build machine: 32 grasps are ~8 points
    # of noise, and a two-view fit is not the shipped model, which gains 6-8 points: bench/RESULTS.md)
    assert res.lift >= 0.15, f"{res.lift:.0%} of 32 sampled grasps lifted at temperature 0.5"
    assert res.penetration_mm < 5.0
