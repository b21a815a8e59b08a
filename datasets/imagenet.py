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


class ImageFolderViews(Dataset):
    """Item i is (view_1, view_2): two independent random resized crops, (3, size, size) uint8."""

    def __init__(self, folder: Path, size: int = 224, name: str = "imagenet") -> None:
        self.files, self.targets, self.classes = image_folder_files(folder, name)
        self.size = size
        self.name = name

    def __len__(self) -> int:
        return len(self.files)

    def _crop(self, image: Image.Image) -> Tensor:
        box = RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3])
        crop = TF.resized_crop(
            image, *box, size=[self.size, self.size], interpolation=InterpolationMode.BICUBIC
        )
        return TF.pil_to_tensor(crop)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        path = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError as error:
            raise DatasetError(f"{self.name}: cannot decode {path} ({error})") from None
        return self._crop(image), self._crop(image)


def imagenet_folders(folder: Path) -> tuple[Path, Path]:
    train, val = folder / "train", folder / "val"
    if not (train.is_dir() and val.is_dir()):
        raise DatasetError(
            f"imagenet: {folder} needs train/ and val/ class folders (torchvision's ImageFolder "
            'layout); point "imagenet" in dataset-paths.json at their parent'
        )
    return train, val
