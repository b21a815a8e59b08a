"""Each measure's test against a deliberately wrong variant of the measure (docs/evaluation.md).

    python3 -m tools.measure_mutations

For every entry below it copies the working tree to a temporary folder, makes the one edit that
turns the measure into the wrong variant, runs the tests of `tests/test_measures.py` that should
catch it, and prints CAUGHT when they fail (exit status 1 if any variant is not caught).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (what is wrong, file, text replaced, replacement, pytest -k expression of the tests)
VARIANTS = [
    (
        "biased variance over draws",
        "evaluation/variance.py",
        '"conditional_variance": projected.var(dim=0).mean().item(),',
        '"conditional_variance": projected.var(dim=0, correction=0).mean().item(),',
        "test_variance_terms_follow_their_definitions",
    ),
    (
        "conditional variance divided by the across-image spread",
        "evaluation/variance.py",
        '"conditional_variance": projected.var(dim=0).mean().item(),',
        '"conditional_variance": (projected.var(dim=0).mean() / across).item(),',
        "test_variance_terms_follow_their_definitions or fixed_embedding",
    ),
    (
        "theta-only variant redraws the masks",
        "augmentation/views.py",
        "        if fixed_masks:\n            masks = self.draw(",
        "        if False:\n            masks = self.draw(",
        "theta_only_draws or fixed_embedding",
    ),
    (
        "whole-distortion variant holds the masks",
        "evaluation/variance.py",
        '{"theta": True, "distortion": False}',
        '{"theta": True, "distortion": True}',
        "fixed_embedding or theta_only_draws",
    ),
    (
        "authors' computation done right (image-major view)",
        "evaluation/variance.py",
        "z = z.view(draws, b, -1)",
        "z = z.view(b, draws, -1).transpose(0, 1)",
        "authors_computation",
    ),
    (
        "shift jitter with random apply and grayscale",
        "evaluation/shift.py",
        "return views.distort(x, masks=(every, ~every))[0]",
        "return views.distort(x)[0]",
        "shifted_jitter",
    ),
    (
        "shift at s = 0 through the jitter",
        "evaluation/shift.py",
        "    if strength == 0:\n        return views.plain(x)\n",
        "",
        "shifted_jitter or classification_suite",
    ),
    (
        "prefix means divided by the largest M",
        "evaluation/encoding.py",
        "every[p] = (total / p).float()",
        "every[p] = (total / max(passes)).float()",
        "prefix_means",
    ),
    (
        "nuisance views with random apply",
        "evaluation/nuisance.py",
        "return views.distort(cropped, masks=(every, ~every))",
        "return views.distort(cropped)",
        "nuisance_views",
    ),
    (
        "nuisance baseline from the test mean",
        "evaluation/nuisance.py",
        "baseline = ((truth - train_t.double().mean(dim=0)) ** 2).mean(dim=0)",
        "baseline = ((truth - truth.mean(dim=0)) ** 2).mean(dim=0)",
        "predict_the_mean",
    ),
    (
        "label fraction a random subset",
        "evaluation/measures.py",
        "        if info.num_classes is not None:\n            rows = stratified",
        "        if False:\n            rows = stratified",
        "label_fractions",
    ),
    (
        "spirograph shift not cut to valid values",
        "evaluation/shift.py",
        "lo, hi = max(lo, valid[0]), min(hi, valid[1])",
        "pass",
        "shifted_spirograph",
    ),
    (
        "Spirograph shift ignores its bounds",
        "evaluation/shift.py",
        "return SpirographViews(generator=generator, bounds=bounds).augment(params)[0]",
        "return SpirographViews(generator=generator).augment(params)[0]",
        "spirograph_shifts_sweep",
    ),
    (
        "curve subset paired with the first rows' labels",
        "evaluation/measures.py",
        '"subset": (train_y[rows["train"].to(device)], test_y[rows["test"].to(device)]),',
        '"subset": (train_y[: len(rows["train"])], test_y[: len(rows["test"])]),',
        "pairs_each_subset",
    ),
    (
        "authors' signs shared by every column",
        "evaluation/variance.py",
        "signs = torch.randint(0, 2, z.shape[1:], generator=generator).double() * 2 - 1",
        "signs = (torch.randint(0, 2, z.shape[2:], generator=generator).double() * 2 - 1)"
        ".expand(z.shape[1], -1)",
        "authors_computation",
    ),
    (
        "label fraction checked late (after encoding)",
        "evaluation/session.py",
        "        check_label_fractions(args.label_fractions, len(data.probe_train), data.info)\n",
        "",
        "label_fraction_that_leaves",
    ),
]


def main() -> int:
    missed = 0
    for name, path, old, new, tests in VARIANTS:
        with tempfile.TemporaryDirectory() as folder:
            tree = Path(folder) / "tree"
            ignore = shutil.ignore_patterns(".git", "__pycache__", ".venv", "checkpoint")
            shutil.copytree(REPO, tree, ignore=ignore)
            target = tree / path
            text = target.read_text()
            if old not in text:
                print(f"{name}: the code changed; update this variant ({path})")
                missed += 1
                continue
            target.write_text(text.replace(old, new, 1))
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            run = subprocess.run(
                [*command, "tests/test_measures.py", "-k", tests],
                cwd=tree, capture_output=True, text=True,
            )  # fmt: skip
            last = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
            print(f"{name}: {'CAUGHT' if run.returncode else 'NOT CAUGHT'} ({last})", flush=True)
            missed += run.returncode == 0
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
