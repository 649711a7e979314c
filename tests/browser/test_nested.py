"""Signals, loops and subflows in a real JupyterLab dashboard (``notebooks/nested.ipynb``).

The flow runs in the background; the test waits until its task ``publish`` is drawn
*waiting* for its signal, checks the loop's node (``iteration 3``) and the child run nested,
collapsed, under the subflow task's row in the Tasks tab (it opens to the child's rows, and
stays open through a live redraw), then sends the signal from the kernel and checks the
end: ``publish`` ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from .conftest import ARTIFACTS_DIR
from .test_dashboard import dashboard, node_states, run_in_kernel, shoot

if TYPE_CHECKING:
    from .conftest import NotebookRun

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

WAITING = '.nbflow-dashboard g.nbflow-node[data-task="publish"][data-state="waiting"]'
# Redraws the Tasks pane from the kernel, as a live update would.
REDRAW_TABLE = """
from ipywidgets.widgets.widget import _instances
[_d] = [w for w in list(_instances.values()) if getattr(w, "run", None) is handle.run]
_d._table += '<p>redrawn</p>'
"""


def test_waiting_loop_and_nested_child_run_in_the_dashboard(
    run_notebook: Callable[..., NotebookRun], attribute_recorder: Callable[[str, str], str]
) -> None:
    run = run_notebook(
        "nested.ipynb", WAITING, on_page=attribute_recorder("g.nbflow-node", "data-state")
    )
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    box = dashboard(run, "nested-demo")
    publish = box.locator('g.nbflow-node[data-task="publish"]')
    assert publish.locator(".nbflow-detail").text_content() == "waiting for 'approved'"
    assert node_states(box) == {
        "prepare": "succeeded", "etl": "succeeded", "poll": "succeeded", "publish": "waiting",
    }  # fmt: skip
    poll = box.locator('g.nbflow-node[data-task="poll"] .nbflow-counter')
    assert poll.text_content() == "iteration 3"
    assert box.locator('g.nbflow-node[data-task="etl"] .nbflow-counter').text_content() == "2/2"
    records = run.page.evaluate("() => window.__nbflowRecords")
    assert ("etl", "running") in [tuple(r) for r in records]  # drawn live while the child ran
    shoot(box, "nested_waiting_graph.png")

    # The Tasks tab: publish is waiting; the child run is one collapsed line under etl.
    box.get_by_role("tab", name="Tasks").click()
    row = box.locator('tr.nbflow-row[data-row-task="publish"]')
    row.wait_for(timeout=10_000)
    assert row.locator(".nbflow-chip").get_attribute("data-chip") == "waiting"
    assert "waiting for 'approved'" in row.inner_text()
    nested = box.locator("details.nbflow-subflow")
    assert nested.count() == 1 and nested.get_attribute("data-subflow") == "etl-child"
    assert not nested.evaluate("d => d.open")
    assert "subflow etl-child" in nested.locator("summary").inner_text()
    assert "2/2 done" in nested.locator("summary").inner_text()
    nested.locator("summary").click()
    child_rows = nested.locator("tr.nbflow-row")
    assert child_rows.evaluate_all(
        "els => els.map(e => [e.dataset.rowTask, e.dataset.rowState])"
    ) == [["extract", "succeeded"], ["load", "succeeded"]]
    shoot(box, "nested_child_run_open.png")

    # A live redraw of the table keeps the child run the reader opened open. (The
    # dashboard's own redraw may replace the marked table before the page shows it: the
    # redraw is sent again until the page has shown one, at most five times.)
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    redrawn = box.locator("[data-pane=table]", has_text="redrawn")
    for _ in range(5):
        run_in_kernel(run.page, REDRAW_TABLE)
        with contextlib.suppress(PlaywrightTimeoutError):
            redrawn.wait_for(timeout=3_000)
            break
    redrawn.wait_for(timeout=1_000)
    assert box.locator("details.nbflow-subflow[open]").count() == 1

    # The signal, from the kernel: publish runs.
    run_in_kernel(run.page, 'handle.send("approved", "yes")')
    box.locator('.nbflow-status[data-nbflow-status="succeeded"]').wait_for(timeout=30_000)
    box.get_by_role("tab", name="Tasks").click()
    box.locator('tr.nbflow-row[data-row-task="publish"][data-row-state="succeeded"]').wait_for(
        timeout=10_000
    )
    box.get_by_role("tab", name="Graph").click()
    assert node_states(box)["publish"] == "succeeded"
    assert run.page_errors == []
    shoot(box, "nested_done_tasks.png", tab="Tasks")
