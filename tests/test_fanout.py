"""Fan-out / fan-in: sliding window, order, rate, per-element retries, partial results."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf
from nbflow.fanout import ElementOutcome, sliding_window, window


def test_standalone_fan_out_keeps_input_order_and_aggregates():
    async def double(x):
        await asyncio.sleep(0.01 * (5 - x))  # later items finish first
        return x * 2

    values = asyncio.run(nf.fan_out(double, range(5), concurrency=3))
    assert values == [0, 2, 4, 6, 8]
    assert asyncio.run(nf.fan_out(double, range(5), concurrency=2, aggregate=sum)) == 20


def test_standalone_fan_out_runs_sync_functions_and_reports_failures():
    def check(x):
        if x % 2:
            raise ValueError(f"odd {x}")
        return x

    with pytest.raises(ExceptionGroup, match="2 of 4 fan-out elements failed") as info:
        asyncio.run(nf.fan_out(check, range(4), concurrency=2))
    assert sorted(str(e) for e in info.value.exceptions) == ["odd 1", "odd 3"]
    mixed = asyncio.run(nf.fan_out(check, range(4), return_exceptions=True))
    assert mixed[0] == 0 and isinstance(mixed[1], ValueError)


def test_slow_element_does_not_hold_back_the_window():
    """With concurrency 2 and element 0 slow, elements 1..5 all start while 0 still runs."""
    starts, ends = {}, {}
    clock = [0]

    async def work(x):
        clock[0] += 1
        starts[x] = clock[0]
        await asyncio.sleep(0.3 if x == 0 else 0.01)
        clock[0] += 1
        ends[x] = clock[0]
        return x

    asyncio.run(nf.fan_out(work, range(6), concurrency=2))
    assert all(starts[i] < ends[0] for i in range(1, 6))  # a batch of 2 would wait for 0


def test_window_never_exceeds_concurrency():
    in_flight, peak = [0], [0]

    async def work(x):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.005)
        in_flight[0] -= 1

    asyncio.run(nf.fan_out(work, range(30), concurrency=4))
    assert peak[0] == 4


def test_rate_limit_spaces_starts_on_the_virtual_clock():
    flow = nf.Flow("rate", store=None)

    @flow.task
    def items():
        return list(range(5))

    @flow.task(fan_out="items", concurrency=5, rate=2.0)
    async def each(items):
        return items

    run = flow.run(simulate=True)
    frame = run.timeline()
    starts = frame[frame["task"].str.startswith("each[")]["start"]
    gaps = starts.diff().dropna().dt.total_seconds().round(6).tolist()
    assert gaps == [0.5, 0.5, 0.5, 0.5]


def _fan_flow(allow_partial=False, retry=None):
    flow = nf.Flow("fan", store=None, on_error="continue")
    calls = {}

    @flow.task
    def numbers():
        return [1, 2, 3, 4]

    @flow.task(fan_out="numbers", concurrency=2, allow_partial=allow_partial, retry=retry)
    async def square(numbers):
        calls[numbers] = calls.get(numbers, 0) + 1
        if numbers == 3 and calls[numbers] < 2:
            raise OSError("flaky element")
        if numbers == 4:
            raise ValueError("bad element")
        return numbers * numbers

    @flow.task
    def total(square):
        return sum(square)

    return flow, calls


def test_fan_in_receives_the_list_and_elements_retry_on_their_own():
    flow, calls = _fan_flow(
        allow_partial=True, retry=nf.Retry(max_retries=1, delay=0, on=(OSError,))
    )
    run = flow.run()
    assert run.results["square"] == [1, 4, 9]
    assert run.results["total"] == 14
    assert calls == {1: 1, 2: 1, 3: 2, 4: 1}
    assert list(run.element_errors["square"]) == [3]
    frame = run.timeline()
    rows = frame[frame["base_task"] == "square"]
    assert sorted(zip(rows["task"], rows["attempt"], rows["status"], strict=True)) == [
        ("square[0]", 1, "succeeded"),
        ("square[1]", 1, "succeeded"),
        ("square[2]", 1, "failed"),
        ("square[2]", 2, "succeeded"),
        ("square[3]", 1, "failed"),
    ]


def test_element_failure_fails_the_task_without_allow_partial():
    flow, _ = _fan_flow(retry=nf.Retry(max_retries=1, delay=0, on=(OSError,)))
    run = flow.run()
    assert run.states["square"] == "failed" and run.states["total"] == "upstream_failed"
    assert "1 of 4 fan-out elements failed" in str(run.errors["square"])


def test_fan_out_over_a_non_iterable_fails_with_a_clear_error():
    flow = nf.Flow("fan", store=None)

    @flow.task
    def number():
        return 5

    @flow.task(fan_out="number")
    def each(number):
        return number

    run = flow.run()
    error = str(run.errors["each"])
    assert "fan_out='number': upstream result 'number' (int) is not iterable" in error


def test_fan_out_of_an_empty_list_yields_an_empty_list():
    flow = nf.Flow("fan", store=None)
    flow.task(name="nothing")(lambda: [])
    flow.task(name="each", fan_out="nothing")(lambda nothing: nothing)
    assert flow.run().results["each"] == []


def test_standalone_fan_out_retries_each_element_on_its_own():
    calls: dict[int, int] = {}

    async def flaky(x):
        calls[x] = calls.get(x, 0) + 1
        if x == 1 and calls[x] < 3:
            raise OSError(f"again {x}")
        return x * 10

    policy = nf.Retry(max_retries=2, delay=0)
    assert asyncio.run(nf.fan_out(flaky, range(3), retry_policy=policy)) == [0, 10, 20]
    assert calls == {0: 1, 1: 3, 2: 1}
    calls.clear()
    with pytest.raises(ExceptionGroup):  # one retry is not enough (the default policy's 3 are)
        asyncio.run(nf.fan_out(flaky, range(3), retry_policy=nf.Retry(max_retries=1, delay=0)))
    assert calls == {0: 1, 1: 2, 2: 1}
    calls.clear()
    with pytest.raises(ExceptionGroup):  # without a policy, no retry
        asyncio.run(nf.fan_out(flaky, range(3)))
    assert calls == {0: 1, 1: 1, 2: 1}


def test_standalone_fan_out_notes_the_failed_elements_or_returns_their_errors():
    def check(x):
        if x == 2:
            raise ValueError("two")
        return x

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(nf.fan_out(check, range(3)))
    (error,) = info.value.exceptions
    assert error.__notes__ == ["nbflow.fan_out: element 2"]
    values = asyncio.run(nf.fan_out(check, range(3), return_exceptions=True))
    assert values[:2] == [0, 1] and isinstance(values[2], ValueError)


def test_standalone_fan_out_spaces_starts_by_rate():
    starts: list[float] = []

    async def record(x):
        starts.append(asyncio.get_running_loop().time())
        return x

    began: list[float] = []

    async def main():
        began.append(asyncio.get_running_loop().time())
        return await nf.fan_out(record, range(3), concurrency=3, rate=20.0)  # one per 50 ms

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [0, 1, 2]
    # Start i never comes before i intervals after the call (a lower bound: a loaded machine
    # only makes starts later; a late start lets the next catch up, so gaps may be shorter).
    late = [start - began[0] - i * 0.05 for i, start in enumerate(starts)]
    assert len(starts) == 3 and all(x >= -0.005 for x in late), late


def test_sliding_window_reports_each_element_with_its_index():
    error = KeyError("b")

    async def run_one(index, item):
        if item == "b":
            raise error
        return item.upper()

    outcomes = asyncio.run(sliding_window(["a", "b", "c"], run_one, concurrency=2))
    assert outcomes == [
        ElementOutcome(0, True, "A"),
        ElementOutcome(1, False, error=error),
        ElementOutcome(2, True, "C"),
    ]


def test_standalone_fan_out_refuses_a_concurrency_below_one_before_any_element_runs():
    ran: list[int] = []
    for concurrency in (0, -2):
        with pytest.raises(ValueError) as info:
            asyncio.run(nf.fan_out(ran.append, range(3), concurrency=concurrency))
        assert str(info.value) == (
            f"nbflow.fan_out: concurrency={concurrency}, but at most 0 elements at once would "
            "run none; give a whole number of at least 1, or None to run every element at once"
        )
    assert ran == []
    assert asyncio.run(nf.fan_out(ran.append, range(3), concurrency=1)) == [None] * 3
    assert ran == [0, 1, 2]


def test_standalone_fan_out_an_element_raising_cancelled_error_fails_as_an_element():
    """An element's own CancelledError is its failure (not the window's cancellation): an
    ExceptionGroup cannot hold a CancelledError, so a RuntimeError stands for it."""

    async def check(x):
        if x == 1:
            raise asyncio.CancelledError("gave up")
        return x

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(nf.fan_out(check, range(3)))
    (error,) = info.value.exceptions
    assert type(error) is RuntimeError and str(error) == "the element raised CancelledError"
    assert isinstance(error.__cause__, asyncio.CancelledError)
    assert error.__notes__ == ["nbflow.fan_out: element 1"]
    values = asyncio.run(nf.fan_out(check, range(3), return_exceptions=True))
    assert values[0] == 0 and values[2] == 2
    assert str(values[1]) == "the element raised CancelledError"


class StopAfter:
    """An ``until`` that stops the window after ``n`` outcomes (see fanout.Until)."""

    def __init__(self, n: int, cancel_rest: bool = False) -> None:
        self.n, self.cancel_rest, self.told, self.settled = n, cancel_rest, [], 0

    def holds(self, outcome):
        self.told.append(outcome if outcome is None else outcome.index)
        return len(self.told) - 1 == self.n

    async def settle(self):
        self.settled += 1


def test_sliding_window_stops_starting_elements_once_until_holds():
    started: list[int] = []

    async def run_one(index, item):
        started.append(index)
        return item

    until = StopAfter(1)
    outcomes = asyncio.run(sliding_window("abc", run_one, concurrency=1, until=until))
    assert outcomes == [ElementOutcome(0, True, "a")] and started == [0]
    assert until.told == [None, 0] and until.settled == 1
    at_once = StopAfter(0)  # holds before any element starts
    assert asyncio.run(sliding_window("abc", run_one, until=at_once)) == []
    assert started == [0] and at_once.told == [None]


def test_window_closes_a_streaming_source_however_it_ends():
    closed: list[str] = []

    async def source(name):
        try:
            for index, item in enumerate("abc"):
                yield index, item
        finally:
            closed.append(name)

    async def run_one(index, item):
        return item

    async def main():
        # (asyncio.run would close them at its end anyway: look before it does)
        everything = await window(source("all"), run_one, concurrency=2)
        stopped = await window(source("stopped"), run_one, concurrency=1, until=StopAfter(1))
        unread = source("never")  # a generator's `finally` runs only once it has begun
        assert await anext(unread) == (0, "a")
        never = await window(unread, run_one, until=StopAfter(0))
        return everything, stopped, never, list(closed)

    everything, stopped, never, seen = asyncio.run(main())
    assert [o.value for o in everything] == ["a", "b", "c"]
    assert [o.value for o in stopped] == ["a"] and never == []
    assert seen == ["all", "stopped", "never"]


def test_a_bad_element_of_a_streaming_source_cancels_the_elements_in_flight():
    cancelled: list[str] = []

    async def source():
        yield 0, "slow"
        raise ValueError("element 1 could not be read")

    async def run_one(index, item):
        try:
            await asyncio.Event().wait()  # runs until cancelled
        except asyncio.CancelledError:
            cancelled.append(item)
            raise

    async def main():  # (the guard turns a window that waits forever into a failure)
        return await asyncio.wait_for(window(source(), run_one, concurrency=2), 10)

    with pytest.raises(ValueError, match="could not be read"):
        asyncio.run(main())
    assert cancelled == ["slow"]


def test_a_fan_out_that_runs_no_element_still_has_its_row_in_the_timeline():
    """Its rows are its elements' otherwise: over nothing, or failing before its first
    element, it gets one row of its own, so the timeline lists every task that ran."""
    flow = nf.Flow("elementless", store=None, on_error="continue")  # bad must not stop each
    flow.task(name="nothing")(lambda: [])
    flow.task(name="number")(lambda: 3)
    flow.task(name="each", fan_out="nothing")(lambda nothing: nothing)
    flow.task(name="bad", fan_out="number")(lambda number: number)
    run = flow.run()
    assert run.states["each"] == "succeeded" and run.results["each"] == []
    assert run.states["bad"] == "failed"
    rows = {row.task: row for row in run.state.rows}
    assert set(rows) == {"nothing", "number", "each", "bad"}
    assert (rows["each"].status, rows["each"].element) == ("succeeded", None)
    assert rows["bad"].status == "failed" and "not iterable" in rows["bad"].error
    assert rows["each"].start <= rows["each"].end
