import pytest
import torch
import torchvision.transforms.v2.functional as TF
from scipy.stats import ks_2samp
from torchvision.transforms import InterpolationMode, RandomResizedCrop

from augmentation.blur import blur_kernel_size, gaussian_blur, sample_blur
from augmentation.crop import horizontal_flip, resized_crop, sample_crop_boxes, sample_flip_mask
from augmentation.normalize import denormalize, normalize


@pytest.mark.parametrize(("height", "width"), [(32, 32), (12, 60)])
def test_boxes_follow_torchvisions_distribution(height, width):
    n = 4000
    ours = sample_crop_boxes(n, height, width, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    image = torch.zeros(1, height, width)
    theirs = torch.tensor(
        [RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    )
    top, left, h, w = ours.unbind(1)
    assert torch.all((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1))
    assert torch.all((top + h <= height) & (left + w <= width))
    for column in range(4):
        assert ks_2samp(ours[:, column].numpy(), theirs[:, column].numpy()).pvalue > 1e-3


def test_fallback_is_torchvisions_centre_crop():
    # No box with area >= 90% and ratio in [3/4, 4/3] fits a 4×40 strip: every draw falls back.
    boxes = sample_crop_boxes(5, 4, 40, scale=(0.9, 1.0))
    torch.manual_seed(0)
    expected = RandomResizedCrop.get_params(torch.zeros(1, 4, 40), [0.9, 1.0], [3 / 4, 4 / 3])
    assert boxes.tolist() == [list(expected)] * 5


def test_full_box_at_full_size_is_the_identity():
    images = torch.rand(3, 3, 16, 16)
    boxes = torch.tensor([[0, 0, 16, 16]] * 3)
    torch.testing.assert_close(resized_crop(images, boxes, 16), images, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [32, (20, 48)])
def test_crop_matches_torchvision_bicubic(size):
    """Enlarging and (antialiased) shrinking boxes, rectangular outputs, the whole image."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 40, 36, generator=gen)
    boxes = torch.tensor(
        [[3, 5, 20, 14], [0, 0, 40, 36], [10, 2, 9, 11], [6, 6, 34, 30], [39, 0, 1, 36]]
    )
    ours = resized_crop(images, boxes, size)
    out_size = [size, size] if isinstance(size, int) else list(size)
    for image, box, out in zip(images, boxes.tolist(), ours, strict=False):
        theirs = TF.resized_crop(
            image, *box, size=out_size, interpolation=InterpolationMode.BICUBIC, antialias=True
        )
        torch.testing.assert_close(out, theirs.clamp(0, 1), atol=2e-6, rtol=0)


def test_flip_only_masked_images():
    images = torch.rand(4, 3, 5, 5)
    mask = torch.tensor([True, False, True, False])
    out = horizontal_flip(images, mask)
    torch.testing.assert_close(out[0], images[0].flip(-1))
    torch.testing.assert_close(out[1], images[1])
    rate = sample_flip_mask(100_000, generator=torch.Generator().manual_seed(0)).float().mean()
    assert rate.item() == pytest.approx(0.5, abs=0.01)


def test_kernel_size_is_about_a_tenth_of_the_side():
    assert [blur_kernel_size(s) for s in (32, 96, 224)] == [3, 9, 23]


def test_blur_matches_torchvision_per_image_sigma():
    images = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([0.3, 1.0, 2.0])
    mask = torch.tensor([True, True, False])
    out = gaussian_blur(images, sigmas, mask, kernel_size=9)
    for i in range(2):
        expected = TF.gaussian_blur(images[i], [9, 9], [sigmas[i].item()] * 2)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], images[2])
    flat = torch.full((1, 3, 10, 10), 0.7)
    torch.testing.assert_close(
        gaussian_blur(flat, torch.tensor([1.5]), torch.tensor([True]), 5), flat
    )
    sig, on = sample_blur(50_000, generator=torch.Generator().manual_seed(0))
    assert sig.min() >= 0.1 and sig.max() <= 2.0
    quartiles = sig.quantile(torch.tensor([0.25, 0.5, 0.75])).tolist()  # uniform on [0.1, 2]
    assert quartiles == pytest.approx([0.1 + q * 1.9 for q in (0.25, 0.5, 0.75)], abs=0.02)
    assert on.float().mean().item() == pytest.approx(0.5, abs=0.01)


# Spec section 1, written out rather than read from the code under test.
SPEC_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2009, 0.1984, 0.2023)),
    "stl10": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@pytest.mark.parametrize("dataset", list(SPEC_STATS))
def test_normalise_uses_the_spec_statistics(dataset):
    images = torch.rand(2, 3, 4, 4)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in SPEC_STATS[dataset])
    torch.testing.assert_close(normalize(images, dataset), (images - mean) / std)


def test_normalise_leaves_spirograph_and_inverts():
    images = torch.rand(2, 3, 4, 4)
    out = normalize(images, "cifar10")
    assert normalize(images, "spirograph") is images
    with pytest.raises(ValueError, match="unknown dataset"):
        normalize(images, "mnist")
    # the preview's inverse
    torch.testing.assert_close(denormalize(out, "cifar10"), images)
    assert denormalize(images, "spirograph") is images


def test_boxes_for_images_of_different_sizes_are_each_sizes_own_boxes():
    """Per-image sizes use the same draws as one size for the whole batch, so each image's box is
    the one `sample_crop_boxes` gives for its size alone; the extreme shapes take the fallback."""
    shapes = [(40, 60), (61, 45), (8, 200), (200, 8), (32, 32)] * 100
    height, width = torch.tensor(shapes).unbind(dim=1)
    mixed = sample_crop_boxes(
        len(shapes), height, width, generator=torch.Generator().manual_seed(3)
    )
    for shape in set(shapes):
        alone = sample_crop_boxes(len(shapes), *shape, generator=torch.Generator().manual_seed(3))
        rows = [i for i, s in enumerate(shapes) if s == shape]
        torch.testing.assert_close(mixed[rows], alone[rows], rtol=0, atol=0)


def test_boxes_lie_inside_each_image_of_its_own_size():
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 80, (4000, 2), generator=gen)
    top, left, h, w = sample_crop_boxes(4000, sizes[:, 0], sizes[:, 1], generator=gen).unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
    assert (top + h <= sizes[:, 0]).all() and (left + w <= sizes[:, 1]).all()
