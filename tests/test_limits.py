"""Limits that compose (#19, nbflow.limits): max_workers bounds everything in flight, fan-out
elements included; each element takes its own pool slot; runs sharing a pool are served in
the order they waited and never wait forever on each other.

Concurrency is counted (a peak of bodies in flight), order is recorded; nothing is timed.
Waits that could hang are bounded with ``asyncio.wait_for``, so a deadlock fails the test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

import nbflow as nf

pytestmark = pytest.mark.timeout(120)
HANG = 30  # seconds: only ever reached by a deadlock


class Peak:
    """Counts bodies in flight (from any thread), the peak, and the peak per worker."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.per_worker: Counter[str] = Counter()
        self.worker_peak: Counter[str] = Counter()
        self.lock = threading.Lock()

    def enter(self, worker: str | None = None) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            if worker is not None:
                self.per_worker[worker] += 1
                self.worker_peak[worker] = max(self.worker_peak[worker], self.per_worker[worker])

    def leave(self, worker: str | None = None) -> None:
        with self.lock:
            self.now -= 1
            if worker is not None:
                self.per_worker[worker] -= 1


def fan_out_flow(peak: Peak, *, sync: bool, **options: Any) -> nf.Flow:
    """50 elements and an independent task, all counted in one peak."""
    flow = nf.Flow("wide", store=None, **options)

    @flow.task
    def items():
        return list(range(50))

    if sync:

        @flow.task(fan_out="items")
        def each(items):
            worker = nf.context().worker
            peak.enter(worker)
            time.sleep(0.002)
            peak.leave(worker)
            return items

    else:

        @flow.task(fan_out="items")
        async def each(items):
            worker = nf.context().worker
            peak.enter(worker)
            await asyncio.sleep(0.002)
            peak.leave(worker)
            return items

    @flow.task
    async def independent():
        worker = nf.context().worker
        peak.enter(worker)
        await asyncio.sleep(0.02)
        peak.leave(worker)

    return flow


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_max_workers_bounds_fan_out_elements_and_tasks_together(sync: bool):
    peak = Peak()
    run = fan_out_flow(peak, sync=sync, max_workers=2).run()
    assert run.status == "succeeded" and run.results["each"] == list(range(50))
    assert peak.peak == 2  # not 50, and not 3 with the independent task


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_each_fan_out_element_takes_its_own_pool_slot(sync: bool):
    peak = Peak()
    pool = nf.Pool({"a": 2, "b": 1})
    run = fan_out_flow(peak, sync=sync, pool=pool).run()
    assert run.status == "succeeded" and run.results["each"] == list(range(50))
    assert peak.peak == 3  # the pool's capacity, reached
    assert peak.worker_peak == {"a": 2, "b": 1}  # and each worker's
    assert pool.in_flight == {"a": 0, "b": 0}


def test_a_pool_bounds_below_max_workers_and_max_workers_below_a_pool():
    for max_workers, capacity, expected in [(5, 3, 3), (2, 3, 2)]:
        peak = Peak()
        pool = nf.Pool({"w": capacity})
        assert (
            fan_out_flow(peak, sync=False, pool=pool, max_workers=max_workers).run().status
            == "succeeded"
        )
        assert peak.peak == expected


# -- runs sharing a pool ------------------------------------------------------------------


def holding_flow(name: str, pool: nf.Pool, order: list[str], hold: asyncio.Event | None, n=1):
    """``n`` tasks, each logging its start; with ``hold``, each waits for it."""
    flow = nf.Flow(name, store=None, pool=pool)
    for i in range(n):

        async def body(task: str = f"{name}{i}") -> str:
            order.append(task)
            if hold is not None:
                await hold.wait()
            return task

        flow.task(name=f"{name}{i}")(body)
    return flow


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_runs_sharing_an_exhausted_pool_all_finish_in_the_order_they_waited():
    async def main() -> list[str]:
        pool = nf.Pool(1)
        order: list[str] = []
        release = asyncio.Event()
        first = holding_flow("A", pool, order, release).start()
        await turns()
        second = holding_flow("B", pool, order, None, n=2).start()  # waits first
        await turns()
        third = holding_flow("C", pool, order, None, n=2).start()  # waits second
        await turns()
        assert order == ["A0"]
        release.set()
        runs = await asyncio.wait_for(asyncio.gather(first, second, third), HANG)
        assert [r.status for r in runs] == ["succeeded"] * 3
        assert pool.in_flight == {"w0": 0}
        return order

    # B waited longest, then C; B's second task waits behind C's first.
    assert asyncio.run(main()) == ["A0", "B0", "C0", "B1", "C1"]


def test_a_worker_handed_to_a_run_that_ended_goes_back_to_the_pool():
    """A was releasing the only worker to B, which waited for it, as B was cancelled: the
    worker must not stay with the ended run, or every later run of the pool hangs."""

    async def main() -> None:
        pool = nf.Pool(1)
        order: list[str] = []
        release = asyncio.Event()
        first = holding_flow("A", pool, order, release).start()
        await turns()
        second = holding_flow("B", pool, order, None).start()
        await turns()
        release.set()
        second.cancel()
        runs = await asyncio.wait_for(asyncio.gather(first, second), HANG)
        assert [r.status for r in runs] == ["succeeded", "cancelled"]
        later = holding_flow("C", pool, order, None)
        assert (await asyncio.wait_for(later.arun(), HANG)).status == "succeeded"
        assert order == ["A0", "C0"] and pool.in_flight == {"w0": 0}

    asyncio.run(main())


def test_a_run_waiting_for_a_tagged_worker_also_takes_any_worker_for_its_other_tasks():
    """B waits for the gpu worker for one task and for any worker for another: the cpu
    worker, when A frees it, goes to B's other task at once (A's gpu task waits for that)."""

    async def main() -> None:
        pool = nf.Pool({"gpu-0": 1, "cpu-0": 1}, tags={"gpu-0": ["gpu"]})
        order: list[str] = []
        release_cpu, b_any_started = asyncio.Event(), asyncio.Event()
        holder = nf.Flow("A", store=None, pool=pool)

        @holder.task(worker="gpu")
        async def a_gpu():
            order.append("a_gpu")
            await b_any_started.wait()

        @holder.task(worker="cpu-0")
        async def a_cpu():
            order.append("a_cpu")
            await release_cpu.wait()

        waiter = nf.Flow("B", store=None, pool=pool)

        @waiter.task(worker="gpu", priority=1)  # asks first
        async def b_gpu():
            order.append("b_gpu")

        @waiter.task
        async def b_any():
            order.append("b_any")
            b_any_started.set()

        first = holder.start()
        await turns()
        second = waiter.start()
        await turns()
        release_cpu.set()
        runs = await asyncio.wait_for(asyncio.gather(first, second), HANG)
        assert [r.status for r in runs] == ["succeeded", "succeeded"]
        assert order == ["a_gpu", "a_cpu", "b_any", "b_gpu"]

    asyncio.run(main())


def test_runs_on_threads_sharing_a_pool_never_hang():
    """Runs started without a loop each get a loop in a thread; they share one worker."""
    pool = nf.Pool(1)
    peak = Peak()

    def flow(i: int) -> nf.Flow:
        made = nf.Flow(f"threaded-{i}", store=None, pool=pool)
        for t in range(20):

            async def body() -> None:
                peak.enter()
                await asyncio.sleep(0)
                peak.leave()

            made.task(name=f"t{t}")(body)
        return made

    handles = [flow(i).start() for i in range(4)]
    runs = [handle.wait(HANG) for handle in handles]
    assert [r.status for r in runs] == ["succeeded"] * 4
    assert peak.peak == 1 and pool.in_flight == {"w0": 0}
