"""The dashboard in a real kernel (nbclient): what a run sends, and what a saved notebook keeps.

Counts messages and outputs, never timings: a short run's dashboard is sent once, finished
(four widget models and one display); a background run's is shown when its cell ends and
its final state is saved once the run is waited for.
"""

from __future__ import annotations

import re
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

SETUP = """
import asyncio, warnings
import ipywidgets
import nbflow as nf
warnings.simplefilter("ignore")

big = nf.Flow("big-short", store=None)
for layer in range(12):
    for i in range(50):
        after = [f"t{layer - 1}_{i}"] if layer else []
        big.task(name=f"t{layer}_{i}", after=after)(lambda: None)

slow = nf.Flow("background", store=None)

@slow.task
async def first():
    await asyncio.sleep(0.3)
    return 1

@slow.task
async def second(first):
    return first + 1
"""

CELLS = [
    SETUP,
    # A short run: its dashboard opens its models and is displayed at the run's end, once.
    "before = set(ipywidgets.Widget.widgets)\n"
    "run = await big.arun(show=True)\n"
    "print(len(set(ipywidgets.Widget.widgets) - before), run.status)",
    # A background run: shown when the cell ends, drawn live, final once waited for.
    "handle = slow.start(show=True)",
    "run = await handle\nprint(run.status)",
]


def _execute() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True).execute()
    return nb


def _displays(cell: Any) -> list[dict[str, Any]]:
    return [o["data"] for o in cell.outputs if o.output_type == "display_data"]


def _status(html: str) -> str:
    found = re.search(r'data-nbflow-status="(\w+)"', html)
    assert found is not None
    return found[1]


def test_dashboards_in_a_kernel_are_sent_once_and_saved_finished() -> None:
    nb = _execute()
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    # 1. The short run: one model, the dashboard (its layout is made once per kernel and
    # shared; a big run draws its Tasks and Timeline tabs when opened).
    short = nb.cells[1]
    opened, status = "".join(o.get("text", "") for o in short.outputs).split()
    assert status == "succeeded"
    assert int(opened) == 1 + 1  # + the kernel's shared layout
    [shown] = _displays(short)  # one display, no skeleton drawn first
    assert _status(shown["text/html"]) == "succeeded"  # the static summary
    assert "600 tasks drawn as 12 groups" in shown["text/html"]
    model = shown["application/vnd.jupyter.widget-view+json"]["model_id"]
    saved = state[model]["state"]
    assert saved["_dom_classes"] == ["nbflow-dashboard"]
    assert state[model]["model_name"] == "AnyModel" and "export default" in saved["_esm"]
    assert "nbflow-node" in saved["_dag"] and saved["_table"] == ""  # drawn when opened

    # 2. The background run: displayed when its cell ended, finished once awaited.
    [background] = _displays(nb.cells[2])
    assert _status(background["text/html"]) == "succeeded"  # updated by `await handle`
    model = background["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert _status(state[model]["state"]["_header"]) == "succeeded"  # the saved state is final
    assert not _displays(nb.cells[3])
