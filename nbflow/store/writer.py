"""The one writer of a store file in a process: a run's loop writes, a thread stands by.

A run's journal (:class:`~nbflow.store.recorder.Recorder`) gives the writer the run's two
lists, which the engine fills on the event loop (one ``list.extend`` each, in C): its
events' items and its results (:class:`RunOpened` carries them). Every ``interval`` while
the run goes on, and at its end, the run's own loop writes what they hold
(:meth:`Writer.write`): one transaction, with the run's ``runs`` row the first time, one
``records`` row (its events and its results: :mod:`nbflow.store.eventlog`,
:mod:`nbflow.store.results`) and, at the end, its status. On the loop, not in the thread:
a thread that takes the run's items, encodes them and commits takes the GIL and the items
from the loop several times a tick, which cost the run a third more CPU than the work itself
(docs/performance.md). A tick of a 1,000-task stretch takes ~0.5-0.8 ms of the loop.

The thread (one per file per process: :func:`shared_writer`) does what must not wait for a
loop or must not block it: it writes a run whose loop cannot (another process holds the
file's lock: the run is handed over to the thread, which retries until the lock goes; a
task blocks the loop: what finished before it is written after :data:`_STALE` intervals),
what is submitted from elsewhere (a run's end when its loop handed it over, a status found
later, someone waiting in ``flush()``), checkpoints of the WAL, and the store's own
pruning. The two never write at once (a lock; the loop does not wait for it, it tries again
at its next tick).

Nothing is lost in silence. A write the database refuses (a full disk, a damaged file, a
table gone) is reported to every run it belonged to: the run gets that error as it ends,
with SQLite's own words, and so does the next ``flush()``. A batch that meets a lock held
by another process is kept and tried again until the lock goes; meanwhile ``flush()``
times out with a :class:`StoreLockedError` that says so.
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
from .results import Pack, pack
from .schema import connect, store_error, transaction

log = logging.getLogger("nbflow.store")


class StoreLockedError(StoreError):
    """The database stayed locked by another writer for longer than the store's timeout."""


@dataclass(slots=True)
class RunOpened:
    """A run starts: its ``runs`` row, what its version adds to the store, and its lists:
    ``log`` gets its events (see :mod:`nbflow.store.eventlog`), ``kept`` each result's task
    and item (see :mod:`nbflow.store.results`); ``keys`` maps the tasks whose results go
    into the cache to their cache keys; ``controlled`` lists those whose results are never
    to be reused."""

    run_id: str
    row: tuple[Any, ...]  # the runs row (see sqlite.RUN_COLUMNS)
    version: tuple[Any, ...] | None = None  # a flow_versions row, when it is new
    identities: dict[str, str] = field(default_factory=dict)  # digest -> parts JSON
    log: list[Any] = field(default_factory=list)
    kept: list[Any] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    controlled: set[str] = field(default_factory=set)  # tasks whose results are not reused
    #: Written by its run's loop (:meth:`Writer.write`); the thread writes it only when the
    #: loop has not for a while (:data:`_STALE`), or someone waits. False: the thread does.
    direct: bool = False
    written: bool = False  # its runs row is in the file
    ended: bool = False  # its end is in the file (written by its loop)
    stamp: float = 0.0  # time.monotonic() of its loop's last write


@dataclass(slots=True)
class Status:
    """A run's status in its ``runs`` row: as it ends (with when, Unix seconds, and its
    error), or found out after the fact (a dead run is ``interrupted``)."""

    run_id: str
    status: str
    ended: float | None = None
    error: str | None = None


class _Waiter:
    """Someone waiting until everything queued before it is written: a thread (``flush``,
    which waits on ``done``) or a run's loop (``finish``, called back)."""

    __slots__ = ("callback", "done", "error", "run_id")

    def __init__(
        self, run_id: str | None = None, callback: Callable[[StoreError | None], None] | None = None
    ) -> None:
        self.run_id = run_id
        self.callback = callback
        self.done = threading.Event() if callback is None else None
        self.error: StoreError | None = None

    def release(self, error: StoreError | None) -> None:
        self.error = error
        if self.done is not None:
            self.done.set()
        if self.callback is not None:
            self.callback(error)


@dataclass(slots=True)
class _Prune:
    """A run of ``flow`` started (its loop wrote its ``runs`` row): the thread prunes."""

    flow: str


_STOP = object()
_CHECKPOINT = object()  # the loops have written a WAL's worth: the thread checkpoints it
_IDLE_POLL = 1.0  # seconds between looks at the queue while no run is going on
#: Intervals a run's loop may go without writing it before the thread does: a loop that is
#: busy ticks late, and one that merely ticks late must not lose its run to the thread.
_STALE = 5
#: Bytes the loops write before the thread checkpoints the WAL (SQLite's own default:
#: 1,000 pages); their connection does not, so that no loop waits for one.
_CHECKPOINT_BYTES = 4 << 20


def _take(items: list[Any]) -> list[Any]:
    """What ``items`` holds now; other threads only append to it meanwhile, and each of the
    two steps (and each append) holds the GIL, so what they add after the first stays."""
    count = len(items)
    taken = items[:count]
    del items[:count]
    return taken


def _settle(future: asyncio.Future[Any], error: StoreError | None) -> None:
    if not future.done():  # (its run stopped waiting: cancelled, or timed out)
        future.set_result(error)


class _Batch:
    """One transaction's worth: what the shared queue held, and each run's records."""

    __slots__ = ("ended", "opened", "records", "statuses", "waiters")

    def __init__(self) -> None:
        self.opened: list[RunOpened] = []  # runs whose runs row is written in this batch
        self.statuses: dict[str, Status] = {}  # the last known of each run
        self.ended: list[str] = []  # runs whose journal said they are over
        self.records: list[tuple[str, bytes | None, Pack | None]] = []  # (run, events, pack)
        self.waiters: list[_Waiter] = []

    def take(self, opened: RunOpened) -> int:
        """Add what ``opened``'s lists hold (and its runs row, if not in the file yet); the
        bytes it adds."""
        if not opened.written:
            self.opened.append(opened)
        events = found = None
        if opened.log:
            items = _take(opened.log)  # class, t, arguments, class...
            events = eventlog.encode(items)
            if len(items) >= 4 and items[-4] is ev.RunFinished:  # on disk before
                _, t, status, error = items[-4:]  # subscribers hear of it
                ended = Status(opened.run_id, status, opened.row[6] + t, error)
                self.statuses.setdefault(opened.run_id, ended)
        if opened.kept:
            found = pack(_take(opened.kept), opened.keys, opened.controlled)
        if events is None and found is None:
            return 0
        self.records.append((opened.run_id, events, found))
        return len(events or b"") + (len(found.data) + len(found.tasks) if found else 0)

    def single(self) -> bool:
        """Whether the batch is one statement: one run's records, of plain results."""
        if self.opened or self.statuses or len(self.records) != 1:
            return False
        found = self.records[0][2]
        return found is None or not (found.files or found.cache_entries)

    def runs(self) -> set[str]:
        return {*(r[0] for r in self.records), *(o.run_id for o in self.opened), *self.statuses}


class Writer:
    """Writes a store's file: runs from their own loops (:meth:`write`), the rest from one
    background thread.

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
        self._lock = threading.Lock()  # held while the thread or a loop writes
        self._open: dict[str, RunOpened] = {}  # runs going on (their lists)
        self._run_errors: dict[str, StoreError] = {}  # runs a batch could not record
        self._error: StoreError | None = None  # for the next flush
        self._locked_since: float | None = None
        self._counts: dict[str, int] = {}  # flow -> its runs in the file (for keep_runs)
        self._con: sqlite3.Connection | None = None  # the thread's
        self._direct: sqlite3.Connection | None = None  # the loops' (under _lock)
        self._unchecked = 0  # bytes the loops wrote since the last checkpoint
        self._thread = threading.Thread(target=self._run, name=f"nbflow-store:{path}", daemon=True)
        self._thread.start()

    # -- a run's own loop --------------------------------------------------------------------

    def write(self, opened: RunOpened, status: Status | None = None) -> bool:
        """On a run's loop: write what its lists hold now (its ``runs`` row too, the first
        time; its end, given ``status``) in one transaction. A refusal (a full disk...) is
        noted for the run (:meth:`error_of`) and the next ``flush()``.

        False when it cannot now, and nothing was taken: the thread is writing (try again
        at the next tick), or another process holds the file's lock (then the run is the
        thread's from now on: it waits for the lock without blocking the loop).
        """
        if not opened.direct or not self._thread.is_alive():
            return False
        if status is None and opened.written and not opened.log and not opened.kept:
            opened.stamp = time.monotonic()  # nothing new
            return True
        if not self._lock.acquire(blocking=False):
            return False
        try:
            error = self._write_run(opened, status)
        finally:
            self._lock.release()
        if error is None:
            return True
        if isinstance(error, StoreLockedError):
            opened.direct = False  # the thread waits for the lock
            self._wake.set()
            return False
        opened.ended = status is not None  # (the thread forgets it)
        self._run_errors.setdefault(opened.run_id, error)
        self._error = self._error or error
        log.error("%s", error)
        return True

    def _write_run(self, opened: RunOpened, status: Status | None) -> StoreError | None:
        try:
            con = self._direct or self._connect_direct()
            con.execute("BEGIN IMMEDIATE")  # the file's lock, or "busy" at once
        except sqlite3.Error as raised:
            return store_error(raised, self.path, self.timeout)  # nothing taken yet
        batch = _Batch()
        try:
            written = batch.take(opened)
            if status is not None:
                batch.statuses[opened.run_id] = status
            self._statements(con, batch)
            con.execute("COMMIT")
        except Exception as raised:
            with contextlib.suppress(sqlite3.Error):  # (SQLite may have rolled back already)
                con.execute("ROLLBACK")
            if isinstance(raised, sqlite3.Error):
                found = store_error(raised, self.path, self.timeout)
                return StoreError(str(found)) if isinstance(found, StoreLockedError) else found
            log.exception("nbflow store %s: could not write a batch", self.path)
            return StoreError(f"store {self.path}: {describe(raised)}")  # a bug: said
        opened.stamp = time.monotonic()
        opened.ended = status is not None
        if not opened.written:
            opened.written = True
            if self.keep_runs is not None:
                self._queue.append(_Prune(opened.row[1]))  # at the thread's next look
        self._unchecked += written
        if self._unchecked > _CHECKPOINT_BYTES:
            self._unchecked = 0
            self._queue.append(_CHECKPOINT)
            self._wake.set()
        return None

    def error_of(self, run_id: str) -> StoreError | None:
        """What kept some of run ``run_id`` from being recorded (said once)."""
        failure = self._run_errors.pop(run_id, None)
        if failure is not None and failure is self._error:
            self._error = None  # told to the run that lost records: said once
        return failure

    def _connect_direct(self) -> sqlite3.Connection:
        con = connect(self.path, 0)  # a lock held elsewhere: "busy" at once, never a wait
        con.execute("PRAGMA synchronous = NORMAL")
        con.execute("PRAGMA wal_autocheckpoint = 0")  # the thread checkpoints
        self._direct = con
        return con

    # -- caller side -------------------------------------------------------------------------

    def wake(self) -> None:
        """Write what is queued now (a run has gone on for an interval, or someone waits)."""
        self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is written.

        Raises:
            StoreError: a batch could not be written since the last flush (SQLite's message),
                or the writer did not catch up within ``timeout`` (a lock held elsewhere).
        """
        if not self._thread.is_alive():
            error, self._error = self._error, None
            if error is not None:
                raise error
            return
        waiter = _Waiter()
        self._queue.append(waiter)
        self._wake.set()
        assert waiter.done is not None
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

    def finish(self, run_id: str, future: asyncio.Future[Any]) -> None:
        """Resolve ``future`` (on its loop) once everything of run ``run_id`` submitted so
        far is written: with None, or the :class:`StoreError` that kept some of it from
        being recorded."""
        loop = future.get_loop()

        def resolve(error: StoreError | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, error)

        self._queue.append(_Waiter(run_id, resolve))
        self._wake.set()

    @property
    def closed(self) -> bool:
        """Whether the thread has stopped (after :meth:`close`)."""
        return not self._thread.is_alive()

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is pending, stop the thread, close the connections."""
        if self._thread.is_alive():
            self._queue.append(_STOP)
            self._wake.set()
            self._thread.join(timeout)

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._con = connect(self.path, 0.1)  # short waits: a lock is retried, and said
            self._con.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as error:
            self._error = store_error(error, self.path, self.timeout)
        queue, wake = self._queue, self._wake
        while True:
            wake.wait(self.interval if self._open else _IDLE_POLL)
            wake.clear()  # before taking the queue: a submit after this wakes us again
            if (queue or self._open) and self._write(_take(queue)):
                break
        with self._lock:
            for con in (self._con, self._direct):
                if con is not None:
                    con.close()
            self._con = self._direct = None

    def _write(self, items: list[Any]) -> bool:
        """Write ``items`` (the shared queue's) and what the runs this thread writes hold,
        in one transaction; True when told to stop."""
        batch, stop, flows, checkpoint = _Batch(), False, [], False
        for item in items:
            kind = type(item)
            if kind is RunOpened:
                if not item.ended:
                    self._open[item.run_id] = item
            elif kind is Status:
                batch.statuses[item.run_id] = item
                if item.ended is not None:
                    batch.ended.append(item.run_id)
            elif kind is _Waiter:
                batch.waiters.append(item)
            elif kind is _Prune:
                flows.append(item.flow)
            elif item is _CHECKPOINT:
                checkpoint = True
            elif item is _STOP:
                stop = True
            # else: an event a store that sees every record passed on (its run's log has it)
        del items
        # A run its loop writes, only when someone waits for everything so far, or when the
        # loop has not written it for a while (a task blocks the loop; then the loop gets its
        # turn again first).
        now = time.monotonic()
        stale = now - _STALE * self.interval
        with self._lock:
            try:
                for run_id, opened in list(self._open.items()):
                    if opened.ended:
                        del self._open[run_id]
                    elif not opened.direct or batch.waiters or opened.stamp < stale:
                        batch.take(opened)
                        opened.stamp = now
                error = self._commit(batch) if batch.runs() else None
            except Exception as raised:  # a bug: still never a silent loss
                log.exception("nbflow store %s: could not write a batch", self.path)
                error = self._failed(batch, StoreError(f"store {self.path}: {describe(raised)}"))
            if error is None:
                for opened in batch.opened:
                    opened.written = True
                    flows.append(opened.row[1])
            for run_id in batch.ended:
                self._open.pop(run_id, None)
            if self.keep_runs is not None:
                for flow in flows:
                    self._prune(flow)
            if checkpoint and self._con is not None:
                # Under the lock: no loop writes meanwhile, so the next write finds the WAL
                # all copied and starts it over (else it grows while runs follow each other).
                with contextlib.suppress(sqlite3.Error):  # busy readers: the next one will do
                    self._con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        for waiter in batch.waiters:
            if waiter.run_id is None:
                failure, self._error = self._error, None
            else:
                failure = self.error_of(waiter.run_id)
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
            for relative in auto_prune(self._con, flow, self.keep_runs, self._counts):
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
                    [(s.digest, s.file, s.codec, s.size) for s in found.files],
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
