"""Simulated time: an event loop whose clock jumps to the next timer instead of waiting.

``flow.run(simulate=True)`` runs the flow on a :class:`VirtualClockLoop` in a private thread.
``asyncio.sleep``, ``asyncio.timeout`` and retry delays advance virtual time only, so an hour
of sleeps finishes in milliseconds and the timeline is identical on every run, which makes
Gantt charts in teaching notebooks exact and stable under nbval. Sync tasks run inline on the
simulated loop (taking no virtual time); use ``await asyncio.sleep(...)`` to model durations.

Any finite virtual time works (a sleep of 1e9 s, or 1e300 s, takes no real time); a sleep
that never ends (``asyncio.sleep(math.inf)``) with nothing else left to do raises
:class:`~nbflow.errors.SimulationError`. Cancelling the task that awaits :func:`simulate`
(Ctrl-C in a script, ``asyncio.timeout``) cancels the simulated run too.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import math
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from .errors import SimulationError

T = TypeVar("T")

#: Wall-clock origin of simulated timelines (2026-01-01T00:00:00Z), fixed for reproducibility.
SIMULATION_EPOCH = 1767225600.0
_RESOLUTION = time.get_clock_info("monotonic").resolution


class _NeverDue(Exception):
    """Every timer left is at an infinite time: the simulation would wait forever."""


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` is virtual and advances to the next due timer."""

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        self._idle: list[Callable[[], None]] = []

    def add_idle(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the loop has nothing to run and no timer left, before
        it would wait for the outside (a run waiting for signals: see :mod:`nbflow.waits`)."""
        self._idle.append(callback)

    def remove_idle(self, callback: Callable[[], None]) -> None:
        """Stop calling ``callback`` (see :meth:`add_idle`)."""
        if callback in self._idle:
            self._idle.remove(callback)

    def time(self) -> float:
        """Virtual seconds since the loop was created."""
        return self._virtual_now

    def _run_once(self) -> None:
        scheduled: list[Any] = self._scheduled  # type: ignore[attr-defined]
        # Drop cancelled timers first: jumping to one would skip past a real, earlier timer.
        while scheduled and scheduled[0]._cancelled:
            heapq.heappop(scheduled)
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
        if not self._ready and not scheduled and self._idle:  # type: ignore[attr-defined]
            for callback in list(self._idle):  # nothing left to do but wait: say so
                callback()
        if not self._ready and scheduled:  # type: ignore[attr-defined]
            when = scheduled[0]._when
            if not math.isfinite(when):
                raise _NeverDue
            self._virtual_now = max(self._virtual_now, when)
            # The base loop runs the timers due before time() + _clock_resolution. Past about
            # 1e7 s, time() + 1e-9 == time() in floats: the timer just jumped to would never
            # be due, and the loop would spin. A float's own resolution keeps it due.
            self._clock_resolution = max(_RESOLUTION, math.ulp(self._virtual_now))
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
        # inspect's, not asyncio's: on Python 3.11 asyncio.iscoroutine() holds for a plain
        # generator too (a generator task's result, which is read out, not awaited).
        if inspect.iscoroutine(result) or isinstance(result, asyncio.Future):
            return await result
        return result

    def close(self) -> None:
        """Nothing to release."""


def run_simulated(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh :class:`VirtualClockLoop` (in this thread).

    Raises:
        SimulationError: every task left waits for a time that never comes.
    """
    loop = VirtualClockLoop()
    try:
        return _complete(loop, loop.create_task(coro))
    finally:
        loop.close()


def _complete(loop: VirtualClockLoop, task: asyncio.Task[T]) -> T:
    try:
        return loop.run_until_complete(task)
    except _NeverDue:
        pass
    # Cancel what waits, as a real run's cancel would, so no task is left pending.
    task.cancel()
    with contextlib.suppress(_NeverDue, asyncio.CancelledError, Exception):
        loop.run_until_complete(task)
    raise SimulationError(
        "simulated run: every task left waits for a time that never comes "
        "(asyncio.sleep(math.inf), or a virtual time past the largest float); a real run "
        "would wait forever, so the simulation stops; give the sleep or timeout a finite value"
    )


class _Simulation(Generic[T]):
    """One simulated run in a thread, which the awaiting side can cancel at any moment."""

    def __init__(self, make: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self.make = make
        self.lock = threading.Lock()
        self.cancelled = False
        self.loop: VirtualClockLoop | None = None
        self.task: asyncio.Task[T] | None = None

    def work(self) -> T:
        loop = VirtualClockLoop()
        try:
            task = loop.create_task(self.make())
            with self.lock:
                self.loop, self.task = loop, task
                if self.cancelled:  # cancelled before the thread got here
                    task.cancel()
            return _complete(loop, task)
        finally:
            with self.lock:
                self.loop = None
            loop.close()

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            if self.loop is not None and self.task is not None:
                self.loop.call_soon_threadsafe(self.task.cancel)


async def simulate(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``make()`` on a fresh :class:`VirtualClockLoop` in a worker thread; its result.

    The current loop keeps running meanwhile. Cancelling the awaiting task cancels the
    simulated run and waits for its thread to end before ``CancelledError`` goes on.

    Raises:
        SimulationError: every task left waits for a time that never comes.
    """
    simulation = _Simulation(make)
    future = asyncio.get_running_loop().run_in_executor(None, simulation.work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        simulation.cancel()
        # The run's own CancelledError, or what it raised meanwhile, gives way to ours.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await future
        raise
