import pytest
import torch
from conftest import as_tensor, assert_close_rel

from augmentation.colour import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    colour_distortion,
    colour_jitter,
    grayscale,
    jitter_bounds,
    sample_apply_masks,
    sample_jitter_params,
)


def test_jitter_matches_authors_reference(ref):
    out = colour_jitter(as_tensor(ref["jitter_input"]), as_tensor(ref["jitter_params"]))
    assert_close_rel(out, ref["jitter_output"])


def test_grayscale_matches_authors_reference(ref):
    assert_close_rel(grayscale(as_tensor(ref["jitter_input"])), ref["grayscale_output"])


def test_identity_parameters_leave_images_unchanged(ref):
    images = as_tensor(ref["jitter_input"])
    ones = torch.ones(8)
    for adjust in (adjust_brightness, adjust_contrast, adjust_saturation):
        torch.testing.assert_close(adjust(images, ones), images, atol=1e-6, rtol=0)
    # The YIQ matrices have three-digit coefficients and are inverse only to about 3e-3.
    torch.testing.assert_close(adjust_hue(images, 0 * ones), images, atol=5e-3, rtol=0)


def test_hue_rotation_keeps_luma_and_turns_chroma(ref):
    images = as_tensor(ref["jitter_input"]).double()
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
    to_yiq = lambda x: torch.einsum("ij,bjhw->bihw", yiq.double(), x)  # noqa: E731
    before, after = to_yiq(images), to_yiq(adjust_hue(images, torch.full((8,), 0.25).double()))
    # A quarter turn: I' = -Q and Q' = I, up to the 3e-3 inexactness of the matrices.
    torch.testing.assert_close(after[:, 1], -before[:, 2], atol=5e-3, rtol=0)
    torch.testing.assert_close(after[:, 2], before[:, 1], atol=5e-3, rtol=0)
    torch.testing.assert_close(after[:, 0], before[:, 0], atol=5e-3, rtol=0)


def test_masks_select_per_image(ref):
    images = as_tensor(ref["jitter_input"])
    params = as_tensor(ref["jitter_params"])
    jitter = torch.tensor([True, False] * 4)
    gray = torch.tensor([False, False, True, True] * 2)
    out = colour_distortion(images, params, jitter, gray)
    expected_jitter = as_tensor(ref["jitter_output"])
    torch.testing.assert_close(out[0], expected_jitter[0])
    torch.testing.assert_close(out[1], images[1])
    torch.testing.assert_close(out[2], grayscale(expected_jitter[2:3])[0].expand(3, 32, 32))
    torch.testing.assert_close(out[3], grayscale(images[3:4])[0].expand(3, 32, 32))


def test_distortion_is_differentiable_in_parameters_of_jittered_images_only(ref):
    images = as_tensor(ref["jitter_input"]).double()
    params = as_tensor(ref["jitter_params"]).double().requires_grad_()
    jitter = torch.tensor([True, False] * 4)
    gray = torch.zeros(8, dtype=torch.bool)
    (grad,) = torch.autograd.grad(colour_distortion(images, params, jitter, gray).sum(), params)
    assert torch.all(grad[1::2] == 0)
    assert torch.all(grad[0::2].abs().sum(1) > 0)
    assert torch.autograd.gradcheck(
        lambda p: colour_distortion(images[:2, :, :4, :4], p, jitter[:2], gray[:2]), (params[:2],)
    )


@pytest.mark.parametrize("strength", [0.5, 1.0])
def test_parameter_ranges_follow_strength(strength):
    params = sample_jitter_params(50_000, strength, generator=torch.Generator().manual_seed(0))
    bounds = torch.tensor(jitter_bounds(strength))
    assert params.shape == (50_000, 4)
    assert torch.all(params >= bounds[:, 0]) and torch.all(params <= bounds[:, 1])
    assert torch.allclose(params.min(0).values, bounds[:, 0], atol=1e-3 * strength)
    assert torch.allclose(params.max(0).values, bounds[:, 1], atol=1e-3 * strength)
    # Uniform on each range: the quartiles sit at a quarter, half and three quarters of it.
    lo, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    for q in (0.25, 0.5, 0.75):
        assert torch.allclose(params.quantile(q, dim=0), lo + q * width, atol=0.01 * strength)
    # Spec section 3: brightness, contrast, saturation on 1 ± 0.8s, hue on ±0.2s.
    spec = [(1 - 0.8 * strength, 1 + 0.8 * strength)] * 3 + [(-0.2 * strength, 0.2 * strength)]
    assert bounds.tolist() == [pytest.approx(list(row)) for row in spec]


def test_apply_masks_have_their_probabilities():
    jitter, gray = sample_apply_masks(100_000, generator=torch.Generator().manual_seed(0))
    assert jitter.dtype == torch.bool and gray.dtype == torch.bool
    assert jitter.float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert gray.float().mean().item() == pytest.approx(0.2, abs=0.01)
    # Independent: the gray rate is the same whether or not the jitter was applied.
    assert gray[jitter].float().mean().item() == pytest.approx(0.2, abs=0.01)


def test_bad_parameter_shape_is_rejected(ref):
    with pytest.raises(ValueError, match="params must have shape"):
        colour_distortion(
            as_tensor(ref["jitter_input"]),
            torch.ones(8, 3),
            torch.ones(8, dtype=torch.bool),
            torch.zeros(8, dtype=torch.bool),
        )
