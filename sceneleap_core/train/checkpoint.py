"""Atomic, pickle-free checkpoint I/O for Lightning.

Saving writes ``.<name>.tmp<pid>`` next to the target, fsyncs it and renames it over the target
(``os.replace``, atomic on POSIX), then fsyncs the directory: a run killed while saving leaves the
previous checkpoint intact and never a truncated file under the final name. Loading uses
``torch.load(weights_only=True)``: checkpoints hold tensors and plain containers only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with temp-file + fsync + rename saves and ``weights_only`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path}: file not found")
        try:
            return torch.load(
                path, map_location=map_location or "cpu", weights_only=True if weights_only is None else weights_only
            )
        except Exception as err:  # truncated zip, unpickling refused, ...
            raise ValueError(f"checkpoint {path}: cannot load ({type(err).__name__}: {err})") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a training checkpoint on the CPU without unpickling code (``weights_only=True``)."""
    return AtomicCheckpointIO().load_checkpoint(path)
