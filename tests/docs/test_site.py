"""The documentation site builds with ``mkdocs build --strict``, and every program in
``docs/examples/`` runs and is shown on some page.

A page shows a program as a fenced ``python`` block right after an HTML comment that
names the file, ``<!-- docs/examples/NAME.py -->``, so the Markdown reads as it renders;
the block is the file's text, which these tests hold to the file.
"""

from __future__ import annotations

import difflib
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
PAGES = sorted(DOCS.rglob("*.md"))
#: The line after which a docs program checks itself; the README shows what precedes it.
CHECKS = '\n\nif __name__ == "__main__":'
#: The comment that names the program a page shows in the fenced block on the next line.
SOURCE = re.compile(r"^<!-- (docs/examples/\S+) -->\n", re.MULTILINE)
FENCE = "```"


def shown_programs() -> list[tuple[Path, str, str | None]]:
    """Each block a page or the README shows from docs/examples/: (page, file, block's
    text), where the text is None when no fenced python block follows the comment."""
    shown = []
    for page in [*PAGES, README]:
        text = page.read_text()
        for match in SOURCE.finditer(text):
            rest = text[match.end() :]
            opening = f"{FENCE}python\n"
            end = rest.find(f"\n{FENCE}\n")
            block = rest[len(opening) : end] if rest.startswith(opening) and end >= 0 else None
            shown.append((page, match[1], block))
    return shown


SHOWN = shown_programs()


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
    """Each program runs and exits 0; most check their own behaviour (with
    chanlite.testing) when run. embedding_starlette, embedding_mount and migrating_chat
    hold no checks, so that they are served on the base install without the testing
    extra: test_served_examples.py checks them."""
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
    """A page shows the program in a block named by its source comment, or the README
    shows it verbatim, so readers see the tested code."""
    name = f"docs/examples/{program.name}"
    pages = [page for page, source, _ in SHOWN if source == name]
    shown = program.read_text().split(CHECKS)[0].strip()
    if f"{FENCE}python\n{shown}\n{FENCE}" in README.read_text():
        pages.append(README)
    assert pages, f"no page under docs/ shows {program.name} (after <!-- {name} -->)"


@pytest.mark.parametrize(
    ("page", "source", "block"),
    SHOWN,
    ids=[f"{page.stem}-{Path(source).stem}" for page, source, _ in SHOWN],
)
def test_shown_block_is_the_program(page: Path, source: str, block: str | None) -> None:
    """The block after ``<!-- docs/examples/NAME.py -->`` is exactly that file, so a
    page and the program it shows cannot drift apart."""
    where = f"{page.relative_to(ROOT)} shows {source}"
    assert (ROOT / source).is_file(), f"{where}, which does not exist"
    assert block is not None, f"{where}, but no {FENCE}python block follows its comment"
    program = (ROOT / source).read_text().rstrip("\n")
    diff = "\n".join(
        difflib.unified_diff(
            program.splitlines(),
            block.splitlines(),
            source,
            str(page.relative_to(ROOT)),
            lineterm="",
        )
    )
    assert block == program, f"{where}, and the block differs from the file:\n{diff}"


def test_pages_include_no_snippets() -> None:
    """No page leaves an include for a tool to expand: the Markdown shows the code
    itself, as read on a code host or in an editor."""
    including = [
        page.relative_to(ROOT) for page in [*PAGES, README] if "--8<--" in page.read_text()
    ]
    assert not including, f"pages with a --8<-- include: {including}"


def test_readme_links_resolve() -> None:
    """Every relative link of the README names a file of the repository."""
    targets = re.findall(r"\]\((?!https?://)([^)#]+)", README.read_text())
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert not missing, f"README links to missing files: {missing}"
