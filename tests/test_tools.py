"""The developer tools (tools/): the checkpoint comparison behind every "same weights" claim and
the GPU check's refusal on a machine without CUDA."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from inprocess import run_script


def test_compare_checkpoints_finds_one_changed_bit():
    from tools.compare_checkpoints import compare

    def state(weight, loss=1.0, seconds=3.0):
        return {
            "encoder": {"w": weight},
            "head": {"v": torch.ones(2)},
            "results": [{"epoch": 0, "loss": loss, "time_s": seconds}],
        }

    weight = torch.rand(5)
    nudged = weight.clone()
    nudged[2] = torch.nextafter(nudged[2], torch.tensor(2.0))
    assert compare(state(weight), state(weight.clone(), seconds=9.0)) == (2, 2, True)
    assert compare(state(weight), state(nudged)) == (1, 2, True)
    assert compare(state(weight), state(weight, loss=1.5)) == (2, 2, False)


def test_compare_checkpoints_exit_status_and_one_line_errors(tmp_path):
    from utils.checkpoint import save_checkpoint

    def write(name, weight):
        state = {"encoder": {"w": weight}, "head": {}, "results": [{"loss": 1.0, "time_s": 1}]}
        return str(save_checkpoint(state, tmp_path / name))

    a, b = write("a.pth", torch.ones(3)), write("b.pth", torch.ones(3))
    c = write("c.pth", torch.tensor([1.0, 1.0, 2.0]))
    encoder_only = str(save_checkpoint({"encoder": {"w": torch.ones(3)}}, tmp_path / "e.pth"))

    def status(*files):  # the command line, in this process (tests/inprocess.py)
        out = run_script("tools.compare_checkpoints", tmp_path, *files, entry="verdict")
        return out.returncode, out.stdout + out.stderr

    assert status(a, b)[0] == 0 and "1/1 encoder and head tensors" in status(a, b)[1]
    assert status(a, c)[0] == 1
    for bad in ([a, str(tmp_path / "missing.pth")], [a, encoder_only]):
        code, text = status(*bad)
        assert code == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_gpu_check_refuses_in_one_line_without_cuda_and_creates_nothing(tmp_path):
    repo = Path(__file__).resolve().parent.parent
    before = sorted(p.name for p in repo.iterdir())
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    script = subprocess.run(
        ["bash", "tools/gpu_check.sh", "/nonexistent"], cwd=repo,
        env={**env, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert script.returncode == 2 and script.stdout == ""
    assert script.stderr.splitlines() == [
        f"gpu-check: {sys.executable} sees no CUDA GPU (or has no torch); run this on a GPU machine"
    ]
    target = subprocess.run(
        ["make", "-s", "gpu-check", f"PYTHON={sys.executable}", "CIFAR=/nonexistent"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert target.returncode != 0 and "sees no CUDA GPU" in target.stderr
    assert sorted(p.name for p in repo.iterdir()) == before and not any(tmp_path.iterdir())
