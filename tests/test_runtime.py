"""A run leaves its host process as it found it (#19, nbflow.runtime, nbflow.collector).

A blocking ``flow.run()`` inside a running loop (a notebook cell) re-enters that loop: the
loop, its class and asyncio are not patched, before, during or after; the cell's own task is
the current task again afterwards; other coroutines of the loop keep running meanwhile. The
garbage collector is left alone unless ``NBFLOW_GC_FREEZE=1``. A real ipykernel is driven in
``test_kernel_runs.py``; this runs the same code path in a plain asyncio loop.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.tasks
import gc
import sys
from typing import Any

import pytest

import nbflow as nf

pytestmark = pytest.mark.timeout(120)


def small_flow(name: str = "host") -> nf.Flow:
    flow = nf.Flow(name, store=None)

    @flow.task
    async def first():
        await asyncio.sleep(0.01)
        return 1

    @flow.task
    def second(first):
        return list(range(first + 1))

    @flow.task(fan_out="second")
    async def third(second):
        return second

    return flow


def asyncio_surface(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """What a library could patch in asyncio and in a running loop."""
    return {
        "Task": asyncio.Task,
        "tasks.Task": asyncio.tasks.Task,
        "Future": asyncio.Future,
        "run": asyncio.run,
        "get_event_loop": asyncio.get_event_loop,
        "get_running_loop": asyncio.get_running_loop,
        "_get_running_loop": asyncio.events._get_running_loop,
        "_enter_task": asyncio.tasks._enter_task,
        "_leave_task": asyncio.tasks._leave_task,
        "current_task": asyncio.current_task,
        "loop class": type(loop),
        "loop class methods": {k: v for k, v in vars(type(loop)).items() if callable(v)},
        "base methods": {k: v for k, v in vars(asyncio.BaseEventLoop).items() if callable(v)},
        "loop attributes": set(vars(loop)),
        "policy": type(asyncio.get_event_loop_policy()),
    }


def gc_settings() -> tuple[bool, tuple[int, ...], int]:
    return gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()


def test_a_blocking_run_in_a_running_loop_patches_nothing():
    seen: dict[str, Any] = {}

    async def cell() -> None:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        before = asyncio_surface(loop)
        ticks: list[int] = []

        async def ticker() -> None:  # a widget's updates, say: they go on during the run
            while True:
                ticks.append(len(ticks))
                await asyncio.sleep(0.001)

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        at_start = len(ticks)
        run = small_flow().run()  # blocks this cell; the loop is re-entered
        seen["ticks during the run"] = len(ticks) - at_start
        seen["status"] = run.status
        seen["unchanged"] = asyncio_surface(loop) == before
        seen["current task"] = asyncio.current_task() is me
        ticking.cancel()

    asyncio.run(cell())
    assert seen == {
        "ticks during the run": seen["ticks during the run"],
        "status": "succeeded",
        "unchanged": True,
        "current task": True,
    }
    assert seen["ticks during the run"] > 0
    assert "nest_asyncio2" not in sys.modules and "nest_asyncio" not in sys.modules


def test_a_blocking_run_from_a_plain_loop_callback_patches_nothing():
    """ipykernel may run a cell from a callback rather than a task: no current task."""
    seen: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        before = asyncio_surface(loop)
        done = loop.create_future()

        def cell() -> None:
            seen["status"] = small_flow().run().status
            seen["current task"] = asyncio.current_task()
            done.set_result(None)

        loop.call_soon(cell)
        await done
        seen["unchanged"] = asyncio_surface(loop) == before

    asyncio.run(main())
    assert seen == {"status": "succeeded", "current task": None, "unchanged": True}


@pytest.mark.parametrize("how", ["run", "arun", "cancelled", "failed", "simulated"])
def test_a_run_leaves_the_garbage_collector_alone(how: str, monkeypatch):
    monkeypatch.delenv("NBFLOW_GC_FREEZE", raising=False)
    flow = small_flow("gc")
    during: list[tuple[bool, tuple[int, ...], int]] = []

    @flow.task
    async def probe():
        during.append(gc_settings())
        if how == "failed":
            raise ValueError("down")
        if how == "cancelled":
            await asyncio.sleep(3600)

    before = gc_settings()
    flow.validate()
    if how == "run":
        flow.run()
    elif how == "simulated":
        flow.run(simulate=True)
    elif how == "failed":
        assert flow.run().status == "failed"
    else:

        async def main() -> None:
            if how == "arun":
                await flow.arun()
                return
            handle = flow.start()
            while not during:
                await asyncio.sleep(0.001)
            handle.cancel()
            assert (await handle).status == "cancelled"

        asyncio.run(main())
    assert during == [before]
    assert gc_settings() == before
