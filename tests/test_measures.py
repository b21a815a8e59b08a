"""The measures beyond the probe (evaluation/variance.py, shift.py, nuisance.py, measures.py and
the averaging curve of encoding.py), each against an answer computed another way."""

import argparse

import pytest
import torch
import torch.nn.functional as F
from test_evaluation import last_json, script, write_checkpoint
from tiny_data import write_cifar_pickles, write_paths

from augmentation.colour import colour_distortion, colour_jitter, sample_jitter_params
from augmentation.normalize import normalize
from augmentation.spirograph import TRANSFORM_BOUNDS, sample_data_params
from augmentation.views import NaturalViews, SpirographViews
from datasets.natural import stratified_indices
from datasets.sources import DATASETS
from evaluation.encoding import Encoded, prefix_means
from evaluation.invariance import seeded_rows
from evaluation.measures import label_fractions
from evaluation.nuisance import nuisance_prediction, nuisance_views
from evaluation.probe import fit_and_score
from evaluation.shift import jitter_every_image, shifted_bounds
from evaluation.variance import (
    authors_variance,
    conditional_variance,
    rademacher_signs,
    variance_terms,
)

CPU = torch.device("cpu")
COLOUR = torch.tensor([0.7, 0.4, 0.3])


def grey_patterns(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) grey images in [0.35, 0.55]: the colour distortion at strength 0.5 maps
    each one by a positive affine map of its pixels, with no clamping."""
    g = torch.Generator().manual_seed(seed)
    return (0.35 + 0.2 * torch.rand(n, 1, size, size, generator=g)).expand(-1, 3, -1, -1)


class ColourBlind(torch.nn.Module):
    """Row sums of the standardised channel mean: blind to any positive affine map of the pixels
    (what the colour distortion does to `grey_patterns`) and to horizontal flips, not to the
    image."""

    def forward(self, x):
        m = x.mean(dim=1)
        m = (m - m.mean(dim=(1, 2), keepdim=True)) / m.std(dim=(1, 2), keepdim=True)
        return m.sum(dim=2)


class MeanColour(torch.nn.Module):
    """The mean colour: on identical constant images, a fixed embedding of the draw alone."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def natural_views(seed: int, strength: float = 0.5) -> NaturalViews:
    return NaturalViews(
        "cifar10", 8, strength, crop=False, generator=torch.Generator().manual_seed(seed)
    )


# --- conditional variance ------------------------------------------------------------------------


def test_variance_terms_follow_their_definitions():
    """Against loops over images and draws: the unbiased variance over draws of εᵢᵀẑ, averaged
    over images (not divided by anything), the within-image trace and the across-image trace.
    A biased variance, a shared ε, or a ratio in place of the absolute value fails."""
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(5, 7, 3, generator=g, dtype=torch.float64), dim=-1)
    signs = rademacher_signs(7, 3, seed=1)
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    got = variance_terms(z, signs)
    per_image, trace = [], []
    for i in range(7):
        values = [float(signs[i] @ z[p, i]) for p in range(5)]
        mean = sum(values) / 5
        per_image.append(sum((v - mean) ** 2 for v in values) / 4)
        trace.append(sum(float(z[:, i, d].var()) for d in range(3)))
    across = sum(float(z[p].var(dim=0).sum()) for p in range(5)) / 5
    assert got["conditional_variance"] == pytest.approx(sum(per_image) / 7, rel=1e-12)
    assert got["trace"] == pytest.approx(sum(trace) / 7, rel=1e-12)
    assert got["across"] == pytest.approx(across, rel=1e-12)
    assert got["ratio"] == pytest.approx(got["trace"] / across, rel=1e-12)


def test_conditional_variance_is_zero_for_an_encoder_blind_to_colour():
    images = grey_patterns(64)
    measured = conditional_variance(
        ColourBlind(), lambda: images.split(16), lambda: natural_views(0), 10, seed=0, device=CPU
    )
    assert set(measured) == {"theta", "distortion"}
    for variant in measured.values():
        assert variant["conditional_variance"] < 1e-9 and variant["trace"] < 1e-9
        assert variant["across"] > 0.1  # it does tell the images apart


def direct_colour_variances(n: int = 200_000) -> tuple[float, float]:
    """For MeanColour on constant images of COLOUR: the trace of the covariance of its unit output
    over θ with the apply masks fixed, averaged over the masks' four cases by their
    probabilities (0.8 jitter, 0.2 grayscale), and over θ and the masks together; computed on
    one pixel, without the view maker or the measure."""
    g = torch.Generator().manual_seed(123)
    pixel = COLOUR.view(1, 3, 1, 1).expand(n, 3, 1, 1)
    theta = sample_jitter_params(n, 0.5, generator=g)

    def unit(jitter, gray):
        out = normalize(colour_distortion(pixel, theta, jitter, gray), "cifar10").flatten(1)
        return F.normalize(out.double(), dim=1)

    cases = {(True, False): 0.64, (True, True): 0.16, (False, False): 0.16, (False, True): 0.04}
    theta_only = sum(
        p * unit(torch.full((n,), j), torch.full((n,), gr)).var(dim=0).sum().item()
        for (j, gr), p in cases.items()
    )
    u = torch.rand(2, n, generator=g)
    whole = unit(u[0] < 0.8, u[1] < 0.2).var(dim=0).sum().item()
    return theta_only, whole


def test_conditional_variance_of_a_fixed_embedding_of_the_draw_is_its_variance_over_the_draws():
    """Identical constant images through MeanColour: each image's representation is a fixed
    function of its draw. The θ-only variant must give the variance over θ with the masks held
    (0.46), the whole-distortion variant the variance over θ and masks (0.69); swapping which
    draws are held fails both."""
    theta_only, whole = direct_colour_variances()
    assert whole > 1.3 * theta_only
    images = COLOUR.view(1, 3, 1, 1).expand(4000, 3, 8, 8)
    measured = conditional_variance(
        MeanColour(), lambda: images.split(500), lambda: natural_views(0), 10, seed=0, device=CPU
    )
    assert measured["theta"]["trace"] == pytest.approx(theta_only, rel=0.05)
    assert measured["theta"]["conditional_variance"] == pytest.approx(theta_only, rel=0.08)
    assert measured["distortion"]["trace"] == pytest.approx(whole, rel=0.05)
    assert measured["distortion"]["conditional_variance"] == pytest.approx(whole, rel=0.08)
    # Under one draw each image has its own θ and masks: the across-image spread is the same
    # population variance as the whole distortion's.
    assert measured["theta"]["across"] == pytest.approx(whole, rel=0.05)


def test_theta_only_draws_hold_the_apply_masks():
    """At colour strength 0 the jitter is the identity, so draws of θ alone are all the same
    image, while redrawing the masks flips images to grey and back."""
    images = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    views = natural_views(0, strength=0.0)
    measured = conditional_variance(
        MeanColour(), lambda: images.split(16), lambda: views, 6, seed=0, device=CPU
    )
    assert measured["theta"]["trace"] == 0.0
    assert measured["distortion"]["trace"] > 1e-3


def test_spirograph_has_only_the_theta_variant():
    params = sample_data_params(12, generator=torch.Generator().manual_seed(0))
    views = SpirographViews(generator=torch.Generator().manual_seed(0))
    measured = conditional_variance(
        MeanColour(), lambda: params.split(6), lambda: views, 4, seed=0, device=CPU
    )
    assert list(measured) == ["theta"] and measured["theta"]["trace"] > 0


def test_the_authors_computation_measures_spread_across_images():
    """On the colour-blind encoder, whose conditional variance is 0, the authors' (P, B, D) view of
    image-major repeats takes each variance over the ten different images (p·B + b) // P; the
    expected value is computed here from the encoder's outputs by those indices. It is about the
    spread across images, and nowhere near 0."""
    images = grey_patterns(200, seed=3)
    measured = authors_variance(
        ColourBlind(), images.split(100), natural_views(1), seed=0, device=CPU
    )
    y = F.normalize(ColourBlind()(images).double(), dim=1)
    expected = []
    for start in (0, 100):
        for b in range(100):
            rows = [start + (p * 100 + b) // 10 for p in range(10)]
            expected.append(y[rows].var(dim=0).sum().item())
    assert measured["trace"] == pytest.approx(sum(expected) / 200, rel=1e-6)
    across = y.var(dim=0).sum().item()
    assert measured["trace"] == pytest.approx(across, rel=0.25) and measured["trace"] > 0.1
    # The projected form: one sign vector per column, drawn batch by batch from the seed.
    generator, projected = torch.Generator().manual_seed(0), []
    for start in (0, 100):
        signs = torch.randint(0, 2, (100, y.shape[1]), generator=generator).double() * 2 - 1
        for b in range(100):
            rows = [start + (p * 100 + b) // 10 for p in range(10)]
            projected.append((y[rows] @ signs[b]).var().item())
    assert measured["projected"] == pytest.approx(sum(projected) / 200, rel=1e-6)
    assert (measured["batch"], measured["draws"]) == (100, 10)


# --- test-time shift -----------------------------------------------------------------------------


def test_shifted_spirograph_ranges_are_cut_to_valid_values_or_refused():
    background = [1, 3, 5]
    moved = shifted_bounds("background_mean", 0.4)
    assert all(moved[i] == pytest.approx((0.4, 1.0)) for i in background)
    assert all(moved[i] == TRANSFORM_BOUNDS[i] for i in (0, 2, 4))
    assert shifted_bounds("background_range", 0.3)[1] == pytest.approx((0.0, 0.9))
    assert shifted_bounds("h_mean", -0.5)[0] == pytest.approx((0.0, 2.0))
    assert shifted_bounds("h_range", 0.75)[0] == pytest.approx((0.0, 3.25))
    assert shifted_bounds("h_mean", 0.0) == TRANSFORM_BOUNDS
    with pytest.raises(
        ValueError, match="--shift-background-mean 1 leaves no valid range of rback"
    ):
        shifted_bounds("background_mean", 1.0)
    with pytest.raises(ValueError, match="of h"):
        shifted_bounds("h_mean", -3)


def test_the_shifted_jitter_acts_on_every_image_and_is_the_identity_at_zero():
    """At s > 0 every image is jittered (no random apply, no grayscale): each differs from the
    plain image and equals the jitter of it for some θ. At s = 0 the images are the plain ones."""
    images = torch.rand(64, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    plain = normalize(images, "cifar10")
    assert torch.equal(jitter_every_image(images, "cifar10", 0.0, torch.Generator()), plain)
    shifted = jitter_every_image(images, "cifar10", 0.75, torch.Generator().manual_seed(5))
    theta = sample_jitter_params(64, 0.75, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(shifted, normalize(colour_jitter(images, theta), "cifar10"))
    assert ((shifted - plain).flatten(1).abs().amax(dim=1) > 1e-3).all()


# --- feature averaging ---------------------------------------------------------------------------


def test_prefix_means_encode_each_pass_once_and_average_the_first_m():
    """A stub pass p returns p + row / 100, so the mean of the first M passes is (M + 1) / 2 +
    row / 100; passes beyond the full ones are encoded for the subset's rows alone."""
    calls = []
    pass_number = iter(range(1, 100))

    def encode_pass(rows):
        p = next(pass_number)
        calls.append(None if rows is None else rows.tolist())
        chosen = torch.arange(6) if rows is None else rows
        return (p + chosen.double() / 100)[:, None].float()

    subset = torch.tensor([1, 4])
    every, on_subset = prefix_means(encode_pass, [1, 2, 5], full_passes=2, subset=subset)
    assert calls == [None, None, [1, 4], [1, 4], [1, 4]]
    for m, mean in every.items():
        torch.testing.assert_close(mean[:, 0], ((m + 1) / 2 + torch.arange(6) / 100).float())
    assert sorted(every) == [1, 2] and sorted(on_subset) == [1, 2, 5]
    for m, mean in on_subset.items():
        torch.testing.assert_close(mean[:, 0], ((m + 1) / 2 + subset / 100).float())


def test_the_curve_pairs_each_subset_with_its_labels(monkeypatch):
    """Every fit of the curve gets the features and targets of the same rows: the subset's
    means at M ≤ the full passes are the full means' rows, with those rows' targets."""
    from datasets.natural import Labelled
    from datasets.sources import DatasetBundle
    from evaluation import measures

    g = torch.Generator().manual_seed(9)
    train, test = sample_data_params(30, generator=g), sample_data_params(12, generator=g)
    data = DatasetBundle(
        DATASETS["spirograph"], train, Labelled(train, train), Labelled(test, test)
    )
    seen = []
    real = measures.fit_and_score
    monkeypatch.setattr(
        measures, "fit_and_score", lambda e, *a, **k: seen.append(e) or real(e, *a, **k)
    )
    args = argparse.Namespace(
        averaging_curve=[1, 2], curve_full_passes=2, curve_subset=10, batch_size=8, num_workers=0
    )
    views = SpirographViews(generator=torch.Generator().manual_seed(0))
    curve = measures.averaging_curve(
        MeanColour(), data, views, args, 1e-8, seed=3, max_iter=100, device=CPU
    )
    assert [(p["passes"], p["images"]) for p in curve["points"]] == [
        (1, "all"), (2, "all"), (1, "subset"), (2, "subset"),
    ]  # fmt: skip
    rows_train = seeded_rows(30, 10, 3)
    rows_test = seeded_rows(12, 10, 3)
    for full, part in zip(seen[:2], seen[2:], strict=True):
        assert torch.equal(part.train_x, full.train_x[rows_train])
        assert torch.equal(part.train_y, full.train_y[rows_train])
        assert torch.equal(part.test_x, full.test_x[rows_test])
        assert torch.equal(part.test_y, full.test_y[rows_test])
    assert torch.equal(seen[0].train_y, train)


# --- nuisance prediction and label fractions -----------------------------------------------------


def test_nuisance_views_jitter_every_image_with_the_returned_theta():
    images = COLOUR.view(1, 3, 1, 1).expand(32, 3, 8, 8) * torch.linspace(0.5, 1, 32).view(
        -1, 1, 1, 1
    )
    views, theta = nuisance_views(natural_views(6), images)
    torch.testing.assert_close(views, normalize(colour_jitter(images, theta), "cifar10"))


def test_nuisance_prediction_against_the_predict_the_mean_baseline():
    g = torch.Generator().manual_seed(7)
    theta = torch.rand(3000, 4, generator=g)
    mixing = torch.randn(4, 16, generator=g)
    exact = nuisance_prediction(
        (theta[:2000] @ mixing, theta[:2000]), (theta[2000:] @ mixing, theta[2000:]), "abcd"
    )
    assert exact["relative"] < 1e-6
    noise = torch.randn(3000, 16, generator=g)
    blind = nuisance_prediction((noise[:2000], theta[:2000]), (noise[2000:], theta[2000:]), "abcd")
    baseline = ((theta[2000:] - theta[:2000].mean(dim=0)) ** 2).mean(dim=0)
    assert blind["baseline_mse"] == pytest.approx(baseline.mean().item(), rel=1e-6)
    assert blind["per_param"]["a"]["baseline_mse"] == pytest.approx(baseline[0].item(), rel=1e-6)
    assert 0.95 < blind["relative"] < 1.1


def test_label_fractions_are_stratified_and_keep_the_test_set():
    g = torch.Generator().manual_seed(8)
    centres = 3 * torch.randn(10, 6, generator=g)
    train_y = torch.cat([torch.zeros(130, dtype=torch.long), torch.arange(270) % 9 + 1])
    test_y = torch.arange(100) % 10
    encoded = Encoded(
        centres[train_y] + torch.randn(400, 6, generator=g), train_y,
        centres[test_y] + torch.randn(100, 6, generator=g), test_y,
    )  # fmt: skip
    info = DATASETS["cifar10"]
    results = label_fractions(encoded, info, [0.25, 1.0], 1e-5, seed=0)
    assert [r["n_train"] for r in results] == [100, 400]
    _, whole, _ = fit_and_score(encoded, "classification", 10, reg_weight=1e-5)
    assert results[1]["accuracy"] == whole["accuracy"] and results[1]["loss"] == whole["loss"]
    # The quarter is 10 images of every class although the classes are unbalanced (a random
    # quarter would not be), and the test set is the whole one.
    rows = stratified_indices(train_y, 0.25, 10, seed=0)
    assert torch.bincount(train_y[rows]).tolist() == [10] * 10
    part = Encoded(encoded.train_x[rows], train_y[rows], encoded.test_x, test_y)
    _, quarter, _ = fit_and_score(part, "classification", 10, reg_weight=1e-5)
    assert results[0]["loss"] == quarter["loss"] and results[0]["loss"] != whole["loss"]


# --- the scripts ---------------------------------------------------------------------------------


def test_classification_suite_writes_every_measure(tmp_path):
    write_paths(tmp_path, cifar10=write_cifar_pickles(tmp_path / "data", per_class=2))
    write_checkpoint(tmp_path / "checkpoint" / "c.pth", "cifar10", 1.0)
    out = script(
        "lbfgs_linear_clf.py", tmp_path, "--load-from", "c", "--suite", "--max-iter", "200",
        "--averaging-curve", "1", "3", "--curve-full-passes", "1", "--curve-subset", "20",
        "--label-fractions", "0.5", "1", "--invariance-images", "10", "--reg-weight", "1e-2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    assert {"theta", "distortion"} <= set(result["conditional_variance"])
    assert result["authors_variance"]["images"] == 10
    assert [s["amount"] for s in result["shift"]] == [0.0, 0.25, 0.5, 0.75, 0.875]
    assert result["shift"][0]["accuracy"] == result["accuracy"]  # s = 0 is the plain score
    curve = result["averaging_curve"]
    assert [(c["passes"], c["images"]) for c in curve["points"]] == [
        (1, "all"), (1, "subset"), (3, "subset"),
    ]  # fmt: skip
    assert curve["full_passes"] == 1 and curve["subset"]["train"] == 20
    assert set(result["nuisance"]["per_param"]) == {"brightness", "contrast", "saturation", "hue"}
    assert result["label_fractions"][-1]["accuracy"] == result["accuracy"]
    assert set(result["measure_seconds"]) >= {"conditional_variance", "shift", "nuisance"}


def test_a_label_fraction_that_leaves_a_class_empty_is_refused_before_encoding(tmp_path):
    write_paths(tmp_path, cifar10=write_cifar_pickles(tmp_path / "data", per_class=2))
    write_checkpoint(tmp_path / "checkpoint" / "c.pth", "cifar10", 1.0)
    out = script("lbfgs_linear_clf.py", tmp_path, "--load-from", "c", "--label-fractions", "0.01")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--label-fractions 0.01 of 50 labelled training images leaves 0 per class" in out.stderr
    assert "encoded" not in out.stdout


def test_spirograph_shift_that_leaves_no_range_is_refused_in_one_line(tmp_path):
    write_checkpoint(tmp_path / "checkpoint" / "s.pth", "spirograph", 0.0005)
    out = script(
        "lbfgs_linear_clf_spirograph.py", tmp_path, "--load-from", "s",
        "--shift-background-mean", "0.2", "1.5",
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no valid range of rback" in out.stderr
    assert "Traceback" not in out.stderr


def test_spirograph_shifts_sweep_one_fit(tmp_path):
    write_checkpoint(tmp_path / "checkpoint" / "s.pth", "spirograph", 0.0005)
    out = script(
        "lbfgs_linear_clf_spirograph.py", tmp_path, "--load-from", "s",
        "--shift-h-mean", "--shift-background-range", "0", "0.4", "--nuisance",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    assert [s["amount"] for s in result["shift_h_mean"]] == [-0.5, -0.25, 0.0, 0.25, 0.5]
    widened = result["shift_background_range"]
    # Amount 0 is the same draw in every sweep; a widened range is another distribution.
    assert widened[0]["mse"] == result["shift_h_mean"][2]["mse"] != widened[1]["mse"]
    assert "shift_background_mean" not in result and "shift_h_range" not in result
    assert list(result["nuisance"]["per_param"]) == [
        "h",
        "rback",
        "gfore",
        "gback",
        "bfore",
        "bback",
    ]
