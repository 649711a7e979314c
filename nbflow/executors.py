"""Executors run one call of a task function; the engine decides what and when.

An executor is any object with::

    async def call(self, task: str, fn, kwargs: dict, *, is_async: bool, priority: int) -> Any
    def close(self) -> None        # optional

:class:`LocalExecutor` (the default) awaits async functions on the event loop and runs sync
functions in a thread pool, so a blocking function never stalls the loop (or the notebook).
``nbflow.dask.DaskExecutor`` runs calls on a Dask cluster instead.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class LocalExecutor:
    """Async functions on the loop; sync functions on a thread pool of ``threads`` threads.

    A sync call that times out or is cancelled keeps running in its thread until it returns
    (Python cannot stop a thread); its result is then discarded.
    """

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or 32
        self._pool: ThreadPoolExecutor | None = None

    def _threadpool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="nbflow")
        return self._pool

    async def call(
        self,
        task: str,
        fn: Callable[..., Any],
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        priority: int = 0,
    ) -> Any:
        """Run ``fn(**kwargs)`` and return its result (awaiting it if it is awaitable)."""
        if is_async:
            return await fn(**kwargs)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, **kwargs)
        result = await loop.run_in_executor(self._threadpool(), call)
        if inspect.isawaitable(result):
            result = await result
        return result

    def close(self) -> None:
        """Release the threads (without waiting for calls that outlived their timeout)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
