"""ImageNet as a class-folder tree (`train/`, `val/`), decoded in DataLoader workers.

Full-size JPEGs differ in size, so the random resized crop (torchvision's bicubic `resized_crop`)
happens in the workers and the rest on the device (docs/imagenet.md). Crops are seeded by (seed,
epoch, image index), so neither the number of workers nor a mid-epoch resume changes them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode

from augmentation.crop import sample_crop_boxes
from datasets.natural import image_folder_files, open_rgb
from datasets.paths import DatasetError


class ImageFolderCrops(Dataset):
    """Item i is (crop_1, ..., crop_V, target): V independent random resized crops of image i,
    (3, size, size) uint8 each, or with ``random=False`` one centre crop after resizing the
    shorter side to size·256/224 (the usual evaluation view). Set ``epoch`` before each pass
    for fresh crops."""

    def __init__(
        self,
        folder: Path,
        size: int = 224,
        num_views: int = 2,
        random: bool = True,
        name: str = "imagenet",
        seed: int = 0,
    ) -> None:
        self.files, self.targets, self.classes = image_folder_files(folder, name)
        self.size = size
        self.num_views = num_views if random else 1
        self.random = random
        self.name = name
        self.seed = seed
        self.epoch = 0

    def select(self, indices: list[int]) -> ImageFolderCrops:
        """The same dataset restricted to the images at ``indices`` (for ``--proportion``)."""
        subset = copy.copy(self)
        subset.files = [self.files[i] for i in indices]
        subset.targets = self.targets[torch.as_tensor(indices, dtype=torch.long)]
        return subset

    def centred(self) -> ImageFolderCrops:
        """The same images as one centre crop each (the evaluation view)."""
        plain = copy.copy(self)
        plain.random, plain.num_views = False, 1
        return plain

    def subset(self, indices: Tensor) -> ImageFolderCrops:
        return self.select(indices.tolist())

    def batches(self, batch_size: int, num_workers: int = 0) -> Iterator[Tensor]:
        """The crops in order, ``batch_size`` at a time, decoded in ``num_workers`` workers."""
        loader = DataLoader(self, batch_size=batch_size, num_workers=num_workers)
        for inputs, *_ in loader:
            yield inputs

    def __len__(self) -> int:
        return len(self.files)

    def _view(self, image: Image.Image, generator: torch.Generator) -> Tensor:
        size = [self.size, self.size]
        if self.random:
            width, height = image.size
            box = sample_crop_boxes(1, height, width, generator=generator)[0].tolist()
            image = TF.resized_crop(image, *box, size=size, interpolation=InterpolationMode.BICUBIC)
        else:
            image = TF.resize(
                image, self.size * 256 // 224, interpolation=InterpolationMode.BICUBIC
            )
            image = TF.center_crop(image, size)
        return TF.pil_to_tensor(image)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        path = self.files[index]
        image = open_rgb(path, self.name)
        seed = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2)
        generator = torch.Generator().manual_seed(int(seed[0]) << 32 | int(seed[1]))
        views = (self._view(image, generator) for _ in range(self.num_views))
        return (*views, self.targets[index])


def imagenet_folders(folder: Path) -> tuple[Path, Path]:
    """The ``train/`` and ``val/`` class trees under ``folder``."""
    train, val = folder / "train", folder / "val"
    if not (train.is_dir() and val.is_dir()):
        raise DatasetError(
            f"imagenet: {folder} needs train/ and val/ class folders (torchvision's ImageFolder "
            'layout); point "imagenet" in dataset-paths.json at their parent'
        )
    return train, val
