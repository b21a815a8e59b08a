"""Batched colour distortion, differentiable in its explicit (B, 4) parameters (spec section 3):
the gradient penalty (section 5) differentiates the encoder's output through it."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# ITU-R 601 luma weights, as used by the authors' code and by torchvision.
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.321), (0.211, -0.523, 0.311))
_YIQ_TO_RGB = ((1.0, 0.956, 0.621), (1.0, -0.272, -0.647), (1.0, -1.107, 1.705))


def grayscale(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) luma 0.299 R + 0.587 G + 0.114 B."""
    r, g, b = images.unbind(dim=-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def _per_image(factor: Tensor) -> Tensor:
    return factor.reshape(-1, 1, 1, 1)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """clamp(x·β, 0, 1) with β of shape (B,)."""
    return (images * _per_image(factor)).clamp(0, 1)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """clamp(x·c + (1 − c)·mean gray(x), 0, 1), the mean taken over each image's pixels."""
    c = _per_image(factor)
    mean = grayscale(images).mean(dim=(-2, -1), keepdim=True)
    return (images * c + (1 - c) * mean).clamp(0, 1)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """clamp(x·σ + (1 − σ)·gray(x), 0, 1)."""
    s = _per_image(factor)
    return (images * s + (1 - s) * grayscale(images)).clamp(0, 1)


def adjust_hue(images: Tensor, factor: Tensor) -> Tensor:
    """Rotate the (I, Q) plane of YIQ by 2π·η per image; no clamp, as in the authors' code."""
    angle = 2 * math.pi * factor
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rotation = torch.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], dim=-1).reshape(
        -1, 3, 3
    )
    to_yiq = images.new_tensor(_RGB_TO_YIQ)
    to_rgb = images.new_tensor(_YIQ_TO_RGB)
    # One 3×3 colour matrix per image, applied to every pixel: (B, 3, 3) × (B, 3, H·W).
    matrix = to_rgb @ rotation @ to_yiq
    b, c, h, w = images.shape
    return (matrix @ images.reshape(b, c, h * w)).reshape(b, c, h, w)


def colour_jitter(images: Tensor, params: Tensor) -> Tensor:
    """Brightness, contrast, saturation, then hue, with (B, 4) ``params`` (β, c, σ, η)."""
    brightness, contrast, saturation, hue = params.unbind(dim=-1)
    images = adjust_brightness(images, brightness)
    images = adjust_contrast(images, contrast)
    images = adjust_saturation(images, saturation)
    return adjust_hue(images, hue)


def _blend(new: Tensor, old: Tensor, mask: Tensor) -> Tensor:
    # A float blend rather than torch.where keeps the expression the authors differentiate, and
    # routes no gradient to the parameters of images whose step was not applied.
    m = _per_image(mask.to(new.dtype))
    return new * m + (1 - m) * old


def colour_distortion(
    images: Tensor, params: Tensor, jitter_mask: Tensor, gray_mask: Tensor
) -> Tensor:
    """Random-apply colour jitter, then grayscale (spec section 3, step 3), of (B, 3, H, W) images
    in [0, 1]; (B, 4) ``params`` (differentiable); (B,) masks True where applied (p 0.8, 0.2)."""
    if params.shape != (images.shape[0], 4):
        raise ValueError(
            f"params must have shape ({images.shape[0]}, 4), got {tuple(params.shape)}"
        )
    images = _blend(colour_jitter(images, params), images, jitter_mask)
    return _blend(grayscale(images).expand_as(images), images, gray_mask)


def jitter_bounds(strength: float) -> tuple[tuple[float, float], ...]:
    """Uniform ranges of (β, c, σ, η) for strength s: [1 − 0.8s, 1 + 0.8s] (floor 0) and ±0.2s."""
    if strength < 0:
        raise ValueError(f"colour strength must be non-negative, got {strength}")
    lo = max(1 - 0.8 * strength, 0.0)
    hi = 1 + 0.8 * strength
    return ((lo, hi), (lo, hi), (lo, hi), (-0.2 * strength, 0.2 * strength))


def sample_jitter_params(
    batch_size: int,
    strength: float,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw (batch_size, 4) jitter parameters (β, c, σ, η), each uniform on its range."""
    bounds = torch.tensor(jitter_bounds(strength), device=device)
    u = torch.rand(batch_size, 4, device=device, generator=generator)
    return bounds[:, 0] + u * (bounds[:, 1] - bounds[:, 0])


def sample_apply_masks(
    batch_size: int,
    *,
    p_jitter: float = 0.8,
    p_gray: float = 0.2,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Independent per-image Bernoulli masks (jitter_mask, gray_mask), each of shape (B,)."""
    u = torch.rand(2, batch_size, device=device, generator=generator)
    return u[0] < p_jitter, u[1] < p_gray
