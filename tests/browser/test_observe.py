"""Logs, progress and replay in a real JupyterLab (``notebooks/observe.ipynb``).

- A task's log appears under its row in the Tasks view while the task runs, and grows.
- A task's progress bar advances on its node in the Graph while it runs.
- A replay's time slider moves the states back and forth; Play moves the slider.

The live flow runs in the background of the kernel (``flow.start(show=True)``), so the
kernel is free to answer the page (opening a log asks it to draw the log) while it runs.
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

LIVE_RUNNING = '.nbflow-status[data-flow="observe-live"][data-nbflow-status="running"]'


def dashboard(run: NotebookRun, flow: str) -> Locator:
    marker = run.page.locator(f'.nbflow-status[data-flow="{flow}"]')
    return run.page.locator(".nbflow-dashboard", has=marker).first


def node_states(box: Locator) -> dict[str, str]:
    pairs = box.locator("g.nbflow-node").evaluate_all(
        "els => els.map(e => [e.dataset.task, e.dataset.state])"
    )
    return dict(pairs)


def still_running(box: Locator) -> bool:
    status = box.locator(".nbflow-status").get_attribute("data-nbflow-status")
    return status == "running"


def test_logs_progress_and_replay_in_jupyterlab(
    run_notebook: Callable[..., NotebookRun], attribute_recorder: Callable[[str, str], str]
) -> None:
    run = run_notebook(
        "observe.ipynb",
        LIVE_RUNNING,
        on_page=attribute_recorder("g.nbflow-node", "data-progress"),
        timeout=90,
    )
    page = run.page
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    live = dashboard(run, "observe-live")

    # 1. Progress: crunch's node carries a bar that advances while it runs.
    page.wait_for_function(
        """() => (window.__nbflowRecords || []).filter(([t]) => t === 'crunch').length >= 3""",
        timeout=30_000,
    )
    assert still_running(live)
    values = [
        float(v) for task, v in page.evaluate("() => window.__nbflowRecords") if task == "crunch"
    ]
    assert values == sorted(values) and values[-1] > values[0], values
    node = live.locator('g.nbflow-node[data-task="crunch"]')
    assert node.get_attribute("data-state") == "running"
    bar, track = node.locator("rect.nbflow-progress"), node.locator("rect.nbflow-track")
    assert 0 < float(bar.get_attribute("width") or 0) < float(track.get_attribute("width") or 0)
    live.scroll_into_view_if_needed()
    live.screenshot(path=str(ARTIFACTS_DIR / "observe_progress.png"))

    # 2. Logs: chatty's row in the Tasks view opens to its log, which grows as it runs.
    live.get_by_role("tab", name="Tasks").click()
    row = live.locator('tr.nbflow-row[data-row-task="chatty"]')
    row.wait_for(timeout=10_000)
    live.locator('tr.nbflow-log-row[data-row-task="chatty"]').wait_for(timeout=10_000)
    row.click()  # a click on the row opens the log under it
    lines = live.locator('details.nbflow-log[data-task="chatty"] .nbflow-log-line')
    lines.first.wait_for(timeout=15_000)
    first = lines.count()
    assert row.get_attribute("data-row-state") == "running" and still_running(live)
    assert lines.first.inner_text().endswith("chatty line 0")
    page.wait_for_function(
        """(n) => document.querySelectorAll(
              'details.nbflow-log[data-task="chatty"] .nbflow-log-line').length > n""",
        arg=first + 2,
        timeout=15_000,
    )
    assert still_running(live)  # the lines came in while the task ran
    assert live.locator('details.nbflow-log[data-task="chatty"][open]').count() == 1
    live.screenshot(path=str(ARTIFACTS_DIR / "observe_log.png"))

    # 3. Replay: the slider moves the states back and forth.
    replay = dashboard(run, "observe-replay")
    replay.scroll_into_view_if_needed()
    slider = replay.locator("input.nbflow-replay-slider")
    assert node_states(replay) == dict.fromkeys(["extract", "transform", "load"], "succeeded")
    end = float(slider.get_attribute("max") or 0)
    assert 0.8 < end < 5

    def move_to(fraction: float) -> None:
        slider.evaluate(
            """(el, f) => { el.value = String(f * Number(el.max));
                            el.dispatchEvent(new Event('input', {bubbles: true})); }""",
            fraction,
        )

    def wait_states(wanted: dict[str, str]) -> None:
        page.wait_for_function(
            """([sel, wanted]) => {
                const box = [...document.querySelectorAll('.nbflow-dashboard')].find(
                  (d) => d.querySelector(sel));
                const seen = Object.fromEntries([...box.querySelectorAll('g.nbflow-node')]
                  .map((g) => [g.dataset.task, g.dataset.state]));
                return Object.entries(wanted).every(([t, s]) => seen[t] === s);
            }""",
            arg=['.nbflow-status[data-flow="observe-replay"]', wanted],
            timeout=10_000,
        )

    move_to(0.5)  # transform runs in the middle third
    wait_states({"extract": "succeeded", "transform": "running", "load": "pending"})
    replay.screenshot(path=str(ARTIFACTS_DIR / "observe_replay_middle.png"))
    move_to(0.1)  # back: extract runs
    wait_states({"extract": "running", "transform": "pending", "load": "pending"})
    move_to(1.0)  # forth: all done
    wait_states({"extract": "succeeded", "transform": "succeeded", "load": "succeeded"})
    assert replay.locator(".nbflow-status").get_attribute("data-nbflow-status") == "succeeded"

    # Play: from the end it starts again, and the kernel moves the slider on.
    play = replay.locator("button.nbflow-replay-play")
    play.click()
    page.wait_for_function(
        """() => document.querySelector('button.nbflow-replay-play')
                   .getAttribute('aria-pressed') === 'true'""",
        timeout=10_000,
    )
    bar = replay.locator(".nbflow-replay")
    page.wait_for_timeout(1500)
    moved = float(bar.get_attribute("data-position") or 0)
    assert 0 < moved < end
    play.click()  # pause
    page.wait_for_function(
        """() => document.querySelector('button.nbflow-replay-play')
                   .getAttribute('aria-pressed') === 'false'""",
        timeout=10_000,
    )
    assert run.page_errors == []
