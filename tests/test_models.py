import pytest
import torch
from torch import nn

from models import ProjectionHead, ResNetEncoder


@pytest.mark.parametrize(
    ("arch", "dim"), [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)]
)
def test_representation_sizes(arch, dim):
    encoder = ResNetEncoder(arch, "cifar")
    assert encoder.representation_dim == dim
    assert not any("fc" in name for name, _ in encoder.named_parameters())
    encoder.eval()
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, dim)


def input_of_first_block(stem: str, side: int) -> tuple[int, ...]:
    encoder = ResNetEncoder("resnet18", stem).eval()
    seen = []
    encoder.layer1.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    with torch.no_grad():
        encoder(torch.rand(1, 3, side, side))
    return seen[0]


def test_cifar_stem_keeps_resolution():
    assert input_of_first_block("cifar", 32) == (1, 64, 32, 32)
    encoder = ResNetEncoder("resnet18", "cifar")
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert isinstance(encoder.maxpool, nn.Identity)


def test_stl_stem_halves_resolution():
    assert input_of_first_block("stl", 96) == (1, 64, 48, 48)
    # Spec section 4: the CIFAR stem, then a 3×3 max pool of stride 2 (not a strided convolution).
    encoder = ResNetEncoder("resnet18", "stl")
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert isinstance(encoder.maxpool, nn.MaxPool2d)
    assert encoder.maxpool.kernel_size == 3 and encoder.maxpool.stride == 2


def test_imagenet_stem_divides_by_four():
    assert input_of_first_block("imagenet", 224) == (1, 64, 56, 56)
    encoder = ResNetEncoder("resnet50", "imagenet")
    assert encoder.conv1.kernel_size == (7, 7) and encoder.conv1.stride == (2, 2)


def test_state_dict_keys_are_torchvisions_without_fc():
    from torchvision.models import resnet50

    ours = set(ResNetEncoder("resnet50", "imagenet").state_dict())
    theirs = {k for k in resnet50().state_dict() if not k.startswith("fc.")}
    assert ours == theirs


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="architecture"):
        ResNetEncoder("resnet101")
    with pytest.raises(ValueError, match="stem"):
        ResNetEncoder("resnet18", "mnist")


@pytest.mark.parametrize("dim", [512, 2048])
def test_projection_head_layout(dim):
    head = ProjectionHead(dim)
    # Spec section 4, in order: Linear → BatchNorm1d → ReLU → Linear → BatchNorm1d.
    kinds = [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d]
    assert [type(m) for m in head] == kinds
    linears = [m for m in head if isinstance(m, nn.Linear)]
    norms = [m for m in head if isinstance(m, nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [(dim, dim), (dim, 128)]
    assert all(m.bias is None for m in linears)
    assert norms[0].affine and not norms[1].affine
    z = head(torch.randn(6, dim))
    assert z.shape == (6, 128)
    # Train-mode output of the last, affine-free BN is standardised per feature.
    torch.testing.assert_close(z.mean(0), torch.zeros(128), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stem", ["cifar", "stl", "imagenet"])
def test_full_width_builds_the_same_weights_as_before_width_existed(stem):
    """At width 1 the seeded weights are those of the construction before `--width` (torchvision's
    ResNet, then the small stem's convolution re-made and initialised): old runs repeat."""
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(3)
    reference = ResNet(BasicBlock, [2, 2, 2, 2])
    if stem != "imagenet":
        reference.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(reference.conv1.weight, mode="fan_out", nonlinearity="relu")
    torch.manual_seed(3)
    ours = ResNetEncoder("resnet18", stem).state_dict()
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    assert ours.keys() == expected.keys()
    assert all(torch.equal(ours[k], expected[k]) for k in ours)


@pytest.mark.parametrize(("arch", "stem"), [("resnet18", "cifar"), ("resnet50", "imagenet")])
def test_width_scales_every_stage(arch, stem):
    encoder = ResNetEncoder(arch, stem, width=0.25).eval()
    expansion = 4 if arch == "resnet50" else 1
    assert encoder.representation_dim == 128 * expansion
    assert encoder.conv1.out_channels == encoder.bn1.num_features == 16
    stages = [encoder.layer1, encoder.layer2, encoder.layer3, encoder.layer4]
    assert [stage[-1].conv1.in_channels for stage in stages] == [
        c * expansion for c in (16, 32, 64, 128)
    ]
    side = 224 if stem == "imagenet" else 32
    with torch.no_grad():
        assert encoder(torch.rand(2, 3, side, side)).shape == (2, 128 * expansion)
    # A quarter of the channels: about a sixteenth of the weights.
    full = sum(p.numel() for p in ResNetEncoder(arch, stem).parameters())
    assert 1 / 20 < sum(p.numel() for p in encoder.parameters()) / full < 1 / 12
    with pytest.raises(ValueError, match="width"):
        ResNetEncoder(arch, stem, width=0.001)
