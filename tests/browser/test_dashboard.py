"""The live dashboard in a real JupyterLab: states change while the flow runs.

``notebooks/dashboard.ipynb`` starts a flow in the background with ``flow.start(show=True)``
(tasks sleep, so they are seen ``running``; ``load`` fails once and is retried), awaits it,
then runs a flow built to fail with ``flow.run(show=True)``. A MutationObserver records
every ``data-state`` a DAG node ever had; the test then checks the final DOM of each
dashboard: node states, the status marker, the progress bar and one Gantt bar per attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from .conftest import ARTIFACTS_DIR

if TYPE_CHECKING:
    from playwright.sync_api import Locator

    from .conftest import NotebookRun

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

GOOD_TASKS = {"extract", "validate", "transform", "load", "report"}
BAD_TASKS = {"fetch", "parse", "store"}
# One bar per attempt: load fails once (2 bars), transform fans out over 4 elements.
GOOD_BARS = {"extract": 1, "validate": 1, "transform": 4, "load": 2, "report": 1}
FINISHED = '.nbflow-status[data-flow="broken-demo"]:not([data-nbflow-status="running"])'


def dashboard(run: NotebookRun, flow: str) -> Locator:
    """The dashboard widget of ``flow`` (the one containing its status marker)."""
    marker = f'.nbflow-status[data-flow="{flow}"]'
    return run.page.locator(".nbflow-dashboard", has=run.page.locator(marker)).first


def node_states(box: Locator) -> dict[str, str]:
    pairs = box.locator("g.nbflow-node").evaluate_all(
        "els => els.map(e => [e.dataset.task, e.dataset.state])"
    )
    return dict(pairs)


def test_dashboard_nodes_seen_running_then_all_succeeded(
    run_notebook: Callable[..., NotebookRun], attribute_recorder: Callable[[str, str], str]
) -> None:
    run = run_notebook(
        "dashboard.ipynb",
        FINISHED,
        on_page=attribute_recorder("g.nbflow-node", "data-state"),
        timeout=90,
    )
    seen = {(task, state) for task, state in run.records}
    running = {task for task, state in seen if state == "running"}
    assert running & GOOD_TASKS, f"no node of the background flow was seen running: {seen}"

    good = dashboard(run, "etl-demo")
    assert node_states(good) == dict.fromkeys(GOOD_TASKS, "succeeded")
    status = good.locator(".nbflow-status")
    assert status.get_attribute("data-nbflow-status") == "succeeded"

    progress = good.locator(".nbflow-runbar")
    assert progress.get_attribute("aria-valuenow") == progress.get_attribute("aria-valuemax")
    assert progress.get_attribute("aria-valuemax") == str(len(GOOD_TASKS))

    bars = good.locator("rect.nbflow-bar").evaluate_all(
        "els => els.map(e => [e.dataset.task, e.dataset.attempt, e.dataset.status])"
    )
    per_task: dict[str, int] = {}
    for task, _, _ in bars:
        base = task.split("[")[0]
        per_task[base] = per_task.get(base, 0) + 1
    assert per_task == GOOD_BARS
    load = sorted((attempt, status) for task, attempt, status in bars if task == "load")
    assert load == [("1", "failed"), ("2", "succeeded")]

    bad = dashboard(run, "broken-demo")
    assert bad.locator(".nbflow-status").get_attribute("data-nbflow-status") == "failed"
    states = node_states(bad)
    assert set(states) == BAD_TASKS
    assert [task for task, state in states.items() if state == "failed"] == ["parse"]
    assert states["fetch"] == "succeeded"
    assert run.page_errors == []

    _screenshots(run, good, bad)


def _screenshots(run: NotebookRun, good: Locator, bad: Locator) -> None:
    """Crops of each dashboard and of its other tabs, for the README and for review."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    good.scroll_into_view_if_needed()
    good.screenshot(path=str(ARTIFACTS_DIR / "dashboard_graph.png"))
    for title, name in (("Timeline", "dashboard_timeline.png"), ("Tasks", "dashboard_tasks.png")):
        good.get_by_role("tab", name=title).click()
        run.page.wait_for_timeout(300)
        good.screenshot(path=str(ARTIFACTS_DIR / name))
    bad.scroll_into_view_if_needed()
    bad.get_by_role("tab", name="Tasks").click()
    run.page.wait_for_timeout(300)
    bad.locator("details.nbflow-traceback summary").first.click()
    bad.screenshot(path=str(ARTIFACTS_DIR / "dashboard_failed_traceback.png"))
    assert bad.locator("details.nbflow-traceback pre").first.inner_text().count("ValueError")
