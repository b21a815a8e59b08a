"""The study's measuring scripts beside its plan (study/suite.py, study/first_order.py): the
suite's records and costs, and the first-order term in its small-step limit."""

import pytest
import torch


def test_evaluation_suite_records_every_measure_and_its_cost(tmp_path, capsys):
    from test_evaluation import write_checkpoint

    from study import suite

    checkpoint = write_checkpoint(tmp_path / "s.pth", "spirograph", 0.0005)
    args = suite.get_args_parser().parse_args(
        [str(checkpoint), "--only-variance", "--random-init", "--out", str(tmp_path / "out")]
    )
    (record,) = suite.main(args)
    assert (tmp_path / "out" / "s-random.json").is_file()
    assert record["result"]["random_init"] is True
    assert set(record["result"]["measure_seconds"]) == {"conditional_variance", "authors_variance"}
    assert "x the probe" in capsys.readouterr().out
    text = suite.table(tmp_path / "out")
    assert "| conditional variance, theta (εᵀẑ) |" in text and "| weights | random init |" in text


def test_knn_records_hold_the_probe_and_both_votes(tmp_path, monkeypatch):
    from inprocess import run_script
    from test_evaluation import write_checkpoint
    from tiny_data import write_cifar_pickles, write_paths

    from study import suite
    from utils.cli import UsageError

    write_paths(tmp_path, cifar10=write_cifar_pickles(tmp_path / "data", per_class=2))
    # 32 dimensions: 50 images in more are separable, and the probe's fit takes thousands of steps.
    checkpoint = write_checkpoint(tmp_path / "c.pth", "cifar10", 1.0, width=0.0625)

    def run_here(command, log):  # the runner's subprocess, here, beside the tiny dataset
        done = run_script(command[0], tmp_path, *command[1:])
        log.write_text(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr
        return 1.0

    monkeypatch.setattr(suite, "run", run_here)
    parse = suite.get_args_parser().parse_args
    out = ["--out", str(tmp_path / "knn")]
    (record,) = suite.main(parse([str(checkpoint), "--only-knn", *out]))
    assert "--knn" in record["command"] and "--suite" not in record["command"]
    assert {"accuracy", "knn"} <= set(record["result"])
    text = suite.knn_table(tmp_path / "knn")
    assert "| kNN, weighted vote (k 50, T 0.1) (%) |" in text  # 200 lowered to the 50 images
    assert "| kNN, majority vote (k 10) (%) |" in text and "| probe accuracy (%) |" in text
    spirograph = write_checkpoint(tmp_path / "s.pth", "spirograph", 1.0)
    with pytest.raises(UsageError, match="no classes"):
        suite.main(parse([str(spirograph), "--only-knn", *out]))
    with pytest.raises(UsageError, match="give one"):
        suite.main(parse([str(checkpoint), "--only-knn", "--only-variance", *out]))


def test_invariance_study_first_order_term_is_the_small_step_limit(monkeypatch):
    """For draws θ′ a tiny step from θ the first-order term equals the actual change; the
    concentration is the squared norm of the mean normalised representation."""
    from augmentation.spirograph import (
        render_spirograph,
        sample_data_params,
        sample_transform_params,
    )
    from augmentation.views import SpirographViews
    from models import ResNetEncoder
    from study import first_order

    gen = torch.Generator().manual_seed(0)
    data, theta = sample_data_params(16, generator=gen), sample_transform_params(16, generator=gen)
    steps = [theta + 1e-3 * torch.randn(16, 6, generator=gen) for _ in range(3)]
    draws = iter([theta, *steps])
    monkeypatch.setattr(SpirographViews, "sample_nuisance", lambda self, n, **_: next(draws))
    torch.manual_seed(0)
    encoder = ResNetEncoder("resnet18", "cifar", width=0.125).eval()
    row = first_order.study(encoder, data, 3, gen)
    assert row["first_order_over_actual"] == pytest.approx(1, rel=0.05)
    with torch.no_grad():
        h = encoder(render_spirograph(data, steps[0])).double()
    z = torch.nn.functional.normalize(h, dim=1)
    assert row["concentration"] == pytest.approx(z.mean(0).pow(2).sum().item(), rel=1e-3)
