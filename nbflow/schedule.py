"""In-kernel schedules: ``flow.every("5m")`` starts runs periodically until ``.stop()``.

::

    schedule = flow.every("5m", variables={"mode": "full"})   # also every(300), "30s", "1h"
    schedule.runs          # the runs so far (live while they run)
    schedule.stop()

Runs start in the background of the current event loop (the kernel's loop in Jupyter), so
the notebook stays usable; without a running loop the schedule gets its own loop in a
daemon thread. Ticks are at fixed times (start, start + interval, ...), so durations do not
make the schedule drift; ticks missed while the loop was blocked are dropped and counted in
``missed``.

When a tick comes while the previous run is still going, ``overlap`` decides:

- ``"skip"`` (default): the tick is dropped and counted in ``skipped``; no runs pile up.
- ``"queue"``: the tick waits and its run starts as soon as the previous one ends, in order
  (``pending`` counts the waiting ticks). If runs are always slower than the interval the
  queue keeps growing: prefer ``"skip"`` then.

Calling ``every`` again on a flow of the same name stops the earlier schedule first
(re-running a notebook cell does not double the runs) unless ``replace=False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from .errors import DefinitionError, describe
from .runtime import run_blocking, running_loop

if TYPE_CHECKING:
    from .flow import Flow
    from .handle import RunHandle
    from .run import Run

log = logging.getLogger("nbflow.schedule")

Overlap = Literal["skip", "queue"]
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_schedules: weakref.WeakSet[Schedule] = weakref.WeakSet()


def parse_interval(value: float | str) -> float:
    """Seconds from a number or a string like ``"30s"``, ``"5m"``, ``"1h"``, ``"1h30m"``.

    Raises:
        DefinitionError: not a positive number or such a string.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        parts = _PART.findall(text)
        if "".join(n + u for n, u in parts) != text:
            raise DefinitionError(
                f"every({value!r}): use seconds (every(30)) or a duration like '30s', '5m', "
                "'1h', '1h30m' (units: ms, s, m, h, d)"
            )
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise DefinitionError(f"every() needs seconds or a duration like '5m', got {value!r}")
    if not seconds > 0:
        raise DefinitionError(f"every({value!r}): the interval must be positive")
    return seconds


class Schedule:
    """Runs of a flow started every ``interval`` seconds; made by ``flow.every(...)``.

    Attributes:
        runs: the runs started so far, oldest first (live while they run).
        skipped: ticks dropped because a run was still going (``overlap="skip"``).
        pending: ticks waiting for the current run to end (``overlap="queue"``).
        missed: ticks that passed while the loop was blocked.
        errors: why a tick could not start a run (e.g. the flow's definition broke).
    """

    def __init__(
        self,
        flow: Flow,
        interval: float,
        *,
        variables: Mapping[str, Any] | None = None,
        overlap: Overlap = "skip",
        immediately: bool = True,
        max_runs: int | None = None,
    ) -> None:
        self.flow = flow
        self.interval = interval
        self.variables = dict(variables or {})
        self.overlap = overlap
        self.immediately = immediately
        self.max_runs = max_runs
        self.handles: list[RunHandle] = []
        self.skipped = 0
        self.pending = 0
        self.missed = 0
        self.errors: list[str] = []
        self._stopped = False
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._idle: asyncio.Event | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def runs(self) -> list[Run]:
        """The runs started so far, oldest first."""
        return [h.run for h in self.handles]

    @property
    def running(self) -> bool:
        """Whether the schedule may still start runs (not stopped, ``max_runs`` not reached)."""
        return not self._stopped and not self._limit_reached()

    def stop(self, *, cancel: bool = False) -> None:
        """Start no more runs (queued ticks are dropped); ``cancel=True`` cancels a live run.

        Safe to call from any thread, and more than once.
        """
        self._stopped = True
        self.pending = 0
        if cancel:
            for handle in self.handles:
                handle.cancel()
        loop, main = self._loop, self._main
        if loop is None or main is None or loop.is_closed():
            return
        if running_loop() is loop:
            main.cancel()
        else:
            loop.call_soon_threadsafe(main.cancel)

    def wait(self, timeout: float | None = None) -> list[Run]:
        """Block until the schedule has stopped and its runs ended; return the runs.

        Works inside a running notebook loop. Without ``max_runs`` call :meth:`stop` first
        (from another cell or thread), or this waits forever.

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the schedule goes on).
        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self!r} still running after {timeout}s")
            return self.runs
        assert self._loop is not None
        waiter = self._until_done()
        run_blocking(
            asyncio.wait_for(waiter, timeout) if timeout else waiter, on_interrupt=self.stop
        )
        return self.runs

    def __await__(self) -> Generator[Any, None, list[Run]]:
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            yield from loop.run_in_executor(None, self._thread.join).__await__()
            return self.runs
        yield from self._until_done().__await__()
        return self.runs

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<Schedule {self.flow.name!r} every {self.interval:g}s {state} "
            f"runs={len(self.handles)} skipped={self.skipped}>"
        )

    # -- machinery ---------------------------------------------------------------------------

    def _begin(self) -> None:
        loop = running_loop()
        if loop is not None:
            self._loop = loop
            self._idle = asyncio.Event()
            self._idle.set()
            self._main = loop.create_task(self._ticker(), name=f"nbflow-every-{self.flow.name}")
            return
        started = threading.Event()

        async def own_loop() -> None:
            self._loop = asyncio.get_running_loop()
            self._idle = asyncio.Event()
            self._idle.set()
            self._main = asyncio.current_task()
            started.set()
            try:
                await self._ticker()
            finally:
                await self._idle.wait()  # let the last run finish before the loop closes

        def target() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                asyncio.run(own_loop())

        self._thread = threading.Thread(target=target, daemon=True, name="nbflow-every")
        self._thread.start()
        started.wait()

    async def _until_done(self) -> None:
        if self._main is not None:
            try:
                await asyncio.shield(self._main)
            except asyncio.CancelledError:
                if not self._main.cancelled():
                    raise
        if self._idle is not None:
            await self._idle.wait()

    def _limit_reached(self) -> bool:
        return self.max_runs is not None and len(self.handles) + self.pending >= self.max_runs

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + (0.0 if self.immediately else self.interval)
        try:
            while self.running:
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not self.running:
                    break
                self._tick()
                next_at += self.interval
                late = loop.time() - next_at
                if late >= 0:
                    skip = int(late // self.interval) + 1
                    self.missed += skip
                    next_at += skip * self.interval
        except asyncio.CancelledError:
            if not self._stopped:
                raise

    def _tick(self) -> None:
        if self._busy:
            if self.overlap == "skip":
                self.skipped += 1
            else:
                self.pending += 1
            return
        self._launch()

    def _launch(self) -> None:
        try:
            handle = self.flow.start(self.variables)
        except Exception as error:
            log.error("schedule of %r: could not start a run: %s", self.flow.name, describe(error))
            self.errors.append(describe(error))
            return
        self.handles.append(handle)
        self._busy = True
        assert self._idle is not None
        self._idle.clear()
        asyncio.get_running_loop().create_task(self._watch(handle))

    async def _watch(self, handle: RunHandle) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await handle  # a failed or cancelled run frees the schedule too
        self._busy = False
        if self.pending and not self._stopped:
            self.pending -= 1
            self._launch()
        if not self._busy and self._idle is not None:
            self._idle.set()


def every(
    flow: Flow,
    interval: float | str,
    *,
    variables: Mapping[str, Any] | None = None,
    overlap: Overlap = "skip",
    immediately: bool = True,
    max_runs: int | None = None,
    replace: bool = True,
) -> Schedule:
    """Start runs of ``flow`` every ``interval`` (seconds, or ``"30s"``, ``"5m"``, ``"1h"``).

    ``immediately``: the first run starts now (else after one interval). ``max_runs``: stop
    by itself after that many runs. ``overlap``: ``"skip"`` or ``"queue"`` (module docstring).
    ``replace``: stop running schedules of flows with the same name first.

    Raises:
        DefinitionError: a bad interval, overlap or max_runs, or the flow's definition is
            invalid for these variables (checked now, before any run).
    """
    seconds = parse_interval(interval)
    if overlap not in ("skip", "queue"):
        raise DefinitionError(f"overlap must be 'skip' or 'queue', got {overlap!r}")
    if max_runs is not None and (not isinstance(max_runs, int) or max_runs < 1):
        raise DefinitionError(f"max_runs must be a positive int or None, got {max_runs!r}")
    flow.validate(variables)
    if replace:
        for old in list(_schedules):
            if old.flow.name == flow.name and old.running:
                old.stop()
    schedule = Schedule(
        flow,
        seconds,
        variables=variables,
        overlap=overlap,
        immediately=immediately,
        max_runs=max_runs,
    )
    _schedules.add(schedule)
    schedule._begin()
    return schedule
