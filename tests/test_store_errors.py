"""Bad stores: each a clear ``nf.StoreError`` naming the file and what to do."""

from __future__ import annotations

import contextlib
import sqlite3
import warnings
from collections.abc import Iterator

import pytest

import nbflow as nf
from nbflow.store import StoreWarning
from nbflow.store import sqlite as sqlite_store
from nbflow.store.sqlite import SQLiteStore
from nbflow.store.writer import StoreLockedError


def _flow(path, calls):
    flow = nf.Flow("bad", store=path)

    @flow.task(cache_ignore="calls")  # a counter of the test's, not an input
    def task():
        calls.append("task")
        return 1

    return flow


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


def test_a_database_locked_by_another_writer_is_a_store_error_after_the_timeout(tmp_path):
    path = tmp_path / "locked.db"
    SQLiteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO flows VALUES ('someone-else', 0)")
    try:
        with pytest.raises(
            nf.StoreError, match=rf"store {path} is locked by another writer"
        ) as info:
            SQLiteStore(path, timeout=0.2)
        assert "waited 0.2 s" in str(info.value) and "timeout=" in str(info.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextlib.contextmanager
def _write_lock_held(path) -> Iterator[None]:
    """Another connection holds the file's write lock (with a write pending) in the block."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO flows VALUES ('someone-else', 0)")
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
        with warnings.catch_warnings():
            # The run does not wait for its last commit; one that had to write during the
            # run (a slow machine) warns that the file is locked.
            warnings.simplefilter("ignore", StoreWarning)
            run = flow.run()
        assert run.status == "succeeded"
        with pytest.raises(StoreLockedError, match=r"is locked by another writer.*Nothing is lost"):
            store.flush()
    (record,) = store.runs("bad")  # written once the lock went
    assert record["run_id"] == run.run_id and record["status"] == "succeeded"


def test_a_database_from_a_newer_nbflow_is_a_store_error(tmp_path):
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as con:
        con.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(nf.StoreError, match=r"newer nbflow \(schema version 99; this nbflow knows"):
        SQLiteStore(path)


def test_an_sqlite_database_that_is_not_a_store_is_a_store_error(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(nf.StoreError, match=r"not an nbflow store \(it has tables \['invoices'\]"):
        SQLiteStore(path)


def test_a_path_that_cannot_be_created_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with pytest.raises(nf.StoreError, match="cannot create the directory of store"):
        SQLiteStore(blocker / "sub" / "x.db")


def test_older_files_are_migrated_to_the_current_schema(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    old = SQLiteStore(path)
    _flow(old, []).run()
    old.close()
    nf.store.close_all()
    migration = ("ALTER TABLE runs ADD COLUMN note TEXT", "UPDATE runs SET note = 'migrated'")
    newer = sqlite_store.SCHEMA_VERSION + 1
    monkeypatch.setattr(sqlite_store, "MIGRATIONS", [*sqlite_store.MIGRATIONS, migration])
    monkeypatch.setattr(sqlite_store, "SCHEMA_VERSION", newer)
    SQLiteStore(path).close()
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(newer,)]
        assert con.execute("SELECT note FROM runs").fetchall() == [("migrated",)]


def test_a_version_1_file_keeps_its_event_log_when_migrated_to_segments(tmp_path):
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as con:  # a store as schema version 1 wrote it
        for statement in sqlite_store.MIGRATIONS[0]:
            con.execute(statement)
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (1)")
        con.executemany(
            "INSERT INTO events VALUES ('r1', ?, ?, ?, ?, ?, NULL, ?, ?)",
            [
                (1, "TaskStarted", 0.5, "a", 1, "slot-0", None),
                (0, "TaskQueued", 0.25, "a", None, None, None),
                (2, "TaskFailed", 0.75, "a", 1, None, '{"error":"ValueError: x"}'),
            ],
        )
    store = SQLiteStore(path)
    events = store.events("r1")
    assert [(e["seq"], e["kind"], e["t"], e["attempt"]) for e in events] == [
        (0, "TaskQueued", 0.25, None),
        (1, "TaskStarted", 0.5, 1),
        (2, "TaskFailed", 0.75, 1),
    ]
    assert events[2]["payload"] == {"error": "ValueError: x"} and events[1]["worker"] == "slot-0"


def test_a_new_file_gets_the_current_schema_in_wal_mode(tmp_path):
    path = tmp_path / "new.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("SELECT version FROM schema_version").fetchall() == [
            (sqlite_store.SCHEMA_VERSION,)
        ]


def test_an_unreadable_stored_result_runs_the_task_again(tmp_path):
    path = tmp_path / "r.db"
    calls: list[str] = []
    flow = _flow(path, calls)
    first = flow.run()
    flow.state_store.flush()  # the run's last commit may still be going on (write-behind)
    with sqlite3.connect(path) as con:
        con.execute("UPDATE blobs SET data = x'00'")
        con.execute("UPDATE result_segments SET data = x'00' WHERE data IS NOT NULL")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = _flow(path, calls).run(resume=first.run_id)
    assert calls == ["task", "task"] and again.states == {"task": "succeeded"}
    assert any("stored result" in str(w.message) for w in caught)


def test_a_version_2_file_keeps_its_event_log_when_migrated_to_typed_segments(tmp_path):
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as con:  # a store as schema version 2 wrote it
        for statement in (*sqlite_store.MIGRATIONS[0], *sqlite_store.MIGRATIONS[1]):
            con.execute(statement)
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (2)")
        con.execute(
            "INSERT INTO event_segments VALUES ('r1', 0, 1, ?)",
            ('[[0,"TaskQueued",0.25,"a",null,null,null,null],'
             '[1,"TaskFailed",0.75,"a",1,null,null,"{\\"error\\":\\"ValueError: x\\"}"]]',),
        )  # fmt: skip
    store = SQLiteStore(path)
    events = store.events("r1")
    assert [(e["seq"], e["kind"], e["t"], e["attempt"]) for e in events] == [
        (0, "TaskQueued", 0.25, None),
        (1, "TaskFailed", 0.75, 1),
    ]
    assert events[1]["payload"] == {"error": "ValueError: x"}
    flow = nf.Flow("after-migration", store=store)
    flow.task(lambda: 1, name="one")
    run = flow.run()
    assert [(e["kind"], e["task"]) for e in store.events(run.run_id)][1:4] == [
        ("TaskQueued", "one"),
        ("TaskStarted", "one"),
        ("TaskSucceeded", "one"),
    ]
    assert store.results(run.run_id)["one"].digest is not None


@contextlib.contextmanager
def _schema(path, version: int) -> Iterator[sqlite3.Connection]:
    """A connection to a new file at ``path`` with nbflow's schema ``version``, committed
    when the block ends."""
    with sqlite3.connect(path) as con:
        for step in sqlite_store.MIGRATIONS[:version]:
            for statement in step:
                con.execute(statement)
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (?)", (version,))
        yield con


def test_a_version_3_file_keeps_its_attempts_results_and_cache_entries(tmp_path):
    path = tmp_path / "v3.db"
    with _schema(path, 3) as con:  # a store as schema version 3 wrote it
        con.execute(
            "INSERT INTO runs (run_id, flow, version, status, started, ended) "
            "VALUES ('r1', 'old', 'v1', 'succeeded', 1.0, 2.0)"
        )
        con.executemany(
            "INSERT INTO attempts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                ("r1", "a", -1, 1, "failed", 1.0, 1.2, "slot-0", "ValueError: x", "tb",
                 None, None, None, None, None),
                ("r1", "a", -1, 2, "succeeded", 1.3, 1.5, "slot-0", None, None,
                 "va", "ia", "ka", "da", 10),
            ],
        )  # fmt: skip
    store = SQLiteStore(path)
    attempts = store.attempts("r1")
    assert [(a["attempt"], a["state"], a["error"]) for a in attempts] == [
        (1, "failed", "ValueError: x"),
        (2, "succeeded", None),
    ]
    row = store.results("r1")["a"]
    assert (row.task_version, row.inputs_hash, row.cache_key, row.digest) == (
        "va",
        "ia",
        "ka",
        "da",
    )
    found = store.find_cached("ka")
    assert found is not None and (found.run_id, found.digest) == ("r1", "da")
    flow = nf.Flow("after-migration", store=store)
    flow.task(lambda: 1, name="one")
    run = flow.run()
    assert [(a["task"], a["state"]) for a in store.attempts(run.run_id)] == [("one", "succeeded")]
    assert store.results(run.run_id)["one"].digest is not None
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [
            (sqlite_store.SCHEMA_VERSION,)
        ]
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_version_4_file_keeps_its_result_rows_and_packs_new_results(tmp_path):
    path = tmp_path / "v4.db"
    with _schema(path, 4) as con:  # a store as schema version 4 wrote it
        con.execute(
            "INSERT INTO runs (run_id, flow, version, status, started, ended, t0) "
            "VALUES ('r1', 'old', 'v1', 'succeeded', 1.0, 2.0, 1.0)"
        )
        con.execute(
            "INSERT INTO result_segments (run_id, kind, created, rows) VALUES "
            """('r1', 'rows', 2.0, '[["a",1,"va","ia",null,"da",10,1.5]]')"""
        )
    store = SQLiteStore(path)
    row = store.results("r1")["a"]
    assert (row.task_version, row.inputs_hash, row.digest, row.size) == ("va", "ia", "da", 10)
    flow = nf.Flow("after-migration-4", store=store)
    flow.task(lambda: 2, name="two")
    run = flow.run()
    assert store.results(run.run_id)["two"].digest.startswith("pack:")
    assert flow.run(resume="last").states == {"two": "cached"}
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(5,)]


def test_a_file_whose_tables_do_not_match_its_schema_version_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as con:  # says version 1, but its events table has other columns
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        con.execute("INSERT INTO schema_version VALUES (1)")
        con.execute("CREATE TABLE events (run_id TEXT, seq INTEGER, kind TEXT)")
    with pytest.raises(nf.StoreError, match=r"says it has schema version 1") as info:
        SQLiteStore(path)
    assert str(path) in str(info.value) and "move the file away" in str(info.value)
    with sqlite3.connect(path) as con:  # rolled back: the file is as it was
        assert con.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


def test_a_commit_held_up_by_a_lock_does_not_keep_the_run_alive(tmp_path):
    """The writer lets a run's items go once they are projected: a commit that waits (for a
    lock here; for the GIL at each statement, usually) does not keep the run's context, its
    plan and the notebook's task functions alive, to be freed later in the writer thread in
    the middle of another run."""
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
