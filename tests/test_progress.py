"""Progress inside a task: nf.track and ctx.progress become throttled TaskProgress events."""

from __future__ import annotations

import asyncio
import time

import pytest

import nbflow as nf
from nbflow.logs import LogCapture


def progress_events(flow: nf.Flow) -> list[nf.TaskProgress]:
    events: list[nf.Event] = []
    flow.subscribe(events.append)
    flow.run()
    return [e for e in events if isinstance(e, nf.TaskProgress)]


def test_track_reports_items_done_of_the_total_throttled():
    flow = nf.Flow("track", store=None, logs=LogCapture(interval=0.05))

    @flow.task
    def crunch():
        for _ in nf.track(range(40)):
            time.sleep(0.005)  # ~0.2 s in all: a few updates, not 40

    found = progress_events(flow)
    assert 2 <= len(found) < 20
    assert [(e.task, e.attempt, e.total) for e in found] == [("crunch", 1, 40)] * len(found)
    dones = [e.done for e in found]
    assert dones == sorted(dones) and dones[-1] == 40  # the last one is sent as it ends


def test_track_async_iterable_and_unknown_total():
    flow = nf.Flow("atrack", store=None, logs=LogCapture(interval=0.02))

    async def pages():
        for i in range(5):
            await asyncio.sleep(0.02)
            yield i

    @flow.task
    async def fetch():
        return [p async for p in nf.track(pages())]

    found = progress_events(flow)
    assert found[-1].done == 5 and found[-1].total is None


def test_ctx_progress_by_hand_on_the_run_state():
    flow = nf.Flow("byhand", store=None, logs=LogCapture(interval=0.02))
    seen = []

    @flow.task
    async def steps():
        ctx = nf.context()
        for done in (1, 2, 3):
            ctx.progress(done, 3)
            await asyncio.sleep(0.05)
            seen.append(flow.last_run.state.progress.get("steps"))

    run = flow.run()
    assert seen[-1] == (1, 3, 3)  # live on the run's state while it ran
    assert run.state.progress["steps"] == (1, 3, 3)


def test_progress_of_fan_out_elements_is_kept_per_element():
    flow = nf.Flow("elements", store=None)

    @flow.task
    def items():
        return [2, 3]

    @flow.task(fan_out="items")
    def each(items):
        for _ in nf.track(range(items)):
            pass

    run = flow.run()
    assert run.state.progress[("each", 0)] == (1, 2, 2)
    assert run.state.progress[("each", 1)] == (1, 3, 3)


def test_track_outside_a_task_only_iterates():
    assert list(nf.track([1, 2, 3])) == [1, 2, 3]
    assert len(nf.track([1, 2, 3])) == 3
    with pytest.raises(TypeError, match="has no len"):
        len(nf.track(iter([1])))


def test_bad_progress_values():
    flow = nf.Flow("bad", store=None)

    @flow.task
    def wrong():
        nf.context().progress(-1, 10)

    run = flow.run()
    assert "done must be a number >= 0, not -1" in str(run.errors["wrong"])
    with pytest.raises(ValueError, match="total must be a number >= 0"):
        nf.track([], total="ten")
