"""Batched random resized crop and horizontal flip with explicit per-image parameters.

torchvision's transforms draw one crop per call; here every image of a batch gets its own box,
drawn from the same distribution as `torchvision.transforms.RandomResizedCrop` (including its
fallback to a centre crop after ten rejected attempts), and all boxes are resampled at once with
bicubic `grid_sample`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_ATTEMPTS = 10


def sample_crop_boxes(
    batch_size: int,
    height: int,
    width: int,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Draw (batch_size, 4) integer boxes (top, left, box_height, box_width).

    Area fraction ~ U[scale], aspect ratio log-uniform on ``ratio``; the first of ten attempts
    that fits the image is kept, else a centre crop with the ratio clamped into range.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    u = torch.rand(2, batch_size, _ATTEMPTS, device=device, generator=generator, dtype=torch.float64)
    target_area = area * (scale[0] + u[0] * (scale[1] - scale[0]))
    aspect = torch.exp(log_lo + u[1] * (log_hi - log_lo))
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1, keepdim=True)  # first fitting attempt
    found = fits.any(dim=1)
    h = h.gather(1, first).squeeze(1)
    w = w.gather(1, first).squeeze(1)
    # Offsets uniform over the valid integer positions, as random.randint(0, H - h) does.
    offset = torch.rand(2, batch_size, device=device, generator=generator, dtype=torch.float64)
    top = torch.floor(offset[0] * (height - h + 1))
    left = torch.floor(offset[1] * (width - w + 1))

    fb_h, fb_w = _centre_fallback(height, width, ratio)
    h = torch.where(found, h, torch.full_like(h, fb_h))
    w = torch.where(found, w, torch.full_like(w, fb_w))
    top = torch.where(found, top, torch.full_like(top, (height - fb_h) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fb_w) // 2))
    return torch.stack([top, left, h, w], dim=1).long()


def _centre_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        h, w = height, width
    return h, w


def resized_crop(images: Tensor, boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Crop each image to its box and resize it to ``size`` with bicubic interpolation.

    Args:
        images: (B, C, H, W) floats in [0, 1].
        boxes: (B, 4) integer (top, left, box_height, box_width), as `sample_crop_boxes` returns.
        size: output side, or (out_height, out_width).
    Returns:
        (B, C, out_height, out_width), clamped to [0, 1] (bicubic overshoots, as it does for
        uint8 images in PIL and torchvision).

    Samples are placed at pixel centres (``align_corners=False``), as torchvision's resize does.
    Taps that fall outside the box read the neighbouring pixels of the full image rather than
    repeating the box's edge, which torchvision's crop-then-resize does; only the outermost ring of
    output pixels can differ.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    b, _, height, width = images.shape
    boxes = boxes.to(device=images.device, dtype=images.dtype)
    top, left, box_h, box_w = boxes.unbind(dim=1)
    # Source pixel coordinate of each output pixel centre, then grid_sample's [-1, 1] coordinates.
    oy = torch.arange(out_h, device=images.device, dtype=images.dtype) + 0.5
    ox = torch.arange(out_w, device=images.device, dtype=images.dtype) + 0.5
    sy = top[:, None] + oy[None, :] * (box_h / out_h)[:, None]
    sx = left[:, None] + ox[None, :] * (box_w / out_w)[:, None]
    gy = 2 * sy / height - 1
    gx = 2 * sx / width - 1
    grid = torch.stack(
        [gx[:, None, :].expand(b, out_h, out_w), gy[:, :, None].expand(b, out_h, out_w)], dim=-1
    )
    out = F.grid_sample(images, grid, mode="bicubic", padding_mode="border", align_corners=False)
    return out.clamp(0, 1)


def sample_flip_mask(
    batch_size: int,
    p: float = 0.5,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B,) booleans, True where the image is flipped horizontally."""
    return torch.rand(batch_size, device=device, generator=generator) < p


def horizontal_flip(images: Tensor, mask: Tensor) -> Tensor:
    """Flip the images of (B, C, H, W) ``images`` whose ``mask`` entry is True."""
    return torch.where(mask.reshape(-1, 1, 1, 1), images.flip(-1), images)
