"""What every benchmark does at the end: print its table wide enough to read, and keep its numbers as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPOSITORY = Path(__file__).resolve().parent.parent


def report(table: Table, results: object, json_path: str | Path | None) -> None:
    Console(width=200).print(table)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(_relative_paths(results), indent=2) + "\n")


def _relative_paths(value: object) -> object:
    """Paths inside the repository as relative ones, so a stored result reads the same on every clone."""
    if isinstance(value, dict):
        return {key: _relative_paths(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_relative_paths(item) for item in value]
    if isinstance(value, str) and value.startswith(f"{REPOSITORY}/"):
        return str(Path(value).relative_to(REPOSITORY))
    return value
