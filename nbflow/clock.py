"""Simulated time: an event loop whose clock jumps to the next timer instead of waiting.

``flow.run(simulate=True)`` runs the flow on a :class:`VirtualClockLoop` in a private thread.
``asyncio.sleep``, ``asyncio.timeout`` and retry delays advance virtual time only, so an hour
of sleeps finishes in milliseconds and the timeline is identical on every run, which makes
Gantt charts in teaching notebooks exact and stable under nbval. Sync tasks run inline on the
simulated loop (taking no virtual time); use ``await asyncio.sleep(...)`` to model durations.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Wall-clock origin of simulated timelines (2026-01-01T00:00:00Z), fixed for reproducibility.
SIMULATION_EPOCH = 1767225600.0


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` is virtual and advances to the next due timer."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0

    def time(self) -> float:
        """Virtual seconds since the loop was created."""
        return self._virtual_now

    def _run_once(self) -> None:
        scheduled: list[Any] = self._scheduled  # type: ignore[attr-defined]
        # Drop cancelled timers first: jumping to one would skip past a real, earlier timer.
        while scheduled and scheduled[0]._cancelled:
            heapq.heappop(scheduled)
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
        if not self._ready and scheduled:  # type: ignore[attr-defined]
            self._virtual_now = max(self._virtual_now, scheduled[0]._when)
        super()._run_once()  # type: ignore[misc]


class InlineExecutor:
    """Runs sync task functions inline on the (private, simulated) loop; async ones as usual."""

    async def call(
        self,
        task: str,
        fn: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        priority: int = 0,
    ) -> Any:
        """Call ``fn(**kwargs)``; await it when async."""
        result = fn(**kwargs)
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            return await result
        return result

    def close(self) -> None:
        """Nothing to release."""


def run_simulated(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualClockLoop` (in this thread)."""
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
