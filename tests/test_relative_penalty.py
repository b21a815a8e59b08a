"""--gp-scale spread as training runs it (the formula's own tests are in test_invclr.py, the
two-process one in test_distributed.py): the lazy penalty, the floor, the refusals, the records;
and the sweep's rule (study/sweep.py)."""

from pathlib import Path

import pytest
import torch

import invariance_by_gradient as train
import models.invclr
from augmentation.spirograph import sample_data_params
from augmentation.views import SpirographViews
from models.invclr import CollapsedSpread, Networks
from study.protocol import PROTOCOLS, RELATIVE_SWEEP, SEEDS, Sweep, relative_method
from study.records import command_line, write_record
from study.sweep import choose, summary, sweep_jobs, write_sweep
from utils.cli import TrainingError, UsageError

SPIRO = ["--arch", "resnet18", "--width", "0.125", "--device", "cpu", "--num-workers", "0",
         "--dataset", "spirograph", "--proportion", "0.0001", "--batch-size", "4",
         "--test-freq", "0"]  # fmt: skip


def run(*flags: str) -> Path:
    return train.main(train.get_args_parser().parse_args([*SPIRO, *flags]))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("scale", ["none", "spread"])
def test_gp_every_needs_nothing_new_for_the_relative_penalty(workdir, monkeypatch, capsys, scale):
    """--gp-every K with --gp-scale spread: the quotient is computed on every K-th step only, with
    weight K·λ, exactly as the paper's penalty (the same assertions hold for both); the epoch's
    spread is the mean over its penalised steps, in the results and the epoch line."""
    spreads = []
    exact = train.checked_spread

    def counting(*a, **k):
        spread = exact(*a, **k)
        spreads.append(spread.item())
        return spread

    monkeypatch.setattr(train, "checked_spread", counting)
    # 10 images at batch 4: 2 steps an epoch, so global steps 0 and 2 of 4 are penalised.
    path = run("--num-epochs", "2", "--lambda-gp", "1e-2", "--gp-upper-limit", "1e9",
               "--gp-every", "2", "--gp-scale", scale)  # fmt: skip
    rows = torch.load(path, weights_only=True)["results"]
    assert len(spreads) == (2 if scale == "spread" else 0)
    for row, spread in zip(rows, spreads or [None, None], strict=True):
        assert row["penalty"] > 0 and row["clamp_fraction"] == 0
        # One penalised step of two with weight 2λ: on average the loss is c + λ·penalty.
        assert row["loss"] == pytest.approx(row["contrastive_loss"] + 1e-2 * row["penalty"],
                                            rel=1e-5)  # fmt: skip
        assert row.get("spread") == (None if spread is None else pytest.approx(spread, rel=1e-6))
    assert ("spread 0." in capsys.readouterr().out) == (scale == "spread")


def test_a_collapsed_spread_stops_before_the_backward_pass_naming_the_step(workdir, monkeypatch):
    """The spread under the floor at global step 3 (epoch 2's first, at 2 steps an epoch): one
    line naming it and epoch 1's checkpoint, no checkpoint after it; and in the step itself no
    gradient has reached a weight."""
    calls = []
    exact = models.invclr.batch_spread

    def collapsing(*a, **k):
        calls.append(1)
        return exact(*a, **k) * (1e-9 if len(calls) == 3 else 1.0)

    monkeypatch.setattr(models.invclr, "batch_spread", collapsing)
    with pytest.raises(TrainingError) as stopped:
        run("--num-epochs", "3", "--lambda-gp", "1e-2", "--gp-upper-limit", "1e9",
            "--gp-scale", "spread", "--save-freq", "1")  # fmt: skip
    line = str(stopped.value)
    assert "\n" not in line and "below 1e-06, at step 3 (epoch 2, step 1)" in line
    assert "Last good checkpoint: checkpoint/output.pth" in line
    assert sorted(p.name for p in (workdir / "checkpoint").glob("*.pth")) == [
        "output.pth",
        "output_epoch001.pth",
    ]
    assert torch.load(workdir / "checkpoint" / "output.pth", weights_only=True)["epoch"] == 0

    monkeypatch.setattr(models.invclr, "SPREAD_FLOOR", 2.0)  # above any unit rows' spread
    args = train.get_args_parser().parse_args(["--arch", "resnet18", "--batch-size", "4"])
    torch.manual_seed(0)
    encoder, head, optimizer, _ = train.build_model(args, "cifar", torch.device("cpu"))
    before = {k: v.clone() for k, v in encoder.state_dict().items() if v.is_floating_point()}
    views = SpirographViews(generator=torch.Generator().manual_seed(2))
    images = sample_data_params(4, generator=torch.Generator().manual_seed(1))
    with pytest.raises(CollapsedSpread):
        train.training_step(
            Networks(encoder, head), views, optimizer, images, images, temperature=0.5,
            penalty_weight=0.1, gp_upper_limit=1e9, gp_scale="spread", step=6,
        )  # fmt: skip
    assert all(p.grad is None for p in [*encoder.parameters(), *head.parameters()])
    weights = encoder.state_dict()
    assert all(torch.equal(weights[k], v) for k, v in before.items() if "running" not in k)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--gp-scale", "spread", "--gp-upper-limit", "1e9"], "--lambda-gp 0 turns off"),
        (["--gp-scale", "spread", "--lambda-gp", "1e-2"], "give --gp-upper-limit"),
    ],
)
def test_bad_combinations_with_the_relative_penalty_are_one_line(workdir, flags, said):
    with pytest.raises(UsageError, match=said):
        run("--num-epochs", "1", *flags)
    assert not (workdir / "checkpoint").exists()


def filled(fields: tuple[str, ...], value: float) -> dict:
    """A record holding every one of ``fields`` (study.records' dotted paths) as ``value``."""
    record: dict = {}
    for field in fields:
        path, _, kind = field.partition(":")
        *parents, leaf = path.split(".")
        place = record
        for key in parents:
            place = place.setdefault(key, {})
        place[leaf] = {"str": "", "dict": {}, "list": []}.get(kind, value)
    return record


def write_setting(training, evaluation, *, clamped=0.0, validation=None, stopped=None, n=20):
    """Records of one setting: ``n`` epochs, then the evaluation unless ``validation`` is None."""
    epochs = [{"epoch": e, "penalty": 3.0, "loss": 4.0, "clamp_fraction": clamped, "spread": 0.1}
              for e in range(n)]  # fmt: skip
    date = f"2026-12-07 00:00:{len(list(training.record.parent.glob('*'))):02d}"
    record = {"command": command_line(training.command), "machine": {}, "date": date,
              "epochs": epochs} | ({"stopped": stopped} if stopped else {})  # fmt: skip
    write_record(training.record, record)
    if validation is not None:
        result = filled(evaluation.fields, 0.5)
        result["result"] |= {"validation_mse": validation, "converged": True,
                             "reg_search_converged": True}  # fmt: skip
        result |= {"command": command_line(evaluation.command), "trained": date}
        write_record(evaluation.record, result)


def test_the_sweep_rule_picks_the_best_held_out_score_among_settings_that_trained(tmp_path):
    """The rule of study/protocol.py: a stopped run and a run clamped on most penalised steps are
    not eligible, however good their score; the best held-out MSE of the others wins; an
    unfinished sweep chooses nothing, and one with no eligible setting says so."""
    methods = tuple(relative_method(w, "1e9") for w in ("1e-3", "1e-2", "1e-1", "1"))
    sweep = Sweep("relative", "spirograph", 100, methods, rule="the rule")
    jobs = sweep_jobs(sweep, tmp_path / "out", tmp_path / "records")
    pairs = list(zip(jobs[::2], jobs[1::2], strict=True))
    write_setting(*pairs[0], validation=0.020)
    write_setting(*pairs[1], validation=0.015)
    write_setting(*pairs[2], validation=0.001, clamped=0.6)  # at the clamp: close to SimCLR
    page = tmp_path / "sweep.md"
    assert choose(summary(sweep, jobs), lower_is_better=True) is None  # one setting to go
    assert "not yet" in write_sweep(sweep, jobs, page)
    write_setting(*pairs[3], stopped="error: the batch's spread fell to 1e-9", n=3)
    rows = summary(sweep, jobs)
    assert [r["eligible"] for r in rows] == [True, True, False, False]
    assert choose(rows, lower_is_better=True)["method"] is methods[1]
    text = write_sweep(sweep, jobs, page)
    assert page.read_text() == text and "**Chosen**: P / s, λ = 1e-2, no limit" in text
    assert "| 3 (stopped) |" in text and "the rule" in text
    write_setting(*pairs[1], validation=0.015, clamped=0.9)
    write_setting(*pairs[0], validation=0.020, n=19)  # stopped short of its epochs
    assert "none is eligible" in write_sweep(sweep, jobs, page)


def test_the_sweep_is_fixed_before_it_runs():
    """Five weights over four decades, "none" and one limit, on a seed the study does not use,
    each run with --gp-scale spread in the laptop protocol and evaluated at its last epoch."""
    assert RELATIVE_SWEEP.seed not in SEEDS
    settings = {(m.lambda_gp, m.upper_limit) for m in RELATIVE_SWEEP.methods}
    weights = sorted({float(w) for w, _ in settings})
    assert weights[-1] / weights[0] >= 1e4 and len(settings) == len(weights) * 2
    jobs = sweep_jobs(RELATIVE_SWEEP, Path("results"), Path("docs/results"))
    for training, evaluation in zip(jobs[::2], jobs[1::2], strict=True):
        assert "--gp-scale spread" in " ".join(training.command) and "--seed 100" in " ".join(
            training.command
        )
        assert evaluation.epoch == PROTOCOLS["spirograph"].epochs
        assert "--reg-weight auto" in " ".join(evaluation.command)
