"""Signals, loops and subflows of #21 on a real LocalCluster (2 worker processes on loopback).

The kernel decides when tasks start, so a task waiting for a signal waits in the kernel and
runs on a worker once ``handle.send`` (from the kernel) delivers it; a loop fetches each
iteration's result to decide ``until``; a subflow's child run sends its tasks to the same
cluster and its results come back as the task's result. ``nf.context().send`` in a task
that runs on a worker is refused with a clear error (the worker has no run to send to).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)

import test_dask  # noqa: E402

import nbflow as nf  # noqa: E402
from nbflow.dask import DaskExecutor  # noqa: E402

client = test_dask.client
executor = test_dask.executor

pytestmark = [pytest.mark.dask, pytest.mark.timeout(180)]


def test_a_task_waits_in_the_kernel_and_runs_on_a_worker_once_its_signal_comes(
    executor: DaskExecutor,
) -> None:
    flow = nf.Flow("dask-signal", store=None)
    flow.task(name="report")(lambda: "r")

    @flow.task(wait_for="approved")
    def publish(report, approved):
        return (report, approved, os.getpid())

    async def scenario() -> nf.Run:
        handle = flow.start(executor=executor)
        while handle.run.state.waiting != {"publish": "'approved'"}:
            await asyncio.sleep(0.01)
        handle.send("approved", "yes")
        return await handle

    run = asyncio.run(scenario())
    assert run.status == "succeeded", run.errors
    report, approved, pid = run.results["publish"]
    assert (report, approved) == ("r", "yes") and pid != os.getpid()  # on a worker


def test_send_from_a_task_on_a_worker_is_refused_with_a_clear_error(
    executor: DaskExecutor,
) -> None:
    flow = nf.Flow("dask-ctx-send", store=None)

    @flow.task
    def sender():
        nf.context().send("go", 1)

    flow.task(name="waits", wait_for="go", timeout=5)(lambda go: go)
    run = flow.run(executor=executor, on_error="continue")
    assert run.states["sender"] == "failed"
    assert "runs on a Dask worker" in str(run.errors["sender"]), run.errors["sender"]
    assert "send('go')" in str(run.errors["sender"])


def test_a_loop_on_the_cluster_decides_until_on_each_fetched_result(
    executor: DaskExecutor,
) -> None:
    flow = nf.Flow("dask-loop", store=None)
    flow.task(name="limit")(lambda: 4)  # its result stays on the cluster unless fetched

    @flow.loop(until="result >= limit", max_iterations=10)
    def double(limit, previous=1):
        return previous * 2

    run = flow.run(executor=executor)
    assert run.status == "succeeded", run.errors
    assert run.results["double"] == 4 and run.state.iterations == {"double": 2}
    assert [r.task for r in run.state.rows] == ["limit", "double", "double#2"]
    assert {r.worker for r in run.state.rows} <= set(test_dask.workers(executor.client))


def test_a_subflow_sends_its_child_run_s_tasks_to_the_cluster(
    executor: DaskExecutor, client: Any
) -> None:
    child = nf.Flow("dask-child", store=None)
    child.task(name="where")(lambda: os.getpid())
    child.task(name="double")(lambda n: 2 * n)
    parent = nf.Flow("dask-parent", store=None)
    parent.task(name="n")(lambda: 21)
    parent.task(name="sub")(child)
    parent.task(name="total")(lambda sub: sub["double"])
    run = parent.run(executor=executor)
    assert run.status == "succeeded", run.errors
    assert run.results["total"] == 42
    assert run.results["sub"]["where"] != os.getpid()  # the child's task ran on a worker
    (child_run,) = run.children["sub"]
    assert child_run.parent_run == run.run_id
    assert {r.worker for r in child_run.state.rows} <= set(test_dask.workers(client))


def test_cancel_and_finish_from_a_task_on_a_worker_are_refused_with_a_clear_error(
    executor: DaskExecutor,
) -> None:
    flow = nf.Flow("dask-ctx-finish", store=None)

    @flow.task
    def finisher():
        nf.context().finish()

    @flow.task
    def canceller():
        nf.context().cancel("finisher")

    run = flow.run(executor=executor, on_error="continue")
    assert run.states == {"finisher": "failed", "canceller": "failed"}, run.states
    assert "finish() from task 'finisher'" in str(run.errors["finisher"])
    assert "cancel() from task 'canceller'" in str(run.errors["canceller"])
    assert all("runs on a Dask worker" in str(e) for e in run.errors.values())
