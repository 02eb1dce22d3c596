"""Build everything from a :class:`TrainConfig` and run (or resume) training; export the EMA model.

Run directory layout::

    <run_dir>/config.yaml          resolved config (the source of truth for --resume)
    <run_dir>/normalizer.json      grasp statistics fitted on the training split
    <run_dir>/checkpoints/         last.ckpt + step########.ckpt (atomic; weights_only-loadable)
    <run_dir>/tb/, <run_dir>/csv/  TensorBoard events, CSV metrics
    <run_dir>/model/               EMA weights (safetensors) + config and statistics (JSON)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from sceneleap_core.hand import GraspNormalizer
from sceneleap_core.train.checkpoint import AtomicCheckpointIO
from sceneleap_core.train.config import TrainConfig, config_to_dict, init_from_dir, save_config
from sceneleap_core.train.data import GraspDataModule
from sceneleap_core.train.module import GraspTrainingModule, compile_model
from sceneleap_core.train.throughput import ThroughputMonitor

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def resolve_precision(cfg: TrainConfig) -> str:
    """ "auto" -> "bf16-mixed" on a CUDA device with bf16 support, else "32-true"."""
    p = cfg.trainer.precision
    if p != "auto":
        return p
    on_gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu and torch.cuda.is_bf16_supported() else "32-true"


def build_model(cfg: TrainConfig) -> nn.Module:
    """The generator of ``cfg.model`` (gradient checkpointing switched on when asked)."""
    from dataclasses import fields, replace

    from sceneleap_core.models import build_generator

    model_cfg = cfg.model
    if cfg.trainer.grad_checkpointing:
        names = [f.name for f in fields(model_cfg) if "checkpoint" in f.name]
        if not names:
            raise ValueError(
                "trainer.grad_checkpointing: expected a model config with a checkpointing option, got none"
            )
        model_cfg = replace(model_cfg, **{names[0]: True})
    try:
        return build_generator(model_cfg)
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if msg.startswith("model") else f"model: {msg}") from None


def build_loggers(cfg: TrainConfig, run: Path) -> list:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    names = [n.strip() for n in cfg.logger.split(",") if n.strip() and n.strip() != "none"]
    loggers = []
    for name in names:
        if name == "tensorboard":
            if not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX")):
                log.warning("logger: tensorboard is not installed; writing the CSV log only")
                continue
            loggers.append(TensorBoardLogger(save_dir=str(run), name="tb", version="", default_hp_metric=False))
        elif name == "csv":
            loggers.append(CSVLogger(save_dir=str(run), name="csv"))
        elif name == "wandb":
            if importlib.util.find_spec("wandb") is None:
                raise ValueError("logger: 'wandb' needs the wandb package (pip install wandb), which is not installed")
            from lightning.pytorch.loggers import WandbLogger

            loggers.append(WandbLogger(project=cfg.wandb_project, save_dir=str(run), name=run.name, resume="allow"))
    return loggers


def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def find_checkpoint(resume: str | Path) -> tuple[Path, Path]:
    """``--resume`` target (a run directory or a .ckpt file) -> (run directory, checkpoint path)."""
    path = Path(resume)
    if path.is_dir():
        ckpt = path / CHECKPOINT_DIR / LAST
        if not ckpt.is_file():
            raise ValueError(f"--resume: expected {ckpt} (a run directory with a checkpoint), got none")
        return path, ckpt
    if path.is_file() and path.suffix == ".ckpt":
        run = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        return run, path
    raise ValueError(f"--resume: expected a run directory or a .ckpt file, got {str(path)!r}")


def _multi_process(cfg: TrainConfig) -> bool:
    t = cfg.trainer
    if t.num_nodes > 1 or t.devices == -1 or (isinstance(t.devices, int) and t.devices > 1):
        return True
    return t.devices == "auto" and t.accelerator != "cpu" and torch.cuda.device_count() > 1


def build_trainer(cfg: TrainConfig, run: Path, *, callbacks: list | None = None, **overrides):
    """The Lightning Trainer of a config: precision, DDP, atomic checkpoints, loggers."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.strategies import DDPStrategy

    t = cfg.trainer
    strategy = t.strategy
    if strategy == "auto" and _multi_process(cfg):
        strategy = DDPStrategy(broadcast_buffers=False, gradient_as_bucket_view=True)
    elif strategy in ("ddp", "ddp_find_unused_parameters_true"):
        strategy = DDPStrategy(
            broadcast_buffers=False, gradient_as_bucket_view=True, find_unused_parameters=strategy.endswith("true")
        )
    ckpt = ModelCheckpoint(
        dirpath=str(run / CHECKPOINT_DIR),
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=t.checkpoint_every,
        save_top_k=t.keep_checkpoints,
        monitor="step",
        mode="max",
        save_last=True,
        save_on_train_epoch_end=False,
    )
    loggers = build_loggers(cfg, run)
    speed = ThroughputMonitor(log_every=t.log_every, print_every=max(t.log_every, 500))
    cbs = [ckpt, speed, *(callbacks or [])]  # the module logs train/lr itself
    every = cfg.val.every * cfg.optim.accumulate
    kwargs = dict(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=resolve_precision(cfg),
        max_steps=t.max_steps,
        max_epochs=-1,
        accumulate_grad_batches=cfg.optim.accumulate,
        gradient_clip_val=cfg.optim.grad_clip or None,
        gradient_clip_algorithm="norm",
        val_check_interval=every if cfg.val.every > 0 else None,
        check_val_every_n_epoch=None,
        limit_val_batches=(cfg.val.batches or 1.0) if cfg.val.every > 0 else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every,
        logger=loggers or False,
        callbacks=cbs,
        plugins=[AtomicCheckpointIO()],
        deterministic=t.deterministic,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=_is_rank_zero(),
        default_root_dir=str(run),
        use_distributed_sampler=False,  # the StreamSampler shards by rank itself
    )
    if t.max_minutes > 0:  # wall-clock budget: stop early (the EMA weights are exported as usual)
        kwargs["max_time"] = {"minutes": t.max_minutes}
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def export_pretrained(module: GraspTrainingModule, out_dir: str | Path, *, extra: dict | None = None) -> Path:
    """Write the EMA weights (the raw weights if EMA is off) as ``save_pretrained`` does, into a
    temporary directory renamed over ``out_dir`` (never a half-written model directory)."""
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    old = out.with_name(out.name + ".old")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    model = module.model
    normalizer = module.normalizer.to("cpu") if isinstance(module.normalizer, nn.Module) else module.normalizer
    ctx = module.ema.swapped_into(model) if module.ema is not None else _null()
    with ctx:
        model.save_pretrained(tmp, normalizer=normalizer, extra_config=extra)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    if old.exists():
        shutil.rmtree(old)
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# generator config fields that do not shape the weights (a fine-tuned run may differ in them)
_NON_ARCHITECTURE_FIELDS = ("sampler", "tags", "grad_checkpointing", "p_uncond", "anchor_score_weight",
                            "pose_loss_weight", "cvae_kl_weight")  # fmt: skip


def load_initial_weights(model: nn.Module, directory: str | Path, *, load_weights: bool = True) -> GraspNormalizer:
    """Start ``model`` from the pretrained directory ``directory`` (``init_from``): check that its
    generator config matches (every field that shapes the weights), copy its weights into ``model``
    unless ``load_weights`` is False, and return its grasp normalizer (the fine-tuned model must
    keep the units its weights were trained in)."""
    from dataclasses import asdict

    from sceneleap_core.models import GraspGenerator

    pre, normalizer, _ = GraspGenerator.load_pretrained(directory)
    if normalizer is None:
        raise ValueError(f"init_from: expected a model with its grasp normalization in {directory}, got none")
    ours, theirs = asdict(model.config), asdict(pre.config)
    differ = sorted(k for k in ours if k not in _NON_ARCHITECTURE_FIELDS and ours[k] != theirs.get(k))
    if differ:
        pairs = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in differ)
        raise ValueError(f"init_from: {directory} was trained with another model config ({pairs}); "
                         "set model.* to match it")  # fmt: skip
    if load_weights:
        model.load_state_dict(pre.state_dict(), strict=True)
        log.info("initialized the model from %s", directory)
    return normalizer


def train(
    cfg: TrainConfig, *, resume: str | Path | None = None, callbacks: list | None = None, **trainer_overrides
) -> Path:
    """Train (or resume) a run; returns the exported ``<run_dir>/model`` directory.

    Args:
        cfg: a validated config (:func:`sceneleap_core.train.config.load_config`).
        resume: a run directory (its ``checkpoints/last.ckpt``) or a checkpoint file.
        callbacks: extra Lightning callbacks.
        trainer_overrides: extra ``lightning.Trainer`` kwargs (tests, benchmarks).
    """
    import lightning as L

    run = Path(cfg.run_dir)
    ckpt = None
    if resume is not None:
        _, ckpt = find_checkpoint(resume)
    elif (run / CHECKPOINT_DIR / LAST).exists():
        raise ValueError(
            f"run_dir: {run} already holds a checkpoint; resume it with `sceneleap train --resume {run}` "
            "or choose another run_dir"
        )
    # 1. everything that can fail on the config fails before any heavy work
    L.seed_everything(cfg.seed, workers=False, verbose=False)
    model = build_model(cfg)
    init_normalizer = None
    if cfg.init_from:  # fine-tuning: the weights (unless a resumed checkpoint holds newer) and statistics
        init_normalizer = load_initial_weights(model, init_from_dir(cfg.init_from), load_weights=ckpt is None)
    if cfg.trainer.compile:
        compile_model(model)
    evaluator = None
    if cfg.val.evaluator:
        from sceneleap_core.train.metrics import load_evaluator

        evaluator = load_evaluator(cfg.val.evaluator, cfg)
    dm = GraspDataModule(cfg.data, seed=cfg.seed, max_steps=cfg.trainer.max_steps, accumulate=cfg.optim.accumulate)
    dm.setup("fit")
    # 2. grasp statistics: fitted once on the training split, reused on resume
    norm_path = run / "normalizer.json"
    if norm_path.is_file():
        normalizer = GraspNormalizer.load(norm_path)
    elif init_normalizer is not None:
        normalizer = init_normalizer
    else:
        log.info("fitting grasp normalization on %d training samples", cfg.data.normalizer_samples)
        normalizer = dm.fit_normalizer(anchored=bool(getattr(model, "anchored", False)))
    if _is_rank_zero():
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "config.yaml")
        if not norm_path.is_file():
            normalizer.save(norm_path)
    module = GraspTrainingModule(
        model,
        normalizer,
        optim=cfg.optim,
        ema=cfg.ema,
        val=cfg.val,
        max_steps=cfg.trainer.max_steps,
        seed=cfg.seed,
        hand=cfg.data.hand,
        evaluator=evaluator,
        config=config_to_dict(cfg),
        aux_loss=cfg.aux_loss,
        aux_weight=cfg.aux_weight,
    )
    trainer = build_trainer(cfg, run, callbacks=callbacks, **trainer_overrides)
    # 3. fit; checkpoints are plain tensors/containers, so resume loads them without unpickling code
    trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    # 4. final checkpoint (resumable with a larger max_steps) and the exported EMA model
    trainer.save_checkpoint(run / CHECKPOINT_DIR / LAST, weights_only=False)
    out = run / "model"
    if trainer.is_global_zero:
        extra = {
            "data": {"num_points": cfg.data.num_points, "center": cfg.data.center, "frame": cfg.data.frame},
            "hand": cfg.data.hand,
            "train": config_to_dict(cfg),
            "global_step": int(trainer.global_step),
        }
        export_pretrained(module, out, extra=extra)
        log.info("exported the EMA model to %s", out)
    return out
