"""The shape of the code (STYLE.md points 1 and 14): packages import one way, files stay short."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("augmentation", "datasets", "evaluation", "models", "utils", "study")
# Folders of programs that no package imports: measurements and developer tools.
PROGRAMS = ("benchmarks", "tools")


def sources() -> list[Path]:
    """Every Python file of the project: packages, programs, scripts; not tests or the venv."""
    return sorted(
        path for path in REPO.glob("**/*.py")
        if not any(part.startswith(".") for part in path.relative_to(REPO).parts)
        and path.relative_to(REPO).parts[0] != "tests"
    )  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, set[str]]:
    """For each module of the project, the modules of the project it imports, at any depth of
    the file: ``from a import b`` counts as a.b where a/b.py exists, else as a."""
    modules = {module_name(path): path for path in sources()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            found = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from this module's package, or a parent of it
                    package = name.split(".")[: None if path.name == "__init__.py" else -1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, *([node.module] if node.module else [])])
                found = [f"{base}.{alias.name}".strip(".") for alias in node.names]
                found = [m if m in modules else base for m in found]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            graph[name] |= {m for m in found if m in modules and m != name}
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of any length in ``graph``, or None (depth-first search)."""
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return [*trail, node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, node])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_no_module_imports_one_that_imports_it_back():
    graph = module_imports()
    found = cycle(graph)
    assert found is None, f"import cycle: {' -> '.join(found)}"
    # A cycle is found where there is one.
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    top = {name: {m.split(".")[0] for m in imported} for name, imported in graph.items()}
    packages = {p: set().union(*(top[n] for n in graph if n.split(".")[0] == p)) - {p}
                for p in PACKAGES}  # fmt: skip
    assert cycle(packages) is None
    assert packages["utils"] == set()  # the bottom layer
    # Evaluation sits above the networks and the method, the study above evaluation; nothing
    # imports the measurements or the tools.
    below = {name: imports for name, imports in top.items() if name.split(".")[0] in PACKAGES}
    assert [
        n
        for n, i in below.items()
        if "evaluation" in i and not n.startswith(("study", "evaluation"))
    ] == []
    assert [n for n, i in top.items() if "study" in i and not n.startswith("study")] == []
    assert [
        n for n, i in top.items() if i & set(PROGRAMS) and n.split(".")[0] not in PROGRAMS
    ] == []


def test_files_stay_short():
    """The style guide's limits (STYLE.md point 1), every source folder included."""
    limits = {"invariance_by_gradient.py": 500}
    too_long = []
    for path in sources():
        relative = path.relative_to(REPO)
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


def test_utils_code_knows_nothing_of_the_method():
    """utils/ is infrastructure (STYLE.md point 1): its code names no flag, value or script of
    the method; the training script hands the meter its values and the messages their advice.
    Docstrings and comments may say why a design serves the method."""
    method = (
        "lambda_gp",
        "lambda-gp",
        "--gp-",
        "gp_",
        "penalt",
        "contrastive",
        "clamp",
        "spread",
        "invariance_by_gradient",
    )
    found = []
    for path in sorted((REPO / "utils").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = "" if id(node) in docstrings else node.value
            else:
                text = getattr(node, "id", None) or getattr(node, "attr", None) or ""
                text = text if isinstance(text, str) else ""
            found += [f"{path.name}:{node.lineno} {text!r}" for word in method
                      if word in text.lower()]  # fmt: skip
    assert not found, found
