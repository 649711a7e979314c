"""Who writes a run: its own event loop, every interval and at its end; the writer's thread
when the loop cannot (another process holds the file's lock, the thread is writing, a task
blocks the loop). Whoever writes, every event and result is there once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path

import nbflow as nf
from nbflow.store import writer as store_writer
from nbflow.store.sqlite import SQLiteStore


def _chain(store, n=30, name="writes", pause=0.0):
    flow = nf.Flow(name, store=store)
    for i in range(n):

        async def task(pause=pause, i=i, **upstream):
            await asyncio.sleep(pause)
            return i

        flow.task(name=f"t{i}", after=[f"t{i - 1}"] if i else [])(task)
    return flow


def _threads_that_wrote(monkeypatch) -> list[str]:
    """The name of the thread of every transaction the store writes, from now on."""
    seen: list[str] = []
    original = store_writer.Writer._statements

    def spy(con, batch):
        seen.append(threading.current_thread().name)
        return original(con, batch)

    monkeypatch.setattr(store_writer.Writer, "_statements", staticmethod(spy))
    return seen


def _assert_whole(store: SQLiteStore, run, n: int) -> None:
    """Every event of ``run`` once, in the order it happened, and every result."""
    events = store.event_objects(run.run_id)
    assert [e.seq for e in events] == list(range(len(events)))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished"
    for kind in ("TaskQueued", "TaskStarted", "TaskSucceeded"):
        assert kinds.count(kind) == n
    order = [e.task for e in events if type(e).__name__ == "TaskSucceeded"]
    assert order == [f"t{i}" for i in range(n)]
    assert sorted(store.results(run.run_id)) == sorted(f"t{i}" for i in range(n))
    (record,) = [r for r in store.runs() if r["run_id"] == run.run_id]
    assert record["status"] == "succeeded"


def test_a_run_is_written_by_its_own_loop_every_interval_and_at_its_end(tmp_path, monkeypatch):
    store = SQLiteStore(tmp_path / "loop.db")
    flow = _chain(store, n=30, pause=0.003)  # ~0.1 s: several ticks
    flow.run()  # the flow's version is written once
    # The thread steps in for a loop that has not written for two of its intervals (a task
    # blocking it; here: a loaded machine could look like one): not within this test.
    monkeypatch.setattr(store._writer, "interval", 60.0)
    seen = _threads_that_wrote(monkeypatch)
    loop_thread = threading.current_thread().name
    run = flow.run()
    assert run.recorded
    assert len(seen) >= 3 and set(seen) == {loop_thread}  # ticks, then the end: no thread
    _assert_whole(store, run, 30)


def test_a_run_the_thread_is_busy_for_waits_for_it_and_loses_nothing(tmp_path, monkeypatch):
    """While the thread writes (held here), the loop's ticks pass; at the end the thread
    writes the rest, the events still in order."""
    store = SQLiteStore(tmp_path / "busy-thread.db")
    flow = _chain(store, n=30, pause=0.003)
    flow.run()
    seen = _threads_that_wrote(monkeypatch)
    writer = store._writer
    ended = asyncio.Event()
    flow.subscribe(lambda event: isinstance(event, nf.RunFinished) and ended.set())

    async def main():
        running = asyncio.ensure_future(flow.arun())
        await asyncio.sleep(0.03)  # a few ticks written by the loop
        writer._lock.acquire()  # as the thread does while it writes
        await ended.wait()
        await asyncio.sleep(0.05)
        assert not running.done()  # its end waits for the thread
        writer._lock.release()
        return await running

    run = asyncio.run(main())
    assert run.recorded
    assert "MainThread" in seen and any(name.startswith("nbflow-store") for name in seen)
    _assert_whole(store, run, 30)


def test_a_lock_taken_by_another_process_mid_run_hands_the_run_to_the_thread(tmp_path, monkeypatch):
    path = tmp_path / "locked-midway.db"
    store = SQLiteStore(path, timeout=5)
    flow = _chain(store, n=30, pause=0.003)  # at least 90 ms
    flow.run()
    seen = _threads_that_wrote(monkeypatch)
    holder = sqlite3.connect(path, isolation_level=None)

    async def main():
        running = asyncio.ensure_future(flow.arun())
        await asyncio.sleep(0.03)  # the loop has written a few ticks
        holder.execute("BEGIN IMMEDIATE")  # another process takes the lock
        await asyncio.sleep(0.2)  # the run goes on (its loop never waits for the lock)
        holder.execute("ROLLBACK")
        return await running

    with contextlib.closing(holder):
        run = asyncio.run(main())
    assert run.recorded
    assert seen[0] == "MainThread" and seen[-1].startswith("nbflow-store")
    _assert_whole(store, run, 30)


def test_the_wal_is_checkpointed_although_the_loops_write_it(tmp_path):
    """The loops' connection never checkpoints (it would block a loop); the thread does,
    once they have written a WAL's worth."""
    path = tmp_path / "wal.db"
    store = SQLiteStore(path)
    flow = nf.Flow("wal", store=store)
    for i in range(20):
        flow.task(name=f"t{i}")(lambda i=i: bytes([i]) * 100_000)  # 2 MB a run
    for _ in range(10):
        assert flow.run().recorded
    store.flush()
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size < 3 * store_writer._CHECKPOINT_BYTES  # 20 MB were written


def test_a_loop_that_cannot_write_a_tick_keeps_it_for_the_next(tmp_path):
    """A tick the loop could not write (the thread held the file) is in the next one."""
    store = SQLiteStore(tmp_path / "skip.db")
    flow = _chain(store, n=40, pause=0.002)
    flow.run()
    writer = store._writer
    original = writer.write
    refused = []

    def sometimes(opened, status=None):
        if status is None and len(refused) < 3:  # the first three ticks: as if held
            refused.append(time.monotonic())
            return False
        return original(opened, status)

    writer.write = sometimes
    try:
        run = flow.run()
    finally:
        del writer.write
    assert len(refused) == 3 and run.recorded
    _assert_whole(store, run, 40)
