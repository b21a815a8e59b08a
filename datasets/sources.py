"""One entry point from a dataset name to what training and the probe need (spec section 1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from datasets.imagenet import ImageFolderCrops, imagenet_folders
from datasets.natural import Labelled, load_cifar, load_stl10, stratified_indices
from datasets.paths import PATHS_FILE, DatasetError, dataset_folder
from datasets.spirograph import DATA_PARAMS, TEST_SIZE, spirograph_splits

# name: (stem, image side, classes; None for Spirograph's regression onto its data parameters)
DATASETS: dict[str, tuple[str, int, int | None]] = {
    "cifar10": ("cifar", 32, 10),
    "cifar100": ("cifar", 32, 100),
    "stl10": ("stl", 96, 10),
    "imagenet": ("imagenet", 224, 1000),
    "spirograph": ("cifar", 32, None),
}
# Spirograph's images are generated from these rows; fixing the seed keeps the training and test
# sets identical across training seeds and lets the evaluation scripts rebuild them.
SPIROGRAPH_DATA_SEED = 0


@dataclass
class DatasetBundle:
    """pretrain: uint8 images (N, 3, H, W), Spirograph data parameters (N, 4), or a Dataset of
    (view_1, view_2, target) cropped in workers (ImageNet). probe_train / probe_test: labelled
    in-memory sets for the linear probe; for ImageNet, Datasets of (crop, target) and
    (centre crop, target) for the SGD probe."""

    name: str
    stem: str
    image_size: int
    num_classes: int | None
    pretrain: Tensor | Dataset
    probe_train: Labelled | Dataset
    probe_test: Labelled | Dataset

    @property
    def task(self) -> str:
        return "regression" if self.num_classes is None else "classification"

    @property
    def num_outputs(self) -> int:
        return len(DATA_PARAMS) if self.num_classes is None else self.num_classes


def load_dataset(
    name: str, *, proportion: float = 1.0, seed: int = 0, paths_file: str | Path = PATHS_FILE
) -> DatasetBundle:
    """Load ``name``; ``proportion`` keeps a stratified fraction of the labelled training set."""
    stem, size, num_classes = DATASETS[name]
    if name == "spirograph":
        train, test = spirograph_splits(proportion, SPIROGRAPH_DATA_SEED)
        if not (len(train) and len(test)):
            raise DatasetError(
                f"spirograph: --proportion {proportion} leaves {len(train)} training and "
                f"{len(test)} test images; use at least {1 / TEST_SIZE:g}"
            )
        return DatasetBundle(
            name, stem, size, None, train, Labelled(train, train), Labelled(test, test)
        )
    folder = dataset_folder(name, paths_file)
    if name == "imagenet":
        train_dir, val_dir = imagenet_folders(folder)
        pretrain = ImageFolderCrops(train_dir, size, seed=seed)
        keep = stratified_indices(
            pretrain.targets, proportion, len(pretrain.classes), seed
        ).tolist()
        pretrain = pretrain.select(keep)
        probe_train = ImageFolderCrops(train_dir, size, num_views=1, seed=seed).select(keep)
        return DatasetBundle(
            name,
            stem,
            size,
            num_classes,
            pretrain,
            probe_train,
            ImageFolderCrops(val_dir, size, random=False),
        )
    if name == "stl10":
        unlabeled, train, test = load_stl10(folder)
        train = train.subset(stratified_indices(train.targets, proportion, num_classes, seed))
        keep = int(unlabeled.shape[0] * proportion)
        order = torch.randperm(unlabeled.shape[0], generator=torch.Generator().manual_seed(seed))
        pretrain = torch.cat([train.inputs, unlabeled[order[:keep].sort().values]])
        return DatasetBundle(name, stem, size, num_classes, pretrain, train, test)
    train, test, num_classes = load_cifar(folder, name, proportion, seed)
    return DatasetBundle(name, stem, size, num_classes, train.inputs, train, test)
