"""What a run leaves to look at: the metrics file (utils/metrics.py), TensorBoard events, the
curves (evaluation/curves.py) and `--preview` (augmentation/preview.py)."""

import json
import sys

import pytest
from PIL import Image
from test_crash_safety import one_line, script_error
from test_training import SPIRO, run
from tiny_data import write_cifar_pickles, write_paths

import invariance_by_gradient as train
from evaluation import curves as plot
from utils.checkpoint import load_checkpoint
from utils.metrics import read_metrics

FIELDS = {"epoch", "lr", "contrastive_loss", "penalty", "loss", "images_per_s", "time_s", "wall_s"}
RUN = [*SPIRO, "--lambda-gp", "1e-2", "--gp-upper-limit", "1000", "--cosine-anneal"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lines(path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_well_formed_line_per_epoch_and_a_resume_appends(workdir):
    run(*RUN, "--num-epochs", "3", "--cut-off", "2", "--test-freq", "2", "--filename", "a")
    metrics = workdir / "checkpoint" / "a.metrics.jsonl"
    first = lines(metrics)
    assert [row["epoch"] for row in first] == [1, 2]
    assert all(FIELDS <= set(row) for row in first)
    assert "test_mse" not in first[0] and first[1]["test_mse"] > 0  # the probe ran at epoch 2
    assert first[1]["wall_s"] == pytest.approx(first[0]["time_s"] + first[1]["time_s"])
    state = load_checkpoint(workdir / "checkpoint" / "a.pth")
    assert [row["loss"] for row in first] == [row["loss"] for row in state["results"]]

    run("--resume", "a.pth", "--cut-off", "3")  # epoch 3 of 3
    after = lines(metrics)
    assert after[:2] == first and [row["epoch"] for row in after] == [1, 2, 3]
    assert after[2]["lr"] > after[1]["lr"]  # the schedule went on (still in its ramp)


def test_resuming_an_earlier_checkpoint_drops_the_lines_after_it(workdir):
    run(*RUN, "--num-epochs", "2", "--save-freq", "1", "--test-freq", "0", "--filename", "b")
    metrics = workdir / "checkpoint" / "b.metrics.jsonl"
    (workdir / "checkpoint" / "b.pth").unlink()
    # Continue from the end of epoch 1 under the same name: epoch 2 is redone, not duplicated.
    run("--resume", "b_epoch001.pth", "--filename", "b")
    assert [row["epoch"] for row in lines(metrics)] == [1, 2]


def test_tensorboard_events_or_one_line_where_it_is_missing(workdir, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    run(*RUN, "--num-epochs", "1", "--test-freq", "0", "--tensorboard", "--filename", "tb")
    events = list((workdir / "checkpoint" / "tb.tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails
    capsys.readouterr()  # the first run's output
    line = one_line(
        script_error(train, [*RUN, "--num-epochs", "1", "--tensorboard", "--filename", "no"],
                     capsys, monkeypatch)
    )  # fmt: skip
    assert "needs the tensorboard package" in line and "pip install tensorboard" in line
    assert not (workdir / "checkpoint" / "no.pth").exists()


def test_plot_overlays_runs_and_refuses_bad_files(workdir, capsys, monkeypatch):
    run(*RUN, "--num-epochs", "2", "--test-freq", "1", "--filename", "p")
    metrics = workdir / "checkpoint" / "p.metrics.jsonl"
    runs = {"one": read_metrics(metrics), "two": read_metrics(metrics)}
    drawn = plot.plot_runs(runs, workdir / "curves.png")
    assert drawn == ["contrastive_loss", "penalty", "clamp_fraction", "loss", "lr", "test_mse"]
    assert Image.open(workdir / "curves.png").size[0] > 100

    (workdir / "bad.jsonl").write_text('{"epoch": 1}\nnot json\n')
    capsys.readouterr()  # the run's output
    line = one_line(script_error(plot, [str(metrics), "bad.jsonl"], capsys, monkeypatch))
    assert "bad.jsonl, line 2: not a metrics line" in line
    line = one_line(script_error(plot, [str(metrics), "--labels", "a", "b"], capsys, monkeypatch))
    assert "--labels gives 2 names for 1 files" in line


def test_plot_leaves_out_the_penalty_panels_when_no_run_is_penalised(tmp_path):
    def rows(penalty, clamped):
        return [
            {"epoch": e, "contrastive_loss": 4.0 - e, "penalty": penalty * e, "loss": 4.0,
             "lr": 0.1, "clamp_fraction": clamped}
            for e in (1, 2)
        ]  # fmt: skip

    simclr = rows(0.0, None)
    assert plot.plot_runs({"simclr": simclr}, tmp_path / "a.png") == [
        "contrastive_loss", "loss", "lr"
    ]  # fmt: skip
    both = plot.plot_runs({"simclr": simclr, "invclr": rows(5.0, 0.0)}, tmp_path / "b.png")
    assert both == ["contrastive_loss", "penalty", "clamp_fraction", "loss", "lr"]


def test_the_epoch_line_and_the_curves_show_the_knn_monitor(tmp_path):
    rows = [
        {"epoch": e, "contrastive_loss": 4.0, "loss": 4.0, "lr": 0.1, "images_per_s": 10.0,
         "time_s": 1.0, "knn_weighted_accuracy": 40.0 + e, "knn_majority_accuracy": 38.5}
        for e in (0, 1)
    ]  # fmt: skip
    assert "kNN acc 41.00% weighted 38.50% majority" in plot.format_epoch(rows[1], 2)
    drawn = plot.plot_runs({"knn": rows}, tmp_path / "k.png")
    assert drawn[-2:] == ["knn_weighted_accuracy", "knn_majority_accuracy"]


@pytest.mark.parametrize("dataset", ["spirograph", "cifar10"])
def test_preview_writes_a_grid_and_trains_nothing(workdir, dataset):
    if dataset == "cifar10":
        write_paths(workdir, cifar10=write_cifar_pickles(workdir / "data", per_class=2))
        flags = ["--dataset", "cifar10", "--batch-size", "4"]
    else:
        flags = SPIRO
    path = run(*flags, "--preview", "3", "--filename", dataset)
    assert path.resolve() == workdir / "checkpoint" / f"{dataset}.preview.png"
    width, height = Image.open(path).size
    assert height > width  # three rows of image, view 1, view 2
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no checkpoint, no log
