"""Spirograph's data: rows of its four data parameters (spec section 2); images are rendered on
the device with fresh transformation parameters (augmentation/spirograph.py)."""

from __future__ import annotations

import torch
from torch import Tensor

from augmentation.spirograph import sample_data_params

TRAIN_SIZE, TEST_SIZE = 100_000, 20_000


def spirograph_splits(proportion: float = 1.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Data parameters of the training and test images, (N_train, 4) and (N_test, 4).

    One ``seed``-ed generator draws 100,000 training then 20,000 test rows; ``proportion`` keeps
    the first rows of each. Test rows lie past the full training set, so no test image is a
    training image at any proportion (the authors' followed the kept training rows).
    """
    if not 0 < proportion <= 1:
        raise ValueError(f"proportion must be in (0, 1], got {proportion}")
    n_train, n_test = int(TRAIN_SIZE * proportion), int(TEST_SIZE * proportion)
    generator = torch.Generator().manual_seed(seed)
    params = sample_data_params(TRAIN_SIZE + TEST_SIZE, generator=generator)
    return params[:n_train], params[TRAIN_SIZE : TRAIN_SIZE + n_test]
