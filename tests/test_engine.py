"""The asyncio engine: concurrency, ordering, retries, timeouts, errors, cancellation, events."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

import nbflow as nf
from nbflow import engine


def test_sequential_runs_by_priority_then_definition_order():
    flow = nf.Flow("seq", strategy="sequential")
    for name, priority in [("t1", 1), ("t2", 10), ("t3", 5)]:
        flow.task(name=name, priority=priority)(lambda: None)
    run = flow.run()
    assert run.timeline()["task"].tolist() == ["t2", "t3", "t1"]


def test_sequential_respects_dependencies_over_priority():
    flow = nf.Flow("seq", strategy="sequential")
    flow.task(name="low", priority=0)(lambda: 1)
    flow.task(name="high", priority=100, after=["low"])(lambda: 2)
    flow.task(name="mid", priority=50)(lambda: 3)
    assert flow.run().timeline()["task"].tolist() == ["mid", "low", "high"]


def test_max_workers_bounds_tasks_in_flight_and_is_reached():
    flow = nf.Flow("bounded", max_workers=3)
    in_flight, peak = [0], [0]

    async def work():
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1

    for i in range(20):
        flow.task(name=f"t{i}")(work)
    run = flow.run()
    assert run.status == "succeeded"
    assert peak[0] == 3


def test_sync_task_runs_off_the_loop():
    """A sync task sleeping 0.5 s does not stop an async ticker on the same loop."""
    flow = nf.Flow("threads")
    ticks = []

    @flow.task
    def blocking():
        time.sleep(0.5)
        return threading.current_thread().name

    @flow.task
    async def ticker():
        for _ in range(20):
            ticks.append(1)
            await asyncio.sleep(0.01)

    run = flow.run()
    assert run.results["blocking"].startswith("nbflow")
    assert len(ticks) == 20  # all ticks happened while the thread slept


def test_results_reach_parameters_and_variables_fill_the_rest():
    flow = nf.Flow("data")

    @flow.task
    def a():
        return 2

    @flow.task
    async def b(a, factor, offset=1):
        return a * factor + offset

    run = flow.run(variables={"factor": 10})
    assert run.results == {"a": 2, "b": 21}


def test_retry_counts_attempts_and_timeline_rows():
    flow = nf.Flow("retry")
    calls = []

    @flow.task(retry=nf.Retry(max_retries=3, delay=0.001, on=(ConnectionError,)))
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError(f"boom {len(calls)}")
        return "ok"

    events = []
    flow.subscribe(events.append)
    run = flow.run()
    assert run.results["flaky"] == "ok" and len(calls) == 3
    frame = run.timeline()
    assert frame["attempt"].tolist() == [1, 2, 3]
    assert frame["status"].tolist() == ["failed", "failed", "succeeded"]
    assert frame["error"].iloc[0] == "ConnectionError: boom 1"
    retrying = [e for e in events if isinstance(e, nf.TaskRetrying)]
    assert [e.attempt for e in retrying] == [1, 2]
    assert retrying[1].delay == pytest.approx(0.002)


def test_retry_gives_up_and_keeps_traceback():
    flow = nf.Flow("retry")

    @flow.task(retry=2)
    def always():
        raise ValueError("nope")

    run = flow.run(on_error="continue")
    assert run.status == "failed"
    assert isinstance(run.errors["always"], ValueError)
    assert "raise ValueError" in run.tracebacks["always"]
    assert len(run.timeline()) == 3


def test_non_retryable_error_fails_at_once():
    flow = nf.Flow("retry")
    calls = []

    @flow.task(retry=nf.Retry(max_retries=5, delay=0, on=(ConnectionError,)))
    def wrong():
        calls.append(1)
        raise KeyError("x")

    assert flow.run().status == "failed" and len(calls) == 1


def test_timeout_fails_the_attempt_and_is_retryable():
    flow = nf.Flow("timeouts")
    calls = []

    @flow.task(timeout=0.05, retry=nf.Retry(max_retries=1, delay=0))
    async def slow():
        calls.append(1)
        if len(calls) == 1:
            await asyncio.sleep(10)
        return "second try"

    run = flow.run()
    assert run.results["slow"] == "second try"
    frame = run.timeline()
    assert frame["status"].tolist() == ["failed", "succeeded"]
    assert "timed out after 0.05s" in frame["error"].iloc[0]


def test_timeout_without_retry_fails_with_task_timeout_error():
    flow = nf.Flow("timeouts")

    @flow.task(timeout=0.05)
    async def slow():
        await asyncio.sleep(10)

    run = flow.run()
    assert isinstance(run.errors["slow"], nf.TaskTimeoutError)
    assert isinstance(run.errors["slow"], TimeoutError)


def _failing_flow(on_error):
    flow = nf.Flow("errors", on_error=on_error, max_workers=4)

    @flow.task
    async def bad():
        await asyncio.sleep(0.01)
        raise RuntimeError("bad")

    @flow.task
    def after_bad(bad):
        return "never"

    @flow.task
    async def slow_independent():
        await asyncio.sleep(0.3)
        return "slow"

    @flow.task
    def independent_child(slow_independent):
        return "child"

    return flow


def test_on_error_stop_cancels_running_and_starts_nothing_new():
    run = _failing_flow("stop").run()
    assert run.status == "failed"
    assert run.states == {
        "bad": "failed",
        "after_bad": "upstream_failed",
        "slow_independent": "cancelled",
        "independent_child": "cancelled",
    }


def test_on_error_continue_runs_independent_branches():
    run = _failing_flow("continue").run()
    assert run.status == "failed"
    assert run.states == {
        "bad": "failed",
        "after_bad": "upstream_failed",
        "slow_independent": "succeeded",
        "independent_child": "succeeded",
    }


def test_critical_task_stops_even_under_continue():
    flow = nf.Flow("critical", on_error="continue")

    @flow.task(critical=True)
    async def vital():
        raise RuntimeError("down")

    @flow.task
    async def other():
        await asyncio.sleep(0.3)

    run = flow.run()
    assert run.states == {"vital": "failed", "other": "cancelled"}


def test_cancel_mid_run_leaves_nothing_running_or_pending():
    flow = nf.Flow("cancel", max_workers=2)
    started = []

    @flow.task
    async def first():
        started.append("first")
        await asyncio.sleep(10)

    @flow.task
    async def second():
        started.append("second")
        await asyncio.sleep(10)

    @flow.task
    async def waiting():
        started.append("waiting")

    @flow.task
    def downstream(first):
        return 1

    async def scenario():
        handle = flow.start()
        while len(started) < 2:
            await asyncio.sleep(0.005)
        assert handle.status == "running"
        handle.cancel()
        return await handle

    run = asyncio.run(scenario())
    assert run.status == "cancelled"
    assert run.states == {
        "first": "cancelled",
        "second": "cancelled",
        "waiting": "cancelled",
        "downstream": "cancelled",
    }
    assert "waiting" not in started
    assert not any(s in ("running", "pending", "queued", "retrying") for s in run.states.values())


def test_cancelling_the_awaiting_task_cancels_the_run():
    flow = nf.Flow("cancel")
    events = []
    flow.subscribe(events.append)

    @flow.task
    async def forever():
        await asyncio.sleep(10)

    async def scenario():
        task = asyncio.ensure_future(flow.arun())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    finished = [e for e in events if isinstance(e, nf.RunFinished)]
    assert [e.status for e in finished] == ["cancelled"]
    assert [e.task for e in events if isinstance(e, nf.TaskCancelled)] == ["forever"]


def test_when_false_skips_task_and_its_dependants():
    flow = nf.Flow("cond")

    @flow.task
    def mode():
        return "lite"

    @flow.task(when="mode == 'full'")
    def heavy(mode):
        return 1

    @flow.task
    def report(heavy):
        return 2

    @flow.task(when=lambda ctx: ctx.vars.get("go"))
    def gated():
        return 3

    run = flow.run(variables={"go": False})
    assert run.states == {
        "mode": "succeeded",
        "heavy": "skipped",
        "report": "skipped",
        "gated": "skipped",
    }
    assert run.status == "succeeded"
    assert flow.run(variables={"go": True}).states["gated"] == "succeeded"


def test_condition_error_at_run_time_fails_the_task():
    flow = nf.Flow("cond", on_error="continue")

    @flow.task
    def data():
        return {}

    @flow.task(when="data['missing'] > 1")
    def use(data):
        return 1

    run = flow.run()
    assert run.states["use"] == "failed"
    assert isinstance(run.errors["use"], nf.ConditionError)
    assert "KeyError" in str(run.errors["use"])


def test_events_arrive_in_order_and_a_raising_subscriber_is_harmless(caplog):
    flow = nf.Flow("events")

    @flow.task
    def a():
        return 1

    @flow.task
    def b(a):
        return a + 1

    seen = []

    def broken(event):
        raise RuntimeError("subscriber bug")

    flow.subscribe(broken)
    flow.subscribe(lambda e: seen.append((e.kind, getattr(e, "task", None))))
    with caplog.at_level(logging.ERROR, logger="nbflow.events"):
        run = flow.run()
    assert run.status == "succeeded" and run.results["b"] == 2
    assert seen == [
        ("RunStarted", None),
        ("TaskQueued", "a"),
        ("TaskStarted", "a"),
        ("TaskSucceeded", "a"),
        ("TaskQueued", "b"),
        ("TaskStarted", "b"),
        ("TaskSucceeded", "b"),
        ("RunFinished", None),
    ]
    assert "subscriber bug" in caplog.text


@pytest.mark.parametrize("simulate", [False, True])
def test_a_subscriber_raising_cancelled_error_is_its_own_error_not_the_tasks(caplog, simulate):
    """A subscriber that reads a cancelled future raises CancelledError: logged, harmless."""
    flow = nf.Flow("events", store=None)
    flow.task(name="extract")(lambda: 1)
    flow.task(name="load")(lambda extract: extract + 1)

    def reads_a_cancelled_future(event):
        if event.kind == "TaskSucceeded":
            raise asyncio.CancelledError()

    flow.subscribe(reads_a_cancelled_future)
    with caplog.at_level(logging.ERROR, logger="nbflow.events"):
        run = flow.run(simulate=simulate)
    assert run.status == "succeeded" and run.results["load"] == 2
    assert "reads_a_cancelled_future" in caplog.text


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_subscriber_raising_an_interrupt_cancels_the_run_cleanly_then_raises_it(stop):
    """Not the task's failure: the run ends cancelled (as an interrupt would end it), every
    task of it over, and the interrupt reaches the caller after that. (It used to escape
    from the task's attempt: the task the event was about was failed, its dependants
    upstream_failed, the run failed.)"""
    flow = nf.Flow("interrupted-by-subscriber", store=None)
    cleaned: list[str] = []

    @flow.task
    async def slow():
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("slow")

    @flow.task
    def fast():
        return 1

    flow.task(name="after")(lambda fast: fast)

    def stops(event):
        if event.kind == "TaskSucceeded" and event.task == "fast":
            raise stop()

    flow.subscribe(stops)
    with pytest.raises(stop):
        flow.run()
    run = flow.last_run
    assert run is not None and run.status == "cancelled"
    assert run.states == {"slow": "cancelled", "fast": "succeeded", "after": "cancelled"}
    assert cleaned == ["slow"]


def test_unsubscribe_stops_delivery():
    flow = nf.Flow("events")
    flow.task(name="a")(lambda: 1)
    seen = []
    unsubscribe = flow.subscribe(seen.append)
    flow.run()
    count = len(seen)
    unsubscribe()
    flow.run()
    assert len(seen) == count > 0


def test_run_attributes_and_repr():
    flow = nf.Flow("attrs")
    flow.task(name="a")(lambda: time.sleep(0.02) or 1)
    started = time.monotonic()
    run = flow.run()
    elapsed = time.monotonic() - started
    assert len(run.run_id) == 32 and run.flow_version == flow.flow_version
    # Measured from outside: the run lasts as long as its task at least, and no longer
    # than the call (`>= 0` held whatever the code did: the duration is a max(0, ...)).
    assert 0.02 <= run.duration <= elapsed
    assert repr(run) == "<Run 'attrs' succeeded done=1/1 failed=0>"
    frame = run.timeline()
    assert list(frame.columns)[:8] == [
        "task",
        "attempt",
        "status",
        "start",
        "end",
        "duration_s",
        "worker",
        "error",
    ]
    assert frame["end"].iloc[0] >= frame["start"].iloc[0]


def test_arun_and_start_from_async_code():
    flow = nf.Flow("async")

    @flow.task
    async def a():
        return 5

    async def scenario():
        run = await flow.arun()
        handle = flow.start()
        second = await handle
        return run, second, handle

    run, second, handle = asyncio.run(scenario())
    assert run.results == second.results == {"a": 5}
    assert handle.status == "succeeded" and handle.done()


def test_start_without_a_loop_runs_in_a_thread_and_wait_returns():
    flow = nf.Flow("thread")

    @flow.task
    async def a():
        await asyncio.sleep(0.01)
        return 1

    handle = flow.start()
    run = handle.wait(timeout=10)
    assert run.status == "succeeded" and run.results == {"a": 1}


def test_empty_flow_succeeds():
    assert nf.Flow("empty").run().status == "succeeded"


def test_definition_errors_are_raised_before_any_task_runs():
    flow = nf.Flow("early")
    ran = []

    @flow.task
    def fine():
        ran.append(1)

    @flow.task(after=["nope"])
    def broken():
        ran.append(2)

    with pytest.raises(nf.MissingDependencyError):
        flow.run()
    with pytest.raises(nf.MissingDependencyError):
        flow.start()
    assert ran == []


def test_a_run_leaves_the_garbage_collector_as_it_found_it(monkeypatch):
    import gc

    monkeypatch.delenv("NBFLOW_GC_FREEZE", raising=False)
    flow = nf.Flow("gc", store=None)
    seen = []
    flow.task(name="probe")(lambda: seen.append((gc.get_freeze_count(), gc.get_threshold())))
    before = (gc.get_freeze_count(), gc.get_threshold())
    flow.validate()
    flow.run()
    assert seen == [before] and (gc.get_freeze_count(), gc.get_threshold()) == before


def test_freezing_the_garbage_collector_is_an_opt_in(monkeypatch):
    import gc

    flow = nf.Flow("gc-opt-in", store=None)
    seen = []
    flow.task(name="probe")(lambda: seen.append(gc.get_freeze_count()))
    gc.unfreeze()  # what an interpreter or a test before froze (Python 3.12 may have some)
    flow.run()
    assert seen == [0]  # by default, left alone
    monkeypatch.setenv("NBFLOW_GC_FREEZE", "1")
    flow.run()
    assert seen[1] > 0 and gc.get_freeze_count() == 0  # frozen during the run, not after


def test_a_freeze_of_someone_elses_is_left_alone(monkeypatch):
    import gc

    monkeypatch.setenv("NBFLOW_GC_FREEZE", "1")
    flow = nf.Flow("gc-theirs", store=None)
    seen = []
    flow.task(name="probe")(lambda: seen.append(gc.get_freeze_count()))
    keep = [[] for _ in range(100)]
    gc.freeze()  # the user's own freeze: nbflow can only unfreeze everything, so it must not
    try:
        before = gc.get_freeze_count()
        flow.run()
        flow.validate()
        # Nothing more frozen during the run, and the user's freeze still there after (a few
        # of its objects may have been freed meanwhile; an unfreeze would leave none).
        assert seen[0] <= before and 0.9 * before < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()
    del keep


def test_results_mapping_is_built_once_per_state_change():
    flow = nf.Flow("results-cache", store=None)
    flow.task(name="a")(lambda: 1)
    run = flow.run()
    assert run.results is run.results
    assert run.results == {"a": 1}


def test_a_big_run_of_tiny_tasks_warns_that_overhead_dominates():
    flow = nf.Flow("tiny", store=None)

    async def nothing():
        return None

    for i in range(1200):
        flow.task(name=f"t{i}")(nothing)
    with pytest.warns(nf.OverheadWarning, match="1200 attempts with a median of"):
        flow.run()


def test_small_or_simulated_runs_do_not_warn(recwarn):
    small = nf.Flow("small", store=None)
    for i in range(50):
        small.task(name=f"t{i}")(lambda: None)
    small.run()
    big = nf.Flow("simulated", store=None)
    for i in range(1200):
        big.task(name=f"t{i}")(lambda: None)
    big.run(simulate=True)
    assert not [w for w in recwarn if issubclass(w.category, nf.OverheadWarning)]


def test_a_subscriber_may_unsubscribe_while_events_are_published():
    flow = nf.Flow("unsubscribe", store=None)
    flow.task(name="a")(lambda: 1)
    seen = []

    def once(event):
        unsubscribe()

    unsubscribe = flow.subscribe(once)
    flow.subscribe(seen.append)
    flow.run()
    assert seen[0].kind == "RunStarted"  # the second subscriber missed nothing


def test_handle_knows_its_run_id_before_the_run_starts():
    flow = nf.Flow("handle-id", store=None)
    flow.task(name="a")(lambda: 1)

    async def scenario():
        handle = flow.start()
        run_id = handle.run_id
        run = await handle
        return run_id, run.run_id

    early, final = asyncio.run(scenario())
    assert early == final and len(early) == 32


# -- runners: one asyncio task runs many nbflow tasks in turn --------------------------------


def _counting_task_factory(counter: list[int]):
    def factory(loop, coro, **kwargs):
        counter[0] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    return factory


def _instant_flow(n: int, **flow_options) -> nf.Flow:
    flow = nf.Flow("instant", store=None, **flow_options)

    async def leaf() -> int:
        return 1

    for i in range(n):
        flow.task(name=f"t{i}")(leaf)
    return flow


@pytest.mark.parametrize("max_workers", [None, 8])
def test_instant_tasks_share_a_few_asyncio_tasks(max_workers):
    flow = _instant_flow(2000, max_workers=max_workers)
    created = [0]

    async def main():
        asyncio.get_running_loop().set_task_factory(_counting_task_factory(created))
        return await flow.arun()

    run = asyncio.run(main())
    assert run.status == "succeeded"
    assert sum(run.results.values()) == 2000
    # One asyncio task per nbflow task would be 2,000; runners double per loop turn.
    assert created[0] < 100


def test_tasks_that_wait_still_all_run_at_once():
    # Every task waits at a barrier that opens only when all 40 are waiting: the run ends
    # only if 40 runners exist at the same time.
    flow = nf.Flow("barrier", store=None)
    barrier: list[asyncio.Barrier] = []

    async def meet() -> int:
        if not barrier:
            barrier.append(asyncio.Barrier(40))
        await barrier[0].wait()
        return 1

    for i in range(40):
        flow.task(name=f"t{i}")(meet)

    async def main():
        return await asyncio.wait_for(flow.arun(), timeout=30)

    assert asyncio.run(main()).status == "succeeded"


def _run_counting_loop_turns(flow: nf.Flow) -> tuple[nf.Run, int]:
    """Run ``flow`` next to a coroutine that counts its own turns; (run, turns during it)."""
    ticks = [0]

    async def main():
        async def ticker():
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks[0]
        run = await flow.arun()
        ticking.cancel()
        return run, ticks[0] - before

    return asyncio.run(main())


@pytest.mark.parametrize("max_workers", [1, 8])
def test_a_long_burst_of_instant_tasks_lets_the_loop_run(monkeypatch, max_workers):
    # Each runner yields to the loop once per TIME_SLICE of work. With a slice of 0 it yields
    # after every task, so the loop turns about once per task per runner: 2,000 / 8 = 250
    # times or more. Without the yield it turns only while runners are spawned (5 times
    # here), which the old bound (>= 2 turns, with the real slice) let pass.
    monkeypatch.setattr(engine, "TIME_SLICE", 0.0)
    run, during = _run_counting_loop_turns(_instant_flow(2000, max_workers=max_workers))
    assert run.status == "succeeded"
    assert during >= 2000 / max_workers / 2


class _SteppingLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves on 0.1 ms each time it is read: the engine's time
    slices measured in clock reads, the same on any machine."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        self.now += 1e-4
        return self.now


def test_the_runners_share_one_time_slice_per_loop_turn():
    # However many runners a burst of instant tasks has, the loop turns once per slice of
    # the run's clock, from the first task on: the first runner back from its yield starts
    # the turn's slice, the others run one task each and yield again, and no runner is added
    # while some merely yield. (Each runner back starting a slice of its own, and a runner
    # added each turn, made turns last a slice per runner: 32 runners, 150 ms without a
    # timer, a widget or the store's tick.)
    flow = _instant_flow(4000)
    gaps: list[float] = []
    started = []
    flow.subscribe(lambda event: isinstance(event, nf.TaskStarted) and started.append(1))

    async def main():
        loop = asyncio.get_running_loop()

        async def ticker():
            last = loop.time()
            while True:
                await asyncio.sleep(0)
                now = loop.time()
                if started:  # (queueing 4,000 tasks as the run starts is one step)
                    gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        run = await flow.arun()
        ticking.cancel()
        return run

    loop = _SteppingLoop()
    try:
        run = loop.run_until_complete(main())
    finally:
        loop.close()
    assert run.status == "succeeded"
    assert len(gaps) > 20 and max(gaps) < 2 * engine.TIME_SLICE


def test_timeouts_inside_and_around_tasks_after_a_burst_on_one_runner():
    flow = nf.Flow("timeouts", store=None, max_workers=1, on_error="continue")

    async def instant() -> int:
        return 1

    for i in range(50):
        flow.task(name=f"i{i}")(instant)

    @flow.task(priority=-1)
    async def own_timeout() -> str:
        # asyncio.timeout binds to the current asyncio task: it must be this task's runner
        # and must cancel only this await, not the run.
        try:
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "not timed out"

    @flow.task(priority=-2, timeout=0.01)
    async def engine_timeout() -> None:
        await asyncio.sleep(5)

    @flow.task(priority=-3)
    async def after_them() -> str:
        return "ran"

    run = flow.run()
    assert run.results["own_timeout"] == "timed out"
    assert run.states["engine_timeout"] == "failed"
    assert isinstance(run.errors["engine_timeout"], nf.TaskTimeoutError)
    assert run.results["after_them"] == "ran"
    assert sum(run.results[f"i{i}"] for i in range(50)) == 50


def test_cancel_during_a_burst_leaves_nothing_pending_or_running():
    # Task t1500 cancels the run while runners go through 3,000 instant tasks; a slow task
    # is surely still running then. Which instant tasks ran before the cancel depends on how
    # the runners interleaved; that each ended succeeded or cancelled, and nothing else,
    # does not.
    flow = nf.Flow("burst", store=None)
    handles: list[nf.RunHandle] = []

    async def instant() -> int:
        return 1

    async def cancel_the_run() -> int:
        handles[0].cancel()
        return 1

    @flow.task
    async def slow() -> None:
        await asyncio.sleep(60)

    for i in range(3000):
        flow.task(name=f"t{i}")(cancel_the_run if i == 1500 else instant)

    async def main():
        handles.append(flow.start())
        return await asyncio.wait_for(handles[0], timeout=30)

    run = asyncio.run(main())
    assert run.status == "cancelled"
    states = run.states
    assert set(states.values()) <= {"succeeded", "cancelled"}
    assert states["slow"] == "cancelled" and states["t0"] == "succeeded"


def test_tasks_ready_together_are_all_placed_before_any_starts():
    # A task reading its machine's load at start sees every task placed in the same step
    # (runners take placed tasks one after another, but placement is all at once).
    pool = nf.Pool({"a": 2})
    flow = nf.Flow("placed", pool=pool, store=None)
    seen: list[int] = []

    async def read_load(worker):
        seen.append(pool.in_flight[worker])
        await asyncio.sleep(0.05)

    flow.task(name="first")(read_load)
    flow.task(name="second")(read_load)
    assert flow.run().status == "succeeded"
    assert seen == [2, 2]


def test_instant_retries_without_delay_still_let_the_loop_run(monkeypatch):
    import nbflow.attempts

    monkeypatch.setattr(nbflow.attempts, "TIME_SLICE", 0.0)  # every retry is past its slice
    flow = nf.Flow("spin", store=None)

    @flow.task(retry=nf.Retry(max_retries=100, delay=0))
    async def always_fails() -> None:
        raise ValueError("no")

    run, during = _run_counting_loop_turns(flow)
    assert run.states["always_fails"] == "failed"
    assert run.timeline()["attempt"].max() == 101
    assert during >= 100  # the loop ran between every two attempts


def test_add_done_callback_calls_back_once_the_run_is_over_before_its_awaiter_resumes():
    flow = nf.Flow("ends", store=None)
    seen: list[str] = []

    @flow.task
    async def a():
        await asyncio.sleep(0.01)
        return 1

    async def main():
        handle = flow.start()
        engine = handle.engine
        assert not engine.add_done_callback(lambda: seen.append("early"))  # not started yet
        await asyncio.sleep(0)
        assert engine.add_done_callback(lambda: seen.append(engine.state.status.value))
        run = await handle
        seen.append("awaiter")
        assert not engine.add_done_callback(lambda: seen.append("late"))  # the run is over
        return run

    run = asyncio.run(main())
    assert run.status == "succeeded" and seen == ["succeeded", "awaiter"]


def test_nothing_of_a_run_waits_in_the_loop_after_it_returns():
    """Runners' done callbacks run before ``arun`` returns: the loop holds no handle to the
    engine afterwards, so a run's engine (and its plan) is freed at once, not during
    whatever the loop runs next (the next run, in a script that runs flows back to back)."""
    import gc

    from nbflow.engine import Engine

    flow = nf.Flow("left-behind", store=None, max_workers=4)
    for i in range(8):
        flow.task(name=f"t{i}")(lambda: None)

    async def main() -> list[Engine]:
        await flow.arun()
        # no await since: what is still alive is what something other than the loop's
        # next turn would have to free
        return [
            o
            for o in gc.get_objects()
            if isinstance(o, Engine) and o.plan.flow_name == "left-behind"
        ]

    enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # freed by reference counting, or not at all
    try:
        assert asyncio.run(main()) == []
    finally:
        if enabled:
            gc.enable()


def test_the_end_of_a_run_with_a_large_result_leaves_the_loop_running(tmp_path):
    """The store writes a 50 MB result while the loop goes on: to prove it, the database is
    kept locked by another connection until a ticker coroutine, counting loop turns after
    the run's end, lets go. A run whose end waited synchronously could never return (the
    ticker would never run); here it returns with the ticks counted and the run recorded."""
    import sqlite3

    from nbflow.store.codecs import BytesSerializer

    class WhereDumped(BytesSerializer):
        """The built-in bytes serialiser, noting the thread that serialises."""

        name = "bytes-noted"
        threads: list[str] = []

        def dump(self, value, file):
            self.threads.append(threading.current_thread().name)
            super().dump(value, file)

    path = tmp_path / "large.db"
    store = nf.SQLiteStore(path)
    store.serializers.register(WhereDumped())
    flow = nf.Flow("large-result", store=store)

    @flow.task
    def big():
        return bytes(50_000_000)

    async def main() -> tuple[nf.Run, dict[str, int], list[str]]:
        blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        seen: dict[str, int] = {"ticks": 0}
        released: list[str] = []

        def on_event(event: nf.Event) -> None:
            if isinstance(event, nf.TaskStarted):
                blocker.execute("BEGIN IMMEDIATE")  # nobody else writes until COMMIT
            elif isinstance(event, nf.RunFinished):
                seen["finished at"] = seen["ticks"]

        async def ticker() -> None:
            while True:
                seen["ticks"] += 1
                at = seen.get("finished at")
                if at is not None and seen["ticks"] - at == 20:
                    blocker.execute("COMMIT")
                    released.append("by the ticker")
                await asyncio.sleep(0)

        flow.subscribe(on_event)
        ticking = asyncio.ensure_future(ticker())
        run = await flow.arun()
        seen["returned at"] = seen["ticks"]
        ticking.cancel()
        blocker.close()
        return run, seen, released

    run, seen, released = asyncio.run(main())
    assert run.status == "succeeded" and run.recorded
    assert released == ["by the ticker"]
    assert seen["returned at"] - seen["finished at"] >= 20
    assert len(run.results["big"]) == 50_000_000
    assert WhereDumped.threads and "MainThread" not in WhereDumped.threads  # not on the loop


@pytest.mark.parametrize("path", ["plain", "full"])
def test_a_plain_task_behaves_as_on_the_attempt_loop(path):
    """A plain task (async, no retry, no timeout, no gate) takes a short path
    (attempts.run_plain); a retry policy that never retries sends it through the attempt
    loop. Both must give the same run: context, results, errors, own CancelledError."""
    options = {} if path == "plain" else {"retry": nf.Retry(max_retries=0)}
    flow = nf.Flow("short-path", store=None, on_error="continue")
    seen = []

    @flow.task(**options)
    async def ok():
        ctx = nf.context()
        seen.append((ctx.task, ctx.attempt, ctx.element))
        return 41

    @flow.task(**options)
    async def plus_one(ok):
        return ok + 1

    @flow.task(**options)
    async def broken():
        raise ValueError("no good")

    @flow.task(**options)
    async def cancels_itself():
        raise asyncio.CancelledError()

    run = flow.run()
    from nbflow.attempts import plain_tasks

    assert len(plain_tasks(flow.validate())) == (4 if path == "plain" else 0)
    assert seen == [("ok", 1, None)]
    assert run.results == {"ok": 41, "plus_one": 42}
    assert run.states["broken"] == "failed" and str(run.errors["broken"]) == "no good"
    assert run.states["cancels_itself"] == "failed"
    assert [r["attempt"] for r in run.timeline().to_dict("records")] == [1, 1, 1, 1]
