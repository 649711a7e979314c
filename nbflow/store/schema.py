"""The SQLite store's file: its tables, and opening one safely.

Tables (``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; ``PRAGMA application_id`` marks
the file as nbflow's, so another program's database is refused before anything is written):

- ``flow_versions(flow, version, created, n_tasks, spec, sources, identities)``: every
  distinct version of a flow, with its spec JSON, its tasks' sources and identities (see
  :mod:`nbflow.identity`); ``identities`` is ``{task: identity digest}`` (JSON), the same for
  every run of the version;
- ``runs(run_id, flow, version, variables, var_digests, status, started, ended, error,
  parent_run, resumed_from, host, pid)``;
- ``records(id, run_id, created, events, tasks, meta, data, checksum)``: what a run
  recorded, one row per commit: its events of that commit, in order (``events``, see
  :mod:`nbflow.store.eventlog`; attempts, timelines and replays are folded from them when
  read) and the results of its tasks that returned meanwhile: ``tasks`` (a JSON array),
  ``meta`` (a JSON array of what is not plain, or NULL) and the values in ``data``, whose
  SHA-256 is ``checksum`` (see :mod:`nbflow.store.results`). The ``results`` view shows one
  row per result. Large results are files (``result_files``);
- ``cache_entries(cache_key, created, run_id, task, pack, item)``: results of tasks with
  ``cache=True``, and where each is (its ``records`` row and its place in that row's pack);
- ``identities(digest, parts)``: the parts of each distinct task identity (``run.why()``).

Times are Unix seconds; an event's ``t`` is seconds since its run started.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import StoreError

SCHEMA_VERSION = 7
#: ``PRAGMA application_id`` of an nbflow store: "nbfl".
APPLICATION_ID = 0x6E62666C

TABLES: tuple[str, ...] = (
    """CREATE TABLE flow_versions (
        flow TEXT NOT NULL, version TEXT NOT NULL, created REAL NOT NULL,
        n_tasks INTEGER NOT NULL, spec TEXT NOT NULL, sources TEXT NOT NULL, identities TEXT,
        PRIMARY KEY (flow, version)) WITHOUT ROWID""",
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY, flow TEXT NOT NULL, version TEXT NOT NULL, variables TEXT,
        var_digests TEXT, status TEXT NOT NULL, started REAL, ended REAL, error TEXT,
        parent_run TEXT, resumed_from TEXT, host TEXT, pid INTEGER)""",
    "CREATE INDEX runs_by_flow ON runs (flow, started)",
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, created REAL NOT NULL, events BLOB,
        tasks TEXT, meta TEXT, data BLOB, checksum TEXT)""",
    "CREATE INDEX records_by_run ON records (run_id)",
    """CREATE TABLE result_files (
        digest TEXT PRIMARY KEY, path TEXT NOT NULL, codec TEXT NOT NULL,
        size INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE cache_entries (
        cache_key TEXT NOT NULL, created REAL NOT NULL, run_id TEXT NOT NULL,
        task TEXT NOT NULL, pack INTEGER NOT NULL, item INTEGER NOT NULL,
        PRIMARY KEY (cache_key, created, run_id)) WITHOUT ROWID""",
    """CREATE TABLE identities (digest TEXT PRIMARY KEY, parts TEXT NOT NULL) WITHOUT ROWID""",
    # One row per result; a meta item is [codec, size, file, reused_from, pack, item] (see
    # nbflow.store.results), none for a plain one ('pickle': a value, or its pickle); codec
    # NULL: not stored. ``home``: the records row that holds the value (reused: another's).
    """CREATE VIEW results AS SELECT p.run_id AS run_id, p.id AS pack,
        CAST(t.key AS INTEGER) AS item, t.value AS task,
        CASE WHEN json_extract(p.meta, '$[' || t.key || ']') IS NULL THEN 'pickle'
            ELSE json_extract(p.meta, '$[' || t.key || '][0]') END AS codec,
        json_extract(p.meta, '$[' || t.key || '][2]') AS file,
        json_extract(p.meta, '$[' || t.key || '][3]') AS reused_from,
        coalesce(json_extract(p.meta, '$[' || t.key || '][4]'), p.id) AS home,
        p.created AS created
        FROM records p, json_each(p.tasks) t""",
)

_FIX = (
    "move the file away (or delete it) to start a new store, or point the flow at another "
    "one with Flow(..., store=PATH) or the NBFLOW_STORE environment variable"
)


def store_error(error: sqlite3.Error, path: str, timeout: float) -> StoreError:
    """A :class:`StoreError` that names ``path``, SQLite's own message and what to do."""
    from .writer import StoreLockedError

    text = str(error)
    lowered = text.lower()
    if "locked" in lowered or "busy" in lowered:
        return StoreLockedError(
            f"store {path} is locked by another writer (waited {timeout:g} s): another "
            "process or connection holds a write transaction on it. Let it finish or close "
            "it, give the store a longer timeout (SQLiteStore(path, timeout=...)), or use "
            "another store path."
        )
    if "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        return StoreError(f"store {path} is corrupted or not an SQLite database ({text}); {_FIX}.")
    if "unable to open" in lowered or "readonly" in lowered or "read-only" in lowered:
        return StoreError(
            f"cannot open store {path} ({text}): check that its directory exists and is "
            "writable, or use another path with Flow(..., store=PATH) or NBFLOW_STORE."
        )
    if "full" in lowered:
        return StoreError(
            f"store {path}: {text}. Free disk space (nf.prune() removes old runs), or use "
            "another store path."
        )
    return StoreError(f"store {path}: {text}")


def connect(path: str, timeout: float, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with a busy timeout."""
    target = f"file:{Path(path).as_posix()}?mode=ro" if read_only else path
    con = sqlite3.connect(
        target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=read_only
    )
    con.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return con


@contextlib.contextmanager
def transaction(con: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """Commit what the block does, or roll it all back if it raises.

    The block's own error is what propagates: when SQLite has rolled back already (a full
    disk does that), the ``ROLLBACK`` that then fails must not hide why.
    """
    con.execute(begin)
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise


def prepare(path: str, timeout: float) -> sqlite3.Connection:
    """Create or check the store file at ``path`` and return a connection to it.

    A file that exists is first read without writing anything: another program's SQLite
    database is refused as it is (its journal mode untouched). Then the file is switched to
    WAL and its schema created, or upgraded from an older nbflow's.

    Raises:
        StoreError: the file is damaged, not an nbflow store, from a newer nbflow, locked
            beyond ``timeout``, or cannot be created.
    """
    file = Path(path)
    try:
        fresh_dir = not file.parent.exists()
        file.parent.mkdir(parents=True, exist_ok=True)
        if fresh_dir and file.parent.name == ".nbflow":
            (file.parent / ".gitignore").write_text("# nbflow's local run store\n*\n")
    except OSError as error:
        raise StoreError(
            f"cannot create the directory of store {path} ({error}); use another path "
            "with Flow(..., store=PATH) or NBFLOW_STORE"
        ) from None
    version = _inspect(path, timeout) if file.exists() and file.stat().st_size else 0
    try:
        con = connect(path, timeout)
    except sqlite3.Error as error:
        raise store_error(error, path, timeout) from None
    try:
        if version < SCHEMA_VERSION:
            _create(con, path, version, timeout)
    except sqlite3.Error as error:
        con.close()
        raise store_error(error, path, timeout) from None
    except BaseException:
        con.close()
        raise
    return con


def _inspect(path: str, timeout: float) -> int:
    """The schema version of an existing file, read without writing (0: empty; 1 to 6: an
    older nbflow's).

    Raises:
        StoreError: not an SQLite file, another program's database, or a newer nbflow's.
    """
    try:
        con = connect(path, timeout, read_only=True)
        try:
            # One read transaction: the header and the tables seen at one moment. Read one
            # by one, they could straddle another process's creation of the schema (no
            # application id yet, tables already) and a fresh store would look foreign.
            with transaction(con, "BEGIN DEFERRED"):
                application = con.execute("PRAGMA application_id").fetchone()[0]
                version = con.execute("PRAGMA user_version").fetchone()[0]
                tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
                legacy = None
                if "schema_version" in tables:
                    legacy = con.execute("SELECT max(version) FROM schema_version").fetchone()
                    legacy = legacy[0]
        finally:
            con.close()
    except sqlite3.Error as error:
        raise store_error(error, path, timeout) from None
    if application == APPLICATION_ID:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {path} was written by a newer nbflow (schema version {version}; this "
                f"nbflow knows up to {SCHEMA_VERSION}). Upgrade nbflow (pip install -U "
                "nbflow), or use another store path with Flow(..., store=PATH) or NBFLOW_STORE."
            )
        return int(version)
    if application == 0 and legacy is not None and {"runs", "flow_versions"} <= tables:
        return min(int(legacy or 1), SCHEMA_VERSION - 1)  # an nbflow store of before 0.2
    if application == 0 and not tables:
        return 0
    raise StoreError(
        f"store {path} is an SQLite database but not an nbflow store (it has tables "
        f"{sorted(tables)[:5]}); nothing was changed in it. Use another path with "
        "Flow(..., store=PATH) or NBFLOW_STORE"
    )


def _create(con: sqlite3.Connection, path: str, version: int, timeout: float) -> None:
    _wal(con, timeout)
    if version:
        backup = Path(f"{path}.v{version}.bak")
        shutil.copy2(path, backup)
    with transaction(con):
        # Under the write lock now: another process may have created (or upgraded) the file
        # since it was inspected.
        application = con.execute("PRAGMA application_id").fetchone()[0]
        if application == APPLICATION_ID:
            return
        if version:
            kept = _upgrade(con)
        for statement in TABLES:
            con.execute(statement)
        if version:
            _copy_back(con)
        con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if version:
        warnings.warn(
            f"store {path} was written by an older nbflow (schema {version}) and is upgraded "
            f"to schema {SCHEMA_VERSION}: its {kept[0]} runs and {kept[1]} flow versions are "
            "kept; their results, events and cache entries are not (those tasks run again "
            f"once). A copy of the old file is at {backup}.",
            UserWarning,
            stacklevel=4,
        )


def _wal(con: sqlite3.Connection, timeout: float) -> None:
    """Switch to WAL, retrying "locked" until ``timeout``: two processes preparing a new file
    at once can each hold the shared lock the other's switch needs, and SQLite answers that
    at once rather than through the busy handler."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at a process crash
            return
        except sqlite3.OperationalError as error:
            busy = "locked" in str(error) or "busy" in str(error)
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def _upgrade(con: sqlite3.Connection) -> tuple[int, int]:
    """Set an old store's runs and versions aside and drop the rest of its schema."""
    con.execute("ALTER TABLE runs RENAME TO old_runs")
    con.execute("ALTER TABLE flow_versions RENAME TO old_flow_versions")
    for kind, name in con.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'old_%' "
        "AND name NOT LIKE 'sqlite_%' AND type IN ('table', 'view', 'index') "
        "ORDER BY type = 'table'"  # views and indexes first
    ).fetchall():
        con.execute(f'DROP {kind.upper()} IF EXISTS "{name}"')
    runs = con.execute("SELECT count(*) FROM old_runs").fetchone()[0]
    versions = con.execute("SELECT count(*) FROM old_flow_versions").fetchone()[0]
    return runs, versions


def _copy_back(con: sqlite3.Connection) -> None:
    columns = {r[1] for r in con.execute("PRAGMA table_info(old_runs)")}
    digests = "var_digests" if "var_digests" in columns else "NULL"
    con.execute(
        "INSERT INTO runs SELECT run_id, flow, version, variables, "
        f"{digests}, status, started, ended, error, parent_run, resumed_from, host, pid "
        "FROM old_runs"
    )
    con.execute(
        "INSERT INTO flow_versions SELECT flow, version, created, n_tasks, spec, sources, NULL "
        "FROM old_flow_versions"
    )
    con.execute("DROP TABLE old_runs")
    con.execute("DROP TABLE old_flow_versions")
