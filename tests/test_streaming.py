"""Streaming fan-out (nbflow.streams): elements start as their source produces them.

Times are read on the simulated clock (run-clock seconds of each timeline row); orderings in
real runs are forced with events, never with timings.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import nbflow as nf
from nbflow.clock import run_simulated


def times(run: nf.Run) -> dict[str, tuple[float, float | None]]:
    """Timeline label -> (start, end) in run-clock seconds (the last attempt's)."""
    return {r.task: (r.start, r.end) for r in run.state.rows}


def chained(n: int = 10) -> nf.Flow:
    """A generator yielding one item a second, a 2 s stage over it, a 1 s stage over that,
    and a task that takes the whole list."""
    flow = nf.Flow("chained", store=None)

    @flow.task
    async def source():
        for i in range(n):
            await asyncio.sleep(1)
            yield i

    @flow.task(fan_out="source")
    async def stage1(source):
        await asyncio.sleep(2)
        return source * 10

    @flow.task(fan_out="stage1")
    async def stage2(stage1):
        await asyncio.sleep(1)
        return stage1 + 1

    @flow.task
    def total(stage2):
        return sum(stage2)

    return flow


def test_chained_fan_outs_stream_element_by_element():
    run = chained().run(simulate=True)
    assert run.status == "succeeded"
    assert run.results["source"] == list(range(10))
    assert run.results["stage2"] == [10 * i + 1 for i in range(10)]
    t = times(run)
    # Element i arrives at i + 1, stage 1 runs it 2 s, stage 2 takes it as it succeeds.
    for i in range(10):
        assert t[f"stage1[{i}]"] == (i + 1, i + 3)
        assert t[f"stage2[{i}]"] == (i + 3, i + 4)
    assert t["stage2[0]"][0] < t["stage1[9]"][1]  # no barrier between the stages
    assert t["stage1[0]"][0] < t["source"][1]  # nor between the generator and stage 1
    # A task that takes the whole list waits for every element.
    assert t["total"][0] == t["stage2[9]"][1] == 13
    why = run.explain("stage1")
    assert "source (streaming its elements into it, then succeeded at 10.000s)" in why
    assert "It became ready at 0.000s" in why  # as the generator began, before its first item


def test_a_whole_list_consumer_of_a_producer_waits_for_it_while_a_fan_out_streams():
    flow = chained(3)

    @flow.task
    def count(source):
        return len(source)

    run = flow.run(simulate=True)
    t = times(run)
    assert t["stage1[0]"][0] == 1 and t["count"][0] == t["source"][1] == 3
    assert run.results["count"] == 3


@pytest.mark.parametrize("kind", ["sync generator", "returned iterator", "async iterator"])
def test_every_kind_of_iterator_streams(kind: str):
    flow = nf.Flow(f"kinds-{kind}", store=None)
    if kind == "sync generator":

        @flow.task
        def source():
            yield from range(4)

    elif kind == "returned iterator":

        @flow.task
        def source():
            return iter(range(4))

    else:

        class Ticks:
            def __init__(self) -> None:
                self.i = 0

            def __aiter__(self) -> Ticks:
                return self

            async def __anext__(self) -> int:
                if self.i == 4:
                    raise StopAsyncIteration
                await asyncio.sleep(1)
                self.i += 1
                return self.i - 1

        @flow.task
        def source():
            return Ticks()

    @flow.task(fan_out="source")
    async def each(source):
        await asyncio.sleep(5)
        return source

    run = flow.run(simulate=True)
    assert run.results["source"] == [0, 1, 2, 3]  # the result is the list of what it yielded
    assert run.results["each"] == [0, 1, 2, 3]
    if kind == "async iterator":
        t = times(run)
        assert [t[f"each[{i}]"][0] for i in range(4)] == [1, 2, 3, 4]


def test_a_sync_generator_in_a_thread_streams_to_its_consumer():
    """A real run: the generator blocks until element 0 has run, which only streaming
    allows (with a barrier the generator would wait forever: its wait gives up)."""
    flow = nf.Flow("threads", store=None)
    first_ran = threading.Event()
    seen: list[Any] = []

    @flow.task
    def source():
        yield 0
        seen.append(first_ran.wait(timeout=30))
        yield 1

    @flow.task(fan_out="source")
    def each(source):
        if source == 0:
            first_ran.set()
        return source

    run = flow.run()
    assert run.status == "succeeded" and run.results["each"] == [0, 1]
    assert seen == [True]  # element 0 ran while the generator was still producing


def test_a_generator_task_without_a_fan_out_gives_its_list():
    flow = nf.Flow("plain-gen", store=None)

    @flow.task
    def numbers():
        yield from (1, 2, 3)

    @flow.task
    def total(numbers):
        return sum(numbers)

    run = flow.run()
    assert run.results == {"numbers": [1, 2, 3], "total": 6}


def test_a_task_returning_a_list_is_read_when_it_has_finished():
    flow = nf.Flow("listed", store=None)

    @flow.task
    async def items():
        await asyncio.sleep(3)
        return [1, 2]

    @flow.task(fan_out="items")
    async def each(items):
        return items

    run = flow.run(simulate=True)
    assert times(run)["each[0]"][0] == 3 and run.results["each"] == [1, 2]


def test_a_consumer_also_waits_for_its_other_upstream_tasks():
    flow = chained(4)

    @flow.task
    async def config():
        await asyncio.sleep(2.5)
        return 100

    @flow.task(fan_out="source")
    async def scaled(source, config):
        return source * config

    @flow.task
    async def slow_config():
        await asyncio.sleep(10)
        return 1

    @flow.task(fan_out="source")
    async def late(source, slow_config):
        return source * slow_config

    run = flow.run(simulate=True)
    t = times(run)
    # Items 0 and 1 arrived before config ended: they start at 2.5, the others on arrival.
    assert [t[f"scaled[{i}]"][0] for i in range(4)] == [2.5, 2.5, 3, 4]
    assert run.results["scaled"] == [0, 100, 200, 300]
    # The generator ended (at 4) before slow_config: its end is not counted a second time.
    assert [t[f"late[{i}]"][0] for i in range(4)] == [10] * 4
    assert run.results["late"] == [0, 1, 2, 3]


def test_a_condition_reading_the_producer_makes_a_barrier():
    flow = chained(3)

    @flow.task(fan_out="source", when="len(source) > 0")
    async def guarded(source):
        return source

    run = flow.run(simulate=True)
    t = times(run)
    assert t["stage1[0]"][0] == 1  # streams
    assert t["guarded[0]"][0] == t["source"][1] == 3  # waits for the whole list


def test_a_producer_that_fails_mid_stream_stops_its_consumers():
    flow = nf.Flow("broken", store=None, on_error="continue")
    started: list[int] = []

    @flow.task
    async def source():
        for i in range(10):
            await asyncio.sleep(1)
            if i == 3:
                raise ConnectionError("feed lost")
            yield i

    @flow.task(fan_out="source")
    async def each(source):
        started.append(source)
        await asyncio.sleep(2.5)
        return source

    @flow.task
    def after(each):
        return each

    run = flow.run(simulate=True)
    assert run.status == "failed"
    assert run.states == {"source": "failed", "each": "upstream_failed", "after": "upstream_failed"}
    assert started == [0, 1, 2]  # no element starts once the source failed (at 4)...
    rows = {r.task: r.status for r in run.state.rows}
    # ...and those in flight run to their end.
    assert [rows[f"each[{i}]"] for i in range(3)] == ["succeeded"] * 3
    assert "upstream 'source' ended failed while streaming" in run.state.tasks["each"].reason
    assert times(run)["each[2]"][1] == 5.5  # the consumer ended after its last element


def test_a_retried_generator_delivers_each_item_once():
    flow = nf.Flow("retried", store=None)
    attempts: list[int] = []
    seen: list[int] = []

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    async def source():
        attempts.append(1)
        for i in range(5):
            await asyncio.sleep(1)
            if i == 3 and len(attempts) == 1:
                raise ConnectionError("flaky")
            yield i

    @flow.task(fan_out="source")
    async def each(source):
        seen.append(source)
        return source

    run = flow.run(simulate=True)
    assert run.status == "succeeded" and len(attempts) == 2
    assert run.results["each"] == [0, 1, 2, 3, 4]
    assert sorted(seen) == [0, 1, 2, 3, 4]  # 0, 1, 2 yielded twice, run once


def test_max_workers_bounds_the_elements_of_a_stream():
    flow = nf.Flow("bounded", store=None, max_workers=3)
    in_flight, peak = [0], [0]

    @flow.task
    async def source():
        for i in range(12):
            await asyncio.sleep(0.1)
            yield i

    @flow.task(fan_out="source")
    async def each(source):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(10)
        in_flight[0] -= 1
        return source

    run = flow.run(simulate=True)
    assert run.results["each"] == list(range(12)) and peak[0] == 3
    # The generator holds one slot while it produces: two are left for its elements.
    ended = times(run)["source"][1]
    assert ended == pytest.approx(1.2)
    assert sorted(s for s, _ in (times(run)[f"each[{i}]"] for i in range(12)) if s < ended) == [
        0.1,
        0.2,
    ]


def test_concurrency_and_a_pool_bound_a_streamed_fan_out():
    pool = nf.Pool({"a": 1, "b": 1})
    flow = nf.Flow("pooled", store=None, pool=pool)
    in_flight, peak, workers = [0], [0], set()

    @flow.task
    async def source():
        for i in range(6):
            await asyncio.sleep(0.1)
            yield i

    @flow.task(fan_out="source")
    async def first(source, worker):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        workers.add(worker)
        await asyncio.sleep(10)
        in_flight[0] -= 1
        return source

    @flow.task(fan_out="first", concurrency=1)
    async def second(first):
        await asyncio.sleep(0.5)
        return first

    run = flow.run(simulate=True)
    assert run.results["second"] == list(range(6))
    assert peak[0] == 2 and workers == {"a", "b"}
    ended = times(run)["source"][1]  # the generator held one worker until then
    assert [s for s, _ in (times(run)[f"first[{i}]"] for i in range(6)) if s < ended] == [0.1]
    starts = sorted(r.start for r in run.state.rows if r.base == "second")
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(starts))  # one at a time


def test_complete_when_with_cancel_rest_ends_an_endless_stream():
    flow = nf.Flow("endless", store=None)
    closed: list[str] = []

    @flow.task
    async def feed():
        i = 0
        try:
            while True:
                await asyncio.sleep(1)
                yield i
                i += 1
        finally:
            closed.append("feed")

    @flow.task(fan_out="feed", complete_when="succeeded >= 3", cancel_rest=True)
    async def probe(feed):
        await asyncio.sleep(0.5)
        return feed

    run = flow.run(simulate=True)
    assert run.status == "succeeded"
    assert run.results["probe"] == [0, 1, 2]
    assert run.states == {"feed": "cancelled", "probe": "succeeded"}
    assert closed == ["feed"]  # the generator was closed: its finally ran
    assert "cancel_rest: 'probe' completed" in run.state.tasks["feed"].reason
    assert times(run)["probe[2]"][1] == 3.5


def test_complete_when_without_cancel_rest_leaves_the_producer_running():
    flow = chained(6)

    @flow.task(fan_out="source", complete_when="succeeded >= 2")
    async def first_two(source):
        return source

    run = flow.run(simulate=True)
    assert run.results["first_two"] == [0, 1] and run.states["source"] == "succeeded"


def test_complete_when_total_is_none_while_the_source_streams():
    flow = chained(3)

    @flow.task(fan_out="source", complete_when="done == total")
    async def all_of_them(source):
        return source

    @flow.task(fan_out="source", complete_when="succeeded >= total")
    async def compares(source):
        return source

    run = flow.run(simulate=True, on_error="continue")
    # `done == total` is false while total is None: the task runs every element.
    assert run.results["all_of_them"] == [0, 1, 2]
    error = run.errors["compares"]
    assert isinstance(error, nf.ConditionError) and "'total': None" in str(error)


def test_a_producer_cancelled_on_its_own_skips_its_consumers():
    flow = chained(10)

    @flow.task
    async def stopper():
        await asyncio.sleep(4.5)
        nf.context().cancel("source")

    run = flow.run(simulate=True)
    assert run.status == "succeeded"
    assert run.states["source"] == "cancelled" and run.states["stage1"] == "skipped"
    assert run.states["stage2"] == "skipped" and run.states["total"] == "skipped"
    started = sorted(int(r.task[7:-1]) for r in run.state.rows if r.base == "stage1")
    assert started == [0, 1, 2, 3]


def test_cancelling_the_run_mid_stream_closes_the_generator():
    """On the simulated clock (a sync generator blocked in its thread: the next test)."""
    flow = nf.Flow("cancel-mid-stream", store=None)
    log: list[str] = []

    @flow.task
    async def source():
        try:
            for i in range(100):
                await asyncio.sleep(1)
                log.append(f"yield {i}")
                yield i
        finally:
            log.append("closed")

    @flow.task(fan_out="source", concurrency=2)
    async def each(source):
        log.append(f"start {source}")
        await asyncio.sleep(10)
        return source

    async def main() -> nf.Run:
        handle = flow.start()

        def cancel_at_third(event: nf.Event) -> None:
            if isinstance(event, nf.TaskStarted) and event.element == 2:
                handle.cancel()  # element 2 starts now; none after it may

        flow.subscribe(cancel_at_third)
        return await handle

    run = run_simulated(main())
    assert run.status == "cancelled"
    assert run.states == {"source": "cancelled", "each": "cancelled"}
    assert log[-1] == "closed" and log.count("closed") == 1  # its finally ran, once
    assert [e for e in log if e.startswith("start")] == ["start 0", "start 1", "start 2"]


def test_cancelling_a_run_closes_a_sync_generator_blocked_in_its_thread():
    """A real run: the generator's next() is under way in a thread when the run is
    cancelled; it is closed in that thread as soon as next() returns."""
    flow = nf.Flow("blocked", store=None)
    release, closed = threading.Event(), threading.Event()
    kept: list[Iterator[int]] = []  # a reference: the generator is not closed by the GC

    def numbers() -> Iterator[int]:
        try:
            yield 0
            release.wait(timeout=30)
            yield 1
        finally:
            closed.set()

    @flow.task
    def source():
        kept.append(numbers())
        return kept[-1]

    @flow.task(fan_out="source")
    async def each(source):
        return source

    async def main() -> nf.Run:
        handle = flow.start()

        def cancel_after_first(event: nf.Event) -> None:
            if isinstance(event, nf.TaskSucceeded) and event.element == 0:
                handle.cancel()
                release.set()

        flow.subscribe(cancel_after_first)
        return await handle

    run = asyncio.run(main())
    assert run.status == "cancelled"
    assert closed.wait(timeout=10)


def test_flows_without_fan_out_keep_the_engine_s_short_path():
    """Streaming costs a flow without fan-out nothing: its async tasks stay plain."""
    flow = nf.Flow("plain", store=None)

    @flow.task
    async def a():
        return 1

    @flow.task
    async def b(a):
        return a + 1

    plan = flow.plan()
    from nbflow.attempts import plain_tasks
    from nbflow.streams import stream_consumers, streamers

    assert plain_tasks(plan) == {"a", "b"}
    assert streamers(plan) == frozenset() and stream_consumers(plan) == {}


def test_which_tasks_stream_to_which():
    flow = chained(2)

    @flow.task(fan_out="source", trigger="all_done")
    async def other_rule(source):
        return source

    @flow.task(fan_out="source", after=["source"])
    async def ordered(source):
        return source

    @flow.task(fan_out={"x": "source"})
    async def whole_too(x, source):
        return x

    from nbflow.streams import stream_consumers, streamers

    plan = flow.plan()
    assert stream_consumers(plan) == {"source": ("stage1",), "stage1": ("stage2",)}
    assert streamers(plan) == {"source"}  # stage1 is a fan-out: its elements stream


def test_iterators_other_than_files_are_read_out():
    from nbflow.streams import is_stream_value

    assert is_stream_value(iter([1])) and is_stream_value(x for x in ())
    assert not is_stream_value([1]) and not is_stream_value(range(3))
    with open(__file__) as handle:
        assert not is_stream_value(handle)


def _gen() -> Iterator[int]:
    yield 1


def test_a_generator_task_is_refused_on_a_remote_executor():
    flow = nf.Flow("remote-gen", store=None)
    flow.task(name="gen")(_gen)

    class Remote:
        remote_results = True

    with pytest.raises(nf.DefinitionError, match=r"task 'gen' is a generator function"):
        flow.run(executor=Remote())
