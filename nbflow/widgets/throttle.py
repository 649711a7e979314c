"""Coalescing: any number of "something changed" marks become at most one flush per interval.

Events only mark the dashboard dirty; the flush (the expensive part: building SVG and
sending widget state) runs later, on the event loop, at most once per ``interval`` seconds.
A burst of 10,000 events inside one interval therefore costs one flush, and the first flush
after a quiet spell waits out the rest of its interval, so a run shorter than ``interval``
is drawn only at its end (:meth:`Coalescer.flush_now`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable

log = logging.getLogger("nbflow.widgets")


class Coalescer:
    """Runs ``flush()`` on ``loop`` at most once per ``interval`` seconds while marked dirty.

    ``mark()`` must be called on the loop's thread (it schedules with ``loop.call_later``);
    ``flush_now()`` runs a pending flush at once. A flush that raises is logged and counted
    in ``errors``; it never propagates (a display must not break what it displays).

    Raises:
        ValueError: ``interval`` is not a positive number (``math.inf`` means "only when
            asked", i.e. on :meth:`flush_now`).
    """

    __slots__ = ("_flush", "_handle", "_last", "_loop", "dirty", "errors", "flushes", "interval")

    def __init__(
        self,
        flush: Callable[[], None],
        loop: asyncio.AbstractEventLoop,
        interval: float = 0.25,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive seconds, not {interval!r}")
        self._flush = flush
        self._loop = loop
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._last = loop.time()  # the owner draws once when it is created
        self.dirty = False
        self.flushes = 0
        self.errors = 0

    @property
    def pending(self) -> bool:
        """Whether a flush is scheduled."""
        return self._handle is not None

    def mark(self) -> None:
        """Note a change; schedule a flush unless one is pending (cheap when one is)."""
        self.dirty = True
        if self._handle is None and math.isfinite(self.interval):
            delay = max(0.0, self._last + self.interval - self._loop.time())
            self._handle = self._loop.call_later(delay, self._run)

    def defer_first(self, delay: float) -> None:
        """Let the first flush come ``delay`` seconds from now (not ``interval``): for an
        owner that did not draw everything when it was created."""
        self._last = self._loop.time() - self.interval + delay

    def flush_now(self) -> None:
        """Cancel the scheduled flush and flush now (even when nothing was marked)."""
        self.cancel()
        self.dirty = True
        self._run()

    def cancel(self) -> None:
        """Drop the scheduled flush, if any."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _run(self) -> None:
        self._handle = None
        if not self.dirty:
            return
        self.dirty = False
        self._last = self._loop.time()
        self.flushes += 1
        try:
            self._flush()
        except Exception:
            self.errors += 1
            log.exception("nbflow dashboard update failed; the run goes on")
