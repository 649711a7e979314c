"""Exclusive sections (nbflow.locks): tasks holding the same lock never overlap, in one run
and across concurrent runs; a task waiting for its lock holds nothing else, so runs sharing
a pool and a lock cannot deadlock. Waits that could hang are bounded with
``asyncio.wait_for``, so a deadlock fails the test instead of hanging it."""

from __future__ import annotations

import asyncio
import threading

import pytest

import nbflow as nf
from nbflow.locks import Holder, Locks, locks_of

pytestmark = pytest.mark.timeout(60)
HANG = 20  # seconds: only ever reached by a deadlock


class Overlap:
    """Counts how many bodies hold a lock at once (from any thread)."""

    def __init__(self) -> None:
        self.now = self.peak = 0
        self.order: list[str] = []
        self.mutex = threading.Lock()

    async def hold(self, name: str, seconds: float) -> str:
        with self.mutex:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.order.append(name)
        try:
            await asyncio.sleep(seconds)
        finally:
            with self.mutex:
                self.now -= 1
        return name


def writers(name: str, overlap: Overlap, n: int = 3, seconds: float = 1, **options) -> nf.Flow:
    flow = nf.Flow(name, store=None, **options)
    for i in range(n):

        async def write(task: str = f"{name}.w{i}") -> str:
            return await overlap.hold(task, seconds)

        flow.task(name=f"w{i}", lock="db")(write)
    return flow


def starts(run: nf.Run) -> dict[str, float]:
    frame = run.timeline()
    t0 = frame["start"].min()
    return {r.task: (r.start - t0).total_seconds() for r in frame.itertuples()}


def test_tasks_of_one_run_holding_a_lock_run_one_at_a_time():
    overlap = Overlap()
    flow = writers("one", overlap)
    flow.task(name="free")(lambda: "no lock")
    run = flow.run(simulate=True)
    assert starts(run) == {"w0": 0.0, "free": 0.0, "w1": 1.0, "w2": 2.0}
    assert overlap.peak == 1 and run.duration == 3.0 and run.status == "succeeded"


def test_a_lock_is_held_across_retries_and_their_delays():
    flow = nf.Flow("retries", store=None)
    attempts: list = []

    @flow.task(lock="db", retry=nf.Retry(max_retries=1, delay=5))
    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("once")

    @flow.task(lock="db", priority=-1)
    async def other():
        await asyncio.sleep(1)

    run = flow.run(simulate=True)
    assert starts(run)["other"] == 5.0  # not during flaky's retry delay


def test_runs_sharing_a_lock_never_overlap_and_take_turns_in_order():
    overlap = Overlap()

    async def main() -> list[nf.Run]:
        runs = [writers(name, overlap, n=2, seconds=0.02).arun() for name in "ABC"]
        return await asyncio.wait_for(asyncio.gather(*runs), HANG)

    runs = asyncio.run(main())
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert overlap.peak == 1
    # first come, first served: A's tasks asked first, then B's, then C's
    assert overlap.order == ["A.w0", "A.w1", "B.w0", "B.w1", "C.w0", "C.w1"]


def test_runs_sharing_an_exhausted_pool_and_a_lock_do_not_deadlock():
    """A's fan-out task holds lock `db`, and its elements need the pool's only worker. B's
    task, which also wants `db`, is placed while A holds it. Were B's task to take the worker
    and then wait for the lock, A's elements would wait for the worker forever; a lock is
    always taken before a slot, so B's task waits holding nothing."""
    pool = nf.Pool(1)
    overlap = Overlap()
    order: list[str] = []

    a = nf.Flow("A", store=None, pool=pool)
    a.task(name="items")(lambda: [1, 2, 3])

    @a.task(fan_out="items", lock="db")
    async def each(items):
        order.append(f"A.each[{items}]")
        await asyncio.sleep(0.01)

    b = nf.Flow("B", store=None, pool=pool)

    @b.task(lock="db")
    async def write():
        order.append("B.write")
        await overlap.hold("B.write", 0.01)

    async def main() -> list[nf.Run]:
        first = a.start()
        while "A.each[1]" not in order:  # A holds the lock and the worker
            await asyncio.sleep(0.001)
        second = b.start()
        return await asyncio.wait_for(asyncio.gather(first, second), HANG)

    runs = asyncio.run(main())
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert order == ["A.each[1]", "A.each[2]", "A.each[3]", "B.write"]
    assert pool.in_flight == {"w0": 0}


def test_a_failed_or_cancelled_holder_gives_the_lock_back():
    async def main() -> tuple[nf.Run, nf.Run, Locks]:
        flow = nf.Flow("failing", store=None, on_error="continue")

        @flow.task(lock="db", priority=1)
        async def breaks():
            await asyncio.sleep(0.01)
            raise RuntimeError("broken")

        @flow.task(lock="db")
        async def waits():
            return "got it"

        failed = await asyncio.wait_for(flow.arun(), HANG)
        held = writers("held", Overlap(), n=2, seconds=10)
        handle = held.start()
        await asyncio.sleep(0.05)  # w0 holds the lock, w1 waits for it
        handle.cancel()
        cancelled = await asyncio.wait_for(handle, HANG)
        return failed, cancelled, nf.lock_table()

    failed, cancelled, table = asyncio.run(main())
    assert failed.states == {"breaks": "failed", "waits": "succeeded"}
    assert cancelled.states == {"w0": "cancelled", "w1": "cancelled"}
    assert table.held() == {} and table.waiting() == {}


def test_a_task_cancelled_while_it_waits_for_its_lock_never_starts():
    overlap = Overlap()
    flow = writers("waiting", overlap, n=3)

    @flow.task
    async def canceller():
        await asyncio.sleep(0.5)
        nf.context().cancel("w1")  # waits for the lock w0 holds

    run = flow.run(simulate=True)
    assert run.states["w1"] == "cancelled" and "w1" not in starts(run)
    assert starts(run)["w2"] == 1.0 and run.duration == 2.0


def test_a_shared_table_excludes_runs_on_other_loops_and_threads():
    table = Locks()
    overlap = Overlap()
    handles = [writers(f"T{i}", overlap, n=2, seconds=0.02, locks=table).start() for i in range(3)]
    runs = [h.wait(HANG) for h in handles]  # each started without a loop: its own thread
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert overlap.peak == 1 and table.held() == {}


def test_each_loop_has_its_own_table_and_it_says_who_holds_what():
    async def inside() -> tuple[Locks, Locks, str]:
        loop = asyncio.get_running_loop()
        table = nf.lock_table()
        assert locks_of(loop) is table
        table.take("db", Holder("f", "0123456789", "t"), loop, lambda: None)
        table.take("db", Holder("g", "abcdef0123", "u"), loop, lambda: None)
        return table, table, repr(table)

    first, again, shown = asyncio.run(inside())
    assert first is again
    assert shown == "<Locks: 'db' held by f/t (run 01234567), 1 waiting>"
    assert asyncio.run(inside())[0] is not first  # another loop, another table


@pytest.mark.parametrize("value", [3, "", "  ", ["db"]])
def test_a_lock_that_is_no_name_is_refused_naming_the_task_and_field(value):
    flow = nf.Flow("bad", store=None)
    with pytest.raises(nf.DefinitionError) as error:
        flow.task(name="write", lock=value)(lambda: None)
    assert str(error.value).startswith(
        "task 'write': lock: Value error, lock must be the name of a lock (a non-empty "
        f"string), e.g. lock='db', got {value!r}"
    )


class RemoteOnly(nf.LocalExecutor):
    """An executor that says its results stay off the kernel (as a cluster's would) and has
    no locks of its own."""

    remote_results = True


def test_lock_on_an_executor_without_locks_of_its_own_is_refused_before_any_task_runs():
    ran: list = []
    flow = nf.Flow("remote", store=None)
    flow.task(name="free")(lambda: ran.append("free"))
    flow.task(name="write", lock="db")(lambda: ran.append("write"))
    with pytest.raises(nf.DefinitionError) as error:
        flow.run(executor=RemoteOnly())
    assert str(error.value).startswith(
        "task 'write' lock='db': executor RemoteOnly runs tasks off the kernel and has no "
        "locks of its own (remote_locks())"
    )
    assert ran == []


class SlowToRelease:
    """Executor-side locks (the protocol of nbflow.dask_locks.DaskLocks) whose release
    takes until ``released`` is set, as a round trip to a scheduler does."""

    def __init__(self) -> None:
        self.releasing = asyncio.Event()
        self.released = asyncio.Event()
        self.log: list[str] = []

    async def acquire(self, name: str) -> str:
        self.log.append(f"acquire {name}")
        return name

    async def release(self, lock: str) -> None:
        self.releasing.set()
        await self.released.wait()
        self.log.append(f"release {lock}")

    def release_soon(self, lock: str) -> None:
        self.log.append(f"release_soon {lock}")


class WithRemoteLocks(nf.LocalExecutor):
    def __init__(self, locks: SlowToRelease) -> None:
        super().__init__()
        self._locks = locks

    def remote_locks(self) -> SlowToRelease:
        return self._locks


def test_a_cancel_while_the_remote_lock_is_given_back_leaves_the_finished_task_alone():
    """The task is over and decided before its remote lock is given back: a cancel that
    arrives meanwhile finds it finished (it was decided twice: succeeded, then cancelled)."""
    flow = nf.Flow("remote-release", store=None)
    counted: list = []

    @flow.task(lock="db")
    async def write():
        return "written"

    @flow.task
    async def after(write):
        counted.append(write)

    async def main() -> tuple[nf.Run, SlowToRelease]:
        locks = SlowToRelease()
        handle = flow.start(executor=WithRemoteLocks(locks))
        await asyncio.wait_for(locks.releasing.wait(), HANG)
        handle.cancel("write")  # write ended; its runner is giving back the remote lock
        locks.released.set()
        return await asyncio.wait_for(handle, HANG), locks

    run, locks = asyncio.run(main())
    assert run.states == {"write": "succeeded", "after": "succeeded"}
    assert counted == ["written"] and run.status == "succeeded"
    assert locks.log == ["acquire db", "release db"]


def test_a_task_cancelled_while_it_holds_its_lock_and_waits_for_a_slot_gives_the_lock_back():
    """One slot, held by `a`. `x` took lock `db` and waits in the ready queue for the slot
    (a fan-out task in the flow keeps dispatch going past a full slot table); `a` cancels
    `x`. The lock must come back at once: `y`, which wants it later, would wait for ever."""
    flow = nf.Flow("held-while-queued", store=None, max_workers=1)
    flow.task(name="items")(lambda: [1])

    @flow.task(fan_out="items")
    async def each(items):
        await asyncio.sleep(0.01)

    @flow.task(priority=5)
    async def a():
        await asyncio.sleep(0.02)
        nf.context().cancel("x")

    flow.task(name="x", lock="db", priority=1)(lambda: "x")
    flow.task(name="y", lock="db", after=["a"])(lambda: "y")

    async def main() -> nf.Run:
        return await asyncio.wait_for(flow.arun(), HANG)

    run = asyncio.run(main())
    assert run.states == {"items": "succeeded", "each": "succeeded", "a": "succeeded",
                          "x": "cancelled", "y": "succeeded"}  # fmt: skip
    assert run.status == "succeeded"


def test_waiting_for_a_lock_does_not_count_towards_timeout_and_a_timed_out_holder_lets_go():
    flow = nf.Flow("lock-timeouts", store=None, on_error="continue")

    @flow.task(lock="db", timeout=2, retry=nf.Retry(max_retries=1, delay=3))
    async def stuck():  # times out twice: 0-2, then 5-7 after the retry delay
        await asyncio.sleep(10)

    @flow.task(lock="db", timeout=2, priority=-1)
    async def patient():  # waits 7 s for the lock, then needs 1 s of its 2
        await asyncio.sleep(1)
        return "written"

    run = flow.run(simulate=True)
    rows = [(r.task, r.attempt, r.status) for r in run.timeline().itertuples()]
    assert rows == [("stuck", 1, "failed"), ("stuck", 2, "failed"), ("patient", 1, "succeeded")]
    assert starts(run)["patient"] == 7.0 and run.duration == 8.0
    assert isinstance(run.errors["stuck"], nf.TaskTimeoutError)


def test_runs_on_different_pools_still_share_a_lock():
    overlap = Overlap()

    async def main() -> list[nf.Run]:
        runs = [
            writers("P", overlap, n=2, seconds=0.02, pool=nf.Pool(1)).arun(),
            writers("Q", overlap, n=2, seconds=0.02, pool=nf.Pool({"a": 1, "b": 2})).arun(),
        ]
        return await asyncio.wait_for(asyncio.gather(*runs), HANG)

    runs = asyncio.run(main())
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert overlap.peak == 1 and overlap.order == ["P.w0", "P.w1", "Q.w0", "Q.w1"]


def test_a_task_of_another_run_cancelled_while_it_waits_for_the_lock_leaves_no_trace():
    async def main() -> tuple[nf.Run, nf.Run, dict, dict]:
        holder = writers("H", Overlap(), n=1, seconds=0.2)
        waiter = writers("W", Overlap(), n=1, seconds=0.01)
        waiter.task(name="free")(lambda: "no lock")
        first = holder.start()
        await asyncio.sleep(0.05)
        second = waiter.start()
        await asyncio.sleep(0.05)
        table = nf.lock_table()
        waiting = table.waiting()
        second.cancel("w0")  # waits for H's lock, holding nothing
        done = await asyncio.wait_for(second, HANG)
        after_cancel = table.waiting()
        return done, await asyncio.wait_for(first, HANG), waiting, after_cancel

    waiter_run, holder_run, waiting, after_cancel = asyncio.run(main())
    assert list(waiting) == ["db"] and waiting["db"][0].startswith("W/w0 (run ")
    assert after_cancel == {}  # out of the line at once, before the holder let go
    assert waiter_run.states == {"w0": "cancelled", "free": "succeeded"}
    assert waiter_run.status == "succeeded" and holder_run.status == "succeeded"
    assert "w0" not in starts(waiter_run)
