"""The core's side of remote execution, without Dask: these run everywhere (no ``dask`` mark).

* ``import nbflow`` and a local run never import dask or distributed;
* the engine's remote-executor protocol (``remote_results``, ``placement``, ``amaterialize``,
  ``materialize``), driven by a fake executor whose "futures" are :class:`Handle` objects;
* :class:`~nbflow.run.RemoteResults`, the lazy ``run.results`` of a remote run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest

import nbflow as nf
from nbflow.run import RemoteResults


def test_core_import_and_local_run_never_import_dask() -> None:
    code = """
import sys
import nbflow as nf

flow = nf.Flow("local", store=None)

@flow.task
def items():
    return [1, 2, 3]

@flow.task(fan_out="items")
def double(items):
    return 2 * items

@flow.task(when="len(double) == 3")
def total(double):
    return sum(double)

run = flow.run()
assert run.results == {"items": [1, 2, 3], "double": [2, 4, 6], "total": 12}, run.results
assert type(run.results) is dict
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a fake remote executor --------------------------------------------------------------------


@dataclass(frozen=True)
class Handle:
    """Stands for a future: the value stays "remote" inside it."""

    value: Any
    worker: str


class FakeRemote:
    """Keeps results as Handles, like DaskExecutor keeps futures; records what it did.

    Each call "queues" for ``queued`` seconds before it begins, and reports that moment.
    """

    remote_results = True

    def __init__(self, queued: float = 0.0) -> None:
        self.received: dict[str, dict[str, Any]] = {}  # task -> kwargs as passed in
        self.fetched: list[Any] = []
        self.calls = 0
        self.queued = queued
        self.began: dict[str, float] = {}  # task -> wall-clock start of its last attempt

    async def call(
        self, task: str, fn: Any, kwargs: dict[str, Any], *, is_async: bool, priority: int = 0
    ) -> Handle:
        self.calls += 1
        self.received[task] = dict(kwargs)
        worker = f"remote-{self.calls % 2}"
        resolved = {k: _unwrap(v) for k, v in kwargs.items()}  # what a worker would do
        if self.queued:
            await asyncio.sleep(self.queued)
        self.began[task] = time.time()
        try:
            result = await fn(**resolved) if is_async else fn(**resolved)
        except Exception as error:
            error.where = worker  # type: ignore[attr-defined]
            raise
        return Handle(result, worker)

    def placement(self, outcome: Any) -> tuple[str, float | None] | None:
        if isinstance(outcome, Handle):
            return outcome.worker, None
        where = getattr(outcome, "where", None)
        return (where, None) if where else None

    async def amaterialize(self, value: Any) -> Any:
        self.fetched.append(value)
        return _unwrap(value)

    def materialize(self, value: Any) -> Any:
        self.fetched.append(value)
        return _unwrap(value)


def _unwrap(value: Any) -> Any:
    if isinstance(value, Handle):
        return value.value
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def remote_flow() -> nf.Flow:
    flow = nf.Flow("remote", store=None)

    @flow.task
    def big() -> bytes:
        return b"x" * 1000

    @flow.task
    def size(big: bytes) -> int:
        return len(big)

    @flow.task
    def items() -> list[int]:
        return [1, 2, 3]

    @flow.task(fan_out="items")
    async def double(items: int) -> int:
        return 2 * items

    @flow.task(when="size > 10")
    def report(size: int, double: list[int]) -> str:
        return f"{size}:{sum(double)}"

    return flow


def test_remote_engine_passes_handles_downstream_and_fetches_only_what_it_reads() -> None:
    executor = FakeRemote()
    run = remote_flow().run(executor=executor)
    assert run.status == "succeeded", run.tracebacks

    # `big` is read by nobody in the kernel: `size` got the handle, not the bytes.
    assert isinstance(executor.received["size"]["big"], Handle)
    # `items` feeds a fan-out and `size` a condition: the engine fetched those two only...
    fetched = [v.value if isinstance(v, Handle) else v for v in executor.fetched]
    assert fetched == [[1, 2, 3], 1000] or fetched == [1000, [1, 2, 3]]
    # ...so the gated task received plain values for its gate's upstream.
    assert executor.received["report"]["size"] == 1000
    assert isinstance(executor.received["report"]["double"], list)
    assert all(isinstance(v, Handle) for v in executor.received["report"]["double"])

    executor.fetched.clear()
    results = run.results
    assert isinstance(results, RemoteResults)
    assert results["report"] == "1000:12"
    assert len(executor.fetched) == 1  # reading one result fetched one result
    assert results == {
        "big": b"x" * 1000,
        "size": 1000,
        "items": [1, 2, 3],
        "double": [2, 4, 6],
        "report": "1000:12",
    }


def test_remote_engine_fills_the_worker_column_from_the_executor() -> None:
    run = remote_flow().run(executor=FakeRemote())
    frame = run.timeline()
    assert set(frame["worker"]) <= {"remote-0", "remote-1"}
    assert run.state.tasks["report"].worker in {"remote-0", "remote-1"}


def test_remote_engine_moves_an_attempt_start_to_when_it_really_began() -> None:
    executor = FakeRemote(queued=0.05)
    original = executor.placement

    def placement(outcome: Any) -> tuple[str, float | None] | None:
        found = original(outcome)
        return (found[0], executor.began["only"]) if found else None

    executor.placement = placement  # type: ignore[method-assign]
    flow = nf.Flow("remote-began", store=None)

    @flow.task
    def only() -> int:
        return 1

    submitted: list[float] = []
    flow.subscribe(lambda e: submitted.append(e.t) if isinstance(e, nf.TaskStarted) else None)
    run = flow.run(executor=executor)
    (row,) = run.state.rows
    assert row.start == pytest.approx(executor.began["only"] - run.state.wall_start)
    assert submitted[0] < row.start <= row.end  # queued time is not drawn as running


def test_remote_engine_reports_the_worker_of_a_failed_attempt() -> None:
    flow = nf.Flow("remote-fail", store=None)

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    def broken() -> None:
        raise ValueError("nope")

    run = flow.run(executor=FakeRemote())
    frame = run.timeline()
    assert list(frame["status"]) == ["failed", "failed"]
    assert list(frame["worker"]) == ["remote-1", "remote-0"]


def test_local_run_results_is_a_plain_dict() -> None:
    run = remote_flow().run()
    assert type(run.results) is dict
    assert run.results["report"] == "1000:12"


# -- RemoteResults -----------------------------------------------------------------------------


class Fetcher:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, value: Any) -> Any:
        self.calls.append(value)
        return _unwrap(value)


def test_remote_results_fetch_each_value_once_on_read() -> None:
    fetch = Fetcher()
    results = RemoteResults({"a": Handle(1, "w"), "b": 2}, fetch, {})
    assert list(results) == ["a", "b"] and len(results) == 2 and "a" in results
    assert fetch.calls == []  # keys, length and membership ask nothing
    assert results["a"] == 1
    assert results["a"] == 1
    assert fetch.calls == [Handle(1, "w")]
    assert results.remote("a") == Handle(1, "w")
    with pytest.raises(KeyError):
        results["missing"]


def test_remote_results_to_dict_fetches_the_missing_ones_in_one_request() -> None:
    fetch = Fetcher()
    results = RemoteResults({"a": Handle(1, "w"), "b": Handle(2, "w"), "c": 3}, fetch, {})
    assert results["a"] == 1
    assert results.to_dict() == {"a": 1, "b": 2, "c": 3}
    assert fetch.calls == [Handle(1, "w"), {"b": Handle(2, "w"), "c": 3}]
    assert results == {"a": 1, "b": 2, "c": 3}
    assert results != {"a": 1}
    assert (results == 5) is False
    assert len(fetch.calls) == 2  # everything was already fetched


def test_remote_results_repr_shows_handles_until_read() -> None:
    results = RemoteResults({"a": Handle(1, "w"), "b": 2}, Fetcher(), {})
    assert repr(results) == "RemoteResults({'a': Handle(value=1, worker='w'), 'b': 2})"
    results["a"]
    assert repr(results) == "RemoteResults({'a': 1, 'b': 2})"
