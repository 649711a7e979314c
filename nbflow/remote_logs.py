"""What a task writes on another machine (a Dask worker): captured there, sent to the kernel.

The kernel's executor gives each call a :class:`Observed` (the run, the task, the attempt,
the cap); on the worker, :func:`observed_call` runs the call with a stand-in for the engine
in :data:`nbflow.context.current` (:class:`WorkerAttempt`), so the hooks of
:mod:`nbflow.capture` (installed on the worker for the call) lead prints and ``logging``
records to a :class:`WorkerOutput`, and ``nf.context()``, ``ctx.log``, ``ctx.progress`` and
``nf.track`` work as in the kernel. The worker applies the same cap and sends what is new
with ``send(message)`` (a Dask event: a plain dict) at most every ``interval`` seconds while
the task writes, and the rest as the call ends, before its result is reported, so the kernel
has an attempt's whole log when the attempt ends. Line times are wall-clock seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from . import capture
from .context import current
from .lines import AttemptLog, LogCapture, record_text


@dataclass(frozen=True, slots=True)
class Observed:
    """What a worker needs to capture one attempt's output (pickled with the call)."""

    run_id: str
    flow: str
    task: str
    attempt: int
    element: int | None
    cap: LogCapture | None
    echo: bool
    #: a loop task's iteration (see :data:`nbflow.context.current`).
    iteration: int = 0


class _Plan:
    __slots__ = ("flow_name",)

    def __init__(self, flow_name: str) -> None:
        self.flow_name = flow_name


class WorkerAttempt:
    """Stands in for the engine in ``nf.context()`` on a worker: the run's id, the flow's
    name, the attempt's output; an attempt there is never over early (``cancelled`` is
    False: the kernel cancels the Dask task itself)."""

    __slots__ = ("output", "plan", "run_id")
    #: Signals, ``ctx.cancel()`` and ``ctx.finish()`` are the kernel's (TaskContext refuses).
    on_worker = True

    def __init__(self, observed: Observed, output: WorkerOutput) -> None:
        self.run_id = observed.run_id
        self.plan = _Plan(observed.flow)
        self.output = output

    def attempt_over(self, task: str, element: int | None, attempt: int) -> bool:
        return False


class WorkerOutput:
    """The output of one attempt on a worker (the interface of
    :class:`~nbflow.logs.RunOutput` that the hooks use), sent with ``send``."""

    def __init__(self, observed: Observed, send: Callable[[dict[str, Any]], None]) -> None:
        self.cap = observed.cap
        self.echo = observed.echo
        self.interval = (observed.cap or LogCapture()).interval
        self._send = send
        self._log = AttemptLog()
        self._lock = threading.Lock()
        self._sent_at = time.monotonic()

    def write(self, key: tuple[Any, ...], stream: str, text: str) -> bool:
        """As :meth:`nbflow.logs.RunOutput.write`."""
        cap = self.cap
        if cap is None or type(text) is not str:
            return False
        with self._lock:
            self._log.write(stream, text, time.time, cap)
        self._maybe_send()
        return not self.echo

    def record(self, key: tuple[Any, ...], record: Any) -> bool:
        """As :meth:`nbflow.logs.RunOutput.record`."""
        cap = self.cap
        if cap is None:
            return False
        with self._lock:
            self._log.add(time.time(), record.levelname, record_text(record), record.name, cap)
        self._maybe_send()
        if self.echo:
            capture.last_resort(record)
        return True

    def progress(self, key: tuple[Any, ...], done: float, total: float | None) -> None:
        """As :meth:`nbflow.logs.RunOutput.progress`."""
        self._log.progress = (done, total)
        self._log.news = True
        self._maybe_send()

    def _maybe_send(self) -> None:
        if time.monotonic() - self._sent_at >= self.interval:
            self.send()

    def send(self, final: bool = False) -> None:
        """Send what is new (``final``: everything, as the call ends)."""
        log = self._log
        with self._lock:
            self._sent_at = now = time.monotonic()
            if final and self.cap is not None:
                lines, dropped = log.finish(time.time(), self.cap)
                latest = None
            else:
                taken = log.take(now) if log.news else None
                lines, dropped, latest = taken if taken is not None else ([], log.reported, None)
            progress = log.progress if log.progress != log.sent else None
            log.sent = log.progress
        message: dict[str, Any] = {}
        if lines or latest is not None or (final and dropped):
            message.update(lines=[list(line) for line in lines], dropped=dropped, latest=latest)
        if progress is not None:
            message["progress"] = list(progress)
        if message:
            try:
                self._send(message)
            except Exception:  # the worker is closing: what it cannot send is lost, not the task
                self.cap = None


@contextmanager
def observed_call(
    observed: Observed | None, send: Callable[[dict[str, Any]], None] | None, worker: str | None
) -> Iterator[None]:
    """Run the block (one call of a task's function on a worker) with its output captured
    and sent (nothing without ``observed`` or ``send``)."""
    if observed is None or send is None:
        yield
        return
    output = WorkerOutput(observed, send)
    here = (WorkerAttempt(observed, output), observed.task, observed.attempt,
            observed.element, worker, observed.iteration)  # fmt: skip
    if observed.cap is not None:
        capture.activate()
    token = current.set(here)
    try:
        yield
    finally:
        current.reset(token)
        if observed.cap is not None:
            capture.deactivate()
        output.send(final=True)
