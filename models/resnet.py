"""ResNet encoders without their classifier (spec section 4).

The networks are torchvision's own `ResNet` with its residual blocks; only the stem differs
between datasets, and the final fully connected layer is replaced by the identity so that the
forward pass returns the pooled representation. Keeping torchvision's module names means a state
dict of ours has the same keys as torchvision's (less `fc.*`).

``width`` scales every stage's channel count (64, 128, 256, 512 at 1), a compute reduction for
small-budget runs; at 1 the network is torchvision's, built by the same calls in the same order,
so a fixed seed gives the same weights as before the option existed.
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

    def __init__(self, arch: str = "resnet50", stem: str = "cifar", width: float = 1.0) -> None:
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}"
            )
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {list(STEMS)}")
        if not width > 0 or round(64 * width) < 1:
            raise ValueError(f"width must leave the first stage at least one channel, got {width}")
        block, layers = ARCHITECTURES[arch]
        self.width = width
        super().__init__(block, layers)
        stem_channels = self.channels(64)
        if stem in ("cifar", "stl"):
            # Small images lose too much to a stride-2 7×7 convolution; the small stem keeps the
            # first residual stage at full (CIFAR) or half (STL) resolution.
            self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=3, stride=1, padding=1, bias=False)
        elif width != 1:
            self.conv1 = nn.Conv2d(3, stem_channels, kernel_size=7, stride=2, padding=3, bias=False)
        if stem in ("cifar", "stl") or width != 1:
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if width != 1:
            self.bn1 = nn.BatchNorm2d(stem_channels)
        if stem == "cifar":
            self.maxpool = nn.Identity()
        self.fc = nn.Identity()
        self.arch = arch
        self.stem = stem
        self.representation_dim = self.channels(512) * block.expansion

    def channels(self, planes: int) -> int:
        """A stage's channel count at this network's width."""
        return max(1, round(planes * self.width))

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        # torchvision's ResNet calls this once per stage with 64, 128, 256 and 512 planes after
        # setting its running channel count to the stem's 64; scale both.
        if planes == 64:
            self.inplanes = self.channels(64)
        return super()._make_layer(block, self.channels(planes), blocks, stride, dilate)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) images -> (B, representation_dim) representations."""
        return super().forward(x)
