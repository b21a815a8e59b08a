"""The Spirograph dataset: the data parameters of its training and test images (spec section 2).

An image is rendered on the training device from its four data parameters and a fresh draw of
the six transformation parameters (augmentation/spirograph.py), so the dataset itself is only
the rows of data parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from augmentation.spirograph import sample_data_params

TRAIN_SIZE, TEST_SIZE = 100_000, 20_000


def spirograph_splits(proportion: float = 1.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Data parameters of the training and test images, (N_train, 4) and (N_test, 4).

    One generator seeded with ``seed`` draws the rows of the full sets, 100,000 training rows
    and then 20,000 test rows; ``proportion`` keeps the first rows of each (the authors' code
    scales both sizes the same way). The test rows come from past the 100,000 training rows, so
    no test image is a training image at any proportion: an encoder trained on the full set can
    be evaluated at a smaller one. (The authors took the test rows straight after the kept
    training rows, inside the full training set whenever ``proportion`` < 1.) The training rows
    are the stream's first rows, as they always were.
    """
    if not 0 < proportion <= 1:
        raise ValueError(f"proportion must be in (0, 1], got {proportion}")
    n_train, n_test = int(TRAIN_SIZE * proportion), int(TEST_SIZE * proportion)
    generator = torch.Generator().manual_seed(seed)
    params = sample_data_params(TRAIN_SIZE + TEST_SIZE, generator=generator)
    return params[:n_train], params[TRAIN_SIZE : TRAIN_SIZE + n_test]
