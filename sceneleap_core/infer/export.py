"""Exported networks: ONNX (encoder + one denoiser step, dynamic G), ONNX Runtime and TensorRT runners.

The sampling loop (scheduler, guidance) stays in Python (:class:`sceneleap_core.models.DenoisingLoop`);
what is exported is the network it calls: ``encoder.onnx`` (points (1, N, 3) [+ anchors (1, G, 3)]
-> the flat :class:`~sceneleap_core.models.denoisers.SceneCache`: cond, k_0, v_0, ..., [anchor])
and ``denoiser.onnx`` (x (1, G, D), model time t (1,), the cache tensors -> (1, G, D)), G dynamic.

    paths = export_onnx(model, "onnx/", num_points=4096)
    runner = OnnxNetworks("onnx/")                   # onnxruntime, CPU (or CUDA when available)
    cache = runner.encode(points, anchors)           # SceneCache of torch tensors
    out = runner.denoise(x, t, cache)

TensorRT (:func:`build_trt_engine`, :class:`TrtNetworks`) builds FP16/BF16 engines from the same
files, cached under a key of the ONNX bytes' hash, the TensorRT version and the GPU's name
(``force_engine_update=False`` reuses a cached engine). TensorRT's libraries have no installable
wheel on the build machines: the path is written against TensorRT 10's Python API, imported lazily,
and its tests skip with the reason where ``import tensorrt`` fails.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from sceneleap_core.models.denoisers import SceneCache

ENCODER_NAME, DENOISER_NAME, META_NAME = "encoder.onnx", "denoiser.onnx", "onnx.json"


class _Encode(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, points, anchors=None):
        return self.model.encode_scene(points, anchors=anchors, deterministic=True).to_tuple()


class _Denoise(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.denoiser = model.denoiser

    def forward(self, x, t, *cache):
        return self.denoiser(x, t, SceneCache.from_tuple(cache))


def export_onnx(model, directory: str | Path, *, num_points: int = 4096, num_grasps: int = 8,
                opset: int = 17) -> dict[str, Path]:  # fmt: skip
    """Write ``encoder.onnx``, ``denoiser.onnx`` and ``onnx.json`` (input/output names, point count,
    anchored) for ``model`` (eval mode, CPU float32 export). G is a dynamic axis of both files;
    N is fixed to ``num_points`` (the planner always feeds that many)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(0)
    points = (torch.rand(1, num_points, 3, generator=gen) - 0.5).to(device)
    anchored = bool(getattr(model, "anchored", False))
    anchors = points[:, :num_grasps].clone() if anchored else None
    with torch.no_grad():
        cache = model.encode_scene(points, anchors=anchors, deterministic=True).to_tuple()
    n_kv = (len(cache) - 1 - int(anchored)) // 2
    cache_names = ["cond"] + [f"{kv}_{i}" for i in range(n_kv) for kv in ("k", "v")] + (["anchor"] if anchored else [])
    enc_inputs = ["points"] + (["anchors"] if anchored else [])
    enc_args = (points, anchors) if anchored else (points,)
    dyn_g = {"anchors": {1: "G"}, "anchor": {1: "G"}} if anchored else {}
    enc_path = directory / ENCODER_NAME
    with torch.no_grad():
        torch.onnx.export(_Encode(model), enc_args, str(enc_path), input_names=enc_inputs, output_names=cache_names,
                          dynamic_axes=dyn_g, opset_version=opset, dynamo=False)  # fmt: skip
    x = torch.randn(1, num_grasps, model.grasp_dim, generator=gen).to(device)
    t = torch.full((1,), 500.0, device=device)
    den_path = directory / DENOISER_NAME
    dyn = {"x": {1: "G"}, "out": {1: "G"}, **({"anchor": {1: "G"}} if anchored else {})}
    with torch.no_grad():
        torch.onnx.export(_Denoise(model), (x, t, *cache), str(den_path), input_names=["x", "t", *cache_names],
                          output_names=["out"], dynamic_axes=dyn, opset_version=opset, dynamo=False)  # fmt: skip
    meta = {"num_points": num_points, "anchored": anchored, "cache_names": cache_names, "grasp_dim": model.grasp_dim,
            "encoder_inputs": enc_inputs}  # fmt: skip
    (directory / META_NAME).write_text(json.dumps(meta, indent=1))
    return {"encoder": enc_path, "denoiser": den_path, "meta": directory / META_NAME}


class OnnxNetworks:
    """ONNX Runtime sessions of an :func:`export_onnx` directory, fed and returning torch tensors."""

    def __init__(self, directory: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        directory = Path(directory)
        self.meta = json.loads((directory / META_NAME).read_text())
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                  if p in ort.get_available_providers()]  # fmt: skip
        opts = ort.SessionOptions()
        self.encoder = ort.InferenceSession(str(directory / ENCODER_NAME), opts, providers=providers)
        self.denoiser = ort.InferenceSession(str(directory / DENOISER_NAME), opts, providers=providers)
        self.names = self.meta["cache_names"]

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    def encode(self, points: torch.Tensor, anchors: torch.Tensor | None = None) -> SceneCache:
        if points.shape[0] != 1 or points.shape[1] != self.meta["num_points"]:
            raise ValueError(
                f"points: the ONNX encoder takes (1, {self.meta['num_points']}, 3), got {tuple(points.shape)}"
            )
        feeds = {"points": self._np(points)}
        if self.meta["anchored"]:
            if anchors is None:
                raise ValueError("anchors: expected (1, G, 3) for this anchored model, got None")
            feeds["anchors"] = self._np(anchors)
        outs = self.encoder.run(self.names, feeds)
        return SceneCache.from_tuple([torch.from_numpy(o).to(points.device) for o in outs])

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cache: SceneCache) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1)[:1].expand(1)
        feeds = {"x": self._np(x), "t": self._np(t)}
        feeds.update({n: self._np(v) for n, v in zip(self.names, cache.to_tuple(), strict=True)})
        return torch.from_numpy(self.denoiser.run(["out"], feeds)[0]).to(x.device)


################################################################################
#                                   TensorRT                                   #
################################################################################


def trt_available() -> tuple[bool, str]:
    """(True, version) when ``import tensorrt`` works, else (False, the reason)."""
    try:
        import tensorrt as trt
    except Exception as err:  # ImportError, or a missing shared library (OSError)
        return False, f"TensorRT not importable here ({type(err).__name__}: {err})"
    return True, str(trt.__version__)


def engine_cache_key(onnx_bytes: bytes, trt_version: str, gpu_name: str, precision: str,
                     shapes: dict | None = None) -> str:  # fmt: skip
    """sha256 over the ONNX model, TensorRT version, GPU name, precision and optimization profile:
    an engine is valid only for the exact model, library and GPU it was built for."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(onnx_bytes).digest())
    h.update(json.dumps([trt_version, gpu_name, precision, shapes or {}], sort_keys=True).encode())
    return h.hexdigest()[:32]


def build_trt_engine(onnx_path: str | Path, cache_dir: str | Path, *, precision: str = "fp16",
                     shapes: dict[str, tuple[tuple, tuple, tuple]] | None = None,
                     force_engine_update: bool = False, workspace_gib: float = 4.0) -> Path:  # fmt: skip
    """Build (or reuse) a serialized TensorRT engine of ``onnx_path``.

    Args:
        precision: ``fp32``, ``fp16`` or ``bf16`` (builder flags; layers TensorRT cannot lower stay fp32).
        shapes: {input: (min, opt, max)} of the dynamic inputs (one optimization profile).
        force_engine_update: rebuild even when the cache holds an engine for this key.

    Returns the engine file ``<cache_dir>/<stem>-<key>.engine``.
    """
    import tensorrt as trt

    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision: expected fp32, fp16 or bf16, got {precision!r}")
    onnx_path = Path(onnx_path)
    data = onnx_path.read_bytes()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    key = engine_cache_key(
        data, trt.__version__, gpu, precision, {k: list(map(list, v)) for k, v in (shapes or {}).items()}
    )
    out = Path(cache_dir) / f"{onnx_path.stem}-{key}.engine"
    if out.is_file() and not force_engine_update:
        return out
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log above)")
    from sceneleap_core.atomic import write_atomic

    write_atomic(out, lambda tmp: tmp.write_bytes(bytes(serialized)))
    return out


class TrtEngine:
    """One deserialized engine, run on CUDA torch tensors (TensorRT 10 named-tensor API)."""

    _DTYPES: ClassVar[dict] = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
               "INT64": torch.int64, "BOOL": torch.bool}  # fmt: skip

    def __init__(self, engine_path: str | Path):
        import tensorrt as trt

        self.trt = trt
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"{engine_path}: not a TensorRT engine for this TensorRT version / GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) != mode]

    def __call__(self, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        stream = torch.cuda.current_stream()
        keep = []
        for name in self.inputs:
            t = feeds[name].contiguous()
            want = self._DTYPES[self.engine.get_tensor_dtype(name).name]
            t = t.to(want)
            keep.append(t)
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        outs = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            o = torch.empty(shape, dtype=self._DTYPES[self.engine.get_tensor_dtype(name).name], device="cuda")
            self.context.set_tensor_address(name, o.data_ptr())
            outs.append(o)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return [o.float() for o in outs]


class TrtNetworks:
    """:class:`OnnxNetworks`'s interface on TensorRT engines built from an :func:`export_onnx` directory."""

    def __init__(self, directory: str | Path, *, precision: str = "fp16", cache_dir: str | Path | None = None,
                 max_grasps: int = 256, force_engine_update: bool = False):  # fmt: skip
        directory = Path(directory)
        self.meta = json.loads((directory / META_NAME).read_text())
        cache_dir = Path(cache_dir or directory / "trt_cache")
        self.names = self.meta["cache_names"]
        g = (1, 32, max_grasps)
        enc_shapes = {"anchors": tuple((1, n, 3) for n in g)} if self.meta["anchored"] else {}
        den_shapes = {"x": tuple((1, n, self.meta["grasp_dim"]) for n in g)}
        if self.meta["anchored"]:
            probe = OnnxNetworks(directory, providers=["CPUExecutionProvider"]).denoiser
            width = {i.name: i.shape[-1] for i in probe.get_inputs()}["anchor"]
            den_shapes["anchor"] = tuple((1, n, width) for n in g)
        self.encoder = TrtEngine(build_trt_engine(directory / ENCODER_NAME, cache_dir, precision=precision,
                                                  shapes=enc_shapes, force_engine_update=force_engine_update))  # fmt: skip
        self.denoiser = TrtEngine(build_trt_engine(directory / DENOISER_NAME, cache_dir, precision=precision,
                                                   shapes=den_shapes, force_engine_update=force_engine_update))  # fmt: skip

    def encode(self, points: torch.Tensor, anchors: torch.Tensor | None = None) -> SceneCache:
        feeds = {"points": points.float()}
        if self.meta["anchored"]:
            feeds["anchors"] = anchors.float()
        return SceneCache.from_tuple(self.encoder(feeds))

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cache: SceneCache) -> torch.Tensor:
        feeds = {"x": x.float(), "t": torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1)[:1]}
        feeds.update(dict(zip(self.names, cache.to_tuple(), strict=True)))
        return self.denoiser(feeds)[0]
