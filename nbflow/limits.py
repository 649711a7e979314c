"""What may be in flight at once: one rule for tasks, fan-out elements, pools and runs.

**The rule.** Every unit of work in flight — a task's attempt, or one fan-out element's —
holds one *slot*: one of the run's ``max_workers`` and, when the flow has a
:class:`~nbflow.pool.Pool`, one place on a worker of the pool (the pool's capacities bound
all runs that share it). A fan-out task holds no slot itself while its elements run; its
``concurrency=`` caps its own elements further. A task waiting for a slot holds nothing.

Slots are handed out in order: fan-out elements already under way first, in the order they
asked, then ready tasks, best first (the strategy's order). When runs share a pool and a
worker frees up while another run waits for one, the worker is handed to the run that has
waited longest (if it can use it: a run waits for every worker name or tag its waiting
tasks asked for), so no run starves another and none waits forever. A run uses a worker
handed to it at once, or gives it back to the pool (to the next run in line): it ended
meanwhile, or its own ``max_workers`` is reached.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pool import Pool


def _nothing() -> None:
    pass


class Slots:
    """One run's slots (see the module docstring).

    Args:
        limit: ``max_workers`` (None: no limit of the run's own).
        pool: the flow's pool, shared with other runs (None: slots are named ``slot-N``).
        wake: called on the run's loop when a slot may have become free for a ready task
            (another run released a pool worker, or handed one over).
    """

    def __init__(self, limit: int | None, pool: Pool | None, wake: Callable[[], None]) -> None:
        self.limit = limit
        self.pool = pool
        self.used = 0
        #: Whether the run's own limit is reached: an attribute kept as ``used`` changes (in
        #: take and release), not a property, as the engine reads it for every task it places.
        self.full = limit is not None and self.used >= limit
        self._wake = wake
        self._names: list[str] = []  # free slot names, reused last in, first out
        self._next = 0
        self._waiting: deque[tuple[str, str | None, asyncio.Future[str]]] = deque()
        self._handed: list[str] = []  # pool workers another run handed to this one
        self._closed = False
        self.loop: asyncio.AbstractEventLoop | None = None

    def take(self, task: str, want: str | None = None) -> str | None:
        """A slot for a ready task now (its worker's name), or None: none free for it, or
        fan-out elements wait for one first."""
        if self._waiting or self.full:
            return None
        return self._take(task, want)

    def _take(self, task: str, want: str | None) -> str | None:
        pool = self.pool
        if pool is None:
            worker = self._names.pop() if self._names else None
            if worker is None:
                worker = f"slot-{self._next}"
                self._next += 1
        else:
            worker = self._from_handed(want) or pool.claim(self, task, want)
            if worker is None:
                return None
        self.used += 1
        self.full = self.limit is not None and self.used >= self.limit
        return worker

    def _from_handed(self, want: str | None) -> str | None:
        assert self.pool is not None
        for position, worker in enumerate(self._handed):
            if self.pool.matches(worker, want):
                return self._handed.pop(position)
        return None

    async def wait(self, task: str, want: str | None = None) -> str:
        """A slot for a fan-out element: at once if one is free, else the first freed.

        Raises:
            CancelledError: cancelled while waiting (it then holds nothing).
        """
        if not self._waiting and not self.full:
            worker = self._take(task, want)
            if worker is not None:
                return worker
        assert self.loop is not None
        future: asyncio.Future[str] = self.loop.create_future()
        self._waiting.append((task, want, future))
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(future.result())  # given one as it was being cancelled
            raise

    def release(self, worker: str) -> None:
        """Give back ``worker``'s slot: to the longest-waiting fan-out element, if any."""
        self.used -= 1
        self.full = self.limit is not None and self.used >= self.limit
        if self.pool is None:
            self._names.append(worker)
        else:
            self.pool.release(worker)
        if self._waiting:
            self._serve_waiting()

    def handed(self, worker: str) -> None:
        """Another run released pool worker ``worker`` for this one (on this run's loop).

        It goes to a waiting fan-out element or ready task at once, or back to the pool (to
        the next run in line): a worker held unused would starve the runs that wait for it,
        and one handed to a run that ended meanwhile would be lost for good.
        """
        self._handed.append(worker)
        if not self._closed:
            self._serve_waiting()
            self._wake()
        assert self.pool is not None
        while self._handed:
            self.pool.release(self._handed.pop())

    def _serve_waiting(self) -> None:
        waiting = self._waiting
        while waiting:
            task, want, future = waiting[0]
            if future.done():  # cancelled while waiting
                waiting.popleft()
                continue
            if self.full:
                return
            worker = self._take(task, want)
            if worker is None:
                return
            waiting.popleft()
            future.set_result(worker)

    def close(self) -> None:
        """The run is over: give back what another run handed over and was not used, and
        let go of the run (no reference cycle keeps it alive)."""
        self._wake = _nothing
        self._closed = True
        if self.pool is not None:
            self.pool.forget(self)
            while self._handed:
                self.pool.release(self._handed.pop())

    # -- the pool's side ---------------------------------------------------------------------

    def hand_over(self, worker: str) -> None:
        """Called by the pool (from any thread): ``worker`` is this run's now."""
        loop = self.loop
        if loop is None or loop.is_closed():
            assert self.pool is not None
            self.pool.release(worker)
            return
        loop.call_soon_threadsafe(self.handed, worker)

    def __repr__(self) -> str:
        limit = "no limit" if self.limit is None else self.limit
        return f"<Slots {self.used}/{limit} waiting={len(self._waiting)}>"
