"""What a running task writes, led to its attempt: the process-wide half of per-task logs.

While at least one run captures logs (:func:`activated`), ``sys.stdout`` and ``sys.stderr``
are thin proxies and the root logger has one more handler. Each looks up the running
attempt in the context variable :data:`nbflow.context.current` (set per attempt; it
follows asyncio tasks and is copied into a sync task's thread), and hands the text or the
record to that attempt's sink, its engine's ``output`` (a :class:`~nbflow.logs.RunOutput`).
Writes made outside any task, or for a run that does not capture, go on to the stream they
would have reached without nbflow, in the same thread and context (so ipykernel still
sends them to the right cell).

When the last run ends, both are taken away again: the streams are put back, the handler
removed. Nothing is installed while no run is active. One exception, by design: when
something else replaced ``sys.stdout`` after us and still holds our proxy (IPython's
``capture_output``, ``contextlib.redirect_stdout`` left open), putting the old stream back
would undo *its* change, so the proxy stays where it is, switched off: a pass-through that
costs one attribute test per write, and that the next run switches on again rather than
wrapping it twice.

``nf.context().log`` is a logger of the task's own (:func:`task_logger`), whose records go
to the attempt's log first, whatever the configuration says.

The user's logging configuration is left alone: the handler is *added* to the root logger
(records that do not propagate to it, or that a logger's level filters out, are not
captured, as with any handler), and records reach the user's own handlers as before.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
from typing import Any

from .context import current

log = logging.getLogger("nbflow.capture")

#: The attribute a record gets once an attempt's log has it (``ctx.log`` records reach the
#: root logger after their own handler took them: they are not taken twice).
TAKEN = "nbflow_taken"


class StreamProxy:
    """``sys.stdout`` or ``sys.stderr`` while runs capture: each write goes to the running
    attempt's log, or on to ``original``. Everything else is the original stream's."""

    # No __slots__: IPython replaces ``sys.stdout.write`` on the stream object for the length
    # of each cell (to keep a copy of the output), which needs an instance attribute.

    def __init__(self, original: Any, name: str) -> None:
        self._nbflow_original = original
        self._nbflow_name = name
        self._nbflow_on = True

    def write(self, text: str) -> int:
        """Write ``text`` to the running attempt's log (and on, when it echoes)."""
        if self._nbflow_on:
            found = current.get()
            if found is not None:
                output = found[0].output  # the engine's (or a Dask worker's stand-in's)
                if output is not None:
                    try:
                        if output.write(found, self._nbflow_name, text):
                            return len(text)
                    except Exception:  # a print must never fail because of the capture
                        log.debug("nbflow could not capture a write", exc_info=True)
        return self._nbflow_original.write(text)

    def writelines(self, lines: Any) -> None:
        """Write each of ``lines`` (as ``write`` does)."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Flush the original stream (an attempt's log needs no flushing)."""
        self._nbflow_original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nbflow_original, name)

    def __repr__(self) -> str:
        return f"<nbflow capture of {self._nbflow_original!r}>"


class RecordHandler(logging.Handler):
    """The root logger's handler while runs capture: a record logged inside a task goes to
    that attempt's log too (it reaches the user's handlers as before)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Hand ``record`` to the running attempt's log, if it is logged inside a task."""
        if not getattr(record, TAKEN, False):
            take(record)

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: take() is thread-safe, and a lock would make every thread's
        # logging wait for every other's. Outside a task this is one context lookup.
        if current.get() is not None:
            self.emit(record)
        return True


def take(record: logging.LogRecord) -> bool:
    """Give ``record`` to the running attempt's log; whether it was taken."""
    found = current.get()
    if found is None:
        return False
    output = getattr(found[0], "output", None)
    if output is None:
        return False
    try:
        taken = bool(output.record(found, record))
    except Exception:  # logging must never fail because of the capture
        log.debug("nbflow could not capture a log record", exc_info=True)
        return False
    if taken:
        setattr(record, TAKEN, True)
    return taken


def last_resort(record: logging.LogRecord) -> None:
    """Show ``record`` as Python would if our handler were not there: with ``logging``
    left unconfigured, a warning found no handler and ``logging.lastResort`` printed it to
    stderr. (Written to the real stderr, so the attempt does not take it a second time.)"""
    resort = logging.lastResort
    if resort is None or record.levelno < resort.level or _handled_elsewhere(record):
        return
    stream = _proxies.get("stderr")
    target = stream._nbflow_original if stream is not None else sys.stderr
    try:
        target.write(resort.format(record) + "\n")
    except Exception:
        log.debug("nbflow could not show a log record", exc_info=True)


def _handled_elsewhere(record: logging.LogRecord) -> bool:
    """Whether a handler other than ours would take ``record`` (as ``Logger.callHandlers``
    walks the hierarchy)."""
    logger: logging.Logger | None = _registered(record.name)
    while logger is not None:
        for handler in logger.handlers:
            if not isinstance(handler, RecordHandler) and record.levelno >= handler.level:
                return True
        logger = logger.parent if logger.propagate else None
    return False


def _registered(name: str) -> logging.Logger:
    """The logger of that name, or of its nearest registered parent (no logger is made:
    ``ctx.log``'s loggers are not registered, see :func:`nbflow.logs.task_logger`)."""
    known = logging.Logger.manager.loggerDict
    while name:
        found = known.get(name)
        if isinstance(found, logging.Logger):
            return found
        name = name.rpartition(".")[0]
    return logging.getLogger()


# -- nf.context().log -----------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def task_logger(task: str, level: int = logging.INFO) -> logging.Logger:
    """``nf.context().log`` of ``task``: a logger named ``nbflow.task.<task>``.

    It is not registered with ``logging`` (tasks come and go with notebook cells); its
    parent is the registered ``nbflow.task`` logger, so the user's configuration of
    ``nbflow.task``, ``nbflow`` and the root logger applies as to any logger. Its records go
    to the attempt's log first, whatever that configuration says, at ``level`` and above.
    """
    logger = logging.Logger(f"nbflow.task.{task}", level)
    logger.parent = logging.getLogger("nbflow.task")
    logger.addHandler(_TASK_HANDLER)
    return logger


class _TaskHandler(logging.Handler):
    """``ctx.log``'s own handler: its records go to the running attempt's log."""

    def handle(self, record: logging.LogRecord) -> bool:
        take(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        take(record)


_TASK_HANDLER = _TaskHandler()


# -- switching the hooks on and off ------------------------------------------------------

_lock = threading.Lock()
_users = 0
_proxies: dict[str, StreamProxy] = {}
_handler: list[RecordHandler] = []


def activate() -> None:
    """One more run captures: install the hooks if it is the first (see the module)."""
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, StreamProxy):  # ours, left in place: switch it on again
                stream._nbflow_on = True
                _proxies[name] = stream
            elif stream is not None:
                _proxies[name] = proxy = StreamProxy(stream, name)
                setattr(sys, name, proxy)
        handler = RecordHandler()
        _handler[:] = [handler]
        logging.getLogger().addHandler(handler)


def deactivate() -> None:
    """A run stopped capturing: remove the hooks if it was the last (see the module)."""
    global _users
    with _lock:
        _users = max(0, _users - 1)
        if _users:
            return
        for name, proxy in list(_proxies.items()):
            proxy._nbflow_on = False
            if getattr(sys, name) is proxy:
                setattr(sys, name, proxy._nbflow_original)
        _proxies.clear()
        for handler in _handler:
            logging.getLogger().removeHandler(handler)
        _handler.clear()


def active() -> bool:
    """Whether some run captures now (the hooks are installed)."""
    return _users > 0
