import pytest
import torch
from conftest import as_tensor, assert_close_rel

from augmentation.spirograph import (
    DATA_BOUNDS,
    TRANSFORM_BOUNDS,
    render_spirograph,
    sample_data_params,
    sample_transform_params,
)
from datasets.spirograph import spirograph_splits


def test_images_match_authors_reference(ref):
    images = render_spirograph(
        as_tensor(ref["spirograph_data_params"]), as_tensor(ref["spirograph_transform_params"])
    )
    assert images.shape == (16, 3, 32, 32)
    assert_close_rel(images, ref["spirograph_images"])


def test_rows_are_normalised_by_their_own_maximum(ref):
    data = as_tensor(ref["spirograph_data_params"])
    # Black background and white foreground make the image the intensity v itself.
    transform = as_tensor(ref["spirograph_transform_params"]).clone()
    transform[:, 1:] = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0])
    data = data.clone()
    data[:, 3] = 1.0
    v = render_spirograph(data, transform)[:, 0]
    v_global = render_spirograph(data, transform, global_max=True)[:, 0]
    assert torch.allclose(v_global.amax(dim=(-2, -1)), torch.ones(16), atol=1e-4)
    # Row-wise, every row whose ink is not lost under the 1e-8 guard is stretched to peak at ~1;
    # under a global maximum most rows stay faint.
    inked = v_global.amax(dim=-1) > 1e-3
    assert torch.all(v.amax(dim=-1)[inked] > 0.99)
    assert (v_global.amax(dim=-1)[inked] < 0.5).float().mean() > 0.2


def test_renderer_is_differentiable_in_all_parameters():
    gen = torch.Generator().manual_seed(0)
    data = sample_data_params(2, generator=gen).double().requires_grad_()
    transform = sample_transform_params(2, generator=gen).double().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda d, t: render_spirograph(d, t).sum(dim=(1, 2, 3)), (data, transform)
    )


# Spec section 2's table, in its orders (m, b, sigma, rfore) and (h, rback, gfore, gback, bfore,
# bback), written out rather than read from the code under test.
SPEC_DATA_BOUNDS = [(2, 5), (0.1, 1.1), (0.25, 1), (0.4, 1)]
SPEC_TRANSFORM_BOUNDS = [(0.5, 2.5), (0, 0.6), (0.4, 1), (0, 0.6), (0.4, 1), (0, 0.6)]


def test_bounds_are_the_spec_table():
    for ours, spec in ((DATA_BOUNDS, SPEC_DATA_BOUNDS), (TRANSFORM_BOUNDS, SPEC_TRANSFORM_BOUNDS)):
        assert [x for row in ours for x in row] == pytest.approx([x for row in spec for x in row])


@pytest.mark.parametrize(
    ("sampler", "bounds"),
    [(sample_data_params, SPEC_DATA_BOUNDS), (sample_transform_params, SPEC_TRANSFORM_BOUNDS)],
)
def test_samplers_cover_their_ranges(sampler, bounds):
    draws = sampler(20_000, generator=torch.Generator().manual_seed(1))
    lo = torch.tensor([b[0] for b in bounds])
    hi = torch.tensor([b[1] for b in bounds])
    assert draws.shape == (20_000, len(bounds))
    assert torch.all(draws >= lo) and torch.all(draws <= hi)
    # Uniform: the mean sits at the centre of each range, within a few standard errors.
    se = (hi - lo) / (12 * 20_000) ** 0.5
    assert torch.all((draws.mean(0) - (lo + hi) / 2).abs() < 5 * se)


def test_splits_are_seeded_disjoint_and_scaled():
    train, test = spirograph_splits(proportion=0.01, seed=3)
    assert train.shape == (1000, 4) and test.shape == (200, 4)
    train2, test2 = spirograph_splits(proportion=0.01, seed=3)
    assert torch.equal(train, train2) and torch.equal(test, test2)
    other, _ = spirograph_splits(proportion=0.01, seed=4)
    assert not torch.equal(train, other)
    # Rows are continuous draws: no test row repeats a training row.
    assert not (test[:, None, :] == train[None, :, :]).all(-1).any()
    with pytest.raises(ValueError, match="proportion"):
        spirograph_splits(proportion=0.0)


def test_no_test_image_is_a_training_image_at_any_proportion():
    """An encoder trained on the full set and evaluated at a smaller proportion (as the authors'
    README does) must not be tested on images it trained on."""
    full_train, full_test = spirograph_splits(proportion=1.0)
    assert full_train.shape == (100_000, 4) and full_test.shape == (20_000, 4)
    # Rows are continuous draws, so a shared image is a shared row; compare by exact value.
    seen = {tuple(row) for row in full_train.tolist()}
    for proportion in (0.0005, 0.01, 0.1, 0.5, 1.0):
        train, test = spirograph_splits(proportion=proportion)
        assert len(test) == int(20_000 * proportion)
        assert not any(tuple(row) in seen for row in test.tolist()), proportion
        # Training rows are the stream's first rows at every proportion (and were so before the
        # test rows moved): training at a fixed seed is unchanged.
        assert torch.equal(train, full_train[: len(train)])
        stream = sample_data_params(
            len(train) + len(test), generator=torch.Generator().manual_seed(0)
        )
        assert torch.equal(train, stream[: len(train)])
    # At the full size the split is the authors': 100,000 rows, then the next 20,000.
    stream = sample_data_params(120_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(full_test, stream[100_000:])
