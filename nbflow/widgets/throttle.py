"""Throttled redraws: a timer that flushes at most once per interval, only when something changed.

The dashboard does no work per event. A :class:`Ticker` wakes up every ``interval`` seconds on
the event loop and compares a cheap version number (the run state's last event number) with
the one it last drew: any number of events between two ticks cost one flush, a tick with
nothing new costs one comparison, and a run shorter than the first delay is drawn only at its
end (by the owner, not by the ticker).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nbflow.widgets")

#: ``version()`` never returns this: a ticker made with ``drawn=False`` flushes on its
#: first tick whatever the version.
_UNDRAWN = object()


class Ticker:
    """Calls ``flush()`` on ``loop`` at most once per ``interval`` seconds, while started.

    A tick flushes when ``version()`` differs from its value at the last flush, or when
    ``heartbeat`` seconds passed since then (so elapsed times keep growing on screen while
    nothing happens). ``drawn=False``: the owner has not drawn the current version yet, so the
    first tick flushes. Ticks run on ``loop``'s thread; a flush that raises is logged and
    counted in ``errors``, never propagated (a display must not break what it displays).
    ``math.inf`` as ``interval`` means "never tick": :meth:`start` does nothing.

    Raises:
        ValueError: ``interval`` is not a positive number.
    """

    __slots__ = (
        "_flush",
        "_handle",
        "_last",
        "_loop",
        "_seen",
        "_stopped",
        "_version",
        "errors",
        "flushes",
        "heartbeat",
        "interval",
    )

    def __init__(
        self,
        flush: Callable[[], None],
        version: Callable[[], Any],
        loop: asyncio.AbstractEventLoop,
        interval: float = 0.25,
        heartbeat: float | None = None,
        drawn: bool = True,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive seconds, not {interval!r}")
        self._flush = flush
        self._version = version
        self._loop = loop
        self.interval = interval
        self.heartbeat = heartbeat
        self._handle: asyncio.TimerHandle | None = None
        self._stopped = False
        self._seen: Any = version() if drawn else _UNDRAWN
        self._last = loop.time()
        self.flushes = 0
        self.errors = 0

    @property
    def running(self) -> bool:
        """Whether a tick is scheduled."""
        return self._handle is not None

    def start(self, delay: float | None = None) -> None:
        """Tick first after ``delay`` seconds (default: ``interval``), then every interval."""
        self._stopped = False
        if self._handle is None and math.isfinite(self.interval):
            first = self.interval if delay is None else min(delay, self.interval)
            self._handle = self._loop.call_later(first, self._tick)

    def stop(self) -> None:
        """Cancel the next tick, if any (also from inside a flush)."""
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        self._handle = None
        version, now = self._version(), self._loop.time()
        beat = self.heartbeat is not None and now - self._last >= self.heartbeat
        if version != self._seen or beat:
            self._seen, self._last = version, now
            self.flushes += 1
            try:
                self._flush()
            except Exception:
                self.errors += 1
                log.exception("nbflow dashboard update failed; the run goes on")
        # The flush may have stopped us (the run ended): then no further tick.
        if self._handle is None and not self._stopped:
            self._handle = self._loop.call_later(self.interval, self._tick)
