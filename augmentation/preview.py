"""A picture of what training feeds the encoder (`invariance_by_gradient.py --preview N`): rows of
an image (Spirograph: mid-range render; ImageNet: first worker crop) and its first-step views."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # not pyplot: no global figure state, no display needed
from torch import Tensor

from augmentation.normalize import denormalize
from augmentation.spirograph import DATA_PARAMS, TRANSFORM_PARAMS
from augmentation.views import NaturalViews, SpirographViews, to_unit_float
from utils.checkpoint import save_figure


def _picture(image: Tensor) -> np.ndarray:
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def write_preview(
    path: Path,
    views: NaturalViews | SpirographViews,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_images: int,
    device: torch.device,
) -> Path:
    """A PNG at ``path`` of the first ``num_images`` of ``batches`` and their first-step views."""
    firsts: list[tuple[Tensor, Tensor]] = []
    for pair in batches:
        firsts.append(pair)
        if sum(len(a) for a, _ in firsts) >= num_images:
            break
    x1, x2 = (torch.cat(part)[:num_images].to(device) for part in zip(*firsts, strict=True))
    spirograph = isinstance(views, SpirographViews)
    v1, theta1 = views.augment(x1)
    v2, theta2 = views.augment(x2)
    shown = views.plain(x1) if spirograph else to_unit_float(x1)
    v1, v2 = denormalize(v1, views.dataset), denormalize(v2, views.dataset)
    n = x1.shape[0]
    fig = Figure(figsize=(6.6, 2.3 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    titles = ("image" if not spirograph else "mid-range render", "view 1", "view 2")
    for i in range(n):
        for j, image in enumerate((shown[i], v1[i], v2[i])):
            ax = axes[i, j]
            ax.imshow(_picture(image), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
        if spirograph:
            axes[i, 0].set_xlabel(
                " ".join(f"{k} {v:.2f}" for k, v in zip(DATA_PARAMS, x1[i].tolist(), strict=True)),
                fontsize=6,
            )
            for j, theta in ((1, theta1[i]), (2, theta2[i])):
                pairs = [
                    f"{k} {v:.2f}" for k, v in zip(TRANSFORM_PARAMS, theta.tolist(), strict=True)
                ]
                axes[i, j].set_xlabel(" ".join(pairs[:3]) + "\n" + " ".join(pairs[3:]), fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
    print(f"wrote {path}")
    return path
