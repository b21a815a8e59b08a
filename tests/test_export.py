"""hubconf.py and models/export.py: a trained encoder out of the repository, into torch.hub and
torchvision."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import ResNetEncoder
from models.export import export_encoder, torchvision_encoder
from utils.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parent.parent


def trained_looking(arch: str, stem: str, width: float = 1.0) -> ResNetEncoder:
    """A seeded encoder whose batch-norm statistics are not the defaults (as after training)."""
    torch.manual_seed(0)
    encoder = ResNetEncoder(arch, stem, width)
    encoder.train()
    with torch.no_grad():
        encoder(torch.randn(8, 3, 32, 32) * 2 + 0.5)
    return encoder.eval()


def write_run(path: Path, dataset: str, encoder: ResNetEncoder) -> Path:
    args = {"dataset": dataset, "arch": encoder.arch, "width": encoder.width, "seed": 0}
    return save_checkpoint(
        {"encoder": encoder.state_dict(), "args": args, "results": [{}], "git": {"hash": "x"}},
        path,
    )


@pytest.mark.parametrize(
    ("dataset", "arch", "stem"),
    [
        ("cifar10", "resnet18", "cifar"),
        ("stl10", "resnet34", "stl"),
        ("imagenet", "resnet18", "imagenet"),
        ("cifar10", "resnet50", "cifar"),
    ],
)
def test_export_loads_strictly_into_torchvision_and_computes_the_same(
    tmp_path, dataset, arch, stem
):
    encoder = trained_looking(arch, stem)
    checkpoint = write_run(tmp_path / "run.pth", dataset, encoder)
    export_encoder(checkpoint, tmp_path / "encoder.pth")
    saved = torch.load(tmp_path / "encoder.pth", weights_only=True)
    assert (saved["arch"], saved["stem"], saved["torchvision"]) == (arch, stem, True)
    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    cifar10 = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2023, 0.1994, 0.2010]}
    assert saved["normalization"] == (cifar10 if dataset == "cifar10" else imagenet)
    model = torchvision_encoder(arch, stem)
    model.load_state_dict(saved["state_dict"], strict=True)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), encoder(x))


def test_export_of_a_narrow_encoder_says_torchvision_cannot_hold_it(tmp_path, capsys):
    from models import export

    checkpoint = write_run(
        tmp_path / "run.pth", "spirograph", trained_looking("resnet18", "cifar", 0.25)
    )
    export.main(export.get_args_parser().parse_args([str(checkpoint), str(tmp_path / "e.pth")]))
    assert "width 0.25 has no torchvision network" in capsys.readouterr().out
    saved = torch.load(tmp_path / "e.pth", weights_only=True)
    assert saved["torchvision"] is False and saved["normalization"] is None
    with pytest.raises(RuntimeError):
        torchvision_encoder("resnet18", "cifar").load_state_dict(saved["state_dict"])
    ResNetEncoder("resnet18", "cifar", 0.25).load_state_dict(saved["state_dict"], strict=True)


def test_hub_loads_the_encoder_beside_other_packages_named_datasets_and_utils(tmp_path):
    """In a fresh process that has imported its own `datasets` and `utils`: the hub encoder, twice,
    leaves them, sys.path and the global generator as they were, and computes what torchvision's
    ResNet computes from the exported file."""
    encoder = trained_looking("resnet18", "cifar")
    checkpoint = write_run(tmp_path / "run.pth", "cifar10", encoder)
    export_encoder(checkpoint, tmp_path / "encoder.pth")
    for name in ("datasets", "utils"):  # as Hugging Face's datasets, or a project's own utils
        (tmp_path / "theirs" / name).mkdir(parents=True)
        (tmp_path / "theirs" / name / "__init__.py").write_text("THEIRS = True\n")
    code = f"""
import sys, torch, torchvision
sys.path.insert(0, {str(tmp_path / "theirs")!r})
import datasets, utils
path_before = list(sys.path)
torch.manual_seed(7)
state = torch.get_rng_state()
for _ in range(2):
    model = torch.hub.load({str(REPO)!r}, "encoder", source="local", checkpoint={str(checkpoint)!r})
assert sys.modules["datasets"] is datasets and sys.modules["utils"] is utils and utils.THEIRS
assert "models" not in sys.modules and sys.path == path_before
assert torch.equal(torch.get_rng_state(), state)
assert not model.training and model.normalization[0] == (0.4914, 0.4822, 0.4465)
saved = torch.load({str(tmp_path / "encoder.pth")!r}, weights_only=True)
tv = torchvision.models.resnet18()
tv.fc, tv.maxpool = torch.nn.Identity(), torch.nn.Identity()
tv.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
tv.eval().load_state_dict(saved["state_dict"])
x = torchvision.transforms.Normalize(**saved["normalization"])(torch.rand(4, 3, 32, 32))
with torch.no_grad():
    assert torch.equal(model(x), tv(x))
print("largest difference", (model(x) - tv(x)).abs().max().item())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "largest difference 0.0" in out.stdout


def test_the_hub_docstring_gives_every_normalisation():
    import hubconf  # what torch.hub.help shows: the entry point's docstring
    from augmentation.normalize import DATASET_STATS

    doc = " ".join(hubconf.encoder.__doc__.split())
    doc = re.sub(r"\d+\.\d+", lambda number: repr(float(number.group())), doc)  # 0.2010: 0.201
    for stats in DATASET_STATS.values():
        if stats is not None:
            mean, std = (", ".join(repr(v) for v in values) for values in stats)
            assert f"mean ({mean}), std ({std})" in doc
    assert "Spirograph images take no normalisation" in doc


def test_export_refuses_to_overwrite_its_checkpoint(tmp_path):
    from models import export
    from utils.cli import UsageError

    checkpoint = write_run(tmp_path / "run.pth", "cifar10", trained_looking("resnet18", "cifar"))
    before = checkpoint.read_bytes()
    with pytest.raises(UsageError, match="is the checkpoint itself"):
        export.main(export.get_args_parser().parse_args([str(checkpoint), str(checkpoint)]))
    assert checkpoint.read_bytes() == before
