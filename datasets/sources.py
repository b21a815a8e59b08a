"""From a dataset name to what training and the probe need (spec section 1). Every fact about a
dataset is a field of its `DatasetInfo`; only `load_dataset` compares names (to read files)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from augmentation.spirograph import DATA_PARAMS
from augmentation.views import NaturalViews, SpirographViews
from datasets.imagenet import ImageFolderCrops, imagenet_folders
from datasets.natural import Labelled, load_cifar, load_stl10, stratified_indices
from datasets.paths import PATHS_FILE, DatasetError, dataset_folder
from datasets.spirograph import TEST_SIZE, spirograph_splits
from utils.distributed import ONE_PROCESS, Shard
from utils.rng import epoch_generator
from utils.signals import ignore_sigint_in_worker


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset's facts. stem: see models/resnet.py. image_size: a view's side. num_classes: None
    for Spirograph, whose probe regresses its data parameters. rendered: views are rendered from
    parameters (Spirograph). crops_in_workers: the random resized crop is taken in data-loader
    workers (ImageNet). blur: SimCLR's blur is on by default. full_batch_probe: small enough for
    the L-BFGS probe (ImageNet's is trained by SGD)."""

    name: str
    stem: str
    image_size: int
    num_classes: int | None
    rendered: bool = False
    crops_in_workers: bool = False
    blur: bool = False
    full_batch_probe: bool = True

    @property
    def task(self) -> str:
        return "regression" if self.num_classes is None else "classification"

    @property
    def num_outputs(self) -> int:
        return len(DATA_PARAMS) if self.num_classes is None else self.num_classes

    @property
    def evaluation_script(self) -> str:
        return "lbfgs_linear_clf_spirograph.py" if self.rendered else "lbfgs_linear_clf.py"

    def views(
        self,
        colour_strength: float = 0.5,
        blur: bool | None = None,
        *,
        generator: torch.Generator | None = None,
        shard: Shard = ONE_PROCESS,
    ) -> NaturalViews | SpirographViews:
        """The view maker of spec section 3 (section 2 for Spirograph), drawing from
        ``generator``; ``blur`` None takes the dataset's default."""
        if self.rendered:
            return SpirographViews(generator=generator, shard=shard)
        return NaturalViews(
            self.name,
            self.image_size,
            colour_strength,
            self.blur if blur is None else blur,
            crop=not self.crops_in_workers,
            generator=generator,
            shard=shard,
        )


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("cifar10", "cifar", 32, 10),
        DatasetInfo("cifar100", "cifar", 32, 100),
        DatasetInfo("stl10", "stl", 96, 10),
        DatasetInfo(
            "imagenet",
            "imagenet",
            224,
            1000,
            crops_in_workers=True,
            blur=True,
            full_batch_probe=False,
        ),
        DatasetInfo("spirograph", "cifar", 32, None, rendered=True),
    )
}
# Spirograph's images are generated from these rows; fixing the seed keeps the training and test
# sets identical across training seeds and lets the evaluation scripts rebuild them.
SPIROGRAPH_DATA_SEED = 0


@dataclass
class DatasetBundle:
    """pretrain: (N, 3, H, W) uint8 images, Spirograph's (N, 4) data parameters, or ImageNet's
    Dataset of (view_1, view_2, target). probe_train / probe_test: in-memory labelled sets, or
    ImageNet's Datasets of (crop, target) and (centre crop, target) for the SGD probe."""

    info: DatasetInfo
    pretrain: Tensor | Dataset
    probe_train: Labelled | Dataset
    probe_test: Labelled | Dataset


def load_dataset(
    name: str, *, proportion: float = 1.0, seed: int = 0, paths_file: str | Path = PATHS_FILE
) -> DatasetBundle:
    """Load ``name``; ``proportion`` keeps a stratified fraction of the labelled training set
    (and the same fraction of the pretraining set)."""
    info = DATASETS[name]
    if info.rendered:
        train, test = spirograph_splits(proportion, SPIROGRAPH_DATA_SEED)
        if not (len(train) and len(test)):
            raise DatasetError(
                f"spirograph: --proportion {proportion} leaves {len(train)} training and "
                f"{len(test)} test images; use at least {1 / TEST_SIZE:g}"
            )
        return DatasetBundle(info, train, Labelled(train, train), Labelled(test, test))
    folder = dataset_folder(name, paths_file)
    if info.crops_in_workers:
        train_dir, val_dir = imagenet_folders(folder)
        pretrain = ImageFolderCrops(train_dir, info.image_size, seed=seed)
        keep = stratified_indices(
            pretrain.targets, proportion, len(pretrain.classes), seed
        ).tolist()
        pretrain = pretrain.select(keep)
        probe_train = ImageFolderCrops(train_dir, info.image_size, num_views=1, seed=seed)
        probe_test = ImageFolderCrops(val_dir, info.image_size, random=False)
        return DatasetBundle(info, pretrain, probe_train.select(keep), probe_test)
    if name == "stl10":
        unlabeled, train, test = load_stl10(folder)
        train = train.subset(stratified_indices(train.targets, proportion, info.num_classes, seed))
        keep = int(unlabeled.shape[0] * proportion)
        order = torch.randperm(unlabeled.shape[0], generator=torch.Generator().manual_seed(seed))
        pretrain = torch.cat([train.inputs, unlabeled[order[:keep].sort().values]])
        return DatasetBundle(info, pretrain, train, test)
    train, test = load_cifar(folder, name, info.num_classes, proportion, seed)
    return DatasetBundle(info, train.inputs, train, test)


def pretrain_batches(
    data: DatasetBundle,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start_step: int = 0,
    shard: Shard = ONE_PROCESS,
    num_workers: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Pairs of inputs for the two views in an order fixed by (seed, epoch), from batch
    ``start_step`` on, each process its ``shard``; the last partial batch is dropped so batch norm
    and NT-Xent always see ``batch_size`` images."""
    order = epoch_generator(seed, epoch)
    perm = torch.randperm(len(data.pretrain), generator=order)
    num_steps = perm.numel() // batch_size
    batches = perm[: num_steps * batch_size].view(num_steps, batch_size)
    mine = shard.rows(batches, dim=1)[start_step:]
    if isinstance(data.pretrain, torch.Tensor):
        for indices in mine:
            batch = data.pretrain[indices]
            yield batch, batch
        return
    data.pretrain.epoch = epoch  # per-image crop seeds (datasets/imagenet.py)
    loader = DataLoader(
        data.pretrain,
        batch_size=mine.shape[1],
        sampler=mine.reshape(-1).tolist(),
        drop_last=True,
        num_workers=num_workers,
        # Only the workers' base seed comes from it: keeps the global generator untouched.
        generator=order,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=ignore_sigint_in_worker,
    )
    for view1, view2, _ in loader:
        yield view1, view2
