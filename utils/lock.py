"""One run per name, so that two runs cannot overwrite each other's checkpoint and metrics: an
``flock`` on ``<checkpoint-dir>/<filename>.lock``, which the kernel drops however the run ends, or a
``.pidlock`` file where the file system has no ``flock`` (docs/checkpoints.md).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from utils.checkpoint import cannot_write
from utils.cli import UsageError

try:
    import fcntl
except ImportError:  # not on Windows: the file-only lock below is used
    fcntl = None


def _holder(path: Path) -> str:
    try:
        text = path.read_text().split()
    except OSError:
        text = []
    return f"process {text[1]} on {text[0]}" if len(text) == 2 else "another process"


def _refuse(path: Path) -> UsageError:
    return UsageError(
        f"another run is using this name: {path} is held by {_holder(path)}; wait for it to "
        "end, or give another --filename"
    )


def _alive_here(host: str, pid: int) -> bool:
    """Whether process ``pid`` may still be running: certainly if on another host."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """The lock as an exclusively created file naming its holder (no ``flock`` here)."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            words = path.read_text().split() if path.is_file() else []
            if len(words) == 2 and words[1].isdigit() and not _alive_here(words[0], int(words[1])):
                path.unlink(missing_ok=True)  # its holder is gone: take it over
                continue
            raise _refuse(path) from None
        except OSError as error:
            raise cannot_write(path, error) from None
    else:
        raise _refuse(path)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(f"{socket.gethostname()} {os.getpid()}\n")
    except OSError as error:  # an empty lock file would name no holder to check, ever after
        path.unlink(missing_ok=True)
        raise cannot_write(path, error) from None
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def run_lock(folder: Path, name: str) -> Iterator[Path]:
    """Hold the lock of run ``name`` in ``folder`` until the block ends; if another run holds it,
    raise a `UsageError` naming the holder."""
    path = folder / f"{name}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:  # ensure_writable passed: no inode left, most likely
        raise cannot_write(path, error) from None
    try:
        if fcntl is None:
            raise OSError(errno.ENOLCK, "no flock")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _refuse(path) from None
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        # The file just opened is the flock's; the file-only lock needs one it creates itself.
        with _file_lock(path.with_suffix(".pidlock")):
            yield path
        return
    try:
        # The holder's name is for the refusal line only; the flock holds without it (a full
        # disk may refuse the write, and the run's first write then says so in one line).
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the flock; the file stays, unlocked, for the next run
