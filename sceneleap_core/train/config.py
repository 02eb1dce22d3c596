"""Typed training configuration: a dataclass schema, YAML files and command-line overrides.

A run's configuration is composed, later entries winning, from

1. the schema defaults below (``TrainConfig`` and its sections);
2. the generator preset named by ``model_preset`` (``GENERATOR_PRESETS`` in ``sceneleap_core.models``),
   which fills the ``model`` section;
3. the YAML file(s) given with ``--config`` (a file may name ``defaults: [other.yaml, ...]``,
   resolved relative to itself, merged before its own keys);
4. dotlist overrides from the command line: ``trainer.max_steps=100 model.depth=4 logger=wandb``.

Every key is checked against the schema (OmegaConf structured mode) and every value against its
type and range, before anything heavy starts; errors are ``ValueError``s naming the key, e.g.
``trainer.max_stepz: unknown key; did you mean 'trainer.max_steps'?`` or
``data.num_points: expected an int >= 16, got 0``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from sceneleap_core.geometry.frames import CENTERS, FRAMES

LOGGERS = ("tensorboard", "csv", "wandb", "none")
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "64-true")
# val.evaluator: a name from this registry, or a factory inside this package (a config, also a resumed
# run's saved one, never makes training import code from elsewhere)
EVALUATORS = {"sim_lift": "sceneleap_core.train.sim_validation:lift_evaluator"}
EVALUATOR_NAMESPACE = "sceneleap_core."
_EVALUATOR_SPEC = re.compile(r"^sceneleap_core(\.[A-Za-z_]\w*)+:[A-Za-z_]\w*$")


def evaluator_target(spec: str) -> str:
    """``val.evaluator`` -> the ``"sceneleap_core.module:factory"`` to import; ValueError naming the key."""
    if spec in EVALUATORS:
        return EVALUATORS[spec]
    if isinstance(spec, str) and _EVALUATOR_SPEC.match(spec):
        return spec
    raise ValueError(
        f"val.evaluator: expected a registered evaluator ({', '.join(sorted(EVALUATORS))}) or "
        f"'{EVALUATOR_NAMESPACE}<module>:<factory>', got {spec!r}"
    )


@dataclass
class AugmentConfig:
    """Augmentation applied to a cloud and its grasps together (rigid, so grasp/cloud contact is kept).

    Attributes:
        enabled: master switch (validation never augments).
        rotate_gravity: rotate cloud and grasps about the world up axis (world +z, expressed in
            the camera frame through ``camera_pose``), through the cloud centre.
        max_angle: rotation angle drawn uniformly in [-max_angle, max_angle] (rad).
        jitter_sigma: Gaussian noise on the points only (m); grasps are not jittered (sensor noise).
        jitter_clip: clip of the point noise (m).
        scale_min: lower bound of a uniform scale of cloud and grasp translations (hand size is not
            scaled, so keep close to 1; 1 disables).
        scale_max: upper bound of that scale.
        dropout_prob: probability of cutting holes into the cloud (simulated occlusion).
        dropout_holes: maximum number of holes (balls around random cloud points).
        dropout_radius: hole radius (m).
    """

    enabled: bool = True
    rotate_gravity: bool = False
    max_angle: float = math.pi
    jitter_sigma: float = 0.002
    jitter_clip: float = 0.005
    scale_min: float = 1.0
    scale_max: float = 1.0
    dropout_prob: float = 0.3
    dropout_holes: int = 2
    dropout_radius: float = 0.02


@dataclass
class DataConfig:
    """Shards, sampling and loading.

    Attributes:
        root: training dataset directory (with ``manifest.json``) written by the data engine.
        val_root: validation dataset directory; None holds out ``val_fraction`` of the training
            scenes (by ``scene_id``, so views of one scene never straddle the split).
        val_fraction: held-out fraction of scenes when ``val_root`` is None.
        hand: hand description name or YAML path (must match the shards' ``hand`` attribute).
        num_points: N, points per cloud after subsampling (with replacement when fewer).
        num_grasps: K, grasps per scene sample (subsampled; repeated with ``grasp_mask`` when fewer).
        center: cloud centring, "mean" (centroid), "bbox" (box centre) or "none".
        frame: canonical network frame, "camera" (the optical frame) or "gravity" (z up, x along the
            horizontal viewing direction; needs the camera pose / tf at run time, or the table plane),
            see :mod:`sceneleap_core.geometry.frames`.
        batch_size: scene samples per device and step (the global batch is
            ``batch_size * devices * num_nodes * accumulate``).
        num_workers: DataLoader worker processes per device.
        prefetch_factor: batches prefetched per worker.
        pin_memory: page-locked host batches (only used with CUDA).
        persistent_workers: keep workers (and their caches) alive across epochs/validation.
        cache_size: decoded samples kept in each worker's LRU cache (0 disables).
        normalizer_samples: training samples (augmented) used to fit the grasp normalization.
        val_samples: validation samples used (0 = all).
        train_samples: train on the first this many usable samples only (0 = all): the learning
            ladder's "fit a few views" rung.
        augment: see :class:`AugmentConfig`.
        source: "shards" (read ``root``) or "compose" (scenes composed on the fly from ``library``,
            :mod:`sceneleap_core.train.composed`; validation still reads ``val_root`` or ``root``).
        library: grasp library (``library.npz``) when ``source == "compose"``.
    """

    root: str = "data/train"
    val_root: str | None = None
    val_fraction: float = 0.05
    hand: str = "leap_hand_right"
    num_points: int = 4096
    num_grasps: int = 64
    center: str = "mean"
    frame: str = "gravity"
    batch_size: int = 32
    num_workers: int = 4
    prefetch_factor: int = 4
    pin_memory: bool = True
    persistent_workers: bool = True
    cache_size: int = 256
    normalizer_samples: int = 512
    val_samples: int = 64
    train_samples: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    source: str = "shards"
    library: Optional[str] = None  # noqa: UP045 (OmegaConf structured configs need typing.Optional)


@dataclass
class OptimConfig:
    """AdamW with a per-step learning-rate schedule.

    Attributes:
        lr: peak learning rate.
        weight_decay: decoupled weight decay (not applied to biases, norms and embeddings: 1-D params).
        beta1: Adam beta1.
        beta2: Adam beta2.
        eps: Adam epsilon.
        schedule: "cosine" (linear warmup then cosine to ``min_lr_ratio * lr``), "onecycle"
            (``torch.optim.lr_scheduler.OneCycleLR``, warmup fraction ``warmup_steps / max_steps``)
            or "constant" (after warmup).
        warmup_steps: optimizer steps of linear warmup.
        min_lr_ratio: final lr as a fraction of ``lr`` (cosine).
        grad_clip: gradient-norm clip (0 disables).
        accumulate: micro-batches accumulated per optimizer step.
        fused: fused AdamW kernel: null = on CUDA only, true or false.
        decay_by_time: with a wall-clock budget (``trainer.max_minutes``) the cosine decays by
            whichever runs out first, steps or time, so a run stopped by the clock still ends at
            ``min_lr_ratio`` (the 2026-12-01 default model stopped at 82 % of its steps, lr 13 %).
    """

    lr: float = 3e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    schedule: str = "cosine"
    warmup_steps: int = 500
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    accumulate: int = 1
    fused: Optional[bool] = None  # noqa: UP045 (OmegaConf structured configs need typing.Optional)
    decay_by_time: bool = True


@dataclass
class EMAConfig:
    """Exponential moving average of the weights (exported for inference).

    Attributes:
        enabled: keep an EMA copy (fp32, on the training device).
        decay: target decay.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` at update n, so early EMA follows the weights.
        every: update every this many optimizer steps.
        start_step: first optimizer step that updates the EMA (before it, the EMA copies the weights).
    """

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True
    every: int = 1
    start_step: int = 0


@dataclass
class ValConfig:
    """Periodic validation: loss of the EMA model, and grasps sampled from it scored against the
    scene cloud and the ground-truth grasps.

    Attributes:
        every: validate every this many optimizer steps (0 disables).
        batches: validation batches per run (0 = whole validation loader).
        num_grasps: grasps sampled per scene.
        steps: sampler steps.
        sampler: sampler name passed to ``model.sample``.
        guidance_scale: classifier-free guidance scale passed to ``model.sample``.
        temperature: the sampler's initial noise scale (the planner's ``temperature``; 1 = the prior).
        metric_points: cloud points used for the penetration metric (subsampled, bounded cost).
        evaluator: optional evaluator: a name of ``EVALUATORS`` (``"sim_lift"``) or a
            ``"sceneleap_core.module:factory"`` (nothing outside this package is imported);
            ``factory(cfg: TrainConfig)`` returns a
            callable ``(batch, palm_pose, joints) -> dict[str, float]`` (e.g. a simulated success rate
            from ``sceneleap_core.sim``), see :class:`sceneleap_core.train.metrics.ValidationEvaluator`.
        evaluator_every: call the evaluator on every n-th validation run only (it is slow).
        evaluator_workers: processes of the evaluator's simulation (a persistent forkserver/spawn
            pool, safe after torch threads: :mod:`sceneleap_core.sim.pool`); 1 = in this process.
        reference_sampler: a second, slow sampler the evaluator also scores (the few-step sampler
            must come close to it), logged with the suffix ``_ref``.
        reference_steps: its steps (0 = no reference run).
        gap_repeats: noise draws of the conditioning gap (loss with the real cloud vs the blanked
            and a foreign cloud, :func:`sceneleap_core.train.diagnostics.conditioning_gap`); 0 = off.
    """

    every: int = 1000
    batches: int = 4
    num_grasps: int = 32
    steps: int = 10
    sampler: str = "ddim"
    guidance_scale: float = 1.0
    temperature: float = 1.0
    metric_points: int = 1024
    evaluator: str | None = None
    evaluator_every: int = 5
    evaluator_workers: int = 1
    reference_sampler: str = "ddpm"
    reference_steps: int = 100
    gap_repeats: int = 2


@dataclass
class TrainerConfig:
    """Lightning trainer settings.

    Attributes:
        max_steps: optimizer steps to train (the learning-rate schedule's length).
        max_minutes: wall-clock budget (0 = none): training stops at the first step past it, and the
            run ends as usual (final checkpoint, EMA export).
        accelerator: "auto", "cpu", "gpu"/"cuda".
        devices: "auto", a count, or -1 for all.
        num_nodes: nodes (multi-node DDP through torchrun or SLURM, see ``sceneleap_core.train``).
        strategy: "auto" (DDP when more than one device), "ddp", "ddp_find_unused_parameters_true", ...
        precision: "auto" = bf16-mixed on CUDA (when supported), 32-true on CPU; or a Lightning
            precision string.
        compile: ``torch.compile`` the generator's sub-modules (in place; checkpoint keys unchanged).
        grad_checkpointing: activation checkpointing in the model (when the model supports it).
        checkpoint_every: optimizer steps between checkpoints (``last.ckpt`` is refreshed each time).
        keep_checkpoints: step checkpoints kept besides ``last.ckpt`` (-1 keeps all).
        log_every: optimizer steps between logged training scalars.
        deterministic: ``torch.use_deterministic_algorithms`` (slower; exact resume does not need it).
        progress_bar: show the progress bar.
    """

    max_steps: int = 20000
    max_minutes: float = 0.0
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    compile: bool = False
    grad_checkpointing: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    deterministic: bool = False
    progress_bar: bool = True


@dataclass
class TrainConfig:
    """A whole training run. ``model`` holds the generator's config (``GeneratorConfig`` from
    ``sceneleap_core.models``), filled from ``model_preset`` and then overridden key by key.

    Attributes:
        run_dir: output directory: ``config.yaml``, ``normalizer.json``, ``checkpoints/``, logs,
            and the exported ``model/`` (safetensors + JSON).
        seed: seeds data order, augmentation, diffusion noise and initialization.
        logger: comma-separated subset of "tensorboard", "csv", "wandb", or "none".
        wandb_project: W&B project (``logger`` contains "wandb").
        model_preset: name in ``GENERATOR_PRESETS`` used as the base of ``model``.
        model: generator config (typed by the model package's schema).
        aux_weight: weight of the auxiliary grasp losses on the denoiser's x0 estimate
            (``GraspSetLoss`` of ``sceneleap_core.models.losses``); 0 trains the diffusion loss alone.
        aux_loss: the auxiliary terms' weights and settings (``GraspLossConfig``).
        init_from: a pretrained model directory (``save_pretrained`` / ``sceneleap model pack``
            output) whose weights and grasp normalization start this run (fine-tuning), or
            ``bundled`` (the model shipped in ``sceneleap_core/assets``); its generator config must
            equal ``model``. Empty = train from scratch.
    """

    run_dir: str = "runs/default"
    seed: int = 0
    logger: str = "tensorboard,csv"
    wandb_project: str = "sceneleap"
    model_preset: str = "dit_s"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    val: ValConfig = field(default_factory=ValConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: Any = None
    aux_weight: float = 0.0
    aux_loss: Any = None
    init_from: str = ""


# ---------------------------------------------------------------------------------------- loading
# omegaconf is imported inside the functions below only: the dataclasses above are plain Python, so
# the training module (and bench/train.py) import without it.


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            keys.extend(_all_keys(node._get_node(k), full + "."))
    return keys


def _friendly(err: Exception, schema: Any, source: str) -> ValueError:
    """Turn an OmegaConf error into a ValueError naming the full key (and a close match)."""
    from omegaconf.errors import ConfigKeyError

    key = getattr(err, "full_key", None) or ""
    where = f" (in {source})" if source else ""
    if isinstance(err, ConfigKeyError) or "not in" in str(err):
        close = difflib.get_close_matches(key, _all_keys(schema), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return ValueError(f"{key}: unknown key{where}{hint}")
    text = str(err).split("\n")[0]
    return ValueError(f"{key}: invalid value{where}: {text}")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> Any:
    """Load a YAML config, merging the files named in its ``defaults`` list first."""
    from omegaconf import DictConfig, OmegaConf

    path = path.resolve()
    if path in seen:
        raise ValueError(f"--config: circular 'defaults' include of {path}")
    if not path.is_file():
        raise ValueError(f"--config: expected an existing YAML file, got {str(path)!r}")
    try:
        node = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends
        raise ValueError(f"--config {path}: cannot parse YAML: {err}") from None
    if not isinstance(node, DictConfig):
        raise ValueError(f"--config {path}: expected a mapping at the top level, got a list")
    includes = node.pop("defaults", [])
    if isinstance(includes, str):
        includes = [includes]
    merged = OmegaConf.create()
    for inc in includes:
        merged = OmegaConf.merge(merged, _read_yaml(path.parent / str(inc), (*seen, path)))
    return OmegaConf.merge(merged, node)


def _model_schema(preset: str) -> Any:
    """The model section's typed default: the named generator preset's config dataclass."""
    from sceneleap_core.models import GENERATOR_PRESETS

    if preset not in GENERATOR_PRESETS:
        raise ValueError(f"model_preset: expected one of {sorted(GENERATOR_PRESETS)}, got {preset!r}")
    value = GENERATOR_PRESETS[preset]
    cfg = value() if callable(value) and not is_dataclass(value) else value
    if not is_dataclass(cfg):
        raise ValueError(f"model_preset: preset {preset!r} does not give a config dataclass, got {type(cfg).__name__}")
    return cfg


def load_config(
    paths: str | Path | list[str | Path] | None = None,
    overrides: list[str] | None = None,
    *,
    base: dict | None = None,
) -> TrainConfig:
    """Compose and validate a training config.

    Args:
        paths: YAML file(s), merged in order.
        overrides: dotlist strings ``key.sub=value`` (the command line), merged last.
        base: a plain mapping merged first (e.g. the saved ``config.yaml`` of a run being resumed).

    Returns:
        A validated :class:`TrainConfig` whose ``model`` is the generator's config dataclass.

    Raises:
        ValueError: naming the key of any unknown key, mistyped or out-of-range value.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(paths, (str, Path)):
        paths = [paths]
    layers: list[tuple[str, Any]] = []
    if base is not None:
        layers.append(("resumed config", OmegaConf.create(base)))
    for p in paths or []:
        layers.append((str(p), _read_yaml(Path(p))))
    if overrides:
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override {item!r}: expected key=value (e.g. trainer.max_steps=100)")
        try:
            layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
        except OmegaConfBaseException as err:
            raise ValueError(f"command line overrides: {err}") from None

    # 1. the preset decides the model section's schema, so find it first (last layer wins)
    preset = TrainConfig.model_preset
    for _, layer in layers:
        preset = layer.get("model_preset", preset)
    schema = OmegaConf.structured(TrainConfig)
    schema.model = OmegaConf.structured(_model_schema(str(preset)))
    from sceneleap_core.models.losses import GraspLossConfig

    schema.aux_loss = OmegaConf.structured(GraspLossConfig())
    OmegaConf.set_struct(schema, True)

    # 2. merge layer by layer so an error names the file or the command line
    cfg = schema
    for source, layer in layers:
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, source) from None
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        raise _friendly(err, schema, "") from None
    validate_config(obj)
    return obj


def config_to_dict(cfg: TrainConfig) -> dict:
    """Plain nested dict (YAML/JSON-serializable) of a config, the model section included."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def save_config(cfg: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config as YAML, atomically."""
    import os

    from omegaconf import OmegaConf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg))))
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------------- validation
def init_from_dir(init_from: str) -> Path:
    """The model directory ``init_from`` names: ``bundled`` is the model shipped with the package."""
    if init_from == "bundled":
        from sceneleap_core.assets import DEFAULT_MODEL_DIR

        return DEFAULT_MODEL_DIR
    return Path(init_from)


def _check(ok: bool, key: str, expected: str, got: Any) -> None:
    if not ok:
        raise ValueError(f"{key}: expected {expected}, got {got!r}")


def _check_finite(section, prefix: str = "") -> None:
    """Every float field of a config dataclass (recursively) is finite: inf/NaN name their key."""
    for f in fields(section):
        value, key = getattr(section, f.name), prefix + f.name
        if is_dataclass(value):
            _check_finite(value, key + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite number, got {value!r}")


def validate_config(cfg: TrainConfig) -> None:
    """Range and choice checks that a type system cannot express. Raises ValueError naming the key."""
    d, a, o, e, v, t = cfg.data, cfg.data.augment, cfg.optim, cfg.ema, cfg.val, cfg.trainer
    _check_finite(cfg)  # lr=inf, aux_weight=inf, ... fail here, not mid-training
    _check(cfg.seed >= 0, "seed", "an int >= 0", cfg.seed)
    _check(bool(cfg.run_dir), "run_dir", "a directory path", cfg.run_dir)
    names = [s.strip() for s in cfg.logger.split(",") if s.strip()]
    _check(bool(names) and all(n in LOGGERS for n in names), "logger", f"a comma list of {LOGGERS}", cfg.logger)
    _check(d.num_points >= 16, "data.num_points", "an int >= 16", d.num_points)
    _check(d.num_grasps >= 1, "data.num_grasps", "an int >= 1", d.num_grasps)
    _check(d.center in CENTERS, "data.center", f"one of {CENTERS}", d.center)
    _check(d.frame in FRAMES, "data.frame", f"one of {FRAMES}", d.frame)
    _check(d.batch_size >= 1, "data.batch_size", "an int >= 1", d.batch_size)
    _check(d.num_workers >= 0, "data.num_workers", "an int >= 0", d.num_workers)
    _check(d.prefetch_factor >= 1, "data.prefetch_factor", "an int >= 1", d.prefetch_factor)
    _check(d.cache_size >= 0, "data.cache_size", "an int >= 0", d.cache_size)
    _check(d.source in ("shards", "compose"), "data.source", "'shards' or 'compose'", d.source)
    _check(
        d.source != "compose" or bool(d.library),
        "data.library",
        "a grasp library path (data.source=compose)",
        d.library,
    )
    _check(d.normalizer_samples >= 2, "data.normalizer_samples", "an int >= 2", d.normalizer_samples)
    _check(d.val_samples >= 0, "data.val_samples", "an int >= 0", d.val_samples)
    _check(cfg.trainer.max_minutes >= 0, "trainer.max_minutes", "a number >= 0", cfg.trainer.max_minutes)
    _check(d.train_samples >= 0, "data.train_samples", "an int >= 0", d.train_samples)
    _check(0.0 <= d.val_fraction < 1.0, "data.val_fraction", "a fraction in [0, 1)", d.val_fraction)
    _check(0.0 <= a.max_angle <= math.pi, "data.augment.max_angle", "an angle in [0, pi]", a.max_angle)
    _check(a.jitter_sigma >= 0, "data.augment.jitter_sigma", "a distance >= 0 (m)", a.jitter_sigma)
    _check(a.jitter_clip >= 0, "data.augment.jitter_clip", "a distance >= 0 (m)", a.jitter_clip)
    _check(0 < a.scale_min <= a.scale_max, "data.augment.scale_min", "0 < scale_min <= scale_max", a.scale_min)
    _check(0.0 <= a.dropout_prob <= 1.0, "data.augment.dropout_prob", "a probability in [0, 1]", a.dropout_prob)
    _check(a.dropout_holes >= 0, "data.augment.dropout_holes", "an int >= 0", a.dropout_holes)
    _check(a.dropout_radius >= 0, "data.augment.dropout_radius", "a distance >= 0 (m)", a.dropout_radius)
    _check(o.lr > 0, "optim.lr", "a learning rate > 0", o.lr)
    _check(o.weight_decay >= 0, "optim.weight_decay", "a value >= 0", o.weight_decay)
    _check(0 <= o.beta1 < 1, "optim.beta1", "a value in [0, 1)", o.beta1)
    _check(0 <= o.beta2 < 1, "optim.beta2", "a value in [0, 1)", o.beta2)
    _check(o.eps > 0, "optim.eps", "a value > 0", o.eps)
    _check(o.schedule in SCHEDULES, "optim.schedule", f"one of {SCHEDULES}", o.schedule)
    _check(o.warmup_steps >= 0, "optim.warmup_steps", "an int >= 0", o.warmup_steps)
    _check(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "a ratio in [0, 1]", o.min_lr_ratio)
    _check(o.grad_clip >= 0, "optim.grad_clip", "a norm >= 0 (0 disables)", o.grad_clip)
    _check(o.accumulate >= 1, "optim.accumulate", "an int >= 1", o.accumulate)
    _check(0 < e.decay < 1, "ema.decay", "a decay in (0, 1)", e.decay)
    _check(e.every >= 1, "ema.every", "an int >= 1", e.every)
    _check(e.start_step >= 0, "ema.start_step", "an int >= 0", e.start_step)
    _check(v.every >= 0, "val.every", "an int >= 0 (0 disables)", v.every)
    _check(v.batches >= 0, "val.batches", "an int >= 0", v.batches)
    _check(v.num_grasps >= 1, "val.num_grasps", "an int >= 1", v.num_grasps)
    _check(v.steps >= 1, "val.steps", "an int >= 1", v.steps)
    _check(v.temperature >= 0, "val.temperature", "a number >= 0 (the initial noise's scale)", v.temperature)
    _check(v.metric_points >= 1, "val.metric_points", "an int >= 1", v.metric_points)
    if v.evaluator is not None:
        evaluator_target(v.evaluator)
    _check(v.evaluator_every >= 1, "val.evaluator_every", "an int >= 1", v.evaluator_every)
    _check(v.evaluator_workers >= 1, "val.evaluator_workers", "an int >= 1", v.evaluator_workers)
    _check(t.max_steps >= 1, "trainer.max_steps", "an int >= 1", t.max_steps)
    _check(
        t.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"),
        "trainer.accelerator",
        "auto|cpu|gpu|cuda",
        t.accelerator,
    )
    ok_dev = t.devices == "auto" or (isinstance(t.devices, int) and (t.devices >= 1 or t.devices == -1))
    _check(ok_dev, "trainer.devices", "'auto', an int >= 1 or -1", t.devices)
    _check(t.num_nodes >= 1, "trainer.num_nodes", "an int >= 1", t.num_nodes)
    _check(t.precision in PRECISIONS, "trainer.precision", f"one of {PRECISIONS}", t.precision)
    _check(t.checkpoint_every >= 1, "trainer.checkpoint_every", "an int >= 1", t.checkpoint_every)
    _check(t.keep_checkpoints >= -1, "trainer.keep_checkpoints", "an int >= -1", t.keep_checkpoints)
    _check(t.log_every >= 1, "trainer.log_every", "an int >= 1", t.log_every)
    _check(is_dataclass(cfg.model), "model", "a generator config (set model_preset)", type(cfg.model).__name__)
    if hasattr(cfg.model, "validate"):  # the model package checks its own section; name keys as model.*
        try:
            cfg.model.validate()
        except ValueError as err:
            msg = str(err)
            prefix = type(cfg.model).__name__ + "."
            raise ValueError("model." + msg[len(prefix) :] if msg.startswith(prefix) else f"model: {msg}") from None
    _check(cfg.aux_weight >= 0, "aux_weight", "a weight >= 0 (0 disables)", cfg.aux_weight)
    _check(not cfg.init_from or (init_from_dir(cfg.init_from) / "config.json").is_file(), "init_from",
           "'', 'bundled' or a pretrained model directory (with config.json)", cfg.init_from)  # fmt: skip
    if hasattr(cfg.aux_loss, "validate"):
        try:
            cfg.aux_loss.validate()
        except ValueError as err:
            msg = str(err)
            prefix = type(cfg.aux_loss).__name__ + "."
            raise ValueError(
                "aux_loss." + msg[len(prefix) :] if msg.startswith(prefix) else f"aux_loss: {msg}"
            ) from None
    if cfg.model.grasp_dim != 3 + 16 + 6 and cfg.data.hand == "leap_hand_right":
        raise ValueError(f"model.grasp_dim: expected 25 for the LEAP Hand (3 + 16 + 6), got {cfg.model.grasp_dim}")
