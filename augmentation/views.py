"""Training views: the full augmentation of spec section 3, or a Spirograph rendering (section 2).

A view maker turns a batch of inputs into (views, θ): normalised images ready for the encoder and
the (B, P) nuisance parameters they were made from. θ is the tensor the gradient penalty
differentiates with respect to (colour jitter parameters, or Spirograph's six transformation
parameters), and `sample_nuisance` draws fresh rows from its distribution for the penalty's θ'.
Every other random choice (crop, flip, blur, apply masks) is drawn here from ``generator``, which
must live on the inputs' device. Under `torchrun` each process passes its ``shard`` of the global
batch: every draw is made for the whole global batch and cut to the process's rows, so the views
do not depend on the number of processes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from augmentation.blur import blur_kernel_size, gaussian_blur, sample_blur
from augmentation.colour import colour_distortion, sample_apply_masks, sample_jitter_params
from augmentation.crop import horizontal_flip, resized_crop, sample_crop_boxes, sample_flip_mask
from augmentation.normalize import normalize
from datasets.spirograph import TRANSFORM_BOUNDS, render_spirograph, sample_transform_params
from utils.distributed import ONE_PROCESS, Shard


def to_unit_float(images: Tensor) -> Tensor:
    """uint8 images to floats in [0, 1]; float images pass through."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


class NaturalViews:
    """Crop, flip, colour distortion, optional blur, normalisation (spec section 3, in order).

    ``crop=False`` skips the random resized crop for inputs already cropped in data-loader
    workers (ImageNet).
    """

    def __init__(
        self,
        dataset: str,
        image_size: int,
        colour_strength: float = 0.5,
        blur: bool = False,
        crop: bool = True,
    ) -> None:
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

    def crop_flip(
        self,
        images: Tensor,
        *,
        generator: torch.Generator | None = None,
        shard: Shard = ONE_PROCESS,
    ) -> Tensor:
        """Random resized crop (unless ``crop=False``) and flip; floats in [0, 1], unnormalised."""
        x = to_unit_float(images)
        b, device = x.shape[0], x.device
        if self.crop:
            h, w = x.shape[-2:]
            boxes = shard.draw(
                lambda n: sample_crop_boxes(n, h, w, device=device, generator=generator), b
            )
            x = resized_crop(x, boxes, self.image_size)
        flips = shard.draw(lambda n: sample_flip_mask(n, device=device, generator=generator), b)
        return horizontal_flip(x, flips)

    def augment(
        self,
        images: Tensor,
        *,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
        shard: Shard = ONE_PROCESS,
    ) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) uint8 or [0, 1] images -> ((B, 3, S, S) views, (B, 4) jitter parameters)."""
        x = self.crop_flip(images, generator=generator, shard=shard)
        return self.distort(x, generator=generator, requires_grad=requires_grad, shard=shard)

    def distort(
        self,
        x: Tensor,
        *,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
        shard: Shard = ONE_PROCESS,
    ) -> tuple[Tensor, Tensor]:
        """Colour distortion, optional blur and normalisation of cropped [0, 1] images: the part
        of ``augment`` after the crop, with fresh draws of its parameters."""
        b, device = x.shape[0], x.device
        theta = shard.draw(lambda n: self.sample_nuisance(n, device=device, generator=generator), b)
        theta.requires_grad_(requires_grad)
        jitter_mask, gray_mask = shard.draw(
            lambda n: sample_apply_masks(n, device=device, generator=generator), b
        )
        x = colour_distortion(x, theta, jitter_mask, gray_mask)
        if self.blur:
            sigmas, blur_mask = shard.draw(
                lambda n: sample_blur(n, device=device, generator=generator), b
            )
            x = gaussian_blur(x, sigmas, blur_mask, blur_kernel_size(self.image_size))
        return normalize(x, self.dataset), theta

    def plain(self, images: Tensor) -> Tensor:
        """Evaluation images: normalisation only."""
        return normalize(to_unit_float(images), self.dataset)


class SpirographViews:
    """Each view renders the image's data parameters with a fresh transformation draw."""

    def sample_nuisance(
        self, n: int, *, device: torch.device | str, generator: torch.Generator | None = None
    ) -> Tensor:
        """(n, 6) fresh transformation parameters."""
        return sample_transform_params(n, device=device, generator=generator)

    def augment(
        self,
        params: Tensor,
        *,
        generator: torch.Generator | None = None,
        requires_grad: bool = False,
        shard: Shard = ONE_PROCESS,
    ) -> tuple[Tensor, Tensor]:
        """(B, 4) data parameters -> ((B, 3, 32, 32) images, (B, 6) transformation parameters)."""
        theta = shard.draw(
            lambda n: self.sample_nuisance(n, device=params.device, generator=generator),
            params.shape[0],
        )
        theta.requires_grad_(requires_grad)
        return render_spirograph(params, theta), theta

    def plain(self, params: Tensor) -> Tensor:
        """Images with every transformation parameter at the middle of its range."""
        middle = torch.tensor([(lo + hi) / 2 for lo, hi in TRANSFORM_BOUNDS], device=params.device)
        return render_spirograph(params, middle.expand(params.shape[0], -1))
