"""Streaming: a task's elements reach the fan-out tasks that map over them as they arrive.

A *producer* streams when it begins to produce (see :meth:`Engine.open_stream
<nbflow.engine.Engine.open_stream>`):

- a task whose function is a generator or an async generator, or that returns an iterator
  or an async iterator, as the attempt reads it (:func:`drain`); its result is the list of
  what it yielded;
- a fan-out task, as it starts its elements: each element that succeeds is an item, under
  its own index.

Its *consumers* (:func:`stream_consumers`) are the fan-out tasks of the default trigger rule
that map over it and read it no other way (no condition reads it, it is not an ``after=``
of theirs, no other parameter takes its whole result). The scheduler counts a producer that
opened a stream as done for them (:func:`nbflow.scheduler.opened`), so a consumer starts as
soon as its other upstream tasks succeeded, and its elements start as items arrive: element
*i* of a fan-out over a fan-out starts when element *i* of the first succeeds, with no barrier
between the two. A task that takes the whole list waits for the producer to finish, as ever.

A producer that does not stream (a task that returned a list, one served from the cache or a
resumed run) is read as a list when it has finished. When a producer fails, or is skipped or
cancelled, after its consumers began, they start no more elements, let the ones in flight
end, and end as their trigger rule says (``upstream_failed``, ``skipped``).

A :class:`Stream` holds what a producer produced in one run, by index. An index already
there is not taken again: a generator retried after it failed yields its first items again,
and those that were delivered already are not delivered twice (so a retried generator is
expected to yield the same items in the same order).
"""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from . import mapping
from .errors import DefinitionError
from .gates import reads_all_results
from .graph import Plan
from .lifecycle import SUCCESSFUL, TaskState
from .spec import unwrapped

log = logging.getLogger("nbflow.streams")


class Stream:
    """What one producer produced so far in one run, by index (see the module docstring).

    ``consumers``: the fan-out tasks that stream from it. ``outcome`` is None while it
    produces, then how the producer ended; ``items`` and ``arrived`` (indices in arrival
    order) only grow.
    """

    __slots__ = ("_waiters", "arrived", "consumers", "items", "outcome", "producer")

    def __init__(self, producer: str, consumers: tuple[str, ...]) -> None:
        self.producer, self.consumers = producer, consumers
        self.items: dict[int, Any] = {}
        self.arrived: list[int] = []
        self.outcome: TaskState | None = None
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def ended(self) -> bool:
        """Whether the producer has ended (nothing more arrives)."""
        return self.outcome is not None

    @property
    def succeeded(self) -> bool:
        """Whether the producer ended with success (its items are all there)."""
        return self.outcome in SUCCESSFUL

    def put(self, index: int, value: Any) -> None:
        """Item ``index`` arrived (ignored once the producer ended, or if it is there)."""
        if self.outcome is not None or index in self.items:
            return
        self.items[index] = value
        self.arrived.append(index)
        self._wake()

    def end(self, outcome: TaskState) -> None:
        """The producer ended with ``outcome``; nothing more arrives."""
        if self.outcome is None:
            self.outcome = outcome
            self._wake()

    def wait(self, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` at the next change (an item, the end); a future may wait on
        several streams at once."""
        self._waiters.append(future)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def __repr__(self) -> str:
        state = self.outcome.value if self.outcome is not None else "producing"
        return f"<Stream of {self.producer!r} {len(self.arrived)} items, {state}>"


async def changed(streams: list[Stream]) -> None:
    """Wait until one of ``streams`` changes."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    for stream in streams:
        stream.wait(future)
    await future


# -- which tasks stream to which ----------------------------------------------------------


def stream_consumers(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Producer -> the fan-out tasks that may stream from it (see the module docstring);
    only producers that have some. Kept with the plan."""
    return plan.table("stream_consumers", lambda: _consumers(plan))


def _consumers(plan: Plan) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for name in plan.names:
        spec = plan.specs[name]
        if spec.fan_out is None or spec.trigger != "all_success":
            continue
        pairs = mapping.pairs(spec.fan_out)
        elements = {p for p, _ in pairs}
        whole = {p.name for p in spec.params if p.name not in elements}  # take whole results
        read = _read_by_gates(plan, name)
        for _, source in pairs:
            if (
                source in plan.specs
                and source not in spec.after
                and source not in whole
                and source not in read
                and name not in found.get(source, ())
            ):
                found.setdefault(source, []).append(name)
    return {producer: tuple(consumers) for producer, consumers in found.items()}


def _read_by_gates(plan: Plan, name: str) -> set[str]:
    """The upstream tasks whose results the gates of ``name`` read (all, for a callable)."""
    read: set[str] = set()
    for gate in plan.gates[name]:
        if gate.condition is None or reads_all_results(gate.condition.tree):
            return set(plan.upstream[name])
        read |= gate.condition.referenced_tasks(plan.upstream[name])
    return read


def is_generator(fn: Any) -> bool:
    """Whether calling ``fn`` makes a generator or an async generator."""
    target = unwrapped(fn)
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def streamers(plan: Plan) -> frozenset[str]:
    """Tasks whose result may be an iterator to read out as the attempt's own work: the
    generator functions, and the tasks a fan-out maps over (fan-out tasks aside: their
    result is their elements' list). Kept with the plan."""

    def make() -> frozenset[str]:
        sources = {
            source
            for name in plan.names
            if (fan_out := plan.specs[name].fan_out) is not None
            for _, source in mapping.pairs(fan_out)
        }
        return frozenset(
            name
            for name in plan.names
            if plan.specs[name].fan_out is None
            and (name in sources or is_generator(plan.funcs[name]))
        )

    return plan.table("streamers", make)


def check_generators(plan: Plan, executor: Any) -> None:
    """Refuse generator tasks on an executor that runs calls in other processes.

    Raises:
        DefinitionError: a generator task with a remote executor (``nf.DaskExecutor``):
            its items are produced where it runs and cannot stream from there.
    """
    if not getattr(executor, "remote_results", False):
        return
    for name in plan.names:
        if is_generator(plan.funcs[name]):
            raise DefinitionError(
                f"task {name!r} is a generator function, which cannot run on "
                f"{type(executor).__name__}: a generator lives in the process that runs it "
                "and its items cannot stream from a worker to the kernel. Return a list "
                "instead (fan-out tasks over it still run on the cluster), or run the flow "
                "without the executor"
            )


# -- reading an iterator ------------------------------------------------------------------


def is_stream_value(value: Any) -> bool:
    """Whether a task's result is an iterator or async iterator to read out (files aside:
    an open file is an iterator of lines, but a task that returns one means the file)."""
    if isinstance(value, list | tuple | dict | str | bytes | int | float | type(None)):
        return False
    return isinstance(value, Iterator | AsyncIterator) and not isinstance(value, io.IOBase)


async def drain(
    value: Any,
    put: Callable[[int, Any], None],
    call: Callable[[Callable[[], Any]], Awaitable[Any]],
) -> list[Any]:
    """Read ``value`` (an iterator or async iterator) to its end; ``put(index, item)`` each
    item as it arrives; the items, as a list.

    An async iterator is read on the loop. A sync one is read one item per
    ``await call(step)`` (the executor's: a thread, or inline on a simulated clock), so a
    blocking ``next()`` never stalls the loop. Cancelled, the iterator is closed: a
    generator's ``finally:`` runs (a sync one's, when the ``next()`` under way in its thread
    returns: a thread cannot be interrupted).
    """
    items: list[Any] = []
    if isinstance(value, AsyncIterator):
        try:
            async for item in value:
                put(len(items), item)
                items.append(item)
        finally:
            aclose = getattr(value, "aclose", None)
            if aclose is not None:
                await aclose()
        return items
    reader = _SyncReader(value)
    try:
        while True:
            item = await call(reader.step)
            if item is _DONE:
                return items
            put(len(items), item)
            items.append(item)
            await asyncio.sleep(0)  # an inline executor: let the consumers start meanwhile
    finally:
        reader.close()


_DONE = object()


class _SyncReader:
    """Reads a sync iterator one item per call (in a thread), and closes it in the thread
    that reads it if a close is asked while a ``next()`` is under way there."""

    def __init__(self, iterator: Iterator[Any]) -> None:
        self.iterator = iterator
        self.lock = threading.Lock()
        self.busy = self.closing = self.closed = False

    def step(self) -> Any:
        with self.lock:
            if self.closing:
                return _DONE
            self.busy = True
        try:
            return next(self.iterator, _DONE)
        finally:
            with self.lock:
                self.busy = False
                close = self.closing
            if close:
                self._close()

    def close(self) -> None:
        with self.lock:
            self.closing = True
            if self.busy:
                return  # its thread closes it when next() returns
        self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self.iterator, "close", None)
        if close is None:
            return
        try:
            close()
        except Exception:  # its finally: raised while being closed (a cancel): logged
            log.exception("nbflow: closing the iterator %r raised", self.iterator)
