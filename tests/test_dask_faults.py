"""DaskExecutor under faults, on real LocalClusters: a worker killed mid-task, a lost scheduler.

A task kills its own worker process (SIGKILL) on its first try only: a marker file written just
before the kill tells later tries that it already happened. Long tasks wait on a stop file.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)

import nbflow as nf  # noqa: E402
from nbflow.dask import DaskClusterError, DaskExecutor  # noqa: E402

pytestmark = [pytest.mark.dask, pytest.mark.timeout(180)]


def local_cluster(n_workers: int) -> Any:
    return distributed.LocalCluster(
        n_workers=n_workers,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = local_cluster(2)
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()


def killing_flow(marker: Path, retry: nf.Retry | None = None) -> nf.Flow:
    flow = nf.Flow("dask-kill", store=None)

    @flow.task(retry=retry)
    def fragile() -> int:
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
        return os.getpid()

    @flow.task
    def after(fragile: int) -> str:
        return f"after {fragile}"

    return flow


def test_dask_killed_worker_is_rescheduled_by_dask(client: Any, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    run = killing_flow(marker).run(executor=DaskExecutor(client=client))

    assert run.status == "succeeded", run.tracebacks
    killed_pid = int(marker.read_text())
    assert run.results["fragile"] != killed_pid  # finished in another process
    assert run.results["after"] == f"after {run.results['fragile']}"
    # Dask retried on its own: nbflow saw one attempt.
    assert list(run.timeline().query("task == 'fragile'")["status"]) == ["succeeded"]


def _set_allowed_failures(dask_scheduler: Any, value: int) -> int:
    old = dask_scheduler.allowed_failures
    dask_scheduler.allowed_failures = value
    return old


def test_dask_killed_worker_then_nbflow_retries(client: Any, tmp_path: Path) -> None:
    # With allowed_failures=0 Dask gives up at once (KilledWorker); nbflow's retry resubmits.
    old = client.run_on_scheduler(_set_allowed_failures, value=0)
    try:
        marker = tmp_path / "killed"
        flow = killing_flow(marker, retry=nf.Retry(max_retries=1, delay=0))
        run = flow.run(executor=DaskExecutor(client=client))
    finally:
        client.run_on_scheduler(_set_allowed_failures, value=old)

    assert run.status == "succeeded", run.tracebacks
    rows = run.timeline().query("task == 'fragile'")
    assert list(rows["status"]) == ["failed", "succeeded"]
    assert rows["error"].iloc[0].startswith("KilledWorker")


def test_dask_killed_worker_without_retry_fails_the_task(client: Any, tmp_path: Path) -> None:
    old = client.run_on_scheduler(_set_allowed_failures, value=0)
    try:
        run = killing_flow(tmp_path / "killed").run(executor=DaskExecutor(client=client))
    finally:
        client.run_on_scheduler(_set_allowed_failures, value=old)
    assert run.status == "failed"
    assert type(run.errors["fragile"]).__name__ == "KilledWorker"
    assert run.states["after"] == "upstream_failed"


def _wait_on(stop: Path, started: Path) -> str:
    started.write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "stopped"


def test_dask_lost_scheduler_fails_the_run_instead_of_hanging(tmp_path: Path) -> None:
    stop, started = tmp_path / "stop", tmp_path / "started"
    cluster = local_cluster(1)
    client = distributed.Client(cluster, timeout=2, set_as_default=False)
    executor = DaskExecutor(client=client, timeout=5, heartbeat=0.2)
    flow = nf.Flow("dask-lost", store=None)

    @flow.task
    def long() -> str:
        return _wait_on(stop, started)

    @flow.task
    def after(long: str) -> str:
        return long

    try:
        handle = flow.start(executor=executor)
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "the task never started on a worker"
            time.sleep(0.02)
        cluster.close()  # scheduler and worker vanish while the task runs

        run = handle.wait(timeout=60)  # raises TimeoutError if the run hung
        assert run.status == "failed"
        assert run.states == {"long": "failed", "after": "upstream_failed"}
        error = run.errors["long"]
        assert isinstance(error, DaskClusterError)
        assert "scheduler" in str(error) and "'long'" in str(error)

        # The next run on the same executor fails at once, with the same kind of error.
        again = flow.run(executor=executor)
        assert again.status == "failed"
        assert isinstance(again.errors["long"], DaskClusterError)
        assert "not running" in str(again.errors["long"])
    finally:
        stop.write_text("x")
        client.close()
        cluster.close()
