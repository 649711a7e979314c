"""The state store: what a run records, where the default store lives, the writer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time

import pytest

import nbflow as nf
from nbflow.store import MemoryStore, StoreWarning, open_store, resolve_store
from nbflow.store.sqlite import SQLiteStore


def run_identity(flow, task):
    return flow.identify().tasks[task].digest


def _flow(store="default", name="recorded"):
    flow = nf.Flow(name, store=store, on_error="continue")
    failures = {"flaky": 1}

    @flow.task
    def load():
        return [1, 2, 3]

    @flow.task(retry=nf.Retry(max_retries=2, delay=0.001))
    def flaky(load):
        if failures["flaky"]:
            failures["flaky"] -= 1
            raise ConnectionError("try again")
        return len(load)

    @flow.task
    def broken(load):
        raise ValueError("no good")

    @flow.task
    def after_broken(broken):
        return 1

    return flow


def test_a_run_records_its_run_attempts_and_ordered_events():
    flow = _flow()
    seen = []
    flow.subscribe(seen.append)
    run = flow.run(variables={"mode": "full"})
    store = flow.state_store
    (record,) = store.runs("recorded")
    assert record["run_id"] == run.run_id and record["status"] == "failed"
    assert record["version"] == run.flow_version
    assert json.loads(record["variables"]) == {"mode": "full"}
    assert record["started"] <= record["ended"]

    attempts = {(a["task"], a["attempt"]): a for a in store.attempts(run.run_id)}
    assert set(attempts) == {("load", 1), ("flaky", 1), ("flaky", 2), ("broken", 1)}
    assert attempts[("flaky", 1)]["state"] == "failed"
    assert attempts[("flaky", 1)]["error"] == "ConnectionError: try again"
    assert attempts[("flaky", 2)]["state"] == "succeeded"
    assert attempts[("broken", 1)]["error"] == "ValueError: no good"
    assert "raise ValueError" in attempts[("broken", 1)]["traceback"]
    assert all(a["worker"] and a["ended"] >= a["started"] for a in attempts.values())

    events = store.events(run.run_id)
    assert [(e["seq"], e["kind"], e["task"]) for e in events] == [
        (e.seq, e.kind, getattr(e, "task", None)) for e in seen
    ]
    skipped = next(e for e in events if e["kind"] == "TaskSkipped")
    assert skipped["payload"] == {
        "state": "upstream_failed",
        "reason": skipped["payload"]["reason"],
    }
    retry = next(e for e in events if e["kind"] == "TaskRetrying")
    assert retry["payload"]["error"] == "ConnectionError: try again" and retry["attempt"] == 1


def test_subscribers_see_run_finished_only_once_the_run_is_on_disk(tmp_path):
    flow = nf.Flow("on-disk", store=tmp_path / "nbflow.db")
    flow.task(name="a")(lambda: 1)
    flow.task(name="b", after=["a"])(lambda: 2)
    seen: list[tuple[str, int]] = []

    def at_the_end(event):
        if event.kind == "RunFinished":  # read the store from a subscriber, at once
            (record,) = flow.state_store.runs("on-disk")
            seen.append((record["status"], len(flow.state_store.attempts(event.run_id))))

    flow.subscribe(at_the_end)
    flow.run()
    assert seen == [("succeeded", 2)]


def test_the_default_store_is_a_file_per_test_here(tmp_path):
    flow = _flow()
    flow.run()
    assert flow.state_store.location == str(tmp_path / "nbflow.db")
    assert (tmp_path / "nbflow.db").exists()


def test_the_default_store_without_env_lives_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("NBFLOW_STORE")
    monkeypatch.chdir(tmp_path)
    _flow().run()
    assert (tmp_path / ".nbflow" / "nbflow.db").exists()
    assert (tmp_path / ".nbflow" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_nbflow_store_none_and_store_none_record_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("NBFLOW_STORE", "none")
    flow = _flow()
    assert flow.run().status == "failed" and flow.state_store is None
    monkeypatch.setenv("NBFLOW_STORE", str(tmp_path / "x.db"))
    _flow(store=None).run()
    assert not (tmp_path / "x.db").exists()


def test_resolve_store_accepts_paths_objects_memory_and_rejects_the_rest(tmp_path):
    path = tmp_path / "a.db"
    assert resolve_store(path) is resolve_store(str(path))  # one handle per file
    memory = MemoryStore()
    assert resolve_store(memory) is memory
    assert resolve_store(":memory:") is open_store(":memory:")
    assert resolve_store(None) is None
    with pytest.raises(TypeError, match="store must be a path, a store object"):
        resolve_store(42)


def test_one_writer_thread_per_file_however_many_handles(tmp_path):
    path = tmp_path / "shared.db"
    first, second = SQLiteStore(path), SQLiteStore(path)
    assert first._writer is second._writer
    writers = [t for t in threading.enumerate() if t.name.endswith(str(path))]
    assert len(writers) == 1


def test_a_deleted_store_file_is_started_again(tmp_path):
    path = tmp_path / "gone.db"
    flow = _flow(store=path)
    flow.run()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"gone.db{suffix}").unlink(missing_ok=True)
    run = flow.run()
    assert [r["run_id"] for r in nf.history(store=path).to_dict("records")] == [run.run_id]


def test_memory_store_records_and_resumes_like_sqlite():
    store = MemoryStore()
    flow = _flow(store=store)
    seen = []
    flow.subscribe(seen.append)
    first = flow.run()
    second = _flow(store=store).run(resume="last")
    assert second.states["load"] == "cached" and second.states["flaky"] == "cached"
    assert second.states["broken"] == "failed"
    frame = nf.history(store=store)
    assert frame.run_id.tolist() == [first.run_id, second.run_id]
    assert [e["kind"] for e in store.events(first.run_id)] == [e.kind for e in seen]


def test_fan_out_elements_are_attempts_of_their_own(tmp_path):
    flow = nf.Flow("fan", store=tmp_path / "f.db")

    @flow.task
    def items():
        return [1, 2, 3]

    @flow.task(fan_out="items")
    def double(items):
        return 2 * items

    run = flow.run()
    attempts = flow.state_store.attempts(run.run_id)
    elements = [a["element"] for a in attempts if a["task"] == "double"]
    assert sorted(elements) == [0, 1, 2]  # a fan-out task's attempts are its elements'
    resumed = flow.run(resume="last")
    assert resumed.states["double"] == "cached" and resumed.results["double"] == [2, 4, 6]


def test_a_result_that_cannot_be_pickled_warns_naming_the_task_and_the_run_goes_on():
    flow = nf.Flow("unpicklable")
    calls = []

    @flow.task
    def lock():
        calls.append("lock")
        return threading.Lock()

    @flow.task
    def fine(lock):
        return 1

    with pytest.warns(StoreWarning, match=r"task 'lock': its result \(lock\) cannot be pickled"):
        run = flow.run()
    assert run.status == "succeeded"
    with pytest.warns(StoreWarning):
        again = flow.run(resume="last")
    assert calls == ["lock", "lock"] and again.states["lock"] == "succeeded"


def test_results_above_file_bytes_are_content_addressed_files(tmp_path):
    store = SQLiteStore(tmp_path / "files.db", file_bytes=100)
    flow = nf.Flow("big", store=store)
    flow.task(lambda: "x" * 1000, name="big")
    flow.task(lambda: "x" * 1000, name="same")  # an equal result: one file for both
    flow.task(lambda: 1, name="small")
    run = flow.run()
    rows = store.results(run.run_id)
    assert rows["big"].file is not None and rows["big"].file == rows["same"].file
    assert rows["small"].file is None and rows["small"].stored
    files = [p for p in store.files.root.rglob("*") if p.is_file()]
    assert [p.relative_to(store.files.root).as_posix() for p in files] == [rows["big"].file]
    resumed = flow.run(resume="last")
    assert set(resumed.states.values()) == {"cached"} and resumed.results["big"] == "x" * 1000


def test_variables_that_are_not_json_are_kept_as_repr(tmp_path):
    flow = nf.Flow("vars", store=tmp_path / "v.db")
    flow.task(lambda thing: 1, name="t")
    run = flow.run(variables={"thing": {1, 2}, "n": 3})
    (record,) = flow.state_store.runs("vars")
    assert json.loads(record["variables"]) == {"thing": "{1, 2}", "n": 3}
    assert run.status == "succeeded"


def test_a_cancelled_run_is_recorded_as_cancelled(tmp_path):
    flow = nf.Flow("cancel", store=tmp_path / "c.db")

    @flow.task
    async def slow():
        await asyncio.sleep(30)

    async def main():
        handle = flow.start()
        await asyncio.sleep(0.05)
        handle.cancel()
        return await handle

    run = asyncio.run(main())
    (record,) = flow.state_store.runs("cancel")
    assert record["status"] == run.status == "cancelled"
    (attempt,) = flow.state_store.attempts(run.run_id)
    assert attempt["state"] == "cancelled"


def test_concurrent_runs_on_one_loop_share_the_store(tmp_path):
    store = SQLiteStore(tmp_path / "loop.db")
    flows = [nf.Flow(f"f{i}", store=store) for i in range(3)]
    for flow in flows:
        for j in range(20):
            flow.task(lambda: None, name=f"t{j}")

    async def main():
        return await asyncio.gather(*(f.arun() for f in flows))

    runs = asyncio.run(main())
    for run in runs:
        assert len(store.attempts(run.run_id)) == 20
        seqs = [e["seq"] for e in store.events(run.run_id)]
        assert seqs == list(range(len(seqs)))


def test_the_event_log_gives_back_every_event_as_it_was(tmp_path):
    """Stored events are the live ones, field by field: plain results ride along, others
    are left out (the store keeps them apart), an error comes back as its type's name and
    message, a run variable that is not plain data as its repr (a lambda too)."""
    from nbflow.store.eventlog import StoredError

    flow = nf.Flow("log", store=tmp_path / "log.db", on_error="continue")
    attempts: list[int] = []

    @flow.task
    def numbers():
        return 7

    @flow.task
    def ratio(numbers):
        return numbers / 2

    @flow.task
    def table(numbers):
        return {"n": numbers}

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("try again")
        return None

    @flow.task
    def broken(ratio):
        raise ValueError(f"no good: {ratio}")

    flow.task(name="after_broken")(lambda broken: 1)
    seen: list[nf.Event] = []
    flow.subscribe(seen.append)
    run = flow.run(variables={"scale": 2, "fn": lambda x: x})
    stored = flow.state_store.event_objects(run.run_id)
    assert len(stored) == len(seen) > 15
    for live, back in zip(seen, stored, strict=True):
        assert type(back) is type(live) and (back.run_id, back.seq, back.t) == (
            live.run_id,
            live.seq,
            live.t,
        )
        for field in dataclasses.fields(live):
            value, kept = getattr(live, field.name), getattr(back, field.name)
            if isinstance(value, BaseException):
                assert isinstance(kept, StoredError) and type(kept).__name__ == type(value).__name__
                assert str(kept) == str(value)
            elif field.name == "result" and type(value) not in (int, float, bool, type(None)):
                assert kept is None  # kept apart: see store.results()
            elif field.name == "variables":
                assert kept["scale"] == 2 and kept["fn"].startswith("<function")
            else:
                assert kept == value, field.name
    results = {e.task: e.result for e in stored if e.kind == "TaskSucceeded"}
    assert results == {"numbers": 7, "ratio": 3.5, "table": None, "flaky": None}
    assert flow.state_store.results(run.run_id)["table"].stored


def test_the_event_log_leaves_out_unknown_kinds_and_keeps_what_events_carry(tmp_path):
    """A newer nbflow's events: a kind this one does not know is left out (the others keep
    their seq), one with more fields is read with those it has; what an event carries comes
    back as it was when it pickles (a signal's value), else as its repr."""
    import fractions
    import pickle
    import sqlite3
    import threading as threading_module

    from nbflow.store import eventlog

    class Unknown(nf.Event):  # pickled by reference to a class this nbflow does not have
        pass

    Unknown.__module__, Unknown.__qualname__ = "nbflow.events", "TaskFromTheFuture"
    nf.events.TaskFromTheFuture = Unknown
    try:
        items = [
            nf.TaskQueued, 0.5, "a", "extra field",
            Unknown, 0.6,
            nf.SignalReceived, 0.7, "approved", fractions.Fraction(1, 3), "handle.send",
        ]  # fmt: skip
        data = pickle.dumps(items, protocol=5)
    finally:
        del nf.events.TaskFromTheFuture
    store = SQLiteStore(tmp_path / "future.db")
    with contextlib.closing(sqlite3.connect(store.location)) as con:
        con.execute("INSERT INTO records (run_id, created, events) VALUES ('r', 0, ?)", (data,))
        con.commit()
    first, second = store.event_objects("r")
    assert (first.seq, first.t, first.task) == (0, 0.5, "a")
    assert (second.seq, second.t, second.signal) == (2, 0.7, "approved")
    assert second.value == fractions.Fraction(1, 3)
    lock = threading_module.Lock()  # does not pickle: kept as its repr
    [back] = eventlog.decode("r", [eventlog.encode([nf.SignalReceived, 0.1, "s", lock, "me"])])
    assert back.value.startswith("<unlocked _thread.lock") and back.sender == "me"


def test_a_store_that_overrides_submit_sees_every_event(tmp_path):
    seen: list[str] = []

    class Watching(SQLiteStore):
        def submit(self, item):
            seen.append(type(item).__name__)
            super().submit(item)

    store = Watching(tmp_path / "watching.db")
    flow = nf.Flow("watched", store=store)
    flow.task(name="a")(lambda: 1)
    flow.run()
    task_events = [k for k in seen if k.startswith("Task")]
    assert task_events == ["TaskQueued", "TaskStarted", "TaskSucceeded"]


def test_history_is_a_dataframe_of_runs_oldest_first():
    _flow().run()
    _flow(name="other").run()
    everything = nf.history()
    assert everything.flow.tolist() == ["recorded", "other"]
    assert list(everything.columns) == [
        "run_id", "flow", "flow_version", "status", "start", "end", "duration_s", "variables",
        "resumed_from", "parent_run", "stored_bytes", "file_bytes",
    ]  # fmt: skip
    assert nf.history("other").flow.tolist() == ["other"]
    assert (everything.duration_s >= 0).all() and str(everything.start.dtype).startswith("date")


def test_history_without_a_store_is_an_error(monkeypatch):
    monkeypatch.setenv("NBFLOW_STORE", "none")
    with pytest.raises(nf.StoreError, match="no store"):
        nf.history()


def test_a_store_handle_outlives_close_all(tmp_path):
    store = SQLiteStore(tmp_path / "long-lived.db")
    flow = _flow(store=store)
    flow.run()
    nf.store.close_all()  # e.g. between tests: the handle's writer thread stops
    second = flow.run()
    assert [r["run_id"] for r in store.runs("recorded")][-1] == second.run_id


def test_the_event_log_keeps_times_workers_and_payloads_of_the_common_events(tmp_path):
    flow = nf.Flow("log", store=tmp_path / "log.db")

    @flow.task
    def items():
        return [1, 2]

    @flow.task(fan_out="items")
    def double(items):
        return 2 * items

    seen = []
    flow.subscribe(seen.append)
    first = flow.run()
    stored = flow.state_store.events(first.run_id)
    assert len(stored) == len(seen)
    for event, row in zip(seen, stored, strict=True):
        assert row["kind"] == event.kind and abs(row["t"] - event.t) < 1e-6
        assert row["worker"] == getattr(event, "worker", None)
        assert row["element"] == getattr(event, "element", None)
    sizes = [r["payload"] for r in stored if r["kind"] == "TaskStarted" and r["task"] == "double"]
    assert {"size": 2} in sizes
    resumed = flow.run(resume="last")
    cached = [r for r in flow.state_store.events(resumed.run_id) if r["kind"] == "TaskSucceeded"]
    assert [r["payload"] for r in cached] == [{"cached": True}, {"cached": True}]
    attempts = flow.state_store.attempts(resumed.run_id)
    assert [a["state"] for a in attempts] == ["cached", "cached"]


def test_attempts_are_derived_from_the_event_log_while_the_run_goes_on(tmp_path):
    store = SQLiteStore(tmp_path / "live.db")
    flow = nf.Flow("live", store=store)
    gate = threading.Event()

    @flow.task
    def first():
        return None

    @flow.task
    def waiting(first):
        gate.wait(10)
        return 2

    handle = flow.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            attempts = {a["task"]: a for a in store.attempts(handle.run_id)}
            if "waiting" in attempts:
                break
            time.sleep(0.01)
        assert attempts["first"]["state"] == "succeeded"
        assert attempts["waiting"]["state"] == "running" and attempts["waiting"]["ended"] is None
        assert store.results(handle.run_id)["first"].stored
        assert "waiting" not in store.results(handle.run_id)
    finally:
        gate.set()
    run = handle.wait(timeout=30)
    attempts = {a["task"]: a for a in store.attempts(run.run_id)}
    assert attempts["waiting"]["state"] == "succeeded"
    assert store.results(run.run_id)["waiting"].identity == run_identity(flow, "waiting")


def test_a_run_returns_once_its_records_are_written_and_the_loop_runs_meanwhile(tmp_path):
    # The end of a run waits for its last commit, without blocking the event loop: a ticker
    # on the same loop keeps ticking while the commit is held up.
    import sqlite3

    path = tmp_path / "end.db"
    store = SQLiteStore(path)
    flow = nf.Flow("end", store=store)
    flow.task(name="ok")(lambda: 1)
    flow.run()  # the file and the flow version exist
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)

    async def main():
        ticks = 0
        holder.execute("BEGIN IMMEDIATE")  # another process's write lock
        running = asyncio.ensure_future(flow.arun())
        while not running.done() and ticks < 20:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not running.done() and ticks == 20  # waiting for the lock, loop alive
        holder.execute("ROLLBACK")
        return await running

    run = asyncio.run(main())
    holder.close()
    with contextlib.closing(sqlite3.connect(path)) as con:  # not through the store: no flush
        (status,) = con.execute(
            "SELECT status FROM runs WHERE run_id = ?", (run.run_id,)
        ).fetchone()
    assert status == "succeeded" and run.recorded is True


def test_finished_tasks_are_committed_while_the_run_goes_on(tmp_path):
    # Durability during a run: the run's records are committed every interval while it goes
    # on. Read with sqlite3, not the store: its reads flush first, which would hide a writer
    # that waits.
    import sqlite3

    path = tmp_path / "during.db"
    flow = nf.Flow("during", store=SQLiteStore(path))
    release = threading.Event()

    @flow.task
    def first():
        time.sleep(0.3)  # ends after the writer's first look (one interval, 0.05 s, in)
        return 1

    @flow.task
    def second(first):
        assert release.wait(30), "the test never released the run"
        return first + 1

    def committed() -> list[str]:
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as con:
            rows = con.execute("SELECT task FROM results").fetchall()
        return [r[0] for r in rows]

    async def main():
        running = asyncio.ensure_future(flow.arun())
        deadline = time.monotonic() + 20
        while committed() != ["first"]:
            assert time.monotonic() < deadline, "the finished task was never committed"
            assert not running.done()
            await asyncio.sleep(0.02)
        release.set()
        return await running

    assert asyncio.run(main()).status == "succeeded"
    flow.state_store.flush()
    assert sorted(committed()) == ["first", "second"]


def test_records_are_committed_while_a_task_blocks_the_event_loop(tmp_path):
    """The writer takes a run's records every interval from its own thread: a task that
    blocks the run's loop does not hold up the commit of what finished before it."""
    import sqlite3

    path = tmp_path / "blocked.db"
    flow = nf.Flow("blocked", store=SQLiteStore(path))

    def committed() -> list[str]:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as con:
            return [r[0] for r in con.execute("SELECT task FROM results")]

    @flow.task
    async def first():
        return 1

    @flow.task
    async def blocker(first):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # time.sleep: the event loop stands still
            if path.exists() and committed() == ["first"]:
                return True
            time.sleep(0.01)
        return False

    run = flow.run()
    assert run.results["blocker"] is True, "first was not committed while the loop stood still"
    assert sorted(committed()) == ["blocker", "first"]


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_recorded_run_leaves_no_reference_cycle(tmp_path, kind):
    """A run with a store is freed by reference counting as soon as it is dropped, like one
    without: an engine caught in a cycle (its journal holding a bound method of it) kept its
    plan and state alive until the cyclic collector ran, which then freed all of it in the
    middle of some later run."""
    import gc

    from nbflow.engine import Engine

    store = str(tmp_path / "cycles.db") if kind == "sqlite" else MemoryStore()
    flow = nf.Flow("cycles", store=store)
    flow.task(name="a")(lambda: 1)
    flow.task(name="b")(lambda a: a + 1)
    flow.run()  # the first run also records the flow version
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds stays in gc.garbage
    try:
        for _ in range(2):
            assert flow.run().results == {"a": 1, "b": 2}
        gc.collect()
        caught = [type(o).__name__ for o in gc.garbage if isinstance(o, Engine)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if enabled:
            gc.enable()
    assert caught == []


def test_what_waits_for_the_writer_is_nothing_the_collector_tracks(tmp_path):
    """The events and results a busy run hands the writer wait in its lists as event
    classes, strings, numbers and bytes: never an event, a tuple or a list of its own, which
    would count towards every collection and make full collections come twice as often."""
    import gc

    from nbflow.store import writer as writer_module

    flow = nf.Flow("untracked", store=str(tmp_path / "untracked.db"))
    for i in range(50):
        flow.task(name=f"t{i}", after=[f"t{i - 1}"] if i else [])(lambda: [1, 2, 3])
    flow.task(name="plain", after=["t49"])(lambda: 7)
    flow.run()  # the version record
    seen: list[object] = []
    original = writer_module._take

    def spy(items):
        taken = original(items)
        seen.extend(taken)
        return taken

    writer_module._take = spy
    try:
        run = flow.run()
    finally:
        writer_module._take = original
    assert run.status == "succeeded" and run.recorded
    once_a_run = (writer_module.RunOpened, writer_module.Status, writer_module._Waiter)
    seen = [x for x in seen if not isinstance(x, once_a_run)]  # the shared queue's
    assert seen[0] is nf.RunStarted
    # Once a run, RunStarted carries the run's task names (a tuple, which the collector
    # untracks only when a collection has looked at it: Python 3.13 had not yet) and its
    # variables (a dict).
    names, variables = seen[4], seen[5]
    assert names == tuple(flow.tasks) and variables == {}
    per_event = [
        x for x in seen if x is not variables and x is not names and not isinstance(x, type)
    ]
    assert len(per_event) >= 51 * (2 + 4 + 2 + 3) + 51 * 2  # queued, started, succeeded, result
    assert [x for x in per_event if gc.is_tracked(x)] == []
    kinds = [e["kind"] for e in flow.state_store.events(run.run_id)]
    assert [kinds.count(k) for k in ("TaskQueued", "TaskStarted", "TaskSucceeded")] == [51] * 3


def test_a_pack_lists_every_task_name_as_json_whatever_its_characters():
    import json as json_module

    from nbflow.store.results import pack, unpack

    odd = ['a"quote', "back\\slash", "é", "tab\there", '","']
    for names in [["plain_name", "t1"], [], *(["plain", name] for name in odd)]:
        flat = [x for i, name in enumerate(names) for x in (name, i)]
        found = pack(flat, {})
        assert json_module.loads(found.tasks) == names
        rows = unpack("run", 1, 0.0, found.tasks, found.meta, {})
        assert [(r.task, r.item) for r in rows] == [(n, i) for i, n in enumerate(names)]
