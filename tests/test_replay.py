"""Replay: a finished run folded from its events up to any moment, and its dashboard."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest

import nbflow as nf
from nbflow.logs import LogCapture
from nbflow.render.svg import fmt_duration
from nbflow.replay import Replayer, events_from_state, recorded_events
from nbflow.widgets.replay import Replay, default_speed

NODE = re.compile(r'data-task="([^"]+)" data-state="([^"]+)"')


def node_states(replay: Replay) -> dict[str, str]:
    return dict(NODE.findall(replay._dag))


def varied_flow(store: object = None) -> nf.Flow:
    """Every kind of outcome: a retry, a fan-out with a failed element (allowed), a failure,
    a skip, an upstream failure."""
    flow = nf.Flow("varied", store=store, on_error="continue", logs=LogCapture(echo=False))
    tries = []

    @flow.task
    async def source():
        print("source starts")
        await asyncio.sleep(0.02)
        return [1, 2, 3]

    @flow.task(retry=nf.Retry(max_retries=1, delay=0.01))
    async def flaky(source):
        tries.append(1)
        for _ in nf.track(range(4)):
            await asyncio.sleep(0.005)
        if len(tries) == 1:
            raise ConnectionError("busy")
        return 1

    @flow.task(fan_out="source", allow_partial=True)
    async def each(source):
        await asyncio.sleep(0.01 * source)
        if source == 2:
            raise LookupError("no second one")
        return source

    @flow.task
    def broken(flaky):
        raise ValueError("broken on purpose")

    @flow.task
    def after(broken):
        return broken

    @flow.task(when="False")
    def never(source):
        return 0

    return flow


def summary(state: nf.run.RunState) -> tuple[object, ...]:  # type: ignore[name-defined]
    rows = [(r.task, r.attempt, r.status, round(r.start, 9), r.end and round(r.end, 9))
            for r in state.rows]  # fmt: skip
    tasks = {n: (r.state.value, r.attempts, r.reason, str(r.error)) for n, r in state.tasks.items()}
    logs = {n: [line for e in batches for line in e.lines] for n, batches in state.logs.items()}
    return state.status, rows, tasks, logs, state.finished_t


def test_events_rebuilt_from_a_runs_state_fold_into_that_state_again():
    run = varied_flow().run()
    assert run.states == {
        "source": "succeeded", "flaky": "succeeded", "each": "succeeded",
        "broken": "failed", "after": "upstream_failed", "never": "skipped",
    }  # fmt: skip
    replayer = Replayer(events_from_state(run.state))
    assert summary(replayer.seek(replayer.end)) == summary(run.state)
    assert replayer.state.tasks["broken"].traceback == run.state.tasks["broken"].traceback
    # The failed element's error and traceback, for the partial task's row in the Tasks view.
    each, replayed = run.state.tasks["each"], replayer.state.tasks["each"]
    assert replayed.element_errors == each.element_errors and each.element_errors is not None
    assert replayed.element_tracebacks == each.element_tracebacks
    assert "LookupError: no second one" in (each.element_tracebacks or {})[1]


def test_a_replayer_moves_back_and_forth_through_the_run():
    run = varied_flow().run()
    replayer = Replayer(events_from_state(run.state))
    flaky = run.state.tasks["flaky"]
    first = run.state.rows[[r.task for r in run.state.rows].index("flaky")]
    during = (first.start + first.end) / 2
    assert replayer.seek(during).tasks["flaky"].state == "running"
    assert replayer.state.tasks["broken"].state == "pending"
    second = run.state.rows[[r.task for r in run.state.rows].index("flaky") + 1 :]
    between = (first.end + next(r for r in second if r.task == "flaky").start) / 2
    assert replayer.seek(between).tasks["flaky"].state == "retrying"
    end = replayer.seek(replayer.end)
    assert end.tasks["flaky"].state == "succeeded" and end.status.value == "failed"
    again = replayer.seek(during)  # back: folded again from the start, same object
    assert again is end and again.tasks["flaky"].state == "running"
    assert again.tasks["flaky"].attempts == 1 and flaky.attempts == 2
    assert replayer.seek(-5).status.value == "running"  # clamped to the start
    assert replayer.state.shown_t == replayer.start


def test_a_stored_run_replays_its_recorded_events_progress_included(tmp_path):
    store = str(tmp_path / "s.db")
    run = varied_flow(store).run()
    events = recorded_events(run)
    progress = [e for e in events if isinstance(e, nf.TaskProgress)]
    assert len(progress) >= 2  # the history, not just the last value
    by_id = recorded_events(run.run_id, store=store)
    by_prefix = recorded_events(run.run_id[:8], store=store)
    assert [e.kind for e in by_id] == [e.kind for e in by_prefix] == [e.kind for e in events]
    replay = nf.replay(run.run_id[:8], store=store)
    assert node_states(replay)["broken"] == "failed"
    replay.close()


def test_replay_errors_name_the_problem(tmp_path):
    store = str(tmp_path / "s.db")
    with pytest.raises(nf.NbflowError, match=r"no run 'abc' in store"):
        recorded_events("abc", store=store)
    with pytest.raises(nf.NbflowError, match=r"no store to look the run up in"):
        recorded_events("abc", store=None)
    with pytest.raises(TypeError, match="replay needs a Run or a run id, not int"):
        recorded_events(42)
    flow = nf.Flow("twice", store=store)
    flow.task(name="t")(lambda: 1)
    runs = [flow.run(), flow.run()]
    common = ""
    for a, b in zip(runs[0].run_id, runs[1].run_id, strict=True):
        if a != b:
            break
        common += a
    with pytest.raises(nf.NbflowError, match=r"2 runs in store .* start with"):
        recorded_events(common, store=store)
    gate = asyncio.Event()

    @flow.task
    async def waits():
        await gate.wait()

    async def main() -> None:
        handle = flow.start()
        await asyncio.sleep(0.01)
        with pytest.raises(nf.NbflowError, match="is still going"):
            nf.replay(handle.run)
        gate.set()
        await handle

    asyncio.run(main())


def test_the_replay_dashboard_shows_the_run_at_the_slider():
    run = varied_flow().run()
    replay = nf.replay(run)
    origin = run.state.started_t
    assert replay.position == replay.duration == pytest.approx(run.state.finished_t - origin)
    assert node_states(replay)["broken"] == "failed"  # at the end first
    first = next(r for r in run.state.rows if r.task == "flaky")
    replay.seek((first.start + first.end) / 2 - origin)
    assert node_states(replay)["flaky"] == "running"
    assert node_states(replay)["broken"] == "pending"
    assert 'data-nbflow-status="running"' in replay._header
    assert "varied · replay</span>" in replay._header
    # The header's clock is the moment shown, not the wall clock.
    assert f"· {fmt_duration(replay.position)}</span>" in replay._header
    replay.position = replay.duration  # what the slider sets
    assert node_states(replay)["flaky"] == "succeeded"
    replay.tab = "table"
    replay.seek(next(r for r in run.state.rows if r.task == "source").start - origin)
    assert 'data-row-task="source" data-row-state="running"' in replay._table
    assert repr(replay) == "<nbflow.Replay flow='varied'>"
    replay.close()


def test_playing_moves_the_position_to_the_end_at_the_speed():
    run = varied_flow().run()

    async def main() -> list[float]:
        replay = nf.replay(run, speed=run.duration / 0.3, tick=0.02)  # ~0.3 s to play
        replay.play()
        assert replay.position == 0.0  # from the end: starts again
        seen = []
        for _ in range(200):
            await asyncio.sleep(0.01)
            seen.append(replay.position)
            if not replay.playing:
                break
        replay.close()
        return seen

    seen = asyncio.run(main())
    assert seen == sorted(seen) and len(set(seen)) > 3  # it moved on, step by step
    assert seen[-1] == pytest.approx(run.state.finished_t - run.state.started_t)


def test_pause_stops_where_it_is():
    run = varied_flow().run()

    async def main() -> tuple[float, float]:
        replay = nf.replay(run, speed=run.duration / 2, tick=0.01)
        replay.play()
        await asyncio.sleep(0.1)
        replay.pause()
        stopped = replay.position
        await asyncio.sleep(0.1)
        replay.close()
        return stopped, replay.position

    stopped, later = asyncio.run(main())
    assert 0 < stopped < later + 1e-9 and stopped == later


def test_speed_and_bad_arguments():
    assert default_speed(0.5) == 0.05 and default_speed(0) == 1.0 and default_speed(100) == 10.0
    run = varied_flow().run()
    with pytest.raises(ValueError, match="speed must be a positive number"):
        nf.replay(run, speed=0)
    with pytest.raises(ValueError, match="at must be within the run's"):
        nf.replay(run, at=-1)
    assert nf.replay(run, at=0).position == 0


def test_the_speed_decides_how_fast_it_plays():
    run = varied_flow().run()

    async def main() -> tuple[float, float]:
        replay = nf.replay(run, speed=run.duration / 0.5, tick=0.01)  # ~0.5 s to play
        replay.play()
        await asyncio.sleep(0.15)
        position = replay.position
        replay.close()
        return position, replay.duration

    position, duration = asyncio.run(main())
    assert 0 < position < 0.6 * duration  # (a slower machine only plays less far)


def test_a_rebuilt_cached_task_keeps_where_its_result_came_from(tmp_path):
    flow = nf.Flow("cached", store=str(tmp_path / "s.db"))
    flow.task(name="a", cache=True)(lambda: 1)
    flow.task(name="b")(lambda a: a + 1)
    flow.run()
    run = flow.run()
    replayer = Replayer(events_from_state(run.state))
    record = replayer.seek(replayer.end).tasks["a"]
    assert record.state == "cached" and record.reason == run.state.tasks["a"].reason != ""


def every_kind_flow() -> nf.Flow:
    """A loop with retries, a keyed fan-out with a retried and a failed element, a
    cancel_rest join (cancelling a running task and a pending one), a skipped task, a
    failed one and the one after it, a subflow loop, a deferred choice between two tasks
    waiting for signals, a fan-out over nothing and one failing before its first element;
    the tasks print."""
    flow = nf.Flow("kinds", store=None, on_error="continue", logs=LogCapture(echo=False))

    @flow.loop(until="result >= 3", max_iterations=5, retry=nf.Retry(max_retries=1, delay=1))
    async def refine(previous=None):
        ctx = nf.context()
        print(f"refine iteration {ctx.iteration} attempt {ctx.attempt}")
        ctx.progress(ctx.iteration, 3)
        await asyncio.sleep(1)
        if ctx.iteration == 2 and ctx.attempt == 1:
            raise ConnectionError("flaky")
        return (previous or 0) + 1

    @flow.task
    def items():
        return ["a", "b", "c"]

    @flow.task(fan_out="items", key="item", retry=nf.Retry(max_retries=1, delay=1),
               allow_partial=True)  # fmt: skip
    async def each(items):
        print("each", items, nf.context().attempt)
        await asyncio.sleep(1)
        if items == "b" and nf.context().attempt == 1:
            raise ConnectionError("retry b")
        if items == "c":
            raise ValueError("c fails for good")
        return items

    flow.task(name="empty")(lambda: [])
    flow.task(name="over_empty", fan_out="empty")(lambda empty: empty)  # a row, no element

    flow.task(name="five")(lambda: 5)
    flow.task(name="early", fan_out="five")(lambda five: five)  # 5 is no list: a row too

    for name, seconds in {"r1": 1, "r2": 2, "r3": 30}.items():

        async def replica(seconds=seconds):
            print("replica sleeps", seconds)
            await asyncio.sleep(seconds)
            return seconds

        flow.task(name=name)(replica)

    flow.task(name="r4")(lambda r3: r3)  # still pending when the join cancels it

    @flow.task(trigger=nf.at_least(2), cancel_rest=True)
    def quorum(r1, r2, r4):
        return [r1, r2, r4]

    @flow.task(when="False")
    def gated():
        return 1

    @flow.task
    def boom(items):
        print("about to fail")
        raise OSError("boom")

    @flow.task
    def after_boom(boom):
        return 2

    review = nf.any_of("approve", "reject")  # a deferred choice: one waits, one is skipped

    @flow.task(wait_for=review.on("approve"))
    def ship(approve):
        return approve

    @flow.task(wait_for=review.on("reject"))
    def refund(reject):
        return reject

    @flow.task
    async def customer():
        await asyncio.sleep(3)
        nf.context().send("approve", "ok")

    child = nf.Flow("step", store=None)

    @child.task
    async def halve(previous=None):
        await asyncio.sleep(1)
        return (8 if previous is None else previous["halve"]) // 2

    flow.loop(until=lambda ctx: ctx.result["halve"] <= 2, max_iterations=5, name="halving")(child)
    return flow


def everything(run: nf.Run) -> dict[str, object]:
    """What a replay must show of a run: rows, task states and reasons, iterations, logs."""
    state = run.state
    rows = [(r.task, r.base, r.attempt, r.status, r.element, r.start, r.end, r.worker, r.error,
             r.iteration) for r in state.rows]  # fmt: skip
    tasks = {
        n: (r.state.value, r.attempts, r.reason, repr(r.error), r.traceback, r.element_keys,
            {i: repr(e) for i, e in (r.element_errors or {}).items()}, r.elements_done,
            r.elements_failed, r.size, r.started_t, r.ended_t, r.worker)
        for n, r in state.tasks.items()
    }  # fmt: skip
    timeline = run.timeline()
    return {
        "status": (state.status, state.error, state.started_t, state.finished_t),
        "rows": rows,
        "timeline": timeline.to_dict("list"),
        "tasks": tasks,
        "iterations": dict(state.iterations),
        "logs": run.logs().to_dict("list"),
        "refine#2": run.logs("refine#2").to_dict("list"),
        "progress": dict(state.progress),
        "children": {t: [c.run_id for c in cs] for t, cs in state.children.items()},
        "signals": (state.signals, state.waiting, state.signalled),
    }


def test_a_replayed_run_without_a_store_equals_the_live_one():
    flow = every_kind_flow()
    sent: list[nf.Event] = []
    flow.subscribe(sent.append)
    live = flow.run(simulate=True)
    assert live.states == {
        "refine": "succeeded", "items": "succeeded", "each": "succeeded", "r1": "succeeded",
        "r2": "succeeded", "r3": "cancelled", "r4": "cancelled", "quorum": "succeeded",
        "gated": "skipped", "ship": "succeeded", "refund": "skipped", "customer": "succeeded",
        "boom": "failed", "after_boom": "upstream_failed", "halving": "succeeded",
        "empty": "succeeded", "over_empty": "succeeded", "five": "succeeded", "early": "failed",
    }  # fmt: skip
    seen = everything(live)
    # The flow has what the test is about (so a change to it cannot empty the comparison).
    assert [r[:4] for r in seen["rows"] if r[1] == "refine"] == [  # type: ignore[index]
        ("refine", "refine", 1, "succeeded"), ("refine#2", "refine", 1, "failed"),
        ("refine#2", "refine", 2, "succeeded"), ("refine#3", "refine", 1, "succeeded"),
    ]  # fmt: skip
    assert seen["iterations"] == {"refine": 3, "halving": 2}
    assert live.state.tasks["r3"].reason.startswith("cancel_rest: 'quorum'")
    assert live.state.tasks["r4"].reason == live.state.tasks["r3"].reason
    assert live.state.tasks["each"].element_keys == {0: "a", 1: "b", 2: "c"}
    assert "each[b]" in seen["timeline"]["task"]  # type: ignore[index]
    assert [r[3] for r in seen["rows"] if r[1] in ("over_empty", "early")] == [  # type: ignore[index]
        "succeeded", "failed",
    ]  # fmt: skip
    assert seen["refine#2"]["message"] == [  # type: ignore[index]
        "refine iteration 2 attempt 1", "refine iteration 2 attempt 2",
    ]  # fmt: skip
    assert seen["progress"] == {"refine": (1, 3, 3)}
    replay = nf.replay(live)
    try:
        assert everything(replay.run) == seen

        # The same events, kind by kind and task by task (of progress, only the last value).
        def kinds(events: list[nf.Event]) -> Counter[tuple[str, str | None]]:
            return Counter((e.kind, getattr(e, "task", None)) for e in events
                           if not isinstance(e, nf.TaskProgress))  # fmt: skip

        assert kinds(replay.replayer.events) == kinds(sent)
        # ...and at every moment the replay can show, a state the live run went through:
        # here, the second iteration waiting for its retry, then running it.
        replayer = Replayer(events_from_state(live.state))
        waiting = replayer.seek(2.5)
        assert waiting.iterations["refine"] == 2 and waiting.tasks["refine"].state == "retrying"
        assert replayer.seek(2).tasks["ship"].reason == "waiting for 'approve'"
        during = replayer.seek(3.5)
        row = during.open_rows["refine"]
        assert (row.task, row.attempt, during.tasks["refine"].state) == ("refine#2", 2, "running")
    finally:
        replay.close()
