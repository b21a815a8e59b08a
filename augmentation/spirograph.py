"""Spirograph's renderer and samplers (spec section 2): a hypotrochoid from four data parameters
(the regression targets) and six transformation parameters (nuisances redrawn for every view),
rendered on the device and differentiable in both."""

from __future__ import annotations

import math

import torch
from torch import Tensor

DATA_PARAMS = ("m", "b", "sigma", "rfore")
TRANSFORM_PARAMS = ("h", "rback", "gfore", "gback", "bfore", "bback")
_FORE, _BACK = (0.4, 1.0), (0.0, 0.6)
DATA_BOUNDS = ((2.0, 5.0), (0.1, 1.1), (0.25, 1.0), _FORE)
TRANSFORM_BOUNDS = ((0.5, 2.5), _BACK, _FORE, _BACK, _FORE, _BACK)

IMAGE_SIZE, NUM_POINTS, EXTENT = 32, 40, 6.0


def _sample_uniform(
    bounds: tuple[tuple[float, float], ...],
    n: int,
    device: torch.device | str | None,
    generator: torch.Generator | None,
) -> Tensor:
    b = torch.tensor(bounds, device=device)
    u = torch.rand(n, len(bounds), device=device, generator=generator)
    return b[:, 0] + u * (b[:, 1] - b[:, 0])


def sample_data_params(
    n: int, *, device: torch.device | str | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """(n, 4) data parameters (m, b, sigma, rfore), each uniform on its range."""
    return _sample_uniform(DATA_BOUNDS, n, device, generator)


def sample_transform_params(
    n: int,
    *,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    bounds: tuple[tuple[float, float], ...] = TRANSFORM_BOUNDS,
) -> Tensor:
    """(n, 6) transformation parameters, each uniform on its range of ``bounds``."""
    return _sample_uniform(bounds, n, device, generator)


def render_spirograph(
    data_params: Tensor, transform_params: Tensor, *, global_max: bool = False
) -> Tensor:
    """Render (B, 3, 32, 32) images from (B, 4) data and (B, 6) transformation parameters: v(i, j)
    is the mean over 40 curve points of exp(−((u_i − x)² + (u_j − y)²) / sigma), the squares summed
    before exp as the authors did, to match their images bit for bit (docs/design.md); each row of
    v is divided by its maximum (+ 1e-8), as in the authors' code and the published numbers, or
    with ``global_max=True`` by the image's."""
    if data_params.shape[-1] != 4 or transform_params.shape[-1] != 6:
        raise ValueError(
            "expected (B, 4) data and (B, 6) transformation parameters, got "
            f"{tuple(data_params.shape)} and {tuple(transform_params.shape)}"
        )
    m, b, sigma, rfore = data_params.unbind(dim=-1)
    h, rback, gfore, gback, bfore, bback = transform_params.unbind(dim=-1)
    a = m + b - h
    dtype, device = data_params.dtype, data_params.device
    t = torch.linspace(0, 2 * math.pi, NUM_POINTS, device=device, dtype=dtype)[:, None]
    x = (a - b) * torch.cos(t) + h * torch.cos(t * (a - b) / b)  # (40, B)
    y = (a - b) * torch.sin(t) - h * torch.sin(t * (a - b) / b)
    u = torch.linspace(-EXTENT, EXTENT, IMAGE_SIZE, device=device, dtype=dtype)
    # (40, B, 32, 1) + (40, B, 1, 32): row coordinate pairs with x, column with y.
    dist = (u[:, None] - x[:, :, None, None]) ** 2 + (u - y[:, :, None, None]) ** 2
    v = torch.exp(-dist / sigma[:, None, None]).mean(dim=0)  # (B, 32, 32)
    if global_max:
        peak = v.amax(dim=(-2, -1), keepdim=True)
    else:
        peak = v.amax(dim=-1, keepdim=True)
    v = (v / (peak + 1e-8)).unsqueeze(1)
    fore = torch.stack([rfore, gfore, bfore], dim=-1)[:, :, None, None]
    back = torch.stack([rback, gback, bback], dim=-1)[:, :, None, None]
    return v * fore + (1 - v) * back
