"""The one writer of a store file in a process: a queue, a thread, a transaction per batch.

A run's journal (:class:`~nbflow.store.recorder.Recorder`) gives the writer the run's two
lists, which the engine fills on the event loop (one ``list.extend`` each, in C): its
events' items and its results (:class:`RunOpened` carries them). Everything else (a run that
starts or ends, someone waiting) goes through ``submit``. Every ``interval`` while a run
goes on (the first once a timer on the run's loop says it has gone on for one; at once when
someone waits) the writer thread takes what is queued, the shared queue first (so a run
that ended has all its records in its lists by then), and what the lists hold, and writes
it in one transaction: the runs that started, one ``records`` row per run (its events and
its results: :mod:`nbflow.store.eventlog`, :mod:`nbflow.store.results`), the runs that
ended. Encoding is this thread's work; the event loop only appends.

Nothing is lost in silence. A batch the database refuses (a full disk, a damaged file, a
table gone) is reported to every run it belonged to: a run waiting for its end to be written
(:meth:`Writer.finish`) gets that error, with SQLite's own words, and so does the next
``flush()`` (but not a read, which waits for the writer only to see what was written: a cache
lookup in a later run, ``nf.history()``; the error is its run's to tell). A batch that meets
a lock held by another process is kept and tried again until the lock goes; meanwhile
``flush()`` times out with a :class:`StoreLockedError` that says so.

Nor when the file itself goes (deleted, moved, replaced: :mod:`nbflow.store.vanished`):
every run going on is told, the rest of its records is dropped (never written into the new
file without the rows they belong to), and the writer opens the file now at the path for
the runs to come; store handles follow it (:attr:`Writer.token`).

One writer exists per store file per process (:func:`shared_writer`), so two flows of one
notebook never contend for the file; two processes contend only at commit time, which
SQLite's busy timeout serialises.

Longer than 500 lines: :class:`Writer` is one thread's state (its connection, the file it
has open, the runs going on, what each could not record) that every transaction reads and
changes; batching, committing, telling runs what was lost and following a replaced file are
its methods because they share that state, and the registry of writers sits by the class.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import events as ev
from ..errors import StoreError, describe
from . import eventlog
from .liveness import mark
from .results import Pack, pack
from .schema import connect, prepare, store_error, transaction
from .vanished import file_identity, forget_files, lost_files, replaced_error

log = logging.getLogger("nbflow.store")


class StoreLockedError(StoreError):
    """The database stayed locked by another writer for longer than the store's timeout."""


@dataclass(slots=True)
class RunOpened:
    """A run starts: its ``runs`` row, what its version adds to the store, and its lists:
    ``log`` gets its events (see :mod:`nbflow.store.eventlog`), ``kept`` each result's task
    and item (see :mod:`nbflow.store.results`); ``keys`` maps the tasks whose results go
    into the cache to their cache keys; ``controlled`` lists those whose results are never
    to be reused. ``token`` is the writer's :attr:`Writer.token` the run was described for
    (which flow versions and identities the file already held)."""

    run_id: str
    row: tuple[Any, ...]  # the runs row (see sqlite.RUN_COLUMNS)
    version: tuple[Any, ...] | None = None  # a flow_versions row, when it is new
    identities: dict[str, str] = field(default_factory=dict)  # digest -> parts JSON
    log: list[Any] = field(default_factory=list)
    kept: list[Any] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    controlled: set[str] = field(default_factory=set)  # tasks whose results are not reused
    token: object = None


@dataclass(slots=True)
class Status:
    """A run's status in its ``runs`` row as it ends (with when, Unix seconds, and its
    error)."""

    run_id: str
    status: str
    ended: float | None = None
    error: str | None = None


@dataclass(slots=True)
class Interrupted:
    """Runs found dead (see :mod:`nbflow.store.liveness`): they, and the runs started under
    them, are marked ``interrupted`` where still marked running."""

    runs: tuple[str, ...]


class _Waiter:
    """Someone waiting until everything queued before it is written: a thread (``flush``)
    or a run's coroutine (``finish``)."""

    __slots__ = ("callback", "done", "error", "reading", "run_id")

    def __init__(
        self,
        run_id: str | None = None,
        callback: Callable[[StoreError | None], None] | None = None,
        reading: bool = False,
    ) -> None:
        self.run_id = run_id
        self.callback = callback
        self.reading = reading  # a reader: told of no write error (runs are, and flush())
        self.done = threading.Event()
        self.error: StoreError | None = None

    def release(self, error: StoreError | None) -> None:
        self.error = error
        self.done.set()
        if self.callback is not None:
            self.callback(error)


_STOP = object()
_IDLE_POLL = 1.0  # seconds between looks at the queue while no run is going on


def _take(items: list[Any]) -> list[Any]:
    """What ``items`` holds now; other threads only append to it meanwhile, and each of the
    two steps (and each append) holds the GIL, so what they add after the first stays."""
    count = len(items)
    taken = items[:count]
    del items[:count]
    return taken


class _Batch:
    """One transaction's worth: what the shared queue held, and each run's records."""

    __slots__ = ("dead", "ended", "opened", "records", "statuses", "waiters")

    def __init__(self) -> None:
        self.opened: list[RunOpened] = []
        self.statuses: dict[str, Status] = {}  # the last known of each run
        self.dead: list[str] = []  # runs found dead (Interrupted)
        self.ended: list[str] = []  # runs whose journal said they are over
        self.records: list[tuple[str, bytes | None, Pack | None]] = []  # (run, events, pack)
        self.waiters: list[_Waiter] = []

    def single(self) -> bool:
        """Whether the batch is one statement: one run's records, of plain results."""
        if self.opened or self.statuses or self.dead or len(self.records) != 1:
            return False
        found = self.records[0][2]
        return found is None or not (found.files or found.cache_entries)

    def runs(self) -> set[str]:
        return {*(r[0] for r in self.records), *(o.run_id for o in self.opened), *self.statuses}


class Writer:
    """Writes submitted items to a store's file from one background thread.

    Args:
        path: the database file.
        timeout: seconds to wait for a lock held by another writer, per try.
        interval: seconds between commits while a run goes on.
        keep_runs: the newest runs of each flow to keep (see :func:`auto_prune`).
        files: the store's result files (a prune removes those no result refers to).
    """

    def __init__(
        self,
        path: str,
        *,
        timeout: float,
        interval: float = 0.01,
        keep_runs: int | None = None,
        files: Any = None,
    ) -> None:
        self.path, self.timeout, self.interval = path, timeout, interval
        self.keep_runs, self.files = keep_runs, files
        self._queue: list[Any] = []
        self.submit: Callable[[Any], None] = self._queue.append  # the loop's cost per item
        self._wake = threading.Event()
        self._open: dict[str, RunOpened] = {}  # runs going on (their lists)
        self._run_errors: dict[str, StoreError] = {}  # runs a batch could not record
        self._error: StoreError | None = None  # for the next flush
        self._locked_since: float | None = None
        self._counts: dict[str, int] = {}  # flow -> its runs in the file (for keep_runs)
        self._con: sqlite3.Connection | None = None
        #: Which file the writer writes: a new object each time it opens another (the file at
        #: its path was deleted or replaced), so a handle knows to forget what it knew of the
        #: old one (see SQLiteStore._follow).
        self.token = object()
        self._identity: tuple[int, int] | None = None  # the file the connection has open
        self._lost: set[str] = set()  # runs going on whose records went into a file now gone
        self._files: dict[str, list[tuple[str, str]]] = {}  # run -> (task, file) it wrote
        self._thread = threading.Thread(target=self._run, name=f"nbflow-store:{path}", daemon=True)
        self._thread.start()

    # -- caller side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Write what is queued now (a run has gone on for an interval, or someone waits)."""
        self._wake.set()

    def flush(self, timeout: float | None = None, *, reading: bool = False) -> None:
        """Block until everything submitted so far is written.

        ``reading``: the caller only wants to read what is written (a write that failed
        is not its error: the run it belonged to is told, and so is the next plain flush).

        Raises:
            StoreError: a batch could not be written since the last flush (SQLite's message;
                not when ``reading``), or the writer did not catch up within ``timeout`` (a
                lock held elsewhere).
        """
        if not self._thread.is_alive():
            if reading:
                return
            error, self._error = self._error, None
            if error is not None:
                raise error
            return
        waiter = _Waiter(reading=reading)
        self._queue.append(waiter)
        self._wake.set()
        if not waiter.done.wait(timeout):
            since = self._locked_since
            if since is not None:
                raise StoreLockedError(
                    f"store {self.path} is locked by another writer: this process's records "
                    f"have waited {time.monotonic() - since:.1f} s to be written (another "
                    "process or connection holds a write transaction on it). Nothing is lost "
                    "yet: the records wait in memory and are written when the lock is released."
                )
            raise StoreError(
                f"store {self.path}: the writer did not catch up within {timeout:g} s (very "
                "large results, or a slow disk); the records are still being written"
            )
        if waiter.error is not None:
            raise waiter.error

    def finish(self, run_id: str, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """A future on ``loop`` that the writer resolves once everything of run ``run_id``
        submitted so far is written: with None, or the :class:`StoreError` that kept some
        of it from being recorded."""
        future: asyncio.Future[Any] = loop.create_future()

        def resolve(error: StoreError | None) -> None:
            def settle() -> None:
                if not future.done():
                    future.set_result(error)

            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle)

        self._queue.append(_Waiter(run_id, resolve))
        self._wake.set()
        return future

    def stale(self) -> bool:
        """Whether the file at the path is not the one the writer has open (a ``stat``; the
        writer notices it too, before its next transaction)."""
        try:
            return file_identity(self.path) != self._identity
        except OSError:
            return False  # cannot tell: the writer's own transaction will say what is wrong

    @property
    def closed(self) -> bool:
        """Whether the thread has stopped (after :meth:`close`)."""
        return not self._thread.is_alive()

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is pending, stop the thread, close the connection."""
        if self._thread.is_alive():
            self._queue.append(_STOP)
            self._wake.set()
            self._thread.join(timeout)

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        self._open_file()
        queue, wake = self._queue, self._wake
        while True:
            wake.wait(self.interval if self._open else _IDLE_POLL)
            wake.clear()  # before taking the queue: a submit after this wakes us again
            if (queue or self._open) and self._write(_take(queue)):
                break
        if self._con is not None:
            self._con.close()
            self._con = None

    def _open_file(self) -> None:
        """Open the file at the path (created when missing) and note which file it is."""
        con = identity = None
        try:
            for _ in range(3):  # until the file opened is the one at the path after too
                prepare(self.path, self.timeout).close()  # a new file gets its schema
                before = file_identity(self.path)
                opened = connect(self.path, 0.1)  # short waits: a lock is retried, and said
                identity = file_identity(self.path)
                if before == identity:
                    con = opened
                    break
                opened.close()
            else:
                raise StoreError(f"store {self.path} was replaced again as it was opened")
            con.execute("PRAGMA synchronous = NORMAL")
        except (sqlite3.Error, StoreError, OSError) as error:
            if con is not None:
                con.close()
            con = identity = None
            with contextlib.suppress(OSError):  # opened again only once this file is replaced
                identity = file_identity(self.path)
            if isinstance(error, sqlite3.Error):
                error = store_error(error, self.path, self.timeout)
            elif isinstance(error, OSError):
                error = StoreError(f"store {self.path}: {describe(error)}")
            self._error = self._error or error
        self._con, self._identity = con, identity

    def _check_file(self) -> None:
        """If the file at the path is no longer the one the connection has open, every run
        going on has lost its records (they are told, and the rest of theirs is dropped);
        then open the file now at the path, for the runs to come."""
        try:
            if file_identity(self.path) == self._identity:
                return
        except OSError:
            return  # cannot tell (a directory without permission): the commit says what fails
        error = replaced_error(self.path)
        for run_id in self._open:
            self._lose(run_id, error)
        if self._con is not None:
            # SQLite does not checkpoint a moved file as it closes, nor delete the WAL and
            # shared memory files by their names, which may be the new file's now.
            with contextlib.suppress(sqlite3.Error):
                self._con.close()
            self._con = None
        self.token = object()
        self._counts = {}
        self._open_file()

    def _lose(self, run_id: str, error: StoreError) -> None:
        if run_id not in self._lost:
            log.error("nbflow store: run %s: %s", run_id, error)
        self._lost.add(run_id)
        self._run_errors.setdefault(run_id, error)
        self._error = self._error or error

    def _write(self, items: list[Any]) -> bool:
        """Write ``items`` (the shared queue's) and what the open runs' lists hold, in one
        transaction; True when told to stop."""
        batch, stop = _Batch(), False
        if self._open or any(item is not _STOP for item in items):  # (not at a mere stop)
            self._check_file()  # a stat, before anything is written into a file now gone
        for item in items:
            kind = type(item)
            if kind is RunOpened:
                self._open[item.run_id] = item
                if item.token is not self.token:  # described for a file that is gone
                    self._lose(item.run_id, replaced_error(self.path))
                else:
                    batch.opened.append(item)
            elif kind is Status:
                if item.run_id not in self._lost:
                    batch.statuses[item.run_id] = item
                if item.ended is not None:
                    batch.ended.append(item.run_id)
            elif kind is Interrupted:
                batch.dead.extend(item.runs)
            elif kind is _Waiter:
                batch.waiters.append(item)
            elif item is _STOP:
                stop = True
            # else: an event a store that sees every record passed on (its run's log has it)
        del items
        lost = self._lost
        try:
            for run_id, opened in self._open.items():
                if run_id in lost:  # told already; nothing of it goes into the new file
                    del opened.log[:], opened.kept[:]
                    continue
                events = found = None
                if opened.log:
                    items = _take(opened.log)  # class, t, arguments, class...
                    events = eventlog.encode(items)
                    if len(items) >= 4 and items[-4] is ev.RunFinished:  # on disk before
                        _, t, status, error = items[-4:]  # subscribers hear of it
                        ended = Status(run_id, status, opened.row[6] + t, error)
                        batch.statuses.setdefault(run_id, ended)
                if opened.kept:
                    found = pack(_take(opened.kept), opened.keys, opened.controlled)
                if events is not None or found is not None:
                    batch.records.append((run_id, events, found))
            error = self._commit(batch) if batch.runs() or batch.dead else None
        except Exception as raised:  # a bug: still never a silent loss
            log.exception("nbflow store %s: could not write a batch", self.path)
            error = self._failed(batch, StoreError(f"store {self.path}: {describe(raised)}"))
        if error is None:
            for run_id, _, found in batch.records:
                if found is not None and found.files:
                    self._files.setdefault(run_id, []).extend(
                        (t, s.file) for t, s in found.files if s.file is not None
                    )
        for run_id in batch.ended:
            self._open.pop(run_id, None)
            lost.discard(run_id)
            written = self._files.pop(run_id, None)
            if written and self.files is not None and run_id not in self._run_errors:
                self._check_files(run_id, written)
        if self.keep_runs is not None and error is None:
            for opened in batch.opened:
                self._prune(opened.row[1])
        for waiter in batch.waiters:
            if waiter.reading:
                failure = None
            elif waiter.run_id is None:
                failure, self._error = self._error, None
            else:
                failure = self._run_errors.pop(waiter.run_id, None)
                if failure is not None and failure is self._error:
                    self._error = None  # told to the run that lost records: said once
            waiter.release(failure)
        if error is not None:
            log.error("%s", error)
        return stop

    def _commit(self, batch: _Batch) -> StoreError | None:
        """Write the batch, retrying while the file is locked elsewhere; on any other error
        note it for every run of the batch (and the next flush) and return it."""
        con = self._con
        if con is None:
            unopened = StoreError(f"store {self.path} could not be opened")
            return self._failed(batch, self._error or unopened)
        delay = 0.01
        while True:
            try:
                if batch.single():  # one INSERT, a transaction of its own (the usual tick)
                    self._statements(con, batch)
                else:
                    with transaction(con):
                        self._statements(con, batch)
                self._locked_since = None
                return None
            except sqlite3.Error as raised:
                error = store_error(raised, self.path, self.timeout)
                if not isinstance(error, StoreLockedError):
                    break
                if self._locked_since is None:
                    self._locked_since = time.monotonic()
                time.sleep(delay)  # kept and retried until the lock goes
                delay = min(delay * 2, 0.25)
        self._locked_since = None
        return self._failed(batch, error)

    def _check_files(self, run_id: str, written: list[tuple[str, str]]) -> None:
        """Tell a run whose result files are gone (their directory was deleted while it went
        on) that those results are lost, and stop offering them to the cache."""
        try:
            found = lost_files(self.files, written)
        except OSError as raised:  # cannot tell (a directory without permission): say so
            found = StoreError(f"store {self.path}: {describe(raised)}"), []
        if found is None:
            return
        error, files = found
        log.error("nbflow store: run %s: %s", run_id, error)
        self._run_errors.setdefault(run_id, error)
        self._error = self._error or error
        if self._con is not None and files:
            try:
                forget_files(self._con, files)
            except sqlite3.Error as raised:  # still offered: a miss with a warning, later
                log.warning("nbflow store %s: could not forget lost files: %s", self.path, raised)

    def _failed(self, batch: _Batch, error: StoreError) -> StoreError:
        for run_id in batch.runs():
            self._run_errors.setdefault(run_id, error)
        self._error = self._error or error
        return error

    def _prune(self, flow: str) -> None:
        """Keep ``flow`` to its newest ``keep_runs`` runs (see nbflow.store.retention)."""
        from .retention import auto_prune

        assert self._con is not None and self.keep_runs is not None
        try:
            found = auto_prune(self._con, flow, self.keep_runs, self._counts, self.path, recording)
            for relative in found:
                if self.files is not None:
                    self.files.path(relative).unlink(missing_ok=True)
        except (sqlite3.Error, OSError) as error:  # a prune that fails costs space, not data
            log.warning(
                "nbflow store %s: could not remove old runs of %r: %s", self.path, flow, error
            )

    @staticmethod
    def _statements(con: sqlite3.Connection, batch: _Batch) -> None:
        # As few statements as will do: each one lets go of the GIL and takes it back.
        statuses = dict(batch.statuses)  # (the batch is written again if the file was locked)
        for opened in batch.opened:
            row, end = opened.row, statuses.pop(opened.run_id, None)
            if end is not None:  # started and ended in this batch: its row as it ended
                row = (*row[:5], end.status, row[6], end.ended, end.error, *row[9:])
            con.execute(f"INSERT OR REPLACE INTO runs VALUES ({', '.join('?' * 13)})", row)
            if opened.version is not None:
                con.execute(
                    "INSERT OR IGNORE INTO flow_versions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    opened.version,
                )
            if opened.identities:
                con.executemany(
                    "INSERT OR IGNORE INTO identities VALUES (?, ?)", opened.identities.items()
                )
        now = time.time()
        for run_id, events, found in batch.records:
            if found is None:
                con.execute(
                    "INSERT INTO records (run_id, created, events) VALUES (?, ?, ?)",
                    (run_id, now, events),
                )
                continue
            pack_id = con.execute(
                "INSERT INTO records VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, now, events, found.tasks, found.meta, found.data, found.checksum),
            ).lastrowid
            if found.files:
                con.executemany(
                    "INSERT OR IGNORE INTO result_files VALUES (?, ?, ?, ?)",
                    [(s.digest, s.file, s.codec, s.size) for _, s in found.files],
                )
            if found.cache_entries:
                con.executemany(
                    "INSERT OR IGNORE INTO cache_entries VALUES (?, ?, ?, ?, ?, ?)",
                    [(key, now, run_id, task, pack_id, i) for key, task, i in found.cache_entries],
                )
        for status in statuses.values():
            con.execute(
                "UPDATE runs SET status = ?, ended = coalesce(?, ended), "
                "error = coalesce(?, error) WHERE run_id = ?",
                (status.status, status.ended, status.error, status.run_id),
            )
        mark(con, batch.dead)  # after the ends: a run that ended meanwhile keeps its end


def safe_json(value: Any) -> str:
    """JSON of ``value``; what JSON cannot hold becomes its ``repr``."""
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # e.g. a dict with tuple keys
        return json.dumps(repr(value))


# -- one writer per file per process ---------------------------------------------------------

_writers: dict[str, Writer] = {}
_registry_lock = threading.Lock()


def shared_writer(path: str, make: Callable[[], Writer]) -> Writer:
    """The process's writer for ``path``, made by ``make()`` the first time."""
    with _registry_lock:
        writer = _writers.get(path)
        if writer is None or writer.closed:
            writer = _writers[path] = make()
        return writer


def recording(run_id: str) -> bool:
    """Whether this process is recording run ``run_id`` now (a writer of it has the run
    open: from before its ``runs`` row is written until after its end is)."""
    with _registry_lock:
        writers = list(_writers.values())
    return any(run_id in writer._open for writer in writers)


def close_writer(path: str, timeout: float | None = 10.0) -> None:
    """Flush and stop the writer of ``path`` (a later store handle makes a new one)."""
    with _registry_lock:
        writer = _writers.pop(path, None)
    if writer is not None:
        writer.close(timeout)


def close_all(timeout: float | None = 10.0) -> None:
    """Flush and stop every writer of this process (also run at interpreter exit)."""
    for path in list(_writers):
        close_writer(path, timeout)


def _forget_after_fork() -> None:
    # A forked child has the registry but not the threads; it must not touch the parent's
    # connections either (closing them could checkpoint the parent's WAL), so keep them alive.
    _orphans.extend(_writers.values())
    _writers.clear()


_orphans: list[Writer] = []
atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
