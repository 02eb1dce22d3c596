"""Point encoders: a scene cloud (B, N, 3) -> scene tokens (B, M, C) and their positions (B, M, 3).

Shape letters: B batch, N input points, S points at a stage, M output tokens, K neighbours,
C / D channels. Every encoder is pure torch, configured by ctor kwargs, and exposes
``out_dim`` (C) and ``num_tokens`` (M); ``forward(points, generator=None)`` returns
``(tokens, xyz)``. Randomized samplers (``voxel``, ``random``) draw from ``generator`` (or the
global RNG) in training mode; in eval mode without a generator (or with ``deterministic=True``)
they use fixed hashed keys, so a cloud always gives the same tokens.

* :class:`PointNet2Encoder`: set abstraction with multi-scale grouping (Qi et al. 2017).
* :class:`PointTransformerEncoder`: serialized patch attention over space-filling-curve orders
  (after PTv3, Wu et al. 2024) with SDPA, and serialized pooling; no sparse convolution.
* :class:`LiteEncoder`: one set-abstraction layer for small GPUs and CPUs.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from sceneleap_core.geometry.pointops import gather_points, knn
from sceneleap_core.models.pointops import POINT_SAMPLERS, SERIAL_ORDERS, ball_query, sample_points, serialize


def _check_cloud(points: torch.Tensor, min_points: int) -> None:
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points: expected shape (B, N, 3), got {tuple(points.shape)}")
    if points.shape[1] < min_points:
        raise ValueError(f"points: expected at least {min_points} points per cloud, got {points.shape[1]}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {choices}, got {value!r}")


def _det(module: nn.Module, deterministic: bool | None) -> bool:
    """Deterministic sampling: as asked, else in eval mode only."""
    return (not module.training) if deterministic is None else deterministic


def _presample(
    module: nn.Module,
    points: torch.Tensor,
    num_points: int,
    method: str,
    generator: torch.Generator | None,
    deterministic: bool | None,
) -> torch.Tensor:
    """(B, N, 3) -> (B, min(N, S), 3): thin a raw cloud to ``num_points`` before the first level."""
    if points.shape[1] <= num_points:
        return points
    idx = sample_points(points, num_points, method, generator=generator, deterministic=_det(module, deterministic))
    return gather_points(points, idx)  # (B, S, 3)


class PointMLP(nn.Sequential):
    """Channels-last shared MLP: Linear -> LayerNorm -> GELU per hidden layer, plain Linear last."""

    def __init__(self, dims: tuple[int, ...] | list[int], *, last_act: bool = True):
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if i < len(dims) - 2 or last_act:
                layers += [nn.LayerNorm(b), nn.GELU()]
        super().__init__(*layers)


################################################################################
#                                 PointNet++                                   #
################################################################################


class SetAbstraction(nn.Module):
    """One multi-scale set-abstraction level: sample S centres, group K neighbours per scale,
    shared MLP on [relative xyz | features], max-pool, fuse the scales.

    Args:
        in_dim: input feature channels (0 for raw xyz).
        out_dim: output channels.
        num_centres: S.
        nsamples: neighbours per scale.
        radii: ball radius per scale (relative xyz are divided by it), or None for plain kNN.
        sampler: centre sampling method (see :func:`models.pointops.sample_points`).
    """

    def __init__(self, in_dim, out_dim, num_centres, nsamples, radii=None, sampler="fps"):
        super().__init__()
        if radii is not None and len(radii) != len(nsamples):
            raise ValueError(f"radii: expected one per scale ({len(nsamples)}), got {len(radii)}")
        self.num_centres, self.nsamples, self.sampler = num_centres, tuple(nsamples), sampler
        self.radii = tuple(radii) if radii is not None else None
        self.branches = nn.ModuleList(PointMLP((in_dim + 3, out_dim // 2, out_dim)) for _ in nsamples)
        self.fuse = nn.Linear(out_dim * len(nsamples), out_dim)

    def forward(self, xyz, feats, generator=None, deterministic=None):
        """xyz (B, S_in, 3), feats (B, S_in, C_in) or None -> xyz (B, S, 3), feats (B, S, C_out)."""
        centre_idx = sample_points(
            xyz, self.num_centres, self.sampler, generator=generator, deterministic=_det(self, deterministic)
        )  # (B, S)
        centres = gather_points(xyz, centre_idx)  # (B, S, 3)
        pooled = []
        for s, (k, branch) in enumerate(zip(self.nsamples, self.branches)):
            radius = self.radii[s] if self.radii is not None else None
            idx = ball_query(centres, xyz, min(k, xyz.shape[1]), radius)  # (B, S, K)
            rel = gather_points(xyz, idx) - centres[:, :, None, :]  # (B, S, K, 3)
            if radius is not None:
                rel = rel / radius
            grouped = rel if feats is None else torch.cat([rel, gather_points(feats, idx)], dim=-1)  # (B, S, K, 3+C)
            pooled.append(branch(grouped).amax(dim=2))  # (B, S, C_out)
        return centres, self.fuse(torch.cat(pooled, dim=-1))


class PointNet2Encoder(nn.Module):
    """PointNet++ with multi-scale grouping, pure torch.

    The input cloud is first reduced to ``num_points`` by ``presampler`` (``voxel`` by default:
    strict FPS over 20k raw points costs milliseconds, see ``bench/models.py``), then each level
    samples its centres with ``sampler``.

    Args:
        out_dim: C of the output tokens.
        num_points: points kept from the raw cloud (<= N).
        npoints: centres per level; the last is M, the number of tokens.
        nsamples: per level, neighbours per scale.
        radii: per level, radius per scale, or None for kNN grouping (scale free).
        widths: per level channels.
        sampler: centre sampler of the levels; presampler: of the raw cloud.
    """

    def __init__(
        self,
        out_dim: int = 256,
        num_points: int = 2048,
        npoints: tuple[int, ...] = (512, 128),
        nsamples: tuple[tuple[int, ...], ...] = ((16, 32), (16, 32)),
        radii: tuple[tuple[float, ...], ...] | None = None,
        widths: tuple[int, ...] = (128, 256),
        sampler: str = "fps",
        presampler: str = "voxel",
    ):
        super().__init__()
        if not (len(npoints) == len(nsamples) == len(widths)) or (radii is not None and len(radii) != len(npoints)):
            raise ValueError(
                f"PointNet2Encoder: expected npoints, nsamples, widths (and radii) of equal length, got "
                f"{len(npoints)}, {len(nsamples)}, {len(widths)}{'' if radii is None else f', {len(radii)}'}"
            )
        if any(b > a for a, b in zip((num_points, *npoints[:-1]), npoints)):
            raise ValueError(f"npoints: expected non-increasing counts <= num_points={num_points}, got {npoints}")
        _check_choice("sampler", sampler, POINT_SAMPLERS)
        _check_choice("presampler", presampler, POINT_SAMPLERS)
        self.num_points, self.presampler = num_points, presampler
        self.out_dim, self.num_tokens = out_dim, npoints[-1]
        dims = (0, *widths)
        self.levels = nn.ModuleList(
            SetAbstraction(dims[i], widths[i], npoints[i], nsamples[i], None if radii is None else radii[i], sampler)
            for i in range(len(npoints))
        )
        self.head = nn.Sequential(nn.LayerNorm(widths[-1]), nn.Linear(widths[-1], out_dim))

    def forward(
        self, points: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool | None = None
    ):
        """points (B, N, 3) -> tokens (B, M, C), xyz (B, M, 3)."""
        _check_cloud(points, self.num_points)
        xyz = _presample(self, points, self.num_points, self.presampler, generator, deterministic)  # (B, S, 3)
        feats = None
        for level in self.levels:
            xyz, feats = level(xyz, feats, generator, deterministic)  # (B, S, 3), (B, S, C)
        return self.head(feats), xyz


################################################################################
#                      Point transformer (serialized attention)                 #
################################################################################


class SerializedAttentionBlock(nn.Module):
    """Pre-norm transformer block whose attention runs inside patches of P consecutive points
    along a space-filling-curve order; a positional MLP of xyz is added first (in place of
    PTv3's sparse-conv positional encoding)."""

    def __init__(self, dim: int, heads: int, patch_size: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim}: expected a multiple of heads={heads}")
        self.heads, self.patch_size = heads, patch_size
        self.pos = nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x, xyz, perm, inverse):
        """x (B, S, D), xyz (B, S, 3), perm/inverse (B, S) -> (B, S, D)."""
        b, s, d = x.shape
        p = min(self.patch_size, s)
        x = x + self.pos(xyz)
        h = torch.gather(self.norm1(x), 1, perm[..., None].expand(-1, -1, d))  # (B, S, D) in curve order
        qkv = self.qkv(h).reshape(b * s // p, p, 3, self.heads, d // self.heads)  # (B*S/P, P, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B*S/P, H, P, Dh)
        h = F.scaled_dot_product_attention(q, k, v)  # (B*S/P, H, P, Dh)
        h = h.transpose(1, 2).reshape(b, s, d)  # (B, S, D)
        x = x + torch.gather(self.proj(h), 1, inverse[..., None].expand(-1, -1, d))  # (B, S, D) input order
        return x + self.mlp(self.norm2(x))


class PointTransformerEncoder(nn.Module):
    """Point transformer with serialized attention (PTv3-style), pure torch + SDPA.

    Recipe: sample ``num_points`` points; embed each from its K nearest neighbours (relative
    xyz MLP, max-pool); per stage run ``depths[i]`` serialized-attention blocks cycling through
    ``orders``, then pool ``strides[i]`` consecutive points of the Z-order (features max-pooled
    and projected, xyz averaged). M = num_points / prod(strides).

    Args:
        out_dim: C.
        num_points: points sampled from the raw cloud (by ``sampler``).
        widths, depths, heads: per stage.
        strides: pooling factor after each stage but the last (len(widths) - 1 entries).
        patch_size: P, points per attention patch (num points at each stage must be a multiple).
        orders: serialization orders cycled over blocks.
        knn: K for the embedding.
    """

    def __init__(
        self,
        out_dim: int = 256,
        num_points: int = 1024,
        widths: tuple[int, ...] = (64, 128, 256),
        depths: tuple[int, ...] = (1, 1, 2),
        heads: tuple[int, ...] = (2, 4, 8),
        strides: tuple[int, ...] = (2, 4),
        patch_size: int = 64,
        orders: tuple[str, ...] = ("z", "hilbert", "z-trans", "hilbert-trans"),
        knn: int = 16,
        sampler: str = "voxel",
        bits: int = 10,
    ):
        super().__init__()
        if not (len(widths) == len(depths) == len(heads) == len(strides) + 1):
            raise ValueError(
                f"PointTransformerEncoder: expected widths/depths/heads of one length L and L-1 strides, got "
                f"{len(widths)}, {len(depths)}, {len(heads)}, {len(strides)}"
            )
        counts = [num_points]
        for st in strides:
            if counts[-1] % st:
                raise ValueError(f"strides: {counts[-1]} points at a stage are not divisible by stride {st}")
            counts.append(counts[-1] // st)
        for c in counts:
            if c % min(patch_size, c):
                raise ValueError(
                    f"patch_size: expected to divide the point count of every stage {counts}, got {patch_size}"
                )
        for o in orders:
            _check_choice("orders", o, SERIAL_ORDERS)
        _check_choice("sampler", sampler, POINT_SAMPLERS)
        self.num_points, self.sampler, self.orders, self.knn, self.bits = num_points, sampler, tuple(orders), knn, bits
        self.strides, self.depths = tuple(strides), tuple(depths)
        self.out_dim, self.num_tokens = out_dim, counts[-1]
        self.embed = PointMLP((3, widths[0] // 2, widths[0]))
        self.stages = nn.ModuleList(
            nn.ModuleList(SerializedAttentionBlock(widths[i], heads[i], patch_size) for _ in range(depths[i]))
            for i in range(len(widths))
        )
        self.pools = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(widths[i]), nn.Linear(widths[i], widths[i + 1])) for i in range(len(strides))
        )
        self.head = nn.Sequential(nn.LayerNorm(widths[-1]), nn.Linear(widths[-1], out_dim))

    def forward(
        self, points: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool | None = None
    ):
        """points (B, N, 3) -> tokens (B, M, C), xyz (B, M, 3)."""
        _check_cloud(points, self.num_points)
        xyz = _presample(self, points, self.num_points, self.sampler, generator, deterministic)  # (B, S, 3)
        idx = ball_query(xyz, xyz, min(self.knn, xyz.shape[1]), None)  # (B, S, K)
        x = self.embed(gather_points(xyz, idx) - xyz[:, :, None, :]).amax(dim=2)  # (B, S, D)
        block_i = 0
        for stage_i, blocks in enumerate(self.stages):
            serial = {}
            for block in blocks:
                order = self.orders[block_i % len(self.orders)]
                if order not in serial:
                    serial[order] = serialize(xyz, order, self.bits)
                x = block(x, xyz, *serial[order])
                block_i += 1
            if stage_i < len(self.pools):
                b, s, d = x.shape
                st = self.strides[stage_i]
                perm = serial["z"][0] if "z" in serial else serialize(xyz, "z", self.bits)[0]  # (B, S)
                x = torch.gather(x, 1, perm[..., None].expand(-1, -1, d))  # (B, S, D) in Z order
                xyz = torch.gather(xyz, 1, perm[..., None].expand(-1, -1, 3))  # (B, S, 3) in Z order
                x = self.pools[stage_i](x.reshape(b, s // st, st, d).amax(2))  # (B, S/st, D')
                xyz = xyz.reshape(b, s // st, st, 3).mean(2)  # (B, S/st, 3)
        return self.head(x), xyz


################################################################################
#                                   Lite                                       #
################################################################################


class LiteEncoder(nn.Module):
    """One set-abstraction layer + a token MLP with a global context: for CPUs and small GPUs.

    Args:
        out_dim: C.
        num_tokens: M centres (sampled by ``sampler``; ``voxel`` default, no sequential loop).
        knn: K neighbours per centre.
        width: hidden channels.
    """

    def __init__(
        self, out_dim: int = 256, num_tokens: int = 128, knn: int = 16, width: int = 128, sampler: str = "voxel"
    ):
        super().__init__()
        _check_choice("sampler", sampler, POINT_SAMPLERS)
        self.out_dim, self.num_tokens, self.knn, self.sampler = out_dim, num_tokens, knn, sampler
        self.local = PointMLP((3, width // 2, width))
        self.token = PointMLP((2 * width + 3, width, out_dim), last_act=False)

    def forward(
        self, points: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool | None = None
    ):
        """points (B, N, 3) -> tokens (B, M, C), xyz (B, M, 3)."""
        _check_cloud(points, self.num_tokens)
        idx = sample_points(
            points, self.num_tokens, self.sampler, generator=generator, deterministic=_det(self, deterministic)
        )
        centres = gather_points(points, idx)  # (B, M, 3)
        idx = ball_query(centres, points, min(self.knn, points.shape[1]), None)  # (B, M, K)
        local = self.local(gather_points(points, idx) - centres[:, :, None, :]).amax(dim=2)  # (B, M, W)
        glob = local.amax(dim=1, keepdim=True).expand_as(local)  # (B, M, W)
        return self.token(torch.cat([local, glob, centres], dim=-1)), centres


ENCODERS = {"pointnet2": PointNet2Encoder, "ptv": PointTransformerEncoder, "lite": LiteEncoder}


def fourier_features(xyz: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """(..., 3) -> (..., 6 F) ``[sin(2^f pi x), cos(2^f pi x)]`` for f < F (3D positional encoding)."""
    freqs = (2.0 ** torch.arange(num_freqs, device=xyz.device, dtype=xyz.dtype)) * math.pi  # (F,)
    ang = (xyz[..., None] * freqs).flatten(-2)  # (..., 3F)
    return torch.cat([ang.sin(), ang.cos()], dim=-1)


################################################################################
#                              Anchor patches                                  #
################################################################################


class AnchorEncoder(nn.Module):
    """Local geometry, surroundings and position of per-grasp anchors -> one feature per grasp token.

    For each anchor (an input point the grasp is expressed relative to, see
    :mod:`sceneleap_core.geometry.anchors`), up to three sources are concatenated:

    * the **patch**: its K nearest cloud points, relative to the anchor and divided by ``scale``,
      through a shared MLP and a max-pool (a PointNet over the local surface);
    * the **region** (``region_knn`` > 0): a hand-sized neighbourhood, every ``REGION_STRIDE``-th of
      its ``region_knn * REGION_STRIDE`` nearest points (sparser, reaching further: the extent of the
      object the fingers must wrap), divided by ``region_scale``, through its own PointNet;
    * the **scene** (``scene_dim`` > 0): the scene encoder's token features interpolated at the
      anchor (inverse-distance weights of its 3 nearest tokens): object-level context learned by the
      encoder.

    The anchor's position enters through Fourier features. With ``drop`` (classifier-free
    guidance's null scene) every cloud-derived feature is replaced by a learned null vector, the
    position kept.

    Args:
        out_dim: D, the denoiser's token width.  knn: K.  scale: patch coordinate scale (m).
        width: hidden width of the MLPs.  pe_freqs: Fourier frequencies of the position.
        region_knn: points of the region (0 = no region).  region_scale: its coordinate scale (m).
        scene_dim: C of the scene tokens to interpolate (0 = none).
    """

    REGION_STRIDE = 4

    def __init__(
        self, out_dim: int, *, knn: int = 32, scale: float = 0.05, width: int = 128, pe_freqs: int = 6,
        region_knn: int = 0, region_scale: float = 0.1, scene_dim: int = 0,
    ):  # fmt: skip
        super().__init__()
        self.knn, self.scale, self.pe_freqs, self.out_dim = int(knn), float(scale), int(pe_freqs), int(out_dim)
        self.region_knn, self.region_scale, self.scene_dim = int(region_knn), float(region_scale), int(scene_dim)
        self.patch = PointMLP((3, width // 2, width, 2 * width))
        cloud_dim = 2 * width
        if self.region_knn:
            self.region = PointMLP((3, width // 2, width, 2 * width))
            cloud_dim += 2 * width
        if self.scene_dim:
            self.scene = nn.Sequential(nn.Linear(scene_dim, 2 * width), nn.GELU())
            cloud_dim += 2 * width
        self.null = nn.Parameter(torch.zeros(cloud_dim))
        self.pos = nn.Sequential(nn.Linear(6 * pe_freqs, width), nn.GELU())
        self.out = nn.Sequential(nn.Linear(cloud_dim + width, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        nn.init.normal_(self.null, std=0.02)

    @property
    def needs_scene(self) -> bool:
        """True when :meth:`forward` needs the scene encoder's tokens."""
        return self.scene_dim > 0

    def forward(
        self,
        points: torch.Tensor,
        anchors: torch.Tensor,
        drop: torch.Tensor | None = None,
        scene: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """points (B, N, 3), anchors (B, G, 3), drop None or (B,) bool, scene None or the encoder's
        (tokens (B, M, C), xyz (B, M, 3)) (needed when ``scene_dim`` > 0) -> (B, G, D)."""
        if anchors.dim() != 3 or anchors.shape[-1] != 3 or anchors.shape[0] != points.shape[0]:
            raise ValueError(f"anchors: expected shape ({points.shape[0]}, G, 3), got {tuple(anchors.shape)}")
        if self.scene_dim and scene is None:
            raise ValueError("scene: this anchor encoder interpolates scene tokens; pass (tokens, xyz)")
        anchors = anchors.to(points.dtype)
        dtype = self.patch[0].weight.dtype
        k = min(self.knn, points.shape[1])
        far = min(self.region_knn * self.REGION_STRIDE, points.shape[1]) if self.region_knn else 0
        _, idx = knn(anchors, points, max(k, far))  # (B, G, K') ascending
        near = gather_points(points, idx[..., :k]) - anchors[:, :, None]  # (B, G, K, 3)
        feats = [self.patch((near / self.scale).to(dtype)).amax(dim=2)]  # (B, G, 2W)
        if self.region_knn:
            ring = gather_points(points, idx[..., : far : self.REGION_STRIDE]) - anchors[:, :, None]  # (B, G, R, 3)
            feats.append(self.region((ring / self.region_scale).to(dtype)).amax(dim=2))
        if self.scene_dim:
            tokens, xyz = scene
            dist, tidx = knn(anchors, xyz.to(anchors.dtype), min(3, xyz.shape[1]))  # (B, G, 3)
            w = 1.0 / (dist + 1e-3)
            w = w / w.sum(-1, keepdim=True)
            interp = (gather_points(tokens, tidx) * w[..., None].to(tokens.dtype)).sum(2)  # (B, G, C)
            feats.append(self.scene(interp.to(dtype)))
        feat = torch.cat(feats, dim=-1)  # (B, G, cloud_dim)
        if drop is not None:
            feat = torch.where(drop[:, None, None], self.null.to(feat.dtype).expand_as(feat), feat)
        pos = self.pos(fourier_features(anchors, self.pe_freqs).to(dtype))  # (B, G, W)
        return self.out(torch.cat([feat, pos], dim=-1))  # (B, G, D)
