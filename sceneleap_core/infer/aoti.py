"""The ``aoti`` planner backend: the denoiser step as a ``torch.export`` + AOTInductor package.

``export_aoti`` exports one denoiser step (x (1, G, D), model time t (1,), the flat
:class:`~sceneleap_core.models.denoisers.SceneCache` tensors -> (1, G, D); G dynamic) with
``torch.export`` and compiles it ahead of time with AOTInductor into ``denoiser.pt2`` (a shared
library in a zip, run by ``torch._inductor.aoti_load_package`` without this package's model code).
The encoder runs once per cloud and stays eager; the sampling loop stays in Python, as for the ONNX
and TensorRT backends. Packages are cached next to ``aoti.json``, keyed by the weights' hash, the
device and the torch version; a stale package is rebuilt.

    path = export_aoti(model, "engines/", device="cuda")
    step = AotiDenoiser("engines/")                # callable like the model's denoiser
    out = step(x, t, cache)

Compilation takes minutes on a small CPU (a C++ compiler is needed); the package is then reused.

Loading a package runs native code that can take the whole process down (torch 2.11's loader
segfaulted on a CUDA package of the bundled model on an H200, in ``_load_aoti``; compare
pytorch/pytorch#166415; on 2026-12-02 again, with and without a CUDA context created first,
``bench/gpu_aoti.sh``): :class:`AotiDenoiser` therefore loads each new package once in a child
process first (:func:`probe_load`) and raises a clear error, naming the backends to use instead,
when the child dies. The verdict is cached in ``aoti.json`` beside the package.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import torch

from sceneleap_core.atomic import write_text_atomic
from sceneleap_core.infer.export import _Denoise
from sceneleap_core.models.denoisers import SceneCache

PACKAGE_NAME, META_NAME = "denoiser.pt2", "aoti.json"


def model_key(model: torch.nn.Module, device: str | torch.device) -> str:
    """sha256 over the weights (names, shapes, bytes), the device type and the torch version: a
    package is valid only for the exact weights and runtime it was compiled for."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps([torch.device(device).type, torch.__version__]).encode())
    return h.hexdigest()[:32]


def same_device(actual: torch.device, wanted: str | torch.device) -> bool:
    """Whether a tensor on ``actual`` is on ``wanted``; ``cuda`` without an index means the current
    CUDA device (a model on ``cuda:0`` is on ``cuda``)."""
    wanted = torch.device(wanted)
    if actual.type != wanted.type:
        return False
    if wanted.index is None:
        return actual.type != "cuda" or actual.index in (None, torch.cuda.current_device())
    return actual.index == wanted.index


def export_aoti(model, directory: str | Path, *, device: str | torch.device = "cpu", num_grasps: int = 8,
                max_grasps: int = 1024, num_points: int = 256, force: bool = False) -> Path:  # fmt: skip
    """Compile ``model``'s denoiser step for ``device`` into ``directory/denoiser.pt2`` unless a
    package with the same :func:`model_key` is there (``force`` rebuilds). ``num_points``: the size of
    the example cloud encoded to get the step's scene cache (at least the encoder's input size; the
    cache's shapes do not depend on it). Returns the package path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    key = model_key(model, device)
    package, meta_path = directory / PACKAGE_NAME, directory / META_NAME
    if not force and package.is_file() and meta_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("key") == key:
                return package
        except json.JSONDecodeError:
            pass
    model = model.eval()
    if not same_device(next(model.parameters()).device, device):
        raise ValueError(f"device: the model is on {next(model.parameters()).device}, expected {device}")
    gen = torch.Generator(device="cpu").manual_seed(0)
    points = (torch.rand(1, int(num_points), 3, generator=gen) - 0.5).to(device)
    anchored = bool(getattr(model, "anchored", False))
    anchors = points[:, :num_grasps].clone() if anchored else None
    with torch.no_grad():
        cache = model.encode_scene(points, anchors=anchors, deterministic=True).to_tuple()
    x = torch.randn(1, num_grasps, model.grasp_dim, generator=gen).to(device)
    t = torch.full((1,), 50.0, device=device)
    g = torch.export.Dim("G", min=1, max=max_grasps)
    cache_dims = tuple({1: g} if anchored and i == len(cache) - 1 else None for i in range(len(cache)))
    with torch.no_grad():
        program = torch.export.export(_Denoise(model), (x, t, *cache), dynamic_shapes=({1: g}, None, cache_dims))
        tmp = directory / (PACKAGE_NAME + ".tmp.pt2")
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
    tmp.replace(package)
    meta = {"key": key, "device": device.type, "torch": torch.__version__, "anchored": anchored,
            "cache_len": len(cache), "grasp_dim": model.grasp_dim, "max_grasps": max_grasps}  # fmt: skip
    tmp_meta = directory / (META_NAME + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=1))
    tmp_meta.replace(meta_path)
    return package


_PROBE = (
    "import sys, torch\n"
    "if sys.argv[2] == 'cuda':\n"
    "    torch.zeros(1, device='cuda')  # a CUDA context first, as in the planner's process\n"
    "torch._inductor.aoti_load_package(sys.argv[1])\nprint('loaded')\n"
)


def probe_load(package: str | Path, *, device: str = "cpu", timeout: float = 600.0) -> str | None:
    """Load ``package`` in a child Python process (with a CUDA context first when ``device`` is
    ``cuda``): None when it loads, else why not (exit status and the end of its stderr; a segfault
    is exit status -11)."""
    try:
        run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", _PROBE, str(package), str(device)],
                             capture_output=True, text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"the loader did not return within {timeout:.0f} s"
    if run.returncode == 0 and "loaded" in run.stdout:
        return None
    tail = " | ".join(line.strip() for line in run.stderr.strip().splitlines()[-3:])
    return f"exit status {run.returncode}: {tail or 'no message'}"


class AotiDenoiser:
    """A compiled :func:`export_aoti` package, called like the model's denoiser:
    ``(x (1, G, D), t (), cache) -> (1, G, D)``. One cloud at a time, guidance 1."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        meta_path = directory / META_NAME
        if not meta_path.is_file() or not (directory / PACKAGE_NAME).is_file():
            raise ValueError(f"aoti: expected {PACKAGE_NAME} and {META_NAME} in {directory} (export_aoti writes them)")
        self.meta = json.loads(meta_path.read_text())
        package = directory / PACKAGE_NAME
        if self.meta.get("probed") != self.meta.get("key"):  # a new package: load it in a child first
            self.meta.update(
                probed=self.meta.get("key"), probe_error=probe_load(package, device=self.meta.get("device", "cpu"))
            )
            write_text_atomic(meta_path, json.dumps(self.meta, indent=1))
        if self.meta.get("probe_error"):
            raise RuntimeError(
                f"aoti: torch {torch.__version__} cannot load the compiled package {package} on "
                f"{self.meta.get('device')} ({self.meta['probe_error']}); use the 'cuda_graph' or 'compile' backend"
            )
        self.runner = torch._inductor.aoti_load_package(str(package))

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cache: SceneCache) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError(f"x: the aoti backend takes one cloud (1, G, D), got {tuple(x.shape)}")
        flat = cache.to_tuple()
        if len(flat) != self.meta["cache_len"]:
            raise ValueError(f"cache: expected {self.meta['cache_len']} tensors for this package, got {len(flat)}")
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1)[:1].expand(1).contiguous()
        out = self.runner(x.float().contiguous(), t, *(c.contiguous() for c in flat))
        return out[0] if isinstance(out, (list, tuple)) else out
