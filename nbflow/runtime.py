"""Running a coroutine to its end from synchronous code, inside or outside a running loop.

In a Jupyter kernel the event loop is already running (the cell runs in one of its
callbacks), so ``asyncio.run`` refuses to start. :func:`run_blocking` then *re-enters* the
kernel's own loop: it turns the loop's crank itself (one iteration as ``_run_once`` does it)
until the coroutine is done, so the flow's tasks, and the widget updates they cause, run on
the kernel's loop. While it does, the cell's own asyncio task is set aside (a loop runs one
task at a time) and put back after; so are the callbacks that cannot run inside the cell's
Context (the cells queued behind it, which then run in turn). Nothing is patched: the loop,
its class and asyncio are left as they were. (A loop that is not a plain ``asyncio`` selector
loop falls back to ``nest_asyncio2``, applied to that loop when first needed.)

Kernel -> Interrupt (SIGINT) during :func:`run_blocking` cancels the run cleanly instead of
raising in the middle of it: running tasks are cancelled and their cleanup runs, queued work
never starts, and the coroutine returns (the run, ``cancelled``). A second interrupt while
that cleanup is still going on raises ``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks as asyncio_tasks
import contextlib
import contextvars
import heapq
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_patched: set[int] = set()
_lock = threading.Lock()
#: Runs started in the background by other runs (chained flows), per loop.
_background: set[asyncio.Future[Any]] = set()


def keep_alive(task: asyncio.Future[Any]) -> None:
    """Register a background run so a script's blocking ``run()`` waits for it to end.

    Without this, ``asyncio.run`` would cancel a chained run the moment its trigger returned.
    """
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _then_drain(coro: Coroutine[Any, Any, T]) -> T:
    result = await coro
    loop = asyncio.get_running_loop()
    while pending := [t for t in list(_background) if t.get_loop() is loop and not t.done()]:
        await asyncio.wait(pending)
    return result


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def run_blocking(
    coro: Coroutine[Any, Any, T], *, on_interrupt: Callable[[], None] | None = None
) -> T:
    """Run ``coro`` to completion and return its result, from sync code.

    Without a running loop this is ``asyncio.run``, which also waits for runs that ``coro``
    started in the background (chained flows) before the loop closes. Inside one (a notebook
    cell), the running loop is re-entered, so the coroutine runs on the kernel's loop.

    ``on_interrupt()`` is called (on the loop) when SIGINT arrives while the coroutine runs
    in a running loop of the main thread (a kernel): it should make the coroutine end soon
    (cancel the run). Without a running loop, ``asyncio.run``'s own handling applies: SIGINT
    cancels the coroutine, then ``KeyboardInterrupt`` is raised.
    """
    loop = running_loop()
    if loop is None:
        return asyncio.run(_then_drain(coro))
    with _interrupts_call(on_interrupt, loop):
        if isinstance(loop, asyncio.BaseEventLoop) and hasattr(loop, "_run_once"):
            return _reenter(loop, coro)
        _ensure_reentrant(loop)
        return loop.run_until_complete(coro)


def _reenter(loop: asyncio.BaseEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Turn ``loop``'s crank until ``coro`` is done (see the module docstring).

    The outer ``_run_once`` that called us is part-way through the batch of callbacks it took
    from ``loop._ready``; the callbacks we run here may consume some of them. Those we took
    are replaced by no-ops at the end, so the outer loop finds as many as it expects.

    A callback whose ``contextvars.Context`` is entered further up the stack cannot run
    until we return (``Context.run`` refuses to enter a context twice). ipykernel 7 runs
    every shell message in one shared Context, so the cells queued behind this one (Run
    All) are such callbacks: they are set aside and put back, first in line, at the end,
    when they run in turn as they would have without us.
    """
    expected = len(loop._ready)  # type: ignore[attr-defined]
    current = asyncio_tasks._current_tasks  # type: ignore[attr-defined]  # per loop
    outer = current.pop(loop, None)
    deferred: list[asyncio.Handle] = []
    task = loop.create_task(coro)
    try:
        while not task.done():
            _turn(loop, deferred)
    finally:
        if outer is not None:
            current[loop] = outer
        ready = loop._ready  # type: ignore[attr-defined]
        ready.extendleft(reversed(deferred))
        for _ in range(expected - len(ready)):
            loop.call_soon(_nothing)
    return task.result()


def _turn(loop: Any, deferred: list[asyncio.Handle]) -> None:
    """One iteration of ``loop`` (``BaseEventLoop._run_once``, which asyncio keeps stable
    since 3.4), except that callbacks whose Context is entered go to ``deferred``."""
    ready, scheduled = loop._ready, loop._scheduled
    while scheduled and scheduled[0]._cancelled:
        loop._timer_cancelled_count -= 1
        heapq.heappop(scheduled)._scheduled = False
    if ready or loop._stopping:
        timeout: float | None = 0
    elif scheduled:
        timeout = min(max(0.0, scheduled[0]._when - loop.time()), _MAX_SELECT)
    else:
        timeout = _MAX_SELECT  # a wake-up now and then costs nothing; no wait is unbounded
    loop._process_events(loop._selector.select(timeout))
    end_time = loop.time() + loop._clock_resolution
    while scheduled and scheduled[0]._when < end_time:
        handle = heapq.heappop(scheduled)
        handle._scheduled = False
        ready.append(handle)
    for _ in range(len(ready)):
        handle = ready.popleft()
        if handle._cancelled:
            continue
        if _entered(handle._context):
            deferred.append(handle)
        else:
            handle._run()
    handle = None  # break the cycle an exception's traceback would make


def _entered(context: contextvars.Context | None) -> bool:
    """Whether ``context`` is entered up the stack (a Context has no flag for it)."""
    if context is None:
        return False
    try:
        context.run(int)
    except RuntimeError:
        return True
    return False


_MAX_SELECT = 24 * 3600.0


def _nothing() -> None:
    pass


def _ensure_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` re-entrant with nest_asyncio2 (once per loop): for loops that are not
    ``asyncio``'s own, whose crank we cannot turn."""
    with _lock:
        if id(loop) in _patched:
            return
        import nest_asyncio2

        nest_asyncio2.apply(loop)
        _patched.add(id(loop))


@contextlib.contextmanager
def _interrupts_call(
    on_interrupt: Callable[[], None] | None, loop: asyncio.AbstractEventLoop
) -> Iterator[None]:
    """While the block runs in the main thread, SIGINT calls ``on_interrupt`` the first time
    and raises ``KeyboardInterrupt`` the second (the previous handler comes back after)."""
    if on_interrupt is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = False

    def handle(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt
        interrupted = True
        loop.call_soon_threadsafe(on_interrupt)  # not here: the loop may be mid-callback

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
