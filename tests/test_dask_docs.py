"""docs/dask.md is true: its ``python`` blocks run in order, in one namespace, on real clusters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "dask.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.dask
@pytest.mark.timeout(240)
def test_dask_page_python_blocks_run_in_order(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = PYTHON_BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 8, "docs/dask.md should teach with runnable examples"
    namespace: dict[str, object] = {"__name__": "docs_dask"}
    try:
        for number, block in enumerate(blocks, 1):
            exec(compile(block, f"docs/dask.md block {number}", "exec"), namespace)  # our docs
    finally:
        for name in ("executor", "scratch", "shared", "binder", "remote"):
            close = getattr(namespace.get(name), "close", None)
            if close is not None:
                close()
