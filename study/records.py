"""The study's records: one JSON file per job under `docs/results/<dataset>/`, what each must
hold, and the facts written into it (command, machine, commit).

A record that does not parse, or lacks a field the study reads, is a `RecordError` naming the
file: no study command takes a damaged record for a job not yet run.
"""

from __future__ import annotations

import json
import platform
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from utils.checkpoint import write_text
from utils.cli import InputError

REPO = Path(__file__).resolve().parent.parent
# Per-epoch fields that measure time, not the run: a retrained run may differ in these alone.
TIMING = ("images_per_s", "time_s", "wall_s")
KINDS = {"num": (int, float), "str": (str,), "list": (list,), "dict": (dict,)}
SAID = {"num": "a number", "str": "text", "list": "a list", "dict": "an object"}


class RecordError(InputError):
    """A record the study cannot read: damaged, or from no version of the study."""


def shown(path: Path) -> str:
    """A path as a command written into a record shows it: relative to the repository."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def command_line(command: list[str]) -> str:
    return f"python3 {shlex.join(command)}"


def read_record(path: Path, fields: tuple[str, ...]) -> dict[str, Any] | None:
    """The record at ``path``, None where there is no file. Raises `RecordError` naming the file
    where it does not parse or lacks one of ``fields``: dotted paths into it, "[]" for every row
    of a list, and ":num", ":str", ":list" or ":dict" for the type the value must have."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RecordError(f"{shown(path)} cannot be read ({error.strerror})") from None
    try:
        record = json.loads(text)
    except ValueError as error:
        raise RecordError(damaged(path, f"is not JSON ({error})")) from None
    if not isinstance(record, dict):
        raise RecordError(damaged(path, "is not a JSON object"))
    missing = [said(field) for field in fields if not holds(record, field)]
    if missing:
        raise RecordError(damaged(path, f"lacks {', '.join(missing)}"))
    return record


def said(field: str) -> str:
    path, _, kind = field.partition(":")
    return path.replace(".[]", "[]") + (f" ({SAID[kind]})" if kind else "")


def holds(value: Any, field: str) -> bool:
    """Whether ``value`` has ``field`` (see `read_record`), of its type."""
    path, _, kind = field.partition(":")
    key, _, rest = path.partition(".")
    typed = f"{rest}:{kind}" if kind else rest
    if key == "[]":
        return isinstance(value, list) and bool(value) and all(holds(v, typed) for v in value)
    if not isinstance(value, dict) or key not in value:
        return False
    if rest:
        return holds(value[key], typed)
    leaf = value[key]
    if not kind:
        return leaf is not None
    return isinstance(leaf, KINDS[kind]) and not isinstance(leaf, bool)


def damaged(path: Path, what: str) -> str:
    return (
        f"{shown(path)} {what}: a damaged record; restore it (git checkout -- {shown(path)}) or "
        "delete it to run its job again"
    )


def write_record(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` whole or not at all: a killed job leaves no part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(record, indent=1) + "\n")


def last_json(log: Path) -> dict[str, Any]:
    """The evaluation script's JSON line: the last line of its log that is a JSON object."""
    for line in reversed(log.read_text().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise InputError(f"{log} holds no JSON result line; see the log, then rerun")


def machine() -> dict[str, Any]:
    """What the numbers ran on: processor, the instruction sets that change CPU speed (and the
    order of float sums), torch."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": torch.get_num_threads(),
        "avx512": "avx512f" in flags,
        "amx": "amx_tile" in flags,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


KIND = ("cpu", "avx512", "amx", "cores", "torch")  # what a record's machine says of the sums


def in_words(computer: dict[str, Any]) -> str:
    """A record's machine in words: the CPU model and whether it has AVX-512, which change the
    order in which floats are summed, then the threads and torch."""
    words = [f"{computer.get('cpu')} {'with' if computer.get('avx512') else 'without'} AVX-512"]
    words += ["with AMX"] if computer.get("amx") else []
    words += [f"{computer['cores']} threads"] if computer.get("cores") else []
    words += [f"torch {computer['torch']}"] if computer.get("torch") else []
    return ", ".join(words)


def git_commit() -> str | None:
    """The commit that ran, marked "+changes" when the working tree's code differs from it.
    The study's own outputs do not count: a record the runner rewrote, or a report not yet
    committed, changes no code that runs."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    outputs = [f":!{path}" for path in ("docs/results", "docs/results.md", "docs/figures",
                                         "docs/relative-sweep.md", "README.md")]  # fmt: skip
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                              *outputs], cwd=REPO, capture_output=True, text=True)  # fmt: skip
    commit = head.stdout.strip()
    return f"{commit}+changes" if commit and changed.stdout.strip() else commit or None


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")  # a run retrained within a minute is another run
