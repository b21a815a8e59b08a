"""torch.hub entry point: a trained encoder out of one of this repository's checkpoints.

    encoder = torch.hub.load("path/to/this/repo", "encoder", source="local",
                             checkpoint="checkpoint/output.pth")

`python3 -m models.export` writes an encoder-only file for code without this repository (it
lives in `models/`, not `utils/`, because `utils` imports no other package of this repository).
"""

import contextlib
import os
import sys

dependencies = ["torch", "torchvision"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGES = ("augmentation", "datasets", "models", "utils")


@contextlib.contextmanager
def _this_repository():
    """Import this repository's packages even in a process that has already imported others of
    the same names (Hugging Face's `datasets` is common), and give that process its own back.
    Packages of this repository that were imported before stay as they were."""

    def top(name: str) -> str:
        return name.partition(".")[0]

    def ours(module) -> bool:
        path = getattr(module, "__file__", None)
        return path is not None and os.path.abspath(path).startswith(_HERE + os.sep)

    kept = {name for name in _PACKAGES if ours(sys.modules.get(name))}
    theirs = {
        name: module
        for name, module in sys.modules.items()
        if top(name) in _PACKAGES and top(name) not in kept
    }
    for name in theirs:
        del sys.modules[name]
    sys.path.insert(0, _HERE)
    try:
        yield
    finally:
        sys.path.remove(_HERE)
        for name in [n for n in sys.modules if top(n) in _PACKAGES and top(n) not in kept]:
            del sys.modules[name]
        sys.modules.update(theirs)


def encoder(checkpoint, map_location="cpu"):
    """The encoder trained in ``checkpoint`` (a training checkpoint of this repository), in eval
    mode on ``map_location``, its weights loaded strictly.

    It maps (B, 3, H, W) float images to (B, d) representations (d = 512 for ResNet-18/34, 2048
    for ResNet-50, times the run's --width). Its inputs are normalised as in training: pixel
    values in [0, 1], then per channel (x - mean) / std with the training set's statistics:
    CIFAR-10 mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010); CIFAR-100 mean
    (0.5071, 0.4865, 0.4409), std (0.2009, 0.1984, 0.2023); STL-10 and ImageNet, ImageNet's
    mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225). Spirograph images take no
    normalisation: they are rendered in [0, 1]. The module's ``normalization`` attribute holds
    its (mean, std), or None for Spirograph. Save its ``state_dict()`` (or use
    ``python3 -m models.export``) rather than pickling the module.
    """
    import torch

    # load_encoder seeds torch's global generator (for --random-init): keep the caller's.
    with _this_repository(), torch.random.fork_rng(devices=[]):
        from augmentation.normalize import DATASET_STATS
        from models.pretrained import load_encoder

        model, run, _ = load_encoder(checkpoint, torch.device(map_location))
        model.normalization = DATASET_STATS[run["dataset"]]
    return model
