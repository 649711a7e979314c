"""Running coroutines from synchronous code, inside or outside a running event loop.

In a Jupyter kernel the event loop is already running, so ``asyncio.run`` refuses to start.
:func:`run_blocking` then re-enters the kernel's own loop with ``nest_asyncio2`` (the
maintained fork of ``nest_asyncio``), applied once and only when needed, never at import:
the flow's tasks, and the widget updates they cause, keep running on the kernel's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
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


def ensure_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` re-entrant with nest_asyncio2 (once per loop)."""
    with _lock:
        if id(loop) in _patched:
            return
        import nest_asyncio2

        nest_asyncio2.apply(loop)
        _patched.add(id(loop))


def run_blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, from sync code.

    Without a running loop this is ``asyncio.run``, which also waits for runs that ``coro``
    started in the background (chained flows) before the loop closes. Inside one (a notebook
    cell), the running loop is re-entered, so the coroutine runs on the kernel's loop.
    """
    loop = running_loop()
    if loop is None:
        return asyncio.run(_then_drain(coro))
    ensure_reentrant(loop)
    return loop.run_until_complete(coro)
