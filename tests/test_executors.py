"""LocalExecutor: sync calls in worker threads with batched hand-back to the loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from nbflow.executors import LocalExecutor

REQUEST = contextvars.ContextVar("request", default="none")


def test_sync_calls_run_in_worker_threads_and_return_in_order():
    executor = LocalExecutor(threads=4)

    async def scenario():
        calls = [
            executor.call("t", lambda i=i: (i, threading.current_thread().name), {}, is_async=False)
            for i in range(50)
        ]
        return await asyncio.gather(*calls)

    try:
        results = asyncio.run(scenario())
    finally:
        executor.close()
    assert [i for i, _ in results] == list(range(50))
    names = {name for _, name in results}
    assert all(name.startswith("nbflow-") for name in names) and len(names) <= 4


def test_errors_are_raised_in_the_awaiting_task():
    executor = LocalExecutor()

    def boom():
        raise KeyError("missing")

    async def scenario():
        with pytest.raises(KeyError, match="missing"):
            await executor.call("t", boom, {}, is_async=False)

    asyncio.run(scenario())
    executor.close()


def test_context_variables_reach_the_thread():
    executor = LocalExecutor()

    async def scenario():
        REQUEST.set("abc")
        return await executor.call("t", REQUEST.get, {}, is_async=False)

    assert asyncio.run(scenario()) == "abc"
    executor.close()


def test_a_timed_out_call_is_discarded_and_later_calls_still_work():
    executor = LocalExecutor(threads=1)
    release = threading.Event()

    def slow():
        release.wait(5)
        return "late"

    async def scenario():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(executor.call("t", slow, {}, is_async=False), 0.05)
        release.set()
        return await executor.call("t", lambda: "next", {}, is_async=False)

    assert asyncio.run(scenario()) == "next"
    executor.close()


def test_one_executor_serves_successive_event_loops():
    executor = LocalExecutor(threads=2)

    async def scenario(value):
        return await executor.call("t", lambda: value * 2, {}, is_async=False)

    assert [asyncio.run(scenario(v)) for v in (1, 2, 3)] == [2, 4, 6]
    executor.close()


def test_threads_are_reused_not_spawned_per_call():
    executor = LocalExecutor(threads=8)

    async def scenario():
        for _ in range(30):
            await executor.call("t", lambda: time.sleep(0), {}, is_async=False)

    asyncio.run(scenario())
    assert len(executor._workers) == 1  # sequential calls: one thread, reused
    executor.close()


def test_began_gets_the_moment_the_body_starts_not_the_moment_it_was_queued():
    """With one thread, the second call waits for the first: its ``began`` comes after the
    first body's end (time.sleep never returns early), though both were queued at once."""
    executor = LocalExecutor(threads=1)
    began: list[list[float]] = [[], []]

    async def scenario():
        queued = time.monotonic()
        calls = [
            executor.call("t", lambda: time.sleep(0.05), {}, is_async=False, began=began[i])
            for i in range(2)
        ]
        await asyncio.gather(*calls)
        return queued

    try:
        queued = asyncio.run(scenario())
    finally:
        executor.close()
    assert len(began[0]) == len(began[1]) == 1
    assert queued <= began[0][0] and began[1][0] - began[0][0] >= 0.05 - 1e-9
