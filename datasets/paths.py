"""Where datasets live: `dataset-paths.json` in the working directory (spec section 1). Nothing is
downloaded; every problem is a one-line `DatasetError` naming the dataset, path and JSON key."""

from __future__ import annotations

import json
from pathlib import Path

from utils.cli import InputError

PATHS_FILE = "dataset-paths.json"


class DatasetError(InputError):
    """A dataset cannot be read; the message says what is wrong and what to do."""


def dataset_folder(name: str, paths_file: str | Path = PATHS_FILE) -> Path:
    """The folder of dataset ``name`` as set in ``paths_file``; it must exist."""
    paths_file = Path(paths_file)
    hint = f'set "{name}" in {paths_file} (see dataset-paths.example.json)'
    if not paths_file.is_file():
        raise DatasetError(f"{name}: no {paths_file} in {Path.cwd()}; create it and {hint}")
    try:
        paths = json.loads(paths_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"{name}: cannot read {paths_file} ({error}); fix it and {hint}"
        ) from None
    if not isinstance(paths, dict) or not isinstance(paths.get(name), str):
        raise DatasetError(f"{name}: {paths_file} has no string entry for it; {hint}")
    folder = Path(paths[name]).expanduser()
    if not folder.is_absolute():  # relative entries are read from the JSON file's folder
        folder = paths_file.parent / folder
    if not folder.is_dir():
        raise DatasetError(f"{name}: folder {folder} does not exist; {hint}")
    return folder
