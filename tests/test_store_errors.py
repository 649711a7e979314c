"""Bad stores and real faults: each a clear ``nf.StoreError`` or warning, never a silent loss.

The faults are real: a tmpfs that fills up (skipped where mounting is not permitted), SQLite's
own ``max_page_count`` limit, a table dropped behind the store's back, a flipped byte, a lock
held by another connection, another program's database.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbflow as nf
from nbflow.store import StoreWarning
from nbflow.store import schema as store_schema
from nbflow.store import writer as store_writer
from nbflow.store.sqlite import SQLiteStore
from nbflow.store.writer import StoreLockedError


def _flow(path, calls, name="bad"):
    flow = nf.Flow(name, store=path)

    @flow.task(cache_ignore="calls")  # a counter of the test's, not an input
    def task():
        calls.append("task")
        return 1

    return flow


def _bulky(store, name="bulky", tasks=40, size=20_000):
    flow = nf.Flow(name, store=store)
    for i in range(tasks):
        flow.task(name=f"t{i}")(lambda i=i: bytes([i % 256]) * size)
    return flow


# -- files that are not (or not yet) usable stores ----------------------------------------------


def test_a_corrupted_file_is_a_store_error_before_any_task_runs(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite at all \x00\x01\x02" * 200)
    with pytest.raises(nf.StoreError, match=rf"store {path} is corrupted or not an SQLite") as info:
        SQLiteStore(path)
    assert "move the file away" in str(info.value) and "NBFLOW_STORE" in str(info.value)
    calls: list[str] = []
    with pytest.raises(nf.StoreError, match="corrupted"):
        _flow(path, calls).run()
    assert calls == []


def test_another_programs_database_is_refused_and_left_exactly_as_it_was(tmp_path):
    path = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("CREATE TABLE invoices (id INTEGER)")
        con.execute("INSERT INTO invoices VALUES (1)")
        con.commit()
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(nf.StoreError, match=r"not an nbflow store \(it has tables \['invoices'\]"):
        SQLiteStore(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # not one byte written
    with contextlib.closing(sqlite3.connect(path)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


def test_a_database_from_a_newer_nbflow_is_a_store_error(tmp_path):
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    nf.store.close_all()
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("PRAGMA user_version = 99")
    with pytest.raises(nf.StoreError, match=r"newer nbflow \(schema version 99; this nbflow knows"):
        SQLiteStore(path)


def test_a_path_that_cannot_be_created_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with pytest.raises(nf.StoreError, match="cannot create the directory of store"):
        SQLiteStore(blocker / "sub" / "x.db")


def test_a_new_file_is_marked_as_nbflows_with_the_current_schema_in_wal_mode(tmp_path):
    path = tmp_path / "new.db"
    SQLiteStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("PRAGMA user_version").fetchone() == (store_schema.SCHEMA_VERSION,)
        assert con.execute("PRAGMA application_id").fetchone() == (store_schema.APPLICATION_ID,)


def test_an_older_nbflow_store_is_upgraded_keeping_its_runs_and_a_copy(tmp_path):
    path = tmp_path / "v5.db"
    with contextlib.closing(sqlite3.connect(path)) as con:  # the tables schema 5 had
        con.executescript(
            """
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (5);
            CREATE TABLE flows (name TEXT PRIMARY KEY, created REAL NOT NULL);
            CREATE TABLE flow_versions (flow TEXT, version TEXT, created REAL, n_tasks INTEGER,
                spec TEXT, sources TEXT, PRIMARY KEY (flow, version));
            CREATE TABLE runs (run_id TEXT PRIMARY KEY, flow TEXT, version TEXT, variables TEXT,
                status TEXT, started REAL, ended REAL, error TEXT, parent_run TEXT,
                resumed_from TEXT, host TEXT, pid INTEGER, note TEXT, var_digests TEXT);
            CREATE INDEX runs_by_flow ON runs (flow, started);
            CREATE TABLE event_segments (run_id TEXT, first_seq INTEGER, events TEXT);
            CREATE VIEW events AS SELECT * FROM event_segments;
            INSERT INTO runs VALUES ('r1', 'old', 'v1', '{}', 'succeeded', 1.0, 2.0, NULL, NULL,
                NULL, 'h', 1, NULL, '{}');
            INSERT INTO flow_versions VALUES ('old', 'v1', 1.0, 1, '{}', '{}');
            """
        )
    upgraded = rf"upgraded to schema {store_schema.SCHEMA_VERSION}: its 1 runs and 1 flow versions"
    with pytest.warns(UserWarning, match=upgraded):
        store = SQLiteStore(path)
    assert [r["run_id"] for r in store.runs("old")] == ["r1"]
    assert [v["version"] for v in store.versions("old")] == ["v1"]
    assert Path(f"{path}.v5.bak").exists()
    flow = _flow(store, [], name="old")
    assert flow.run().status == "succeeded" and len(store.runs("old")) == 2


# -- locks held by another writer ----------------------------------------------------------------


@contextlib.contextmanager
def _write_lock_held(path) -> Iterator[None]:
    """Another connection holds the file's write lock (with a write pending) in the block."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO identities VALUES ('someone-else', '[]')")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_lock_taken_during_a_run_delays_its_records_but_loses_none(tmp_path):
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, timeout=0.2)
    calls: list[str] = []
    flow = _flow(store, calls)
    with _write_lock_held(path):
        with pytest.warns(StoreWarning, match=r"NOT fully recorded.*was not written within 0.2 s"):
            run = flow.run()
        assert run.status == "succeeded" and run.recorded is False
        with pytest.raises(StoreLockedError, match=r"is locked by another writer.*Nothing is lost"):
            store.flush()
    (record,) = store.runs("bad")  # written once the lock went
    assert record["run_id"] == run.run_id and record["status"] == "succeeded"


def test_a_store_locked_by_another_writer_can_still_be_opened_and_read(tmp_path):
    path = tmp_path / "locked.db"
    first = _flow(path, []).run()
    nf.store.close_all()
    with _write_lock_held(path):
        store = SQLiteStore(path, timeout=0.2)  # opening writes nothing: no wait
        assert [r["run_id"] for r in store.runs("bad")] == [first.run_id]


def test_a_commit_held_up_by_a_lock_does_not_keep_the_run_alive(tmp_path):
    """A commit that waits (for a lock here) keeps the run's records, not its context, plan
    and the notebook's task functions, which would be freed later in the writer thread."""
    import gc
    import weakref

    path = tmp_path / "held.db"
    store = SQLiteStore(path, timeout=0.2)
    flow = _flow(store, [])
    task_fn = flow.validate().funcs["task"]
    alive = weakref.ref(task_fn)
    with _write_lock_held(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", StoreWarning)
            run = flow.run()
        assert run.status == "succeeded"
        del flow, run, task_fn
        gc.collect()
        assert alive() is None  # while the run's records still wait for the lock
        with pytest.raises(StoreLockedError):
            store.flush()
    store.flush()
    assert [r["status"] for r in store.runs("bad")] == ["succeeded"]


# -- a store that cannot record says so, at once and in the cell ----------------------------------


def _assert_loud(run, caught, words):
    assert run.status == "succeeded"  # the tasks did succeed: their results are in the Run
    assert run.recorded is False
    assert words in str(run.store_error)
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert any("NOT fully recorded" in m and words in m for m in messages), messages


def _filling_store(tmp_path, monkeypatch):
    """A store whose file fills up four pages past its schema: SQLite's own limit on the
    file's size (``max_page_count``), the same SQLITE_FULL a full disk gives."""
    store = SQLiteStore(tmp_path / "full.db")
    _bulky(store, tasks=1).run()  # the file exists with its schema
    pages = store._query("PRAGMA page_count")[0][0]
    connect = store_writer.connect

    def limited(path, timeout, **options):
        con = connect(path, timeout, **options)
        con.execute(f"PRAGMA max_page_count = {pages + 4}")
        return con

    nf.store.close_all()
    monkeypatch.setattr(store_writer, "connect", limited)
    store = SQLiteStore(tmp_path / "full.db")
    return store


def test_a_full_disk_is_reported_with_sqlites_own_words(tmp_path, monkeypatch):
    store = _filling_store(tmp_path, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _bulky(store).run()
    _assert_loud(run, caught, "database or disk is full")
    assert "cannot rollback" not in str(run.store_error)  # the real cause, not the rollback's
    # ... and indeed not recorded whole: what fitted before the disk filled may be there (a
    # run that started), never the run as it ended.
    assert {r["status"] for r in store.runs() if r["run_id"] == run.run_id} <= {"running"}


def test_a_fan_out_task_whose_elements_cannot_read_the_store_runs_them_and_says_why(tmp_path):
    path = tmp_path / "busy-elements.db"
    store = SQLiteStore(path, timeout=0.2)
    flow = nf.Flow("busy-elements", store=store)
    flow.task(name="items")(lambda: [1, 2])
    flow.task(name="double", fan_out="items", cache=True)(lambda items: items * 2)
    with _write_lock_held(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run()
    assert run.status == "succeeded" and run.results["double"] == [2, 4]
    assert [w for w in caught if "could not be read" in str(w.message)]
    store.flush()
    assert "the store could not be read for some" in run.why("double")


def _cached_bulky(store, name="cached-bulky", tasks=12, size=20_000):
    flow = nf.Flow(name, store=store)
    for i in range(tasks):
        flow.task(name=f"t{i}", cache=True)(lambda i=i: bytes([i % 256]) * size)
    return flow


def test_a_full_disk_fails_no_cached_task_and_later_reads_work(tmp_path, monkeypatch):
    """Each cached task's lookup reads the store, which first waits for the writer: a write
    that failed (the disk filled up) is its run's to tell, not an error of each task that
    reads after it (it was: the run ended failed, its tasks cancelled), nor of the
    next ``nf.history()``."""
    store = _filling_store(tmp_path, monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _cached_bulky(store).run()
    _assert_loud(run, caught, "database or disk is full")
    assert set(run.states.values()) == {"succeeded"} and len(run.results) == 12
    assert run.results["t3"] == bytes([3]) * 20_000
    assert not [w for w in caught if "could not be read" in str(w.message)]  # reads worked
    runs = store.runs()  # a read after the failed write: what is in the file, no error
    assert run.run_id not in {r["run_id"] for r in runs if r["status"] == "succeeded"}
    assert len(nf.history("cached-bulky", store=store)) <= 1


def test_a_store_that_cannot_be_read_is_a_cache_miss_never_a_failed_task(tmp_path):
    """A lookup that cannot read the store (here: another writer holds the lock past the
    timeout, so this process's records cannot be read back) is a miss: the task runs, the
    run says so once, and run.why() tells the reason."""
    path = tmp_path / "busy.db"
    store = SQLiteStore(path, timeout=0.2)
    calls: list[str] = []
    flow = nf.Flow("busy-cache", store=store)
    for name in ("a", "b", "c"):

        @flow.task(name=name, cache=True, cache_ignore="calls")
        def task(calls=calls, name=name):
            calls.append(name)
            return name

    with _write_lock_held(path), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(max_workers=1)
    assert run.status == "succeeded" and sorted(calls) == ["a", "b", "c"]
    unreadable = [str(w.message) for w in caught if "could not be read" in str(w.message)]
    assert len(unreadable) == 1, unreadable  # one warning for the run, not one per task
    assert "is locked by another writer" in unreadable[0] and run.run_id in unreadable[0]
    store.flush()  # the lock is gone: every record is written
    assert "the store could not be read as it ran" in run.why("b")
    again = flow.run()  # the store readable again: the results are served
    assert set(again.states.values()) == {"cached"} and sorted(calls) == ["a", "b", "c"]


@pytest.fixture
def tiny_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs (skipped where this process may not mount one)."""
    where = tmp_path / "tiny"
    where.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small real filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        nf.store.close_all()
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_real_full_disk_is_reported_and_the_run_not_presented_as_recorded(tiny_disk):
    store = SQLiteStore(tiny_disk / "store.db", file_bytes=1 << 30)  # results in the database
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _bulky(store, tasks=40, size=20_000).run()  # 800 kB for a 256 kB disk
    _assert_loud(run, caught, "full")


def test_a_real_full_disk_fails_no_cached_task(tiny_disk):
    store = SQLiteStore(tiny_disk / "store.db", file_bytes=1 << 30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = _cached_bulky(store, tasks=40).run()  # 800 kB for a 256 kB disk
    _assert_loud(run, caught, "full")
    assert set(run.states.values()) == {"succeeded"}
    store.runs()  # no error of the failed write


def test_a_table_dropped_behind_the_stores_back_is_reported(tmp_path):
    path = tmp_path / "damaged.db"
    store = SQLiteStore(path)
    _flow(store, []).run()
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("DROP TABLE records")
    flow = _flow(store, [])
    shown = []  # the dashboard run(show=True) makes
    flow._show = lambda run, engine: shown.append(nf.Dashboard(run, engine=engine)) or shown[-1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run(show=True)
    _assert_loud(run, caught, "no such table: records")
    # The dashboard says so too, once the store has answered (after the run's end).
    assert "no such table: records" in run.state.store_error
    [dashboard] = shown
    for html in (dashboard._header, dashboard._repr_mimebundle_()["text/html"]):  # live, saved
        assert 'class="nbflow-unrecorded"' in html and "NOT recorded" in html


# -- stored bytes that changed -------------------------------------------------------------------


def _flip_a_byte(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def test_a_flipped_byte_in_a_stored_result_is_a_miss_with_a_warning_never_a_value(tmp_path):
    path = tmp_path / "rot.db"
    calls: list[str] = []
    flow = nf.Flow("rot", store=path)

    @flow.task(cache=True, cache_ignore="calls")
    def value():
        calls.append("value")
        return {"answer": 42}

    flow.run()
    with contextlib.closing(sqlite3.connect(path)) as con:
        (data,) = con.execute("SELECT data FROM records WHERE data IS NOT NULL").fetchone()
        con.execute(
            "UPDATE records SET data = ? WHERE data IS NOT NULL",
            (_flip_a_byte(data, len(data) // 2),),
        )
        con.commit()
    with pytest.warns(StoreWarning, match=r"task 'value': its stored result .* damaged"):
        again = flow.run()
    assert calls == ["value", "value"] and again.states == {"value": "succeeded"}
    assert again.results["value"] == {"answer": 42}


def test_a_flipped_byte_in_a_result_file_is_never_served(tmp_path):
    store = SQLiteStore(tmp_path / "rot-file.db", file_bytes=100)
    calls: list[str] = []
    flow = nf.Flow("rot-file", store=store)

    @flow.task(cache=True, cache_ignore="calls")
    def big():
        calls.append("big")
        return b"y" * 5000

    first = flow.run()
    file = store.files.path(store.results(first.run_id)["big"].file)
    file.write_bytes(_flip_a_byte(file.read_bytes(), 100))
    with pytest.warns(StoreWarning, match="damaged"):
        again = flow.run()
    assert calls == ["big", "big"] and again.results["big"] == b"y" * 5000


def test_an_unreadable_stored_result_runs_the_task_again_on_resume(tmp_path):
    path = tmp_path / "r.db"
    calls: list[str] = []
    first = _flow(path, calls).run()
    with contextlib.closing(sqlite3.connect(path)) as con:
        con.execute("UPDATE records SET data = x'00' WHERE data IS NOT NULL")
        con.commit()
    with pytest.warns(StoreWarning, match="stored result"):
        again = _flow(path, calls).run(resume=first.run_id)
    assert calls == ["task", "task"] and again.states == {"task": "succeeded"}


def test_a_missing_result_file_is_a_miss(tmp_path):
    store = SQLiteStore(tmp_path / "gone.db", file_bytes=100)
    flow = nf.Flow("gone", store=store)
    flow.task(name="big", cache=True)(lambda: "z" * 1000)
    first = flow.run()
    store.files.path(store.results(first.run_id)["big"].file).unlink()
    with pytest.warns(StoreWarning, match="gone"):
        again = flow.run(resume="last")
    assert again.states == {"big": "succeeded"}


def test_identical_results_are_one_file_and_a_file_is_never_half_written(tmp_path):
    store = SQLiteStore(tmp_path / "atomic.db", file_bytes=100)
    flow = nf.Flow("atomic", store=store)
    flow.task(name="a")(lambda: "w" * 1000)
    flow.task(name="b")(lambda: "w" * 1000)
    flow.run()
    files = [p for p in store.files.root.rglob("*") if p.is_file()]
    assert len(files) == 1 and not any(p.name.startswith(".tmp-") for p in files)
    digest = files[0].stem
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == digest


def test_a_result_file_the_full_disk_refuses_is_told_as_the_disks_fault(tiny_disk):
    """A large result goes to a file; when the disk has no room for it, the warning names
    the disk and what to do, not the value (it would pickle fine), and no half file stays."""
    store = SQLiteStore(tiny_disk / "store.db", file_bytes=1_000)
    flow = nf.Flow("too-big", store=store)
    flow.task(name="big")(lambda: b"z" * 400_000)  # 400 kB for a 256 kB disk
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = flow.run()
    assert run.status == "succeeded" and run.results["big"] == b"z" * 400_000
    [message] = [str(w.message) for w in caught if "task 'big'" in str(w.message)]
    assert "could not be written to" in message and "free disk space" in message, message
    assert "cannot be pickled" not in message
    assert not [p for p in store.files.root.rglob("*") if p.is_file()]  # no half file


_FILE_SIZE_LIMITED = """
import os, resource, signal, sys, warnings
import nbflow as nf
flow = nf.Flow("limited", store=sys.argv[1])
flow.task(name="first")(lambda: 1)
flow.run()  # the store exists, with its schema, before the limit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
limit = os.path.getsize(sys.argv[1]) + (1 << 20)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
flow.task(name="big", after=["first"])(lambda: os.urandom(4 << 20))  # a result file
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    run = flow.run()
print(run.status)
for warning in caught:
    print(warning.message)
"""


def test_a_file_size_limit_is_reported_as_the_disks_problem_not_the_values(tmp_path):
    """``ulimit -f`` (EFBIG), like a full disk: the result file cannot be written."""
    done = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED, str(tmp_path / "limited.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, *warned = done.stdout.splitlines()
    assert status == "succeeded"
    said = " ".join(warned)
    assert "task 'big'" in said and "could not be written to" in said, said
    assert "File too large" in said and "free disk space" in said
