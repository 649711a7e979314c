"""An attempt's lines, capped: the buffer behind per-task logs, and the cap's settings.

:class:`AttemptLog` takes what one attempt writes (text to a stream, whole lines, progress),
keeps its first ``head`` lines and its last ``tail`` lines and counts those in between
(:class:`LogCapture` holds the cap), and hands out what is new. It knows nothing of runs,
events or threads: the kernel's :class:`~nbflow.logs.RunOutput` and a Dask worker's
:class:`~nbflow.remote_logs.WorkerOutput` each hold one per attempt, under a lock, and turn
what it hands out into events or messages.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A line of an attempt's log: ``(run-clock seconds, level, message, logger or None)``.
Line = tuple[float, str, str, "str | None"]

#: The level of the line that counts the lines an attempt's log left out.
NBFLOW_LEVEL = "nbflow"
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
