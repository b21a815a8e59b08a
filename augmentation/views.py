"""Training views, the augmentation of spec section 3 or a Spirograph rendering (section 2): a
view maker returns (views, θ), normalised images and the (B, P) nuisance parameters the penalty
differentiates. Its draws come from its ``generator``, on the inputs' device, made for the global
batch and cut to the process's ``shard``, so views do not depend on the number of processes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from augmentation.blur import blur_kernel_size, gaussian_blur, sample_blur
from augmentation.colour import colour_distortion, sample_apply_masks, sample_jitter_params
from augmentation.crop import horizontal_flip, resized_crop, sample_crop_boxes, sample_flip_mask
from augmentation.normalize import normalize
from augmentation.spirograph import TRANSFORM_BOUNDS, render_spirograph, sample_transform_params
from utils.distributed import ONE_PROCESS, Shard


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 images to floats in [0, 1]; float images pass through."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class _Views:
    """The draws shared by both view makers: each for the global batch, cut to the shard."""

    def __init__(self, generator: torch.Generator | None, shard: Shard) -> None:
        self.generator = generator
        self.shard = shard

    def draw(self, sampler: Callable, rows: int, *args, device: torch.device, **kwargs):
        """``sampler(rows · world, *args, ...)`` cut to this process's ``rows`` (rows first)."""
        return self.shard.draw(
            lambda n: sampler(n, *args, device=device, generator=self.generator, **kwargs), rows
        )

    def fresh_nuisance(self, num_samples: int, rows: int, device: torch.device) -> Tensor:
        """(K, rows, P) fresh nuisance parameters for the penalty, cut from the global draw."""
        world = self.shard.world
        drawn = self.sample_nuisance(
            num_samples * rows * world, device=device, generator=self.generator
        )
        return self.shard.rows(drawn.view(num_samples, rows * world, -1), dim=1)

    def signs(self, like: Tensor, sampler: Callable) -> Tensor:
        """The penalty's signs, shaped like ``like`` (b, d), cut from the global batch's draw."""
        return self.shard.draw(
            lambda n: sampler(
                (n, like.shape[1]), device=like.device, dtype=like.dtype, generator=self.generator
            ),
            like.shape[0],
        )


class NaturalViews(_Views):
    """Crop, flip, colour distortion, optional blur, normalisation (spec section 3, in order);
    ``crop=False`` for inputs already cropped in data-loader workers (ImageNet)."""

    def __init__(
        self,
        dataset: str,
        image_size: int,
        colour_strength: float = 0.5,
        blur: bool = False,
        crop: bool = True,
        *,
        generator: torch.Generator | None = None,
        shard: Shard = ONE_PROCESS,
    ) -> None:
        super().__init__(generator, shard)
        self.dataset = dataset
        self.image_size = image_size
        self.colour_strength = colour_strength
        self.blur = blur
        self.crop = crop

    def sample_nuisance(
        self, n: int, *, device: torch.device | str, generator: torch.Generator | None = None
    ) -> Tensor:
        """(n, 4) fresh colour-jitter parameters."""
        return sample_jitter_params(n, self.colour_strength, device=device, generator=generator)

    def crop_flip(self, images: Tensor) -> Tensor:
        """Random resized crop (unless ``crop=False``) and flip; floats in [0, 1], unnormalised."""
        x = to_unit_float(images)
        b, device = x.shape[0], x.device
        if self.crop:
            h, w = x.shape[-2:]
            x = resized_crop(
                x, self.draw(sample_crop_boxes, b, h, w, device=device), self.image_size
            )
        return horizontal_flip(x, self.draw(sample_flip_mask, b, device=device))

    def augment(self, images: Tensor, *, requires_grad: bool = False) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) uint8 or [0, 1] images -> ((B, 3, S, S) views, (B, 4) jitter parameters)."""
        return self.distort(self.crop_flip(images), requires_grad=requires_grad)

    def distort(
        self, x: Tensor, *, requires_grad: bool = False, masks: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """``augment`` after the crop, on [0, 1] images, with a fresh θ. ``masks`` ((B,) jitter
        and grayscale booleans) fixes the random-apply choices instead of drawing them."""
        b, device = x.shape[0], x.device
        theta = self.draw(self.sample_nuisance, b, device=device)
        theta.requires_grad_(requires_grad)
        if masks is None:
            masks = self.draw(sample_apply_masks, b, device=device)
        jitter_mask, gray_mask = masks
        x = colour_distortion(x, theta, jitter_mask, gray_mask)
        if self.blur:
            sigmas, blur_mask = self.draw(sample_blur, b, device=device)
            x = gaussian_blur(x, sigmas, blur_mask, blur_kernel_size(self.image_size))
        return normalize(x, self.dataset), theta

    def nuisance_draws(self, images: Tensor, k: int, *, fixed_masks: bool = False) -> list[Tensor]:
        """``k`` views of each image differing only in the colour distortion (one crop and flip);
        ``fixed_masks`` keeps the random-apply choices too, so only θ is redrawn."""
        cropped = self.crop_flip(images)
        masks = None
        if fixed_masks:
            masks = self.draw(sample_apply_masks, images.shape[0], device=images.device)
        return [self.distort(cropped, masks=masks)[0] for _ in range(k)]

    def plain(self, images: Tensor) -> Tensor:
        """Evaluation images: normalisation only."""
        return normalize(to_unit_float(images), self.dataset)


class SpirographViews(_Views):
    """Each view renders the image's data parameters with a fresh transformation draw."""

    dataset = "spirograph"

    def __init__(
        self,
        *,
        generator: torch.Generator | None = None,
        shard: Shard = ONE_PROCESS,
        bounds: tuple[tuple[float, float], ...] = TRANSFORM_BOUNDS,
    ) -> None:
        super().__init__(generator, shard)
        self.bounds = bounds  # the transformation's ranges; others shift it at test time

    def sample_nuisance(
        self, n: int, *, device: torch.device | str, generator: torch.Generator | None = None
    ) -> Tensor:
        """(n, 6) fresh transformation parameters."""
        return sample_transform_params(n, device=device, generator=generator, bounds=self.bounds)

    def augment(self, params: Tensor, *, requires_grad: bool = False) -> tuple[Tensor, Tensor]:
        """(B, 4) data parameters -> ((B, 3, 32, 32) images, (B, 6) transformation parameters)."""
        theta = self.draw(self.sample_nuisance, params.shape[0], device=params.device)
        theta.requires_grad_(requires_grad)
        return render_spirograph(params, theta), theta

    def nuisance_draws(self, params: Tensor, k: int, *, fixed_masks: bool = False) -> list[Tensor]:
        """``k`` renderings of each image with a fresh θ (``fixed_masks`` changes nothing)."""
        del fixed_masks
        return [self.augment(params)[0] for _ in range(k)]

    def plain(self, params: Tensor) -> Tensor:
        """Images with every transformation parameter at the middle of its range."""
        middle = torch.tensor([(lo + hi) / 2 for lo, hi in TRANSFORM_BOUNDS], device=params.device)
        return render_spirograph(params, middle.expand(params.shape[0], -1))
