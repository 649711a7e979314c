"""Cancelling part of a run and ending it on purpose (nbflow.termination): ctx.cancel(task |
tag=), handle.cancel(task | tag=), ctx.finish(). Semantics on the simulated clock: who is
cancelled when, how it propagates (like a skip), the final states and the run's status; a
few on the real loop and in threads, where requests cross threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import nbflow as nf

pytestmark = pytest.mark.timeout(60)


def sleeper(seconds: float, log: list | None = None, name: str = ""):
    async def body():
        try:
            await asyncio.sleep(seconds)
        finally:
            if log is not None:
                log.append(name)  # cleanup runs when cancelled
        return name or seconds

    return body


def ended_at(run: nf.Run, task: str) -> float | None:
    return run.state.tasks[task].ended_t


# -- ctx.cancel ------------------------------------------------------------------------------


def test_ctx_cancel_ends_a_running_task_at_once_and_it_propagates_like_a_skip():
    cleaned: list = []
    flow = nf.Flow("cancel-task", store=None)
    flow.task(name="slow")(sleeper(10, cleaned, "slow"))

    @flow.task
    async def watcher():
        await asyncio.sleep(2)
        nf.context().cancel("slow")
        return "told"

    flow.task(name="uses", after=["slow"])(lambda: "never")
    flow.task(name="cleanup", after=["slow"], trigger="all_done")(lambda: "ran")
    flow.task(name="tolerant", after=["slow"], trigger="none_failed")(lambda: "ran")
    run = flow.run(simulate=True)
    assert run.states == {
        "slow": "cancelled", "watcher": "succeeded", "uses": "skipped",
        "cleanup": "succeeded", "tolerant": "succeeded",
    }  # fmt: skip
    assert ended_at(run, "slow") == 2.0 and cleaned == ["slow"]
    assert run.status == "succeeded" and run.duration == 2.0
    assert run.state.tasks["slow"].reason == "cancelled by task 'watcher' (ctx.cancel)"
    assert run.state.tasks["uses"].reason == "upstream 'slow' ended cancelled"


def test_a_pending_task_cancelled_never_runs_even_when_its_upstream_succeeds_later():
    flow = nf.Flow("cancel-pending", store=None)
    flow.task(name="first")(sleeper(5))
    ran: list = []

    @flow.task(after=["first"])
    def later():
        ran.append("later")

    @flow.task
    def canceller():
        nf.context().cancel("later")

    run = flow.run(simulate=True)
    assert ran == [] and run.states["later"] == "cancelled"
    assert ended_at(run, "later") == 0.0 and run.states["first"] == "succeeded"


def test_a_queued_task_cancelled_never_starts():
    """max_workers=1: `b` and `c` wait in the ready queue while `a` runs; `a` cancels `c`."""
    flow = nf.Flow("cancel-queued", store=None, max_workers=1)

    @flow.task(priority=2)
    async def a():
        await asyncio.sleep(1)
        nf.context().cancel("c")

    flow.task(name="b", priority=1)(sleeper(1))
    flow.task(name="c")(sleeper(1))
    run = flow.run(simulate=True)
    assert run.timeline()["task"].tolist() == ["a", "b"]
    assert run.states["c"] == "cancelled" and ended_at(run, "c") == 1.0
    assert run.duration == 2.0


def test_a_placed_task_cancelled_before_a_runner_takes_it_gives_back_its_slot():
    """`a` and `b` are placed together; one runner takes `a` first, which (sync, inline on the
    simulated loop) cancels `b` before any runner took it."""
    flow = nf.Flow("cancel-placed", store=None, pool=nf.Pool(2))

    @flow.task
    def a():
        nf.context().cancel("b")

    flow.task(name="b")(sleeper(1))
    pool = flow.pool
    run = flow.run(simulate=True)
    assert run.states == {"a": "succeeded", "b": "cancelled"}
    assert run.timeline()["task"].tolist() == ["a"]
    assert pool is not None and pool.in_flight == {"w0": 0, "w1": 0}


def test_cancelling_a_region_spares_the_task_that_asks():
    flow = nf.Flow("region", store=None)
    for name in ("r1", "r2", "r3"):
        flow.task(name=name, tags=["region"])(sleeper(10))

    @flow.task(tags=["region"])
    async def boss():
        await asyncio.sleep(1)
        nf.context().cancel(tag="region")
        return "done"

    flow.task(name="outside")(sleeper(3))
    run = flow.run(simulate=True)
    assert run.states == {
        "r1": "cancelled", "r2": "cancelled", "r3": "cancelled",
        "boss": "succeeded", "outside": "succeeded",
    }  # fmt: skip
    assert run.duration == 3.0


def test_cancelling_a_fan_out_task_cancels_its_elements_in_flight():
    flow = nf.Flow("cancel-mi", store=None)
    flow.task(name="items")(lambda: [1, 2, 3, 4])

    @flow.task(fan_out="items", concurrency=2)
    async def each(items):
        await asyncio.sleep(10)

    @flow.task
    async def stopper():
        await asyncio.sleep(1)
        nf.context().cancel("each")

    run = flow.run(simulate=True)
    rows = run.timeline()
    assert run.states["each"] == "cancelled"
    assert rows[rows["task"].str.startswith("each")]["status"].tolist() == ["cancelled"] * 2
    assert run.duration == 1.0


def test_a_runner_goes_on_cleanly_after_a_task_it_ran_was_cancelled():
    """One worker: the runner that ran `slow` runs `raiser` next; `raiser` raising
    CancelledError itself is its own failure, not a cancel (the runner was uncancelled)."""
    flow = nf.Flow("runner", store=None, max_workers=1, on_error="continue")
    flow.task(name="slow", priority=3)(sleeper(10))

    @flow.task(priority=1, timeout=5)
    async def raiser():
        await asyncio.sleep(1)
        raise asyncio.CancelledError

    async def main():
        handle = flow.start()
        await asyncio.sleep(0.05)
        handle.cancel("slow")  # slow holds the only worker: cancel it from outside
        return await asyncio.wait_for(handle, 30)

    run = asyncio.run(main())
    assert run.states == {"slow": "cancelled", "raiser": "failed"}
    assert isinstance(run.errors["raiser"], asyncio.CancelledError)


def test_a_task_cannot_cancel_itself_and_unknown_names_are_refused():
    flow = nf.Flow("refused", store=None)
    messages: list = []

    @flow.task(tags=["region"])
    def me():
        for kwargs in ({"task": "me"}, {"task": "mee"}, {"tag": "regoin"}, {}):
            try:
                nf.context().cancel(**kwargs)
            except nf.CancelError as error:
                messages.append(str(error))

    flow.run()
    assert messages == [
        "task 'me' cannot cancel itself: return from it (or raise) to end it; "
        "nf.context().finish() ends the whole run",
        "cancel('mee'): flow 'refused' has no task 'mee'; did you mean 'me'?",
        "cancel(tag='regoin'): no task of flow 'refused' has that tag; did you mean 'region'?",
        "cancel a task or a region: cancel('task') or cancel(tag='region')",
    ]


# -- handle.cancel ---------------------------------------------------------------------------


def two_branches() -> nf.Flow:
    flow = nf.Flow("branches", store=None)
    flow.task(name="a", tags=["slow"])(sleeper(0.3))
    flow.task(name="b")(sleeper(0.01))
    flow.task(name="after_a")(lambda a: a)
    return flow


def test_handle_cancel_of_one_task_right_after_start_lets_the_run_go_on():
    async def main():
        handle = two_branches().start()
        handle.cancel("a")  # before the run began: applied as it begins
        return await asyncio.wait_for(handle, 10)

    run = asyncio.run(main())
    assert run.states == {"a": "cancelled", "b": "succeeded", "after_a": "skipped"}
    assert run.status == "succeeded" and run.duration < 0.2
    assert run.state.tasks["a"].reason == "handle.cancel('a')"


def test_handle_cancel_of_a_region_from_another_thread():
    flow = two_branches()
    handle = flow.start()  # no loop here: the run gets a loop in a thread
    time.sleep(0.05)
    handle.cancel(tag="slow")
    run = handle.wait(10)
    assert run.states == {"a": "cancelled", "b": "succeeded", "after_a": "skipped"}
    assert run.state.tasks["a"].reason == "handle.cancel(tag='slow')"


def test_handle_cancel_names_are_checked_in_the_caller():
    async def main():
        handle = two_branches().start()
        with pytest.raises(nf.CancelError, match="did you mean 'after_a'"):
            handle.cancel("after")
        handle.cancel()  # the whole run, as before: cancelled
        return await asyncio.wait_for(handle, 10)

    assert asyncio.run(main()).status == "cancelled"


# -- ctx.finish ------------------------------------------------------------------------------


def test_finish_ends_the_run_succeeded_and_cancels_everything_else():
    cleaned: list = []
    flow = nf.Flow("finish", store=None, on_error="continue")

    @flow.task
    def broken():
        raise RuntimeError("an earlier failure does not matter")

    flow.task(name="slow")(sleeper(100, cleaned, "slow"))

    @flow.task
    async def found():
        await asyncio.sleep(2)
        nf.context().finish()
        await asyncio.sleep(1)  # the caller's attempt runs to its end
        return "found it"

    flow.task(name="next")(lambda found: "never")
    run = flow.run(simulate=True)
    assert run.status == "succeeded" and run.duration == 3.0
    assert run.states == {
        "broken": "failed", "slow": "cancelled", "found": "succeeded", "next": "cancelled",
    }  # fmt: skip
    assert run.results["found"] == "found it" and cleaned == ["slow"]
    assert ended_at(run, "slow") == 2.0
    assert run.state.tasks["next"].reason == ("the run was finished by task 'found' (ctx.finish())")


def test_finish_and_cancel_from_sync_tasks_in_threads():
    flow = nf.Flow("threads", store=None)
    started = threading.Event()

    @flow.task
    async def slow():
        started.set()
        await asyncio.sleep(30)

    @flow.task
    async def other():
        await asyncio.sleep(30)

    @flow.task
    def decider():
        started.wait(5)
        nf.context().cancel("other")  # from a worker thread
        time.sleep(0.05)
        nf.context().finish()
        return "decided"

    run = flow.run()
    assert run.status == "succeeded" and run.duration < 5
    assert run.states == {"slow": "cancelled", "other": "cancelled", "decider": "succeeded"}
    assert run.state.tasks["other"].reason == "cancelled by task 'decider' (ctx.cancel)"


def test_finish_from_a_fan_out_element_cancels_the_other_elements_and_keeps_its_result():
    """Element 0 finds it at t=2: elements 1 and 2 (its siblings, other work) are cancelled
    then, none starts after it, and the task ends with what succeeded: element 0's result."""
    flow = nf.Flow("finish-element", store=None)
    flow.task(name="items")(lambda: [0, 1, 2, 3])

    @flow.task(fan_out="items", concurrency=3)
    async def search(items):
        await asyncio.sleep(2 + 3 * items)
        if items == 0:
            nf.context().finish()
            await asyncio.sleep(1)  # its attempt runs to its end
        return items

    flow.task(name="other")(sleeper(20))
    run = flow.run(simulate=True)
    rows = {r.task: (r.status, r.end.timestamp()) for r in run.timeline().itertuples()}
    t0 = run.timeline()["start"].min().timestamp()
    assert {k: (s, e - t0) for k, (s, e) in rows.items() if k.startswith("search")} == {
        "search[0]": ("succeeded", 3.0),
        "search[1]": ("cancelled", 2.0),
        "search[2]": ("cancelled", 2.0),
    }  # fmt: skip  (search[3] never started)
    assert run.states == {"items": "succeeded", "search": "succeeded", "other": "cancelled"}
    assert run.results["search"] == [0] and run.status == "succeeded" and run.duration == 3.0
    assert run.state.tasks["other"].reason == (
        "the run was finished by task 'search'[0] (ctx.finish())"
    )


def test_a_finisher_that_then_fails_fails_the_run_and_is_not_retried():
    flow = nf.Flow("finish-fails", store=None)
    attempts: list = []

    @flow.task(retry=nf.Retry(max_retries=2, delay=1))
    async def finisher():
        attempts.append(1)
        await asyncio.sleep(1)
        nf.context().finish()
        await asyncio.sleep(1)
        raise RuntimeError("broken after all")

    flow.task(name="slow")(sleeper(10))
    run = flow.run(simulate=True)
    assert run.states == {"finisher": "failed", "slow": "cancelled"}
    assert run.status == "failed" and attempts == [1] and run.duration == 2.0


def test_only_the_finisher_goes_on_not_cancelled():
    """ctx.cancelled, which a sync loop checks to stop early, is False for the attempt that
    called finish() and True for every other one."""
    flow = nf.Flow("finish-flags", store=None)
    seen: dict = {}
    started = threading.Event()

    @flow.task
    def other():
        started.set()
        deadline = time.monotonic() + 10
        while not nf.context().cancelled and time.monotonic() < deadline:
            time.sleep(0.005)
        seen["other"] = nf.context().cancelled

    @flow.task
    def finder():
        started.wait(5)
        nf.context().finish()
        time.sleep(0.05)  # the finish reaches the loop
        seen["finder"] = nf.context().cancelled
        return "found"

    run = flow.run()
    assert seen == {"other": True, "finder": False}
    assert run.states == {"other": "cancelled", "finder": "succeeded"}
    assert run.status == "succeeded"


def test_a_task_cancelled_on_its_own_finishes_its_cleanup_when_the_run_is_cancelled_too():
    """The task is cancelled once (as asyncio.TaskGroup cancels a child once): a cancel of
    the whole run that follows does not cut its cleanup short."""
    log: list = []
    flow = nf.Flow("cleanup", store=None)

    @flow.task
    async def slow():
        try:
            await asyncio.sleep(10)
        finally:
            log.append("cleanup began")
            await asyncio.sleep(0.1)
            log.append("cleanup ended")

    flow.task(name="other")(sleeper(10))

    async def main():
        handle = flow.start()
        await asyncio.sleep(0.05)
        handle.cancel("slow")
        await asyncio.sleep(0.02)  # slow is in its cleanup
        handle.cancel()
        return await asyncio.wait_for(handle, 10)

    run = asyncio.run(main())
    assert log == ["cleanup began", "cleanup ended"]
    assert run.states == {"slow": "cancelled", "other": "cancelled"}
    assert run.status == "cancelled"


# -- resume and the cache --------------------------------------------------------------------


def test_a_task_that_finished_or_cancelled_part_of_its_run_is_never_reused(tmp_path):
    """Served from the cache or a resumed run, `found` would not call finish() again and
    `slow` would run to its end: the same flow and inputs would go on differently. Such a
    result is stored but never reused; the task runs again, and the run ends as before."""
    calls: list = []
    store = tmp_path / "store.db"

    def build() -> nf.Flow:
        flow = nf.Flow("finish-store", store=store)

        @flow.task(cache=True, after=["prep"])  # (prep, in a thread, ends first)
        async def found():
            calls.append("found")
            await asyncio.sleep(0.01)
            nf.context().finish()
            return "answer"

        @flow.task(cache=True)
        async def pruner():
            calls.append("pruner")
            nf.context().cancel("extra")
            return "pruned"

        @flow.task(after=["pruner"])
        async def extra():
            calls.append("extra")

        @flow.task
        async def slow():
            calls.append("slow")
            await asyncio.sleep(30)

        flow.task(name="prep", cache=True)(lambda: calls.append("prep") or "prepared")
        return flow

    first = build().run()
    expected = {"found": "succeeded", "pruner": "succeeded", "extra": "cancelled",
                "slow": "cancelled", "prep": "succeeded"}  # fmt: skip
    assert first.states == expected and first.status == "succeeded"
    previous = first
    for how in ({}, {"resume": "last"}):
        calls.clear()
        again = build().run(**how)
        assert again.states == {**expected, "prep": "cached"}, how
        assert again.status == "succeeded" and again.duration < 10
        assert sorted(calls) == ["found", "pruner", "slow"]  # prep alone was reused
        assert again.results["found"] == "answer"
        assert again.why("found").startswith(
            f"ran: in run {previous.run_id[:8]} it cancelled or finished part of its run"
        )
        previous = again
    assert nf.why(first.run_id, "pruner", store=store).startswith(
        "ran, and cancelled or finished part of its run (nf.context().cancel/finish)"
    )


def test_the_cancelled_error_a_task_gets_says_who_cancelled_it():
    """As asyncio's Task.cancel(msg): a task that catches its CancelledError can read why."""
    heard: dict = {}
    flow = nf.Flow("why-cancelled", store=None)

    def listener(name: str):
        async def body():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError as cancelled:
                heard[name] = cancelled.args
                raise

        return body

    flow.task(name="target")(listener("target"))
    flow.task(name="bystander")(listener("bystander"))

    @flow.task
    async def boss():
        await asyncio.sleep(1)
        nf.context().cancel("target")
        await asyncio.sleep(1)
        nf.context().finish()

    run = flow.run(simulate=True)
    assert heard == {
        "target": ("cancelled by task 'boss' (ctx.cancel)",),
        "bystander": ("the run was finished by task 'boss' (ctx.finish())",),
    }
    assert run.states == {"target": "cancelled", "bystander": "cancelled", "boss": "succeeded"}


def test_a_run_middleware_failing_after_finish_fails_the_run():
    flow = nf.Flow("finish-middleware", store=None)

    async def audit(ctx, call_next):
        result = await call_next()
        if ctx.kind == "run":
            raise RuntimeError("audit failed")
        return result

    flow.use(audit)

    @flow.task
    async def found():
        await asyncio.sleep(1)
        nf.context().finish()
        return "answer"

    flow.task(name="slow")(sleeper(5))
    run = flow.run(simulate=True)
    assert run.states == {"found": "succeeded", "slow": "cancelled"}
    assert (
        run.status == "failed"
        and run.state.error == "run middleware failed: RuntimeError: audit failed"
    )
