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
