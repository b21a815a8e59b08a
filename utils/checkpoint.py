"""Checkpoints of plain types: written atomically, read with ``weights_only=True``.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so `torch.load` can
read it with ``weights_only=True``, which refuses any pickled object that is not one of those: a
file carrying code is rejected before any of it runs. The encoder and head state dicts are those
of the unwrapped modules.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from utils.cli import InputError
from utils.memory import in_words

FORMAT = "invclr-checkpoint"
VERSION = 2  # of the layout; `load_checkpoint` refuses a newer one


class CheckpointError(InputError):
    """A checkpoint cannot be written or read; the message says what is wrong and what to do."""


# The errors of a device or quota that is full, or of a file-size limit reached.
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteError(CheckpointError):
    """A file of a run could not be written (``path``): a full disk, a quota, a size limit."""

    def __init__(self, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.path = path


def cannot_write(path: Path, error: BaseException) -> WriteError:
    """The one line for ``error``, raised while ``path`` was written: which file, and why."""
    return WriteError(f"cannot write {path} ({why_not_written(error, path.parent)})", path)


def why_not_written(error: BaseException, folder: Path) -> str:
    """Why a write failed, from the `OSError` behind ``error`` (torch's zip writer raises a
    `RuntimeError` whose context is the `OSError` of the Python file it wrote to)."""
    cause = error
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    code = getattr(cause, "errno", None)
    if code == errno.ENOSPC:
        return f"no space left on the device; {folder} has {_free(folder)} free"
    if code == errno.EDQUOT:
        return "disk quota exceeded (quota -s shows yours)"
    if code == errno.EFBIG:
        limit = _file_size_limit()
        return (
            f"larger than the file-size limit of this process (ulimit -f), {limit} bytes"
            if limit is not None
            else "larger than the file system allows for one file"
        )
    if code == errno.ENOMEM:
        return "out of memory while writing it: free memory on this machine"
    if cause is not None:
        return cause.strerror or str(cause)
    return f"torch could not write it: {str(error).strip().splitlines()[0][:200]}"


def _free(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "an unknown amount"
    return in_words(free)


def _file_size_limit() -> int | None:
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _from_zip_writer(error: RuntimeError) -> bool:
    """Whether torch's zip writer raised ``error`` (it names its source file)."""
    text = str(error)
    return "inline_container" in text or "PytorchStreamWriter" in text


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """The one way this project writes a file: ``write(f)`` fills a temporary file in the same
    folder, which is synced and renamed over ``path``, so a crash or a full disk leaves the old
    file or the new one, never a part. Raises `WriteError` in one line."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise cannot_write(path, error) from None
    try:
        # mkstemp makes the file private (0600); give it what open() would under the umask, so
        # labmates read what the user's umask lets them. Some file systems refuse modes.
        with contextlib.suppress(OSError, AttributeError):
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)  # the previous file is untouched
        # torch's zip writer raises a RuntimeError over the OSError of the file it wrote to.
        if isinstance(error, OSError) or (
            isinstance(error, RuntimeError) and _from_zip_writer(error)
        ):
            raise cannot_write(path, error) from None
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """``state`` as a checkpoint of this project at ``path`` (`write_atomically`)."""
    marked = {"format": FORMAT, "version": VERSION, **state}
    return write_atomically(path, lambda f: torch.save(marked, f))


def write_text(path: str | Path, text: str) -> Path:
    """``text`` at ``path`` (`write_atomically`)."""
    return write_atomically(path, lambda f: f.write(text.encode()))


def save_figure(fig: Any, path: str | Path, dpi: int) -> Path:
    """A matplotlib figure as a PNG at ``path`` (`write_atomically`)."""
    return write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=dpi))


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX: a crash can otherwise forget it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename has still happened
    finally:
        os.close(fd)


def ensure_writable(folder: str | Path, flag: str = "--checkpoint-dir") -> Path:
    """Create ``folder`` and prove a file can be written there, so that a run learns at its start,
    not at its first checkpoint hours later, that it cannot save; ``flag`` names the folder's
    flag in the message."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        if error.errno in FULL:
            raise WriteError(
                f"cannot write checkpoints to {folder} ({why_not_written(error, folder)})", folder
            ) from None
        raise CheckpointError(
            f"cannot write checkpoints to {folder} ({error.strerror or error}); choose a "
            f"writable {flag}"
        ) from None
    return folder


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete the temporary files a killed `save_checkpoint` of ``path`` left behind."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def all_finite(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether every floating-point tensor of a state dict is free of NaN and infinity."""
    checks = [torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint of this project; anything else is refused with one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        AttributeError,
        TypeError,
    ) as error:
        text = str(error).strip()
        if isinstance(error, pickle.UnpicklingError) and "weights only" in text.lower():
            # torch's own message goes on to explain how to load the file unsafely; say why not.
            reason = "it holds objects other than tensors and plain containers; refused unrun"
        else:
            reason = (
                f"truncated or corrupt: {text.splitlines()[0] if text else type(error).__name__}"
            )
        raise CheckpointError(
            f"{path} is not a readable checkpoint of this project ({reason[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this project (no '{FORMAT}' marker)")
    if not isinstance(state.get("version"), int) or state["version"] > VERSION:
        raise CheckpointError(
            f"{path} is a checkpoint of version {state.get('version')!r}, newer than this code "
            f"reads ({VERSION}); update the project"
        )
    return state


def resolve_checkpoint(name: str, checkpoint_dir: str | Path) -> Path:
    """The checkpoint ``name`` stands for: the file ``name`` when it exists, else that name inside
    ``checkpoint_dir``; a name without ``.pth`` (the stem ``--filename`` took) is also tried as
    ``<name>.pth``, in both places. A name found nowhere is returned inside
    ``checkpoint_dir``, for `load_checkpoint` to report."""
    inside = Path(checkpoint_dir) / name
    candidates = [Path(name), inside]
    if not name.endswith(".pth"):
        candidates += [Path(f"{name}.pth"), Path(checkpoint_dir) / f"{name}.pth"]
    return next((path for path in candidates if path.is_file()), inside)
