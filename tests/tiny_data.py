"""Writers of tiny datasets in the on-disk layouts the loaders accept."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _images(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def write_cifar_pickles(root: Path, name: str = "cifar10", per_class: int = 2) -> Path:
    """torchvision's layout: cifar-10-batches-py/data_batch_{1..5}, test_batch (or CIFAR-100's)."""
    rng = np.random.default_rng(0)
    classes = 10 if name == "cifar10" else 100
    subdir = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    key = "labels" if name == "cifar10" else "fine_labels"
    folder = root / subdir
    folder.mkdir(parents=True)

    def batch(n_per_class: int) -> dict:
        labels = [c for c in range(classes) for _ in range(n_per_class)]
        data = _images(rng, len(labels), 32, 32).transpose(0, 3, 1, 2).reshape(len(labels), -1)
        return {"data": data, key: labels}

    files = [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" else ["train"]
    for f in files:
        with open(folder / f, "wb") as out:
            pickle.dump(batch(max(per_class // len(files), 1)), out)
    with open(folder / ("test_batch" if name == "cifar10" else "test"), "wb") as out:
        pickle.dump(batch(1), out)
    return root


def write_image_folder(root: Path, splits: dict[str, int], classes: int, size) -> Path:
    """``<split>/<class>/<i>.png`` trees; ``size`` is a side or a list of (w, h) to cycle."""
    rng = np.random.default_rng(1)
    sizes = [(size, size)] if isinstance(size, int) else size
    for split, per_class in splits.items():
        for c in range(classes):
            folder = root / split / f"class{c:02d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                Image.fromarray(_images(rng, 1, h, w)[0]).save(folder / f"{i}.png")
    return root


def write_stl10(root: Path, train_per_class: int = 1, unlabeled: int = 6) -> Path:
    rng = np.random.default_rng(2)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    for split, n in (("train", 10 * train_per_class), ("test", 10)):
        rng.integers(0, 256, size=n * 3 * 96 * 96, dtype=np.uint8).tofile(folder / f"{split}_X.bin")
        np.array([1 + i % 10 for i in range(n)], dtype=np.uint8).tofile(folder / f"{split}_y.bin")
    rng.integers(0, 256, size=unlabeled * 3 * 96 * 96, dtype=np.uint8).tofile(
        folder / "unlabeled_X.bin"
    )
    return root


def write_paths(workdir: Path, **folders: Path) -> None:
    (workdir / "dataset-paths.json").write_text(json.dumps({k: str(v) for k, v in folders.items()}))
