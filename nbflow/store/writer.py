"""The single batched writer of a store: a queue, one thread, one transaction per batch.

The event loop's whole cost is ``submit(item)``, which is ``deque.append`` (C, atomic); a
run's queued/started/succeeded events go, just as cheaply, to the run's own queues, which the
projector reads (see :class:`~nbflow.store.recorder.Recorder`). The writer thread sleeps
until woken: a run starts (:meth:`Writer.wake`: it then writes every ``interval`` seconds,
the first time one interval later) or a caller waits (``flush()``, ``settle()``). It takes
everything queued at once (in C) and hands it to the :class:`~nbflow.store.rows.Projector`,
which turns the lot into SQL statements (a few per batch for the hot events: see
:mod:`nbflow.store.rows`) written in one transaction. ``settle()`` (a run's end) is released
once the batch is projected, before its deferred statements are worked out and committed;
reads wait for that commit (:meth:`Writer.wait_written`). Idle, the writer looks at the
queue once a second only.

One writer exists per store file per process (:func:`shared_writer`), so two flows of one
notebook never contend for the file; two processes contend only at commit time, which
SQLite's ``busy_timeout`` serializes. A writer made with ``threaded=False`` has no thread:
``flush()`` drains the queue in the caller's thread (:class:`~nbflow.store.memory.MemoryStore`).

A batch that fails because the database is locked is kept and retried until the lock goes;
``flush()`` meanwhile times out with a :class:`StoreLockedError`. Any other failure drops the
batch (its rows are lost, the run goes on) and is reported by the next ``flush()``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import repeat, starmap
from typing import Any, Protocol

from ..errors import StoreError
from .rows import Batch, Projector

log = logging.getLogger("nbflow.store")


class StoreLockedError(StoreError):
    """The database stayed locked by another writer for longer than the store's timeout."""


class Sink(Protocol):
    """Where a writer's batches go (an SQLite connection, in-memory tables)."""

    def write(self, batch: Batch) -> None:
        """Write ``batch`` atomically; raise :class:`StoreError` (locked: retryable)."""

    def known_versions(self) -> set[tuple[str, str]]:
        """``(flow, flow_version)`` pairs already recorded."""

    def close(self) -> None:
        """Release the sink."""


class _Flush:
    """A caller waiting until the items queued before it are written."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: StoreError | None = None


class _Settle(_Flush):
    """A caller waiting until the items queued before it are checked (see :meth:`Writer.settle`)."""

    __slots__ = ()


_STOP = object()
_IDLE_POLL = 1.0  # seconds between looks at the queue while no run is going on
_YIELD = 0.001  # seconds the writer sleeps after releasing a run's end (see _write_items)


class Writer:
    """Applies submitted items to a :class:`Sink`, in batches, in one background thread.

    Args:
        open_sink: makes the sink, called in the writer thread (SQLite connections belong
            to the thread that made them).
        location: the store's file (or name), for messages.
        max_result_bytes: larger pickled results are not stored (see the projector).
        interval: seconds to gather items before a commit.
        max_batch: at most this many items per transaction.
        threaded: False: no thread; :meth:`flush` writes in the caller's thread (MemoryStore).
    """

    def __init__(
        self,
        open_sink: Callable[[], Sink],
        *,
        location: str,
        max_result_bytes: int,
        interval: float = 0.05,
        max_batch: int = 20000,
        threaded: bool = True,
    ) -> None:
        self.location = location
        self.interval = interval
        self.max_batch = max_batch
        self.projector = Projector(max_result_bytes)
        self._error: StoreError | None = None
        self._locked_since: float | None = None  # monotonic time the current lock wait began
        self._open_sink = open_sink
        self._sink: Sink | None = None
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._starting = False  # a run has started: gather its first interval of records
        self._urgent = False  # a caller waits (flush, settle, close): write at once
        # Clear while a batch whose waiters were released before its commit (settle) is
        # being written: reads wait for it (wait_written), so a finished run is visible.
        self._written = threading.Event()
        self._written.set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.submit: Callable[[Any], None] = self._queue.append  # the loop's only cost per event
        if threaded:
            self._thread = threading.Thread(
                target=self._run, name=f"nbflow-store-writer:{location}", daemon=True
            )
            self._thread.start()
        else:
            self._sink = open_sink()
            self.projector.known_versions |= self._sink.known_versions()

    # -- caller side -------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is written.

        Raises:
            StoreError: a batch could not be written since the last flush, or the writer did
                not catch up within ``timeout`` seconds (e.g. the file is locked).
        """
        self._wait(_Flush(), timeout)

    def settle(self, timeout: float | None = None) -> None:
        """Block until everything submitted so far is checked, not necessarily written.

        Checked means projected: every result pickled (or found not to pickle, with its
        warning kept for :meth:`take_warnings`) and every row made. The commit follows at
        once, in the writer thread, while the caller goes on: a run ends without waiting
        for its last transaction (see :class:`~nbflow.store.recorder.Recorder`). Raises like
        :meth:`flush`, for writes that failed before.
        """
        self._wait(_Settle(), timeout)

    def _wait(self, marker: _Flush, timeout: float | None) -> None:
        if self._thread is None:
            with self._lock:
                if self._queue:
                    self._drain()
            self._raise_pending()
            return
        if not self._thread.is_alive():
            self._raise_pending()
            return
        self._queue.append(marker)
        self._urgent = True
        self._wake.set()
        if not marker.done.wait(timeout):
            since = self._locked_since
            if since is not None:
                raise StoreLockedError(
                    f"store {self.location} is locked by another writer: this process's "
                    f"records have waited {time.monotonic() - since:.1f} s to be written "
                    "(another process or connection holds a write transaction on it). Nothing "
                    "is lost yet: the records wait in memory and are written when the lock is "
                    "released."
                )
            raise StoreError(
                f"store {self.location}: the writer did not catch up within {timeout:g} s "
                "(very large results, or a slow disk); the records are still being written"
            )
        if marker.error is not None:
            raise marker.error

    def wait_written(self, timeout: float | None = None) -> None:
        """Block while a batch that :meth:`settle` let go of before its commit is written
        (a few milliseconds): a read after a run sees the whole run. Never raises."""
        self._written.wait(timeout)

    def wake(self) -> None:
        """A run starts: the writer writes every ``interval`` seconds until no run is going
        on, the first time one interval from now (a short run is then written once, at its
        end, instead of its first part contending with it for the GIL)."""
        self._starting = True
        self._wake.set()

    def take_warnings(self, run_id: str) -> list[str]:
        """Messages the writer kept for ``run_id`` (call after :meth:`flush`)."""
        return self.projector.warnings.pop(run_id, [])

    def known(self, flow: str, version: str) -> bool:
        """Whether ``(flow, version)`` is recorded (or about to be)."""
        return (flow, version) in self.projector.known_versions

    @property
    def closed(self) -> bool:
        """Whether the thread has stopped (after :meth:`close`): submits go nowhere."""
        return self._thread is not None and not self._thread.is_alive()

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is pending, stop the thread and close the sink."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.append(_STOP)
            self._urgent = True
            self._wake.set()
            thread.join(timeout)
        elif thread is None and self._sink is not None:
            try:
                self.flush()
            except StoreError as error:
                log.warning("%s", error)
            self._sink.close()
            self._sink = None

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    # -- writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._sink = self._open_sink()
            self.projector.known_versions |= self._sink.known_versions()
        except StoreError as error:
            self._error = error
        except Exception as error:  # never let the thread die with items waiting
            self._error = StoreError(f"store {self.location}: cannot open: {error}")
        pending, wake, projector = self._queue, self._wake, self.projector
        while True:
            # While runs go on (or records wait): a batch every interval, or when a caller
            # waits; idle: a look once a second (a run starting wakes the writer at once).
            wake.wait(self.interval if projector.active or pending else _IDLE_POLL)
            wake.clear()  # before taking the queue: a flush after this wakes us again
            if self._starting and not self._urgent:
                self._starting = False  # gather the run's first interval, then write
                continue
            self._starting = self._urgent = False
            # A run going on may have events in its own queues only (see Recorder.routes).
            if (pending or projector.active) and self._drain():
                break
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def _drain(self) -> bool:
        """Write everything queued (and what the runs' own queues hold); True when told to
        stop."""
        pending = self._queue
        items = list(starmap(pending.popleft, repeat((), len(pending))))  # all at once, in C
        stop = False
        while True:
            if len(items) <= self.max_batch:
                return self._write_items(items) or stop
            chunk = items[: self.max_batch]
            del items[: self.max_batch]
            stop = self._write_items(chunk) or stop

    def _write_items(self, items: list[Any]) -> bool:
        hot = self.projector.hot.get
        batch, stop = Batch(), False
        markers: list[_Flush] = []
        settled: list[_Flush] = []
        for item in items:
            # The hot path: an event of a hot class only goes to its list (projected in bulk).
            found = hot(type(item))
            if found is not None:
                found.append(item)
            elif item is _STOP:
                stop = True
            elif type(item) is _Flush:
                markers.append(item)
            elif type(item) is _Settle:
                settled.append(item)
            else:
                self._project(item, batch)
        # The projector and the batch now hold what they need: let the items go (a run's
        # context, with its plan), so that they are not kept during the commit below, which
        # waits for the GIL at each statement and can last long after the run (its last
        # reference would then go in this thread, in the middle of whatever runs next).
        items.clear()
        item = None
        self._end(batch)
        if settled:  # checked: their callers go on while the rest is done and committed
            self._written.clear()
            self._release(settled)
            # Let the released callers have the GIL first: the JSON encoding below holds it
            # for milliseconds at a time, which would make them wait after all.
            time.sleep(_YIELD)
        try:
            self._resolve(batch)
            self._commit(batch, markers)
        finally:
            self._written.set()
        return stop

    def _project(self, item: Any, batch: Batch) -> None:
        try:
            self.projector.apply(item, batch)
        except Exception:
            log.exception("nbflow store %s: could not record %r", self.location, item)

    def _end(self, batch: Batch) -> None:
        try:
            self.projector.end(batch)
        except Exception:
            log.exception("nbflow store %s: could not record a batch of events", self.location)
            for events in self.projector.hot.values():
                events.clear()

    def _resolve(self, batch: Batch) -> None:
        try:
            batch.resolve()
        except Exception as error:  # a bug: the batch cannot be written whole, so not at all
            self._error = StoreError(f"store {self.location}: could not record a batch: {error}")
            log.exception("nbflow store %s: could not record a batch of events", self.location)
            batch.ops.clear()
            batch.blobs.clear()

    def _commit(self, batch: Batch, markers: list[_Flush]) -> None:
        if self._sink is None:  # the store could not be opened: nothing can be written
            if self._error is None:
                self._error = StoreError(f"store {self.location} is closed")
        elif len(batch):
            self._write(self._sink, batch)
        if markers:
            self._release(markers)

    def _release(self, markers: Sequence[_Flush]) -> None:
        """Wake the callers of ``markers`` with the error kept since the last one (if any)."""
        error, self._error = self._error, None
        for marker in markers:
            marker.error = error
            marker.done.set()

    def _write(self, sink: Sink, batch: Batch) -> None:
        delay = 0.01
        while True:
            try:
                sink.write(batch)
            except StoreLockedError as error:  # kept and retried until the lock goes
                self._error = error
                if self._locked_since is None:
                    self._locked_since = time.monotonic()
                time.sleep(delay)
                delay = min(delay * 2, 0.25)
                continue
            except StoreError as error:
                self._error = error
                log.error("%s; %d records were dropped", error, len(batch))
            except Exception as error:
                self._error = StoreError(f"store {self.location}: {error}")
                log.exception("nbflow store %s: %d records dropped", self.location, len(batch))
            else:
                if isinstance(self._error, StoreLockedError):
                    self._error = None  # written after all
            self._locked_since = None
            return


# -- one writer per file per process ---------------------------------------------------------

_writers: dict[str, Writer] = {}
_registry_lock = threading.Lock()


def shared_writer(location: str, make: Callable[[], Writer]) -> Writer:
    """The process's writer for ``location``, made by ``make()`` the first time."""
    with _registry_lock:
        writer = _writers.get(location)
        if writer is None or (writer._thread is not None and not writer._thread.is_alive()):
            writer = _writers[location] = make()
        return writer


def close_writer(location: str, timeout: float | None = 10.0) -> None:
    """Flush and stop the writer of ``location`` (a later store handle makes a new one)."""
    with _registry_lock:
        writer = _writers.pop(location, None)
    if writer is not None:
        writer.close(timeout)


def close_all(timeout: float | None = 10.0) -> None:
    """Flush and stop every writer of this process (also run at interpreter exit)."""
    for location in list(_writers):
        close_writer(location, timeout)


def _forget_after_fork() -> None:
    # A forked child has the registry but not the threads; it must not touch the parent's
    # connections either (closing them could checkpoint the parent's WAL), so keep them alive.
    _orphans.extend(_writers.values())
    _writers.clear()


_orphans: list[Writer] = []
atexit.register(close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
