"""The teaching notebooks render their dashboards in a real JupyterLab (issue 8).

The quickstart is opened with its stored outputs cleared (so that nothing on the page comes
from a previous run), all its cells are run in headless Chromium, and the test checks what a
reader sees: both dashboards reach ``succeeded``, every node of each graph is green, the nodes
were seen ``running`` while the flow ran, the replay of the first run (``nf.replay``) shows it
finished with its slider at the end, and the page raised no error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .conftest import REPO_ROOT

if TYPE_CHECKING:
    from .conftest import NotebookRun

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

QUICKSTART = REPO_ROOT / "notebooks" / "01-quickstart.ipynb"
FIRST_RUN = {"users", "orders", "prices", "revenue", "report"}
# The solution adds `best_customer` and runs the flow again with show=True: two dashboards.
SECOND_RUN = FIRST_RUN | {"best_customer"}
# The live dashboards of the quickstart's two runs (not the replay of the first one).
LIVE = ".nbflow-dashboard:not(:has(.nbflow-replay))"
STATUS = '.nbflow-status[data-flow="quickstart"]'
BOTH_DONE = f':nth-match({LIVE} {STATUS}[data-nbflow-status="succeeded"], 2)'
REPLAY = ".nbflow-dashboard:has(.nbflow-replay)"


def without_outputs(source: Path, target_dir: Path) -> Path:
    """A copy of ``source`` with no outputs and no saved widget state."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    notebook["metadata"].pop("widgets", None)
    target = target_dir / source.name
    target.write_text(json.dumps(notebook), encoding="utf-8")
    return target


def test_quickstart_dashboards_render_live_and_finish_green(
    run_notebook: Callable[..., NotebookRun],
    attribute_recorder: Callable[[str, str], str],
    tmp_path: Path,
) -> None:
    run = run_notebook(
        without_outputs(QUICKSTART, tmp_path),
        BOTH_DONE,
        on_page=attribute_recorder("g.nbflow-node", "data-state"),
        timeout=90,
    )
    page = run.page
    dashboards = page.locator(LIVE, has=page.locator(STATUS))
    assert dashboards.count() == 2

    graphs = [
        dict(
            dashboards.nth(i)
            .locator("g.nbflow-node")
            .evaluate_all("els => els.map(e => [e.dataset.task, e.dataset.state])")
        )
        for i in range(2)
    ]
    assert graphs == [dict.fromkeys(FIRST_RUN, "succeeded"), dict.fromkeys(SECOND_RUN, "succeeded")]

    seen_running = {task for task, state in run.records if state == "running"}
    assert seen_running & FIRST_RUN, f"no node was seen running: {run.records}"
    # The replay of the first run (between the two) shows it finished, slider at the end.
    replay = page.locator(REPLAY, has=page.locator(STATUS))
    assert replay.count() == 1
    nodes = replay.locator("g.nbflow-node").evaluate_all(
        "els => els.map(e => [e.dataset.task, e.dataset.state])"
    )
    assert dict(nodes) == dict.fromkeys(FIRST_RUN, "succeeded")
    slider = replay.locator("input.nbflow-replay-slider")
    end = float(slider.get_attribute("max") or 0)
    assert end > 0 and abs(float(slider.input_value()) - end) < 1e-3 * end
    assert run.page_errors == []
