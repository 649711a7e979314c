"""``RunHandle``: a run started in the background with ``flow.start()``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .runtime import run_blocking, running_loop
from .signals import SignalError

if TYPE_CHECKING:
    from .engine import Engine
    from .run import Run


class RunHandle:
    """Controls a background run: ``await handle``, ``handle.wait()``, ``handle.cancel()``
    (the run, or one task or region of it).

    The run executes on the loop that was running when ``flow.start()`` was called (the
    kernel's loop in Jupyter), or on a private loop in a background thread when no loop ran.
    """

    def __init__(
        self,
        engine: Engine,
        run: Run,
        task: asyncio.Future[Any] | None = None,
        thread: threading.Thread | None = None,
    ) -> None:
        self.engine = engine
        self.run = run
        self._task = task
        self._thread = thread
        self._observers: list[Any] = []  # widgets re-synced when the run is awaited

    @property
    def run_id(self) -> str:
        """Id of the run (known as soon as the run is created, before it starts)."""
        return self.engine.run_id

    @property
    def status(self) -> str:
        """``pending``, ``running``, ``succeeded``, ``failed`` or ``cancelled``."""
        return self.run.status

    def done(self) -> bool:
        """Whether the run has finished."""
        return self.run.done

    def cancel(self, task: Any = None, *, tag: str | None = None) -> None:
        """Cancel the run: running tasks are cancelled (their cleanup runs), nothing new
        starts; the run ends ``cancelled``. Works at any moment, at once after ``start()``
        too.

        ``cancel("task")`` or ``cancel(tag="region")`` cancels only that task, or every task
        with that tag, and the run goes on: each ends ``cancelled`` and propagates like a
        skip (see :mod:`nbflow.termination`); tasks that finished are left as they are.

        Raises:
            CancelError: no task or tag of that name (with a close match).
        """
        if task is not None or tag is not None:
            what = repr(getattr(task, "name", task)) if tag is None else f"tag={tag!r}"
            self.engine.scope.ask(self.engine, task, tag, None, f"handle.cancel({what})")
            return
        if self.run.done:
            return
        loop = self.engine.loop
        if loop is None or running_loop() is loop:
            self.engine.cancel()
        else:
            loop.call_soon_threadsafe(self.engine.cancel)

    def send(self, signal: str, value: Any = True) -> None:
        """Send ``signal`` (with ``value``) to the run: the tasks waiting for it start, and a
        task that waits for it later takes it (unless it is ``transient``). Works from any
        cell or thread while the run goes on, also before it began (see
        :mod:`nbflow.waits`).

        Raises:
            SignalError: no task of the flow (or of its subflows) waits for ``signal`` (with
                a close match), or the run is over.
        """
        waits = self.engine.waits
        if waits is None:
            raise SignalError(
                f"send({signal!r}): no task of flow {self.run.flow!r} waits for a signal "
                "(wait_for=...)"
            )
        waits.send(self.engine, signal, value, "handle.send")

    def _finished(self) -> Run:
        for observer in self._observers:
            sync = getattr(observer, "sync", None)
            if callable(sync):
                sync()
        return self.run

    def wait(self, timeout: float | None = None) -> Run:
        """Block until the run ends and return it (works inside a running notebook loop).

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the run goes on).
        """
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"run {self.run_id} still running after {timeout}s")
            return self._finished()
        assert self._task is not None
        if not self._task.done():
            task = self._task

            async def waiting() -> None:
                if timeout is None:
                    await asyncio.shield(task)
                else:
                    await asyncio.wait_for(asyncio.shield(task), timeout)

            run_blocking(waiting(), on_interrupt=self.cancel)
        return self._finished()

    def __await__(self) -> Generator[Any, None, Run]:
        if self._thread is not None:
            loop = asyncio.get_running_loop()
            yield from loop.run_in_executor(None, self._thread.join).__await__()
        else:
            assert self._task is not None
            yield from asyncio.shield(self._task).__await__()
        return self._finished()

    def __repr__(self) -> str:
        return f"<RunHandle {self.run.flow!r} {self.status} run_id={self.run_id}>"
