"""A file that cannot be written (a full disk, a quota, a file-size limit) is one line that names
it and the checkpoint to continue from; what was already written is left as it was.

A file-size limit (RLIMIT_FSIZE, which makes writes fail with EFBIG: Python ignores SIGXFSZ)
works everywhere; a full disk needs a small tmpfs, which only root can mount, and is skipped
elsewhere."""

import contextlib
import errno
import hashlib
import json
import os
import resource
import subprocess
import threading
from pathlib import Path

import pytest
import torch
from inprocess import run_script
from test_crash_safety import REPO, RUN

from utils.checkpoint import WriteError, save_checkpoint, why_not_written, write_text
from utils.metrics import TensorBoardLog, write_metrics

# Quarter width: a checkpoint of about 6 MB, so a 16 MB tmpfs holds two and a half.
SMALL = [*RUN, "--width", "0.25"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def file_size_limit(limit: int):
    """Files this process writes may not grow past ``limit`` bytes inside the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def run(workdir: Path, *command: str, limit: int | None = None) -> subprocess.CompletedProcess:
    """A script of the project (a path, or ``-m`` and a module) as a user runs it, its files
    limited to ``limit`` bytes; in this process, which ignores SIGXFSZ as python does."""
    name, *argv = command[1:] if command[0] == "-m" else command
    with file_size_limit(limit) if limit is not None else contextlib.nullcontext():
        return run_script(Path(name).name if name.endswith(".py") else name, workdir, *argv)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The error line of a script that failed to write, after checking it is one line."""
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.replace("\r", "\n").splitlines()
    lines = [line for line in lines if line.strip() and not line.startswith("epoch ")]  # no bars
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def first_epoch(workdir: Path, *flags: str) -> Path:
    """The first epoch of a two-epoch run in ``workdir``: its checkpoint."""
    done = run(workdir, str(REPO / "invariance_by_gradient.py"), *SMALL, "--cut-off", "1", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir / "checkpoint" / "output.pth"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


def test_why_a_write_failed_is_read_from_the_error_or_what_torch_caught():
    folder = Path(".")
    assert why_not_written(OSError(errno.ENOSPC, "x"), folder).startswith(
        "no space left on the device; . has "
    )
    assert "disk quota exceeded" in why_not_written(OSError(errno.EDQUOT, "x"), folder)
    with file_size_limit(10**9):
        assert "file-size limit of this process (ulimit -f), 1000000000 bytes" in why_not_written(
            OSError(errno.EFBIG, "x"), folder
        )
    try:  # torch's zip writer: a RuntimeError raised while handling the file's OSError
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            # as torch raises it: the OSError is its context, not its cause
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")  # noqa: B904
    except RuntimeError as error:
        assert why_not_written(error, folder).startswith("no space left on the device")


def test_a_save_past_the_size_limit_leaves_the_previous_checkpoint_and_no_temporary(tmp_path):
    path = tmp_path / "run.pth"
    save_checkpoint({"w": torch.zeros(10)}, path)
    before = digest(path)
    with file_size_limit(100_000), pytest.raises(WriteError) as caught:
        save_checkpoint({"w": torch.zeros(100_000)}, path)
    assert str(caught.value) == (
        f"cannot write {path} (larger than the file-size limit of this process (ulimit -f), "
        "100000 bytes)"
    )
    assert digest(path) == before and leftovers(tmp_path) == []


def test_metrics_and_text_files_are_left_whole_when_a_write_fails(tmp_path):
    metrics = tmp_path / "run.metrics.jsonl"
    metrics.write_text('{"epoch": 1}\n' * 20)
    before = metrics.read_bytes()
    with file_size_limit(len(before) + 5), pytest.raises(WriteError, match="run.metrics.jsonl"):
        write_metrics(metrics, [{"epoch": 0}] * 20 + [{"epoch": 1, "loss": 1.0}])  # 5 bytes fit
    assert metrics.read_bytes() == before

    with file_size_limit(len(before) + 5), pytest.raises(WriteError, match="ulimit -f"):
        write_text(metrics, "x" * 1000)
    assert metrics.read_bytes() == before and leftovers(tmp_path) == []


def test_tensorboard_events_that_cannot_be_written_are_one_error_without_a_thread_traceback(
    tmp_path, capsys
):
    pytest.importorskip("tensorboard")
    log = TensorBoardLog(tmp_path / "board")
    with file_size_limit(300), pytest.raises(WriteError) as caught:
        for epoch in range(50):
            log.write({"epoch": epoch, "loss": 1.0, "lr": 0.1, "penalty": 2.0})
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'board'} (larger than the")
    for thread in threading.enumerate():  # the writer's thread has ended, its hook has run
        if type(thread).__name__ == "_AsyncWriterThread":
            thread.join(timeout=10)
    assert "Traceback" not in capsys.readouterr().err


def test_a_checkpoint_past_the_size_limit_stops_training_with_the_last_good_one_intact(tmp_path):
    latest = first_epoch(tmp_path)
    before = digest(latest)
    metrics_before = (tmp_path / "checkpoint" / "output.metrics.jsonl").read_bytes()
    train = str(REPO / "invariance_by_gradient.py")
    done = run(tmp_path, train, *SMALL, "--resume", "auto", "--cut-off", "2", limit=2**20)
    assert one_line(done) == (
        "invariance_by_gradient.py: error: cannot write checkpoint/output.pth (larger than the "
        "file-size limit of this process (ulimit -f), 1048576 bytes); the last good checkpoint, "
        "checkpoint/output.pth, is intact: make room and continue with --resume "
        "checkpoint/output.pth"
    )
    assert "epoch    2/2" in done.stdout  # it trained the epoch, then could not save it
    assert digest(latest) == before and leftovers(latest.parent) == []
    assert (tmp_path / "checkpoint" / "output.metrics.jsonl").read_bytes() != metrics_before

    # The metrics file is rewritten at every start: a limit below its size stops the run there.
    metrics_before = (tmp_path / "checkpoint" / "output.metrics.jsonl").read_bytes()
    done = run(tmp_path, train, *SMALL, "--resume", "auto", "--cut-off", "2", limit=100)
    assert one_line(done).startswith(
        "invariance_by_gradient.py: error: cannot write checkpoint/output.metrics.jsonl (larger "
        "than the file-size limit"
    )
    assert "the last good checkpoint, checkpoint/output.pth, is intact" in done.stderr
    assert digest(latest) == before
    assert (tmp_path / "checkpoint" / "output.metrics.jsonl").read_bytes() == metrics_before

    # With room again, the same command finishes the run.
    done = run(tmp_path, train, *SMALL, "--resume", "auto", "--cut-off", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = (tmp_path / "checkpoint" / "output.metrics.jsonl").read_text().splitlines()
    assert [json.loads(row)["epoch"] for row in rows] == [1, 2]


def test_the_export_the_preview_and_the_evaluation_output_past_the_size_limit_are_one_line(
    tmp_path,
):
    latest = first_epoch(tmp_path)
    done = run(tmp_path, "-m", "models.export", str(latest), "encoder.pt", limit=2**20)
    assert one_line(done) == (
        "export.py: error: cannot write encoder.pt (larger than the file-size limit of this "
        "process (ulimit -f), 1048576 bytes)"
    )
    assert not (tmp_path / "encoder.pt").exists() and leftovers(tmp_path) == []

    train = str(REPO / "invariance_by_gradient.py")
    done = run(tmp_path, train, *SMALL, "--filename", "look", "--preview", "2", limit=2000)
    assert one_line(done) == (
        "invariance_by_gradient.py: error: cannot write checkpoint/look.preview.png (larger than "
        "the file-size limit of this process (ulimit -f), 2000 bytes)"
    )
    assert not (tmp_path / "checkpoint" / "look.preview.png").exists()

    (tmp_path / "result.json").write_text("an earlier result\n")
    probe = str(REPO / "lbfgs_linear_clf_spirograph.py")
    done = run(tmp_path, probe, "--load-from", "output.pth", "--output", "result.json", limit=100)
    assert one_line(done).startswith(
        "lbfgs_linear_clf_spirograph.py: error: --output: cannot write result.json (larger than "
        "the file-size limit"
    )
    assert done.stderr.strip().endswith("; the summary is the line above")
    assert json.loads(done.stdout.splitlines()[-1])["mse"] > 0  # the line above
    assert (tmp_path / "result.json").read_text() == "an earlier result\n"


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs at ``tmp_path / "disk"``, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()[:200]}")
    try:
        yield disk
    finally:
        unmounted = subprocess.run(["umount", str(disk)], capture_output=True, text=True)
        assert unmounted.returncode == 0, f"{disk} is still mounted: {unmounted.stderr}"


def fill(folder: Path, leave: int) -> None:
    """Write a file in ``folder`` until the device has at most ``leave`` bytes free."""
    with open(folder / "filler", "ab") as f:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave:
                f.write(block)
                f.flush()


def test_a_full_disk_stops_training_at_a_periodic_save_and_at_a_metrics_write(tmp_path, small_disk):
    flags = ["--checkpoint-dir", str(small_disk), "--save-freq", "1"]
    first_epoch(tmp_path, *flags)  # output.pth and output_epoch001.pth: 12 of 16 MB
    latest, kept = small_disk / "output.pth", small_disk / "output_epoch001.pth"
    before = digest(latest), digest(kept)
    train = str(REPO / "invariance_by_gradient.py")
    resume = [*SMALL, *flags, "--resume", "auto", "--cut-off", "2"]

    done = run(tmp_path, train, *resume)  # epoch 2's periodic checkpoint does not fit
    line = one_line(done)
    assert line.startswith(
        f"invariance_by_gradient.py: error: cannot write {small_disk}/output_epoch002.pth (no "
        f"space left on the device; {small_disk} has "
    )
    assert line.endswith(
        f"free); the last good checkpoint, {latest}, is intact: make room and continue with "
        f"--resume {latest}"
    )
    assert (digest(latest), digest(kept)) == before and leftovers(small_disk) == []

    fill(small_disk, leave=0)  # not a page left for the metrics file's rewrite
    metrics_before = (small_disk / "output.metrics.jsonl").read_bytes()
    line = one_line(run(tmp_path, train, *resume))
    assert line.startswith(
        f"invariance_by_gradient.py: error: cannot write {small_disk}/output.metrics.jsonl (no "
        "space left on the device"
    )
    assert (digest(latest), digest(kept)) == before
    assert (small_disk / "output.metrics.jsonl").read_bytes() == metrics_before

    (small_disk / "filler").unlink()
    kept.unlink()  # room for epoch 2's latest checkpoint beside epoch 1's, not for another
    done = run(tmp_path, train, *resume, "--save-freq", "5")
    assert done.returncode == 0, done.stderr[-3000:]
