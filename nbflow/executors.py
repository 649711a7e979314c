"""Executors run one call of a task function; the engine decides what and when.

An executor is any object with::

    async def call(self, task: str, fn, kwargs: dict, *, is_async: bool, priority: int) -> Any
    def close(self) -> None        # optional

:class:`LocalExecutor` (the default) awaits async functions on the event loop and runs sync
functions in threads, so a blocking function never stalls the loop (or the notebook).
``nbflow.dask.DaskExecutor`` runs calls on a Dask cluster instead.

A sync call waits for a free thread in a queue. A call cancelled while it waits (its run
stopped, its attempt timed out) never starts; one cancelled while it runs goes on in its
thread until it returns (Python cannot stop a thread), its result discarded: a long loop
can check ``nf.context().cancelled`` and return early. ``call(..., started=...)`` is told,
on the loop, when the body starts, so a timeout measures the body, not the wait; and
``call(..., began=[])`` gets the ``time.monotonic()`` of that moment appended (without waking
the loop), so the attempt's row in the timeline starts there, not in the queue.

Threads: each run that is not given an executor makes its own :class:`LocalExecutor`,
whose threads start on demand (at most ``max_workers``, else 32), are reused call after
call, and stop when the run ends (:meth:`LocalExecutor.close`, which does not wait): at once
when idle, else as soon as the call that outlived its run returns. So a process that ran
any number of flows is back to its own threads once those calls have returned
(tests/test_cancellation.py counts them around 100 cancelled runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .context import current

# A job for a worker thread: (loop, future, context, fn, kwargs, started, began); None tells
# a worker to stop.
_Job = tuple[
    asyncio.AbstractEventLoop,
    asyncio.Future[Any],
    contextvars.Context,
    Any,
    dict[str, Any],
    Callable[[], None] | None,
    list[float] | None,
]


class _Completions:
    """Finished calls of one event loop, handed back in batches.

    A worker appends its outcome and wakes the loop only when no wake-up is pending yet, so
    a burst of short sync tasks costs one ``call_soon_threadsafe`` (a self-pipe write) per
    batch instead of one per call, and no ``concurrent.futures.Future`` is made at all.
    """

    __slots__ = ("done", "loop", "pending")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: deque[tuple[asyncio.Future[Any], bool, Any]] = deque()
        self.pending = False

    def add(self, future: asyncio.Future[Any], ok: bool, value: Any) -> None:
        self.done.append((future, ok, value))
        if not self.pending:
            self.pending = True
            try:
                self.loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop is closed: nobody waits for these results
                self.pending = False

    def drain(self) -> None:
        # Clear the flag before draining: an outcome appended meanwhile schedules a new drain.
        self.pending = False
        done = self.done
        while done:
            future, ok, value = done.popleft()
            if future.done():  # cancelled or timed out while the thread ran
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _dropped(future: asyncio.Future[Any], context: contextvars.Context) -> bool:
    """Whether a queued call must not start: the task awaiting it was cancelled, or the
    engine's attempt it belongs to is over (its run is stopping: the awaiting task is about
    to be cancelled, one loop turn later)."""
    if future.cancelled():
        return True
    attempt = context.get(current)
    if attempt is None:  # a call from outside a run
        return False
    engine, task, number, element = attempt[:4]
    return bool(engine.attempt_over(task, element, number))


class LocalExecutor:
    """Async functions on the loop; sync functions on up to ``threads`` worker threads.

    A sync call that times out or is cancelled keeps running in its thread until it returns
    (Python cannot stop a thread); its result is then discarded.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or 32
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._completions: dict[asyncio.AbstractEventLoop, _Completions] = {}

    async def call(
        self,
        task: str,
        fn: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        priority: int = 0,
        started: Callable[[], None] | None = None,
        began: list[float] | None = None,
    ) -> Any:
        """Run ``fn(**kwargs)`` and return its result (awaiting it if it is awaitable).

        ``started()`` is called on the loop when a sync call's body starts in its thread;
        ``began``, a list, gets the ``time.monotonic()`` of that moment appended (by the
        thread: read it once the call has returned or raised).
        """
        if is_async:
            return await fn(**kwargs)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._submit((loop, future, contextvars.copy_context(), fn, kwargs, started, began))
        result = await future
        if inspect.isawaitable(result):
            result = await result
        return result

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._workers) < self.threads:
                worker = threading.Thread(
                    target=self._work, name=f"nbflow-{len(self._workers)}", daemon=True
                )
                self._workers.append(worker)
                worker.start()
        self._jobs.put(job)

    def _work(self) -> None:
        jobs, completions = self._jobs, self._completions
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, future, context, fn, kwargs, started, began = job
            if started is not None and not _dropped(future, context):
                # Told before the last check, not after: telling the loop writes to its
                # self-pipe, which lets the loop run, and a call cancelled then (its run
                # ended) must not start.
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
                    loop.call_soon_threadsafe(started)
            dropped = _dropped(future, context)
            if not dropped:  # the check and the call: a few bytecodes apart, no system call
                if began is not None:  # (list.append: atomic, read after the call returns)
                    began.append(time.monotonic())
                try:
                    value, ok = context.run(fn, **kwargs), True
                except BaseException as error:  # handed to the awaiting task
                    value, ok = error, False
            del job, fn, kwargs, started, began, context
            # Idle before handing the result back: the loop may submit the next call at once,
            # and it should find this thread rather than start another.
            with self._lock:
                self._idle += 1
            if dropped:  # nobody waits for it: its awaiting task is cancelled, or will be
                del future
                continue
            batch = completions.get(loop)
            if batch is None:
                batch = completions.setdefault(loop, _Completions(loop))
            batch.add(future, ok, value)
            del future, value

    def close(self) -> None:
        """Stop the worker threads (without waiting for calls that outlived their timeout)."""
        for _ in self._workers:
            self._jobs.put(None)
        self._workers.clear()
        with self._lock:
            self._idle = 0
        self._completions.clear()
