"""Batched augmentations with explicit per-image random parameters (spec section 3)."""

from augmentation.blur import blur_kernel_size, gaussian_blur, sample_blur
from augmentation.colour import (
    colour_distortion,
    colour_jitter,
    grayscale,
    jitter_bounds,
    sample_apply_masks,
    sample_jitter_params,
)
from augmentation.crop import horizontal_flip, resized_crop, sample_crop_boxes, sample_flip_mask
from augmentation.normalize import DATASET_STATS, normalize

__all__ = [
    "DATASET_STATS",
    "blur_kernel_size",
    "colour_distortion",
    "colour_jitter",
    "gaussian_blur",
    "grayscale",
    "horizontal_flip",
    "jitter_bounds",
    "normalize",
    "resized_crop",
    "sample_apply_masks",
    "sample_blur",
    "sample_crop_boxes",
    "sample_flip_mask",
    "sample_jitter_params",
]
