"""Denoisers over a set of G grasp tokens conditioned on scene tokens: DiT and a UNet-style net.

Shape letters: B batch, G grasps, M scene tokens, C scene-token channels, D width, H heads,
Dh = D / H head width, Din / Dout grasp-vector widths (25 for the LEAP Hand).

Inference caching: the scene enters once through :meth:`precompute_scene`, which projects the
scene tokens, adds the 3D positional encoding, and computes every cross-attention layer's keys
and values; the per-step :meth:`forward` only runs the grasp-token path::

    cache = denoiser.precompute_scene(tokens, xyz)          # once per cloud
    for t in timesteps:
        out = denoiser(x_t, t, cache)                         # (B, G, Dout)

Classifier-free guidance: ``precompute_scene(..., drop=mask)`` replaces the scene of the masked
batch items by a learned null token (shapes unchanged, no host sync), which is what training
uses with probability ``p_uncond`` and what sampling uses for the unconditional branch.
Grasp tokens carry no positional embedding: the denoiser is permutation-equivariant over G.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from sceneleap_core.models.encoders import fourier_features


@dataclass
class SceneCache:
    """Per-cloud conditioning, computed once by ``precompute_scene`` and reused every step.

    Attributes:
        kv: per cross-attention layer, keys and values (B, H, M, Dh) each.
        cond: (B, D) global scene vector added to the timestep embedding.
        anchor: (B, G, D0) per-grasp anchor features added to the grasp tokens (generators with
            anchors), or None.
    """

    kv: list[tuple[torch.Tensor, torch.Tensor]]
    cond: torch.Tensor
    anchor: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.cond.shape[0]

    def cat(self, other: SceneCache) -> SceneCache:
        """Concatenate along B (e.g. conditional and null caches for batched guidance)."""
        return SceneCache(
            [(torch.cat([k1, k2]), torch.cat([v1, v2])) for (k1, v1), (k2, v2) in zip(self.kv, other.kv)],
            torch.cat([self.cond, other.cond]),
            None if self.anchor is None else torch.cat([self.anchor, other.anchor]),
        )

    def to_tuple(self) -> tuple[torch.Tensor, ...]:
        """Flat tensors (cond, k_0, v_0, k_1, v_1, ..., [anchor]) for tensor-only entry points (ONNX)."""
        tail = () if self.anchor is None else (self.anchor,)
        return (self.cond, *[t for kv in self.kv for t in kv], *tail)

    @classmethod
    def from_tuple(cls, tensors: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> SceneCache:
        """Inverse of :meth:`to_tuple` (an even count carries the anchor features last)."""
        if len(tensors) < 3:
            raise ValueError(f"SceneCache.from_tuple: expected cond plus (k, v) pairs, got {len(tensors)} tensors")
        anchor = tensors[-1] if len(tensors) % 2 == 0 else None
        body = tensors[:-1] if anchor is not None else tensors
        return cls([(body[i], body[i + 1]) for i in range(1, len(body), 2)], body[0], anchor)

    def repeat_interleave(self, n: int) -> SceneCache:
        """Repeat every batch item n times (B -> B n)."""
        return SceneCache(
            [(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in self.kv],
            self.cond.repeat_interleave(n, 0),
            None if self.anchor is None else self.anchor.repeat_interleave(n, 0),
        )


# a pytree node: torch.compile / torch.export take and return caches like tuples of tensors
torch.export.register_dataclass(SceneCache, serialized_type_name="sceneleap_core.models.SceneCache")


################################################################################
#                    Embedding layers for timesteps and the scene              #
################################################################################


class TimestepEmbedder(nn.Module):
    """Scalar timesteps (B,) on a [0, 1000] scale -> (B, D): sinusoidal features + MLP (as DiT)."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    @staticmethod
    def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]  # (B, D/2)
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoidal(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class SceneConditioner(nn.Module):
    """Scene tokens (B, M, C) + xyz (B, M, 3) -> context (B, M, D) and a global vector (B, D).

    ``context = LN(W tokens + MLP(fourier(xyz)))``; masked items get the learned null token at
    every position instead (so their context and global vector are scene-independent).
    """

    def __init__(self, scene_dim: int, dim: int, pe_freqs: int = 6):
        super().__init__()
        self.pe_freqs = pe_freqs
        self.proj = nn.Linear(scene_dim, dim)
        self.pos = nn.Sequential(nn.Linear(6 * pe_freqs, dim), nn.GELU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.glob = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, tokens: torch.Tensor, xyz: torch.Tensor, drop: torch.Tensor | None = None):
        ctx = self.proj(tokens) + self.pos(fourier_features(xyz, self.pe_freqs).to(tokens.dtype))  # (B, M, D)
        if drop is not None:
            ctx = torch.where(drop[:, None, None], self.null.to(ctx.dtype).expand_as(ctx), ctx)  # (B, M, D)
        ctx = self.norm(ctx)
        return ctx, self.glob(ctx.mean(dim=1))


def _check_scene(tokens: torch.Tensor, xyz: torch.Tensor, scene_dim: int, drop) -> torch.Tensor | None:
    if tokens.dim() != 3 or tokens.shape[-1] != scene_dim:
        raise ValueError(f"scene tokens: expected shape (B, M, {scene_dim}), got {tuple(tokens.shape)}")
    if xyz.shape != (*tokens.shape[:2], 3):
        raise ValueError(f"scene xyz: expected shape {(*tokens.shape[:2], 3)}, got {tuple(xyz.shape)}")
    if drop is None or isinstance(drop, torch.Tensor):
        if drop is not None and drop.shape != (tokens.shape[0],):
            raise ValueError(f"drop: expected a (B,) = ({tokens.shape[0]},) bool mask, got {tuple(drop.shape)}")
        return drop
    return torch.full((tokens.shape[0],), bool(drop), dtype=torch.bool, device=tokens.device)


def _param_dtype(net: nn.Module) -> torch.dtype:
    return net.x_embed.weight.dtype


def _embed_tokens(net: nn.Module, x_t: torch.Tensor, cache: SceneCache) -> torch.Tensor:
    """Grasp tokens: embedded x_t (B, G, Din) plus the cache's anchor features (B, G, D0) if any."""
    x = net.x_embed(x_t.to(_param_dtype(net)))
    return x if cache.anchor is None else x + cache.anchor.to(x.dtype)


def _check_step_inputs(x_t: torch.Tensor, t: torch.Tensor, cache: SceneCache, in_dim: int) -> torch.Tensor:
    if x_t.dim() != 3 or x_t.shape[-1] != in_dim:
        raise ValueError(f"x_t: expected shape (B, G, {in_dim}), got {tuple(x_t.shape)}")
    if x_t.shape[0] != cache.batch_size:
        raise ValueError(f"x_t: expected batch {cache.batch_size} (the scene cache's), got {x_t.shape[0]}")
    if cache.anchor is not None and cache.anchor.shape[:2] != x_t.shape[:2]:
        raise ValueError(
            f"x_t: expected (B, G) = {tuple(cache.anchor.shape[:2])} (one grasp per anchor), got {tuple(x_t.shape[:2])}"
        )
    if t.dim() == 0:
        t = t.expand(x_t.shape[0])
    if t.shape != (x_t.shape[0],):
        raise ValueError(f"t: expected shape () or (B,) = ({x_t.shape[0]},), got {tuple(t.shape)}")
    return t


################################################################################
#                                Attention                                     #
################################################################################


class SelfAttention(nn.Module):
    """Multi-head self-attention across grasp tokens through SDPA (FlashAttention on CUDA)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x, attn_mask: torch.Tensor | None = None):
        """x (B, G, D), attn_mask None or (B, 1, 1, G) bool (True = attend to that grasp)."""
        b, g, d = x.shape
        q, k, v = self.qkv(x).reshape(b, g, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, G, Dh)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, G, Dh)
        return self.proj(x.transpose(1, 2).reshape(b, g, d))  # (B, G, D)


def grasp_attn_mask(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """(B, G) validity mask of padded grasp sets -> (B, 1, 1, G) SDPA key mask, or None.

    Rows without any valid grasp attend to all (their loss weight is 0 anyway), avoiding NaN.
    """
    if mask is None:
        return None
    if mask.shape != x.shape[:2]:
        raise ValueError(f"mask: expected shape (B, G) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
    mask = mask.bool()
    mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask[:, None, None, :]  # (B, 1, 1, G)


class CrossAttention(nn.Module):
    """Grasp tokens attend to scene context; keys/values come precomputed from :meth:`scene_kv`."""

    def __init__(self, dim: int, ctx_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(ctx_dim, 2 * dim), nn.Linear(dim, dim)

    def scene_kv(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M, C_ctx) -> keys, values (B, H, M, Dh)."""
        b, m, _ = ctx.shape
        d = self.q.out_features
        k, v = self.kv(ctx).reshape(b, m, 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 2 x (B, H, M, Dh)
        return k, v

    def forward(self, x, k, v):
        b, g, d = x.shape
        q = self.q(x).reshape(b, g, self.heads, d // self.heads).transpose(1, 2)  # (B, H, G, Dh)
        x = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype))  # (B, H, G, Dh)
        return self.proj(x.transpose(1, 2).reshape(b, g, d))  # (B, G, D)


def mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


################################################################################
#                                   DiT                                        #
################################################################################


class DiTBlock(nn.Module):
    """adaLN-Zero block: self-attention over grasps, cross-attention to the scene, MLP; each
    sub-layer gets shift/scale/gate from the conditioning vector (9 D modulation)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross = CrossAttention(dim, dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))

    def forward(self, x, c, k, v, attn_mask=None):
        s1, sc1, g1, s2, sc2, g2, s3, sc3, g3 = self.adaLN_modulation(c).chunk(9, dim=-1)  # 9 x (B, D)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), s1, sc1), attn_mask)
        x = x + g2[:, None] * self.cross(modulate(self.norm2(x), s2, sc2), k, v)
        return x + g3[:, None] * self.mlp(modulate(self.norm3(x), s3, sc3))


class FinalLayer(nn.Module):
    """adaLN modulated LayerNorm + linear to Dout."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


class GraspDiT(nn.Module):
    """Diffusion transformer over G grasp tokens with cross-attention to M scene tokens.

    Args:
        in_dim: Din of x_t (25; the CVAE latent width for the CVAE decoder).
        out_dim: Dout of the prediction (25).
        scene_dim: C of the encoder's tokens.
        d_model: D.  depth: blocks.  heads: H.  mlp_ratio: MLP hidden / D.
        pe_freqs: Fourier frequencies of the scene-token 3D positional encoding.
        grad_checkpointing: recompute blocks in backward (saves activation memory in training).
    """

    def __init__(
        self,
        in_dim: int = 25,
        out_dim: int = 25,
        scene_dim: int = 256,
        d_model: int = 384,
        depth: int = 6,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        pe_freqs: int = 6,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model: expected a multiple of heads={heads}, got {d_model}")
        self.in_dim, self.out_dim, self.scene_dim = in_dim, out_dim, scene_dim
        self.grad_checkpointing = grad_checkpointing
        self.x_embed = nn.Linear(in_dim, d_model)
        self.t_embed = TimestepEmbedder(d_model)
        self.scene = SceneConditioner(scene_dim, d_model, pe_freqs)
        self.blocks = nn.ModuleList(DiTBlock(d_model, heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(d_model, out_dim)
        self.initialize_weights()

    def initialize_weights(self):
        # 1. every linear: Xavier uniform, zero bias (as DiT)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # 2. timestep MLP: normal(0.02)
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        # 3. null scene token: normal(0.02) so the unconditional context differs from a zero scene
        nn.init.normal_(self.scene.null, std=0.02)
        # 4. adaLN-Zero: zero modulation, so every block starts as the identity (gates = 0)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        # 5. zero output layer: the initial prediction is 0 (the mean of eps / x0 / v targets)
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def precompute_scene(self, tokens: torch.Tensor, xyz: torch.Tensor, drop=None) -> SceneCache:
        """Scene tokens (B, M, C), xyz (B, M, 3), drop: None, a bool, or a (B,) bool mask of
        items whose scene is replaced by the null condition -> :class:`SceneCache`."""
        drop = _check_scene(tokens, xyz, self.scene_dim, drop)
        ctx, cond = self.scene(tokens.to(_param_dtype(self)), xyz, drop)  # (B, M, D), (B, D)
        return SceneCache([block.cross.scene_kv(ctx) for block in self.blocks], cond)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cache: SceneCache, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t (B, G, Din), t () or (B,) on the [0, 1000] scale, cache -> (B, G, Dout).

        ``mask`` (B, G) bool marks the real grasps of padded sets (padding is ignored by the
        self-attention; None = all real, the fast FlashAttention path).

        The network may hold reduced-precision weights (``.to(torch.bfloat16)``): inputs are cast
        to the weights' dtype and the output back to x_t's dtype.
        """
        t = _check_step_inputs(x_t, t, cache, self.in_dim)
        attn_mask = grasp_attn_mask(mask, x_t)
        x = _embed_tokens(self, x_t, cache)  # (B, G, D)
        c = self.t_embed(t) + cache.cond  # (B, D)
        for block, (k, v) in zip(self.blocks, cache.kv):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, c, k, v, attn_mask, use_reentrant=False)
            else:
                x = block(x, c, k, v, attn_mask)
        return self.final(x, c).to(x_t.dtype)


################################################################################
#                                UNet-style                                    #
################################################################################


class ResBlock(nn.Module):
    """Token-wise residual MLP with FiLM from the conditioning vector (UNet ResBlock analogue)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x, c):
        h = self.fc1(F.silu(self.norm1(x)))
        scale, shift = self.film(c).chunk(2, dim=-1)
        h = modulate(self.norm2(h), shift, scale)
        return x + self.fc2(F.silu(h))


class SpatialTransformer(nn.Module):
    """Pre-norm self-attention over grasps + cross-attention to the scene + MLP (plain LayerNorm,
    as the SceneDiffuser / latent-diffusion UNet)."""

    def __init__(self, dim: int, ctx_dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.cross = CrossAttention(dim, ctx_dim, heads)
        self.mlp = mlp(dim, mlp_ratio)

    def forward(self, x, k, v, attn_mask=None):
        x = x + self.attn(self.norm1(x), attn_mask)
        x = x + self.cross(self.norm2(x), k, v)
        return x + self.mlp(self.norm3(x))


class GraspUNet(nn.Module):
    """UNet-style denoiser over grasp tokens: the "resolution" is the channel width.

    Down path: per level a ResBlock + SpatialTransformer at width ``d_model * mults[i]`` and a
    widening projection; a middle block; up path: concatenate the skip, project, ResBlock +
    SpatialTransformer. Every SpatialTransformer cross-attends to the shared scene context with
    its own cached keys/values. Same interface as :class:`GraspDiT`.
    """

    def __init__(
        self,
        in_dim: int = 25,
        out_dim: int = 25,
        scene_dim: int = 256,
        d_model: int = 256,
        mults: tuple[int, ...] = (1, 2),
        heads: int = 4,
        mlp_ratio: float = 2.0,
        pe_freqs: int = 6,
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        widths = [d_model * m for m in mults]
        if any(w % heads for w in widths):
            raise ValueError(f"d_model * mults: expected multiples of heads={heads}, got {widths}")
        self.in_dim, self.out_dim, self.scene_dim = in_dim, out_dim, scene_dim
        self.grad_checkpointing = grad_checkpointing
        self.x_embed = nn.Linear(in_dim, widths[0])
        self.t_embed = TimestepEmbedder(d_model)
        self.scene = SceneConditioner(scene_dim, d_model, pe_freqs)
        self.down_res = nn.ModuleList(ResBlock(w, d_model) for w in widths)
        self.down_attn = nn.ModuleList(SpatialTransformer(w, d_model, heads, mlp_ratio) for w in widths)
        self.down_proj = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, [*widths[1:], widths[-1]]))
        self.mid_res = ResBlock(widths[-1], d_model)
        self.mid_attn = SpatialTransformer(widths[-1], d_model, heads, mlp_ratio)
        ups = list(reversed(widths))
        self.up_proj = nn.ModuleList(
            nn.Linear(w_prev + w, w) for w_prev, w in zip([ups[0], *ups[:-1]], ups)
        )  # [x | skip]
        self.up_res = nn.ModuleList(ResBlock(w, d_model) for w in ups)
        self.up_attn = nn.ModuleList(SpatialTransformer(w, d_model, heads, mlp_ratio) for w in ups)
        self.out_norm = nn.LayerNorm(widths[0])
        self.out = nn.Linear(widths[0], out_dim)
        self.initialize_weights()

    def _attn_blocks(self) -> list[SpatialTransformer]:
        return [*self.down_attn, self.mid_attn, *self.up_attn]

    def initialize_weights(self):
        # 1. every linear: Xavier uniform, zero bias
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.scene.null, std=0.02)
        # 2. zero the last layer of every residual branch (ResBlock fc2, attention/cross/MLP
        #    output projections): each block starts as the identity
        for res in [*self.down_res, self.mid_res, *self.up_res]:
            nn.init.zeros_(res.fc2.weight)
        for blk in self._attn_blocks():
            for lin in (blk.attn.proj, blk.cross.proj, blk.mlp[-1]):
                nn.init.zeros_(lin.weight)
        # 3. zero output layer: the initial prediction is 0
        nn.init.zeros_(self.out.weight)

    def precompute_scene(self, tokens: torch.Tensor, xyz: torch.Tensor, drop=None) -> SceneCache:
        """Same contract as :meth:`GraspDiT.precompute_scene`."""
        drop = _check_scene(tokens, xyz, self.scene_dim, drop)
        ctx, cond = self.scene(tokens.to(_param_dtype(self)), xyz, drop)  # (B, M, D), (B, D)
        return SceneCache([blk.cross.scene_kv(ctx) for blk in self._attn_blocks()], cond)

    def _run(self, module, *args):
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, cache: SceneCache, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_t (B, G, Din), t () or (B,), cache, mask (B, G) or None -> (B, G, Dout)."""
        t = _check_step_inputs(x_t, t, cache, self.in_dim)
        attn_mask = grasp_attn_mask(mask, x_t)
        c = self.t_embed(t) + cache.cond  # (B, D)
        kv = iter(cache.kv)
        x = _embed_tokens(self, x_t, cache)  # (B, G, W0)
        skips = []
        for res, attn, proj in zip(self.down_res, self.down_attn, self.down_proj):
            x = self._run(attn, self._run(res, x, c), *next(kv), attn_mask)
            skips.append(x)
            x = proj(x)  # (B, G, W_next)
        x = self._run(self.mid_attn, self._run(self.mid_res, x, c), *next(kv), attn_mask)
        for proj, res, attn in zip(self.up_proj, self.up_res, self.up_attn):
            x = proj(torch.cat([x, skips.pop()], dim=-1))  # (B, G, W)
            x = self._run(attn, self._run(res, x, c), *next(kv), attn_mask)
        return self.out(self.out_norm(x)).to(x_t.dtype)


DENOISERS = {"dit": GraspDiT, "unet": GraspUNet}
