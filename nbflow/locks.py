"""Exclusive sections: ``@flow.task(lock="db")``.

Tasks holding the same lock never run at the same time, in one run or across runs. A task
takes its lock when it leaves the ready queue, *before* it takes a slot (see
:mod:`nbflow.limits`), and holds it from its first attempt to its end (retries and their
delays included; a fan-out task for all its elements), then gives it to the task that has
waited longest for it. A task waiting for its lock holds nothing else, so no two runs can
each hold what the other waits for: a lock is always taken before a slot, never while
holding one. Waiting tasks show as ``queued``.

**Whose locks.** Locks live in a :class:`Locks` table. By default a run uses the table of
the event loop it runs on (:func:`locks_of`), made when a run on that loop first needs it and
dropped with the loop: every run in a Jupyter kernel shares the kernel loop's table, so
``lock="db"`` in two flows excludes their tasks from each other; a simulated run
(``simulate=True``) has a private loop, hence its own table. ``Flow(..., locks=table)``
makes flows share an explicit table instead, also across loops and threads (runs started
from a plain script each get a loop of their own). A table is safe to use from any thread:
the task a lock is handed to is told on its own run's loop.

On Dask, the kernel still decides when a task starts, so the kernel's table keeps tasks of
this kernel's runs apart on the cluster too; ``nbflow.dask.DaskLocks`` takes a
``distributed.Lock`` as well, which excludes tasks of other kernels sharing the cluster.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError


def _ignore(task: str) -> None:
    pass


def check_executor(plan: Any, executor: Any) -> None:
    """Refuse ``lock=`` on an executor that runs tasks off the kernel without a lock of its
    own (``remote_results`` but no ``remote_locks()``): the kernel's table would keep only
    this kernel's tasks apart, not those of other clients of the same cluster.

    Raises:
        DefinitionError: names the tasks, the executor and the fix.
    """
    if not getattr(executor, "remote_results", False) or hasattr(executor, "remote_locks"):
        return
    locked = [n for n in plan.names if plan.specs[n].lock]
    if locked:
        raise DefinitionError(
            f"task {locked[0]!r} lock={plan.specs[locked[0]].lock!r}: executor "
            f"{type(executor).__name__} runs tasks off the kernel and has no locks of its own "
            "(remote_locks()), so other clients of its cluster would not be kept out; use "
            "nf.DaskExecutor (a distributed.Lock), a local executor, or drop lock="
        )


def check_lock_name(value: Any) -> str | None:
    """``value`` if it is a lock name (a non-empty string) or None.

    Raises:
        ValueError: anything else (pydantic names the field, the DSL the task).
    """
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise ValueError(
        f"lock must be the name of a lock (a non-empty string), e.g. lock='db', got {value!r}; "
        "tasks with the same lock name never run at the same time"
    )


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds or waits for a lock: a task of a run."""

    flow: str
    run_id: str
    task: str

    def __str__(self) -> str:
        return f"{self.flow}/{self.task} (run {self.run_id[:8]})"


@dataclass(slots=True)
class _Waiter:
    holder: Holder
    loop: asyncio.AbstractEventLoop
    granted: Callable[[], None]


class Locks:
    """A table of named locks that runs share (see the module docstring).

    ``repr(table)`` says who holds each lock and how many wait; :meth:`held` and
    :meth:`waiting` give the same as data.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # runs on several loops (threads) may share a table
        self._holders: dict[str, Holder] = {}
        self._lines: dict[str, deque[_Waiter]] = {}

    def take(
        self,
        name: str,
        holder: Holder,
        loop: asyncio.AbstractEventLoop,
        granted: Callable[[], None],
    ) -> bool:
        """Take lock ``name`` for ``holder`` now (True), or queue for it (False): when it is
        ``holder``'s, ``granted()`` is called on ``loop``."""
        with self._mutex:
            if name not in self._holders:
                self._holders[name] = holder
                return True
            self._lines.setdefault(name, deque()).append(_Waiter(holder, loop, granted))
            return False

    def give_back(self, name: str, holder: Holder) -> None:
        """``holder`` is done with lock ``name``: it goes to the first in line whose loop
        still runs (told there), else it is free."""
        with self._mutex:
            if self._holders.get(name) != holder:
                return
            line = self._lines.get(name)
            while line:
                waiter = line.popleft()
                try:
                    waiter.loop.call_soon_threadsafe(waiter.granted)
                except RuntimeError:  # its loop is closed: its run is long over
                    continue
                self._holders[name] = waiter.holder
                break
            else:
                del self._holders[name]
            if line is not None and not line:
                del self._lines[name]

    def withdraw(self, name: str, holder: Holder) -> None:
        """``holder`` no longer waits for lock ``name`` (its task was cancelled)."""
        with self._mutex:
            line = self._lines.get(name)
            if line is None:
                return
            kept = deque(w for w in line if w.holder != holder)
            if kept:
                self._lines[name] = kept
            else:
                del self._lines[name]

    def held(self) -> dict[str, str]:
        """Each lock held now, and by whom (``flow/task (run id)``)."""
        with self._mutex:
            return {name: str(holder) for name, holder in sorted(self._holders.items())}

    def waiting(self) -> dict[str, list[str]]:
        """Each lock someone waits for, and who waits, first in line first."""
        with self._mutex:
            return {
                name: [str(w.holder) for w in line] for name, line in sorted(self._lines.items())
            }

    def __repr__(self) -> str:
        held, waiting = self.held(), self.waiting()
        if not held:
            return "<Locks: none held>"
        parts = [f"{n!r} held by {h}, {len(waiting.get(n, ()))} waiting" for n, h in held.items()]
        return f"<Locks: {'; '.join(parts)}>"


# Each loop's table, for as long as the loop exists (a weak key): see the module docstring.
_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Locks] = weakref.WeakKeyDictionary()
_tables_mutex = threading.Lock()


def locks_of(loop: asyncio.AbstractEventLoop | None = None) -> Locks:
    """The lock table of ``loop`` (default: the running loop), which its runs share.

    ``nf.lock_table()`` in a notebook shows the kernel's locks: who holds each, who waits.

    Raises:
        RuntimeError: no loop given and none is running.
    """
    loop = loop or asyncio.get_running_loop()
    with _tables_mutex:
        table = _tables.get(loop)
        if table is None:
            table = _tables[loop] = Locks()
        return table


class RunLocks:
    """One run's side of a :class:`Locks` table: which of its tasks hold or wait for a lock.

    Args:
        table: the table the run uses.
        flow, run_id: the run (they name its holders).
        lock_of: ``{task: lock name}`` for the tasks that have a lock.
        loop: the run's loop (where grants arrive).
        granted: called with a task's name when the lock it waited for is its (on ``loop``).
        remote: the executor's locks (``nbflow.dask_locks.DaskLocks``), taken too, as the
            task begins (:meth:`hold_remote`); None: none.
    """

    def __init__(
        self,
        table: Locks,
        flow: str,
        run_id: str,
        lock_of: dict[str, str],
        loop: asyncio.AbstractEventLoop,
        granted: Callable[[str], None],
        remote: Any = None,
    ) -> None:
        self.table = table
        self.remote = remote
        self._remote_held: dict[str, Any] = {}
        self.flow, self.run_id = flow, run_id
        self.lock_of = lock_of
        self.loop = loop
        self._granted = granted
        #: task -> lock name, for tasks that hold their lock / wait for it.
        self.holding: dict[str, str] = {}
        self.waiting: dict[str, str] = {}
        self._closed = False

    def _holder(self, task: str) -> Holder:
        return Holder(self.flow, self.run_id, task)

    def take(self, task: str) -> bool:
        """Whether ``task`` may go on now: it has no lock, holds it already, or took it. If
        not, it waits in line and ``granted(task)`` follows when its turn comes."""
        name = self.lock_of.get(task)
        if name is None or task in self.holding:
            return True
        if self.table.take(name, self._holder(task), self.loop, lambda: self._grant(task)):
            self.holding[task] = name
            return True
        self.waiting[task] = name
        return False

    def _grant(self, task: str) -> None:
        name = self.waiting.pop(task, None)
        if name is None or self._closed:  # withdrawn or the run ended as it was handed over
            self.table.give_back(self.lock_of[task], self._holder(task))
            return
        self.holding[task] = name
        self._granted(task)

    def release(self, task: str) -> None:
        """``task`` ended (or will never start): its lock goes to the next in line."""
        name = self.holding.pop(task, None)
        if name is not None:
            self.table.give_back(name, self._holder(task))

    def withdraw(self, task: str) -> bool:
        """Take ``task`` out of its lock's line; whether it was waiting."""
        name = self.waiting.pop(task, None)
        if name is None:
            return False
        self.table.withdraw(name, self._holder(task))
        return True

    async def hold_remote(self, task: str) -> None:
        """Take ``task``'s lock on the executor's side too (a no-op without ``remote``)."""
        name = self.lock_of.get(task)
        if self.remote is not None and name is not None and task not in self._remote_held:
            self._remote_held[task] = await self.remote.acquire(name)

    async def release_remote(self, task: str) -> None:
        """Give back what :meth:`hold_remote` took for ``task``."""
        held = self._remote_held.get(task)
        if held is None:
            return
        try:
            await self.remote.release(held)
        except BaseException:
            self.remote.release_soon(held)
            raise
        finally:
            del self._remote_held[task]

    def close(self) -> None:
        """The run is over: give back every lock it holds, leave every line (and let go of
        the run: no reference cycle keeps it alive)."""
        self._closed = True
        self._granted = _ignore
        for task in list(self.waiting):
            self.withdraw(task)
        for task in list(self.holding):
            self.release(task)
        while self._remote_held:  # a run that ended without its runners (a crash)
            self.remote.release_soon(self._remote_held.popitem()[1])
