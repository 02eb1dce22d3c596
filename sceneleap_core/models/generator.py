"""The grasp generator: point encoder + set denoiser + objective, its config, presets and files.

Shapes: B batch, N points, G grasps, D grasp width (25 = [t(3) | q(16) | r6d(6)], normalized
to [-1, 1]), M scene tokens, C scene-token channels.

    cfg = GeneratorConfig(encoder="pointnet2", denoiser="dit", objective="ddpm")
    model = build_generator(cfg)                  # or build_generator("dit_s")
    out = model.training_loss(points, grasps)     # {"loss", "pred_x0", ...}
    grasps = model.sample(points, num_grasps=32, steps=10, sampler="ddim")
    model.save_pretrained("ckpt/", normalizer=normalizer)
    model, normalizer, extra = GraspGenerator.load_pretrained("ckpt/")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from sceneleap_core.atomic import write_safetensors_atomic, write_text_atomic
from sceneleap_core.geometry.anchors import ANCHOR_MODES
from sceneleap_core.hand.representation import GraspNormalizer
from sceneleap_core.models.denoisers import DENOISERS, SceneCache
from sceneleap_core.models.denoising_loop import DenoisingLoop
from sceneleap_core.models.encoders import (
    ENCODERS,
    AnchorEncoder,
    LiteEncoder,
    PointNet2Encoder,
    PointTransformerEncoder,
)
from sceneleap_core.models.objectives import (
    OBJECTIVES,
    CVAEObjective,
    DiffusionObjective,
    FlowMatchingObjective,
    initial_noise,
)
from sceneleap_core.models.pointops import POINT_SAMPLERS
from sceneleap_core.models.schedulers import BETA_SCHEDULES, PREDICTION_TYPES

FORMAT = "sceneleap_core.GraspGenerator"
FORMAT_VERSION = 1
WEIGHTS_NAME, CONFIG_NAME = "model.safetensors", "config.json"


################################################################################
#                                   Config                                     #
################################################################################


@dataclass
class GeneratorConfig:
    """Every hyperparameter of a :class:`GraspGenerator` (saved as JSON beside the weights).

    Architecture: ``encoder`` (pointnet2 | ptv | lite), ``denoiser`` (dit | unet),
    ``objective`` (ddpm | flow | cvae). Diffusion: ``prediction`` (eps | x0 | v), ``schedule``
    (linear | cosine), ``num_train_timesteps``. Guidance: ``p_uncond`` (probability of
    training with the null scene). Sizes: ``d_model``, ``depth`` (DiT blocks), ``heads``,
    ``num_scene_tokens`` (M), ``scene_dim`` (C), ``encoder_points`` (points the encoder keeps
    of the raw cloud), ``encoder_width``. Anchors: ``anchor`` (``none``: grasps in the network
    frame; ``seed``: each grasp token is conditioned on an input point and its translation is
    relative to it, :mod:`sceneleap_core.geometry.anchors`), ``anchor_knn`` and ``anchor_scale``
    (m) of the local patch around each anchor, ``anchor_region_knn`` and ``anchor_region_scale``
    (m) of a sparser hand-sized region around it (0 = none), ``anchor_scene`` (also interpolate the
    scene encoder's tokens at each anchor), ``anchor_score_weight`` (weight of the anchor score's
    binary cross-entropy: where on the cloud would a ground-truth grasp be anchored).
    Loss: ``pose_loss_weight``, the weight of the palm pose's dimensions (translation and 6D
    rotation) relative to the joints' in the training loss (the mean weight stays 1).
    Deployment: ``sampler``, the sampler this model is deployed with when a caller names none
    ("" = the objective's default; chosen by measurement, recorded in the model card).
    """

    encoder: str = "pointnet2"
    denoiser: str = "dit"
    objective: str = "ddpm"
    prediction: str = "eps"
    schedule: str = "cosine"
    num_train_timesteps: int = 100
    p_uncond: float = 0.1
    grasp_dim: int = 25
    # denoiser
    d_model: int = 384
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0
    unet_mults: tuple[int, ...] = (1, 2)
    pe_freqs: int = 6
    grad_checkpointing: bool = False
    # encoder
    num_scene_tokens: int = 128
    scene_dim: int = 256
    encoder_points: int = 2048
    encoder_width: int = 128
    knn: int = 16
    point_sampler: str = "voxel"
    centre_sampler: str = "fps"
    # objectives
    clip_x0: bool = True
    flow_time_sampling: str = "uniform"
    flow_shift: float = 1.0
    cvae_latent_dim: int = 16
    cvae_kl_weight: float = 1e-2
    # anchors
    anchor: str = "none"
    anchor_knn: int = 32
    anchor_scale: float = 0.05
    anchor_region_knn: int = 0
    anchor_region_scale: float = 0.1
    anchor_scene: bool = False
    anchor_score_weight: float = 0.1
    # loss
    pose_loss_weight: float = 1.0
    # deployment
    sampler: str = ""
    tags: dict = field(default_factory=dict)  # free-form labels (experiment name, data version), saved as is

    def _fail(self, key: str, expected: str) -> None:
        raise ValueError(f"GeneratorConfig.{key}: expected {expected}, got {getattr(self, key)!r}")

    def validate(self) -> GeneratorConfig:
        """Check every field; raise ValueError naming the first bad key. Returns self."""
        for key, choices in (
            ("encoder", tuple(ENCODERS)),
            ("denoiser", tuple(DENOISERS)),
            ("objective", tuple(OBJECTIVES)),
            ("prediction", PREDICTION_TYPES),
            ("schedule", BETA_SCHEDULES),
            ("point_sampler", POINT_SAMPLERS),
            ("centre_sampler", POINT_SAMPLERS),
            ("flow_time_sampling", ("uniform", "logit_normal")),
            ("anchor", ANCHOR_MODES),
            ("sampler", ("", "ddpm", "ddim", "dpmpp", "euler", "heun", "cvae")),
        ):
            if getattr(self, key) not in choices:
                self._fail(key, f"one of {choices}")
        for key in ("num_train_timesteps", "grasp_dim", "d_model", "depth", "heads", "num_scene_tokens", "scene_dim",
                    "encoder_points", "encoder_width", "knn", "pe_freqs", "cvae_latent_dim", "anchor_knn"):  # fmt: skip
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                self._fail(key, "a positive int")
        if self.num_train_timesteps < 2:
            self._fail("num_train_timesteps", ">= 2")
        if not 0.0 <= self.p_uncond < 1.0:
            self._fail("p_uncond", "a probability in [0, 1)")
        if self.d_model % self.heads:
            self._fail("d_model", f"a multiple of heads={self.heads}")
        for key in ("p_uncond", "mlp_ratio", "flow_shift", "cvae_kl_weight", "anchor_scale", "anchor_region_scale",
                    "anchor_score_weight", "pose_loss_weight"):  # fmt: skip
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                self._fail(key, "a finite number")
        for key in ("anchor_scale", "anchor_region_scale"):
            if getattr(self, key) <= 0:
                self._fail(key, "a length > 0 (m)")
        if isinstance(self.anchor_region_knn, bool) or not isinstance(self.anchor_region_knn, int) or self.anchor_region_knn < 0:
            self._fail("anchor_region_knn", "an int >= 0")
        if not isinstance(self.anchor_scene, bool):
            self._fail("anchor_scene", "a bool")
        if self.anchor_score_weight < 0:
            self._fail("anchor_score_weight", ">= 0")
        if self.pose_loss_weight <= 0:
            self._fail("pose_loss_weight", "a finite number > 0")
        if self.mlp_ratio <= 0 or self.flow_shift <= 0 or self.cvae_kl_weight < 0:
            self._fail(
                "mlp_ratio" if self.mlp_ratio <= 0 else "flow_shift" if self.flow_shift <= 0 else "cvae_kl_weight",
                "> 0",
            )
        if not self.unet_mults or any(not isinstance(m, int) or m < 1 for m in self.unet_mults):
            self._fail("unet_mults", "a non-empty tuple of positive ints")
        if self.denoiser == "unet" and any((self.d_model * m) % self.heads for m in self.unet_mults):
            self._fail("unet_mults", f"d_model * mult divisible by heads={self.heads}")
        if self.encoder_points < self.num_scene_tokens:
            self._fail("encoder_points", f">= num_scene_tokens={self.num_scene_tokens}")
        if self.encoder == "ptv":
            ratio = self.encoder_points // self.num_scene_tokens
            if self.encoder_points % self.num_scene_tokens or (ratio > 1 and ratio % 2 and ratio != 3):
                self._fail(
                    "encoder_points",
                    f"num_scene_tokens={self.num_scene_tokens} times 1, 3 or an even number (ptv pools by 2, then the rest)",
                )
        if self.encoder_width < 8 or self.encoder_width % 8:
            self._fail("encoder_width", "a multiple of 8")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        """Build from a dict (e.g. parsed JSON/YAML); unknown keys raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"GeneratorConfig: expected a dict, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"GeneratorConfig: expected keys among {sorted(known)}, got unknown {unknown}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data).validate()

    def replace(self, **changes) -> GeneratorConfig:
        """A validated copy with some fields changed."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"GeneratorConfig: unknown keys {unknown}")
        return dataclasses.replace(self, **changes).validate()


def _split_state(state: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    """``state`` in key order, cut into groups of at most ``max_bytes`` (a larger tensor is a group
    of its own); one group when ``max_bytes`` is None."""
    if max_bytes is None:
        return [state]
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append({})
            size = 0
        groups[-1][key] = tensor
        size += nbytes
    return groups


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


################################################################################
#                                   Presets                                    #
################################################################################


def dit_s(**kw) -> GeneratorConfig:
    """Default: PointNet++ (2048 pts -> 512 -> 128 tokens) + DiT d384 x 6, 6 heads (~13 M params)."""
    return GeneratorConfig(**kw).validate()


def dit_b(**kw) -> GeneratorConfig:
    """DiT d512 x 8, 8 heads."""
    return GeneratorConfig(**{"d_model": 512, "depth": 8, "heads": 8, **kw}).validate()


def dit_upstream(**kw) -> GeneratorConfig:
    """The upstream research size: DiT d512 x 12, 8 heads, 128 scene tokens."""
    return GeneratorConfig(**{"d_model": 512, "depth": 12, "heads": 8, **kw}).validate()


def dit_s_flow(**kw) -> GeneratorConfig:
    """dit_s trained by rectified flow (Euler/Heun sampling)."""
    return GeneratorConfig(**{"objective": "flow", **kw}).validate()


def ptv_s(**kw) -> GeneratorConfig:
    """Serialized-attention point transformer (1024 pts -> 128 tokens) + DiT-S."""
    return GeneratorConfig(**{"encoder": "ptv", "encoder_points": 1024, **kw}).validate()


def unet_s(**kw) -> GeneratorConfig:
    """PointNet++ + UNet-style denoiser, widths 256 / 512, 4 heads."""
    return GeneratorConfig(**{"denoiser": "unet", "d_model": 256, "heads": 4, "unet_mults": (1, 2), **kw}).validate()


def cvae_s(**kw) -> GeneratorConfig:
    """CVAE baseline: PointNet++ + DiT-S decoder, one network call per sample."""
    return GeneratorConfig(**{"objective": "cvae", **kw}).validate()


def lite(**kw) -> GeneratorConfig:
    """For CPUs and small GPUs: lite encoder (64 tokens) + DiT d256 x 4, 4 heads."""
    size = dict(num_scene_tokens=64, scene_dim=192, encoder_width=96, d_model=256, depth=4, heads=4)
    return GeneratorConfig(**{"encoder": "lite", **size, **kw}).validate()


def tiny(**kw) -> GeneratorConfig:
    """Test size: seconds on one CPU core."""
    size = dict(num_scene_tokens=16, scene_dim=32, encoder_points=64, encoder_width=32, knn=8)
    size.update(d_model=32, depth=2, heads=2, mlp_ratio=2.0, pe_freqs=4, cvae_latent_dim=8)
    return GeneratorConfig(**{"encoder": "lite", **size, **kw}).validate()


GENERATOR_PRESETS: dict[str, Callable[..., GeneratorConfig]] = {
    "dit_s": dit_s,
    "dit_b": dit_b,
    "dit_upstream": dit_upstream,
    "dit_s_flow": dit_s_flow,
    "ptv_s": ptv_s,
    "unet_s": unet_s,
    "cvae_s": cvae_s,
    "lite": lite,
    "tiny": tiny,
}


################################################################################
#                                   Builders                                   #
################################################################################


def build_encoder(cfg: GeneratorConfig) -> nn.Module:
    """The point encoder named by ``cfg.encoder``, sized by the config."""
    m, w, k = cfg.num_scene_tokens, cfg.encoder_width, cfg.knn
    if cfg.encoder == "pointnet2":
        mid = max(m, min(cfg.encoder_points, 4 * m))
        return PointNet2Encoder(
            out_dim=cfg.scene_dim, num_points=cfg.encoder_points, npoints=(mid, m),
            nsamples=((k, 2 * k), (k, 2 * k)), widths=(w, 2 * w),
            sampler=cfg.centre_sampler, presampler=cfg.point_sampler,
        )  # fmt: skip
    if cfg.encoder == "ptv":
        ratio = cfg.encoder_points // m
        strides = () if ratio == 1 else (ratio,) if ratio % 2 else (2,) if ratio == 2 else (2, ratio // 2)
        widths = (w // 2, w, 2 * w)[-(len(strides) + 1) :]
        counts = [cfg.encoder_points]
        for st in strides:
            counts.append(counts[-1] // st)
        patch = math.gcd(64, *counts)
        return PointTransformerEncoder(
            out_dim=cfg.scene_dim, num_points=cfg.encoder_points, widths=widths,
            depths=(1, 1, 2)[-len(widths) :], heads=tuple(max(1, x // 32) for x in widths),
            strides=strides, patch_size=patch, knn=k, sampler=cfg.point_sampler,
        )  # fmt: skip
    return LiteEncoder(out_dim=cfg.scene_dim, num_tokens=m, knn=k, width=w, sampler=cfg.point_sampler)


def build_denoiser(cfg: GeneratorConfig) -> nn.Module:
    in_dim = cfg.cvae_latent_dim if cfg.objective == "cvae" else cfg.grasp_dim
    common = dict(in_dim=in_dim, out_dim=cfg.grasp_dim, scene_dim=cfg.scene_dim, d_model=cfg.d_model,
                  heads=cfg.heads, mlp_ratio=cfg.mlp_ratio, pe_freqs=cfg.pe_freqs,
                  grad_checkpointing=cfg.grad_checkpointing)  # fmt: skip
    if cfg.denoiser == "dit":
        return DENOISERS["dit"](depth=cfg.depth, **common)
    return DENOISERS["unet"](mults=tuple(cfg.unet_mults), **common)


def build_anchor_encoder(cfg: GeneratorConfig, token_width: int) -> nn.Module | None:
    """The per-grasp anchor encoder (``anchor == "seed"``), or None."""
    if cfg.anchor == "none":
        return None
    return AnchorEncoder(token_width, knn=cfg.anchor_knn, scale=cfg.anchor_scale,
                         width=cfg.encoder_width, pe_freqs=cfg.pe_freqs,
                         region_knn=cfg.anchor_region_knn, region_scale=cfg.anchor_region_scale,
                         scene_dim=cfg.scene_dim if cfg.anchor_scene else 0)  # fmt: skip


def pose_loss_weights(cfg: GeneratorConfig) -> torch.Tensor | None:
    """(D,) per-dimension loss weights of the grasp vector [translation (3) | joints | rotation 6D (6)]
    (:mod:`sceneleap_core.hand.representation`): ``pose_loss_weight`` on the palm pose's 9
    dimensions, 1 on the joints, rescaled to a mean of 1; None when the weight is 1 (plain MSE)."""
    if cfg.pose_loss_weight == 1.0:
        return None
    if cfg.grasp_dim < 9:
        raise ValueError(f"pose_loss_weight: needs a grasp vector with translation and 6D rotation, grasp_dim={cfg.grasp_dim}")
    w = torch.ones(cfg.grasp_dim)
    w[:3] = w[-6:] = float(cfg.pose_loss_weight)
    return w * (cfg.grasp_dim / w.sum())


def build_objective(cfg: GeneratorConfig) -> nn.Module:
    if cfg.objective == "ddpm":
        return DiffusionObjective(cfg.num_train_timesteps, cfg.schedule, cfg.prediction, cfg.clip_x0)
    if cfg.objective == "flow":
        return FlowMatchingObjective(cfg.flow_time_sampling, cfg.flow_shift)
    return CVAEObjective(cfg.grasp_dim, cfg.cvae_latent_dim, cfg.d_model, kl_weight=cfg.cvae_kl_weight)


def build_generator(config: GeneratorConfig | str | dict | None = None, **overrides) -> GraspGenerator:
    """A :class:`GraspGenerator` from a config, a preset name (``GENERATOR_PRESETS``), a dict,
    or None (the default config); ``overrides`` replace config fields."""
    if config is None:
        config = GeneratorConfig(**overrides).validate()
    elif isinstance(config, str):
        if config not in GENERATOR_PRESETS:
            raise ValueError(f"preset: expected one of {sorted(GENERATOR_PRESETS)}, got {config!r}")
        config = GENERATOR_PRESETS[config](**overrides)
    elif isinstance(config, dict):
        config = GeneratorConfig.from_dict({**config, **overrides})
    elif isinstance(config, GeneratorConfig):
        config = config.replace(**overrides) if overrides else config.validate()
    else:
        raise ValueError(f"config: expected a GeneratorConfig, preset name or dict, got {type(config).__name__}")
    return GraspGenerator(config)


################################################################################
#                                   Model                                      #
################################################################################


def _check_points(points: torch.Tensor) -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] != 3:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points: expected a (B, N, 3) tensor, got {shape}")
    if not points.is_floating_point():
        raise ValueError(f"points: expected a floating-point tensor, got {points.dtype}")


class GraspGenerator(nn.Module):
    """Scene cloud -> set of G grasps: ``encoder`` + ``denoiser`` + ``objective`` (schedulers are
    built on demand for sampling and own no parameters).

    Args:
        config: a validated :class:`GeneratorConfig`.
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = (config or GeneratorConfig()).validate()
        self.encoder = build_encoder(self.config)
        self.denoiser = build_denoiser(self.config)
        width = self.denoiser.x_embed.out_features
        self.anchor_encoder = build_anchor_encoder(self.config, width)
        self.anchor_score = (
            nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1)) if self.anchored else None
        )
        self.objective = build_objective(self.config)
        self.register_buffer("loss_weight", pose_loss_weights(self.config), persistent=False)  # (D,) or None

    @property
    def grasp_dim(self) -> int:
        return self.config.grasp_dim

    @property
    def anchored(self) -> bool:
        """True when every grasp is conditioned on, and relative to, an anchor point."""
        return self.anchor_encoder is not None

    def _check_anchors(self, points: torch.Tensor, anchors: torch.Tensor | None) -> None:
        if not self.anchored:
            if anchors is not None:
                raise ValueError("anchors: this generator has anchor='none'; pass anchors=None")
            return
        if anchors is None:
            raise ValueError("anchors: expected (B, G, 3) anchor points for a generator with anchor='seed', got None")
        if (
            not isinstance(anchors, torch.Tensor)
            or anchors.dim() != 3
            or anchors.shape[-1] != 3
            or anchors.shape[0] != points.shape[0]
        ):
            shape = tuple(anchors.shape) if isinstance(anchors, torch.Tensor) else type(anchors).__name__
            raise ValueError(f"anchors: expected shape ({points.shape[0]}, G, 3), got {shape}")

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts of encoder, denoiser, objective (CVAE posterior) and the total."""
        counts = {
            name: sum(p.numel() for p in getattr(self, name).parameters())
            for name in ("encoder", "denoiser", "objective")
        }
        if self.anchored:
            counts["anchor_encoder"] = sum(p.numel() for p in self.anchor_encoder.parameters())
            counts["anchor_encoder"] += sum(p.numel() for p in self.anchor_score.parameters())
        counts["total"] = sum(counts.values())
        return counts

    # ------------------------------------------------------------------ tensor core
    def encode_scene(
        self,
        points: torch.Tensor,
        drop=None,
        generator: torch.Generator | None = None,
        anchors: torch.Tensor | None = None,
        *,
        deterministic: bool | None = None,
    ) -> SceneCache:
        """Points (B, N, 3) -> the denoiser's :class:`SceneCache` (encoder + cross-attention K/V,
        and the anchor features of ``anchors`` (B, G, 3) for anchored generators).
        ``drop``: None, bool, or a (B,) bool mask of items conditioned on the null scene."""
        _check_points(points)
        self._check_anchors(points, anchors)
        kwargs = {"generator": generator} if deterministic is None else {"deterministic": deterministic}
        tokens, xyz = self.encoder(points, **kwargs)  # (B, M, C), (B, M, 3)
        return self._cache(points, tokens, xyz, drop, anchors)

    def _cache(self, points, tokens, xyz, drop, anchors, anchor_features=None) -> SceneCache:
        """The :class:`SceneCache`; ``anchor_features`` (B, G, D0): the anchor encoder's output for
        ``anchors`` when the caller has it (the planner's scored pool), used for the conditional
        cache (``drop`` None) instead of encoding the anchors again."""
        cache = self.denoiser.precompute_scene(tokens, xyz, drop)
        if self.anchored and anchor_features is not None and drop is None:
            cache.anchor = anchor_features
        elif self.anchored:
            mask = drop if drop is None or isinstance(drop, torch.Tensor) else torch.full(
                (points.shape[0],), bool(drop), dtype=torch.bool, device=points.device)  # fmt: skip
            cache.anchor = self.anchor_encoder(points, anchors, mask, (tokens, xyz))  # (B, G, D0)
        return cache

    def score_anchors(
        self,
        points: torch.Tensor,
        candidates: torch.Tensor,
        scene: tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        return_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Anchor score logits (B, C) of candidate points (B, C, 3) of clouds (B, N, 3): how likely a
        ground-truth grasp is anchored there (anchored generators only). ``scene``: the encoder's
        (tokens, xyz) of these clouds when the caller has them (else encoded here if needed).
        ``return_features``: also the anchor encoder's features (B, C, D0) of the candidates, which
        :meth:`sample` takes back (``anchor_features``) for the candidates it keeps: each anchor's
        feature depends on that anchor alone, so a kept one need not be encoded twice."""
        if not self.anchored:
            raise ValueError("score_anchors: this generator has anchor='none' (no anchor score)")
        _check_points(points)
        self._check_anchors(points, candidates)
        if scene is None and self.anchor_encoder.needs_scene:
            scene = self.encoder(points, deterministic=True)
        features = self.anchor_encoder(points, candidates, None, scene)  # (B, C, D0)
        logits = self.anchor_score(features).squeeze(-1).float()
        return (logits, features) if return_features else logits

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, points: torch.Tensor, anchors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One uncached network evaluation: x_t (B, G, Din), model time t (B,), points (B, N, 3)
        (anchors (B, G, 3) for anchored generators) -> (B, G, D). For export and tests; sampling
        uses the cached path."""
        return self.denoiser(x_t, t, self.encode_scene(points, anchors=anchors))

    def training_loss(
        self,
        points: torch.Tensor,
        grasps: torch.Tensor,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
        *,
        cond_drop: torch.Tensor | bool | None = None,
        anchors: torch.Tensor | None = None,
        candidates: torch.Tensor | None = None,
        candidate_labels: torch.Tensor | None = None,
    ) -> dict:
        """Objective loss on one batch.

        Recipe: 1. drop the scene of each item with probability ``p_uncond`` (null condition);
        2. encode the scene and precompute K/V; 3. corrupt the grasps (objective.prepare);
        4. run the denoiser; 5. score it (objective.loss).

        Args:
            points: (B, N, 3) scene clouds (normalized/centred by the data pipeline).
            grasps: (B, G, D) normalized grasp vectors.
            generator: for dropout, timesteps, noise and randomized point sampling (same device).
            mask: (B, G) bool, True for real grasps of padded sets (padding is ignored by the
                self-attention and the loss); None = all real.
            cond_drop: override of step 1: a (B,) bool mask or a bool for the whole batch (True =
                null scene); None draws it with probability ``p_uncond`` (training). Diagnostics
                pass False (real cloud) and True (blanked cloud) to measure the conditioning gap.
            anchors: (B, G, 3) anchor point of each grasp (anchored generators; ``grasps`` then
                hold translations relative to them, :func:`sceneleap_core.hand.anchor_relative`).
            candidates, candidate_labels: (B, C, 3) points and (B, C) 0/1 labels of the anchor
                score; its binary cross-entropy (``anchor_bce``) is added with ``anchor_score_weight``.

        Returns:
            dict with ``loss`` (scalar), ``pred_x0`` (B, G, D), ``signal`` (B,) the signal share of
            x_t (abar_t: ~1 at the last denoising steps, ~0 at pure noise), ``cond_dropped`` (B,)
            bool, ``t`` (B,) model time, and the objective's named terms (detached).
        """
        _check_points(points)
        if grasps.dim() != 3 or grasps.shape[-1] != self.grasp_dim or grasps.shape[0] != points.shape[0]:
            raise ValueError(
                f"grasps: expected shape ({points.shape[0]}, G, {self.grasp_dim}) to match points {tuple(points.shape)}, "
                f"got {tuple(grasps.shape)}"
            )
        if mask is not None and mask.shape != grasps.shape[:2]:
            raise ValueError(f"mask: expected shape (B, G) = {tuple(grasps.shape[:2])}, got {tuple(mask.shape)}")
        b = points.shape[0]
        # 1. classifier-free guidance dropout
        if cond_drop is None:
            drop = torch.rand(b, generator=generator, device=points.device) < self.config.p_uncond
        else:
            drop = torch.as_tensor(cond_drop, device=points.device).expand(b).clone()
        # 2. scene cache
        self._check_anchors(points, anchors)
        tokens, xyz = self.encoder(points, generator=generator)  # (B, M, C), (B, M, 3)
        cache = self._cache(points, tokens, xyz, drop, anchors)
        if anchors is not None and anchors.shape[1] != grasps.shape[1]:
            raise ValueError(f"anchors: expected one per grasp, {grasps.shape[1]}, got {anchors.shape[1]}")
        # 3. objective input and target
        batch = self.objective.prepare(grasps, cache.cond, generator)
        # 4.-5. network and loss
        out = self.objective.loss(self.denoiser(batch.x_in, batch.t, cache, mask), batch, mask, self.loss_weight)
        out["cond_dropped"] = drop
        out["t"] = batch.t
        if candidates is not None and self.anchored and self.config.anchor_score_weight > 0:
            if candidate_labels is None or candidate_labels.shape != candidates.shape[:2]:
                raise ValueError(f"candidate_labels: expected shape {tuple(candidates.shape[:2])}, got "
                                 f"{None if candidate_labels is None else tuple(candidate_labels.shape)}")  # fmt: skip
            logits = self.score_anchors(points, candidates, (tokens, xyz))  # (B, C)
            bce = F.binary_cross_entropy_with_logits(logits, candidate_labels.float())
            out["loss"] = out["loss"] + self.config.anchor_score_weight * bce
            out["anchor_bce"] = bce.detach()
        return out

    # ------------------------------------------------------------------ sampling
    def make_scheduler(self, sampler: str | None = None, *, eta: float = 0.0):
        """The scheduler ``sampler`` (``ddpm``/``ddim``/``dpmpp`` for ddpm, ``euler``/``heun`` for
        flow, ``cvae``), configured from this model; None = :attr:`default_sampler`."""
        return self.objective.make_scheduler(sampler or self.default_sampler, eta=eta)

    @property
    def default_sampler(self) -> str:
        """The sampler used when a caller names none: the config's ``sampler`` (the deployed one),
        else the objective's default."""
        return self.config.sampler or self.objective.default_sampler

    @torch.no_grad()
    def sample(
        self,
        points: torch.Tensor,
        num_grasps: int = 32,
        steps: int = 10,
        sampler: str | None = None,
        guidance_scale: float = 1.0,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        *,
        batched_guidance: bool = True,
        anchors: torch.Tensor | None = None,
        scene: tuple[torch.Tensor, torch.Tensor] | None = None,
        temperature: float = 1.0,
        anchor_features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample G grasps per scene. Call ``model.eval()`` first (dropout-free).

        Args:
            points: (B, N, 3) scene clouds.
            num_grasps: G.
            steps: scheduler steps (ignored by the CVAE).
            sampler: ``dpmpp`` (default for ddpm), ``ddim``, ``ddpm``; ``euler`` (default for
                flow), ``heun``; ``cvae``.
            guidance_scale: classifier-free guidance w (1 = conditional only, no extra pass).
            eta: DDIM stochasticity.
            generator: noise source (same device as points).
            anchors: (B, G, 3) anchor points (anchored generators; G = their count, ``num_grasps``
                is ignored): the samples' translations are relative to them.
            scene: the encoder's (tokens (B, M, C), xyz (B, M, 3)) of ``points`` when the caller
                already has them (e.g. from scoring anchors); None encodes the clouds here.
            temperature: scale of the initial noise (:func:`initial_noise`); below 1 the samples
                move toward the modes of the learned distribution (fewer, surer grasps per anchor).
            anchor_features: (B, G, D0) the anchor encoder's features of ``anchors`` when the caller
                has them (:meth:`score_anchors` with ``return_features``); None encodes them here.

        Returns:
            (B, G, D) normalized grasp vectors (denormalize with the checkpoint's normalizer).
        """
        _check_points(points)
        self._check_anchors(points, anchors)
        if anchors is not None:
            num_grasps = anchors.shape[1]
        if num_grasps < 1 or steps < 1:
            raise ValueError(f"num_grasps/steps: expected >= 1, got {num_grasps}/{steps}")
        if anchor_features is not None and (anchors is None or anchor_features.shape[:2] != anchors.shape[:2]):
            raise ValueError(f"anchor_features: expected (B, G, D0) for anchors {None if anchors is None else tuple(anchors.shape)}, "
                             f"got {tuple(anchor_features.shape)}")  # fmt: skip
        scheduler = self.make_scheduler(sampler, eta=eta)
        tokens, xyz = self.encoder(points, deterministic=True) if scene is None else scene  # once per cloud
        cache = self._cache(points, tokens, xyz, None, anchors, anchor_features)
        null = self._cache(points, tokens, xyz, True, anchors) if guidance_scale != 1.0 else None
        x_init = initial_noise(self.objective, (points.shape[0], num_grasps, self.grasp_dim), cache.cond, generator,
                               temperature)  # fmt: skip
        runner = DenoisingLoop(
            self.denoiser, self.objective, scheduler, guidance_scale=guidance_scale, batched_guidance=batched_guidance
        )
        return runner(cache, x_init, num_inference_steps=steps, null_cache=null, generator=generator)

    # ------------------------------------------------------------------ files
    def save_pretrained(
        self,
        directory: str | Path,
        normalizer: GraspNormalizer | None = None,
        extra_config: dict | None = None,
        *,
        dtype: torch.dtype | None = None,
        max_shard_bytes: int | None = None,
    ) -> Path:
        """Write the weights and ``config.json`` (config, normalizer statistics, extra, weight file
        digests) into ``directory`` atomically (temp file + rename). Returns the directory.

        Args:
            dtype: store floating-point tensors in this dtype (``torch.float16`` halves a shipped
                model; loading casts back to the model's float32). None = as they are.
            max_shard_bytes: split the weights into ``model-0000k-of-0000n.safetensors`` files of at
                most about this many bytes (a tensor is never split); None = one ``model.safetensors``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating-point torch dtype, got {dtype}")
        if max_shard_bytes is not None and max_shard_bytes < 1:
            raise ValueError(f"max_shard_bytes: expected >= 1 or None, got {max_shard_bytes}")
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "normalizer": None if normalizer is None else normalizer.to_dict(),
            "extra": extra_config or {},
        }
        try:
            json.dumps(meta)
        except TypeError as err:
            raise ValueError(f"extra_config: expected JSON-serializable values, got {err}") from None
        state = {}
        for k, v in self.state_dict().items():
            v = v.detach().contiguous().cpu()
            state[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
        shards = _split_state(state, max_shard_bytes)
        names = (
            [WEIGHTS_NAME]
            if max_shard_bytes is None
            else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        )
        files = []
        for name, shard in zip(names, shards):
            write_safetensors_atomic(directory / name, shard, metadata={"format": FORMAT})
            files.append({"file": name, "sha256": _sha256(directory / name)})  # checked on load: a flipped byte
        if max_shard_bytes is None:
            meta["weights_sha256"] = files[0]["sha256"]
        else:
            meta["weights"] = files
        meta["weights_dtype"] = str(dtype or torch.float32).removeprefix("torch.")
        write_text_atomic(directory / CONFIG_NAME, json.dumps(meta, indent=1))
        for old in directory.glob("model*.safetensors"):  # a previous save's other layout, now unreferenced
            if old.name not in names:
                old.unlink()
        return directory

    @classmethod
    def load_pretrained(
        cls, directory: str | Path, *, device: str | torch.device = "cpu", strict: bool = True
    ) -> tuple[GraspGenerator, GraspNormalizer | None, dict]:
        """Load a directory written by :meth:`save_pretrained` (no pickle anywhere).

        Returns:
            (model on ``device`` in eval mode, normalizer or None, extra_config dict).
        """
        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            raise ValueError(f"checkpoint: expected {CONFIG_NAME} in {directory}, got no such file")
        try:
            meta = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"checkpoint: cannot read {cfg_path}: {err}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(
                f"checkpoint: expected format {FORMAT!r} in {cfg_path}, got {meta.get('format') if isinstance(meta, dict) else meta!r}"
            )
        version = meta.get("format_version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= FORMAT_VERSION:
            raise ValueError(
                f"checkpoint: expected an int format_version <= {FORMAT_VERSION} in {cfg_path}, got {version!r}"
            )
        if not isinstance(meta.get("config"), dict):
            raise ValueError(f"checkpoint: expected a 'config' object in {cfg_path}, got keys {sorted(meta)}")
        try:
            config = GeneratorConfig.from_dict(meta["config"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"checkpoint: {cfg_path}: {err}") from None
        files = meta.get("weights")
        if files is None:  # one file; its digest is absent in directories written before it was recorded
            files = [{"file": WEIGHTS_NAME, "sha256": meta.get("weights_sha256")}]
        elif not (isinstance(files, list) and files and all(isinstance(f, dict) and "file" in f for f in files)):
            raise ValueError(f"checkpoint: expected 'weights' as a list of {{file, sha256}} in {cfg_path}, got {files!r}")
        model = cls(config)
        state = {}
        for entry in files:
            weights_path = directory / str(entry["file"])
            if weights_path.parent != directory or not weights_path.is_file():
                raise ValueError(f"checkpoint: expected {entry['file']} in {directory}, got no such file")
            try:
                part = load_file(str(weights_path), device=str(device))
            except (SafetensorError, OSError) as err:
                raise ValueError(f"checkpoint: cannot read {weights_path}: {err}") from None
            if entry.get("sha256") is not None and _sha256(weights_path) != entry["sha256"]:
                raise ValueError(
                    f"checkpoint: {weights_path} does not match its sha256 in {cfg_path} (corrupt or replaced)"
                )
            overlap = state.keys() & part.keys()
            if overlap:
                raise ValueError(f"checkpoint: {weights_path} repeats tensors {sorted(overlap)[:3]}")
            state.update(part)
        try:
            model.load_state_dict(state, strict=strict)
        except RuntimeError as err:
            raise ValueError(f"checkpoint: weights do not match the config in {cfg_path}: {err}") from None
        normalizer = None if meta.get("normalizer") is None else GraspNormalizer.from_dict(meta["normalizer"])
        model = model.to(device).eval()
        if normalizer is not None:
            normalizer = normalizer.to(device)
        return model, normalizer, meta.get("extra", {})
