"""DaskExecutor on a real LocalCluster (2 worker processes on loopback), shared by the module.

A scheduler plugin (:class:`Recorder`) watches every task the scheduler sees, so the tests can
check what nbflow submitted (keys, priorities, how many were in flight) from Dask's own side.
Timing never decides a test: long-running tasks wait on a stop file the test creates.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
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
from nbflow.run import RemoteResults  # noqa: E402

pytestmark = [pytest.mark.dask, pytest.mark.timeout(180)]

RECORDER = "nbflow-test-recorder"
ACTIVE = {"waiting", "queued", "processing", "no-worker"}


class Recorder(distributed.diagnostics.plugin.SchedulerPlugin):
    """Records, per key, the scheduler's priority and the peak number of unfinished keys."""

    name = RECORDER

    def __init__(self) -> None:
        self.priorities: dict[str, Any] = {}
        self.active: set[str] = set()
        self.peak: dict[str, int] = {}

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if not isinstance(key, str):
            return
        ts = self.scheduler.tasks.get(key)
        if ts is not None and key not in self.priorities:
            self.priorities[key] = tuple(ts.priority)
        if finish in ACTIVE:
            self.active.add(key)
        else:
            self.active.discard(key)
        prefix = _task_of(key)
        in_flight = sum(1 for k in self.active if _task_of(k) == prefix)
        self.peak[prefix] = max(self.peak.get(prefix, 0), in_flight)


def _task_of(key: str) -> str:
    return key.rsplit("-", 1)[0]  # nbflow's keys are "<task>-<hex>"


def _snapshot(dask_scheduler: Any) -> dict[str, Any]:
    plugin = dask_scheduler.plugins[RECORDER]
    return {
        "priorities": dict(plugin.priorities),
        "peak": dict(plugin.peak),
        "known": [k for k in dask_scheduler.tasks if isinstance(k, str)],
    }


def recorded(client: Any) -> dict[str, Any]:
    """What the scheduler plugin saw so far."""
    return client.run_on_scheduler(_snapshot)


def keys_of(seen: dict[str, Any], task: str) -> list[str]:
    return [k for k in seen["priorities"] if _task_of(k) == task]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster, set_as_default=False)
    client.register_plugin(Recorder())
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def executor(client: Any) -> DaskExecutor:
    return DaskExecutor(client=client)


def workers(client: Any) -> set[str]:
    return set(client.scheduler_info()["workers"])


def wait_for_file(path: Path, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: {path} never appeared")
        time.sleep(0.02)


def wait_on(stop: Path, started: Path) -> str:
    """Task body: say it started, then wait (at most 60 s) until the test says stop."""
    started.write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not stop.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "stopped"


# -- results -----------------------------------------------------------------------------------


def example_flow() -> nf.Flow:
    flow = nf.Flow("dask-example", store=None)

    @flow.task
    def numbers(count: int = 4) -> list[int]:
        return list(range(count))

    @flow.task(priority=5)
    async def offset() -> int:
        await asyncio.sleep(0)
        return 10

    @flow.task
    def total(numbers: list[int], offset: int) -> int:
        return sum(numbers) + offset

    @flow.task(fan_out="numbers", concurrency=2)
    def scaled(numbers: int, offset: int) -> int:
        return numbers * offset

    @flow.task(when="total > 5 and vars['mode'] == 'full'")
    def report(total: int, scaled: list[int], mode: str = "full") -> dict[str, Any]:
        return {"total": total, "scaled": scaled, "mode": mode}

    @flow.task
    def clashing(key: int = 3, priority: int = 4, workers: str = "w") -> str:
        # Parameter names that are also Client.submit options must reach the function.
        return f"{key}-{priority}-{workers}"

    return flow


def test_dask_results_equal_local_executor(executor: DaskExecutor, client: Any) -> None:
    flow = example_flow()
    variables = {"mode": "full", "count": 5}
    local = flow.run(variables=variables)
    remote = flow.run(variables=variables, executor=executor)

    assert local.status == remote.status == "succeeded"
    assert isinstance(remote.results, RemoteResults)
    assert remote.results == local.results
    assert remote.results.to_dict() == dict(local.results)
    assert remote.results["report"] == {"total": 20, "scaled": [0, 10, 20, 30, 40], "mode": "full"}
    # The executor stays usable for another run (a new event loop each flow.run call).
    again = flow.run(variables=variables, executor=executor)
    assert again.results == local.results


def test_dask_timeline_worker_column_names_dask_workers(
    executor: DaskExecutor, client: Any
) -> None:
    run = example_flow().run(variables={"mode": "full"}, executor=executor)
    frame = run.timeline()
    assert len(frame) == 5 + 4  # five plain tasks + four fan-out elements
    assert set(frame["worker"]) <= workers(client)
    assert run.state.tasks["total"].worker in workers(client)


def test_dask_timeline_bars_start_when_the_worker_began(
    executor: DaskExecutor, client: Any
) -> None:
    # Eight 0.3 s elements, all submitted at once, on two one-thread workers: each worker runs
    # them one after another, and the timeline must say so (not eight overlapping bars).
    flow = nf.Flow("dask-gantt", store=None)

    @flow.task
    def items() -> list[int]:
        return list(range(8))

    @flow.task(fan_out="items")
    def nap(items: int) -> int:
        time.sleep(0.3)
        return items

    run = flow.run(executor=executor)
    rows = [r for r in run.state.rows if r.base == "nap"]
    assert len(rows) == 8
    for row in rows:
        assert row.end is not None
        middle = (row.start + row.end) / 2
        same_worker = [r for r in rows if r.worker == row.worker]
        assert sum(r.start <= middle <= r.end for r in same_worker) == 1  # type: ignore[operator]


def test_dask_results_are_fetched_once_and_only_when_read(executor: DaskExecutor) -> None:
    run = example_flow().run(variables={"mode": "full"}, executor=executor)
    results = run.results
    assert isinstance(results.remote("clashing"), distributed.Future)
    assert "Future" in repr(results)  # unread results show their handle, not a value
    fetches: list[Any] = []
    original = executor.materialize

    def counting(value: Any) -> Any:
        fetches.append(value)
        return original(value)

    run._materialize = counting  # type: ignore[attr-defined]
    assert run.results["clashing"] == "3-4-w"
    assert run.results["clashing"] == "3-4-w"
    assert len(fetches) == 1
    assert "'3-4-w'" in repr(run.results)
    with pytest.raises(KeyError):
        run.results["no-such-task"]


# -- priorities, fan-out, retries --------------------------------------------------------------


def test_dask_priority_reaches_the_scheduler(executor: DaskExecutor, client: Any) -> None:
    flow = nf.Flow("dask-priorities", store=None)
    for name, priority in (("p_low", 1), ("p_high", 10), ("p_mid", 5), ("p_neg", -3)):
        flow.task(name=name, priority=priority)(lambda: None)
    assert flow.run(executor=executor).status == "succeeded"

    seen = recorded(client)
    user_priority = {}
    for name in ("p_low", "p_high", "p_mid", "p_neg"):
        (key,) = keys_of(seen, name)
        user_priority[name] = -seen["priorities"][key][0]  # Dask stores -priority first
    assert user_priority == {"p_low": 1, "p_high": 10, "p_mid": 5, "p_neg": -3}


def test_dask_fan_out_elements_are_dask_tasks_in_a_sliding_window(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    flow = nf.Flow("dask-fan-out", store=None)

    @flow.task
    def items() -> list[int]:
        return list(range(8))

    @flow.task(fan_out="items", concurrency=2)
    def square(items: int) -> int:
        time.sleep(0.05)
        return items * items

    run = flow.run(executor=executor)
    assert run.results["square"] == [i * i for i in range(8)]
    seen = recorded(client)
    assert len(keys_of(seen, "square")) == 8  # one Dask task per element
    assert 1 <= seen["peak"]["square"] <= 2  # never more in flight than the window
    elements = run.timeline().query("base_task == 'square'")
    assert sorted(elements["element"]) == list(range(8))
    assert set(elements["worker"]) <= workers(client)


def test_dask_retry_resubmits_under_a_new_key(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    flow = nf.Flow("dask-retry", store=None)

    @flow.task(retry=nf.Retry(max_retries=2, delay=0))
    def flaky() -> str:
        if not marker.exists():
            marker.write_text("x")
            raise ConnectionError("first attempt fails")
        return "ok"

    run = flow.run(executor=executor)
    assert run.results["flaky"] == "ok"
    assert len(keys_of(recorded(client), "flaky")) == 2
    rows = run.timeline()
    assert list(rows["status"]) == ["failed", "succeeded"]
    assert rows["error"].iloc[0] == "ConnectionError: first attempt fails"
    assert set(rows["worker"]) <= workers(client)  # the failed attempt names its worker too


def test_dask_task_error_reaches_the_run_with_its_remote_traceback(
    executor: DaskExecutor,
) -> None:
    flow = nf.Flow("dask-error", store=None)

    @flow.task
    def broken() -> None:
        raise ValueError("bad input 42")

    @flow.task
    def after(broken: None) -> None:
        return None

    run = flow.run(executor=executor)
    assert run.status == "failed"
    assert run.states == {"broken": "failed", "after": "upstream_failed"}
    assert isinstance(run.errors["broken"], ValueError)
    assert "bad input 42" in str(run.errors["broken"])
    assert "def broken" in run.tracebacks["broken"] or "broken" in run.tracebacks["broken"]


def test_dask_unpicklable_input_names_the_input(executor: DaskExecutor) -> None:
    flow = nf.Flow("dask-unpicklable", store=None)

    @flow.task
    def uses(lock: Any) -> int:
        return 1

    run = flow.run(variables={"lock": threading.Lock()}, executor=executor)
    error = run.errors["uses"]
    assert isinstance(error, TypeError)
    assert str(error).startswith("task 'uses': input 'lock' (lock) cannot be pickled")


# -- cancellation and timeouts -----------------------------------------------------------------


def test_dask_timeout_cancels_the_dask_future(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    stop, started = tmp_path / "stop", tmp_path / "started"
    flow = nf.Flow("dask-timeout", store=None)

    @flow.task(timeout=1.0)
    def stuck() -> str:
        return wait_on(stop, started)

    try:
        run = flow.run(executor=executor)
        assert started.exists()
        assert run.status == "failed"
        assert isinstance(run.errors["stuck"], nf.TaskTimeoutError)
        (key,) = keys_of(recorded(client), "stuck")
        assert key not in recorded(client)["known"]  # the scheduler forgot the task
    finally:
        stop.write_text("x")


def test_dask_cancelled_run_cancels_the_dask_future(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    stop, started = tmp_path / "stop", tmp_path / "started"
    flow = nf.Flow("dask-cancel", store=None)

    @flow.task
    def long() -> str:
        return wait_on(stop, started)

    @flow.task
    def later(long: str) -> str:
        return long

    try:
        handle = flow.start(executor=executor)
        wait_for_file(started, "the task never started on a worker")
        handle.cancel()
        run = handle.wait(timeout=60)
        assert run.status == "cancelled"
        assert run.states == {"long": "cancelled", "later": "cancelled"}
        (key,) = keys_of(recorded(client), "long")
        assert key not in recorded(client)["known"]
    finally:
        stop.write_text("x")


# -- data locality -----------------------------------------------------------------------------

UNPICKLED_LOG = "NBFLOW_TEST_UNPICKLED_LOG"


class Payload:
    """Bytes that log the pid of every process that unpickles them (via a file)."""

    def __init__(self, size: int, log: str) -> None:
        self.data = b"x" * size
        self.log = log

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.data, self.log))

    def __sizeof__(self) -> int:  # what Dask's memory accounting (dask.sizeof) reports
        return object.__sizeof__(self) + len(self.data)


def _restore(data: bytes, log: str) -> Payload:
    with open(log, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    payload = Payload.__new__(Payload)
    payload.data, payload.log = data, log
    return payload


def test_dask_large_result_never_reaches_the_kernel(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    log = tmp_path / "unpickled.log"
    log.touch()
    size = 32 * 1024 * 1024
    flow = nf.Flow("dask-locality", store=None)

    @flow.task
    def big() -> Payload:
        return Payload(size, str(log))

    @flow.task
    def measure(big: Payload) -> int:
        return len(big.data)

    @flow.task(priority=1)
    def checksum(big: Payload) -> int:
        return big.data.count(b"x")

    run = flow.run(executor=executor)
    assert run.status == "succeeded"
    assert run.results["measure"] == size
    assert run.results["checksum"] == size
    me = str(os.getpid())
    # Dask's own accounting: the payload lives on a worker, all 32 MiB of it.
    (key,) = keys_of(recorded(client), "big")
    nbytes = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.tasks[key].nbytes)
    assert nbytes >= size
    assert me not in log.read_text().split()  # never unpickled in the kernel

    # Reading it is what brings it over: the same check now sees the kernel.
    assert len(run.results["big"].data) == size
    assert me in log.read_text().split()


def test_dask_condition_reads_a_fetched_value(executor: DaskExecutor) -> None:
    flow = nf.Flow("dask-when", store=None)

    @flow.task
    def count() -> int:
        return 3

    @flow.task(when="count > 5")
    def skipped_one(count: int) -> int:
        return count

    @flow.task(when=lambda ctx: ctx["count"] == 3)
    def kept(count: int) -> int:
        return count * 2

    run = flow.run(executor=executor)
    assert run.states == {"count": "succeeded", "skipped_one": "skipped", "kept": "succeeded"}
    assert run.results.remote("count") == 3  # fetched for the condition: a plain value now
    assert run.results["kept"] == 6


# -- clients and lifecycle ---------------------------------------------------------------------


def test_dask_executor_with_an_asynchronous_client(client: Any) -> None:
    flow = example_flow()
    local = flow.run(variables={"mode": "full"})

    async def main() -> tuple[dict[str, Any], Any]:
        async with distributed.Client(
            client.scheduler.address, asynchronous=True, set_as_default=False
        ) as async_client:
            executor = DaskExecutor(client=async_client)
            run = await flow.arun(variables={"mode": "full"}, executor=executor)
            fetched = await executor.amaterialize(run.results.remote("total"))
            return run.results.to_dict(), fetched

    results, total = asyncio.run(main())
    assert results == dict(local.results)
    assert total == local.results["total"]


def test_dask_executor_starts_and_closes_its_own_local_cluster() -> None:
    flow = nf.Flow("dask-own", store=None)

    @flow.task
    def one() -> int:
        return 1

    with DaskExecutor(n_workers=1) as executor:
        assert executor.cluster is not None
        assert "LocalCluster" in repr(executor)
        run = flow.run(executor=executor)
        assert run.results["one"] == 1
        unread = flow.run(executor=executor)
    assert executor.cluster is None
    with pytest.raises(DaskClusterError, match=r"read run\.results before closing"):
        unread.results["one"]
    closed = flow.run(executor=executor)
    assert isinstance(closed.errors["one"], DaskClusterError)
    assert "create a new DaskExecutor" in str(closed.errors["one"])


def test_dask_closing_an_executor_leaves_a_given_client_open(client: Any) -> None:
    flow = nf.Flow("dask-given", store=None)

    @flow.task
    def one() -> int:
        return 1

    executor = DaskExecutor(client=client)
    run = flow.run(executor=executor)
    executor.close()
    assert client.status == "running"
    assert run.results["one"] == 1  # still on the (open) cluster, still readable
    closed = flow.run(executor=executor)
    assert isinstance(closed.errors["one"], DaskClusterError)
    assert repr(executor) == "<DaskExecutor closed>"


def test_dask_executor_rejects_conflicting_arguments(client: Any) -> None:
    with pytest.raises(ValueError, match="either client=, or address="):
        DaskExecutor(client=client, address="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match=r"LocalCluster options \['n_workers'\]"):
        DaskExecutor(address="tcp://127.0.0.1:1", n_workers=2)


def test_dask_connect_to_an_unreachable_address_fails_clearly() -> None:
    executor = DaskExecutor(address="tcp://127.0.0.1:9", timeout=1)
    with pytest.raises(DaskClusterError, match=r"cannot connect .* tcp://127\.0\.0\.1:9"):
        executor.connect()


def test_dask_payload_helper_logs_unpickling(tmp_path: Path) -> None:
    # The locality test relies on this: unpickling a Payload leaves a trace.
    log = tmp_path / "log"
    pickle.loads(pickle.dumps(Payload(3, str(log))))
    assert log.read_text().split() == [str(os.getpid())]
