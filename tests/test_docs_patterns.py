"""The pattern and extension guides run as written: every python block, in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ipython_cells import Cells

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("page", ["patterns.md", "extending.md", "reuse.md", "observing.md"])
def test_every_python_block_runs(page, tmp_path, monkeypatch):
    path = DOCS / page
    if not path.exists():
        pytest.skip(f"{page} not written yet")
    monkeypatch.chdir(tmp_path)
    cells = Cells(f"docs_{page.replace('.', '_')}")  # each block a notebook cell
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    assert blocks, f"{page} has no python examples"
    for block in blocks:
        cells.run(block)


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (lower case, punctuation dropped)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text)


def test_the_catalogue_grades_every_workflow_pattern_and_its_links_resolve():
    text = (DOCS / "patterns.md").read_text()
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", text, re.M)
    assert [int(r[0]) for r in rows] == list(range(1, 44))  # WCP-1 .. WCP-43, once each
    assert {r[4].strip() for r in rows} <= {"+", "+/-", "-"}
    anchors = {
        page: {_slug(h) for h in re.findall(r"^#+ (.+)$", (DOCS / page).read_text(), re.M)}
        for page in ("patterns.md", "concepts.md")
    }
    for number, _, _, example, grade in rows:
        for page, anchor in re.findall(r"\]\(([a-z-]*\.md)?#([^)]+)\)", example):
            assert anchor in anchors[page or "patterns.md"], (number, anchor)
        assert ("—" in example) == (grade.strip() == "-") or number in {"8", "22"}, number


def test_the_catalogue_summary_counts_what_the_table_grades():
    text = (DOCS / "patterns.md").read_text()
    rows = re.findall(r"^\| (\d+) \| [^|]+ \| [^|]+ \| [^|]+ \| ([^|]+) \|$", text, re.M)
    grades = [grade.strip() for _, grade in rows]
    summary = re.search(
        r"That is (\d+) patterns with direct support, (\d+) with a workaround and (\d+) without",
        text,
    )
    assert summary is not None
    counted = (grades.count("+"), grades.count("+/-"), grades.count("-"))
    assert tuple(map(int, summary.groups())) == counted
