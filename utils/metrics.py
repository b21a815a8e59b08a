"""The per-epoch metrics of a training run: `<filename>.metrics.jsonl`, and TensorBoard events.

One JSON object per line and per completed epoch (1-based ``epoch``, ``lr``, the losses,
``images_per_s``, ``time_s`` of the epoch, cumulative ``wall_s``, and ``test_*`` when the probe
ran). The file is rewritten whole from the rows the checkpoint holds, at the start and after
each epoch, so it always matches the state training continues from.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from utils.checkpoint import cannot_write, write_text
from utils.cli import UsageError


def metrics_path(checkpoint_dir: Path, filename: str) -> Path:
    return checkpoint_dir / f"{filename}.metrics.jsonl"


def metrics_line(row: dict[str, Any]) -> str:
    """A results row (0-based epoch, as kept in checkpoints) as one line of the file."""
    return json.dumps({**row, "epoch": row["epoch"] + 1}) + "\n"


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """The file holding ``rows``, replaced whole (`write_atomically`): a full disk or a crash
    leaves the previous file, never a cut line."""
    write_text(path, "".join(metrics_line(row) for row in rows))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics file; a line that is not a JSON object is a `UsageError`."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or "epoch" not in row:
            raise UsageError(
                f"{path}, line {number}: not a metrics line (a JSON object with an epoch)"
            )
        rows.append(row)
    return rows


def _quiet_event_writer(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    """``hook`` (a `threading.excepthook`) without the traceback of TensorBoard's writer thread
    failing to write: `TensorBoardLog.write` raises the same error as one line."""

    def excepthook(failure: Any) -> None:
        if not (
            isinstance(failure.exc_value, OSError)
            and type(failure.thread).__name__ == "_AsyncWriterThread"
        ):
            hook(failure)

    excepthook.quiets_event_writer = True  # type: ignore[attr-defined]  # installed once
    return excepthook


class TensorBoardLog:
    """Every numeric field of each row as a scalar at step = epoch."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError(
                "--tensorboard needs the tensorboard package, which is not installed here: "
                "pip install tensorboard, or drop the flag (the metrics file is written either way)"
            ) from None
        self.log_dir = log_dir
        if not getattr(threading.excepthook, "quiets_event_writer", False):
            threading.excepthook = _quiet_event_writer(threading.excepthook)
        try:
            self.writer = SummaryWriter(log_dir=str(log_dir))
        except OSError as error:
            raise cannot_write(log_dir, error) from None

    def write(self, row: dict[str, Any]) -> None:
        # The events are written by a thread of the writer, which keeps the error and raises it
        # at the next call; flush makes that this epoch's.
        scalars = {
            key: value
            for key, value in row.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)
        }
        try:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, row["epoch"] + 1)
            self.writer.flush()
        except OSError as error:
            raise cannot_write(self.log_dir, error) from None

    def close(self) -> None:
        try:
            self.writer.close()
        except OSError as error:
            raise cannot_write(self.log_dir, error) from None


class RunLog:
    """Where a run's per-epoch rows go: ``results`` (the list the checkpoint saves), the metrics
    file (rewritten from ``results`` at the start, so it matches the state training continues
    from) and, with ``tensorboard``, TensorBoard events. Only ``lead`` (rank 0) writes files."""

    def __init__(
        self,
        checkpoint_dir: Path,
        filename: str,
        results: list[dict[str, Any]],
        *,
        lead: bool = True,
        tensorboard: bool = False,
    ) -> None:
        self.path = metrics_path(checkpoint_dir, filename)
        self.results = results
        self.lead = lead
        if lead:
            write_metrics(self.path, results)
        board = checkpoint_dir / f"{filename}.tensorboard"
        self.tensorboard = TensorBoardLog(board) if tensorboard and lead else None

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """Record a completed epoch's row, with the run's cumulative ``wall_s``."""
        row["wall_s"] = (self.results[-1].get("wall_s", 0.0) if self.results else 0.0) + row[
            "time_s"
        ]
        self.results.append(row)
        if self.lead:
            write_metrics(self.path, self.results)
        if self.tensorboard is not None:
            self.tensorboard.write(row)
        return row

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
