"""Durable state: where runs, events, results, the cache and flow versions are kept.

A store observes runs (each run's :class:`~nbflow.store.recorder.Recorder` hands it the
run's events and results) and answers what resume, the cache, ``run.why()`` and history
ask. :class:`~nbflow.store.sqlite.SQLiteStore` (the default, ``.nbflow/nbflow.db`` under the
working directory) is the store; :class:`~nbflow.store.memory.MemoryStore` is one that lasts
as long as the process.

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
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .keys import StoreWarning

if TYPE_CHECKING:
    from .memory import MemoryStore
    from .sqlite import SQLiteStore

    StateStore = SQLiteStore

DEFAULT_PATH = os.path.join(".nbflow", "nbflow.db")
ENV = "NBFLOW_STORE"


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


def resolve_store(value: Any) -> SQLiteStore | None:
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
    from .sqlite import SQLiteStore

    if isinstance(value, SQLiteStore):
        return value
    raise TypeError(
        f"store must be a path, a store object (SQLiteStore, MemoryStore), 'default' or "
        f"None, got {type(value).__name__}: {value!r}"
    )


def open_store(path: str | os.PathLike[str]) -> SQLiteStore:
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
        # (A handle whose file was deleted or replaced follows the writer to the new one:
        # see SQLiteStore.ensure_open. Its writer is not stopped: a run may be writing.)
        handle = _handles.get(location)
        if handle is None:
            from .sqlite import SQLiteStore

            handle = _handles[location] = SQLiteStore(location)
        return handle


def close_all() -> None:
    """Flush and close every store this process opened (tests call this between tests)."""
    from .writer import close_all as close_writers

    with _lock:
        for handle in [*_handles.values(), *_memory]:
            handle.close()
        _handles.clear()
        _memory.clear()
    close_writers()


def __getattr__(name: str) -> Any:
    if name in ("SQLiteStore", "StateStore"):
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
