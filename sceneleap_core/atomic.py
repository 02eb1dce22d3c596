"""Crash-safe files: atomic writes through per-process temp names, an exclusive lock, the
clean-up of temps left by dead processes, and caches that treat an unreadable file as missing.

Temp names carry the writer's pid (``<name>.<pid>.tmp<suffix>``), so concurrent processes never
share one, and a temp whose pid no longer runs is debris of a kill (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_TEMP = re.compile(r"\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def temp_path(path: str | Path) -> Path:
    """``<dir>/<name>.<pid>.tmp<suffix>``: this process's temp for ``path`` (same directory)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)``, fsync ``tmp`` and rename it over ``path``; the temp is removed on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_atomic` of a text file."""
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def default_file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give a new file: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_safetensors_atomic(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    """:func:`write_atomic` of a safetensors file, with the mode of any other file this process
    writes (``safetensors`` creates its files 0600, which another user, e.g. a ROS node's, cannot read)."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, default_file_mode())

    return write_atomic(path, write)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def remove_stale_temps(folder: str | Path, pattern: str = "*.tmp*") -> list[Path]:
    """Delete temps in ``folder`` (matching ``pattern``) whose writer pid no longer runs.

    Returns the removed paths. Temps without a pid in their name are left alone.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for path in folder.glob(pattern):
        m = _TEMP.search(path.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    if removed:
        log.info("removed %d stale temp file(s) of dead processes in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block.

    Serializes read-modify-write of a shared file between processes of one host (and NFS with
    lock support). Without ``fcntl`` (Windows) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def load_npz_or_none(path: str | Path, read: Callable) -> object | None:
    """``read(np.load(path))`` or None when the file is missing or unreadable (truncated, empty,
    not a zip, a key missing); an unreadable file is deleted so it is rebuilt, with a warning."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return read(z)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
        log.warning(
            "%s is unreadable (%s: %s): treating it as missing and rebuilding it", path, type(err).__name__, err
        )
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
