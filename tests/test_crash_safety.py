"""Never lose a run: kills at random moments, graceful stops, the NaN guard, safe loading and
one-line errors. Training runs as a real process here, as a user (or a scheduler) would see it."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from inprocess import run_script
from tiny_data import write_image_folder, write_paths

import invariance_by_gradient as train
import lbfgs_linear_clf
import lbfgs_linear_clf_spirograph
from utils.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from utils.cli import run_cli

REPO = Path(__file__).resolve().parent.parent
# 30 Spirograph images at batch 4: 7 steps an epoch, 14 in all, the penalty on every step.
RUN = [
    "--dataset", "spirograph", "--proportion", "0.0003", "--batch-size", "4",
    "--arch", "resnet18", "--width", "0.125", "--num-epochs", "2", "--test-freq", "0",
    "--device", "cpu", "--num-workers", "0", "--lambda-gp", "1e-2", "--gp-upper-limit", "1000",
]  # fmt: skip
STEPS_PER_EPOCH = 7


def start(workdir: Path, *flags: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "invariance_by_gradient.py"), *flags],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for_training(proc: subprocess.Popen) -> None:
    """Block until the process has loaded everything and begun its first step."""
    for line in proc.stdout:
        if line.startswith("training "):
            return
    raise AssertionError(f"training never started: {proc.stderr.read()[-2000:]}")


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(path)
    return {**{f"encoder.{k}": v for k, v in state["encoder"].items()},
            **{f"head.{k}": v for k, v in state["head"].items()}}  # fmt: skip


def assert_same_weights(path: Path, reference: dict[str, torch.Tensor]) -> None:
    got = weights(path)
    assert got.keys() == reference.keys()
    different = [k for k in got if not torch.equal(got[k], reference[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    """The run without interruption: its final weights and per-epoch losses."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    done = run_script("invariance_by_gradient.py", workdir, *RUN)  # in this process
    assert done.returncode == 0, done.stderr[-2000:]
    state = load_checkpoint(workdir / "checkpoint" / "output.pth")
    return {"weights": weights(workdir / "checkpoint" / "output.pth"), "results": state["results"]}


def losses(results: list[dict]) -> list[tuple[float, float, float]]:
    return [(r["contrastive_loss"], r["penalty"], r["loss"]) for r in results]


def test_sigkill_at_random_moments_then_resume_ends_bit_identical(tmp_path, uninterrupted):
    rng = random.Random(0)
    latest = tmp_path / "checkpoint" / "output.pth"
    kills, positions = 0, []
    while True:
        resume = ["--resume", "output.pth"] if latest.is_file() else []
        proc = start(tmp_path, *RUN, "--save-every-steps", "1", *resume)
        if kills == 2:
            code, _, err = finish(proc)
            assert code == 0, err[-2000:]
            break
        wait_for_training(proc)
        # Let 1-3 steps save, then kill anywhere in a step, a save, or between them. Counting
        # saves rather than seconds keeps every kill inside the run on a fast machine too (2 kills
        # of at most 3 steps and a part leave the 14 steps unfinished).
        saves_to_wait, seen = (
            rng.randint(1, 3),
            latest.stat().st_mtime_ns if latest.is_file() else 0,
        )
        while saves_to_wait and proc.poll() is None:
            stamp = latest.stat().st_mtime_ns if latest.is_file() else 0
            if stamp != seen:
                seen, saves_to_wait = stamp, saves_to_wait - 1
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no handler runs, no cleanup
            kills += 1
        proc.communicate()
        if proc.returncode == 0:  # the run ended before the kill came (a fast machine)
            break
        if latest.is_file():
            position = load_checkpoint(latest)["next"]
            positions.append((position["epoch"], position["step"]))
    print("positions after kills:", positions)
    assert kills >= 2, kills
    # The kills left the run at different places, mid-epoch among them.
    assert any(step > 0 for _, step in positions), positions
    assert not list(latest.parent.glob(".*.tmp"))  # a killed save's leftovers are cleaned
    assert_same_weights(latest, uninterrupted["weights"])
    assert losses(load_checkpoint(latest)["results"]) == losses(uninterrupted["results"])


def test_sigterm_mid_epoch_saves_a_checkpoint_the_run_completes_from(tmp_path, uninterrupted):
    latest = tmp_path / "checkpoint" / "output.pth"
    proc = start(tmp_path, *RUN, "--save-every-steps", "2")
    wait_for_training(proc)
    while not latest.is_file():  # two steps done: now inside the first epoch
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM" in out and f"--resume {latest.relative_to(tmp_path)}" in out
    saved = load_checkpoint(latest)["next"]
    assert saved["epoch"] == 0 and 2 <= saved["step"] < STEPS_PER_EPOCH
    code, out, err = finish(start(tmp_path, *RUN, "--resume", "output.pth"))
    assert code == 0, err[-2000:]
    assert f"resuming output at epoch 1, step {saved['step'] + 1}" in out
    assert_same_weights(latest, uninterrupted["weights"])
    assert losses(load_checkpoint(latest)["results"]) == losses(uninterrupted["results"])


def test_second_ctrl_c_quits_at_once(tmp_path):
    # Full width: a step (about 0.7 s) outlasts the 0.2 s between the two signals.
    proc = start(tmp_path, *RUN, "--width", "1", "--num-epochs", "20")
    wait_for_training(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc, timeout=30)
    assert code == 130
    assert "Traceback" not in err and "interrupted" in err
    assert not (tmp_path / "checkpoint" / "output.pth").exists()


def test_nan_loss_stops_naming_the_step_and_never_saves_nan(tmp_path):
    # A rate of 1e30 blows the weights up within a few steps.
    proc = start(tmp_path, *RUN, "--base-lr", "1e30", "--save-every-steps", "1",
                 "--log-interval", "1")  # fmt: skip
    code, out, err = finish(proc)
    assert code == 1, err[-2000:]
    (line,) = [x for x in err.splitlines() if "error:" in x]
    assert "Traceback" not in err
    assert "NaN or infinite" in line and "Last good checkpoint" in line
    for path in (tmp_path / "checkpoint").glob("*.pth"):
        for tensor in weights(path).values():
            assert torch.isfinite(tensor).all(), path


class WritesAFile:
    """A pickle payload: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def script_error(module, argv, capsys, monkeypatch) -> tuple[int, str]:
    """Run a script's command line in this process, as its ``__main__`` block does; (exit
    status, stderr) of a run that fails."""
    monkeypatch.setattr(sys, "argv", [module.__file__, *argv])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(module.main, module.get_args_parser())
    return exit_info.value.code, capsys.readouterr().err


def one_line(code_and_err: tuple[int, str], code: int = 2) -> str:
    got, err = code_and_err
    assert got == code, err[-2000:]
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    return line


def test_checkpoint_with_a_pickle_payload_is_refused_and_nothing_runs(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "checkpoint" / "evil.pth"
    evil.parent.mkdir()
    torch.save({"format": FORMAT, "version": 2, "encoder": WritesAFile(marker)}, evil)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(evil)
    for module, flags in (
        (train, ["--resume", "evil.pth"]),
        (lbfgs_linear_clf_spirograph, ["--load-from", "evil.pth"]),
        (lbfgs_linear_clf, ["--load-from", "evil.pth"]),
    ):
        line = one_line(script_error(module, flags, capsys, monkeypatch))
        assert "evil.pth is not a readable checkpoint" in line and "refused unrun" in line
    assert not marker.exists()


def test_truncated_and_foreign_files_are_refused(tmp_path):
    good = save_checkpoint({"encoder": {"w": torch.randn(1000)}}, tmp_path / "good.pth")
    data = good.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.pth")
    torch.save({"encoder": {}}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(tmp_path / "foreign.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "empty.pth")


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"value": torch.tensor(1.0)}, tmp_path / "c.pth")

    def half_then_crash(obj, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(CheckpointError, match="no space left on the device; .* free"):
        save_checkpoint({"value": torch.tensor(2.0)}, path)
    assert load_checkpoint(path)["value"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]


def test_bad_inputs_are_one_line_each(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def error(*argv: str) -> str:
        return one_line(script_error(train, list(argv), capsys, monkeypatch))

    (tmp_path / "dataset-paths.json").write_text("{not json")
    assert "cannot read dataset-paths.json" in error("--dataset", "cifar10")
    (tmp_path / "dataset-paths.json").write_text('["a list"]')
    assert "no string entry" in error("--dataset", "cifar10")
    (tmp_path / "empty").mkdir()
    write_paths(tmp_path, cifar10=tmp_path / "empty", imagenet=tmp_path / "empty")
    assert "empty" in error("--dataset", "cifar10")
    assert "train/ and val/" in error("--dataset", "imagenet", "--test-freq", "0")
    root = write_image_folder(tmp_path / "inet", {"train": 0, "val": 0}, classes=2, size=[(8, 8)])
    write_paths(tmp_path, imagenet=root)
    line = error("--dataset", "imagenet", "--test-freq", "0")
    assert "imagenet" in line and "no image" in line
    (tmp_path / "a-file").write_text("")
    line = error(*RUN, "--checkpoint-dir", "a-file/sub")
    assert "cannot write checkpoints to a-file/sub" in line
    (tmp_path / "checkpoint").mkdir(exist_ok=True)  # a failed start may have made it
    (tmp_path / "checkpoint" / "output.pth").write_text("an earlier run's")
    line = error(*RUN)
    assert "checkpoint/output.pth exists" in line and "--resume" in line
    assert (tmp_path / "checkpoint" / "output.pth").read_text() == "an earlier run's"
    assert "--cut-off 3 is beyond --num-epochs 2" in error(*RUN, "--cut-off", "3")
    assert error("--resume", "missing.pth").endswith("no checkpoint at checkpoint/missing.pth")
    # Flag values argparse rejects: one line too, not the whole usage block.
    assert "--batch-size: must be at least 2, got 1" in error(*RUN, "--batch-size", "1")
    assert "invalid choice: 'resnet7'" in error(*RUN, "--arch", "resnet7")
    assert "--seed: must be at least 0" in error(*RUN, "--seed", "-1")
    assert "--seed: must be at most 4294967295" in error(*RUN, "--seed", str(2**40))
    assert "without folders" in error(*RUN, "--filename", "runs/a")
    # Flags that would do nothing for the dataset, and a Spirograph too small to test on.
    line = error(*RUN, "--colour-strength", "1.0")
    assert "--colour-strength and --blur" in line and "drop them" in line
    line = error(*RUN, "--proportion", "0.00002")
    assert "leaves 2 training and 0 test images" in line and "at least 5e-05" in line
    # A file of this project that training did not write (an evaluation's, a hand-made one).
    save_checkpoint({"args": {"dataset": "spirograph"}, "encoder": {}}, "checkpoint/e.pth")
    line = error("--resume", "e.pth")
    assert "lacks head, optimizer, results, rng, next, so it cannot be resumed" in line


def test_a_bare_run_name_is_found_as_its_pth(tmp_path, monkeypatch):
    """``--resume p`` and ``--load-from p`` find ``checkpoint/p.pth``, the file ``--filename p``
    wrote; a file named exactly ``p`` would come first."""
    monkeypatch.chdir(tmp_path)

    def parse(module, *argv):
        return module.get_args_parser().parse_args(list(argv))

    train.main(parse(train, *RUN, "--cut-off", "1", "--filename", "p"))
    resumed = train.main(parse(train, "--resume", "p", "--cut-off", "2"))
    assert resumed == Path("checkpoint/p.pth") and len(load_checkpoint(resumed)["results"]) == 2
    result = lbfgs_linear_clf_spirograph.main(
        parse(lbfgs_linear_clf_spirograph, "--load-from", "p", "--device", "cpu")
    )
    assert result["checkpoint"] == "checkpoint/p.pth"
    assert resolve_checkpoint("p", "checkpoint") == Path("checkpoint/p.pth")
    (tmp_path / "p").write_text("")
    assert resolve_checkpoint("p", "checkpoint") == Path("p")
    assert resolve_checkpoint("q", "checkpoint") == Path("checkpoint/q")  # reported as missing


def test_an_error_in_a_data_loader_worker_names_the_file(tmp_path, capsys, monkeypatch):
    """torch re-raises a worker's error with a traceback for its message; the one line printed
    is the original message, naming the file that does not decode."""
    monkeypatch.chdir(tmp_path)
    root = write_image_folder(tmp_path / "inet", {"train": 2, "val": 1}, classes=2, size=[(20, 20)])
    bad = sorted((root / "train").rglob("*.*"))[0]
    bad.write_bytes(b"not an image")
    write_paths(tmp_path, imagenet=root)
    flags = ["--dataset", "imagenet", "--batch-size", "4", "--arch", "resnet18", "--device", "cpu"]
    flags += ["--num-workers", "1", "--test-freq", "0", "--num-epochs", "1"]
    code, err = script_error(train, flags, capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]  # after the progress bar's erasure (a terminal's \r)
    assert line.startswith(f"invariance_by_gradient.py: error: imagenet: cannot decode {bad}")
    assert "Caught" not in line


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["invariance_by_gradient.py", "--resume", "x.pth", "--debug"])
    with pytest.raises(CheckpointError, match="no checkpoint at checkpoint/x.pth"):
        run_cli(train.main, train.get_args_parser())


def test_imagenet_crops_depend_on_seed_epoch_and_image_only(tmp_path):
    """Crops come from a generator seeded by (seed, epoch, index), so any worker, any order and
    a run resumed mid-epoch see the same views; another epoch sees new ones."""
    from torch.utils.data import DataLoader

    from datasets.imagenet import ImageFolderCrops

    root = write_image_folder(tmp_path, {"train": 3}, classes=2, size=[(64, 48), (40, 70)])
    data = ImageFolderCrops(root / "train", size=16, seed=5)
    data.epoch = 3
    in_order = [data[i][:2] for i in range(len(data))]
    loader = DataLoader(data, batch_size=1, sampler=[4, 1, 5], num_workers=2)
    for i, (v1, v2, _) in zip([4, 1, 5], loader, strict=True):
        assert torch.equal(v1[0], in_order[i][0]) and torch.equal(v2[0], in_order[i][1])
    assert not torch.equal(in_order[0][0], in_order[0][1])  # the two views differ
    data.epoch = 4
    assert not torch.equal(data[0][0], in_order[0][0])


def test_resume_auto_starts_then_continues_with_one_unchanged_command(tmp_path, uninterrupted):
    """A requeued job reruns its command as it was: the first time it starts the run, the next
    continues it, and the run ends as one that was never interrupted."""
    command = [*RUN, "--resume", "auto", "--save-every-steps", "1"]
    proc = start(tmp_path, *command)
    wait_for_training(proc)
    latest = tmp_path / "checkpoint" / "output.pth"
    while not latest.is_file() and proc.poll() is None:
        time.sleep(0.01)
    proc.kill()  # preempted after its first saved step
    proc.communicate()
    assert latest.is_file()
    # The rerun needs no process of its own: it runs in this one (tests/inprocess.py).
    script = "invariance_by_gradient.py"
    done = run_script(script, tmp_path, *command)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_weights(latest, uninterrupted["weights"])
    assert losses(load_checkpoint(latest)["results"]) == losses(uninterrupted["results"])
    # A name with no checkpoint starts a new run; --overwrite contradicts it.
    done = run_script(script, tmp_path, *command, "--filename", "fresh", "--cut-off", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(load_checkpoint(tmp_path / "checkpoint" / "fresh.pth")["results"]) == 1
    done = run_script(script, tmp_path, *command, "--overwrite")
    err = done.stderr
    assert done.returncode == 2 and err.strip().count("\n") == 0 and "drop one of them" in err
