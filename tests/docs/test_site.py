"""The documentation site builds with ``mkdocs build --strict``, and every program in
``docs/examples/`` runs and is shown on some page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
README = ROOT / "README.md"
#: The line after which a docs program checks itself; the README shows what precedes it.
CHECKS = '\n\nif __name__ == "__main__":'


def test_site_builds_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file()
    assert (tmp_path / "api" / "index.html").is_file()


@pytest.mark.parametrize("program", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_docs_example_runs(program: Path) -> None:
    """Each program checks its own behaviour (with chanlite.testing) and exits 0."""
    result = subprocess.run(
        [sys.executable, str(program)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("program", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_docs_example_is_shown(program: Path) -> None:
    """A page includes the program through a snippet, or the README shows it verbatim,
    so readers see the tested code."""
    include = f'--8<-- "docs/examples/{program.name}"'
    pages = [page for page in DOCS.glob("*.md") if include in page.read_text()]
    shown = program.read_text().split(CHECKS)[0].strip()
    if f"```python\n{shown}\n```" in README.read_text():
        pages.append(README)
    assert pages, f"no page under docs/ includes {program.name} ({include})"


def test_readme_links_resolve() -> None:
    """Every relative link of the README names a file of the repository."""
    targets = re.findall(r"\]\((?!https?://)([^)#]+)", README.read_text())
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README links to missing files: {missing}"
