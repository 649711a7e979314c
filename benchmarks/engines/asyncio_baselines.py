"""Baselines without an orchestrator: plain asyncio (two ways) and ``graphlib`` + threads.

* ``asyncio`` — what one writes by hand: one ``asyncio.Task`` per node created up front, each
  awaiting its upstream tasks, a semaphore bounding how many run at once, ``gather`` at the end;
  retries are a ``for`` loop around the call.
* ``asyncio-rq`` — the reference every ratio is taken against: a hand-written Kahn ready queue
  (in-degree counters, a FIFO of ready nodes in definition order) that creates one
  ``asyncio.Task`` per node only when it becomes ready, at most ``max_in_flight`` at once, and
  resubmits a failed node (W5). This is the least an asyncio DAG engine must do.
* ``graphlib-threads`` — ``graphlib.TopologicalSorter`` feeding a ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import asyncio
import functools
import graphlib
import queue
import sys
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from benchmarks.engines.base import (
    AsyncNodeFn,
    Engine,
    async_node_fns,
    sinks_of,
    sync_node_fns,
    thread_pool_size,
)
from benchmarks.workloads import FlakyCounter, Workload


@dataclass
class Prepared:
    """A workload with its node callables (fresh W5 counters per repeat)."""

    workload: Workload
    fns: list[Callable[..., Any]]


def _python_version() -> dict[str, str]:
    return {"python": sys.version.split()[0]}


class AsyncioIdiomatic(Engine):
    """One task per node up front, awaiting upstream tasks; a semaphore; ``gather``."""

    name = "asyncio"
    label = "plain asyncio (idiomatic)"
    is_async = True

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Node coroutine functions (with a fresh flaky counter)."""
        return Prepared(workload, list(async_node_fns(workload, FlakyCounter(workload.n_tasks))))

    async def aexecute(self, prepared: Prepared) -> Mapping[str, int]:
        """Create every task, let each await its upstream tasks, gather them all."""
        w, fns = prepared.workload, prepared.fns
        sem = asyncio.Semaphore(w.max_in_flight)
        tasks: list[asyncio.Task[int]] = []
        attempts = w.retries + 1

        async def node(i: int) -> int:
            inputs = [await tasks[d] for d in w.deps[i]]
            async with sem:
                for attempt in range(attempts):
                    try:
                        return await fns[i](*inputs)
                    except Exception:
                        if attempt == attempts - 1:
                            raise
            raise AssertionError("unreachable")

        for i in range(w.n_tasks):  # definition order is topological: upstream tasks exist
            tasks.append(asyncio.create_task(node(i)))
        values = await asyncio.gather(*tasks)
        return sinks_of(w, values)

    def versions(self) -> dict[str, str]:
        """The interpreter version."""
        return _python_version()


class _ReadyQueueRun:
    """State of one ready-queue run; callbacks advance it, a future reports the end."""

    def __init__(self, prepared: Prepared) -> None:
        w = prepared.workload
        self.w = w
        self.fns: list[AsyncNodeFn] = prepared.fns
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()
        self.values: list[Any] = [None] * w.n_tasks
        self.remaining = [len(d) for d in w.deps]
        self.children: list[list[int]] = [[] for _ in range(w.n_tasks)]
        for i, deps in enumerate(w.deps):
            for d in deps:
                self.children[d].append(i)
        self.attempts = [0] * w.n_tasks
        self.ready = deque(i for i in range(w.n_tasks) if not self.remaining[i])
        self.in_flight = 0
        self.finished = 0

    def launch(self) -> None:
        """Start ready nodes while there is room."""
        limit, ready, deps, values = self.w.max_in_flight, self.ready, self.w.deps, self.values
        while ready and self.in_flight < limit:
            i = ready.popleft()
            task = self.loop.create_task(self.fns[i](*[values[d] for d in deps[i]]))
            task.add_done_callback(functools.partial(self.on_done, i))
            self.in_flight += 1

    def on_done(self, i: int, task: asyncio.Task[int]) -> None:
        """Record a result (or resubmit a failure), release children, refill."""
        self.in_flight -= 1
        if self.done.done():
            return
        exc = task.exception()
        if exc is not None:
            self.attempts[i] += 1
            if self.attempts[i] > self.w.retries:
                self.done.set_exception(exc)
                return
            self.ready.appendleft(i)  # resubmit at once: retry delay 0
        else:
            self.values[i] = task.result()
            self.finished += 1
            for c in self.children[i]:
                self.remaining[c] -= 1
                if not self.remaining[c]:
                    self.ready.append(c)
            if self.finished == self.w.n_tasks:
                self.done.set_result(None)
                return
        self.launch()


class AsyncioReadyQueue(Engine):
    """Kahn's algorithm on the loop: one task per node as it becomes ready (the ratio's base)."""

    name = "asyncio-rq"
    label = "asyncio ready-queue"
    is_async = True

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Node coroutine functions (with a fresh flaky counter)."""
        return Prepared(workload, list(async_node_fns(workload, FlakyCounter(workload.n_tasks))))

    async def aexecute(self, prepared: Prepared) -> Mapping[str, int]:
        """Run the ready queue until every node has finished."""
        run = _ReadyQueueRun(prepared)
        if prepared.workload.n_tasks:
            run.launch()
            await run.done
        return sinks_of(prepared.workload, run.values)

    def versions(self) -> dict[str, str]:
        """The interpreter version."""
        return _python_version()


class GraphlibThreads(Engine):
    """``graphlib.TopologicalSorter`` + ``ThreadPoolExecutor``; failed nodes are resubmitted."""

    name = "graphlib-threads"
    label = "graphlib + threads"

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Plain node functions (with a fresh flaky counter)."""
        return Prepared(workload, list(sync_node_fns(workload, FlakyCounter(workload.n_tasks))))

    def execute(self, prepared: Prepared) -> Mapping[str, int]:
        """Submit ready nodes to the pool; mark them done as their futures complete."""
        w, fns = prepared.workload, prepared.fns
        sorter: graphlib.TopologicalSorter[int] = graphlib.TopologicalSorter(
            {i: w.deps[i] for i in range(w.n_tasks)}
        )
        sorter.prepare()
        values: list[Any] = [None] * w.n_tasks
        attempts = [0] * w.n_tasks
        finished: queue.SimpleQueue[tuple[int, Future[int]]] = queue.SimpleQueue()
        with ThreadPoolExecutor(max_workers=thread_pool_size(w)) as pool:

            def submit(i: int) -> None:
                fut = pool.submit(fns[i], *[values[d] for d in w.deps[i]])

                def done(f: Future[int], i: int = i) -> None:
                    finished.put((i, f))

                fut.add_done_callback(done)

            for i in sorter.get_ready():
                submit(i)
            while sorter.is_active():
                i, fut = finished.get()
                exc = fut.exception()
                if exc is not None:
                    attempts[i] += 1
                    if attempts[i] > w.retries:
                        raise exc
                    submit(i)
                    continue
                values[i] = fut.result()
                sorter.done(i)
                for j in sorter.get_ready():
                    submit(j)
        return sinks_of(w, values)

    def versions(self) -> dict[str, str]:
        """The interpreter version."""
        return _python_version()
