"""Stop means stop (#19): cancelling a run at any moment ends all of its work, and only it.

Each test builds the condition the issue describes and checks outcomes (states, counts,
orderings), never how long something took: waits are on events, loop turns and thread joins,
with timeouts only against hangs. Kernel -> Interrupt through a real ipykernel is in
``test_kernel_runs.py``; limits and pools in ``test_limits.py``; what a run leaves in the
process in ``test_runtime.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import nbflow as nf

pytestmark = pytest.mark.timeout(120)

UNFINISHED = {"pending", "queued", "running", "retrying"}


class Journal:
    """What task bodies did, in order, from any thread."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, what: str, task: str) -> None:
        with self.lock:
            self.entries.append((what, task))

    def of(self, what: str) -> list[str]:
        with self.lock:
            return [task for kind, task in self.entries if kind == what]


def busy_flow(journal: Journal, name: str = "busy", **options: Any) -> nf.Flow:
    """Async and sync tasks, a chain, a fan-out: each body logs its start and its cleanup."""
    flow = nf.Flow(name, store=None, **options)

    def logged_async(task: str, seconds: float) -> Callable[..., Any]:
        async def body(**_: Any) -> str:
            journal.add("start", task)
            try:
                await asyncio.sleep(seconds)
            finally:
                journal.add("cleanup", task)
            return task

        return body

    def logged_sync(task: str, seconds: float) -> Callable[..., Any]:
        def body(**_: Any) -> str:
            journal.add("start", task)
            try:
                time.sleep(seconds)
            finally:
                journal.add("cleanup", task)
            return task

        return body

    flow.task(name="a")(logged_async("a", 0.002))
    flow.task(name="b")(logged_sync("b", 0.002))
    flow.task(name="c", after=["a"])(logged_async("c", 0.001))
    flow.task(name="d", after=["b", "c"])(logged_sync("d", 0.001))

    @flow.task
    def items() -> list[int]:
        return list(range(4))

    @flow.task(fan_out="items")
    async def each(items: int) -> int:
        journal.add("start", f"each[{items}]")
        try:
            await asyncio.sleep(0.001)
        finally:
            journal.add("cleanup", f"each[{items}]")
        return items

    return flow


def settled(run: nf.Run) -> None:
    """No task of a finished run is left in a state that means 'not over yet'."""
    assert not UNFINISHED & set(run.states.values()), run.states


def join_executor_threads() -> None:
    """Wait for the worker threads of finished runs (calls that outlived their run)."""
    for thread in threading.enumerate():
        if thread.name.startswith("nbflow-") and thread is not threading.current_thread():
            thread.join(30)
            assert not thread.is_alive(), f"{thread.name} still running after 30 s"


# -- 1. handle.cancel() at any moment -----------------------------------------------------


def test_cancel_at_once_after_start_starts_nothing():
    journal = Journal()
    flow = busy_flow(journal)

    async def main() -> nf.Run:
        handle = flow.start()
        handle.cancel()  # before the loop ran once: the run has not even begun
        return await handle

    run = asyncio.run(main())
    assert run.status == "cancelled"
    assert set(run.states.values()) == {"cancelled"}
    join_executor_threads()
    assert journal.entries == []


def test_cancel_at_once_after_start_without_a_loop():
    journal = Journal()
    handle = busy_flow(journal, "threaded").start()  # a script: the run gets its own thread
    handle.cancel()
    run = handle.wait(60)
    assert run.status == "cancelled"
    settled(run)
    join_executor_threads()
    assert sorted(journal.of("start")) == sorted(journal.of("cleanup"))


@pytest.mark.parametrize("turns", range(12))
def test_cancel_after_some_loop_turns_ends_everything(turns: int):
    """One test per moment, early on: after the run task is created, once it ran (the run
    begun, no task placed), once runners exist, once bodies run..."""
    journal = Journal()
    flow = busy_flow(journal, max_workers=2)

    async def main() -> tuple[nf.Run, int]:
        handle = flow.start()
        for _ in range(turns):
            await asyncio.sleep(0)
        handle.cancel()
        started_before = len(journal.of("start"))
        return await handle, started_before

    run, started_before = asyncio.run(main())
    assert run.status == "cancelled"
    settled(run)
    join_executor_threads()
    assert len(journal.of("start")) == started_before  # nothing started after the cancel
    assert sorted(journal.of("start")) == sorted(journal.of("cleanup"))  # cleanup ran


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_cancel_as_a_fan_out_begins_starts_no_element(sync: bool):
    """Cancelled from a subscriber the moment the fan-out task starts: its elements' lanes
    are created in that same step and the loop runs them before their group is cancelled;
    none may start an element."""
    flow = nf.Flow("fan-cancel", store=None)
    journal = Journal()

    @flow.task
    def items():
        return list(range(8))

    if sync:

        @flow.task(fan_out="items")
        def each(items):
            journal.add("start", f"each[{items}]")
            return items

    else:

        @flow.task(fan_out="items")
        async def each(items):
            journal.add("start", f"each[{items}]")
            return items

    async def main() -> nf.Run:
        handle = flow.start()

        def cancel_on_fan_out(event: nf.Event) -> None:
            if isinstance(event, nf.TaskStarted) and event.task == "each":
                handle.cancel()

        flow.subscribe(cancel_on_fan_out)
        return await handle

    run = asyncio.run(main())
    join_executor_threads()
    assert run.status == "cancelled"
    assert run.states == {"items": "succeeded", "each": "cancelled"}
    assert journal.entries == []


def test_cancel_at_random_moments_ends_everything():
    rng = random.Random(19)
    journal = Journal()
    outcomes: dict[str, int] = {}

    async def main() -> None:
        for i in range(40):
            flow = busy_flow(journal, f"random-{i}", max_workers=rng.choice([None, 1, 3]))
            handle = flow.start()
            for _ in range(rng.randrange(60)):
                await asyncio.sleep(0 if rng.random() < 0.9 else 0.001)
            handle.cancel()
            started_before = len(journal.of("start"))
            run = await handle
            outcomes[run.status] = outcomes.get(run.status, 0) + 1
            settled(run)
            assert run.status in ("cancelled", "succeeded")
            if run.status == "cancelled":
                assert "cancelled" in run.states.values()
            join_executor_threads()
            assert len(journal.of("start")) == started_before, (
                i,
                journal.of("start")[started_before:],
            )
            assert sorted(journal.of("start")) == sorted(journal.of("cleanup"))

    asyncio.run(main())
    assert outcomes.get("cancelled", 0) > 20  # most cancels land mid-run


# -- 2. more cancels while the run shuts down ---------------------------------------------


def slow_cleanup_flow(log: list[str], cleaning: asyncio.Event, release: asyncio.Event):
    flow = nf.Flow("slow-cleanup", store=None)

    @flow.task
    async def holder():
        try:
            await asyncio.sleep(3600)
        finally:
            log.append("cleanup begins")
            cleaning.set()
            try:
                await release.wait()
                await asyncio.sleep(0)
                log.append("cleanup ends")
            except asyncio.CancelledError:
                log.append("cleanup cut short")
                raise

    @flow.task
    async def bystander():
        await asyncio.sleep(3600)

    return flow


@pytest.mark.parametrize("how", ["arun", "handle", "handle-then-task"])
def test_repeated_cancels_wait_for_cleanup_to_end(how: str):
    """However often the run is cancelled while a task's ``finally:`` awaits, the run returns
    after that cleanup ended, and the cleanup is not cut short (a task is cancelled once)."""
    log: list[str] = []

    async def main() -> None:
        cleaning, release = asyncio.Event(), asyncio.Event()
        flow = slow_cleanup_flow(log, cleaning, release)
        if how == "arun":
            task = asyncio.ensure_future(flow.arun())
            await asyncio.sleep(0.01)
            task.cancel()
            cancel, awaited = task.cancel, task
        else:
            handle = flow.start()
            await asyncio.sleep(0.01)
            handle.cancel()
            assert handle._task is not None
            cancel = handle.cancel if how == "handle" else handle._task.cancel
            awaited = handle
        await cleaning.wait()
        for _ in range(2):  # the second and third cancel, during the cleanup
            cancel()
            await asyncio.sleep(0)

        async def let_go() -> None:
            for _ in range(5):
                await asyncio.sleep(0)
            log.append("released")
            release.set()

        releaser = asyncio.ensure_future(let_go())
        try:
            run = await awaited
            log.append(f"returned {run.status}")
        except asyncio.CancelledError:
            log.append("raised CancelledError")
        await releaser

    asyncio.run(main())
    ending = "returned cancelled" if how == "handle" else "raised CancelledError"
    assert log == ["cleanup begins", "released", "cleanup ends", ending]


def test_cancelling_the_awaiting_task_during_a_run_middleware_cleanup():
    flow = nf.Flow("mw-cleanup", store=None)
    log: list[str] = []
    cleaning = asyncio.Event()

    async def middleware(ctx, call_next):
        if ctx.kind != "run":
            return await call_next()
        try:
            return await call_next()
        finally:
            cleaning.set()
            await asyncio.sleep(0.01)
            log.append("middleware cleanup ends")

    flow.use(middleware)

    @flow.task
    async def forever():
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.ensure_future(flow.arun())
        await asyncio.sleep(0.01)
        task.cancel()
        await cleaning.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        log.append("returned")

    asyncio.run(main())
    assert log == ["middleware cleanup ends", "returned"]
    assert flow.last_run is not None and flow.last_run.status == "cancelled"


# -- 3. sync tasks, timeouts and retries on one thread ------------------------------------


def test_sync_attempts_queued_behind_a_timed_out_call_do_not_time_out():
    """max_workers=1: the first attempt times out but its call goes on in the only thread;
    the retry waits for that thread without its timeout running, then runs and succeeds."""
    flow = nf.Flow("one-thread", store=None, max_workers=1)
    let_go = threading.Event()
    starts: list[int] = []
    events: list[Any] = []
    flow.subscribe(events.append)

    @flow.task(timeout=0.05, retry=nf.Retry(max_retries=1, delay=0))
    def hog():
        starts.append(len(starts) + 1)
        if len(starts) == 1:
            let_go.wait(30)  # outlives its timeout: it can only be let go
        return "done"

    async def main() -> nf.Run:
        handle = flow.start()
        while not any(isinstance(e, nf.TaskRetrying) for e in events):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # six of the retry's timeouts, had its clock been running
        assert starts == [1]  # the retry waits for the thread...
        assert not any(isinstance(e, nf.TaskFailed) for e in events)  # ...and does not fail
        let_go.set()
        return await handle

    run = asyncio.run(main())
    assert run.status == "succeeded" and run.results["hog"] == "done"
    assert starts == [1, 2]
    retried = [e for e in events if isinstance(e, nf.TaskRetrying)]
    assert [type(e.error).__name__ for e in retried] == ["TaskTimeoutError"]


def test_no_sync_body_starts_after_its_run_returned():
    """max_workers=1 with timeouts and retries: cancelled while attempts wait for the one
    thread, the run returns; the calls still in the thread's queue never start."""
    flow = nf.Flow("queued-calls", store=None, max_workers=1, on_error="continue")
    let_go = threading.Event()
    journal = Journal()
    events: list[Any] = []
    flow.subscribe(events.append)

    for name in ("t1", "t2", "t3"):

        def body(name: str = name) -> str:
            journal.add("start", name)
            let_go.wait(30)
            return name

        flow.task(name=name, timeout=0.02, retry=nf.Retry(max_retries=3, delay=0))(body)

    async def main() -> nf.Run:
        handle = flow.start()
        # t1's first attempt holds the thread; its retries time out only once they start.
        while sum(isinstance(e, nf.TaskRetrying) for e in events) < 1:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        handle.cancel()
        return await handle

    run = asyncio.run(main())
    started_by_return = list(journal.of("start"))
    let_go.set()  # the call that outlived its timeout returns; the thread takes its queue
    join_executor_threads()
    assert journal.of("start") == started_by_return == ["t1"]
    assert run.status == "cancelled"
    assert run.states == {"t1": "cancelled", "t2": "cancelled", "t3": "cancelled"}
    # The retry that waited for the thread never started: not reported as a timeout.
    timeouts = [e for e in events if isinstance(e, (nf.TaskRetrying, nf.TaskFailed))]
    assert [(e.task, e.attempt) for e in timeouts] == [("t1", 1)]


def test_a_sync_task_stops_early_on_the_cancelled_flag():
    flow = nf.Flow("cooperative", store=None)
    seen: list[str] = []
    running = threading.Event()

    @flow.task
    def loop_until_told():
        context = nf.context()
        running.set()
        while not context.cancelled:
            time.sleep(0.001)
        seen.append("told")
        return "stopped early"

    async def main() -> nf.Run:
        handle = flow.start()
        while not running.is_set():
            await asyncio.sleep(0.001)
        handle.cancel()
        return await handle

    run = asyncio.run(main())
    join_executor_threads()
    assert run.status == "cancelled" and run.states == {"loop_until_told": "cancelled"}
    assert seen == ["told"]


# -- 4. a task's own CancelledError --------------------------------------------------------


def own_cancel_flow(kind: str) -> nf.Flow:
    flow = nf.Flow(f"own-{kind}", store=None, on_error="continue")

    @flow.task
    def items():
        return [1, 2, 3]

    if kind == "async":

        @flow.task
        async def culprit(items):
            raise asyncio.CancelledError

    elif kind == "sync":

        @flow.task
        def culprit(items):
            raise asyncio.CancelledError

    elif kind == "async element":

        @flow.task(fan_out="items")
        async def culprit(items):
            if items == 2:
                raise asyncio.CancelledError
            return items

    elif kind == "sync element":

        @flow.task(fan_out="items")
        def culprit(items):
            if items == 2:
                raise asyncio.CancelledError
            return items

    elif kind == "async condition":

        async def gate(ctx):
            raise asyncio.CancelledError

        @flow.task(when=gate)
        async def culprit(items):
            return items

    @flow.task
    def downstream(culprit):
        return culprit

    @flow.task
    async def bystander(items):
        await asyncio.sleep(0.01)
        return sum(items)

    return flow


@pytest.mark.parametrize(
    "kind", ["async", "sync", "async element", "sync element", "async condition"]
)
def test_a_task_that_raises_cancelled_error_itself_fails(kind: str):
    run = own_cancel_flow(kind).run()
    assert run.status == "failed"
    assert run.states == {
        "items": "succeeded",
        "culprit": "failed",
        "downstream": "upstream_failed",
        "bystander": "succeeded",
    }
    assert run.results["bystander"] == 6
    error = run.errors["culprit"]
    assert asyncio.CancelledError in (type(error), type(error.__cause__)), repr(error)


def test_a_task_that_cancels_its_own_asyncio_task_fails_and_the_next_tasks_are_spared():
    """``asyncio.current_task().cancel()`` in a task cancels the runner it runs in, which
    nbflow shares between tasks. That task fails, saying so; and the cancel does not stay
    on the runner to fall on the next task (it did: a later task raising CancelledError
    itself was reported `cancelled`, as if the run had cancelled it)."""
    flow = nf.Flow("cancels-itself", store=None, on_error="continue")

    @flow.task(priority=10)
    async def culprit():
        asyncio.current_task().cancel()
        await asyncio.sleep(0.01)
        return 1

    @flow.task(priority=5)
    async def swallows():  # cancels its runner and catches the CancelledError itself
        asyncio.current_task().cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
        return "caught"

    @flow.task(priority=3, retry=nf.Retry(max_retries=1, delay=0))
    async def raises_its_own():  # the attempts path: its own CancelledError, after the above
        raise asyncio.CancelledError("mine")

    @flow.task(priority=1, timeout=0.05)
    async def times_out():
        await asyncio.sleep(3600)

    for i in range(5):  # the rest of the run goes on, on other runners
        flow.task(name=f"after{i}")(lambda i=i: i)

    run = flow.run(max_workers=1)
    assert run.states == {
        "culprit": "failed",
        "swallows": "succeeded",
        "raises_its_own": "failed",
        "times_out": "failed",
        **{f"after{i}": "succeeded" for i in range(5)},
    }
    assert "cancelled the asyncio task it runs in" in str(run.errors["culprit"])
    assert str(run.errors["raises_its_own"]) == "mine"
    # (its one attempt: a CancelledError is not an Exception, which Retry's on= defaults to)
    assert run.state.tasks["raises_its_own"].attempts == 1
    assert isinstance(run.errors["times_out"], nf.TaskTimeoutError)
    assert run.status == "failed"


@pytest.mark.parametrize("max_workers", [1, 2, None])
def test_an_element_that_cancels_its_own_asyncio_task_fails_and_no_element_is_lost(max_workers):
    """A fan-out element runs in a lane (an asyncio task) that goes on with the next
    elements. An element cancelling it (``asyncio.current_task().cancel()``) is that
    element's failure; before, the lane ended cancelled, which the task group ignores:
    that element and the lane's next ones vanished, and the task said `succeeded`."""
    flow = nf.Flow("element-cancels-itself", store=None, on_error="continue")

    @flow.task
    def items():
        return [1, 2, 3, 4]

    @flow.task(fan_out="items")
    async def element(items):
        if items == 2:
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
        return items * 10

    run = flow.run(max_workers=max_workers)
    assert run.states == {"items": "succeeded", "element": "failed"}
    record = run.state.tasks["element"]
    assert record.elements_done == 3 and record.elements_failed == 1
    assert record.element_results == {0: 10, 2: 30, 3: 40}
    assert "cancelled the asyncio task it runs in" in str(record.element_errors[1])


def test_the_standalone_fan_out_keeps_every_element_when_one_cancels_its_lane():
    async def element(x: int) -> int:
        if x == 2:
            asyncio.current_task().cancel()
            await asyncio.sleep(0)
        return x

    for concurrency in (1, 2, None):
        values = asyncio.run(
            nf.fan_out(element, [1, 2, 3, 4], concurrency=concurrency, return_exceptions=True)
        )
        assert values[0] == 1 and values[2:] == [3, 4], (concurrency, values)
        assert isinstance(values[1], Exception)


def test_a_task_raising_cancelled_error_stops_the_run_under_on_error_stop():
    flow = nf.Flow("own-stop", store=None)

    @flow.task
    async def culprit():
        await asyncio.sleep(0)
        raise asyncio.CancelledError

    @flow.task
    async def long():
        await asyncio.sleep(3600)

    run = flow.run()
    assert run.status == "failed"
    assert run.states == {"culprit": "failed", "long": "cancelled"}


def test_a_run_middleware_raising_cancelled_error_fails_the_run():
    flow = nf.Flow("own-mw", store=None)

    async def middleware(ctx, call_next):
        if ctx.kind == "run":
            raise asyncio.CancelledError
        return await call_next()

    flow.use(middleware)
    flow.task(name="never")(lambda: 1)
    run = asyncio.run(asyncio.wait_for(flow.arun(), 30))
    assert run.status == "failed"
    assert run.states == {"never": "cancelled"}
    assert "CancelledError" in str(run.state.error)


def test_the_standalone_fan_out_reports_an_element_cancelling_itself():
    async def element(x: int) -> int:
        if x == 1:
            raise asyncio.CancelledError
        return x

    with pytest.raises(ExceptionGroup) as raised:
        asyncio.run(nf.fan_out(element, [0, 1, 2]))
    [error] = raised.value.exceptions
    assert isinstance(error.__cause__, asyncio.CancelledError)
    values = asyncio.run(nf.fan_out(element, [0, 1, 2], return_exceptions=True))
    assert values[0] == 0 and values[2] == 2 and isinstance(values[1], RuntimeError)


# -- 7. nothing left behind ---------------------------------------------------------------


def mixed_flow(rng: random.Random, i: int) -> nf.Flow:
    flow = nf.Flow(f"mixed-{i % 5}", store=None, max_workers=rng.choice([None, 1, 2, 4]))

    @flow.task
    async def fetch():
        await asyncio.sleep(rng.random() * 0.005)
        return 1

    @flow.task(timeout=0.01, retry=nf.Retry(max_retries=1, delay=0))
    def crunch():
        time.sleep(rng.random() * 0.015)
        return 2

    @flow.task
    def items():
        return list(range(6))

    @flow.task(fan_out="items")
    async def each_async(items):
        await asyncio.sleep(0.0005 * items)
        return items

    @flow.task(fan_out="items", concurrency=2)
    def each_sync(items):
        time.sleep(0.0005 * items)
        return items

    @flow.task
    async def total(fetch, crunch, each_async, each_sync):
        return fetch + crunch + sum(each_async) + sum(each_sync)

    return flow


def test_a_hundred_cancelled_runs_leave_no_task_or_thread_behind():
    """asyncio tasks are back to their number at once when each run returns; threads once
    the calls that outlived their run (timeouts, cancels) have returned: each run's worker
    threads stop with it (see nbflow.executors)."""
    rng = random.Random(1919)
    loop_errors: list[dict[str, Any]] = []
    statuses: dict[str, int] = {}

    async def main() -> tuple[int, int]:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: loop_errors.append(ctx))
        tasks_before = len(asyncio.all_tasks())
        threads_before = {t.ident for t in threading.enumerate()}
        for i in range(100):
            handle = mixed_flow(rng, i).start()
            for _ in range(rng.randrange(80)):
                await asyncio.sleep(0 if rng.random() < 0.9 else 0.001)
            handle.cancel()
            if rng.random() < 0.3:
                handle.cancel()  # twice
            run = await handle
            statuses[run.status] = statuses.get(run.status, 0) + 1
            settled(run)
            assert len(asyncio.all_tasks()) == tasks_before, asyncio.all_tasks()
        join_executor_threads()
        left = [t for t in threading.enumerate() if t.ident not in threads_before]
        assert left == []
        return tasks_before, len(asyncio.all_tasks())

    before, after = asyncio.run(main())
    assert before == after == 1
    assert loop_errors == []
    assert statuses.get("cancelled", 0) > 50
