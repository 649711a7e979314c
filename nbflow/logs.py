"""Per-task logs and progress: what each attempt prints, logs and reports, as events.

Every run has a :class:`RunOutput` (``engine.output``), made by :func:`observing` around the
run. Inside a task, three things reach it, keyed by the running attempt (the tuple in
:data:`nbflow.context.current`, which follows asyncio tasks and is copied into a sync task's
thread, so concurrent tasks never mix):

- ``print`` and writes to ``sys.stdout``/``sys.stderr``, and records of the ``logging``
  module, through the hooks of :mod:`nbflow.capture` (installed while a run captures);
- ``nf.context().log``, a logger of the task's own (:func:`nbflow.capture.task_logger`);
- ``nf.track(...)`` and ``ctx.progress(done, total)`` (:mod:`nbflow.progress`).

An attempt's output is buffered from its first write (an attempt that writes nothing costs
nothing but one test as it ends) and goes out as :class:`~nbflow.events.TaskLog` and
:class:`~nbflow.events.TaskProgress` events: every ``interval`` seconds while anything is
new, on the event loop, and when the attempt ends. The events feed the run's state
(``run.logs()``, the dashboard), the store and a replay, like every other event.

The cap (:class:`~nbflow.lines.LogCapture`, applied by :class:`~nbflow.lines.AttemptLog`):
an attempt keeps its first ``head`` lines, as they come, and its last ``tail`` lines, sent
when it ends with a line that counts the ones left out in between; a line longer than
``max_chars`` is cut. So a task that prints a million lines
costs the store ``head + tail`` lines, and the event loop one event per ``interval`` (the
lines are counted in the task's own thread). While lines are being left out, the live view
gets the count and the newest line about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from . import capture
from . import events as ev
from .lines import _DEFAULT, AttemptLog, LogCapture, record_text, resolve

__all__ = ["AttemptLog", "LogCapture", "RunOutput", "observing"]

log = logging.getLogger("nbflow.logs")


class RunOutput:
    """The logs and progress of one run's attempts, until they become events (see the
    module). ``engine.output`` while the run goes on; thread-safe."""

    def __init__(
        self,
        engine: Any,
        cap: LogCapture | None,
        echo: bool,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.engine = engine
        #: How output is captured; None: only progress is (``logs=False``).
        self.cap = cap
        self.echo = echo
        self.loop = loop
        self.interval = (cap or _DEFAULT).interval
        #: The attempts that wrote or reported something and have not ended, by key (the
        #: attempt's tuple in nbflow.context.current).
        self.open: dict[tuple[Any, ...], AttemptLog] = {}
        self.closed = False
        self.errors = 0
        self._lock = threading.Lock()
        self._thread = threading.get_ident()
        self._armed = False

    # -- what tasks write (any thread) --------------------------------------------------------

    def _slot(self, key: tuple[Any, ...]) -> AttemptLog | None:
        """The attempt's buffer, made on its first use; None once the attempt is over (a
        sync task's thread that outlived its timeout writes where it would without us)."""
        found = self.open.get(key)
        if found is not None or self.closed:
            return found
        engine, task, attempt, element = key[0], key[1], key[2], key[3]
        row = engine.state.open_rows.get(task if element is None else (task, element))
        if row is None or row.attempt != attempt:
            return None
        with self._lock:
            return self.open.setdefault(key, AttemptLog())

    def write(self, key: tuple[Any, ...], stream: str, text: str) -> bool:
        """Take ``text`` written to ``stream`` by the attempt ``key``; True when it must not
        be written on (taken, and not echoed)."""
        cap = self.cap
        if cap is None:
            return False
        slot = self.open.get(key)
        if slot is None:
            if type(text) is not str:
                return False
            slot = self._slot(key)
            if slot is None:
                return False
        with self._lock:  # threads the task started with its context write here too
            if "\n" not in text and "\r" not in text:
                # Most writes of a print (its words, the spaces between) complete no line:
                # they only grow the unfinished one.
                partial = slot.partial.get(stream)
                joined = partial + text if partial else text
                if len(joined) <= cap.max_chars:
                    slot.partial[stream] = joined
                    return not self.echo
            slot.write(stream, text, self._now, cap)
        if not self._armed:
            self._arm()
        return not self.echo

    def record(self, key: tuple[Any, ...], record: logging.LogRecord) -> bool:
        """Take a ``logging`` record of the attempt ``key``; whether it was taken."""
        cap = self.cap
        if cap is None:
            return False
        slot = self._slot(key)
        if slot is None:
            return False
        message = record_text(record)
        with self._lock:
            slot.add(self._now(), record.levelname, message, record.name, cap)
        self._arm()
        if self.echo:
            capture.last_resort(record)
        return True

    def progress(self, key: tuple[Any, ...], done: float, total: float | None) -> None:
        """The attempt ``key`` has done ``done`` of ``total`` (None: unknown)."""
        slot = self._slot(key)
        if slot is None:
            return
        slot.progress = (done, total)
        slot.news = True
        if not self._armed:
            self._arm()

    def remote(self, key: tuple[Any, ...], lines: list[Any], dropped: int, latest: Any) -> None:
        """Lines an attempt wrote elsewhere (a Dask worker), already capped there; from any
        thread. Their times are wall-clock seconds."""
        if threading.get_ident() != self._thread:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
                self.loop.call_soon_threadsafe(self.remote, key, lines, dropped, latest)
            return
        try:
            start = self.engine.state.wall_start
            rows = tuple((float(t) - start, str(lv), str(m), lg) for t, lv, m, lg in lines)
            self._emit_log(key, rows, int(dropped), latest)
        except Exception:
            self._failed()

    def _now(self) -> float:
        engine = self.engine
        return engine._clock() - engine._t0

    # -- what goes out (the loop) ------------------------------------------------------------

    def _arm(self) -> None:
        """Have :meth:`flush` run in ``interval`` seconds (once), from any thread."""
        if self._armed or self.closed:
            return
        self._armed = True
        if threading.get_ident() == self._thread:
            self.loop.call_later(self.interval, self.flush)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the run is over
                self.loop.call_soon_threadsafe(self.loop.call_later, self.interval, self.flush)

    def flush(self) -> None:
        """Send what is new of every open attempt (on the loop; never raises)."""
        # Disarm first: what is written from now on arms the next flush.
        self._armed = False
        try:
            if self.closed or self.engine.state.finished_t is not None:
                return
            now = time.monotonic()
            with self._lock:
                news = [(k, s, s.take(now)) for k, s in self.open.items() if s.news]
            for key, slot, lines in news:
                progress = slot.progress
                if progress is not None and progress != slot.sent:
                    slot.sent = progress
                    self._emit_progress(key, progress)
                if lines is not None:
                    self._emit_log(key, tuple(lines[0]), lines[1], lines[2])
        except Exception:
            self._failed()

    def end(self, key: tuple[Any, ...]) -> None:
        """The attempt ``key`` ended (on the loop): send its last progress and the rest of
        its log (never raises)."""
        try:
            with self._lock:
                slot = self.open.pop(key, None)
                if slot is None:
                    return
                lines, dropped = slot.finish(self._now(), self.cap) if self.cap else ([], 0)
            if slot.progress is not None and slot.progress != slot.sent:
                self._emit_progress(key, slot.progress)
            if lines or dropped != slot.reported:
                self._emit_log(key, tuple(lines), dropped, None)
        except Exception:
            self._failed()

    def close(self) -> None:
        """The run is over: nothing more is taken (late writes go where they would)."""
        self.closed = True
        with self._lock:
            self.open.clear()

    def _emit_log(self, key: tuple[Any, ...], lines: Any, dropped: int, latest: Any) -> None:
        if self.engine.state.finished_t is None:
            self.engine._emit(ev.TaskLog, key[1], key[2], key[3], lines, dropped, latest)

    def _emit_progress(self, key: tuple[Any, ...], progress: tuple[float, float | None]) -> None:
        self.engine._emit(ev.TaskProgress, key[1], key[2], key[3], *progress)

    def _failed(self) -> None:
        self.errors += 1
        log.warning("nbflow could not send a task's log; the run goes on", exc_info=True)


@contextlib.contextmanager
def observing(engine: Any, setting: Any, *, shown: bool) -> Iterator[RunOutput]:
    """Give ``engine`` its :class:`RunOutput` for the block (the run), capturing output as
    ``setting`` (a flow's ``logs=``) says; ``shown``: a dashboard shows the run. Must be
    entered on the run's event loop.

    Raises:
        TypeError: a bad ``setting`` (see :func:`resolve`).
    """
    cap = resolve(setting)
    echo = (not shown) if cap is None or cap.echo is None else cap.echo
    output = RunOutput(engine, cap, echo, asyncio.get_running_loop())
    engine.output = output
    if cap is not None:
        capture.activate()
    try:
        yield output
    finally:
        output.close()
        engine.output = None  # no cycle: the engine is freed when the run is
        if cap is not None:
            capture.deactivate()
