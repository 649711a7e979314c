"""Fan-out / fan-in: run one function per element with a sliding window.

A sliding window keeps ``concurrency`` elements in flight: as soon as one ends, the next
starts (unlike batches, where one slow element holds back the whole batch). Elements may
arrive while others run (:func:`window` reads them from an async iterator: a streaming
source, see :mod:`nbflow.streams`). An optional ``rate`` caps how many elements start per
second. Results come back in input order. An optional ``until`` (:class:`Until`) stops the
window early: no further element starts, and the elements in flight are cancelled or run to
their end (``complete_when``, see :mod:`nbflow.completion`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .retry import Retry, retry

T = TypeVar("T")


@dataclass(slots=True)
class ElementOutcome:
    """How one element ended: ``ok`` with ``value``, or not ok with ``error``."""

    index: int
    ok: bool
    value: Any = None
    error: BaseException | None = None


class Withdrawn(Exception):
    """Raised by ``run_one`` for an element it did not start because the window stopped."""


class Until(Protocol):
    """What stops a sliding window early (see :func:`sliding_window`)."""

    #: when the window stops: cancel the elements in flight (else they run to their end)
    cancel_rest: bool

    def holds(self, outcome: ElementOutcome | None) -> bool:
        """Told each element's outcome as it ends (None once, before any starts); True
        when the window should stop now. True at most once."""
        ...

    async def settle(self) -> None:
        """Called once the window stopped without ``cancel_rest``, while the elements in
        flight go on (in the lane of the element whose outcome stopped it)."""
        ...


async def sliding_window(
    items: Iterable[Any],
    run_one: Callable[[int, Any], Awaitable[Any]],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    until: Until | None = None,
) -> list[ElementOutcome]:
    """Call ``run_one(i, item)`` for every item, at most ``concurrency`` at once (see
    :func:`window`, which this is for a list)."""
    elements = list(items)
    return await window(enumerate(elements), run_one, concurrency=concurrency, rate=rate,
                        until=until, size=len(elements))  # fmt: skip


async def window(
    elements: Iterator[tuple[int, Any]] | AsyncIterator[tuple[int, Any]],
    run_one: Callable[[int, Any], Awaitable[Any]],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    until: Until | None = None,
    size: int | None = None,
    asked: set[asyncio.Task[Any]] | None = None,
) -> list[ElementOutcome]:
    """Call ``run_one(index, item)`` for each ``(index, item)`` of ``elements``, at most
    ``concurrency`` at once; the outcomes, by index.

    ``elements`` is an iterator, or an async iterator when elements may arrive while others
    run (a streaming source: see :mod:`nbflow.streams`); ``size``, when known, is how many
    it yields. Errors are collected per element, never raised here, ``CancelledError`` an
    element raised itself included; cancelling the awaiting task cancels every element and
    closes ``elements``. An error ``elements`` raises (a bad element) cancels the elements in
    flight and is raised. With ``until``, the window stops when ``until.holds(...)`` says
    so: no further element starts (``run_one`` may raise :class:`Withdrawn` for one it was
    about to start) and the elements still running are cancelled (``until.cancel_rest``)
    or awaited; the outcomes of elements that ended are returned either way.

    ``asked``: the lanes this window cancels go there (the caller's set, to tell a cancel
    asked for from one an element made of its own lane, ``asyncio.current_task().cancel()``,
    which is that element's failure, as a ``CancelledError`` it raises is).
    """
    outer = asyncio.current_task()  # the task awaiting the window
    asked = set() if asked is None else asked
    outcomes: dict[int, ElementOutcome] = {}
    if until is not None and until.holds(None):
        await _close(elements)
        return []
    plain = elements if isinstance(elements, Iterator) else None  # read with next()
    take = _taker(elements)
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate if rate else 0.0
    next_start = [loop.time()]
    lanes: list[asyncio.Task[None]] = []
    idle: set[asyncio.Task[None]] = set()  # lanes waiting for their next element
    failure: list[BaseException] = []
    stopped = False
    group: asyncio.TaskGroup

    def stop(cancel: bool) -> None:
        nonlocal stopped
        stopped = True
        me = asyncio.current_task()
        for lane in lanes:  # idle lanes wait for an element that will not start: end them
            if lane is not me and (cancel or lane in idle):
                asked.add(lane)
                lane.cancel()

    def add_lane() -> None:
        lane = group.create_task(run_lane())
        lanes.append(lane)

    async def run_lane() -> None:
        me = asyncio.current_task()
        assert me is not None
        while not stopped:
            try:
                if plain is not None:
                    found: Any = next(plain, _END)
                else:  # it may wait for the next element to arrive: idle meanwhile
                    idle.add(me)
                    try:
                        found = await take()
                    finally:
                        idle.discard(me)
            except Exception as error:
                failure.append(error)  # a bad element: the window fails
                stop(True)
                return
            if found is _END or stopped:
                return
            if width is None and not idle:
                add_lane()  # unbounded: a lane waits for the next element meanwhile
            index, item = found
            if interval:
                wait = next_start[0] - loop.time()
                next_start[0] = max(next_start[0], loop.time()) + interval
                if wait > 0:
                    await asyncio.sleep(wait)
                if stopped:
                    return
            try:
                outcome = ElementOutcome(index, True, await run_one(index, item))
            except asyncio.CancelledError as cancelled:
                own: BaseException = cancelled
                if me.cancelling():
                    if me in asked or (outer is not None and outer.cancelling()):
                        raise  # the window is being cancelled
                    # Nobody asked: the element cancelled the lane it runs in. Its failure;
                    # the lane goes on with the next element.
                    me.uncancel()
                    own = asyncio.CancelledError(SELF_CANCELLED)
                # The element raised CancelledError itself: its failure. (Re-raised, it
                # would end this lane as cancelled, which the TaskGroup ignores: the
                # element would vanish from the results.)
                outcome = ElementOutcome(index, False, error=own)
            except Withdrawn:
                return
            except Exception as error:
                outcome = ElementOutcome(index, False, error=error)
            outcomes[index] = outcome
            if until is not None and not stopped and until.holds(outcome):
                stop(until.cancel_rest)
                if not until.cancel_rest:
                    await until.settle()

    width = concurrency if concurrency else size  # None: lanes start as elements arrive
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(width if width is not None else 1):
                add_lane()
    finally:
        await _close(elements)
    if failure:
        raise failure[0]
    return [outcomes[i] for i in sorted(outcomes)]


_END = object()
#: What an element that cancelled the asyncio task it runs in fails with.
SELF_CANCELLED = (
    "the element cancelled the asyncio task it runs in (asyncio.current_task().cancel()), "
    "which is not its own; to end it, raise an exception"
)


def _taker(
    elements: Iterator[tuple[int, Any]] | AsyncIterator[tuple[int, Any]],
) -> Callable[[], Awaitable[Any]]:
    """What a lane awaits for its next element (``_END`` when there is none) from an async
    iterator, which the lanes share under a lock (one lane reads it at a time). (A plain
    iterator is read with ``next()``, in one step.)"""
    lock = asyncio.Lock()

    async def take() -> Any:
        async with lock:
            return await anext(elements, _END)  # type: ignore[arg-type]

    return take


async def _close(elements: Any) -> None:
    aclose = getattr(elements, "aclose", None)
    if aclose is not None:
        await aclose()


async def fan_out(
    fn: Callable[[Any], Awaitable[T] | T],
    items: Iterable[Any],
    *,
    concurrency: int | None = None,
    aggregate: Callable[[list[T]], Any] | None = None,
    rate: float | None = None,
    retry_policy: Retry | int | None = None,
    return_exceptions: bool = False,
) -> Any:
    """Apply ``fn`` to each item concurrently (sliding window) and gather results in order.

    ``fn`` may be sync (run in a thread) or async. With ``retry_policy`` each element is
    retried on its own. ``aggregate(results)`` turns the list into one value (fan-in).

    Raises:
        ValueError: ``concurrency`` is below 1 (None runs every element at once), before
            any element runs.
        ExceptionGroup: elements failed and ``return_exceptions`` is false; it holds every
            element's error (each noted with its index).
    """
    if concurrency is not None and concurrency < 1:  # 0 would have meant "no limit"
        raise ValueError(
            f"nbflow.fan_out: concurrency={concurrency!r}, but at most 0 elements at once would "
            "run none; give a whole number of at least 1, or None to run every element at once"
        )
    is_async = inspect.iscoroutinefunction(fn)

    async def call(item: Any) -> Any:
        if is_async:
            return await fn(item)  # type: ignore[misc]
        return await asyncio.to_thread(fn, item)

    async def run_one(index: int, item: Any) -> Any:
        if retry_policy is None:
            return await call(item)
        return await retry(functools.partial(call, item), retry_policy)

    outcomes = await sliding_window(items, run_one, concurrency=concurrency, rate=rate)
    for outcome in outcomes:
        if not outcome.ok and not isinstance(outcome.error, Exception):
            # CancelledError an element raised itself: a failure an ExceptionGroup can hold
            error = RuntimeError(f"the element raised {type(outcome.error).__name__}")
            error.__cause__ = outcome.error
            outcome.error = error
    errors: list[Exception] = [o.error for o in outcomes if isinstance(o.error, Exception)]
    if errors and not return_exceptions:
        for outcome in outcomes:
            if outcome.error is not None:
                outcome.error.add_note(f"nbflow.fan_out: element {outcome.index}")
        raise ExceptionGroup(f"{len(errors)} of {len(outcomes)} fan-out elements failed", errors)
    values: list[Any] = [o.value if o.ok else o.error for o in outcomes]
    return aggregate(values) if aggregate is not None else values
