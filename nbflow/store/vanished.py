"""When the store's files go while it is in use: noticing it, and what a run is told.

A user may delete a store's files (``!rm -rf .nbflow`` in another cell), move them, or put
another file in their place while the writer has the database open. SQLite goes on writing
into the file it opened (on Linux, an unlinked file nobody can read again), so every record
would be lost in silence. So the writer (:mod:`nbflow.store.writer`) compares, before each
transaction, the file at its path with the one it opened (:func:`file_identity`: device and
inode, one ``stat``); a run whose records went into a file that is gone is told
:func:`replaced_error`, and the writer opens the file now at the path for the runs to come.
A run's result files deleted with their directory while it went on are found at its end
(:func:`lost_files`), and :func:`forget_files` stops the cache offering them.
"""

from __future__ import annotations

import os
import sqlite3

from ..errors import StoreError
from .codecs import Files
from .schema import transaction

_CLEARING = (
    "To clear a store, delete its files while no run is going on, or remove old runs with "
    "nf.prune()."
)


def file_identity(path: str) -> tuple[int, int] | None:
    """The device and inode of the file at ``path`` (None: there is none).

    Raises:
        OSError: it cannot be looked at (a directory without permission).
    """
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return found.st_dev, found.st_ino


def replaced_error(path: str) -> StoreError:
    """What a run whose records went into a store file that is gone is told."""
    return StoreError(
        f"the store file {path} was deleted or replaced while the run went on: this run's "
        "records are lost (SQLite went on writing into the file it had opened). The next runs "
        f"record in the file now at {path} (a new, empty store if it was deleted): run the flow "
        f"again to record it. {_CLEARING}"
    )


def lost_files(files: Files, written: list[tuple[str, str]]) -> tuple[StoreError, list[str]] | None:
    """Of the result files a run wrote (``(task, file)``), those that are gone: the error its
    run is told and the files (None: none is gone)."""
    gone = [(task, file) for task, file in written if not files.path(file).exists()]
    if not gone:
        return None
    tasks = sorted({task for task, _ in gone})
    shown = ", ".join(map(repr, tasks[:5])) + (f" and {len(tasks) - 5} more" * (len(tasks) > 5))
    error = StoreError(
        f"the store's result files {files.root} were deleted while the run went on: the stored "
        f"results of {shown} are lost (their files are gone; the rest of the run is recorded). "
        f"Resume and the cache run those tasks again. {_CLEARING}"
    )
    return error, sorted({file for _, file in gone})


def forget_files(con: sqlite3.Connection, files: list[str]) -> None:
    """Remove the cache entries of results stored in ``files`` (they are gone; a lookup
    would find them and miss with a warning) and the files' rows.

    Raises:
        sqlite3.Error: the database refused.
    """
    marks = ", ".join("?" * len(files))
    with transaction(con):
        con.execute(
            "DELETE FROM cache_entries WHERE (cache_key, created, run_id) IN ("
            "SELECT c.cache_key, c.created, c.run_id FROM cache_entries c "
            "JOIN records p ON p.id = c.pack "
            f"WHERE json_extract(p.meta, '$[' || c.item || '][2]') IN ({marks}))",
            files,
        )
        con.execute(f"DELETE FROM result_files WHERE path IN ({marks})", files)
