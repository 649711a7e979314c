"""Partial joins (nbflow.joins): trigger=nf.at_least(n) and cancel_rest=True, on the
simulated clock (who starts when, who is cancelled, final states, run status), the pure
parts (decide, rest_of), and every way a join is refused before any task runs."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf
from nbflow.joins import at_least, check_trigger, quorum, rest_of
from nbflow.scheduler import READY, decide

SECONDS = {"b1": 1, "b2": 2, "b3": 3, "b4": 7, "b5": 9}


def five_branches(**join_options) -> tuple[nf.Flow, list]:
    """Five branches that succeed at t = 1, 2, 3, 7 and 9, and a join of all five."""
    flow = nf.Flow("quorum", store=None)
    seen: list = []
    for name, seconds in SECONDS.items():

        async def branch(seconds=seconds, name=name):
            await asyncio.sleep(seconds)
            return name

        flow.task(name=name)(branch)

    @flow.task(**join_options)
    async def join(b1, b2, b3, b4, b5):
        seen.append((b1, b2, b3, b4, b5))
        return "joined"

    return flow, seen


def starts(run: nf.Run) -> dict[str, float]:
    frame = run.timeline()
    t0 = frame["start"].min()
    return {r.task: (r.start - t0).total_seconds() for r in frame.itertuples()}


def ends(run: nf.Run) -> dict[str, float]:
    frame = run.timeline()
    t0 = frame["start"].min()
    return {r.task: (r.end - t0).total_seconds() for r in frame.itertuples()}


def test_a_3_of_5_join_starts_at_the_third_success_and_the_others_run_on():
    flow, seen = five_branches(trigger=nf.at_least(3))
    run = flow.run(simulate=True)
    assert starts(run)["join"] == 3.0
    assert seen == [("b1", "b2", "b3", None, None)]  # unfinished upstream tasks pass None
    assert run.states == dict.fromkeys([*SECONDS, "join"], "succeeded")
    assert run.status == "succeeded" and run.duration == 9.0  # the run waits for b4 and b5


def test_with_cancel_rest_the_two_slow_branches_end_cancelled_at_that_moment():
    flow, seen = five_branches(trigger=nf.at_least(3), cancel_rest=True)
    run = flow.run(simulate=True)
    assert starts(run)["join"] == 3.0
    assert ends(run)["b4"] == ends(run)["b5"] == 3.0
    assert run.states == {
        "b1": "succeeded", "b2": "succeeded", "b3": "succeeded",
        "b4": "cancelled", "b5": "cancelled", "join": "succeeded",
    }  # fmt: skip
    assert run.status == "succeeded" and run.duration == 3.0
    assert seen == [("b1", "b2", "b3", None, None)]
    reason = run.state.tasks["b4"].reason
    assert reason == "cancel_rest: 'join' (at_least(3)) fired with 3 of 5 upstream tasks succeeded"


def test_cancel_rest_with_one_success_is_the_cancelling_discriminator():
    flow, seen = five_branches(trigger="one_success", cancel_rest=True)
    run = flow.run(simulate=True)
    assert starts(run)["join"] == 1.0 and run.duration == 1.0
    assert [run.states[b] for b in SECONDS] == ["succeeded"] + ["cancelled"] * 4
    assert seen == [("b1", None, None, None, None)]


def test_cancel_rest_spares_work_another_task_still_needs():
    """b4 also feeds `report`, which waits for it: b4 runs on; b5 (only the join's) stops;
    so does `prepare`, upstream of b5 alone, which has not even started."""
    flow = nf.Flow("shared", store=None)
    for name, seconds in [("b1", 1), ("b2", 2), ("b4", 7)]:

        async def branch(seconds=seconds, name=name):
            await asyncio.sleep(seconds)
            return name

        flow.task(name=name)(branch)

    @flow.task(after=["b1"])
    async def prepare():
        await asyncio.sleep(5)

    @flow.task(after=["prepare"])
    async def b5():
        await asyncio.sleep(1)

    @flow.task(after=["b1", "b2", "b4", "b5"], trigger=nf.at_least(2), cancel_rest=True)
    def join():
        return "joined"

    @flow.task
    def report(b4):
        return b4

    run = flow.run(simulate=True)
    assert starts(run)["join"] == 2.0
    assert run.states == {
        "b1": "succeeded", "b2": "succeeded", "b4": "succeeded", "prepare": "cancelled",
        "b5": "cancelled", "join": "succeeded", "report": "succeeded",
    }  # fmt: skip
    assert (starts(run)["prepare"], ends(run)["prepare"]) == (1.0, 2.0)  # cut short
    assert "b5" not in starts(run)  # never started: cancelled while pending


def test_a_join_that_can_no_longer_reach_n_decides_at_once():
    flow = nf.Flow("impossible", store=None, on_error="continue")

    @flow.task
    async def ok():
        await asyncio.sleep(5)

    @flow.task
    async def broken():
        await asyncio.sleep(1)
        raise RuntimeError("down")

    @flow.task(when="False")
    def skipped():
        return 1

    @flow.task(after=["ok", "broken", "skipped"], trigger=nf.at_least(2))
    def needs_two():
        return "never"

    @flow.task(after=["ok", "skipped"], trigger=nf.at_least(2))
    def needs_both():
        return "never"

    run = flow.run(simulate=True)
    assert run.states["needs_two"] == "upstream_failed"
    assert run.states["needs_both"] == "skipped"
    assert run.state.tasks["needs_two"].ended_t == 1.0  # at broken's failure, not at 5.0
    assert run.status == "failed"


def test_a_cancelled_upstream_counts_as_no_success():
    flow, _ = five_branches(trigger=nf.at_least(4))

    @flow.task
    async def canceller():
        await asyncio.sleep(1.5)
        nf.context().cancel("b4")
        nf.context().cancel("b5")

    run = flow.run(simulate=True)
    assert run.states["join"] == "skipped"  # 3 successes, 2 cancelled: 4 cannot be reached
    assert run.state.tasks["join"].ended_t == 1.5


# -- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "verdict"),
    [
        ([0, 0, 0, 0], None),
        ([2, 2, 0, 0], None),  # [done, succeeded, failed, skipped] of 5
        ([3, 3, 0, 0], READY),
        ([2, 1, 1, 0], None),  # 1 success, 3 pending: 4 still possible
        ([4, 1, 3, 0], "upstream_failed"),  # 1 success, 1 pending: 2 at most
        ([4, 1, 0, 3], "skipped"),
        ([4, 1, 2, 1], "upstream_failed"),
        ([3, 1, 2, 0], None),  # 1 + 2 pending = 3: still possible
        ([4, 3, 1, 0], READY),
    ],
)
def test_decide_at_least_three_of_five(counts, verdict):
    assert decide("at_least(3)", 5, counts) == verdict


def test_at_least_one_is_one_success():
    for counts in ([1, 1, 0, 0], [1, 0, 1, 0], [2, 0, 1, 1], [2, 0, 0, 2], [1, 0, 0, 1]):
        assert decide("at_least(1)", 2, counts) == decide("one_success", 2, counts)


def test_the_rule_is_text_that_documents_can_hold():
    assert at_least(3) == "at_least(3)" and quorum("at_least(3)") == 3
    assert quorum("one_success") is None
    assert check_trigger("at_least(03)", ("all_success",)) == "at_least(3)"


def test_rest_of_a_join_cancels_whole_branches_and_keeps_what_others_need():
    #   a1 -> a2 -> join <- c        (c feeds `other` too, pending)
    #   s  -> a1, s -> other         (s has finished)
    upstream = {
        "s": (), "a1": ("s",), "a2": ("a1",), "c": (), "join": ("a2", "c", "done"),
        "other": ("s", "c"), "done": (),
    }  # fmt: skip
    downstream = {n: tuple(k for k, v in upstream.items() if n in v) for n in upstream}
    finished = {"s", "done"}
    rest = rest_of(join="join", upstream=upstream, downstream=downstream,
                   finished=finished.__contains__, decided=finished.__contains__)  # fmt: skip
    assert rest == ["a2", "a1"]  # dependants first; c is kept for `other`
    decided = finished | {"other"}  # once `other` is running, c is needed by nobody
    rest = rest_of("join", upstream, downstream, finished.__contains__, decided.__contains__)
    assert sorted(rest) == ["a1", "a2", "c"]


# -- refused before any task runs -------------------------------------------------------------


def _flow() -> nf.Flow:
    flow = nf.Flow("bad", store=None)
    flow.task(name="a")(lambda: 1)
    flow.task(name="b")(lambda: 2)
    return flow


@pytest.mark.parametrize("n", [0, -1, "two", 1.5])
def test_at_least_below_one_or_not_a_whole_number_names_the_task_and_field(n):
    with pytest.raises(nf.DefinitionError, match=r"task 'quorum': trigger: .*at_least.*n must be"):
        _flow().task(name="quorum", trigger=nf.at_least(n))(lambda a, b: None)


def test_at_least_with_fewer_upstream_tasks_than_n_is_refused_before_any_task_runs():
    flow = _flow()
    ran = []
    flow.task(name="quorum", trigger=nf.at_least(3))(lambda a, b: ran.append(1))
    with pytest.raises(nf.DefinitionError) as error:
        flow.run()
    assert str(error.value) == (
        "task 'quorum' trigger=at_least(3) waits for 3 upstream successes but has 2 upstream "
        "tasks (a, b); lower n, or add upstream tasks (parameters named after them, or "
        "after=[...])"
    )
    assert ran == []


def test_an_unknown_trigger_lists_the_rules():
    with pytest.raises(nf.DefinitionError, match=r"task 'x': trigger: .*must be one of"):
        _flow().task(name="x", trigger="most")(lambda a: None)


def test_cancel_rest_on_a_join_that_waits_for_all_is_refused():
    with pytest.raises(nf.DefinitionError) as error:
        _flow().task(name="x", cancel_rest=True)(lambda a, b: None)
    assert str(error.value).startswith("task 'x' cancel_rest=True cancels what a join no")
    assert "trigger=nf.at_least(n) or trigger='one_success' (its trigger is 'all_success')" in (
        str(error.value)
    )


def test_a_fan_out_join_with_cancel_rest_cancels_the_rest_too():
    flow = nf.Flow("fan-out-join", store=None)
    for name, seconds in [("x1", 1), ("x2", 2), ("x3", 9)]:

        async def branch(seconds=seconds):
            await asyncio.sleep(seconds)
            return [seconds]

        flow.task(name=name)(branch)

    @flow.task(fan_out="x1", trigger=nf.at_least(2), cancel_rest=True)
    def each(x1, x2, x3):
        return (x1, x2, x3)

    run = flow.run(simulate=True)
    assert run.states == {"x1": "succeeded", "x2": "succeeded", "x3": "cancelled",
                          "each": "succeeded"}  # fmt: skip
    assert run.results["each"] == [(1, [2], None)] and run.duration == 2.0


def test_what_a_join_receives_from_failed_skipped_cancelled_and_unfinished_upstream_tasks():
    """at_least(2), cancel_rest, on_error='continue': a failed (t=1), a skipped and a
    cancelled upstream task each pass None, as the unfinished one the join cancels does."""
    flow = nf.Flow("join-inputs", store=None, on_error="continue")
    received: list = []

    @flow.task
    async def broken():
        await asyncio.sleep(1)
        raise RuntimeError("down")

    flow.task(name="skipped", when="False")(lambda: "never")
    flow.task(name="ok2")(sleeper_of(2, "ok2"))
    flow.task(name="ok3")(sleeper_of(3, "ok3"))
    flow.task(name="slow")(sleeper_of(9, "slow"))
    flow.task(name="doomed")(sleeper_of(9, "doomed"))

    @flow.task
    async def canceller():
        await asyncio.sleep(0.5)
        nf.context().cancel("doomed")

    @flow.task(trigger=nf.at_least(2), cancel_rest=True)
    def join(broken, skipped, ok2, ok3, slow, doomed):
        received.append((broken, skipped, ok2, ok3, slow, doomed))

    run = flow.run(simulate=True)
    assert received == [(None, None, "ok2", "ok3", None, None)]
    assert run.states == {
        "broken": "failed", "skipped": "skipped", "ok2": "succeeded", "ok3": "succeeded",
        "slow": "cancelled", "doomed": "cancelled", "canceller": "succeeded",
        "join": "succeeded",
    }  # fmt: skip
    assert run.duration == 3.0 and run.status == "failed"  # `broken` failed: on_error continue


def sleeper_of(seconds: float, value: str):
    async def body():
        await asyncio.sleep(seconds)
        return value

    return body


# -- what a join's gates read does not vote ---------------------------------------------------


def gated_quorum(**join_options) -> nf.Flow:
    """r1, r2, r3 answer at 1, 2, 3 s; `mode` (instant) is read by the join's when=."""
    flow = nf.Flow("gated-quorum", store=None, on_error="continue")
    flow.task(name="mode")(lambda: "fast")
    for name, seconds in [("r1", 1), ("r2", 2), ("r3", 3)]:
        flow.task(name=name)(sleeper_of(seconds, name))

    @flow.task(trigger=nf.at_least(2), **join_options)
    def join(r1, r2, r3):
        return (r1, r2, r3)

    return flow


def test_a_task_only_the_join_s_when_reads_must_end_first_but_does_not_vote():
    """Airflow counts such a task (its branch operator) as an upstream success: the 2-of-3
    join would start at 1 s with one answer."""
    flow = gated_quorum(when="mode == 'fast'")
    assert flow.plan().upstream["join"] == ("r1", "r2", "r3", "mode")
    run = flow.run(simulate=True)
    assert starts(run)["join"] == 2.0 and run.results["join"] == ("r1", "r2", None)


def test_a_switch_s_reader_does_not_vote_either_and_waits_for_a_slow_one():
    flow = gated_quorum()
    flow.task(name="slow_mode")(sleeper_of(5, "full"))
    flow.switch("slow_mode", cases={"full": ["join"]}, name="by_mode")
    run = flow.run(simulate=True)
    assert starts(run)["join"] == 5.0 and run.results["join"] == ("r1", "r2", "r3")


@pytest.mark.parametrize(("outcome", "state"), [("fail", "upstream_failed"), ("skip", "skipped")])
def test_a_reader_that_does_not_succeed_decides_the_join_as_under_all_success(outcome, state):
    flow = gated_quorum(when="mode == 'fast'")

    @flow.task(name="mode", when="vars['outcome'] != 'skip'")  # redefined
    def mode():
        if outcome == "fail":
            raise RuntimeError("no mode")
        return "fast"

    run = flow.run(variables={"outcome": outcome}, simulate=True)
    assert run.states["join"] == state and run.state.tasks["join"].ended_t == 0.0


def test_readers_are_not_counted_towards_n_when_the_join_is_checked():
    flow = nf.Flow("too-few", store=None)
    flow.task(name="mode")(lambda: 1)
    flow.task(name="a")(lambda: 1)
    flow.task(name="join", trigger=nf.at_least(2), when="mode > 0")(lambda a: a)
    with pytest.raises(nf.DefinitionError) as error:
        flow.plan()
    assert str(error.value) == (
        "task 'join' trigger=at_least(2) waits for 2 upstream successes but has 1 upstream "
        "task (a); mode only read by its gates (when=, a branch or switch), which do not "
        "count; lower n, or add upstream tasks (parameters named after them, or after=[...])"
    )


def test_a_partial_join_with_nothing_but_readers_counts_them():
    flow = nf.Flow("only-readers", store=None)
    flow.task(name="x")(lambda: 3)
    flow.task(name="t", trigger="one_success", when="x > 1")(lambda: "ran")
    assert flow.run(simulate=True).states["t"] == "succeeded"
