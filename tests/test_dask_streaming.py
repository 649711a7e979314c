"""Streaming fan-out on a real LocalCluster (2 worker processes on loopback): a fan-out over
a fan-out streams element by element with the results left on the cluster (each element's
future is passed on), keys are read from fetched values, and a generator task is refused.
The last element of the first stage waits for a file that only the second stage writes: with
a barrier between the stages it would wait for ever (its wait gives up and fails the run)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)

import test_dask  # noqa: E402

import nbflow as nf  # noqa: E402
from nbflow.dask import DaskExecutor  # noqa: E402

#: The LocalCluster of tests/test_dask.py (2 worker processes on loopback), one per module.
client = test_dask.client
executor = test_dask.executor

pytestmark = [pytest.mark.dask, pytest.mark.timeout(180)]


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} never appeared: the second stage did not start")
        time.sleep(0.02)


def test_a_fan_out_over_a_fan_out_streams_on_the_cluster(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    flow = nf.Flow("dask-stream", store=None)
    began = tmp_path / "second-stage-began"

    @flow.task
    def items() -> list[int]:
        return [0, 1, 2, 3]

    @flow.task(fan_out="items")
    def first(items: int) -> int:
        if items == 3:  # the last element ends only once the second stage has begun
            wait_for(began)
        return items

    @flow.task(fan_out="first", key="f'v{item}'")
    def second(first: int) -> int:
        began.touch()
        return first * 10

    @flow.task
    def total(second: list[int]) -> int:
        return sum(second)

    run = flow.run(executor=executor)
    assert run.status == "succeeded", run.errors
    assert run.results["second"] == [0, 10, 20, 30] and run.results["total"] == 60
    assert list(run.elements("second")) == ["v0", "v1", "v2", "v3"]
    # (first[3] ended: the second stage began before the first one ended. The rows' times
    # come from the workers' clocks and the kernel's, too close to compare here.)


def _numbers() -> Iterator[int]:
    yield 1


def test_a_generator_task_is_refused_before_any_task_runs(executor: DaskExecutor) -> None:
    flow = nf.Flow("dask-generator", store=None)
    flow.task(name="numbers")(_numbers)
    ran: list[Any] = []
    flow.task(name="other")(lambda: ran.append(1))
    with pytest.raises(nf.DefinitionError, match=r"task 'numbers' is a generator function"):
        flow.run(executor=executor)
    assert ran == [] and flow.last_run is None
