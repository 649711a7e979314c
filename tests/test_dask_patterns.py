"""The patterns of #20 on a real LocalCluster (2 worker processes on loopback): joins that
cancel the rest, complete_when, handle.cancel(task) and switch, with results left on the
cluster; lock= taking a distributed.Lock, which keeps two kernels (two clients, each with
its own kernel lock table) from overlapping. Long tasks wait on files the test never
writes, so timing decides nothing but the bound on a deadlock."""

from __future__ import annotations

import asyncio
import itertools
import time
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


def never(path: Path) -> str:
    """A task body that waits (60 s at most) for a file the test writes only at its end: a
    Dask worker's thread goes on after its task was cancelled, and must not hold up the next
    test."""
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "never cancelled"


def processing(client: Any) -> list[str]:
    """Keys the workers are running or holding ready now."""
    return [k for keys in client.processing().values() for k in keys]


def test_a_join_with_cancel_rest_cancels_the_slow_branch_on_the_cluster(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    flow = nf.Flow("dask-quorum", store=None)
    flow.task(name="fast1")(lambda: 1)
    flow.task(name="fast2")(lambda: 2)
    stop = tmp_path / "never"

    @flow.task
    def slow() -> str:
        return never(stop)

    @flow.task(trigger=nf.at_least(2), cancel_rest=True)
    def join(fast1: int, fast2: int, slow: Any) -> list[Any]:
        return [fast1, fast2, slow]

    began = time.monotonic()
    try:
        run = flow.run(executor=executor)
    finally:
        stop.touch()
    assert time.monotonic() - began < 30
    assert run.states == {
        "fast1": "succeeded", "fast2": "succeeded", "slow": "cancelled", "join": "succeeded",
    }  # fmt: skip
    assert run.results["join"] == [1, 2, None]
    deadline = time.monotonic() + 10
    while any(k.startswith("slow-") for k in processing(client)):  # the Dask task is gone too
        assert time.monotonic() < deadline, processing(client)
        time.sleep(0.05)


def test_complete_when_with_cancel_rest_on_the_cluster(
    executor: DaskExecutor, client: Any, tmp_path: Path
) -> None:
    flow = nf.Flow("dask-probes", store=None)
    flow.task(name="items")(lambda: [0, 1, 2, 3])
    stop = tmp_path / "never"

    @flow.task(fan_out="items", complete_when="succeeded >= 2", cancel_rest=True)
    def probe(items: int) -> int:
        if items >= 2:
            never(stop)
        return items

    flow.task(name="total")(lambda probe: sum(probe))
    try:
        run = flow.run(executor=executor)
    finally:
        stop.touch()
    assert run.states == {"items": "succeeded", "probe": "succeeded", "total": "succeeded"}
    assert run.results["probe"] == [0, 1] and run.results["total"] == 1
    rows = run.timeline()
    assert sorted(rows[rows["status"] == "cancelled"]["task"]) == ["probe[2]", "probe[3]"]


def test_handle_cancel_of_one_task_and_a_switch_on_the_cluster(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    flow = nf.Flow("dask-switch", store=None)
    stop = tmp_path / "never"

    @flow.task
    def level() -> int:
        return 3

    @flow.task
    def slow() -> str:
        return never(stop)

    flow.task(name="low")(lambda: "low")
    flow.task(name="high")(lambda: "high")
    flow.switch("level >= 2", cases={True: ["high"], False: ["low"]})

    async def main() -> nf.Run:
        handle = flow.start(executor=executor)
        while getattr(handle.run.state.tasks.get("slow"), "state", None) != "running":
            await asyncio.sleep(0.02)
        handle.cancel("slow")
        return await asyncio.wait_for(handle, 60)

    try:
        run = asyncio.run(main())
    finally:
        stop.touch()
    assert run.states == {
        "level": "succeeded", "slow": "cancelled", "low": "skipped", "high": "succeeded",
    }  # fmt: skip
    assert run.status == "succeeded" and run.results["high"] == "high"


def test_lock_takes_a_distributed_lock_that_keeps_two_kernels_apart(
    client: Any, tmp_path: Path
) -> None:
    """Two executors, two clients, two kernel lock tables: only the cluster's lock can keep
    their tasks apart. Each task writes when it began and ended on its worker."""
    address = client.scheduler.address
    log = tmp_path / "spans"

    def writers(name: str) -> nf.Flow:
        flow = nf.Flow(name, store=None, locks=nf.Locks())  # a "kernel" of its own
        for i in range(2):

            def write(task: str = f"{name}{i}") -> str:
                began = time.time()
                time.sleep(0.3)
                with open(log, "a") as out:
                    out.write(f"{task} {began} {time.time()}\n")
                return task

            flow.task(name=f"w{i}", lock="db")(write)
        return flow

    first, second = DaskExecutor(address=address), DaskExecutor(address=address)
    try:

        async def main() -> list[nf.Run]:
            runs = [writers("A").arun(executor=first), writers("B").arun(executor=second)]
            return await asyncio.wait_for(asyncio.gather(*runs), 120)

        runs = asyncio.run(main())
    finally:
        first.close()
        second.close()
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    lines = [line.split() for line in log.read_text().splitlines()]
    spans = sorted((float(began), float(ended), task) for task, began, ended in lines)
    assert len(spans) == 4
    for (_, end, before), (begin, _, after) in itertools.pairwise(spans):
        assert end <= begin, f"{before} and {after} overlapped"
    lock = distributed.Lock("nbflow-lock-db", scheduler_rpc=client.scheduler, loop=client.loop)
    assert not lock.locked()  # given back
