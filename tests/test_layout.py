"""The shape of the code (STYLE.md points 1 and 14): packages import one way, files stay short."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("augmentation", "datasets", "evaluation", "models", "utils")


def package_imports() -> dict[str, set[str]]:
    """For each package, the other packages its modules import (at any depth of the file)."""
    graph: dict[str, set[str]] = {name: set() for name in PACKAGES}
    for package in PACKAGES:
        for path in (REPO / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                for name in names:
                    top = name.split(".")[0]
                    if top in PACKAGES and top != package:
                        graph[package].add(top)
    return graph


def test_no_package_imports_one_that_imports_it_back():
    graph = package_imports()
    # Depth-first search for a cycle of any length.
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for package in PACKAGES:
        if package not in state:
            visit(package, [])
    assert graph["utils"] == set()  # the bottom layer
    # Evaluation sits above the networks and the method: nothing below imports it.
    assert [name for name in PACKAGES if "evaluation" in graph[name]] == []


def test_files_stay_short():
    limits = {"invariance_by_gradient.py": 500}
    too_long = []
    for path in REPO.glob("**/*.py"):
        relative = path.relative_to(REPO)
        if relative.parts[0] in ("tests", "benchmarks", ".venv") or relative.parts[0].startswith(
            "."
        ):
            continue
        lines = len(path.read_text().splitlines())
        if lines > limits.get(str(relative), 400):
            too_long.append(f"{relative}: {lines}")
    assert not too_long
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


def test_git_ignores_nothing_under_docs():
    """The records and pictures the README cites live under docs/ and must reach git: an ignore
    pattern meant for the top-level results/ must not match docs/results/."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["docs/results/spirograph-simclr-seed0.json", "docs/results.md", "docs/figure.png"]
    checked = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True
    )
    assert checked.returncode == 1, f"git would ignore: {checked.stdout.split()}"
    # The pattern still keeps what it was for out of git.
    assert subprocess.run(["git", "check-ignore", "-q", "results/x.json"], cwd=REPO).returncode == 0
