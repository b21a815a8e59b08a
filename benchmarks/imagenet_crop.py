"""Where ImageNet's random resized crop should run: in the DataLoader workers or on the device.

    python3 -m benchmarks.imagenet_crop --device cuda --num-workers 8 --batch-size 256 \\
        --num-images 8192

Measures, in images per second (each image makes two views, floats in [0, 1] on the device, what
`NaturalViews.augment` starts from):
- workers: `datasets.imagenet.ImageFolderCrops` as training loads it, PIL decoding and two
  torchvision bicubic random resized crops per image in the workers, uint8 views copied to the
  device;
- device: the workers only decode; each batch is padded to its largest height and width, copied to
  the device with every image's true size, and both views are cut there by the batched
  `augmentation.crop.resized_crop`, from boxes drawn for each image's own size;
- decode: the device path without the crop (decode, pad, copy), the bound on both.

Both paths read the same images in the same order, with the same batch size and worker count, and
pinned memory on CUDA as training uses. Timing starts once every worker has delivered its first
batch and covers whole rounds of one batch per worker, so neither worker start-up nor the batches
prefetched during it are counted. The ratio `device_over_workers` (throughput) above 1 means the
crop belongs on the device. A table is printed, and as the last line one JSON object.

Without `--folder` a synthetic ImageNet-like tree is written to a temporary folder: JPEGs (quality
90) about `--image-side` pixels on the longer side, either orientation, of smooth random colour
fields at several scales plus pixel noise, so that file sizes and decoding costs are like
photographs'.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from augmentation.crop import resized_crop, sample_crop_boxes
from augmentation.views import to_unit_float
from datasets.imagenet import ImageFolderCrops
from datasets.natural import open_rgb
from utils.cli import UsageError, int_at_least, resolve_device, run_cli

NUM_CLASSES = 10  # class folders of the synthetic tree; only the file layout depends on it


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--num-images", type=int_at_least(1), default=512, help="images generated or used (512)"
    )
    p.add_argument("--batch-size", type=int_at_least(1), default=64, help="images per batch (64)")
    p.add_argument(
        "--num-workers", type=int_at_least(0), default=2, help="DataLoader workers, both paths (2)"
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="cpu", help="where views go (cpu)"
    )
    p.add_argument(
        "--batches",
        type=int_at_least(1),
        default=None,
        help="batches timed per path after one warm-up batch per worker, rounded up to whole "
        "rounds of --num-workers (default: as many as --num-images allows)",
    )
    p.add_argument(
        "--folder",
        type=Path,
        default=None,
        help="an existing class-folder tree such as ImageNet's train/, of which a random "
        "--num-images are used (default: a synthetic tree in a temporary folder)",
    )
    p.add_argument("--size", type=int_at_least(1), default=224, help="crop side in pixels (224)")
    p.add_argument(
        "--image-side",
        type=int_at_least(8),
        default=500,
        help="typical longer side of the synthetic images in pixels (500, as ImageNet's 500×375)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of images, order and crops (0)")
    return p


# (cells across the width, weight, channels): colour at coarse scales, texture in luminance only,
# as in photographs, whose chroma JPEG subsamples. With the noise below, 512 files at the default
# sizes (mean 436 high × 484 wide) average 130.5 KiB at quality 90, a little above ImageNet's
# 110 KB (the run in docs/imagenet.md).
_LAYERS = ((3, 0.7, 3), (12, 0.4, 3), (48, 0.5, 1), (250, 0.7, 1))
_NOISE = 10.0


def synthetic_image(height: int, width: int, rng: np.random.Generator) -> Image.Image:
    """Smooth random fields, coarse to fine (each a random grid upsampled bicubically), plus pixel
    noise: file sizes and decoding costs like a photograph's."""
    field = np.full((height, width, 3), 128, np.float32)
    for cells, weight, channels in _LAYERS:
        grid = rng.integers(0, 256, (max(1, cells * height // width), cells, channels), np.uint8)
        layer = Image.fromarray(grid.squeeze(-1) if channels == 1 else grid)
        layer = np.asarray(layer.resize((width, height), Image.Resampling.BICUBIC), np.float32)
        field += weight * (layer.reshape(height, width, -1) - 128)
    field += _NOISE * rng.standard_normal((height, width, 1), dtype=np.float32)
    return Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))


def _write_image(train: Path, side: int, seed: int, index: int) -> None:
    rng = np.random.default_rng([seed, index])  # one stream per image: any thread order
    long = round(side * float(np.clip(np.exp(rng.normal(0, 0.2)), 0.5, 2.0)))
    short = max(1, round(long * rng.uniform(0.6, 1.0)))
    height, width = (long, short) if rng.random() < 0.25 else (short, long)
    path = train / f"n{index % NUM_CLASSES:08d}" / f"{index:06d}.JPEG"
    synthetic_image(height, width, rng).save(path, quality=90)


def write_synthetic_tree(root: Path, num_images: int, side: int, seed: int) -> Path:
    """``num_images`` JPEGs in ``root/train/<class>/``: longer side log-normal around ``side``
    (within [0.5, 2]·side), shorter side 0.6-1 of it, a quarter portrait. Written by a thread per
    core (PIL and numpy release the GIL for most of the work)."""
    train = root / "train"
    for index in range(min(num_images, NUM_CLASSES)):
        (train / f"n{index:08d}").mkdir(parents=True)
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(partial(_write_image, train, side, seed), range(num_images)))
    return train


class DecodedImages(Dataset):
    """Item i is image i of ``files`` decoded as ImageFolderCrops does, (3, H_i, W_i) uint8."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Tensor:
        return TF.pil_to_tensor(open_rgb(self.files[index], "imagenet"))


def pad_collate(images: list[Tensor]) -> tuple[Tensor, Tensor]:
    """(B, 3, H_max, W_max) uint8 images zero-padded at the bottom and right, and (B, 2) int64
    true (height, width). default_collate would stack straight into shared memory; this batch is
    moved there once more when the worker sends it, a copy that is small beside decoding."""
    sizes = torch.tensor([image.shape[-2:] for image in images], dtype=torch.int64)
    height, width = sizes.max(dim=0).values.tolist()
    batch = torch.zeros(len(images), 3, height, width, dtype=torch.uint8)
    for out, image in zip(batch, images, strict=True):
        out[:, : image.shape[1], : image.shape[2]] = image
    return batch, sizes


def boxes_for(sizes: Tensor, generator: torch.Generator) -> Tensor:
    """Random resized crop boxes, each drawn for its image's row of the (B, 2) true ``sizes``."""
    height, width = sizes.unbind(dim=1)
    return sample_crop_boxes(
        sizes.shape[0], height, width, device=sizes.device, generator=generator
    )


def device_views(
    images: Tensor, sizes: Tensor, size: int, generator: torch.Generator, num_views: int = 2
) -> list[Tensor]:
    """``num_views`` (B, 3, size, size) random resized crops of each padded image, in [0, 1].

    Pixels outside a box get zero weight in `resized_crop`, so the padding never reaches a crop:
    every box lies within its image's true size.
    """
    x = to_unit_float(images)
    return [resized_crop(x, boxes_for(sizes, generator), size) for _ in range(num_views)]


def images_per_second(
    loader: DataLoader,
    make_views: Callable[[object], list[Tensor]],
    warmup: int,
    timed: int,
    batch_size: int,
    device: torch.device,
) -> float:
    batches: Iterator = iter(loader)
    for _ in range(warmup):
        make_views(next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(timed):
        make_views(next(batches))
    sync(device)
    elapsed = time.perf_counter() - start
    del batches  # stops the workers before the next path starts its own
    return timed * batch_size / elapsed


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it."""
    with Image.open(path) as image:
        return image.size


def plan_batches(args: argparse.Namespace, available: int) -> tuple[int, int]:
    """(warm-up, timed) batch counts. Workers start together and deliver their first batches
    together; timing from there over whole rounds of one batch per worker measures the steady
    rate, which a partial round would overstate by the batches already in flight."""
    rounds = max(1, args.num_workers)
    warmup = rounds
    if args.batches is None:
        timed = (available // args.batch_size - warmup) // rounds * rounds
    else:
        timed = math.ceil(args.batches / rounds) * rounds
    needed = (warmup + timed) * args.batch_size
    if timed < 1 or needed > available:
        raise UsageError(
            f"{warmup} warm-up and {max(timed, rounds)} timed batches of {args.batch_size} need "
            f"{(warmup + max(timed, rounds)) * args.batch_size} images; there are {available} "
            "(raise --num-images or lower --batch-size or --batches)"
        )
    return warmup, timed


def main(args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)  # the workers' crop draws follow from it
    with tempfile.TemporaryDirectory(prefix="imagenet_crop_") as tmp:
        if args.folder is None:
            plan_batches(args, args.num_images)  # refuse before minutes of writing images
            folder = write_synthetic_tree(Path(tmp), args.num_images, args.image_side, args.seed)
        else:
            folder = args.folder
        dataset = ImageFolderCrops(folder, args.size)
        available = min(args.num_images, len(dataset))
        warmup, timed = plan_batches(args, available)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
        indices = order[: (warmup + timed) * args.batch_size].tolist()
        files = [dataset.files[i] for i in indices]
        # Read every file once so that no path pays for the first read from disk.
        jpeg_bytes = [len(f.read_bytes()) for f in files]
        image_sizes = [image_size(f) for f in files]

        loader_args = dict(
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            pin_memory=device.type == "cuda",
        )
        generator = torch.Generator(device).manual_seed(args.seed)

        def workers(batch) -> list[Tensor]:
            view1, view2, _ = batch
            return [to_unit_float(v.to(device, non_blocking=True)) for v in (view1, view2)]

        def on_device(batch) -> list[Tensor]:
            images, sizes = (t.to(device, non_blocking=True) for t in batch)
            return device_views(images, sizes, args.size, generator)

        def decode_only(batch) -> list[Tensor]:
            return [to_unit_float(batch[0].to(device, non_blocking=True))]

        decoded = DecodedImages(files)
        paths = {
            "decode": (DataLoader(decoded, collate_fn=pad_collate, **loader_args), decode_only),
            "workers": (DataLoader(Subset(dataset, indices), **loader_args), workers),
            "device": (DataLoader(decoded, collate_fn=pad_collate, **loader_args), on_device),
        }
        rate = {
            name: images_per_second(loader, fn, warmup, timed, args.batch_size, device)
            for name, (loader, fn) in paths.items()
        }

    ratio = rate["device"] / rate["workers"]
    heights, widths = zip(*((h, w) for w, h in image_sizes), strict=True)
    print(
        f"{len(files)} images ({'synthetic' if args.folder is None else args.folder}), mean "
        f"{np.mean(heights):.0f}×{np.mean(widths):.0f} px, {np.mean(jpeg_bytes) / 1024:.1f} KiB; "
        f"batch {args.batch_size}, {args.num_workers} workers, {warmup} warm-up and {timed} timed "
        f"batches, crops {args.size}×{args.size}, device {device}, torch {torch.__version__}"
    )
    print(f"{'path':24}{'images/s':>10}{'s/batch':>10}")
    for name, value in rate.items():
        print(f"{name:24}{value:10.1f}{args.batch_size / value:10.3f}")
    print(f"{'device_over_workers':24}{ratio:10.3f}")
    summary = {
        "device": str(device),
        "folder": "synthetic" if args.folder is None else str(args.folder),
        "images": len(files),
        "mean_height": round(float(np.mean(heights)), 1),
        "mean_width": round(float(np.mean(widths)), 1),
        "mean_jpeg_kib": round(float(np.mean(jpeg_bytes)) / 1024, 1),
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "warmup_batches": warmup,
        "timed_batches": timed,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "images_per_s": {k: round(v, 2) for k, v in rate.items()},
        "device_over_workers": round(ratio, 3),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main, get_args_parser())
