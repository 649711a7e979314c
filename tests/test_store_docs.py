"""docs/durability.md is true: its python blocks run in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

from ipython_cells import Cells

PAGE = Path(__file__).resolve().parents[1] / "docs" / "durability.md"


def test_every_python_block_of_the_durability_guide_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 6
    cells = Cells("docs_durability")  # each block as a notebook cell: its source is known
    for block in blocks:
        cells.run(block)
    assert (tmp_path / "runs.db").exists()
    assert "flow 'etl'" in capsys.readouterr().out
