"""CIFAR-10/100 and STL-10 from local folders as in-memory (N, 3, H, W) uint8 (spec section 1).
Not torchvision's classes: their md5 checks refuse small test data and re-encoded copies, and
their pickle reading runs arbitrary code from the data folder."""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from datasets.paths import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
_CIFAR = {
    "cifar10": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        "test_batch",
        "labels",
    ),
    "cifar100": ("cifar-100-python", ["train"], "test", "fine_labels"),
}


@dataclass
class Labelled:
    """inputs: (N, 3, H, W) uint8 images (or Spirograph's (N, 4) parameters); targets: (N, ...)."""

    inputs: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return self.targets.shape[0]

    def subset(self, indices: Tensor) -> Labelled:
        return Labelled(self.inputs[indices], self.targets[indices])

    def batches(self, batch_size: int, num_workers: int = 0) -> Iterator[Tensor]:
        """The inputs in order, ``batch_size`` at a time (the probe's encoding pass)."""
        del num_workers  # in memory: nothing to load
        yield from self.inputs.split(batch_size)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the official CIFAR batches (dicts, lists, bytes, numpy arrays) and nothing else,
    so a crafted file in a data folder cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path, label_key: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(io.BytesIO(f.read()), encoding="latin1").load()
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise DatasetError(f"{name}: {path} is not a readable CIFAR batch ({error})") from None
    if data.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{name}: {path} has {data.shape[0]} images but {labels.shape[0]} labels"
        )
    return data, labels


def _cifar_pickles(folder: Path, name: str, split: str) -> Labelled:
    subdir, train_files, test_file, label_key = _CIFAR[name]
    root = folder / subdir if (folder / subdir).is_dir() else folder
    files = train_files if split == "train" else [test_file]
    arrays = [_read_cifar_batch(root / f, label_key, name) for f in files]
    images = torch.from_numpy(np.concatenate([a for a, _ in arrays]))
    labels = torch.from_numpy(np.concatenate([b for _, b in arrays]))
    return Labelled(images, labels)


def image_folder_files(folder: Path, name: str) -> tuple[list[Path], Tensor, list[str]]:
    """Files of a ``<class>/<image>`` tree, their class indices (sorted class names) and classes."""
    if not folder.is_dir():
        raise DatasetError(f"{name}: {folder} is not a folder; point at a <class>/<image> tree")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    files, labels = [], []
    for index, cls in enumerate(classes):
        found = sorted(p for p in (folder / cls).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        files += found
        labels += [index] * len(found)
    if not files:
        raise DatasetError(f"{name}: no images in class folders under {folder}")
    return files, torch.tensor(labels, dtype=torch.int64), classes


def open_rgb(path: Path, name: str) -> Image.Image:
    """The image file at ``path`` decoded as RGB; a file that does not decode is a
    `DatasetError` naming it."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except OSError as error:
        raise DatasetError(f"{name}: cannot decode {path} ({error})") from None


def _decode(path: Path, size: int, name: str) -> np.ndarray:
    array = np.asarray(open_rgb(path, name))
    if array.shape[:2] != (size, size):
        raise DatasetError(
            f"{name}: {path} is {array.shape[1]}×{array.shape[0]}, expected {size}×{size}"
        )
    return array


def decode_image_folder(
    folder: Path, name: str, size: int, keep: Callable[[Tensor], Tensor] | None = None
) -> tuple[Labelled, list[str]]:
    """Decode the images of a ``<class>/<image>`` tree into memory: all of them, or those at the
    indices ``keep(labels)`` returns (a small --proportion then decodes only its share)."""
    files, labels, classes = image_folder_files(folder, name)
    if keep is not None:
        indices = keep(labels)
        files, labels = [files[i] for i in indices.tolist()], labels[indices]
    images = np.stack([_decode(f, size, name) for f in files]).transpose(0, 3, 1, 2)
    return Labelled(torch.from_numpy(np.ascontiguousarray(images)), labels), classes


def load_cifar(
    folder: Path, name: str, num_classes: int, proportion: float = 1.0, seed: int = 0
) -> tuple[Labelled, Labelled]:
    """(train, test) of ``name`` (cifar10 or cifar100) from torchvision's pickle layout or a
    train/test class tree; the training set reduced to the stratified ``proportion`` of
    `stratified_indices`."""

    def keep(labels: Tensor) -> Tensor:
        return stratified_indices(labels, proportion, num_classes, seed)

    if (folder / "train").is_dir() and (folder / "test").is_dir():
        train, classes = decode_image_folder(folder / "train", name, 32, keep)
        test, test_classes = decode_image_folder(folder / "test", name, 32)
        if classes != test_classes:
            raise DatasetError(f"{name}: train/ and test/ under {folder} have different classes")
        if len(classes) != num_classes:
            raise DatasetError(
                f"{name}: {folder}/train has {len(classes)} class folders, expected {num_classes}"
            )
        return train, test
    subdir = _CIFAR[name][0]
    root = folder / subdir if (folder / subdir).is_dir() else folder
    if not (root / _CIFAR[name][2]).is_file():
        raise DatasetError(
            f"{name}: {folder} holds neither {subdir}/ (torchvision's layout) nor train/ and test/ "
            f'class folders; point "{name}" in dataset-paths.json at one of them'
        )
    train = _cifar_pickles(folder, name, "train")
    return train.subset(keep(train.targets)), _cifar_pickles(folder, name, "test")


def _read_stl_images(path: Path) -> Tensor:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise DatasetError(f"stl10: {path} is not a whole number of 96×96 images")
    # Stored column-major: transpose each image's axes to (channel, row, column).
    return torch.from_numpy(np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)))


def load_stl10(folder: Path) -> tuple[Tensor, Labelled, Labelled]:
    """(unlabeled images, labelled train, test) from torchvision's ``stl10_binary`` layout."""
    root = folder / "stl10_binary" if (folder / "stl10_binary").is_dir() else folder
    needed = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"]
    missing = [f for f in needed if not (root / f).is_file()]
    if missing:
        raise DatasetError(
            f"stl10: {root} lacks {', '.join(missing)} (torchvision's stl10_binary layout); "
            'point "stl10" in dataset-paths.json at the folder holding stl10_binary/'
        )
    splits = []
    for split in ("train", "test"):
        images = _read_stl_images(root / f"{split}_X.bin")
        labels = (
            torch.from_numpy(np.fromfile(root / f"{split}_y.bin", dtype=np.uint8).astype(np.int64))
            - 1
        )
        if labels.shape[0] != images.shape[0]:
            raise DatasetError(f"stl10: {split}_X.bin and {split}_y.bin differ in length")
        splits.append(Labelled(images, labels))
    return _read_stl_images(root / "unlabeled_X.bin"), splits[0], splits[1]


def stratified_indices(labels: Tensor, proportion: float, num_classes: int, seed: int) -> Tensor:
    """floor(N·p / classes) random indices of every class (spec section 1), in a seeded order."""
    if proportion >= 1:
        return torch.arange(labels.shape[0])
    per_class = int(labels.shape[0] * proportion / num_classes)
    if per_class < 1:
        raise DatasetError(
            f"proportion {proportion} of {labels.shape[0]} images leaves no image of some of the "
            f"{num_classes} classes; raise --proportion"
        )
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in range(num_classes):
        members = torch.nonzero(labels == cls).flatten()
        if members.numel() < per_class:
            raise DatasetError(f"class {cls} has {members.numel()} images, fewer than {per_class}")
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values
