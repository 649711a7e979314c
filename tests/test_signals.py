"""Signals (nbflow.signals, nbflow.waits): wait_for=, transient=, nf.any_of and deferred
choice, handle.send / ctx.send, timeout= on the wait, cancelling a waiting task, the store's
events and resume. Semantics on the simulated clock (who starts when, who is skipped, what
each task receives); sends across threads and loops on the real one."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import nbflow as nf

pytestmark = pytest.mark.timeout(60)


def sleeper(seconds: float, value: object = None):
    async def body():
        await asyncio.sleep(seconds)
        return value

    return body


def sends(*plan: tuple[float, str, object]):
    """A task body that sends each (at, signal, value), at those times (run clock)."""

    async def body():
        now = 0.0
        for at, signal, value in plan:
            await asyncio.sleep(at - now)
            now = at
            nf.context().send(signal, value)
        return "sent"

    return body


def started_at(run: nf.Run, task: str) -> float | None:
    return run.state.tasks[task].started_t


# -- waiting -----------------------------------------------------------------------------------


def test_a_waiting_task_starts_exactly_when_its_signal_is_sent_and_holds_no_slot():
    flow = nf.Flow("approve", max_workers=1, store=None)
    flow.task(name="report")(lambda: "r")

    @flow.task(wait_for="approved")
    def publish(report, approved):
        return f"{report}:{approved}"

    # With one slot, these two could not run while publish waited if waiting held it.
    flow.task(name="busy")(sleeper(3, "b"))
    flow.task(name="reviewer", after=["busy"])(sends((5, "approved", "yes")))
    run = flow.run(simulate=True)
    assert run.status == "succeeded" and run.results["publish"] == "r:yes"
    assert started_at(run, "busy") == 0.0 and started_at(run, "reviewer") == 3.0
    assert started_at(run, "publish") == 8.0  # reviewer sends at 3 + 5
    assert run.state.tasks["publish"].queued_t == 0.0  # ready at once, then it waited
    assert run.state.tasks["publish"].reason == "received 'approved'"
    assert run.signals == {"approved": "yes"}
    assert run.state.signalled == {"publish": (0.0, 8.0)}
    explained = run.explain("publish")
    assert "It waited for signal(s) 'approved' from 0.000s, holding no worker; they came at " \
        "8.000s." in explained  # fmt: skip
    assert "No other task competed for a worker at that moment." in explained


def test_a_signal_sent_before_the_task_waits_is_kept_for_it():
    flow = nf.Flow("persistent", store=None)
    flow.task(name="slow")(sleeper(5, 1))

    @flow.task(wait_for="go")
    def late(slow, go):
        return go

    flow.task(name="early")(sends((1, "go", "early bird")))
    run = flow.run(simulate=True)
    assert run.results["late"] == "early bird" and started_at(run, "late") == 5.0


def test_a_transient_task_takes_only_a_signal_sent_while_it_waits():
    flow = nf.Flow("transient", store=None)
    flow.task(name="slow")(sleeper(5, 1))

    @flow.task(wait_for="tick", transient=True)
    def fresh(slow, tick):
        return tick

    @flow.task(wait_for="tick")
    def kept(slow, tick):
        return tick

    flow.task(name="clock")(sends((1, "tick", 1), (8, "tick", 2)))
    run = flow.run(simulate=True)
    assert run.results == {"slow": 1, "fresh": 2, "kept": 1, "clock": "sent"}
    assert started_at(run, "fresh") == 8.0 and started_at(run, "kept") == 5.0


def test_a_list_waits_for_every_signal_and_starts_at_the_last():
    flow = nf.Flow("all-of", store=None)

    @flow.task(wait_for=["paid", "packed"])
    def ship(paid, packed):
        return (paid, packed)

    flow.task(name="shop")(sends((2, "packed", "box"), (7, "paid", 10)))
    run = flow.run(simulate=True)
    assert run.results["ship"] == (10, "box") and started_at(run, "ship") == 7.0


def test_a_task_waits_only_once_its_dependencies_are_met_and_its_when_holds():
    flow = nf.Flow("gated", store=None)
    flow.task(name="score")(lambda: 3)
    ran = []

    @flow.task(wait_for="go", when="score > 5")
    def never(score, go):
        ran.append(go)

    flow.task(name="sender")(sends((1, "go", 1)))
    run = flow.run(simulate=True)
    assert run.states["never"] == "skipped" and ran == []
    assert run.state.tasks["never"].ended_t == 0.0  # skipped at once: it never waited


def test_with_a_store_too_a_false_when_skips_the_task_without_waiting(tmp_path):
    # A run that may reuse stored results (cache=True somewhere, or resume=) decides gates
    # as tasks start (upstream results may be stored ones); a waiting task's gates are
    # decided before it waits all the same, when its upstream results are in memory.
    flow = nf.Flow("gated-stored", store=tmp_path / "s.db")
    flow.task(name="score")(lambda: 3)
    flow.task(name="cached", cache=True)(lambda: 1)
    flow.task(name="never", wait_for="go", when="score > 5", timeout=1)(lambda score, go: go)
    flow.task(name="ever", wait_for="go", when="score < 5", timeout=1)(lambda score, go: go)
    run = flow.run()
    assert run.states == {
        "score": "succeeded", "cached": "succeeded", "never": "skipped", "ever": "failed",
    }  # fmt: skip
    assert isinstance(run.errors["ever"], nf.SignalTimeoutError)  # it did wait


def test_a_signal_wakes_every_task_waiting_for_it():
    flow = nf.Flow("broadcast", max_workers=2, store=None)
    for name in ("a", "b", "c"):
        flow.task(name=name, wait_for="go")(lambda go, name=name: f"{name}{go}")
    flow.task(name="sender")(sends((4, "go", "!")))
    run = flow.run(simulate=True)
    assert {n: run.results[n] for n in "abc"} == {"a": "a!", "b": "b!", "c": "c!"}
    assert [started_at(run, n) for n in "abc"] == [4.0, 4.0, 4.0]


# -- deferred choice ---------------------------------------------------------------------------


def review_flow(
    *plan: tuple[float, str, object], early: float = 0.0, audit: bool = True
) -> nf.Flow:
    flow = nf.Flow("review", store=None)
    review = nf.any_of("approve", "reject")
    flow.task(name="order")(sleeper(early, "order-1"))

    @flow.task(wait_for=review.on("approve"))
    def ship(order, approve):
        return f"ship {order} ({approve})"

    @flow.task(wait_for=review.on("reject"))
    def refund(order, reject):
        return f"refund {order} ({reject})"

    flow.task(name="invoice")(lambda ship: "invoice")
    flow.task(name="note", trigger="none_failed")(lambda ship, refund: (ship, refund))

    if audit:

        @flow.task(wait_for=review)
        def audit(approve, reject):
            return (approve, reject)

    flow.task(name="customer")(sends(*plan))
    return flow


def test_deferred_choice_the_first_signal_wins_and_the_losing_branch_is_skipped_then():
    run = review_flow((2, "reject", "too slow"), (3, "approve", "ok")).run(simulate=True)
    assert run.status == "succeeded"
    assert run.states["ship"] == "skipped" and run.states["invoice"] == "skipped"
    assert run.state.tasks["ship"].ended_t == 2.0  # at the moment 'reject' came
    assert run.state.tasks["ship"].reason == "deferred choice: 'reject' came first"
    assert run.results["refund"] == "refund order-1 (too slow)"
    assert started_at(run, "refund") == 2.0
    assert run.results["audit"] == (None, "too slow")  # the loser's value is not given
    assert run.results["note"] == (None, "refund order-1 (too slow)")


def test_a_persistent_choice_is_decided_by_the_first_signal_even_before_anyone_waits():
    # all three come before the branches wait (order takes 5 s); nobody else waits
    run = review_flow(
        (1, "approve", "first"), (2, "reject", "second"), (3, "approve", "again"),
        early=5, audit=False,
    ).run(simulate=True)  # fmt: skip
    assert run.states["refund"] == "skipped" and run.states["ship"] == "succeeded"
    assert run.results["ship"] == "ship order-1 (again)"  # its last value
    assert started_at(run, "ship") == 5.0 and run.state.tasks["refund"].ended_t == 5.0


def test_a_task_waiting_for_a_whole_choice_takes_its_first_signal():
    run = review_flow(
        (1, "approve", "first"), (2, "reject", "second"), (3, "approve", "again"), early=5
    ).run(simulate=True)
    assert run.states["refund"] == "skipped" and run.states["ship"] == "succeeded"
    assert run.results["ship"] == "ship order-1 (again)"  # its last value
    assert started_at(run, "ship") == 5.0 and run.state.tasks["refund"].ended_t == 5.0
    # audit has no upstream: it waited from the start, and took the first signal at 1
    assert run.results["audit"] == ("first", None) and started_at(run, "audit") == 1.0


def test_a_transient_choice_is_decided_by_the_first_signal_that_comes_while_it_waits():
    flow = nf.Flow("transient-choice", store=None)
    choice = nf.any_of("left", "right")
    flow.task(name="gate")(sleeper(5, 1))
    flow.task(name="go_left", wait_for=choice.on("left"), transient=True)(lambda gate, left: 1)
    flow.task(name="go_right", wait_for=choice.on("right"), transient=True)(lambda gate, right: 2)
    flow.task(name="sender")(sends((1, "left", 0), (6, "right", 0), (7, "left", 0)))
    run = flow.run(simulate=True)
    assert run.states["go_left"] == "skipped" and run.states["go_right"] == "succeeded"
    assert started_at(run, "go_right") == 6.0


# -- timeout, cancel, simulation ---------------------------------------------------------------


def test_timeout_bounds_the_wait_and_the_attempt_alike():
    flow = nf.Flow("late", on_error="continue", store=None)
    flow.task(name="waits", wait_for="go", timeout=4)(lambda go: go)
    flow.task(name="after")(lambda waits: waits)
    # `fine` receives ok at 2 and runs 3 s: the attempt has its own 4 s
    flow.task(name="fine", wait_for="ok", timeout=4)(_takes_ok)
    flow.task(name="sender")(sends((2, "ok", 1)))
    run = flow.run(simulate=True)
    error = run.errors["waits"]
    assert isinstance(error, nf.SignalTimeoutError) and isinstance(error, nf.TaskTimeoutError)
    assert "waited 4s for signal 'go'" in str(error)
    assert run.state.tasks["waits"].ended_t == 4.0 and run.states["after"] == "upstream_failed"
    assert run.results["fine"] == "in time 1" and run.state.tasks["fine"].ended_t == 5.0


async def _takes_ok(ok):
    await asyncio.sleep(3)
    return f"in time {ok}"


def test_cancelling_a_waiting_task_ends_it_at_once_and_it_propagates_like_a_skip():
    flow = nf.Flow("cancel-waiting", store=None)
    flow.task(name="waits", wait_for="go")(lambda go: go)
    flow.task(name="uses")(lambda waits: waits)

    @flow.task
    async def boss():
        await asyncio.sleep(3)
        nf.context().cancel("waits")
        await asyncio.sleep(2)
        nf.context().send("go", 1)  # too late: nobody waits any more

    run = flow.run(simulate=True)
    assert run.states == {"waits": "cancelled", "uses": "skipped", "boss": "succeeded"}
    assert run.state.tasks["waits"].ended_t == 3.0 and run.status == "succeeded"


def test_a_stopped_run_cancels_its_waiting_tasks():
    flow = nf.Flow("stop-waiting", store=None)
    flow.task(name="waits", wait_for="go")(lambda go: go)

    @flow.task
    async def boom():
        await asyncio.sleep(2)
        raise ValueError("boom")

    run = flow.run(simulate=True)
    assert run.states == {"waits": "cancelled", "boom": "failed"} and run.status == "failed"
    assert run.state.tasks["waits"].ended_t == 2.0


def test_a_simulated_run_that_only_waits_fails_its_waiting_tasks_instead_of_hanging():
    flow = nf.Flow("nobody-sends", store=None)
    flow.task(name="first")(sleeper(2, 1))
    flow.task(name="waits", wait_for=nf.any_of("yes", "no"))(lambda first, yes, no: 1)
    run = flow.run(simulate=True)
    assert run.states == {"first": "succeeded", "waits": "failed"}
    error = run.errors["waits"]
    assert isinstance(error, nf.SimulationError)
    assert "task 'waits' waits for signal 'yes' or 'no'" in str(error)
    assert run.state.tasks["waits"].ended_t == 2.0


# -- bad input, before any task runs -----------------------------------------------------------


def test_any_of_refuses_fewer_than_two_names_a_repeat_or_a_non_name():
    with pytest.raises(nf.SignalError, match=r"at least two signals"):
        nf.any_of("approve")
    with pytest.raises(nf.SignalError, match=r"signal 'a' is given twice"):
        nf.any_of("a", "a")
    with pytest.raises(nf.SignalError, match=r"signal 'not a name' must be a name"):
        nf.any_of("ok", "not a name")


def test_an_unknown_signal_of_a_choice_is_refused_with_a_close_match():
    review = nf.any_of("approve", "reject")
    with pytest.raises(nf.SignalError, match=r"'aprove' is not a signal of this choice; did you"):
        review.on("aprove")


def test_a_signal_the_function_does_not_take_is_refused_with_a_close_match():
    flow = nf.Flow("bad-signal", store=None)
    with pytest.raises(
        nf.DefinitionError,
        match=r"task 'decide' wait_for=any_of\('approve', 'rejct'\): .* did you mean 'reject'",
    ):
        flow.task(name="decide", wait_for=nf.any_of("approve", "rejct"))(lambda approve, reject: 1)
    assert flow.tasks == {}


def test_a_signal_named_like_a_task_and_mixed_choices_are_refused_before_any_task_runs():
    ran = []
    flow = nf.Flow("clash", store=None)
    flow.task(name="report")(lambda: ran.append("report"))
    flow.task(name="publish", wait_for="report")(lambda report: 1)
    with pytest.raises(nf.DefinitionError, match=r"signal 'report' is named like a task"):
        flow.run(simulate=True)
    flow.remove("publish")
    choice = nf.any_of("a", "b")
    flow.task(name="left", wait_for=choice.on("a"))(lambda a: 1)
    flow.task(name="right", wait_for=choice.on("b"), transient=True)(lambda b: 1)
    with pytest.raises(nf.DefinitionError, match=r"only one of them is transient=True"):
        flow.run(simulate=True)
    assert ran == []
    with pytest.raises(nf.DefinitionError, match=r"transient=True needs wait_for"):
        flow.task(name="x", transient=True)(lambda: 1)
    with pytest.raises(nf.DefinitionError, match=r"wait_for must be a signal name"):
        flow.task(name="y", wait_for=3)(lambda: 1)


def test_send_refuses_an_unknown_signal_with_a_close_match_and_a_run_that_is_over():
    async def scenario():
        flow = nf.Flow("send-checks", store=None)
        flow.task(name="waits", wait_for="approved")(lambda approved: approved)
        handle = flow.start()
        with pytest.raises(nf.SignalError, match=r"send\('aproved'\).*did you mean 'approved'"):
            handle.send("aproved")
        handle.send("approved", 42)
        run = await handle
        assert run.results == {"waits": 42}
        with pytest.raises(nf.SignalError, match=r"is over \(succeeded\)"):
            handle.send("approved")
        plain = nf.Flow("no-signals", store=None)
        plain.task(name="t")(lambda: 1)
        other = plain.start()
        with pytest.raises(nf.SignalError, match=r"no task of flow 'no-signals' waits"):
            other.send("go")
        await other

    asyncio.run(scenario())


# -- sending from outside, on the real loop ----------------------------------------------------


def test_handle_send_from_another_cell_wakes_a_background_run_on_the_same_loop():
    async def scenario():
        flow = nf.Flow("background", store=None)
        flow.task(name="report")(lambda: "r")
        flow.task(name="publish", wait_for="approved")(lambda report, approved: approved)
        handle = flow.start()
        for _ in range(50):  # the run goes on, waiting, while this "cell" does other things
            await asyncio.sleep(0.001)
        assert handle.run.states["publish"] == "queued"
        assert handle.run.state.waiting == {"publish": "'approved'"}
        handle.send("approved", "yes")
        run = await handle
        assert run.results["publish"] == "yes" and run.state.waiting == {}

    asyncio.run(scenario())


def test_handle_send_from_the_main_thread_reaches_a_run_on_its_own_thread():
    flow = nf.Flow("threaded", store=None)
    flow.task(name="publish", wait_for="approved")(lambda approved: approved)
    handle = flow.start()  # no running loop here: the run gets a loop in a thread
    deadline = time.monotonic() + 10
    while handle.run.state.waiting != {"publish": "'approved'"}:
        assert time.monotonic() < deadline, "the run never began to wait"
        time.sleep(0.005)
    handle.send("approved", threading.get_ident())
    run = handle.wait(timeout=10)
    assert run.results["publish"] == threading.get_ident()


def test_a_signal_sent_before_the_background_run_began_is_kept():
    async def scenario():
        flow = nf.Flow("early-send", store=None)
        flow.task(name="publish", wait_for="approved")(lambda approved: approved)
        handle = flow.start()
        handle.send("approved", "before")  # the run's task has not run yet
        return await handle

    assert asyncio.run(scenario()).results == {"publish": "before"}


# -- the store: events, replay, resume ---------------------------------------------------------


def test_the_store_records_signals_and_waits_and_a_replayed_state_shows_them(tmp_path):
    flow = nf.Flow("recorded", store=tmp_path / "s.db")
    flow.task(name="publish", wait_for="approved")(lambda approved: approved)
    flow.task(name="sender")(sends((0, "approved", {"by": "ann"})))

    async def scenario():
        return await flow.arun()

    run = asyncio.run(scenario())
    assert run.results["publish"] == {"by": "ann"}
    store = flow.state_store
    kinds = [e["kind"] for e in store.events(run.run_id)]
    assert "SignalReceived" in kinds and "TaskSignalled" in kinds
    replayed = store.state(run.run_id)
    assert replayed.signals == {"approved": {"by": "ann"}}
    assert replayed.tasks["publish"].reason == "received 'approved'"


def test_an_unpicklable_signal_value_is_stored_as_its_repr_and_the_run_goes_on(tmp_path):
    flow = nf.Flow("unpicklable", store=tmp_path / "s.db")
    flow.task(name="publish", wait_for="go")(lambda go: "ok")
    lock = threading.Lock()

    @flow.task
    def sender():
        nf.context().send("go", lock)

    run = flow.run()
    assert run.status == "succeeded" and run.recorded
    stored = flow.state_store.state(run.run_id).signals["go"]
    assert isinstance(stored, str) and "lock" in stored


def resumable(tmp_path, attempts: list[str]) -> nf.Flow:
    flow = nf.Flow("resumable", store=tmp_path / "s.db")

    @flow.task
    def sender():
        nf.context().send("approved", "yes")
        return "sent"

    @flow.task(wait_for="approved", timeout=2)
    def publish(approved):
        attempts.append(approved)
        if len(attempts) == 1:
            raise RuntimeError("the printer jammed")
        return f"published ({approved})"

    @flow.task(wait_for="approved", timeout=2)
    def archive(publish, approved):  # never waited in the first run: publish failed
        return f"archived ({approved})"

    return flow


def test_a_resumed_run_keeps_the_signals_received_a_task_that_had_its_signal_does_not_wait(
    tmp_path,
):
    attempts: list[str] = []
    first = resumable(tmp_path, attempts).run()
    assert first.status == "failed" and first.states["archive"] == "upstream_failed"
    second = resumable(tmp_path, attempts).run(resume="last")
    # sender is resumed (it does not send again): publish gets the value it received before,
    # archive the signal the earlier run kept; neither waits (a wait would time out in 2 s)
    assert second.status == "succeeded", second.errors
    assert second.states["sender"] == "cached"
    assert second.results["publish"] == "published (yes)" and attempts == ["yes", "yes"]
    assert second.results["archive"] == "archived (yes)"
    assert second.signals == {"approved": "yes"}
    store = resumable(tmp_path, attempts).state_store
    events = [e for e in store.event_objects(second.run_id) if e.kind == "SignalReceived"]
    assert [e.sender for e in events] == [f"resumed from run {first.run_id[:8]}"]


def test_a_resumed_run_decides_a_deferred_choice_as_the_run_it_resumes_did(tmp_path):
    jams: list[str] = []

    def make() -> nf.Flow:
        flow = nf.Flow("resumable-choice", store=tmp_path / "s.db")
        review = nf.any_of("approve", "reject")

        @flow.task
        def customer():
            nf.context().send("reject", "too slow")
            nf.context().send("approve", "changed my mind")

        @flow.task(wait_for=review.on("approve"), timeout=2)
        def ship(approve):
            return "shipped"

        @flow.task(wait_for=review.on("reject"), timeout=2)
        def refund(reject):
            jams.append(reject)
            if len(jams) == 1:
                raise RuntimeError("the till jammed")
            return f"refunded ({reject})"

        return flow

    first = make().run(on_error="continue")
    assert first.states == {"customer": "succeeded", "ship": "skipped", "refund": "failed"}
    second = make().run(resume="last", on_error="continue")
    assert second.states == {"customer": "cached", "ship": "skipped", "refund": "succeeded"}
    assert second.results["refund"] == "refunded (too slow)" and jams == ["too slow"] * 2
    assert second.state.tasks["ship"].reason == "deferred choice: 'reject' came first"
