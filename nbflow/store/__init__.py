"""Durable state: where runs, attempts, events, results and flow versions are kept.

A store observes runs (it is fed their events by a per-run
:class:`~nbflow.store.recorder.Recorder`) and answers the questions resume, the cache and
history ask. :class:`StateStore` is the protocol; :class:`~nbflow.store.sqlite.SQLiteStore`
(the default, ``.nbflow/nbflow.db`` under the working directory) and
:class:`~nbflow.store.memory.MemoryStore` implement it.

Choosing a flow's store (:func:`resolve_store`): ``Flow(store="default")`` means the
``NBFLOW_STORE`` environment variable when set (a path; ``"none"`` or ``""`` for no store;
``":memory:"`` for one process-wide :class:`MemoryStore`), else ``.nbflow/nbflow.db`` under
the current working directory. A path string or :class:`os.PathLike`, a store object, or
None (no store) may be given instead.

Trust: a store holds pickled results. It is local data you wrote yourself, like a notebook's
own files; never open a store file from someone else, since loading a result unpickles it.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import StoreError
from .keys import StoreWarning

if TYPE_CHECKING:
    from .memory import MemoryStore
    from .rows import ResultRow
    from .sqlite import SQLiteStore

DEFAULT_PATH = os.path.join(".nbflow", "nbflow.db")
ENV = "NBFLOW_STORE"


@runtime_checkable
class StateStore(Protocol):
    """What nbflow needs from a store.

    Writing: ``submit(item)`` takes one record (a run context, an event, a cache note) and
    must be O(1) and never block, since it runs on the event loop; ``flush()`` blocks until
    every record submitted so far is durable; an optional ``settle()`` blocks only until they
    are checked (results pickled, warnings known), which is what a run waits for. Reading:
    runs, attempts, events, results, cache lookups, blobs and flow versions, each described on
    :class:`~nbflow.store.sqlite.SQLiteStore`.
    """

    location: str
    timeout: float

    def submit(self, item: Any) -> None:
        """Take one record; O(1), never blocks."""

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything submitted is written; raise StoreError if it cannot be."""

    def take_warnings(self, run_id: str) -> list[str]:
        """Warnings kept about ``run_id`` (a result that could not be pickled...)."""

    def knows_version(self, flow: str, version: str) -> bool:
        """Whether this flow version is recorded already."""

    def runs(self, flow: str | None = None) -> list[dict[str, Any]]:
        """Every run (of ``flow``), oldest first."""

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's record, or None."""

    def last_run(self, flow: str) -> str | None:
        """Id of the most recently started run of ``flow``."""

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of a run."""

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """A run's event log in order."""

    def results(self, run_id: str) -> dict[str, ResultRow]:
        """Task -> result record, for the tasks of a run that succeeded."""

    def find_cached(self, key: str, since: float | None = None) -> ResultRow | None:
        """Newest stored result with this cache key (created at or after ``since``)."""

    def load(self, digest: str) -> bytes | None:
        """A pickled result by digest; ``pack:<id>``: a pickled list of packed results."""

    def versions(self, flow: str) -> list[dict[str, Any]]:
        """Recorded versions of a flow, oldest first."""

    def version(self, version: str, flow: str | None = None) -> dict[str, Any] | None:
        """One recorded version by (a prefix of) its hash: spec and sources."""

    def close(self) -> None:
        """Release what this handle holds."""


_handles: dict[str, Any] = {}
_memory: list[Any] = []
_lock = threading.Lock()


def default_location() -> str | None:
    """Where ``store="default"`` points now: ``NBFLOW_STORE`` or ``.nbflow/nbflow.db``.

    Returns None when ``NBFLOW_STORE`` is ``"none"``, ``"off"`` or empty (no store).
    """
    env = os.environ.get(ENV)
    if env is not None:
        if env.strip().lower() in ("", "none", "off", "0"):
            return None
        return env
    return os.path.join(os.getcwd(), DEFAULT_PATH)


def resolve_store(value: Any) -> StateStore | None:
    """Turn a flow's ``store=`` value into a store (or None for no store).

    ``"default"`` -> :func:`default_location`; a path -> the process's
    :class:`~nbflow.store.sqlite.SQLiteStore` for that file (one per file); ``":memory:"`` ->
    the process's shared :class:`MemoryStore`; a store object -> itself; None -> None.

    Raises:
        StoreError: the file cannot be used (corrupted, locked, from a newer nbflow...).
        TypeError: ``value`` is none of the above.
    """
    if value is None:
        return None
    if isinstance(value, str) and value == "default":
        value = default_location()
        if value is None:
            return None
    if isinstance(value, str | os.PathLike):
        return open_store(value)
    if isinstance(value, StateStore):
        return value
    raise TypeError(
        f"store must be a path, a store object (SQLiteStore, MemoryStore), 'default' or "
        f"None, got {type(value).__name__}: {value!r}"
    )


def open_store(path: str | os.PathLike[str]) -> StateStore:
    """The process's store handle for ``path`` (``":memory:"``: the shared MemoryStore).

    Raises:
        StoreError: as :class:`~nbflow.store.sqlite.SQLiteStore`.
    """
    text = os.fspath(path)
    if text == ":memory:":
        with _lock:
            if not _memory:
                from .memory import MemoryStore

                _memory.append(MemoryStore())
            return _memory[0]
    location = os.path.abspath(os.path.expanduser(text))
    with _lock:
        handle = _handles.get(location)
        if handle is not None and not os.path.exists(location):
            handle.close()  # the file was deleted: start a new one
            from .writer import close_writer

            close_writer(location, timeout=1.0)
            handle = None
        if handle is None:
            from .sqlite import SQLiteStore

            handle = _handles[location] = SQLiteStore(location)
        return handle


def close_all() -> None:
    """Flush and close every store this process opened (tests call this between tests)."""
    from .writer import close_all as close_writers

    with _lock:
        for handle in _handles.values():
            handle.close()
        _handles.clear()
        _memory.clear()
    close_writers()


def __getattr__(name: str) -> Any:
    if name == "SQLiteStore":
        from .sqlite import SQLiteStore

        return SQLiteStore
    if name == "MemoryStore":
        from .memory import MemoryStore

        return MemoryStore
    raise AttributeError(f"module 'nbflow.store' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PATH",
    "ENV",
    "MemoryStore",
    "SQLiteStore",
    "StateStore",
    "StoreError",
    "StoreWarning",
    "close_all",
    "default_location",
    "open_store",
    "resolve_store",
]
