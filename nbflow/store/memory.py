"""``MemoryStore``: the store in a private in-memory SQLite database, for tests and throwaway
sessions.

Same schema, projection, queries and semantics as :class:`~nbflow.store.sqlite.SQLiteStore`
(results are pickled, so a cached result is a copy), but nothing survives the process. It has
no writer thread: records wait in a queue and are written in the thread that flushes, which
the recorder does when a run finishes, and every read does first.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from .base import BaseStore
from .rows import Batch
from .sqlite import SQLiteStore, _migrate, transaction, write_batch
from .writer import Writer


class _MemorySink:
    """The in-memory database: written by the writer, read by the store, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.con = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.con.row_factory = sqlite3.Row
        with transaction(self.con):
            _migrate(self.con, ":memory:")

    def write(self, batch: Batch) -> None:
        with self.lock, transaction(self.con):
            write_batch(self.con, batch)

    def known_versions(self) -> set[tuple[str, str]]:
        with self.lock:
            rows = self.con.execute("SELECT flow, version FROM flow_versions").fetchall()
        return {(r[0], r[1]) for r in rows}

    def close(self) -> None:
        pass


class MemoryStore(SQLiteStore):
    """A :class:`~nbflow.store.StateStore` in memory (lost when the process ends).

    Args:
        max_result_bytes: a pickled result larger than this is not stored (with a warning).
    """

    def __init__(self, *, max_result_bytes: int = 512 * 2**20) -> None:
        self._sink = sink = _MemorySink()
        writer = Writer(
            lambda: sink,
            location=f"memory:{id(self):x}",
            max_result_bytes=max_result_bytes,
            threaded=False,
        )
        BaseStore.__init__(self, writer, writer.location, 10.0)

    def _query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        self.flush()
        with self._sink.lock:
            return self._sink.con.execute(sql, params).fetchall()

    def close(self) -> None:
        """Nothing to release (the database lives as long as this object)."""
