"""The docs: README.md a newcomer's page, docs/ the reference, built strictly by MkDocs, with the command-line
reference and the layer and source tables exactly as the code makes them."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 250
CLI_REFERENCE = DOCS / "cli.md"
# typer's own Markdown generator; its command line is what regenerates the page.
CLI_COMMAND = ["-m", "typer", "ganport.cli", "utils", "docs", "--name", "ganport", "--title", "Command-line reference"]


def test_the_docs_build_strictly(tmp_path):
    """Strict: a broken link, a missing anchor or a page outside the nav fails the build."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "export" / "index.html").is_file()


def test_the_command_line_reference_is_generated_from_the_typer_app(tmp_path):
    made = tmp_path / "cli.md"
    result = subprocess.run(
        [sys.executable, *CLI_COMMAND, "--output", str(made)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    regenerate = f"regenerate it: python {' '.join(CLI_COMMAND)} --output docs/cli.md"
    assert CLI_REFERENCE.read_text() == made.read_text(), regenerate


@pytest.mark.parametrize(
    ("marker", "module", "function"),
    [
        ("layers", "ganport.export.layers.verdicts", "markdown_table"),
        ("sources", "ganport.keras_files.load", "sources_table"),
    ],
)
def test_the_export_page_holds_the_layer_and_source_tables_as_the_registries_make_them(marker, module, function):
    made = getattr(importlib.import_module(module), function)()
    page = (DOCS / "export.md").read_text()
    opening = f"<!-- {marker}: python -m {module} -->\n"
    start = page.index(opening) + len(opening)
    assert page[start : page.index(f"<!-- /{marker} -->")] == made, (
        f"regenerate docs/export.md's table: python -m {module}"
    )


def test_the_readme_is_a_short_page_whose_links_lead_somewhere():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < README_MAX_LINES
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links to the docs"
    assert [target for target in local if not (ROOT / target).exists()] == []
