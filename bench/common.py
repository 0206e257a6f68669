"""What every benchmark does at the end: print its table wide enough to read, and keep its numbers as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def report(table: Table, results: object, json_path: str | Path | None) -> None:
    Console(width=200).print(table)
    if json_path is not None:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
