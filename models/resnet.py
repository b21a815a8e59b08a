"""ResNet encoders without their classifier (spec section 4).

torchvision's `ResNet` with a per-dataset stem and ``fc`` the identity, so state-dict keys are
torchvision's (less ``fc.*``). ``width`` scales every stage's channels (64, 128, 256, 512 at 1);
at 1 the network is built by torchvision's calls in their order, so a seed gives its weights.
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
    """(B, 3, H, W) images -> (B, representation_dim). Stems: ``cifar``, a stride-1 3×3 convolution,
    no max pool (32×32 stays 32×32); ``stl``, the same with the max pool (96×96 to 48×48);
    ``imagenet``, torchvision's."""

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
