"""What the probe encodes (spec section 7): plain images or the mean over M augmented copies
(feature averaging), and the feature-averaging curve's prefix means."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# Images per encoding call in training's probe and the evaluation scripts alike: a CUDA
# generator's stream depends on each call's size (docs/design.md).
ENCODE_BATCH_SIZE = 256


def probe_views(rendered: bool, num_passes: int | None, untransformed: bool) -> tuple[bool, int]:
    """(plain, passes): plain images (normalisation only; Spirograph: the mid-range render), or
    the mean of ``passes`` augmented copies. By default natural images are plain and Spirograph,
    which has none, gets one draw per image, as the authors' probe; ``num_passes`` M averages M
    copies; ``untransformed`` asks for plain images whatever the dataset."""
    if untransformed:
        return True, 1
    if num_passes is None:
        return not rendered, 1
    return False, num_passes


@torch.no_grad()
def encode(
    encoder: nn.Module,
    batches: Iterable[Tensor],
    to_images: Callable[[Tensor], Tensor],
    device: torch.device,
) -> Tensor:
    """(N, d) float32 representations of the input batches, each made into images by
    ``to_images`` on ``device``; the encoder runs in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = [encoder(to_images(batch.to(device))).float() for batch in batches]
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)


def representations(
    encoder: nn.Module,
    split,
    views,
    *,
    untransformed: bool,
    num_passes: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> Tensor:
    """(N, d) representations of ``split`` (anything with ``batches``): of plain images, or the
    mean over ``num_passes`` independent ``views.augment`` draws."""
    if untransformed:
        return encode(encoder, split.batches(batch_size, num_workers), views.plain, device)
    total = None
    for _ in range(num_passes):
        batches = split.batches(batch_size, num_workers)
        features = encode(encoder, batches, lambda x: views.augment(x)[0], device)
        total = features if total is None else total + features
    return total / num_passes


@dataclass
class Encoded:
    """The probe's representations, (N, d) float32, and targets of the labelled training and test
    sets: what every measure that reuses the probe's encoding takes."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor


def encode_sets(
    encoder: nn.Module,
    data,
    views,
    *,
    untransformed: bool,
    num_passes: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    verbose: bool = False,
) -> Encoded:
    """The representations spec section 7 fits on and scores: the labelled training set, then
    the test set, of ``data`` (a `datasets.sources.DatasetBundle`)."""
    start = time.perf_counter()
    common = dict(
        untransformed=untransformed, num_passes=num_passes, batch_size=batch_size,
        num_workers=num_workers, device=device,
    )  # fmt: skip
    train_x = representations(encoder, data.probe_train, views, **common)
    train_y = torch.as_tensor(data.probe_train.targets).to(device)
    test_x = representations(encoder, data.probe_test, views, **common)
    test_y = torch.as_tensor(data.probe_test.targets).to(device)
    if verbose:
        mode = "plain images" if untransformed else f"{num_passes} augmented pass(es)"
        print(
            f"encoded {train_x.shape[0]} training and {test_x.shape[0]} test images "
            f"({mode}) in {time.perf_counter() - start:.1f} s"
        )
    return Encoded(train_x, train_y, test_x, test_y)


def prefix_means(
    encode_pass: Callable[[Tensor | None], Tensor],
    passes: list[int],
    full_passes: int,
    subset: Tensor,
) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
    """Feature averaging at every M of ``passes`` from max(passes) augmented passes, each encoded
    once: ``encode_pass(None)`` encodes every image (N, d), ``encode_pass(subset)`` those rows.
    Returns the means of the first M passes of every image for M ≤ ``full_passes`` (later passes
    cover the subset alone), and of the subset's rows for every M."""
    total = subset_total = None
    every, on_subset = {}, {}
    for p in range(1, max(passes) + 1):
        if p <= full_passes:
            x = encode_pass(None).double()
            total = x if total is None else total + x
            subset_total = total[subset]
        else:
            x = encode_pass(subset).double()
            subset_total = x if subset_total is None else subset_total + x
        if p in passes:
            if p <= full_passes:
                every[p] = (total / p).float()
            on_subset[p] = (subset_total / p).float()
    return every, on_subset
