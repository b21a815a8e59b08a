"""ResNet encoders without their classifier (spec section 4).

The networks are torchvision's own `ResNet` with its residual blocks; only the stem differs
between datasets, and the final fully connected layer is replaced by the identity so that the
forward pass returns the pooled representation. Keeping torchvision's module names means a state
dict of ours has the same keys as torchvision's (less `fc.*`).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

ARCHITECTURES: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}
STEMS = ("cifar", "stl", "imagenet")


class ResNetEncoder(ResNet):
    """A ResNet mapping (B, 3, H, W) images to (B, representation_dim) representations.

    Stems (spec section 4):
      - ``cifar``: 3×3 convolution of stride 1, BN, ReLU, no max pool (32×32 stays 32×32);
      - ``stl``: the same followed by a 3×3 max pool of stride 2 (96×96 becomes 48×48);
      - ``imagenet``: torchvision's 7×7 convolution of stride 2, BN, ReLU, 3×3 max pool of stride 2.
    """

    def __init__(self, arch: str = "resnet50", stem: str = "cifar") -> None:
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}"
            )
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {list(STEMS)}")
        block, layers = ARCHITECTURES[arch]
        super().__init__(block, layers)
        if stem in ("cifar", "stl"):
            # Small images lose too much to a stride-2 7×7 convolution; the small stem keeps the
            # first residual stage at full (CIFAR) or half (STL) resolution.
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if stem == "cifar":
            self.maxpool = nn.Identity()
        self.fc = nn.Identity()
        self.arch = arch
        self.stem = stem
        self.representation_dim = 512 * block.expansion

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, representation_dim) representations."""
        return super().forward(x)
