"""Blocking runs in a real ipykernel (jupyter_client): queued cells, Kernel -> Interrupt.

``flow.run()`` in a cell re-enters the kernel's own event loop (nbflow.runtime). These tests
drive a kernel the way JupyterLab does, over its channels, and check what a notebook user
sees: cells queued behind a run (Run All) run after it, in order; an interrupt cancels the
run cleanly (its cleanup runs, nothing ticks after, the run is returned and is
``flow.last_run``) instead of raising in the middle of it; the kernel is busy while it runs.
Nothing is timed: the tests wait on messages, with generous timeouts only against hangs.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

jupyter_client = pytest.importorskip("jupyter_client")

pytestmark = [pytest.mark.notebook, pytest.mark.timeout(180)]

SETUP = """
import asyncio, time, warnings
import nbflow as nf
warnings.simplefilter("ignore")
ticks, cleaned = [], []
flow = nf.Flow("kernel-runs", store=None)

@flow.task
async def ticker():
    print("started", flush=True)
    try:
        while True:
            ticks.append(len(ticks))
            await asyncio.sleep(0.01)
    finally:
        cleaned.append("ticker")

sync_flow = nf.Flow("kernel-sync", store=None)

@sync_flow.task
def spinner():
    print("started", flush=True)
    while not nf.context().cancelled:
        ticks.append(len(ticks))
        time.sleep(0.01)
    cleaned.append("spinner")
    return "stopped early"

# Shown in a dashboard, a task's prints stay in its log; these are the test's signal in the
# cell's output, so they are echoed there too.
queued = nf.Flow("kernel-queued", store=None, max_workers=1, logs=nf.LogCapture(echo=True))
began = []

for name in ("head", "next1", "next2"):

    async def body(name=name):
        began.append(name)
        print("started", flush=True)
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(name)

    queued.task(name=name)(body)

short = nf.Flow("kernel-short", store=None)

@short.task
async def first():
    await asyncio.sleep(0.05)
    return 1

@short.task
def second(first):
    return first + 1
"""


class Kernel:
    """A kernel and its client; ``execute`` collects a request's messages by parent id."""

    def __init__(self) -> None:
        self.manager, self.client = jupyter_client.manager.start_new_kernel(kernel_name="python3")
        self.messages: dict[str, list[dict[str, Any]]] = {}

    def send(self, code: str) -> str:
        msg_id: str = self.client.execute(code)
        self.messages[msg_id] = []
        return msg_id

    def pump(self, until: Any, timeout: float = 30) -> None:
        """Collect iopub messages until ``until()`` is true (or fail after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                seen = {i[-6:]: [m["msg_type"] for m in ms] for i, ms in self.messages.items()}
                raise AssertionError(f"the kernel never got there; messages per request: {seen}")
            try:
                message = self.client.get_iopub_msg(timeout=0.2)
            except queue.Empty:
                continue
            parent = message["parent_header"].get("msg_id")
            if parent in self.messages:
                self.messages[parent].append(message)

    def idle(self, msg_id: str) -> bool:
        return any(
            m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
            for m in self.messages[msg_id]
        )

    def text(self, msg_id: str, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages[msg_id]
            if m["msg_type"] == "stream" and m["content"]["name"] == name
        )

    def errors(self, msg_id: str) -> list[str]:
        return [m["content"]["ename"] for m in self.messages[msg_id] if m["msg_type"] == "error"]

    def run(self, code: str) -> str:
        """Execute ``code`` and wait for it; return its stdout (its errors fail the test)."""
        msg_id = self.send(code)
        self.pump(lambda: self.idle(msg_id))
        assert self.errors(msg_id) == [], self.messages[msg_id]
        return self.text(msg_id)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel() -> Iterator[Kernel]:
    kernel = Kernel()
    try:
        kernel.run(SETUP)
        yield kernel
    finally:
        kernel.close()


def test_cells_queued_behind_a_blocking_run_all_run_in_order(kernel: Kernel) -> None:
    # Run All sends every cell at once; ipykernel 7 runs each in one shared Context, which
    # the first cell holds while its run re-enters the loop.
    ids = [
        kernel.send("run = short.run(show=True)"),
        kernel.send("print('second', run.status, run.results['second'])"),
        kernel.send("again = short.run()"),
        kernel.send("print('fourth', again.status)"),
    ]
    kernel.pump(lambda: all(kernel.idle(i) for i in ids))
    assert [kernel.errors(i) for i in ids] == [[], [], [], []]
    assert kernel.text(ids[1]) == "second succeeded 2\n"
    assert kernel.text(ids[3]) == "fourth succeeded\n"
    assert all("Exception in callback" not in kernel.text(i, "stderr") for i in ids)


def test_the_kernel_is_busy_until_a_blocking_run_ends(kernel: Kernel) -> None:
    msg_id = kernel.send("run = short.run(show=True)\nprint(run.status)")
    kernel.pump(lambda: kernel.idle(msg_id))
    states = [
        m["content"]["execution_state"]
        for m in kernel.messages[msg_id]
        if m["msg_type"] == "status"
    ]
    assert states == ["busy", "idle"]
    kinds = [m["msg_type"] for m in kernel.messages[msg_id]]
    # The dashboard is displayed before the status goes idle: it belongs to this cell.
    assert kinds.index("display_data") < len(kinds) - 1
    assert kernel.text(msg_id) == "succeeded\n"


@pytest.mark.parametrize("flow_name", ["flow", "sync_flow"])
def test_an_interrupt_cancels_the_run_and_returns_it(kernel: Kernel, flow_name: str) -> None:
    msg_id = kernel.send(f"run = {flow_name}.run()\nprint('returned', run.status)")
    kernel.pump(lambda: "started" in kernel.text(msg_id))
    kernel.manager.interrupt_kernel()
    kernel.pump(lambda: kernel.idle(msg_id))

    # No KeyboardInterrupt traceback: the run was cancelled, returned, and the cell went on.
    assert kernel.errors(msg_id) == []
    assert kernel.text(msg_id) == "started\nreturned cancelled\n"
    assert "cancelled by an interrupt" in kernel.text(msg_id, "stderr")

    # Nothing runs on after the cell: the task's cleanup ran, no tick comes later, the
    # engine holds nothing, and the run is kept.
    after = kernel.run(
        "n = len(ticks)\nawait asyncio.sleep(0.2)\n"
        "h = nf.health()\n"
        f"print(len(ticks) == n, cleaned, h['active_runs'], h['tasks_in_flight'], "
        f"{flow_name}.last_run is run)"
    )
    task = "ticker" if flow_name == "flow" else "spinner"
    assert after == f"True ['{task}'] 0 0 True\n"
    states = kernel.run("print(run.states)")
    assert states == f"{{'{task}': 'cancelled'}}\n"


def test_the_kernel_is_usable_after_an_interrupted_run(kernel: Kernel) -> None:
    msg_id = kernel.send("flow.run()")
    kernel.pump(lambda: "started" in kernel.text(msg_id))
    kernel.manager.interrupt_kernel()
    kernel.pump(lambda: kernel.idle(msg_id))
    assert kernel.run("print(short.run().results['second'])") == "2\n"


def test_an_interrupt_leaves_queued_tasks_unstarted_and_the_dashboard_cancelled(kernel: Kernel):
    msg_id = kernel.send("run = queued.run(show=True)")
    kernel.pump(lambda: "started" in kernel.text(msg_id))
    kernel.manager.interrupt_kernel()
    kernel.pump(lambda: kernel.idle(msg_id))
    assert kernel.errors(msg_id) == []
    after = kernel.run(
        "from ipywidgets.widgets.widget import _instances\n"
        "[board] = [w for w in list(_instances.values()) if getattr(w, 'run', None) is run]\n"
        "await asyncio.sleep(0.2)\n"
        "print(began, cleaned, run.status, sorted(set(run.states.values())), "
        "'data-nbflow-status=\"cancelled\"' in board._header, nf.health()['active_runs'])"
    )
    assert after == "['head'] ['head'] cancelled ['cancelled'] True 0\n"


NESTED = """
inner = nf.Flow("kernel-inner", store=None)

@inner.task
async def deep():
    print("started", flush=True)
    try:
        await asyncio.sleep(3600)
    finally:
        cleaned.append("deep")

nested = nf.Flow("kernel-nested", store=None)
nested.task(name="sub")(inner)
nested.task(name="gate", wait_for="go")(lambda go: go)
"""


def test_an_interrupt_cancels_a_child_run_and_a_task_waiting_for_a_signal(kernel: Kernel):
    kernel.run(NESTED)
    msg_id = kernel.send("run = nested.run(show=True)\nprint('returned', run.status)")
    kernel.pump(lambda: "started" in kernel.text(msg_id))
    kernel.manager.interrupt_kernel()
    kernel.pump(lambda: kernel.idle(msg_id))
    assert kernel.errors(msg_id) == []
    assert kernel.text(msg_id) == "started\nreturned cancelled\n"
    after = kernel.run(
        "child = run.children['sub'][0]\n"
        "print(run.states, child.status, child.states, child.parent_run == run.run_id, cleaned)"
    )
    assert after == (
        "{'sub': 'cancelled', 'gate': 'cancelled'} cancelled {'deep': 'cancelled'} True ['deep']\n"
    )
