"""The invariance ratio (evaluation/invariance.py) and the draws it and the variance use."""

import pytest
import torch
from test_evaluation import last_json, script, write_checkpoint
from tiny_data import write_cifar_pickles, write_paths

from augmentation.spirograph import sample_data_params
from augmentation.views import NaturalViews, SpirographViews
from datasets.natural import Labelled
from evaluation.invariance import invariance_measure

CPU = torch.device("cpu")


def direct(z: torch.Tensor) -> float:
    """The definition on a (K, N, d) tensor of normalised representations, in one go."""
    within = z.var(dim=0).sum(-1).mean()
    across = torch.stack([z[k].var(dim=0).sum() for k in range(z.shape[0])]).mean()
    return (within / across).item()


class Linear(torch.nn.Module):
    """A fixed random linear map of the flattened image: sees everything, ignores nothing."""

    def __init__(self, d_in: int, d_out: int = 16) -> None:
        super().__init__()
        self.w = torch.randn(d_in, d_out, generator=torch.Generator().manual_seed(0)).double()

    def forward(self, x):
        return x.flatten(1).double() @ self.w


def test_streamed_batches_equal_the_definition():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(10, 3, 4, 4, generator=g)
    noise = torch.randn(3, 10, 3, 4, 4, generator=g)  # K = 3 draws
    encoder = Linear(48)
    batches = [torch.arange(0, 4), torch.arange(4, 10)]  # indices, uneven batches
    result = invariance_measure(
        encoder, batches, lambda idx: [images[idx] + noise[k, idx] for k in range(3)], CPU
    )
    z = torch.nn.functional.normalize(
        torch.stack([encoder(images + noise[k]) for k in range(3)]), dim=-1
    )
    assert result["invariance"] == pytest.approx(direct(z), rel=1e-10)


def test_zero_for_an_encoder_that_ignores_the_transformation_positive_otherwise():
    params = sample_data_params(24, generator=torch.Generator().manual_seed(0))
    views = SpirographViews(generator=torch.Generator().manual_seed(0))

    def draws(p):
        return views.nuisance_draws(p, 4)

    class IgnoresTheDraw(torch.nn.Module):
        """Encodes the image's content (its data parameters, rendered with the transformation
        fixed) and nothing of the draw it is given."""

        def __init__(self):
            super().__init__()
            self.inner = Linear(3 * 32 * 32)

        def forward(self, x):
            return self.inner(views.plain(params))

    ignores = invariance_measure(IgnoresTheDraw(), [params], draws, CPU)
    assert ignores["invariance"] == 0.0 and ignores["across"] > 0
    sees = invariance_measure(Linear(3 * 32 * 32), params.split(12), draws, CPU)
    assert 0.05 < sees["invariance"] < 2


def test_an_encoder_of_the_transformation_alone_scores_about_one():
    """Representations that depend on the draw only: both variances estimate the same thing."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(400, 3, 2, 2)

    def draws(x):
        return [x + torch.randn(x.shape, generator=g) for _ in range(8)]

    result = invariance_measure(Linear(12), images.split(100), draws, CPU)
    assert result["invariance"] == pytest.approx(1.0, abs=0.1)


def test_natural_images_keep_one_crop_and_redraw_the_colour():
    """Crop and flip are drawn once per image: with the colour distortion replaced by the
    identity, every draw gives the same view."""
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    views = NaturalViews("cifar10", 32, 0.0, generator=torch.Generator().manual_seed(0))
    seen = []

    class Records(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.flatten(1)

    views.distort = lambda x, **_: (x, None)  # colour off: only the crop is left
    split = Labelled(images, torch.zeros(6, dtype=torch.long))
    result = invariance_measure(
        Records(), split.batches(6, 0), lambda batch: views.nuisance_draws(batch, 3), CPU
    )
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[1], seen[2])
    assert result["invariance"] == 0.0
    # The draws of θ alone (the conditional variance's theta variant) keep the crop too.
    held = views.nuisance_draws(images, 3, fixed_masks=True)
    assert torch.equal(held[0], held[1]) and torch.equal(held[1], held[2])
    assert not torch.equal(held[0], seen[0])  # a fresh crop for the next call


def test_classification_script_reports_the_ratio(tmp_path):
    write_paths(tmp_path, cifar10=write_cifar_pickles(tmp_path / "data", per_class=2))
    write_checkpoint(tmp_path / "checkpoint" / "c.pth", "cifar10", 1.0)
    out = script(
        "lbfgs_linear_clf.py", tmp_path, "--load-from", "c.pth", "--conditional-variance", "3",
        "--max-iter", "100",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    variance = result["conditional_variance"]
    assert variance["draws"] == 3 and variance["images"] == 10
    assert 0 < variance["distortion"]["ratio"] < 2  # the within/across ratio of the draws


def test_spirograph_script_fits_the_raw_pixels(tmp_path):
    """--raw-pixels at a small size: the closed form on the 3,072 pixels of 29 Spirograph images."""
    write_checkpoint(tmp_path / "checkpoint" / "s.pth", "spirograph", 0.0003)
    out = script("lbfgs_linear_clf_spirograph.py", tmp_path, "--load-from", "s.pth", "--raw-pixels")
    assert out.returncode == 0, out.stderr
    result = last_json(out.stdout)
    assert result["raw_pixels"] is True and result["n_train"] == 29 and result["mse"] > 0
    encoded = last_json(
        script("lbfgs_linear_clf_spirograph.py", tmp_path, "--load-from", "s.pth").stdout
    )
    assert encoded["raw_pixels"] is False and encoded["mse"] != result["mse"]  # the flag acts


@pytest.mark.slow  # the preconditioner's eigendecomposition of a 3,072² covariance: about 12 s
def test_classification_script_fits_the_raw_pixels(tmp_path):
    write_paths(tmp_path, cifar10=write_cifar_pickles(tmp_path / "data", per_class=2))
    write_checkpoint(tmp_path / "checkpoint" / "c.pth", "cifar10", 1.0)
    # 50 images in 3,072 dimensions leave the fit far from its optimum after many iterations at
    # any weight; this checks the plumbing, so the cap keeps it short.
    pixels = script(
        "lbfgs_linear_clf.py", tmp_path, "--load-from", "c.pth", "--raw-pixels", "--max-iter", "30"
    )
    assert pixels.returncode == 0, pixels.stderr
    result = last_json(pixels.stdout)
    assert result["raw_pixels"] is True and result["n_train"] == 50
