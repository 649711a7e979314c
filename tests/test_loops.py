"""Loops (nbflow.loops, nbflow.iterations): flow.loop(until=, max_iterations=). Each
iteration's rows and times on the simulated clock, the stop condition (expression and
callable), the bound as a clear failure, retries inside an iteration, a loop of a subflow,
the store keeping the last result, and bad definitions refused before any task runs."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf

pytestmark = pytest.mark.timeout(60)


def rows(run: nf.Run) -> list[tuple[str, int, str, float, float]]:
    frame = run.timeline()
    origin = run.state.wall_start
    return [
        (r.task, r.attempt, r.status, r.start.timestamp() - origin, r.end.timestamp() - origin)
        for r in frame.itertuples()
    ]


def test_a_loop_reruns_with_its_previous_result_until_the_condition_holds():
    flow = nf.Flow("refine", store=None)
    flow.task(name="data")(lambda: 100.0)
    seen = []

    @flow.loop(until="result < 5 and iteration >= 2", max_iterations=10)
    async def refine(data, previous=None):
        seen.append(previous)
        await asyncio.sleep(1)
        return (data if previous is None else previous) / 3

    flow.task(name="final")(lambda refine: refine)
    run = flow.run(simulate=True)
    assert run.status == "succeeded"
    assert seen == [None, pytest.approx(100 / 3), pytest.approx(100 / 9)]  # 100/27 < 5 ends
    assert run.results["refine"] == run.results["final"] == pytest.approx(100 / 27)
    assert rows(run) == [
        ("data", 1, "succeeded", 0.0, 0.0),
        ("refine", 1, "succeeded", 0.0, 1.0),
        ("refine#2", 1, "succeeded", 1.0, 2.0),
        ("refine#3", 1, "succeeded", 2.0, 3.0),
        ("final", 1, "succeeded", 3.0, 3.0),
    ]
    assert run.state.iterations == {"refine": 3}
    assert list(run.timeline()["base_task"])[1:4] == ["refine"] * 3


def test_until_sees_the_previous_result_upstream_results_and_variables():
    flow = nf.Flow("names", store=None)
    flow.task(name="target")(lambda: 6)

    @flow.loop(
        until="result == target and previous == target - 1 and vars['step'] == 1",
        max_iterations=20,
    )
    def count(target, step, previous=0):
        return previous + step

    run = flow.run({"step": 1}, simulate=True)
    assert run.results["count"] == 6 and run.state.iterations["count"] == 6


def test_reaching_max_iterations_fails_the_task_naming_it_and_its_condition():
    flow = nf.Flow("bounded", store=None)

    @flow.loop(until="result > 100", max_iterations=3)
    def grow(previous=1):
        return previous * 2

    flow.task(name="after")(lambda grow: grow)
    run = flow.run(simulate=True)
    assert run.status == "failed" and run.states["after"] == "upstream_failed"
    error = run.errors["grow"]
    assert isinstance(error, nf.LoopError)
    assert str(error).startswith(
        "task 'grow': loop reached max_iterations=3 and until='result > 100' still does not "
        "hold; last result: 8."
    )
    assert error.last == 8 and error.max_iterations == 3
    assert [(r[0], r[2]) for r in rows(run)] == [
        ("grow", "succeeded"), ("grow#2", "succeeded"), ("grow#3", "failed"),
    ]  # fmt: skip


def test_a_callable_until_gets_a_loop_context_sync_or_async():
    contexts = []
    flow = nf.Flow("callable-until", store=None)
    flow.task(name="limit")(lambda: 3)

    def until(ctx: nf.LoopContext) -> bool:
        contexts.append((ctx.task, ctx.iteration, ctx.result, ctx.previous, ctx.results))
        return ctx.result >= ctx.results["limit"]

    flow.loop(until=until, max_iterations=5, name="up")(lambda limit, previous=0: previous + 1)

    async def later(ctx):
        await asyncio.sleep(0)
        return ctx.iteration == 2

    flow.task(name="twice", until=later, max_iterations=5)(lambda: "x")
    run = flow.run(simulate=True)
    assert run.status == "succeeded", run.errors
    assert contexts == [
        ("up", 1, 1, None, {"limit": 3}),
        ("up", 2, 2, 1, {"limit": 3}),
        ("up", 3, 3, 2, {"limit": 3}),
    ]
    assert run.state.iterations["twice"] == 2


def test_each_iteration_is_retried_on_its_own():
    calls = []
    flow = nf.Flow("retry-loop", store=None)

    @flow.loop(until="iteration == 2", max_iterations=5, retry=nf.Retry(max_retries=2, delay=1))
    async def flaky(previous=None):
        calls.append(previous)
        await asyncio.sleep(1)
        if len(calls) == 2:
            raise ConnectionError("blip")
        return len(calls)

    run = flow.run(simulate=True)
    assert run.results["flaky"] == 3 and calls == [None, 1, 1]
    assert rows(run) == [
        ("flaky", 1, "succeeded", 0.0, 1.0),
        ("flaky#2", 1, "failed", 1.0, 2.0),
        ("flaky#2", 2, "succeeded", 3.0, 4.0),
    ]


def test_an_until_that_fails_fails_the_task_with_a_condition_error_naming_until():
    flow = nf.Flow("bad-until", store=None)
    flow.loop(until="result['missing'] > 1", max_iterations=3, name="t")(lambda: {"x": 1})
    run = flow.run(simulate=True)
    error = run.errors["t"]
    assert isinstance(error, nf.ConditionError) and error.field == "until"
    assert "until" in str(error) and "missing" in str(error)


def test_cancelling_a_loop_ends_it_in_its_iteration():
    flow = nf.Flow("cancel-loop", store=None)

    @flow.loop(until="False", max_iterations=100)
    async def forever(previous=0):
        await asyncio.sleep(1)
        return previous + 1

    @flow.task
    async def stopper():
        await asyncio.sleep(3.5)
        nf.context().cancel("forever")

    run = flow.run(simulate=True)
    assert run.states["forever"] == "cancelled" and run.state.iterations["forever"] == 4
    assert rows(run)[-1] == ("forever#4", 1, "cancelled", 3.0, 3.5)


def test_a_loop_of_a_subflow_runs_one_child_run_per_iteration():
    child = nf.Flow("step", store=None)

    @child.task
    async def halve(previous=None):  # the previous iteration's result: the child's results
        await asyncio.sleep(1)
        return (64 if previous is None else previous["halve"]) // 2

    parent = nf.Flow("outer", store=None)

    def small(ctx):
        return ctx.result["halve"] <= 8

    parent.loop(until=small, max_iterations=10, name="halving")(child)
    run = parent.run(simulate=True)
    assert run.status == "succeeded", run.errors
    assert run.results["halving"] == {"halve": 8}
    children = run.children["halving"]
    assert [c.results["halve"] for c in children] == [32, 16, 8]
    assert [c.state.started_t for c in children] == [0.0, 0.0, 0.0]  # each on its own clock
    assert [c.state.wall_start - run.state.wall_start for c in children] == [0.0, 1.0, 2.0]


def test_the_store_keeps_the_last_iteration_s_result_and_a_resumed_loop_is_not_rerun(tmp_path):
    calls = []
    boomed = []

    def make() -> nf.Flow:
        flow = nf.Flow("stored-loop", store=tmp_path / "s.db")

        @flow.loop(until="result >= 3", max_iterations=5)
        def count(previous=0):
            calls.append(previous)
            return previous + 1

        @flow.task
        def boom(count):
            boomed.append(count)
            if len(boomed) == 1:
                raise RuntimeError("first time")
            return count

        return flow

    first = make().run()
    assert first.states == {"count": "succeeded", "boom": "failed"} and calls == [0, 1, 2]
    second = make().run(resume="last")
    assert second.states == {"count": "cached", "boom": "succeeded"}
    assert second.results["count"] == 3 and calls == [0, 1, 2]


# -- bad definitions, before any task runs -----------------------------------------------------


def test_a_loop_without_a_bound_is_refused_when_defined():
    flow = nf.Flow("unbounded", store=None)
    with pytest.raises(
        nf.DefinitionError,
        match=r"task 'spin' loops until 'result' but has no bound: give it max_iterations=N",
    ):
        flow.task(name="spin", until="result")(lambda: 1)
    with pytest.raises(TypeError, match=r"max_iterations"):
        flow.loop(until="result", name="spin")(lambda: 1)  # type: ignore[call-arg]
    with pytest.raises(nf.DefinitionError, match=r"max_iterations=3 needs until="):
        flow.task(name="spin", max_iterations=3)(lambda: 1)
    with pytest.raises(nf.DefinitionError, match=r"max_iterations: Input should be greater"):
        flow.loop(until="result", max_iterations=0, name="spin")(lambda: 1)
    with pytest.raises(nf.DefinitionError, match=r"a loop cannot also be a fan-out"):
        flow.task(name="items")(lambda: [1])
        flow.loop(until="result", max_iterations=2, fan_out="items", name="f")(lambda items: 1)
    assert list(flow.tasks) == ["items"]


def test_an_until_that_does_not_parse_or_reads_an_unknown_name_is_refused_before_any_task_runs():
    ran = []
    flow = nf.Flow("until-names", store=None)
    flow.task(name="source")(lambda: ran.append(1))
    with pytest.raises(nf.ConditionError, match=r"task 'l' until 'result >' : syntax error|until"):
        flow.loop(until="result >", max_iterations=2, name="l")(lambda: 1)
    flow.loop(until="reslt > 1", max_iterations=2, name="l")(lambda source: 1)
    with pytest.raises(
        nf.ConditionError, match=r"task 'l' until 'reslt > 1': unknown name 'reslt'"
    ):
        flow.run(simulate=True)
    assert ran == []


def test_previous_without_a_default_is_none_the_first_time():
    """The loop fills `previous`, not a run variable; with no default it gets None first
    (it failed with "missing 1 required positional argument" before)."""
    flow = nf.Flow("loop", store=None)

    @flow.loop(until="result >= 3", max_iterations=5)
    def count(previous):  # no default: the loop fills it (None the first time)
        return 1 if previous is None else previous + 1

    run = flow.run(simulate=True)
    assert run.results["count"] == 3


def test_an_iterations_progress_is_its_own():
    flow = nf.Flow("progress", store=None)
    contexts: list[nf.TaskContext] = []

    @flow.loop(until="iteration == 2", max_iterations=5)
    async def refine(previous=None):
        ctx = nf.context()
        contexts.append(ctx)
        if ctx.iteration == 1:
            ctx.progress(1, 1)
        else:  # late news of the iteration before (a worker's, sent late): not this one's
            contexts[0].progress(5, 10)
        await asyncio.sleep(1)

    run = flow.run(simulate=True)
    assert [(c.iteration, c.attempt) for c in contexts] == [(1, 1), (2, 1)]
    assert repr(contexts[1]).startswith("<TaskContext 'progress' refine#2 attempt=1")
    # The second iteration reported nothing: it has no bar, neither the first's nor the
    # late one.
    assert "refine" not in run.state.progress


def test_the_stores_attempts_of_a_loop_name_their_iteration_and_its_last_has_the_traceback():
    store = nf.MemoryStore()
    flow = nf.Flow("failing-loop", store=store)

    @flow.loop(until="result > 100", max_iterations=3)
    def grow(previous=1):
        return previous * 2

    run = flow.run()
    attempts = store.attempts(run.run_id)
    assert [(a["task"], a["iteration"], a["attempt"], a["state"]) for a in attempts] == [
        ("grow", 0, 1, "succeeded"), ("grow", 2, 1, "succeeded"), ("grow", 3, 1, "failed"),
    ]  # fmt: skip
    # Every iteration's attempt is attempt 1: the traceback is on the last one only.
    assert [a["traceback"] is not None for a in attempts] == [False, False, True]
    assert "LoopError" in attempts[-1]["traceback"]
