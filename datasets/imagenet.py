"""ImageNet as a class-folder tree (`train/`, `val/`), decoded in DataLoader workers.

Full-size JPEGs differ in size, so the random resized crop to 224×224 happens in the workers
(torchvision's `RandomResizedCrop`, bicubic); flip, colour distortion and blur follow on the
training device like every other dataset.
"""

from __future__ import annotations

from pathlib import Path

import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode, RandomResizedCrop

from datasets.natural import image_folder_files
from datasets.paths import DatasetError


class ImageFolderCrops(Dataset):
    """Item i is (crop_1, ..., crop_V, target): V independent random resized crops of image i,
    (3, size, size) uint8 each, or with ``random=False`` one centre crop after resizing the
    shorter side to size·256/224 (the usual evaluation view)."""

    def __init__(
        self,
        folder: Path,
        size: int = 224,
        num_views: int = 2,
        random: bool = True,
        name: str = "imagenet",
    ) -> None:
        self.files, self.targets, self.classes = image_folder_files(folder, name)
        self.size = size
        self.num_views = num_views if random else 1
        self.random = random
        self.name = name

    def __len__(self) -> int:
        return len(self.files)

    def _view(self, image: Image.Image) -> Tensor:
        size = [self.size, self.size]
        if self.random:
            box = RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
            image = TF.resized_crop(image, *box, size=size, interpolation=InterpolationMode.BICUBIC)
        else:
            image = TF.resize(
                image, self.size * 256 // 224, interpolation=InterpolationMode.BICUBIC
            )
            image = TF.center_crop(image, size)
        return TF.pil_to_tensor(image)

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError as error:
            raise DatasetError(f"{self.name}: cannot decode {path} ({error})") from None
        return (*(self._view(image) for _ in range(self.num_views)), self.targets[index])


def imagenet_folders(folder: Path) -> tuple[Path, Path]:
    """The ``train/`` and ``val/`` class trees under ``folder``."""
    train, val = folder / "train", folder / "val"
    if not (train.is_dir() and val.is_dir()):
        raise DatasetError(
            f"imagenet: {folder} needs train/ and val/ class folders (torchvision's ImageFolder "
            'layout); point "imagenet" in dataset-paths.json at their parent'
        )
    return train, val
