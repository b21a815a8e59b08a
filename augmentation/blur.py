"""Batched Gaussian blur with a per-image sigma (SimCLR's ImageNet recipe; spec 3, step 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def blur_kernel_size(image_side: int) -> int:
    """Odd kernel side close to 10% of the image side (SimCLR: radius = side // 20)."""
    return 2 * ((image_side // 10) // 2) + 1


def sample_blur(
    batch_size: int,
    *,
    p: float = 0.5,
    sigma: tuple[float, float] = (0.1, 2.0),
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw (sigmas (B,), mask (B,)): sigma ~ U[sigma], mask True with probability p."""
    u = torch.rand(2, batch_size, device=device, generator=generator)
    return sigma[0] + u[0] * (sigma[1] - sigma[0]), u[1] < p


def gaussian_blur(images: Tensor, sigmas: Tensor, mask: Tensor, kernel_size: int) -> Tensor:
    """Blur each image of (B, C, H, W) ``images`` whose mask is True with its own sigma: two
    grouped 1-D convolutions, reflection-padded so that the borders are not darkened."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    b, c, h, w = images.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    sigmas = sigmas.to(images.dtype).reshape(b, 1)
    kernel = torch.exp(-(offsets**2) / (2 * sigmas**2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0)  # (B·C, k): one kernel per channel of each image
    x = images.reshape(1, b * c, h, w)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(x, kernel[:, None, :, None], groups=b * c)
    return torch.where(mask.reshape(b, 1, 1, 1), x.reshape(b, c, h, w), images)
