"""Smoke test of the browser harness: live widget updates reach a real JupyterLab page.

``notebooks/smoke.ipynb`` draws three nodes in an ``ipywidgets.HTML`` and restyles them from
a task on the kernel's event loop (pending -> running -> succeeded), then emits the
``#nbflow-finished`` sentinel. Seeing ``running`` proves the states arrived live, while the
cell had long returned, and were not only rendered at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .conftest import NotebookRun

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

TASKS = {"extract", "transform", "load"}
FINISHED = ".widget-html-content #nbflow-finished"


def test_smoke_widget_states_update_live(
    run_notebook: Callable[..., NotebookRun], attribute_recorder: Callable[[str, str], str]
) -> None:
    run = run_notebook(
        "smoke.ipynb", FINISHED, on_page=attribute_recorder("[data-task]", "data-state")
    )
    page = run.page

    seen = {(task, state) for task, state in run.records}
    assert {state for _, state in seen} >= {"running", "succeeded"}, seen
    assert {task for task, state in seen if state == "running"} == TASKS, seen

    final = dict(
        page.eval_on_selector_all(
            "[data-task]", "els => els.map(e => [e.dataset.task, e.dataset.state])"
        )
    )
    assert final == dict.fromkeys(TASKS, "succeeded")
    assert page.get_attribute(FINISHED, "data-nbflow-status") == "succeeded"

    # The kernel must be this test environment's Python, not whatever "python3" elsewhere is.
    kernel_prefix = page.get_attribute(FINISHED, "data-python-prefix")
    assert kernel_prefix is not None
    assert Path(kernel_prefix).resolve() == Path(sys.prefix).resolve()

    assert run.page_errors == []
    assert run.screenshot is not None and run.screenshot.stat().st_size > 0
