"""Fan-out / fan-in: sliding window, order, rate, per-element retries, partial results."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import nbflow as nf
from nbflow.fanout import ElementOutcome, sliding_window


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

    async def main():
        return await nf.fan_out(record, range(3), concurrency=3, rate=20.0)  # one per 50 ms

    assert asyncio.run(asyncio.wait_for(main(), 5)) == [0, 1, 2]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.04 for gap in gaps), gaps


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
