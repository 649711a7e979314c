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
