"""The pattern and extension guides run as written: every python block, in order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("page", ["patterns.md", "extending.md"])
def test_every_python_block_runs(page, tmp_path, monkeypatch):
    path = DOCS / page
    if not path.exists():
        pytest.skip(f"{page} not written yet")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('.', '_')}"}
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    assert blocks, f"{page} has no python examples"
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page} block {number}", "exec"), namespace)  # our own docs
