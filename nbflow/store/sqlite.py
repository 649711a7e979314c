"""``SQLiteStore``: the default store, one SQLite file (WAL) and a directory of large results.

The file's layout is in :mod:`nbflow.store.schema`. Writes go through the process's single
writer for the file (:mod:`nbflow.store.writer`); reads use a connection of this handle and
first wait for what this process has submitted, so a read after a run sees the whole run.
What is derived (a run's attempts, its timeline, a replay) is folded from the event log when
read, by the same reducer a live run uses (:class:`~nbflow.state.RunState`).

Longer than 500 lines: :class:`SQLiteStore` is the one handle every reader of a store goes
through (runs, events, attempts, results and their checks, versions, sizes), each a short
query on the handle's connection; it also keeps what it knows of the file, which it must
forget at once when the writer opens another (a deleted or replaced store file).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pickle
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import StoreError
from ..state import RunState
from . import eventlog
from .codecs import FILE_BYTES, Files, Serializers, restore
from .liveness import dead_runs
from .results import DamagedResultError, ResultRow, item_bytes, result_row, unpack
from .retention import keep_runs_option
from .schema import connect, prepare, store_error
from .writer import Interrupted, Writer, recording, shared_writer

#: The columns of ``runs``, in order (what :class:`~nbflow.store.writer.RunOpened` carries).
RUN_COLUMNS = (
    "run_id", "flow", "version", "variables", "var_digests", "status", "started", "ended",
    "error", "parent_run", "resumed_from", "host", "pid",
)  # fmt: skip
_PACKS_KEPT = 8  # packs kept in memory once read (a resumed run reads a few, many times)


class SQLiteStore:
    """Durable store in one SQLite file: runs, events, results, flow versions, the cache.

    Args:
        path: the database file (created, with its directory, when missing). Large results
            go to the directory ``<path>-results`` beside it.
        timeout: seconds to wait for a lock held by another writer (and for a flush).
        file_bytes: results larger than this (serialised) are files, not rows.
        keep_runs: the newest runs of each flow to keep: when a flow has more (by
            :data:`~nbflow.store.retention.AUTO_EVERY`), the writer removes its oldest ones
            (see :meth:`prune`). ``"default"``: ``NBFLOW_KEEP_RUNS`` if set (``none`` for no
            limit), else 1,000. None keeps everything.
        interval: seconds between commits while a run goes on.

    Raises:
        StoreError: the file is damaged, not an nbflow store, from a newer nbflow, locked
            by another writer beyond ``timeout``, or cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        file_bytes: int = FILE_BYTES,
        keep_runs: int | str | None = "default",
        interval: float = 0.01,
    ) -> None:
        location = os.path.abspath(os.fspath(Path(path).expanduser()))
        self.location = location
        self.path = Path(location)
        self.timeout = timeout
        self.file_bytes = file_bytes
        self.keep_runs = keep_runs_option(keep_runs)
        self.interval = interval
        self.serializers = Serializers()
        self.files = Files(f"{location}-results")
        reader = prepare(location, timeout)
        reader.execute("PRAGMA query_only = ON")
        reader.row_factory = sqlite3.Row
        self._reader: sqlite3.Connection | None = reader
        self._lock = threading.Lock()
        self._packs: OrderedDict[int, list[Any]] = OrderedDict()  # pack -> its items
        self._version_identities: dict[tuple[str, str], dict[str, str | None]] = {}
        self._known: set[tuple[str, str]] = set()
        self._identities: set[str] = set()
        self._learn(reader)
        self._writer = self._make_writer()
        #: The writer's :attr:`~nbflow.store.writer.Writer.token` when this handle learnt
        #: what the file holds (a run's records are only written into that file).
        self.token = self._writer.token

    def _learn(self, reader: sqlite3.Connection) -> None:
        """Note the flow versions and task identities the file holds (a run that starts
        sends the store only what it lacks)."""
        self._known = {
            (r[0], r[1]) for r in reader.execute("SELECT flow, version FROM flow_versions")
        }
        self._identities = {r[0] for r in reader.execute("SELECT digest FROM identities")}

    def _make_writer(self) -> Writer:
        return shared_writer(
            self.location,
            lambda: Writer(
                self.location,
                timeout=self.timeout,
                interval=self.interval,
                keep_runs=self.keep_runs,
                files=self.files,
            ),
        )

    # -- writing -----------------------------------------------------------------------------

    def submit(self, item: Any) -> None:
        """Hand one record to the writer (a run's start or end, someone waiting; an event
        when a subclass overrides this: see :attr:`sees_every_record`); O(1), never blocks
        (runs on the event loop)."""
        self._writer.submit(item)

    @property
    def sees_every_record(self) -> bool:
        """Whether this store's class overrides :meth:`submit` to see each record: then it
        gets each of a run's events too (as an :class:`~nbflow.events.Event`)."""
        return type(self).submit is not SQLiteStore.submit

    def ensure_open(self) -> None:
        """Get a writer again if this handle's was stopped (``nbflow.store.close_all()``),
        and follow it to the file now at the path if the one it had open was deleted or
        replaced (a run is only ever written into the file it was described for).

        Raises:
            StoreError: the store cannot be opened again.
        """
        if self._writer.closed:
            prepare(self.location, self.timeout).close()  # the file may be gone or changed
            self._writer = self._make_writer()
        if self._writer.stale():  # deleted or replaced since: the writer opens the new one
            self._writer.flush(self.timeout, reading=True)
        self._follow()

    def _follow(self) -> None:
        """After the writer opened another file (the one at the path was deleted or
        replaced), forget what this handle knew of the old one: its reader, the versions,
        identities and results it had seen."""
        writer = self._writer
        if writer.token is self.token:
            return
        with self._lock:
            if self._reader is not None:
                self._reader.close()
            self._reader = None
            self._packs.clear()
            self._version_identities.clear()
            self.token = writer.token
            try:
                reader = self._reader = connect(self.location, self.timeout)
                reader.row_factory = sqlite3.Row
                reader.execute("PRAGMA query_only = ON")
                self._learn(reader)
            except sqlite3.Error as error:
                self._known, self._identities = set(), set()  # send them all again
                raise store_error(error, self.location, self.timeout) from None

    def wake(self) -> None:
        """Tell the writer a run started (it writes at its next tick)."""
        self._writer.wake()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record submitted so far is written.

        Raises:
            StoreError: a write failed since the last flush (SQLite's own message), or the
                writer did not catch up within ``timeout`` (a lock held by another process).
        """
        self._writer.flush(self.timeout if timeout is None else timeout)

    def finish(self, run_id: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """A future resolved once run ``run_id``'s records so far are written (with None) or
        could not be (with the :class:`StoreError`)."""
        return self._writer.finish(run_id, loop)

    def settle(self) -> None:
        """Mark the runs whose process is gone ``interrupted``, with the runs started under
        them (:mod:`nbflow.store.liveness`); the next read sees it (it waits for the writer)."""
        rows = self._query("SELECT run_id, host, pid FROM runs WHERE status = 'running'")
        dead = dead_runs(rows, self.location, recording) if rows else []
        if dead:
            self.submit(Interrupted(tuple(dead)))

    def knows_version(self, flow: str, version: str) -> bool:
        """Whether this flow version is recorded (or about to be)."""
        return (flow, version) in self._known

    def new_identities(self, digests: Any) -> list[str]:
        """Those of ``digests`` that this store has not recorded (and now will)."""
        found = [d for d in digests if d not in self._identities]
        self._identities.update(found)
        return found

    def note_version(self, flow: str, version: str) -> None:
        """Remember that this flow version is being recorded."""
        self._known.add((flow, version))

    # -- reading -----------------------------------------------------------------------------

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        # What this process submitted is read back; a write of it that failed was told to
        # its run (and to the next flush()), not to each later reader.
        self._writer.flush(self.timeout, reading=True)
        self._follow()
        with self._lock:
            try:
                if self._reader is None:
                    self._reader = connect(self.location, self.timeout)
                    self._reader.row_factory = sqlite3.Row
                    self._reader.execute("PRAGMA query_only = ON")
                return self._reader.execute(sql, params).fetchall()
            except sqlite3.Error as error:
                raise store_error(error, self.location, self.timeout) from None

    def runs(self, flow: str | None = None) -> list[dict[str, Any]]:
        """Every run (of ``flow``), oldest first, as ``runs`` rows (dicts), :meth:`settle`-d."""
        self.settle()
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

    def event_objects(self, run_id: str) -> list[ev.Event]:
        """The events of ``run_id``, in order, as :mod:`nbflow.events` objects (an error is
        a stand-in exception with the original's type name and message; a result is there
        only when it is a plain value: see :meth:`results`)."""
        rows = self._query(
            "SELECT events FROM records WHERE run_id = ? AND events IS NOT NULL ORDER BY id",
            (run_id,),
        )
        return eventlog.decode(run_id, (bytes(r[0]) for r in rows))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The event log of ``run_id`` in order: ``seq, kind, t, task, attempt, element,
        worker`` and ``payload``, a dict of the event's other fields (none that is empty)."""
        found = []
        for event in self.event_objects(run_id):
            values = {
                name: getattr(event, name, None)
                for name in (*eventlog.COMMON, *eventlog.LAYOUTS[type(event)])
            }
            payload = {}
            for name in eventlog.LAYOUTS[type(event)]:
                value = values.pop(name)
                if isinstance(value, BaseException):
                    value = f"{type(value).__name__}: {value}"
                if value not in (None, False, ()):
                    payload[name] = value
            found.append({**values, "kind": event.kind, "payload": payload})
        return found

    def state(self, run_id: str) -> RunState:
        """The run as its events leave it: folded by the reducer a live run uses."""
        state = RunState()
        for event in self.event_objects(run_id):
            state.apply(event)
        return state

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of ``run_id`` (``element`` None for a task as a whole), in the order
        they started: ``task, element, key, attempt, state, started, ended, worker, error,
        traceback, iteration`` (times are Unix seconds; ``key`` is the element's ``key=``, or
        None; ``iteration`` a loop's from the second on, whose attempts count from 1 again,
        else 0; the traceback is on the task's last attempt)."""
        state = self.state(run_id)
        finals = {row.base: row for row in state.rows if row.element is None}
        found = []
        for row in state.rows:
            record = state.tasks.get(row.base)
            last = finals.get(row.base) is row
            found.append(
                {
                    "task": row.base,
                    "element": row.element,
                    "key": _key_of(record, row.element),
                    "attempt": row.attempt,
                    "state": row.status,
                    "started": state.wall_start + row.start,
                    "ended": state.wall_start + row.end if row.end is not None else None,
                    "worker": row.worker,
                    "error": row.error,
                    "traceback": (record.traceback or None) if last and record else None,
                    "iteration": row.iteration,
                }
            )
        return found

    def results(self, run_id: str) -> dict[str, ResultRow]:
        """Task -> :class:`ResultRow` for the tasks of ``run_id`` that succeeded (their
        values may not all be stored: see ``ResultRow.stored``)."""
        rows = self._query(
            "SELECT p.id, p.created, p.tasks, p.meta, r.flow, r.version FROM records p "
            "LEFT JOIN runs r ON r.run_id = p.run_id WHERE p.run_id = ? AND p.tasks IS NOT NULL "
            "ORDER BY p.id",
            (run_id,),
        )
        found: dict[str, ResultRow] = {}
        for row in rows:
            identities = self._task_identities(row[4], row[5])
            for result in unpack(run_id, row[0], row[1], row[2], row[3], identities):
                found[result.task] = result
        return found

    def _task_identities(self, flow: str | None, version: str | None) -> dict[str, str | None]:
        """Task -> identity digest in a flow version (empty: the version is not recorded)."""
        key = (flow or "", version or "")
        found = self._version_identities.get(key)
        if found is None:
            rows = self._query(
                "SELECT identities FROM flow_versions WHERE flow = ? AND version = ?", key
            )
            found = json.loads(rows[0][0]) if rows and rows[0][0] else {}
            if rows:  # a version's identities never change once it is recorded
                self._version_identities[key] = found
        return found

    def find_cached(self, key: str, since: float | None = None) -> ResultRow | None:
        """The newest stored result with cache key ``key`` (created at or after ``since``)."""
        rows = self._query(
            "SELECT c.run_id, c.task, c.pack, c.item, p.created, "
            "json_extract(p.meta, '$[' || c.item || ']'), r.flow, r.version "
            "FROM cache_entries c JOIN records p ON p.id = c.pack "
            "LEFT JOIN runs r ON r.run_id = c.run_id "
            "WHERE c.cache_key = ? AND c.created >= ? ORDER BY c.created DESC LIMIT 4",
            (key, since if since is not None else 0.0),
        )
        for run_id, task, pack_id, item, created, extra, flow, version in rows:
            identity = self._task_identities(flow, version).get(task)
            meta = json.loads(extra) if extra is not None else None
            found = result_row(run_id, pack_id, created, item, task, meta, identity)
            if found.stored:
                return found
        return None

    def task_results(self, flow: str, task: str, before: float) -> list[ResultRow]:
        """Results of ``task`` in runs of ``flow`` that started before ``before``, newest
        first (what ``run.why()`` compares a run with)."""
        runs = self._query(
            "SELECT run_id FROM runs WHERE flow = ? AND started < ? ORDER BY started DESC LIMIT 50",
            (flow, before),
        )
        found = []
        for (run_id,) in runs:
            row = self.results(run_id).get(task)
            if row is not None:
                found.append(row)
        return found

    def identity_parts(self, digest: str) -> str | None:
        """The parts (JSON) of a task identity recorded in this store."""
        rows = self._query("SELECT parts FROM identities WHERE digest = ?", (digest,))
        return rows[0][0] if rows else None

    def versions(self, flow: str) -> list[dict[str, Any]]:
        """Recorded versions of ``flow``, oldest first, with run counts."""
        rows = self._query(
            "SELECT v.flow, v.version, v.created, v.n_tasks, count(r.run_id) AS runs, "
            "max(r.started) AS last_run FROM flow_versions v LEFT JOIN runs r "
            "ON r.flow = v.flow AND r.version = v.version WHERE v.flow = ? "
            "GROUP BY v.flow, v.version ORDER BY v.created",
            (flow,),
        )
        return [dict(r) for r in rows]

    def version(self, version: str, flow: str | None = None) -> dict[str, Any] | None:
        """One recorded version (a unique prefix is enough): flow, version, spec, sources.

        Raises:
            StoreError: the prefix matches several versions.
        """
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

    # -- result values -----------------------------------------------------------------------

    def verify_result(self, row: ResultRow) -> None:
        """Check a stored result's bytes against their checksum.

        Raises:
            DamagedResultError: they do not match.
            StoreError: they are gone.
        """
        if row.file is None:
            self._items(row.pack)
        else:
            self._file(row)

    def _file(self, row: ResultRow) -> Path:
        """The checked file of a result stored as one."""
        assert row.file is not None
        try:
            return self.files.verify(row.file, row.digest or "")
        except ValueError as error:
            raise DamagedResultError(str(error)) from None
        except OSError as error:
            raise StoreError(f"the file of task {row.task!r}'s result is gone ({error})") from None

    def result_bytes(self, row: ResultRow) -> bytes:
        """The stored bytes of a result (a plain value's: its pickle), checked against their
        checksum.

        Raises:
            DamagedResultError: the bytes fail their checksum.
            StoreError: they are gone (the run was pruned, the file removed).
        """
        if row.file is not None:
            return self._file(row).read_bytes()
        return item_bytes(self._items(row.pack)[row.item])

    def read_result(self, row: ResultRow) -> Any:
        """The value of a stored result (see :class:`~nbflow.store.results.StoredResult`).

        Raises:
            DamagedResultError: the stored bytes fail their checksum.
            StoreError: the result is gone, or was written by a serialiser not registered.
        """
        if not row.stored:
            raise StoreError(f"the result of task {row.task!r} in run {row.run_id} is not stored")
        serializer = self.serializers.named(row.codec or "")
        if serializer is None:
            raise StoreError(
                f"the result of task {row.task!r} was stored by serializer {row.codec!r}, which "
                f"this store does not have; register it with store.serializers.register(...)"
            )
        if row.file is not None:
            with open(self._file(row), "rb") as file:
                return serializer.load(file)
        item = self._items(row.pack)[row.item]
        if type(item) is not bytes:
            return item  # a plain value, stored as it is
        return restore(serializer, item)

    def _items(self, pack_id: int) -> list[Any]:
        """The items of a pack (see :mod:`nbflow.store.results`), checked."""
        found = self._packs.get(pack_id)
        if found is not None:
            self._packs.move_to_end(pack_id)
            return found
        rows = self._query("SELECT data, checksum FROM records WHERE id = ?", (pack_id,))
        if not rows or rows[0][0] is None:
            raise StoreError(f"result pack {pack_id} is gone from {self.location} (pruned)")
        data, checksum = bytes(rows[0][0]), rows[0][1]
        if hashlib.sha256(data).hexdigest() != checksum:
            raise DamagedResultError(
                f"results stored in {self.location} (pack {pack_id}) are damaged: their "
                "bytes do not match their checksum"
            )
        found = self._packs[pack_id] = pickle.loads(data)
        while len(self._packs) > _PACKS_KEPT:
            self._packs.popitem(last=False)
        return found

    # -- size and retention ------------------------------------------------------------------

    def size(self) -> int:
        """Bytes on disk: the database (with its WAL) and the result files."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            path = Path(self.location + suffix)
            if path.exists():
                total += path.stat().st_size
        root = self.files.root
        if root.exists():
            total += sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        return total

    def prune(self, **options: Any) -> Any:
        """Remove old runs; see :func:`nbflow.store.retention.prune`."""
        from .retention import prune

        return prune(self, **options)

    def forget_packs(self) -> None:
        """Drop the packs kept in memory (after a prune removed some)."""
        self._packs.clear()

    def run_sizes(self) -> dict[str, int]:
        """Bytes each run takes in the database (its records: events and results)."""
        rows = self._query(
            "SELECT run_id, sum(coalesce(length(events), 0) + coalesce(length(tasks), 0) "
            "+ coalesce(length(meta), 0) + coalesce(length(data), 0)) FROM records "
            "GROUP BY run_id"
        )
        return {r[0]: r[1] for r in rows}

    def run_file_sizes(self) -> dict[str, int]:
        """Bytes of the result files each run wrote (its own results' files, each once; a
        result it reused from another run is that run's). Identical results share one
        file, so a file two runs wrote alike counts in both."""
        rows = self._query(
            "SELECT run_id, sum(size) FROM (SELECT DISTINCT p.run_id AS run_id, f.path, f.size "
            "FROM records p, json_each(p.tasks) t "
            "JOIN result_files f ON f.path = json_extract(p.meta, '$[' || t.key || '][2]') "
            "WHERE json_extract(p.meta, '$[' || t.key || '][3]') IS NULL) GROUP BY run_id"
        )
        return {r[0]: r[1] for r in rows}

    def close(self) -> None:
        """Close this handle's reader (the shared writer stays for other handles)."""
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location!r}>"


def _key_of(record: Any, element: int | None) -> str | None:
    """The ``key=`` of a fan-out element (None: no element, or no key)."""
    if element is None or record is None or record.element_keys is None:
        return None
    return record.element_keys.get(element)
