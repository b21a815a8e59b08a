"""Batched random resized crop and horizontal flip with per-image parameters (spec section 3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_ATTEMPTS = 10


def sample_crop_boxes(
    batch_size: int,
    height: int | Tensor,
    width: int | Tensor,
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(batch_size, 4) integer boxes (top, left, box_height, box_width) from RandomResizedCrop's
    distribution: the first of ten draws (area ~ U[scale], log-uniform ``ratio``) that fits, else a
    centre crop. ``height``, ``width``: ints, or (batch_size,) tensors for padded mixed sizes."""
    dtype = torch.float64
    height = torch.as_tensor(height, device=device, dtype=dtype).expand(batch_size)
    width = torch.as_tensor(width, device=device, dtype=dtype).expand(batch_size)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    u = torch.rand(2, batch_size, _ATTEMPTS, device=device, generator=generator, dtype=dtype)
    target_area = (height * width)[:, None] * (scale[0] + u[0] * (scale[1] - scale[0]))
    aspect = torch.exp(log_lo + u[1] * (log_hi - log_lo))
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    first = torch.argmax(fits.to(torch.int8), dim=1, keepdim=True)  # first fitting attempt
    found = fits.any(dim=1)
    h = h.gather(1, first).squeeze(1)
    w = w.gather(1, first).squeeze(1)
    # Offsets uniform over the valid integer positions, as random.randint(0, H - h) does.
    offset = torch.rand(2, batch_size, device=device, generator=generator, dtype=dtype)
    top = torch.floor(offset[0] * (height - h + 1))
    left = torch.floor(offset[1] * (width - w + 1))

    # Fallback: the centre crop, its aspect ratio clamped into range (torch.round rounds half to
    # even, as Python's round in torchvision does).
    in_ratio = width / height
    fb_h = torch.where(in_ratio < min(ratio), torch.round(width / min(ratio)), height)
    fb_w = torch.where(in_ratio > max(ratio), torch.round(height * max(ratio)), width)
    h = torch.where(found, h, fb_h)
    w = torch.where(found, w, fb_w)
    top = torch.where(found, top, torch.floor((height - fb_h) / 2))
    left = torch.where(found, left, torch.floor((width - fb_w) / 2))
    return torch.stack([top, left, h, w], dim=1).long()


def _bicubic(x: Tensor) -> Tensor:
    """Keys' cubic kernel with a = −0.5, the one PIL and torchvision's antialiased resize use."""
    a = -0.5
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _resample_weights(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """(B, out_size, in_size) weights resampling pixels [start, start + length) to out_size; as in
    PIL and torchvision, widened when shrinking, zero outside the box, rows renormalised."""
    dtype = torch.float64
    scale = (length.to(dtype) / out_size)[:, None, None]
    centre = (torch.arange(out_size, device=start.device, dtype=dtype)[None, :, None] + 0.5) * scale
    x = (
        torch.arange(in_size, device=start.device, dtype=dtype)[None, None, :]
        - start[:, None, None]
    )
    inside = (x >= 0) & (x < length[:, None, None])
    weights = _bicubic((x + 0.5 - centre) / scale.clamp(min=1)) * inside
    return weights / weights.sum(dim=-1, keepdim=True)


def resized_crop(images: Tensor, boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """torchvision's ``resized_crop(..., BICUBIC, antialias=True)`` of each (B, C, H, W) image in
    [0, 1] to its row of ``boxes`` (`sample_crop_boxes`), as two matrix products (resampling is
    separable). ``size``: a side or (out_h, out_w). Clamped to [0, 1], as PIL clamps overshoot."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    _, _, height, width = images.shape
    top, left, box_h, box_w = boxes.to(images.device).unbind(dim=1)
    rows = _resample_weights(top, box_h, height, out_h).to(images.dtype)
    cols = _resample_weights(left, box_w, width, out_w).to(images.dtype)
    out = rows[:, None] @ images @ cols.transpose(1, 2)[:, None]
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
