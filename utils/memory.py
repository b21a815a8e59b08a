"""An allocation that fails, told in one line: which step, how large it was, and what to change.

Three errors mean the same thing here: `torch.OutOfMemoryError` (CUDA), the `RuntimeError` of
torch's CPU allocator ("DefaultCPUAllocator: can't allocate memory: you tried to allocate N
bytes"), and an `OSError` or `MemoryError` with ENOMEM (Python's own allocations, a worker's
fork). `out_of_memory` turns any of them into `OutOfMemory`, which `utils.cli.run_cli` prints as
one line with the exit status of the other resource failures (2, as a full disk); it prints a
failed allocation outside any such step as one line too.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator

import torch

# "you tried to allocate 1073741824 bytes" (CPU), "Tried to allocate 2.00 GiB" (CUDA).
_CPU_BYTES = re.compile(r"tried to allocate (\d+) bytes", re.IGNORECASE)
_CUDA_SIZE = re.compile(r"Tried to allocate ([\d.]+) (B|KiB|MiB|GiB|TiB)")
_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


class OutOfMemory(Exception):
    """A step needed more memory than the process could have: its message says which step, the
    size that sets its memory, and what to change."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation (CUDA, torch's CPU allocator, or the system's)."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    if isinstance(error, OSError):  # re-raised from a DataLoader worker, it keeps only its text
        return error.errno == errno.ENOMEM or f"[Errno {errno.ENOMEM}]" in str(error)
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)


def attempted_bytes(error: BaseException) -> int | None:
    """The size of the allocation that failed, where the message says it."""
    text = str(error)
    if match := _CPU_BYTES.search(text):
        return int(match.group(1))
    if match := _CUDA_SIZE.search(text):
        return round(float(match.group(1)) * _UNITS[match.group(2)])
    return None


def in_words(size: int) -> str:
    """``size`` bytes for people: 4.6 MiB."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.1f} {unit}"
    return f"{size} bytes"


def memory_error(error: BaseException, where: str, advice: str) -> OutOfMemory:
    """The one-line `OutOfMemory` for a failed allocation ``error``: ``where`` (the step, and
    the size that sets its memory), the allocation's size where the message gives it, and
    ``advice`` (what to change)."""
    size = attempted_bytes(error)
    tried = f"; it tried to allocate {in_words(size)}" if size is not None else ""
    return OutOfMemory(f"out of memory in {where}{tried}: {advice}")


@contextlib.contextmanager
def out_of_memory(where: str, advice: str) -> Iterator[None]:
    """Inside: a failed allocation becomes `memory_error` (where, advice)."""
    try:
        yield
    except Exception as error:
        if isinstance(error, OutOfMemory) or not is_out_of_memory(error):
            raise
        raise memory_error(error, where, advice) from error
