"""Per-task logs and progress: what each attempt prints, logs and reports, as events.

Every run has a :class:`RunOutput` (``engine.output``), made by :func:`observing` around the
run. Inside a task, three things reach it, keyed by the running attempt (the tuple in
:data:`nbflow.context.current`, which follows asyncio tasks and is copied into a sync task's
thread, so concurrent tasks never mix):

- ``print`` and writes to ``sys.stdout``/``sys.stderr``, and records of the ``logging``
  module, through the hooks of :mod:`nbflow.capture` (installed while a run captures);
- ``nf.context().log``, a logger of the task's own (:func:`task_logger`);
- ``nf.track(...)`` and ``ctx.progress(done, total)`` (:mod:`nbflow.progress`).

An attempt's output is buffered from its first write (an attempt that writes nothing costs
nothing but one test as it ends) and goes out as :class:`~nbflow.events.TaskLog` and
:class:`~nbflow.events.TaskProgress` events: every ``interval`` seconds while anything is
new, on the event loop, and when the attempt ends. The events feed the run's state
(``run.logs()``, the dashboard), the store and a replay, like every other event.

The cap (:class:`LogCapture`): an attempt keeps its first ``head`` lines, as they come, and
its last ``tail`` lines, sent when it ends with a line that counts the ones left out in
between; a line longer than ``max_chars`` is cut. So a task that prints a million lines
costs the store ``head + tail`` lines, and the event loop one event per ``interval`` (the
lines are counted in the task's own thread). While lines are being left out, the live view
gets the count and the newest line about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import capture
from . import events as ev

if TYPE_CHECKING:
    import pandas as pd

    from .state import RunState

log = logging.getLogger("nbflow.logs")

#: A line of an attempt's log: ``(run-clock seconds, level, message, logger or None)``.
Line = tuple[float, str, str, "str | None"]

#: The level of the line that counts the lines an attempt's log left out.
NBFLOW_LEVEL = "nbflow"
#: The columns of ``run.logs()``.
LOG_COLUMNS = ["task", "attempt", "element", "time", "level", "message", "logger"]
#: While lines are left out, the live view hears of their count at most this often (s).
DROPPED_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class LogCapture:
    """How a flow's tasks' output is captured: ``nbflow.Flow(..., logs=LogCapture(...))``.

    ``logs=True`` (the default) means ``LogCapture()``; ``logs=False`` captures nothing
    (prints and logging go where they would without nbflow; ``nf.track`` and
    ``ctx.progress`` still work).

    Args:
        head: lines of an attempt kept from its start (sent as they come).
        tail: lines kept from its end (sent when it ends); those in between are counted.
        max_chars: a longer line is cut to this many characters (and says so).
        echo: also write prints (and the warnings Python would show by itself) where they
            would go without nbflow: the cell, the terminal. None (default): echo unless
            the run is shown in a dashboard (``show=True``), which has them under each
            task's row.
        level: the level of ``nf.context().log``; the user's ``logging`` configuration
            decides for every other logger.
        interval: seconds between live updates of a running attempt's log and progress.

    Raises:
        ValueError: a negative ``head`` or ``tail``, ``max_chars`` below 80, or an
            ``interval`` that is not a positive number.
    """

    head: int = 500
    tail: int = 500
    max_chars: int = 4000
    echo: bool | None = None
    level: int = logging.INFO
    interval: float = 0.25

    def __post_init__(self) -> None:
        for name in ("head", "tail"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"LogCapture: {name} must be an int >= 0, not {value!r}")
        if type(self.max_chars) is not int or self.max_chars < 80:
            raise ValueError(f"LogCapture: max_chars must be an int >= 80, not {self.max_chars!r}")
        if not (isinstance(self.interval, int | float) and self.interval > 0):
            raise ValueError(
                f"LogCapture: interval must be positive seconds, not {self.interval!r}"
            )


_DEFAULT = LogCapture()


def resolve(setting: Any) -> LogCapture | None:
    """A flow's ``logs=`` as a :class:`LogCapture`, or None for no capture.

    Raises:
        TypeError: ``setting`` is not a bool, None or a ``LogCapture``.
    """
    if setting is True:
        return _DEFAULT
    if setting is False or setting is None:
        return None
    if isinstance(setting, LogCapture):
        return setting
    raise TypeError(
        f"logs must be True, False or an nbflow.LogCapture, not {type(setting).__name__}: "
        f"{setting!r}"
    )


def clip(text: str, max_chars: int, cut: int = 0) -> str:
    """``text``, cut to ``max_chars`` characters with a note of how many more there were
    (``cut``: how many were left out of it already)."""
    if len(text) <= max_chars and not cut:
        return text
    return f"{text[:max_chars]}… ({len(text) - max_chars + cut:,} more characters)"


class AttemptLog:
    """The output of one attempt so far: lines not sent yet, the tail window, progress.

    Not thread-safe by itself: its :class:`RunOutput` holds a lock around lines (progress is
    one attribute, set and read whole).
    """

    __slots__ = (
        "count", "cut", "dropped", "latest", "news", "partial", "pending", "progress",
        "reported", "reported_at", "sent", "tail",
    )  # fmt: skip

    def __init__(self) -> None:
        self.pending: list[Line] = []
        self.tail: deque[Line] | None = None
        self.partial: dict[str, str] = {}
        #: Characters left out of an unfinished line, by stream (it was too long).
        self.cut: dict[str, int] = {}
        self.count = 0
        self.dropped = 0
        self.reported = 0
        self.reported_at = 0.0
        self.latest: str | None = None
        #: The latest progress reported, and the one last sent.
        self.progress: tuple[float, float | None] | None = None
        self.sent: tuple[float, float | None] | None = None
        self.news = False

    def add(
        self, t: float, level: str, message: str, logger: str | None, cap: LogCapture, cut: int = 0
    ) -> None:
        """Keep one line (or count it, between the head and the tail); ``cut``: characters
        left out of it already."""
        self.count += 1
        self.news = True
        line = (t, level, clip(message, cap.max_chars, cut), logger)
        if self.count <= cap.head:
            self.pending.append(line)
            return
        tail = self.tail
        if tail is None:
            tail = self.tail = deque(maxlen=cap.tail)
        if len(tail) == cap.tail:  # the oldest line of the tail falls out (with tail=0: this)
            self.dropped += 1
        tail.append(line)
        self.latest = line[2]

    def write(self, stream: str, text: str, now: Callable[[], float], cap: LogCapture) -> None:
        """Take ``text`` written to ``stream``: complete lines are kept (at ``now()``), the
        rest waits for its newline.

        A carriage return without a newline (a progress bar redrawing itself) keeps only
        what follows it, as a terminal shows it.
        """
        partial = self.partial.get(stream)
        if partial:
            text = partial + text
        if "\n" not in text:
            if len(text) <= cap.max_chars and "\r" not in text:  # most writes of a print
                self.partial[stream] = text
                return
            if "\r" in text:
                text = text.rpartition("\r")[2]
                self.cut.pop(stream, None)
            if len(text) > cap.max_chars:  # a line too long already: keep its start only
                self.cut[stream] = self.cut.get(stream, 0) + len(text) - cap.max_chars
                text = text[: cap.max_chars]
            self.partial[stream] = text
            return
        *lines, rest = text.split("\n")
        t = now()
        for line in lines:
            if "\r" in line:
                line = line.rstrip("\r").rpartition("\r")[2]
            self.add(t, stream, line, None, cap, self.cut.pop(stream, 0) if self.cut else 0)
        if "\r" in rest:
            rest = rest.rpartition("\r")[2]
        self.partial[stream] = rest

    def take(self, now: float) -> tuple[list[Line], int, str | None] | None:
        """What is new for a live update: ``(lines, dropped, latest)``, or None. The count
        of lines left out (and the newest of them) is sent at most every
        :data:`DROPPED_EVERY` seconds."""
        self.news = False
        lines, self.pending = self.pending, []
        latest = None
        if self.dropped != self.reported and now - self.reported_at >= DROPPED_EVERY:
            self.reported, self.reported_at, latest = self.dropped, now, self.latest
        if not lines and latest is None:
            return None
        return lines, self.reported, latest

    def finish(self, t: float, cap: LogCapture) -> tuple[list[Line], int]:
        """Everything not sent yet, as the attempt ends: unfinished lines, then the count of
        lines left out, then the tail."""
        for stream, rest in self.partial.items():
            if rest:
                self.add(t, stream, rest, None, cap, self.cut.get(stream, 0))
        self.partial.clear()
        self.cut.clear()
        lines, self.pending = self.pending, []
        if self.dropped:
            first = self.tail[0][0] if self.tail else t
            lines.append(
                (first, NBFLOW_LEVEL, f"… {self.dropped:,} lines not kept (an attempt keeps its "
                 f"first {cap.head:,} and its last {cap.tail:,} lines: see nbflow.LogCapture)",
                 None)
            )  # fmt: skip
        if self.tail:
            lines.extend(self.tail)
            self.tail.clear()
        return lines, self.dropped


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
        with self._lock:
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


def record_text(record: logging.LogRecord) -> str:
    """A record's text: its message, then its traceback and stack, if any."""
    try:
        text = record.getMessage()
    except Exception:  # bad %-arguments: show what there is
        text = f"{record.msg!r} % {record.args!r}"
    if record.exc_info and not record.exc_text:
        record.exc_text = _FORMATTER.formatException(record.exc_info)
    if record.exc_text:
        text = f"{text}\n{record.exc_text}"
    if record.stack_info:
        text = f"{text}\n{record.stack_info}"
    return text


_FORMATTER = logging.Formatter()


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


# -- nf.context().log -----------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def task_logger(task: str, level: int = logging.INFO) -> logging.Logger:
    """``nf.context().log`` of ``task``: a logger named ``nbflow.task.<task>``.

    It is not registered with ``logging`` (tasks come and go with notebook cells); its
    parent is the registered ``nbflow.task`` logger, so the user's configuration of
    ``nbflow.task``, ``nbflow`` and the root logger applies as to any logger. Its records go
    to the attempt's log first, whatever that configuration says, at ``level`` and above.
    """
    logger = logging.Logger(f"nbflow.task.{task}", level)
    logger.parent = logging.getLogger("nbflow.task")
    logger.addHandler(_TASK_HANDLER)
    return logger


class _TaskHandler(logging.Handler):
    """``ctx.log``'s own handler: its records go to the running attempt's log."""

    def handle(self, record: logging.LogRecord) -> bool:
        capture.take(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        capture.take(record)


_TASK_HANDLER = _TaskHandler()


# -- run.logs() ------------------------------------------------------------------------------


def logs_frame(state: RunState, task: str | None = None) -> pd.DataFrame:
    """The lines of ``state`` (of ``task`` only, if given) as ``run.logs()`` returns them.

    Raises:
        KeyError: ``task`` is not a task of the run.
    """
    import pandas as pd

    if task is not None and task not in state.tasks:
        raise KeyError(f"{task!r} is not a task of run {state.run_id[:8]} (flow {state.flow!r})")
    wall = state.wall_start
    rows = [
        (e.task, e.attempt, e.element, wall + t, level, message, logger)
        for name, batches in list(state.logs.items())
        if task is None or name == task
        for e in batches
        for t, level, message, logger in e.lines
    ]
    frame = pd.DataFrame(rows, columns=LOG_COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    frame["element"] = frame["element"].astype("Int64")
    frame["logger"] = frame["logger"].astype(object).where(frame["logger"].notna(), None)
    if task is None and len(frame):
        frame = frame.sort_values("time", kind="stable", ignore_index=True)
    return frame
