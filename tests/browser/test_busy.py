"""JupyterLab's kernel status during a blocking ``flow.run(show=True)`` cell (#19 item 7).

``notebooks/busy.ipynb`` runs a six-step flow twice, each run blocking its cell for about
three seconds while its dashboard updates. In the page, one time-ordered log records every
status JupyterLab gives the kernel (the kernel connection's ``statusChanged`` signal, which
drives the status bar, the toolbar's indicator and the tab's icon), every status message
the kernel sent with the request it answers, and every state of the dashboards with the
prompt of their cell.

What the log showed (JupyterLab 4.6, ipykernel 7.4): when a kernel's *first* widget
appears, JupyterLab sends ``create_subshell_request`` on the control channel (comms over
subshells); the kernel's control thread answers at once with busy then idle, and JupyterLab
takes the last status message of any request as the kernel's status: "Idle", while the cell
still runs. A cell that shows a plain ``ipywidgets`` widget then sleeps does the same; nbflow
plays no part in it (docs/jupyter.md, "Is the kernel busy?"). So the test checks:

- throughout each run, the cell's prompt reads ``[*]:`` (JupyterLab's own per-cell
  indicator) and the dashboard updates;
- the only idle statuses during a run answer control-channel subshell requests, never the
  run's cell or anything nbflow does;
- the second run, whose dashboard is not the kernel's first widget, shows the kernel busy
  from start to end; and with comms over subshells disabled (the remedy docs/jupyter.md
  gives), both runs do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .conftest import NotebookRun

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

SUBSHELL_REQUESTS = {"create_subshell_request", "delete_subshell_request"}

# Installed before Run All (the harness waits for the kernel connection first).
# ['kernel', status] for each status JupyterLab gives the kernel; ['message', state, parent
# msg_type, parent channel] for each status message received; ['dashboard', run id,
# data-nbflow-status, data-done, prompt of its cell] for each dashboard header drawn (the
# header is redrawn as a whole, so added nodes are scanned too).
LOG_STATES_JS = """() => {
  const log = (window.__nbflowRecords = []);
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const requests = {};
  log.push(['kernel', kernel.status]);
  kernel.statusChanged.connect((_, status) => log.push(['kernel', status]));
  kernel.anyMessage.connect((_, {msg, direction}) => {
    if (direction === 'send') { requests[msg.header.msg_id] = msg.channel; return; }
    if (msg.header.msg_type !== 'status') return;
    const parent = msg.parent_header || {};
    log.push(['message', msg.content.execution_state, parent.msg_type || '',
              requests[parent.msg_id] || '']);
  });
  const sel = '.nbflow-status[data-flow="busy-check"]';
  const seen = (el) => {
    const prompt = el.closest('.jp-Cell')?.querySelector('.jp-InputPrompt')?.textContent;
    log.push(['dashboard', el.dataset.runId, el.dataset.nbflowStatus, el.dataset.done,
              (prompt || '').trim()]);
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === 'attributes') { if (m.target.matches?.(sel)) seen(m.target); continue; }
      for (const node of m.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        if (node.matches(sel)) seen(node);
        node.querySelectorAll(sel).forEach(seen);
      }
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true,
                             attributeFilter: ['data-nbflow-status', 'data-done']});
}"""


def runs(log: list[list[Any]]) -> list[tuple[str, int, int]]:
    """Each run's id, with the positions in ``log`` of its first and last running record."""
    found = []
    for run_id in dict.fromkeys(e[1] for e in log if e[0] == "dashboard"):
        running = [
            i
            for i, e in enumerate(log)
            if e[0] == "dashboard" and e[1] == run_id and e[2] == "running"
        ]
        assert running, f"run {run_id} was never seen running: {log}"
        found.append((run_id, running[0], running[-1]))
    assert len(found) == 2, log
    return found


def busy_throughout(log: list[list[Any]], first: int, last: int) -> bool:
    """Whether JupyterLab had the kernel busy from before ``first`` to ``last``."""
    before = [e[1] for e in log[:first] if e[0] == "kernel"]
    return before[-1:] == ["busy"] and not [e for e in log[first : last + 1] if e[0] == "kernel"]


def test_a_blocking_run_keeps_its_cell_busy_and_nbflow_never_makes_the_kernel_idle(
    run_notebook: Callable[..., NotebookRun],
) -> None:
    run = run_notebook("busy.ipynb", "#nbflow-busy-done", on_page=LOG_STATES_JS, timeout=120)
    log = run.page.evaluate("() => window.__nbflowRecords")
    found = runs(log)
    _, start, end = found[1]
    for run_id, first, last in found:
        mine = [e for e in log[first : last + 1] if e[0] == "dashboard" and e[1] == run_id]
        assert len({e[3] for e in mine}) >= 3, log  # updated live: several counts drawn
        assert {e[4] for e in mine} == {"[*]:"}, log  # the cell is executing throughout
        idle = [e for e in log[first : last + 1] if e[0] == "message" and e[1] == "idle"]
        assert all(e[2] in SUBSHELL_REQUESTS and e[3] == "control" for e in idle), log
    # No subshell to create for the second dashboard: busy all along, as it should be.
    assert busy_throughout(log, start, end), log

    ends = [e[2] for e in log if e[0] == "dashboard" and e[2] != "running"]
    assert set(ends) == {"succeeded"}, log
    assert run.page.get_attribute("#nbflow-busy-done", "data-status") == "succeeded succeeded"
    assert run.page_errors == []


# The "Kernel Comms over subshells: Disabled" setting (docs/jupyter.md tells users where to
# find it), saved as a user would in Settings, so the page reads it as it starts. (Set on the
# service manager from the test, it raced with the settings plugin, which sets it from the
# saved settings once they load: now and then after the test, undoing it.)
KERNELS_SETTINGS = "/lab/api/settings/@jupyterlab/apputils-extension:kernels-settings"


@pytest.fixture
def no_comms_over_subshells(lab_server: Any) -> Iterator[None]:
    """The setting saved on the (shared) server for this test, then put back."""
    before = (lab_server.api("GET", KERNELS_SETTINGS) or {}).get("raw") or "{}"
    lab_server.api("PUT", KERNELS_SETTINGS, {"raw": '{"commsOverSubshells": "disabled"}'})
    try:
        yield
    finally:
        lab_server.api("PUT", KERNELS_SETTINGS, {"raw": before})


def test_without_comms_over_subshells_the_kernel_reads_busy_through_every_run(
    run_notebook: Callable[..., NotebookRun], no_comms_over_subshells: None
) -> None:
    run = run_notebook("busy.ipynb", "#nbflow-busy-done", on_page=LOG_STATES_JS, timeout=120)
    setting = "() => window.jupyterapp.serviceManager.kernels.commsOverSubshells"
    assert run.page.evaluate(setting) == "disabled"
    log = run.page.evaluate("() => window.__nbflowRecords")
    assert all(busy_throughout(log, first, last) for _, first, last in runs(log)), log
    assert not any(e[0] == "message" and e[2] == "create_subshell_request" for e in log), log
