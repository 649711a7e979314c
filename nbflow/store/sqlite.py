"""``SQLiteStore``: the default store, one SQLite file (stdlib ``sqlite3``, WAL).

Layout (``schema_version`` holds the version; :data:`MIGRATIONS` brings older files up):

- ``flows(name)``, ``flow_versions(flow, version, spec, sources)``: every distinct version of
  a flow with its spec JSON and the source of its tasks and of the helpers they call;
- ``runs(run_id, flow, version, variables, status, started, ended, error, parent_run,
  resumed_from, host, pid)``;
- ``attempts(run_id, task, element, attempt, state, started, ended, worker, error,
  traceback, task_version, inputs_hash, cache_key, digest, size)``: a view, one row per
  attempt (``element`` -1 for the task as a whole), derived from the event log and the result
  keys when read (runs of schema 3 and older: their rows in ``attempt_rows``). The attempt
  that ends a task successfully (or serves it from a resumed run or the cache: state
  ``cached``) also holds the task's result: its version and inputs hash (resume), cache key
  (cache) and the digest of its pickle;
- ``task_results``: a view of those result keys per task, over ``result_segments`` (JSON
  arrays, one per batch) and the ``result_version`` of ``TaskSucceeded`` segments (results
  None of tasks with no inputs); ``cache_entries``: the results with a cache key, indexed;
- ``events(run_id, seq, kind, t, task, attempt, element, worker, payload)``: the ordered
  event log, a view over ``event_segments(run_id, first_seq, last_seq, kind, events)``: a
  few rows per run per commit, each a JSON array of events (``kind`` ``*``: rows of the
  view's columns; a hot event class: compact rows of that class, see
  :mod:`nbflow.store.rows`); ``payload`` is JSON of the event's other fields (None when it
  has none);
- ``blobs(digest, data)``: pickled results, each distinct content once; results that need
  no cache key are packed instead, one pickle per batch in ``result_segments.data`` (their
  digest reads ``pack:<segment id>:<index>``).

Times are Unix seconds; an event's ``t`` is seconds since its run started. The file holds
pickles: it is trusted local data, like a notebook's own files. Never open a store you did
not write yourself: loading a result unpickles it, which can run arbitrary code.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .base import BaseStore
from .rows import (
    ATTEMPTS_OF_RUN,
    EVENTS_VIEW,
    PACK_PREFIX,
    RESULT_COLUMNS,
    SCHEMA_4,
    SCHEMA_5,
    Batch,
    ResultRow,
)
from .writer import StoreLockedError, Writer, shared_writer

SCHEMA_VERSION = 5

_EVENT_FIELDS = ("seq", "kind", "t", "task", "attempt", "element", "worker", "payload")

#: ``MIGRATIONS[i]`` brings a file from schema version ``i`` to ``i + 1``.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        "CREATE TABLE flows (name TEXT PRIMARY KEY, created REAL NOT NULL)",
        """CREATE TABLE flow_versions (
            flow TEXT NOT NULL, version TEXT NOT NULL, created REAL NOT NULL,
            n_tasks INTEGER NOT NULL, spec TEXT NOT NULL, sources TEXT NOT NULL,
            PRIMARY KEY (flow, version))""",
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, flow TEXT NOT NULL, version TEXT NOT NULL,
            variables TEXT, status TEXT NOT NULL, started REAL, ended REAL, error TEXT,
            parent_run TEXT, resumed_from TEXT, host TEXT, pid INTEGER)""",
        "CREATE INDEX runs_by_flow ON runs (flow, started)",
        """CREATE TABLE attempts (
            run_id TEXT NOT NULL, task TEXT NOT NULL, element INTEGER NOT NULL,
            attempt INTEGER NOT NULL, state TEXT NOT NULL, started REAL, ended REAL,
            worker TEXT, error TEXT, traceback TEXT, task_version TEXT, inputs_hash TEXT,
            cache_key TEXT, digest TEXT, size INTEGER,
            PRIMARY KEY (run_id, task, element, attempt)) WITHOUT ROWID""",
        # Only tasks that use the cache have a key: the index stays small and cheap to grow.
        "CREATE INDEX attempts_by_cache_key ON attempts (cache_key, ended) "
        "WHERE cache_key IS NOT NULL",
        """CREATE TABLE events (
            run_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL,
            task TEXT, attempt INTEGER, element INTEGER, worker TEXT, payload TEXT,
            PRIMARY KEY (run_id, seq)) WITHOUT ROWID""",
        "CREATE TABLE blobs (digest TEXT PRIMARY KEY, data BLOB NOT NULL)",
    ),
    # 2: the event log is kept in segments, one row per run per commit holding a JSON array
    # of events; the ``events`` view shows one row per event, as version 1's table did.
    # Writing a segment costs a fifth of writing its events as rows (one JSON encode in C
    # instead of a B-tree insert per event), which is most of the store's cost per task.
    (
        """CREATE TABLE event_segments (
            run_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
            events TEXT NOT NULL, PRIMARY KEY (run_id, first_seq)) WITHOUT ROWID""",
        "INSERT INTO event_segments SELECT run_id, min(seq), max(seq), json_group_array("
        "json_array(seq, kind, t, task, attempt, element, worker, payload)) "
        "FROM (SELECT * FROM events ORDER BY run_id, seq) GROUP BY run_id",
        "DROP TABLE events",
        "CREATE VIEW events AS SELECT s.run_id AS run_id, "
        + ", ".join(
            f"json_extract(e.value, '$[{i}]') AS {name}" for i, name in enumerate(_EVENT_FIELDS)
        )
        + " FROM event_segments s, json_each(s.events) e",
    ),
    # 3: segments of one hot event class (queued, started, succeeded) hold compact rows of
    # that class, made in C from the events' attributes; the attempt rows are derived from
    # them in SQL. Older segments are kind '*' (rows of the view's columns, as before).
    (
        "ALTER TABLE event_segments ADD COLUMN kind TEXT NOT NULL DEFAULT '*'",
        "DROP VIEW events",
        EVENTS_VIEW,
    ),
    # 4: nothing is written per attempt while a run goes on. ``attempts`` is a view that
    # derives them from the event log; the results' keys are JSON arrays in
    # ``result_segments`` (shown by the ``task_results`` view), the cache's entries rows of
    # ``cache_entries``. Older attempts stay in ``attempt_rows``, shown by both views.
    SCHEMA_4,
    # 5: results that need no cache key are packed, one pickle per batch, with no digest or
    # inputs hash computed during the run (resume compares inputs when it needs to); runs
    # keep their variables' digests for that.
    SCHEMA_5,
]

_FIX = (
    "move the file away (or delete it) to start a new store, or point the flow at another "
    "one with Flow(..., store=PATH) or the NBFLOW_STORE environment variable"
)


def store_error(error: sqlite3.Error, path: str, timeout: float) -> StoreError:
    """An :class:`StoreError` that names ``path``, what went wrong and what to do."""
    text = str(error)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreLockedError(
            f"store {path} is locked by another writer (waited {timeout:g} s): another "
            "process or connection holds a write transaction on it. Let it finish or close "
            "it, give the store a longer timeout (SQLiteStore(path, timeout=...)), or use "
            "another store path."
        )
    if isinstance(error, sqlite3.DatabaseError) and (
        "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered
    ):
        return StoreError(f"store {path} is corrupted or not an SQLite database ({text}); {_FIX}.")
    if "unable to open" in lowered or "readonly" in lowered or "read-only" in lowered:
        return StoreError(
            f"cannot open store {path} ({text}): check that its directory exists and is "
            "writable, or use another path with Flow(..., store=PATH) or NBFLOW_STORE."
        )
    return StoreError(f"store {path}: {text}")


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return con


def prepare(path: str, timeout: float) -> sqlite3.Connection:
    """Create or check the file at ``path``: WAL mode, schema migrated to :data:`SCHEMA_VERSION`.

    Takes the write lock briefly, so a file locked by another writer fails here, before a
    run starts. Returns the open connection (the caller's reader): closing the only
    connection of a WAL file checkpoints it, which costs an fsync for nothing.

    Raises:
        StoreError: the file is corrupted, not an nbflow store, from a newer nbflow, locked
            beyond ``timeout``, or cannot be created.
    """
    directory = Path(path).parent
    fresh_dir = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if fresh_dir and directory.name == ".nbflow":
            (directory / ".gitignore").write_text("# nbflow's local run store\n*\n")
    except OSError as error:
        raise StoreError(
            f"cannot create the directory of store {path} ({error}); use another path "
            "with Flow(..., store=PATH) or NBFLOW_STORE"
        ) from None
    try:
        con = _connect(path, timeout)
    except sqlite3.Error as error:
        raise store_error(error, path, timeout) from None
    try:
        _lock_for_setup(con, timeout)  # begins the transaction
        with transaction(con, begin=None):
            _migrate(con, path)
    except sqlite3.Error as error:
        con.close()
        raise store_error(error, path, timeout) from None
    except BaseException:
        con.close()
        raise
    return con


def _lock_for_setup(con: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL and take the write lock, retrying "locked" until ``timeout``.

    Two processes preparing a new file at once can both hold a shared lock and both want the
    exclusive one for the switch to WAL; SQLite's deadlock prevention then answers "locked"
    at once, without waiting in the busy handler. So we wait here instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            con.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at process crash
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _migrate(con: sqlite3.Connection, path: str) -> None:
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" in tables:
        row = con.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] or 0
    elif tables:
        raise StoreError(
            f"store {path} is an SQLite database but not an nbflow store (it has tables "
            f"{sorted(tables)[:5]}); use another path with Flow(..., store=PATH) or NBFLOW_STORE"
        )
    else:
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        version = 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"store {path} was written by a newer nbflow (schema version {version}; this "
            f"nbflow knows up to {SCHEMA_VERSION}). Upgrade nbflow (pip install -U nbflow), "
            "or use another store path with Flow(..., store=PATH) or NBFLOW_STORE."
        )
    for step in range(version, SCHEMA_VERSION):
        try:
            for statement in MIGRATIONS[step]:
                con.execute(statement)
        except sqlite3.OperationalError as error:  # the schema is not what its version says
            raise StoreError(
                f"store {path} says it has schema version {version}, but its tables are not "
                f"what that version has, so it cannot be brought up to version "
                f"{SCHEMA_VERSION} (step {step} -> {step + 1}: {error}). It was probably "
                f"written by a development version of nbflow; {_FIX}."
            ) from None
    if version != SCHEMA_VERSION:
        con.execute("DELETE FROM schema_version")
        con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


@contextlib.contextmanager
def transaction(con: sqlite3.Connection, begin: str | None = "BEGIN") -> Iterator[None]:
    """Commit what the block does, or roll it all back if it raises.

    ``begin`` starts the transaction (None: the caller has begun it already).
    """
    if begin is not None:
        con.execute(begin)
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def write_batch(con: sqlite3.Connection, batch: Batch) -> None:
    """Apply ``batch``'s statements in order, then store its blobs (inside a transaction)."""
    execute, many = con.execute, con.executemany
    for sql, params in batch.ops:
        if type(params) is list:
            many(sql, params)
        else:
            execute(sql, params)
    if batch.blobs:
        many("INSERT OR IGNORE INTO blobs (digest, data) VALUES (?, ?)", batch.blobs.items())


class SQLiteSink:
    """The writer thread's connection: writes one :class:`Batch` per transaction."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        try:
            self.con = _connect(path, timeout)
            self.con.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at process crash
        except sqlite3.Error as error:
            raise store_error(error, path, timeout) from None

    def known_versions(self) -> set[tuple[str, str]]:
        """Recorded ``(flow, version)`` pairs."""
        try:
            return {
                (r[0], r[1]) for r in self.con.execute("SELECT flow, version FROM flow_versions")
            }
        except sqlite3.Error as error:
            raise store_error(error, self.path, self.timeout) from None

    def write(self, batch: Batch) -> None:
        """Write ``batch`` in one transaction.

        Raises:
            StoreLockedError: another writer held the lock beyond the timeout (retryable).
            StoreError: any other failure (nothing of the batch was written).
        """
        try:
            with transaction(self.con, "BEGIN IMMEDIATE"):
                write_batch(self.con, batch)
        except sqlite3.Error as error:
            raise store_error(error, self.path, self.timeout) from None

    def close(self) -> None:
        """Close the connection."""
        self.con.close()


class SQLiteStore(BaseStore):
    """Durable store in one SQLite file: runs, attempts, events, results, flow versions.

    Writes go through the process's single writer thread for this file (batched: a commit
    every ``interval`` seconds); reads use a connection of this handle.

    Args:
        path: the database file (created, with its directory, when missing).
        timeout: seconds to wait for a lock held by another writer (and for a flush).
        max_result_bytes: a pickled result larger than this is not stored (with a warning).

    Raises:
        StoreError: the file is corrupted, not an nbflow store, from a newer nbflow, locked
            by another writer beyond ``timeout``, or cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        max_result_bytes: int = 512 * 2**20,
        interval: float = 0.05,
    ) -> None:
        location = os.path.abspath(os.fspath(Path(path).expanduser()))
        reader = prepare(location, timeout)
        reader.row_factory = sqlite3.Row
        reader.execute("PRAGMA query_only = ON")

        def make() -> Writer:
            # The writer waits for locks in short steps, so a flush can tell a lock held
            # by another writer from a slow write, and say so.
            return Writer(
                lambda: SQLiteSink(location, min(timeout, 0.1)),
                location=location,
                max_result_bytes=max_result_bytes,
                interval=interval,
            )

        self._make_writer = make
        super().__init__(shared_writer(location, make), location, timeout)
        self.path = Path(location)
        self._reader: sqlite3.Connection | None = reader
        self._read_lock = threading.Lock()

    def _reopen(self) -> Writer:
        prepare(self.location, self.timeout).close()  # the file may be gone or changed
        return shared_writer(self.location, self._make_writer)

    # -- reading -----------------------------------------------------------------------------

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        self._writer.wait_written(self.timeout)  # a run just finished may still be committing
        with self._read_lock:
            try:
                if self._reader is None:
                    self._reader = _connect(self.location, self.timeout)
                    self._reader.row_factory = sqlite3.Row
                    self._reader.execute("PRAGMA query_only = ON")
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise store_error(error, self.location, self.timeout) from None

    def runs(self, flow: str | None = None) -> list[dict[str, Any]]:
        """Every run (of ``flow``), oldest first, as dicts of the ``runs`` columns."""
        self.flush()
        where, params = ("WHERE flow = ?", (flow,)) if flow is not None else ("", ())
        rows = self._query(f"SELECT * FROM runs {where} ORDER BY started, rowid", params)
        return [dict(r) for r in rows]

    def run(self, run_id: str) -> dict[str, Any] | None:
        """The ``runs`` row of ``run_id``, or None."""
        rows = self._query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return dict(rows[0]) if rows else None

    def last_run(self, flow: str) -> str | None:
        """Id of the most recently started run of ``flow``, or None."""
        rows = self._query(
            "SELECT run_id FROM runs WHERE flow = ? ORDER BY started DESC, rowid DESC LIMIT 1",
            (flow,),
        )
        return rows[0][0] if rows else None

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of ``run_id`` (element None for the task as a whole)."""
        self.flush()
        rows = self._query(
            f"SELECT * FROM ({ATTEMPTS_OF_RUN}) ORDER BY started, task, element, attempt",
            {"run": run_id},
        )
        return [{**dict(r), "element": None if r["element"] < 0 else r["element"]} for r in rows]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The event log of ``run_id`` in order; ``payload`` decoded."""
        self.flush()
        rows = self._query("SELECT * FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
        return [
            {**dict(r), "payload": json.loads(r["payload"]) if r["payload"] else {}} for r in rows
        ]

    def results(self, run_id: str) -> dict[str, ResultRow]:
        """Task -> :class:`ResultRow` for the tasks of ``run_id`` that succeeded."""
        rows = self._query(
            f"SELECT {', '.join(RESULT_COLUMNS)} FROM task_results WHERE run_id = ? "
            "AND task_version IS NOT NULL",
            (run_id,),
        )
        return {r["task"]: ResultRow(*r) for r in rows}

    def find_cached(self, key: str, since: float | None = None) -> ResultRow | None:
        """The newest stored result with cache key ``key`` (created at or after ``since``)."""
        rows = self._query(
            "SELECT run_id, task, task_version, inputs_hash, cache_key, digest, size, created "
            "FROM cache_entries WHERE cache_key = ? AND created >= ? "
            "ORDER BY created DESC LIMIT 1",
            (key, since if since is not None else 0.0),
        )
        return ResultRow(*rows[0]) if rows else None

    def load(self, digest: str) -> bytes | None:
        """The pickled result with ``digest``, or None.

        ``pack:<id>`` (a packed result's digest, ``pack:<id>:<index>``, up to its index) gives
        the whole pack: the pickle of a list of results, of which the index is one.
        """
        if digest.startswith(PACK_PREFIX):
            pack_id = digest[len(PACK_PREFIX) :].partition(":")[0]
            if not pack_id.isdigit():
                return None
            rows = self._query(
                "SELECT data FROM result_segments WHERE id = ? AND kind = 'packed'", (int(pack_id),)
            )
            return bytes(rows[0][0]) if rows and rows[0][0] is not None else None
        rows = self._query("SELECT data FROM blobs WHERE digest = ?", (digest,))
        return bytes(rows[0][0]) if rows else None

    def versions(self, flow: str) -> list[dict[str, Any]]:
        """Recorded versions of ``flow``, oldest first, with run counts."""
        self.flush()
        rows = self._query(
            "SELECT v.flow, v.version, v.created, v.n_tasks, count(r.run_id) AS runs, "
            "max(r.started) AS last_run FROM flow_versions v LEFT JOIN runs r "
            "ON r.flow = v.flow AND r.version = v.version WHERE v.flow = ? "
            "GROUP BY v.flow, v.version ORDER BY v.created, v.rowid",
            (flow,),
        )
        return [dict(r) for r in rows]

    def version(self, version: str, flow: str | None = None) -> dict[str, Any] | None:
        """One recorded version (a unique prefix is enough): flow, version, spec, sources.

        Raises:
            StoreError: the prefix matches several versions.
        """
        self.flush()
        sql = "SELECT flow, version, created, n_tasks, spec, sources FROM flow_versions "
        sql += "WHERE version LIKE ? || '%'"
        params: tuple[Any, ...] = (version,)
        if flow is not None:
            sql, params = sql + " AND flow = ?", (version, flow)
        rows = self._query(sql + " LIMIT 2", params)
        if len(rows) > 1:
            raise StoreError(
                f"version prefix {version!r} matches several versions in {self.location}; "
                "give more characters"
            )
        return dict(rows[0]) if rows else None

    def close(self) -> None:
        """Close this handle's reader (the shared writer stays for other handles)."""
        with self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
