"""``MemoryStore``: a store that lasts as long as the process, for tests and throwaway work.

It is a :class:`~nbflow.store.sqlite.SQLiteStore` on a file in a temporary directory (the
same schema, writer, queries and semantics; results are serialised, so a cached result is a
copy), removed when the store is closed or garbage-collected, or when the process ends.
"""

from __future__ import annotations

import tempfile
import weakref
from typing import Any

from .sqlite import SQLiteStore
from .writer import close_writer


class MemoryStore(SQLiteStore):
    """A :class:`~nbflow.store.StateStore` that nothing outlives the process of.

    Args:
        **options: as for :class:`~nbflow.store.sqlite.SQLiteStore` (but the path).
    """

    def __init__(self, **options: Any) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="nbflow-memory-")
        super().__init__(f"{self._directory.name}/memory.db", **options)
        self._cleanup = weakref.finalize(self, _remove, self.location, self._directory)

    def close(self) -> None:
        """Stop writing and remove the temporary files."""
        super().close()
        self._cleanup()


def _remove(location: str, directory: tempfile.TemporaryDirectory[str]) -> None:
    close_writer(location, timeout=10.0)
    directory.cleanup()
