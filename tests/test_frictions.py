"""What a new user met (issue 19): defaults of 0 hidden in --help, private checkpoints, epochs
counted from 0 in the progress bar, results only on stdout, curves written to the working folder."""

import json
import os
import stat

import pytest
import torch
from test_evaluation import write_checkpoint

import invariance_by_gradient as train
import lbfgs_linear_clf_spirograph
from evaluation import curves
from utils.checkpoint import save_checkpoint
from utils.cli import UsageError
from utils.run import Position, StepMeter


def test_help_shows_defaults_that_equal_zero():
    text = " ".join(train.get_args_parser().format_help().split())
    assert "weight of the gradient penalty; 0 turns it off (default: 0.0)" in text
    assert "seed of initialisation, data order and augmentation (default: 0)" in text
    # switches that are off and values decided later still show no default
    assert (
        "--cosine-anneal 10-epoch linear ramp then cosine decay to 0; constant rate when off"
        in text
    )


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoints_get_the_permissions_the_umask_gives(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = save_checkpoint({"w": torch.ones(1)}, tmp_path / "c.pth")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE(plain.stat().st_mode)


def test_the_progress_bar_counts_epochs_from_one():
    meter = StepMeter(Position(0), 2, batch_size=4, device=torch.device("cpu"), values={"x": "x"})
    steps = list(meter.log_every(["a", "b"]))
    assert steps == [(0, "a"), (1, "b")]
    assert meter.bar.desc == "epoch 1"  # the line after it reads "epoch    1/T"


def test_evaluation_writes_its_summary_to_output(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_checkpoint(tmp_path / "checkpoint" / "s.pth", "spirograph", 0.0003)
    parser = lbfgs_linear_clf_spirograph.get_args_parser()
    argv = ["--load-from", "s.pth", "--device", "cpu", "--output", "out/result.json"]
    with pytest.raises(UsageError, match="out is not a writable folder"):
        lbfgs_linear_clf_spirograph.main(parser.parse_args(argv))
    (tmp_path / "out").mkdir()
    capsys.readouterr()
    result = lbfgs_linear_clf_spirograph.main(parser.parse_args(argv))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "out" / "result.json").read_text() == last + "\n"
    assert json.loads(last) == result and result["mse"] > 0


def test_plot_writes_beside_the_first_metrics_file_and_keeps_its_example_line(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    row = {"epoch": 1, "contrastive_loss": 4.0, "penalty": 0.0, "loss": 4.0, "lr": 0.1}
    (runs / "a.metrics.jsonl").write_text(json.dumps(row) + "\n")
    out = curves.main(curves.get_args_parser().parse_args([str(runs / "a.metrics.jsonl")]))
    assert out == runs / "curves.png" and out.is_file()
    assert not (tmp_path / "curves.png").exists()
    files = "checkpoint/plain.metrics.jsonl checkpoint/gp.metrics.jsonl"
    example = f"    python3 -m evaluation.curves {files}"
    assert example in curves.get_args_parser().format_help().splitlines()
