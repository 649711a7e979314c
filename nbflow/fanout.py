"""Fan-out / fan-in: run one function per element with a sliding window.

A sliding window keeps ``concurrency`` elements in flight: as soon as one ends, the next
starts (unlike batches, where one slow element holds back the whole batch). An optional
``rate`` caps how many elements start per second. Results come back in input order. An
optional ``until`` (:class:`Until`) stops the window early: no further element starts, and
the elements in flight are cancelled or run to their end (``complete_when``, see
:mod:`nbflow.completion`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
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
    """Call ``run_one(i, item)`` for every item, at most ``concurrency`` at once.

    Errors are collected per element, never raised here, ``CancelledError`` an element
    raised itself included; cancelling the awaiting task cancels every element. With
    ``until``, the window stops when ``until.holds(...)`` says so: no further element starts
    (``run_one`` may raise :class:`Withdrawn` for one it was about to start) and the lanes
    still running an element are cancelled (``until.cancel_rest``) or awaited; the outcomes
    of elements that ended are returned either way.
    """
    elements = list(items)
    outcomes: list[ElementOutcome | None] = [None] * len(elements)
    if until is not None and until.holds(None):
        return []
    source = iter(enumerate(elements))
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate if rate else 0.0
    next_start = [loop.time()]
    lanes: list[asyncio.Task[None]] = []
    stopped = False

    async def lane() -> None:
        nonlocal stopped
        for index, item in source:  # the shared iterator hands each element to one lane
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
                lane_task = asyncio.current_task()
                if lane_task is not None and lane_task.cancelling():
                    raise  # the window is being cancelled
                # The element raised CancelledError itself: its failure. (Re-raised, it
                # would end this lane as cancelled, which the TaskGroup ignores: the
                # element, and the lane's remaining elements, would vanish from the results.)
                outcome = ElementOutcome(index, False, error=cancelled)
            except Withdrawn:
                return
            except Exception as error:
                outcome = ElementOutcome(index, False, error=error)
            outcomes[index] = outcome
            if until is not None and not stopped and until.holds(outcome):
                stopped = True
                if until.cancel_rest:
                    for other in lanes:
                        if other is not asyncio.current_task():
                            other.cancel()
                else:
                    await until.settle()

    width = min(concurrency or len(elements), len(elements))
    if width:
        async with asyncio.TaskGroup() as group:
            for _ in range(width):
                lanes.append(group.create_task(lane()))
    return [o for o in outcomes if o is not None]


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
        ExceptionGroup: elements failed and ``return_exceptions`` is false; it holds every
            element's error (each noted with its index).
    """
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
