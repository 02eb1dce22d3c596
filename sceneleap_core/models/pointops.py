"""Fast point sampling, grouping and serialization for the point encoders (pure torch, optional Triton).

Shape letters: B batch, N points, M samples (centres), K neighbours, C channels.

Farthest point sampling (FPS) is sequential in the samples: sample i+1 depends on sample i.
What can be made fast is everything around that loop:

* :func:`sceneleap_core.geometry.farthest_point_sample`: the loop runs over the M samples only; each step is one
  gather, one fused distance/min and one argmax over (B, N), all in preallocated buffers and
  without host synchronization, so the whole loop can be captured into a CUDA graph
  (:class:`CudaGraphFPS`) or fed to ``torch.compile``.
* :func:`farthest_point_sample_triton`: one Triton program per cloud keeps the running distances
  in registers and runs all M steps inside one kernel launch (CUDA only; N <= 32768).
* :func:`voxel_sample` and :func:`random_sample`: no sequential loop at all; exactly M indices
  per cloud with static shapes (good enough where strict FPS coverage is not needed, see
  ``bench/models.py`` for the coverage/time trade).

:func:`sample_points` dispatches by name. Serialization (Z-order / Hilbert codes) feeds the
serialized attention of the point transformer.
"""

from __future__ import annotations

import torch

from sceneleap_core.geometry.pointops import check_points, farthest_point_sample, knn

try:  # optional: fused FPS kernel on CUDA
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None
    tl = None

POINT_SAMPLERS = ("fps", "fps_loop", "fps_triton", "voxel", "voxel_fps", "random", "first")


def _check_count(num_samples: int, n: int) -> None:
    if not 1 <= num_samples <= n:
        raise ValueError(f"num_samples: expected 1 <= num_samples <= {n} (points per cloud), got {num_samples}")


################################################################################
#                         Farthest point sampling                              #
################################################################################


class CudaGraphFPS:
    """:func:`farthest_point_sample` captured once per (B, N, M, dtype) into a CUDA graph.

    ``fps = CudaGraphFPS(); idx = fps(points, 2048)``: the first call per shape warms up and
    captures; later calls copy the points into the static input and replay (one launch for the
    whole loop). On CPU it simply calls the eager function. The returned tensor is the graph's
    static output: clone it if you keep it across calls.
    """

    def __init__(self) -> None:
        self._graphs: dict[tuple, tuple] = {}

    def __call__(self, points: torch.Tensor, num_samples: int) -> torch.Tensor:
        if points.device.type != "cuda":
            return farthest_point_sample(points, num_samples)
        check_points("points", points)
        key = (tuple(points.shape), num_samples, points.dtype, points.device.index)
        if key not in self._graphs:
            static_in = points.detach().clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up outside capture (allocator, kernels)
                farthest_point_sample(static_in, num_samples)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = farthest_point_sample(static_in, num_samples)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(points)
        graph.replay()
        return static_out


if triton is not None:

    @triton.jit
    def _fps_kernel(points_ptr, out_ptr, n, m, BLOCK: tl.constexpr):
        # one program per cloud; points (B, N, 3) contiguous, out (B, M) int64
        pid = tl.program_id(0)
        base = points_ptr + pid * n * 3
        offs = tl.arange(0, BLOCK)
        valid = offs < n
        x = tl.load(base + offs * 3 + 0, mask=valid, other=0.0).to(tl.float32)
        y = tl.load(base + offs * 3 + 1, mask=valid, other=0.0).to(tl.float32)
        z = tl.load(base + offs * 3 + 2, mask=valid, other=0.0).to(tl.float32)
        dist = tl.where(valid, float("inf"), -1.0)
        current = tl.zeros((), dtype=tl.int32)
        for i in range(0, m):
            tl.store(out_ptr + pid * m + i, current.to(tl.int64))
            cx = tl.load(base + current * 3 + 0).to(tl.float32)
            cy = tl.load(base + current * 3 + 1).to(tl.float32)
            cz = tl.load(base + current * 3 + 2).to(tl.float32)
            d = (x - cx) * (x - cx) + (y - cy) * (y - cy) + (z - cz) * (z - cz)
            dist = tl.where(valid, tl.minimum(dist, d), -1.0)
            current = tl.argmax(dist, axis=0).to(tl.int32)


def triton_fps_available(points: torch.Tensor | None = None) -> bool:
    """Whether :func:`farthest_point_sample_triton` can run (Triton importable, CUDA tensor or
    the Triton interpreter enabled, N <= 32768)."""
    if triton is None:
        return False
    if points is None:
        return True
    import os

    on_device = points.device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    return on_device and points.shape[1] <= 32768


def farthest_point_sample_triton(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Farthest point sampling as one fused Triton kernel (one program per cloud, all M steps
    inside the kernel, running distances kept in registers).

    Args:
        points: (B, N, 3) on CUDA (float32/bf16/fp16; distances in fp32), N <= 32768.
        num_samples: M, 1 <= M <= N.

    Returns:
        (B, M) int64 indices; equal to :func:`farthest_point_sample` up to ties.
    """
    check_points("points", points)
    b, n, _ = points.shape
    _check_count(num_samples, n)
    if not triton_fps_available(points):
        raise ValueError(
            f"farthest_point_sample_triton: expected Triton and a CUDA tensor with N <= 32768, got "
            f"triton={'present' if triton is not None else 'missing'}, device={points.device}, N={n}"
        )
    points = points.contiguous()
    out = torch.empty(b, num_samples, dtype=torch.long, device=points.device)
    block = max(triton.next_power_of_2(n), 128)
    warps = 4 if block <= 2048 else 8 if block <= 4096 else 16 if block <= 8192 else 32
    _fps_kernel[(b,)](points, out, n, num_samples, BLOCK=block, num_warps=warps)
    return out


################################################################################
#                         Loop-free sampling                                   #
################################################################################


def _uniform(
    b: int, n: int, device, generator: torch.Generator | None, deterministic: bool, salt: int = 0
) -> torch.Tensor:
    """(B, N) uniform [0, 1) keys: from ``generator`` (or the global RNG), or, when
    ``deterministic`` and no generator is given, a fixed hash of the index (reproducible, and
    free of RNG state so it can sit inside a CUDA graph)."""
    if generator is not None or not deterministic:
        return torch.rand(b, n, generator=generator, device=device)
    i = torch.arange(n, device=device, dtype=torch.float64) + 1.0 + 0.5 * salt
    v = torch.sin(i * 12.9898 + 78.233 * (salt + 1)) * 43758.5453
    keys = (v - v.sign() * v.abs().floor()).float()  # = torch.frac(v) (ONNX lacks frac and trunc)
    if torch.onnx.is_in_onnx_export():  # a constant of the graph (exporters fold the float64 math to float32)
        keys = torch.tensor(keys.tolist(), dtype=torch.float32, device=device)
    return keys.expand(b, n)


def random_sample(
    points: torch.Tensor, num_samples: int, *, generator: torch.Generator | None = None, deterministic: bool = False
) -> torch.Tensor:
    """(B, M) distinct random indices per cloud (B, N, 3): top-M of uniform keys, no host sync.
    ``deterministic`` without a generator: a fixed pseudo-random subset (eval mode)."""
    check_points("points", points)
    b, n, _ = points.shape
    _check_count(num_samples, n)
    keys = _uniform(b, n, points.device, generator, deterministic)
    return keys.topk(num_samples, dim=-1).indices


def voxel_sample(
    points: torch.Tensor,
    num_samples: int,
    *,
    voxel_size: float | None = None,
    generator: torch.Generator | None = None,
    deterministic: bool = False,
) -> torch.Tensor:
    """Exactly M indices per cloud, spread over distinct voxels first (static shapes, no loop).

    Recipe:
    1. voxel size ``s``: given, or per cloud ``extent / sqrt(2 M)`` (a surface cloud of extent L
       occupies about (L/s)^2 voxels, so about 2 M are occupied);
    2. integer voxel key per point, sorted per cloud; the first point of each run is its voxel's
       representative (a random one, by sorting random-permuted points);
    3. priority = uniform in [0, 1) for representatives, in [1, 2) for the others; take the M
       smallest: M distinct voxels when at least M are occupied, else all voxels plus random fill.

    Args:
        points: (B, N, 3).
        num_samples: M, 1 <= M <= N.
        voxel_size: edge length in the points' units; None = adaptive per cloud.
        generator: for the random representatives and the random choice among voxels.
        deterministic: without a generator, use fixed hashed keys instead of the global RNG.

    Returns:
        (B, M) int64 indices into N.
    """
    check_points("points", points)
    b, n, _ = points.shape
    _check_count(num_samples, n)
    if voxel_size is not None and not voxel_size > 0:
        raise ValueError(f"voxel_size: expected > 0 or None, got {voxel_size}")
    # 1. voxel size
    lo = points.amin(dim=1, keepdim=True)  # (B, 1, 3)
    extent = (points.amax(dim=1, keepdim=True) - lo).amax(dim=-1, keepdim=True)  # (B, 1, 1)
    size = extent.clamp_min(1e-9) / (2.0 * num_samples) ** 0.5 if voxel_size is None else voxel_size
    # 2. voxel keys of randomly permuted points (so the first of a run is a random member)
    perm = _uniform(b, n, points.device, generator, deterministic, 1).argsort(dim=-1)  # (B, N)
    grid = ((points - lo) / size).floor().long().clamp(0, 2**20 - 1)  # (B, N, 3)
    grid = torch.gather(grid, 1, perm[..., None].expand(-1, -1, 3))  # (B, N, 3)
    key = (
        grid[..., 0] * 2**40 + grid[..., 1] * 2**20 + grid[..., 2]
    )  # (B, N), = (x << 40) | (y << 20) | z (ONNX-exportable)
    if torch.onnx.is_in_onnx_export():  # ONNX TopK breaks ties by the lower index: a stable sort
        key_sorted, order = key.topk(n, dim=-1, largest=False)
    else:
        key_sorted, order = key.sort(dim=-1, stable=True)  # (B, N)
    first = torch.ones_like(key_sorted, dtype=torch.bool)
    first[:, 1:] = key_sorted[:, 1:] != key_sorted[:, :-1]
    # 3. representatives first, random among them
    prio = _uniform(b, n, points.device, generator, deterministic, 2) + (~first).float()  # (B, N)
    pick = prio.topk(num_samples, dim=-1, largest=False).indices  # (B, M) into sorted order
    return torch.gather(perm, 1, torch.gather(order, 1, pick))  # (B, M)


def voxel_fps_sample(
    points: torch.Tensor,
    num_samples: int,
    *,
    oversample: int = 4,
    generator: torch.Generator | None = None,
    deterministic: bool = False,
) -> torch.Tensor:
    """FPS on a voxel-thinned cloud: :func:`voxel_sample` keeps ``oversample`` * M points (one
    per voxel first), then FPS picks M of them. Near-FPS coverage at a fraction of the
    per-step cost when N >> M. Returns (B, M) indices into the original N."""
    check_points("points", points)
    keep = min(points.shape[1], oversample * num_samples)
    thin = voxel_sample(points, keep, generator=generator, deterministic=deterministic)  # (B, 4M)
    sub = torch.gather(points, 1, thin[..., None].expand(-1, -1, 3))  # (B, 4M, 3)
    fps = (
        farthest_point_sample_triton
        if triton_fps_available(sub) and sub.device.type == "cuda"
        else farthest_point_sample
    )
    return torch.gather(thin, 1, fps(sub, num_samples))  # (B, M)


def sample_points(
    points: torch.Tensor,
    num_samples: int,
    method: str = "fps",
    *,
    generator: torch.Generator | None = None,
    deterministic: bool = False,
) -> torch.Tensor:
    """(B, M) sample indices of (B, N, 3) points by ``method``.

    Methods: ``fps`` (fused Triton kernel when available on CUDA, else the vectorized loop),
    ``fps_loop`` (the reference loop in ``geometry``), ``fps_triton``, ``voxel``, ``voxel_fps``
    (voxel-thin to 4 M, then FPS), ``random``,
    ``first`` (the first M points; for clouds already downsampled and shuffled).
    ``generator`` feeds the randomized methods; with ``deterministic`` and no generator they
    use fixed hashed keys (the encoders do this in eval mode).
    """
    if method == "fps":
        if triton_fps_available(points) and points.device.type == "cuda":
            return farthest_point_sample_triton(points, num_samples)
        return farthest_point_sample(points, num_samples)
    if method == "fps_loop":
        return farthest_point_sample(points, num_samples)
    if method == "fps_triton":
        return farthest_point_sample_triton(points, num_samples)
    if method == "voxel":
        return voxel_sample(points, num_samples, generator=generator, deterministic=deterministic)
    if method == "voxel_fps":
        return voxel_fps_sample(points, num_samples, generator=generator, deterministic=deterministic)
    if method == "random":
        return random_sample(points, num_samples, generator=generator, deterministic=deterministic)
    if method == "first":
        check_points("points", points)
        _check_count(num_samples, points.shape[1])
        return torch.arange(num_samples, device=points.device).expand(points.shape[0], -1)
    raise ValueError(f"sampler: expected one of {POINT_SAMPLERS}, got {method!r}")


################################################################################
#                         Grouping                                             #
################################################################################


def ball_query(queries: torch.Tensor, points: torch.Tensor, k: int, radius: float | None) -> torch.Tensor:
    """(B, M, K) neighbour indices of (B, M, 3) queries among (B, N, 3) points.

    The K nearest points; with a ``radius``, neighbours farther than it are replaced by the
    nearest one (the PointNet++ ball-query convention: the ball is padded with its first member).
    """
    dist, idx = knn(queries, points, k)  # (B, M, K), (B, M, K)
    if radius is None:
        return idx
    return torch.where(dist <= radius, idx, idx[..., :1])


################################################################################
#                         Serialization (space-filling curves)                 #
################################################################################


def _quantize(points: torch.Tensor, bits: int) -> torch.Tensor:
    """(B, N, 3) -> (B, N, 3) int64 grid coordinates in [0, 2^bits) over each cloud's bounding cube."""
    lo = points.amin(dim=1, keepdim=True)
    extent = (points.amax(dim=1, keepdim=True) - lo).amax(dim=-1, keepdim=True).clamp_min(1e-9)  # (B, 1, 1)
    scale = (2**bits - 1) / extent
    return ((points - lo) * scale).round().long().clamp(0, 2**bits - 1)


def _spread_bits(v: torch.Tensor, bits: int) -> torch.Tensor:
    """Insert two zero bits between consecutive bits of ``v`` (Morton interleave helper)."""
    out = torch.zeros_like(v)
    for i in range(bits):
        out |= ((v >> i) & 1) << (3 * i)
    return out


def z_order_code(points: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """(B, N) Morton (Z-order) codes of (B, N, 3) points quantized to 2^bits cells per axis."""
    check_points("points", points)
    g = _quantize(points, bits)
    return (_spread_bits(g[..., 0], bits) << 2) | (_spread_bits(g[..., 1], bits) << 1) | _spread_bits(g[..., 2], bits)


def hilbert_code(points: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """(B, N) 3-D Hilbert curve indices of (B, N, 3) points quantized to 2^bits cells per axis.

    Recipe (Skilling, "Programming the Hilbert curve", AIP Conf. Proc. 707, 2004): convert the
    axes to the "transposed" Hilbert index by inverse undo of excess work and Gray encoding, then
    interleave the bits of the three transposed coordinates (most significant first).
    """
    check_points("points", points)
    x = list(_quantize(points, bits).unbind(-1))  # 3 x (B, N)
    m = 1 << (bits - 1)
    # 1. inverse undo excess work: per level q, invert or exchange the low bits
    q = m
    while q > 1:
        p = q - 1
        for i in range(3):
            bit = (x[i] & q) != 0
            if i == 0:
                x[0] = torch.where(bit, x[0] ^ p, x[0])
                continue
            t = (x[0] ^ x[i]) & p
            x[0], x[i] = torch.where(bit, x[0] ^ p, x[0] ^ t), torch.where(bit, x[i], x[i] ^ t)
        q >>= 1
    # 2. Gray encode
    for i in range(1, 3):
        x[i] = x[i] ^ x[i - 1]
    t = torch.zeros_like(x[0])
    q = m
    while q > 1:
        t = torch.where((x[2] & q) != 0, t ^ (q - 1), t)
        q >>= 1
    x = [xi ^ t for xi in x]
    # 3. interleave: bit b of axis i goes to position 3 b + (2 - i)
    code = torch.zeros_like(x[0])
    for b in range(bits):
        for i in range(3):
            code |= ((x[i] >> b) & 1) << (3 * b + 2 - i)
    return code


SERIAL_ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")


def serialize(points: torch.Tensor, order: str = "z", bits: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort permutation of (B, N, 3) points along a space-filling curve.

    ``order``: ``z`` / ``hilbert``, with ``-trans`` swapping x and y first (PTv3's four orders).

    Returns:
        perm (B, N) with ``points.gather(perm)`` in curve order, and its inverse (B, N).
    """
    if order not in SERIAL_ORDERS:
        raise ValueError(f"order: expected one of {SERIAL_ORDERS}, got {order!r}")
    if order.endswith("-trans"):
        points = points[..., [1, 0, 2]]  # (B, N, 3)
    code = z_order_code(points, bits) if order.startswith("z") else hilbert_code(points, bits)
    perm = code.argsort(dim=-1)  # (B, N)
    inverse = torch.empty_like(perm).scatter_(1, perm, torch.arange(perm.shape[1], device=perm.device).expand_as(perm))
    return perm, inverse
