"""In-kernel schedules: ``flow.every(...)`` runs periodically until stopped (counts, not timing)."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf
from nbflow.schedule import parse_interval


def counting_flow(name: str = "tick") -> tuple[nf.Flow, list[int]]:
    flow = nf.Flow(name, store=None)
    calls: list[int] = []

    @flow.task
    def work():
        calls.append(len(calls))
        return len(calls)

    return flow, calls


async def until(predicate, limit: int = 2000) -> None:
    """Yield to the loop until ``predicate()`` holds (bounded, so a bug fails, not hangs)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def test_schedule_runs_three_times_and_stops_by_itself():
    flow, calls = counting_flow()

    async def main():
        schedule = flow.every(0.01, max_runs=3)
        assert schedule.running
        runs = await schedule
        return schedule, runs

    schedule, runs = asyncio.run(main())
    assert len(runs) == 3 and len(calls) == 3
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert [r.results["work"] for r in runs] == [1, 2, 3]
    assert not schedule.running
    assert repr(schedule).startswith("<Schedule 'tick' every 0.01s stopped runs=3")


def test_stop_ends_the_schedule_and_no_run_starts_after():
    flow, calls = counting_flow()

    async def main():
        schedule = flow.every("10ms")
        await until(lambda: len(schedule.runs) >= 3)
        schedule.stop()
        await schedule
        seen = len(schedule.runs)
        await asyncio.sleep(0.05)  # several intervals: nothing new may start
        return schedule, seen

    schedule, seen = asyncio.run(main())
    assert seen >= 3 and len(schedule.runs) == seen == len(calls)
    assert not schedule.running
    schedule.stop()  # a second stop is harmless


def gated_flow(name: str) -> tuple[nf.Flow, asyncio.Event, dict[str, int]]:
    flow = nf.Flow(name, store=None)
    gate = asyncio.Event()
    stats = {"in_flight": 0, "peak": 0, "runs": 0}

    @flow.task
    async def slow():
        stats["in_flight"] += 1
        stats["peak"] = max(stats["peak"], stats["in_flight"])
        stats["runs"] += 1
        await gate.wait()
        stats["in_flight"] -= 1

    return flow, gate, stats


def test_overlap_skip_drops_ticks_while_a_run_is_going():
    async def main():
        flow, gate, stats = gated_flow("skipper")
        schedule = flow.every(0.01, overlap="skip")
        await until(lambda: schedule.skipped >= 3)
        assert len(schedule.runs) == 1  # the first run still holds the gate
        schedule.stop()
        gate.set()
        await schedule
        return schedule, stats

    schedule, stats = asyncio.run(main())
    assert len(schedule.runs) == 1 and stats["peak"] == 1 and schedule.pending == 0


def test_overlap_queue_runs_waiting_ticks_one_after_another():
    async def main():
        flow, gate, stats = gated_flow("queuer")
        schedule = flow.every(0.01, overlap="queue", max_runs=3)
        await until(lambda: schedule.pending == 2)
        assert len(schedule.runs) == 1 and not schedule.running  # 1 + 2 queued = max_runs
        gate.set()
        runs = await schedule
        return schedule, stats, runs

    schedule, stats, runs = asyncio.run(main())
    assert len(runs) == 3 and stats["runs"] == 3
    assert stats["peak"] == 1  # queued runs never overlap
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert schedule.pending == 0 and schedule.skipped == 0


def test_failed_runs_do_not_stop_the_schedule():
    flow = nf.Flow("flaky", store=None)

    @flow.task
    def fail():
        raise RuntimeError("nope")

    async def main():
        return await flow.every(0.01, max_runs=3)

    runs = asyncio.run(main())
    assert [r.status for r in runs] == ["failed"] * 3


def test_stop_with_cancel_cancels_the_live_run():
    async def main():
        flow, _gate, _ = gated_flow("cancelled")
        schedule = flow.every(0.01)
        await until(lambda: len(schedule.runs) == 1 and schedule.runs[0].status == "running")
        schedule.stop(cancel=True)
        await schedule
        return schedule

    schedule = asyncio.run(main())
    assert [r.status for r in schedule.runs] == ["cancelled"]


def test_every_again_replaces_the_running_schedule_of_the_flow():
    async def main():
        flow, _ = counting_flow("replaced")
        first = flow.every(0.01)
        second = flow.every(0.01, max_runs=1)
        assert not first.running and second.running
        await second
        await first
        return first, second

    first, second = asyncio.run(main())
    assert len(second.runs) == 1 and not first.running


def test_schedule_without_a_running_loop_uses_its_own_thread():
    flow, calls = counting_flow("threaded")
    schedule = flow.every(0.01, max_runs=3)
    runs = schedule.wait(timeout=30)
    assert len(runs) == 3 and len(calls) == 3 and not schedule.running


def test_schedule_passes_variables_and_checks_the_definition_first():
    flow = nf.Flow("vars", store=None)

    @flow.task
    def echo(mode):
        return mode

    with pytest.raises(nf.MissingInputError, match="parameter 'mode'"):
        flow.every(1)

    async def main():
        return await flow.every(0.01, variables={"mode": "full"}, max_runs=1)

    (run,) = asyncio.run(main())
    assert run.results == {"echo": "full"}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (2, 2.0),
        (0.5, 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        (" 2 m ", 120.0),
    ],
)
def test_parse_interval(value, seconds):
    assert parse_interval(value) == seconds


@pytest.mark.parametrize("value", ["5x", "", "m5", "5", 0, -1, True, None, "0s"])
def test_parse_interval_rejects_bad_values(value):
    with pytest.raises(nf.DefinitionError, match=r"every\("):
        parse_interval(value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"overlap": "drop"}, "overlap must be 'skip' or 'queue'"),
        ({"max_runs": 0}, "max_runs must be a positive int"),
    ],
)
def test_every_rejects_bad_options(options, match):
    flow, _ = counting_flow("opts")
    with pytest.raises(nf.DefinitionError, match=match):
        flow.every(1, **options)
