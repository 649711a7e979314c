"""The live dashboard in a real JupyterLab: states change while the flows run.

``notebooks/dashboard.ipynb`` runs three flows, each shown with its dashboard (see the
notebook's first cell). A MutationObserver records every ``data-state`` a DAG node ever had;
the test waits until the last flow is seen mid-run, takes a picture, waits for it to end,
then checks the final DOM of each dashboard: node states, the status marker, the progress
bar, and one Gantt bar per attempt. One notebook, one page: every page costs ~10 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from .conftest import ARTIFACTS_DIR

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

    from .conftest import NotebookRun

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

BACKGROUND = {"extract", "validate", "transform", "load", "report"}
# One bar per attempt: load fails once (2 bars), transform fans out over 4 elements.
BACKGROUND_BARS = {"extract": 1, "validate": 1, "transform": 4, "load": 2, "report": 1}
FAILING = {"fetch", "parse", "store"}
SHOWCASE = {
    "users": "succeeded",
    "orders": "succeeded",
    "products": "succeeded",
    "enrich": "partial",  # allow_partial: 5 of 6 elements succeeded (issue #22)
    "revenue": "succeeded",
    "forecast": "failed",
    "charts": "upstream_failed",
    "publish": "skipped",
    "archive": "succeeded",
    "notify": "succeeded",
}
SHOWCASE_MID_RUN = '.nbflow-dashboard g.nbflow-node[data-task="enrich"][data-state="running"]'


def dashboard(run: NotebookRun, flow: str) -> Locator:
    """The dashboard widget of ``flow`` (the one containing its status marker)."""
    marker = f'.nbflow-status[data-flow="{flow}"]'
    return run.page.locator(".nbflow-dashboard", has=run.page.locator(marker)).first


def wait_finished(run: NotebookRun, flow: str) -> None:
    done = ":is([data-nbflow-status=succeeded], [data-nbflow-status=failed])"
    marker = f'.nbflow-status[data-flow="{flow}"]{done}'
    run.page.wait_for_selector(marker, state="attached", timeout=60_000)


def node_states(box: Locator) -> dict[str, str]:
    pairs = box.locator("g.nbflow-node").evaluate_all(
        "els => els.map(e => [e.dataset.task, e.dataset.state])"
    )
    return dict(pairs)


def bars(box: Locator) -> list[list[str]]:
    return box.locator("rect.nbflow-bar").evaluate_all(
        "els => els.map(e => [e.dataset.task, e.dataset.attempt, e.dataset.status])"
    )


def progress(box: Locator) -> tuple[str | None, str | None]:
    runbar = box.locator(".nbflow-runbar")
    return runbar.get_attribute("aria-valuenow"), runbar.get_attribute("aria-valuemax")


# Redraws the failed run's Tasks pane from the kernel, as a live update would.
REDRAW_TABLE = """
from ipywidgets.widgets.widget import _instances
[_d] = [w for w in list(_instances.values()) if getattr(w, "run", None) is bad_run]
_d._table += '<p>redrawn</p>'
"""


# The nodes whose name or detail line is elided or overflows, as [task, what] pairs.
LABELS_OVERFLOWING = """els => els.flatMap(g => {
  const box = g.querySelector('.nbflow-box').getBBox(), out = [];
  const counter = g.querySelector('.nbflow-counter');
  for (const t of g.querySelectorAll('.nbflow-name, .nbflow-detail')) {
    const b = t.getBBox(), right = b.x + b.width;
    if (t.textContent.includes('\u2026')) out.push([g.dataset.task, 'cut: ' + t.textContent]);
    if (right > box.x + box.width - 4) out.push([g.dataset.task, 'overflows: ' + t.textContent]);
    if (counter && t.classList.contains('nbflow-detail') && right > counter.getBBox().x - 2)
      out.push([g.dataset.task, 'under the counter: ' + t.textContent]);
  }
  return out;
})"""


def run_in_kernel(page: Page, code: str) -> None:
    """Execute ``code`` in the notebook's kernel (not in a cell) and wait for it to finish."""
    page.evaluate(
        """async (code) => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const reply = await kernel.requestExecute({ code, store_history: false }).done;
            if (reply.content.status !== "ok") throw new Error(reply.content.evalue);
        }""",
        code,
    )


def shoot(box: Locator, name: str, tab: str | None = None) -> None:
    if tab is not None:
        box.get_by_role("tab", name=tab).click()
        box.page.wait_for_timeout(300)
    box.scroll_into_view_if_needed()
    box.screenshot(path=str(ARTIFACTS_DIR / name))


def test_dashboards_update_live_and_end_right(
    run_notebook: Callable[..., NotebookRun], attribute_recorder: Callable[[str, str], str]
) -> None:
    run = run_notebook(
        "dashboard.ipynb",
        SHOWCASE_MID_RUN,
        on_page=attribute_recorder("g.nbflow-node", "data-state"),
        timeout=90,
    )
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    showcase = dashboard(run, "daily-report")
    shoot(showcase, "dashboard_showcase_running.png")
    wait_finished(run, "daily-report")
    records = run.page.evaluate("() => window.__nbflowRecords")

    # 1. The background run: nodes were seen running, then all succeeded.
    seen_running = {task for task, state in records if state == "running"}
    assert seen_running & BACKGROUND, f"no node of the background flow seen running: {records}"
    box = dashboard(run, "etl-demo")
    assert node_states(box) == dict.fromkeys(BACKGROUND, "succeeded")
    assert box.locator(".nbflow-status").get_attribute("data-nbflow-status") == "succeeded"
    assert progress(box) == ("5", "5")
    drawn = bars(box)
    per_task: dict[str, int] = {}
    for task, _, _ in drawn:
        per_task[task.split("[")[0]] = per_task.get(task.split("[")[0], 0) + 1
    assert per_task == BACKGROUND_BARS
    load = sorted((attempt, status) for task, attempt, status in drawn if task == "load")
    assert load == [("1", "failed"), ("2", "succeeded")]

    # 2. The flow built to fail: exactly one failed node, its traceback one click away.
    bad = dashboard(run, "broken-demo")
    assert bad.locator(".nbflow-status").get_attribute("data-nbflow-status") == "failed"
    states = node_states(bad)
    assert set(states) == FAILING
    assert [task for task, state in states.items() if state == "failed"] == ["parse"]
    assert states["fetch"] == "succeeded"
    assert progress(bad) == ("3", "3")

    # 3. Every kind of outcome, drawn live (blocking flow.run) and at the end.
    assert "running" in {state for task, state in records if task == "enrich"}
    assert node_states(showcase) == SHOWCASE
    enrich = showcase.locator("g.nbflow-node[data-task='enrich']")
    assert enrich.locator(".nbflow-counter").text_content() == "5/6"
    # The partial fan-out's failure is seen in the Graph, not only in the Timeline: its node
    # is "partial" (above), its tooltip says what failed...
    failure = "1 of 6 elements failed; first: enrich[4] LookupError: user 4: no profile"
    assert failure in (enrich.locator("title").text_content() or "")
    # ...and the header counts it apart from the successes.
    assert (
        showcase.locator('.nbflow-status [data-chip="partial"]').inner_text().endswith("1 partial")
    )
    assert progress(showcase) == ("10", "10")
    assert len(bars(showcase)) == 14  # orders 2 attempts, enrich 6 elements, 6 tasks once
    assert run.page_errors == []
    # Every label fits its box as the browser measures it: nothing cut with "…", nothing
    # past the border or over the fan-out counter (the README's picture cut
    # "orders · p=10 · 2 tries …", issue #22).
    assert showcase.locator("g.nbflow-node").evaluate_all(LABELS_OVERFLOWING) == []

    # Pictures for review and for the README (docs/img/dashboard.png is a copy of the graph
    # one, dashboard_showcase_graph.png), with the file browser hidden, as a reader's wider
    # notebook would show it.
    run.page.evaluate(
        "() => { window.jupyterapp.commands.execute('application:toggle-left-area'); }"
    )
    run.page.wait_for_timeout(500)
    shoot(showcase, "dashboard_showcase_graph.png")
    shoot(showcase, "dashboard_showcase_timeline.png", tab="Timeline")
    # ...and in the Tasks view: a "partial" chip with the count, the failure in the Error
    # column, and the element's traceback one click away.
    showcase.get_by_role("tab", name="Tasks").click()
    row = showcase.locator('tr.nbflow-row[data-row-task="enrich"]')
    assert row.locator('[data-chip="partial"]').is_visible()
    assert "5/6" in row.inner_text()
    assert row.locator(".nbflow-element-errors").inner_text() == failure
    row.click()
    element_traceback = showcase.locator(
        'tr.nbflow-traceback-row[data-row-task="enrich"] details[open] pre'
    )
    assert "LookupError: user 4: no profile" in element_traceback.inner_text()
    shoot(showcase, "dashboard_showcase_tasks.png")
    shoot(box, "dashboard_background_timeline.png", tab="Timeline")
    # The lane toggle asks the kernel for the Timeline by worker: its lanes become slots.
    lanes = box.locator("text.nbflow-lane")
    assert not any("slot-" in text for text in lanes.all_text_contents())  # lanes by task
    box.get_by_role("radio", name="Lane per worker").click()
    box.locator("text.nbflow-lane", has_text="slot-0").first.wait_for(timeout=10_000)
    assert box.get_by_role("radio", name="Lane per worker").get_attribute("aria-checked") == "true"
    assert len(bars(box)) == sum(BACKGROUND_BARS.values())  # the same attempts, other lanes
    # The keyboard moves between tabs: from Timeline, Home goes to Graph, ArrowLeft wraps.
    box.get_by_role("tab", name="Timeline").press("Home")
    assert box.get_by_role("tab", selected=True).text_content() == "Graph"
    assert box.locator("[role=tabpanel][data-pane=dag]").is_visible()
    box.get_by_role("tab", name="Graph").press("ArrowLeft")
    assert box.get_by_role("tab", selected=True).text_content() == "Timeline"
    shoot(bad, "dashboard_failed_tasks.png", tab="Tasks")
    bad.locator("details.nbflow-traceback summary").first.click()
    traceback = bad.locator("details.nbflow-traceback pre").first.inner_text()
    assert "ValueError: row 17: column 'amount' is missing" in traceback
    assert "nbflow/engine.py" not in traceback  # nbflow's own frames are left out
    # A live redraw of the table keeps the traceback the reader opened open.
    run_in_kernel(bad.page, REDRAW_TABLE)
    bad.locator("[data-pane=table]", has_text="redrawn").wait_for(timeout=10_000)
    assert bad.locator("details.nbflow-traceback[open]").count() == 1
    shoot(bad, "dashboard_failed_traceback.png")
