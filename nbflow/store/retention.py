"""Retention: removing old runs, with their events, results, cache entries and files.

``nf.prune(keep_runs=20, older_than="30d")`` removes, per flow, the runs beyond the newest
``keep_runs`` and those that started before ``older_than`` ago (a run still going on is never
removed; one whose process is gone is first marked ``interrupted``, see
:mod:`nbflow.store.liveness`, and goes like any other), and with them everything only they
referred to: their events, their results (a result a kept run reused stays), their cache
entries, and the files no remaining result refers to. Files no row of the store knows (a
process killed while it wrote one, or between writing it and committing its row) are
removed too, once they are :data:`ORPHAN_AGE` seconds old (younger, they may be another
process's write in progress). The database is then ``VACUUM``-ed when a quarter or more of
it is free pages.

A store can also prune by itself: ``SQLiteStore(path, keep_runs=N)`` (default 1,000 per flow;
``NBFLOW_KEEP_RUNS`` sets it, ``none`` for no limit) has the writer remove a flow's oldest
runs whenever a run of it starts and it has more than that (then never more than once per
:data:`AUTO_EVERY` runs).
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .liveness import Own, settle
from .schema import connect, store_error, transaction
from .writer import recording

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

#: A store prunes itself at most once per this many runs of a flow.
AUTO_EVERY = 50
#: Seconds after which a result file that no row refers to is taken for an orphan.
ORPHAN_AGE = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :func:`prune` removed, and the bytes it gave back to the disk."""

    runs: int
    cache_entries: int
    files: int
    bytes_freed: int

    def __str__(self) -> str:
        return (
            f"removed {self.runs} runs, {self.cache_entries} cache entries and {self.files} "
            f"files; {self.bytes_freed / 2**20:.1f} MiB freed"
        )


def keep_runs_option(value: int | str | None) -> int | None:
    """A store's ``keep_runs``: an int, None (no limit), or ``"default"``, which is
    ``NBFLOW_KEEP_RUNS`` (1000 when unset; ``none`` for no limit).

    Raises:
        ValueError: not an int >= 0, None or "default".
        StoreError: ``NBFLOW_KEEP_RUNS`` is not a number (or none).
    """
    if value != "default":
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"keep_runs must be an int >= 0, None or 'default', got {value!r}")
        return value
    found = os.environ.get("NBFLOW_KEEP_RUNS", "1000").strip().lower()
    if found in ("", "none", "off"):
        return None
    try:
        return max(0, int(found))
    except ValueError:
        raise StoreError(
            f"NBFLOW_KEEP_RUNS={found!r}: give a number of runs, or 'none' for no limit"
        ) from None


def seconds(value: float | str | None) -> float | None:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or a number of seconds.

    Raises:
        ValueError: a string of another form.
    """
    if value is None or isinstance(value, int | float):
        return value
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(value))
    if found is None:
        raise ValueError(
            f"older_than={value!r}: give seconds, or a number and a unit: s, m, h, d, w "
            "(e.g. '30d')"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


def doomed(
    con: sqlite3.Connection,
    flows: Iterable[str],
    keep_runs: int | None,
    older_than: float | None,
) -> list[str]:
    """The runs of ``flows`` that :func:`prune` would remove (never one still running)."""
    cutoff = time.time() - older_than if older_than is not None else None
    found: list[str] = []
    for flow in flows:
        rows = con.execute(
            "SELECT run_id, started, status FROM runs WHERE flow = ? "
            "ORDER BY started DESC, rowid DESC",
            (flow,),
        ).fetchall()
        for position, (run_id, started, status) in enumerate(rows):
            if status == "running":
                continue
            old = cutoff is not None and (started or 0) < cutoff
            extra = keep_runs is not None and position >= keep_runs
            if old or extra:
                found.append(run_id)
    return found


def remove_runs(con: sqlite3.Connection, runs: list[str]) -> tuple[int, list[str]]:
    """Delete ``runs`` and what only they refer to, in the caller's transaction; return
    ``(cache entries removed, files no remaining result refers to)``."""
    if not runs:
        return 0, []
    con.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (run_id TEXT PRIMARY KEY)")
    con.execute("DELETE FROM doomed")
    con.executemany("INSERT OR IGNORE INTO doomed VALUES (?)", [(r,) for r in runs])
    entries = con.execute(
        "DELETE FROM cache_entries WHERE run_id IN (SELECT run_id FROM doomed)"
    ).rowcount
    con.execute("DELETE FROM runs WHERE run_id IN (SELECT run_id FROM doomed)")
    # The records of removed runs go, but for the values a remaining run reused (its meta
    # entry names the records row: item 4), which stay until nothing refers to them.
    con.execute(
        "DELETE FROM records WHERE run_id NOT IN (SELECT run_id FROM runs) AND id NOT IN "
        "(SELECT json_extract(m.value, '$[4]') FROM records p, json_each(p.meta) m "
        "WHERE p.run_id IN (SELECT run_id FROM runs) "
        "AND json_extract(m.value, '$[4]') IS NOT NULL)"
    )
    con.execute("UPDATE records SET events = NULL WHERE run_id NOT IN (SELECT run_id FROM runs)")
    kept_files = {
        row[0]
        for row in con.execute(
            "SELECT DISTINCT json_extract(m.value, '$[2]') FROM records p, "
            "json_each(p.meta) m WHERE json_extract(m.value, '$[2]') IS NOT NULL"
        )
    }
    gone = [
        row[0] for row in con.execute("SELECT path FROM result_files") if row[0] not in kept_files
    ]
    con.executemany("DELETE FROM result_files WHERE path = ?", [(p,) for p in gone])
    con.execute("DELETE FROM doomed")
    return entries, gone


def auto_prune(
    con: sqlite3.Connection,
    flow: str,
    keep_runs: int,
    counts: dict[str, int],
    location: str,
    own: Own,
) -> list[str]:
    """A store's own pruning, as a run of ``flow`` starts (its ``runs`` row committed):
    remove the flow's oldest runs once it has :data:`AUTO_EVERY` more than ``keep_runs``
    (the dead runs of the store at ``location`` first marked interrupted: ``own`` as for
    :func:`~nbflow.store.liveness.settle`); the files no remaining result refers to (paths
    relative to the store's files).

    ``counts`` (flow -> runs in the file) spares a count at every start: counted once, then
    each start adds one; counted again after a prune (other processes add runs too).
    """
    count = counts.get(flow)
    if count is None:
        (count,) = con.execute("SELECT count(*) FROM runs WHERE flow = ?", (flow,)).fetchone()
    counts[flow] = count = count + (flow in counts)
    if count < keep_runs + AUTO_EVERY:
        return []
    with transaction(con):
        settle(con, location, own)
        _, gone = remove_runs(con, doomed(con, [flow], keep_runs, None))
    del counts[flow]
    return gone


def prune(
    store: SQLiteStore,
    *,
    keep_runs: int | None = None,
    older_than: float | str | None = None,
    flow: str | None = None,
    vacuum: bool = True,
) -> PruneReport:
    """Remove old runs of ``store`` (of ``flow``, or of every flow): see the module docstring.

    Raises:
        ValueError: neither ``keep_runs`` nor ``older_than`` is given, or one is malformed.
        StoreError: the store cannot be written.
    """
    if keep_runs is None and older_than is None:
        raise ValueError("prune needs keep_runs=N, older_than='30d', or both")
    if keep_runs is not None and (not isinstance(keep_runs, int) or keep_runs < 0):
        raise ValueError(f"keep_runs must be an int >= 0, got {keep_runs!r}")
    age = seconds(older_than)
    store.flush()  # this process's records are all in the file first
    before = store.size()
    con = connect(store.location, store.timeout)
    try:
        with transaction(con):
            settle(con, store.location, recording)
            flows = [flow] if flow is not None else [
                r[0] for r in con.execute("SELECT DISTINCT flow FROM runs")
            ]  # fmt: skip
            runs = doomed(con, flows, keep_runs, age)
            entries, gone = remove_runs(con, runs)
            known = {row[0] for row in con.execute("SELECT path FROM result_files")}
        for relative in gone:
            store.files.path(relative).unlink(missing_ok=True)
        gone += orphans(store.files.root, known, ORPHAN_AGE)
        if vacuum:
            vacuum_if_it_pays(con)
    except sqlite3.Error as error:
        raise store_error(error, store.location, store.timeout) from None
    finally:
        con.close()
    store.forget_packs()
    return PruneReport(len(runs), entries, len(gone), max(0, before - store.size()))


def orphans(root: Path, known: set[str], age: float) -> list[str]:
    """Remove the files under ``root`` that are not in ``known`` (paths relative to it) and
    were last written more than ``age`` seconds ago; their relative paths."""
    if not root.is_dir():
        return []
    cutoff = time.time() - age
    removed = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if relative in known or not path.is_file():
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(relative)
        except OSError:  # gone meanwhile, or not ours to remove: it costs space, not data
            continue
    return removed


def vacuum_if_it_pays(con: sqlite3.Connection) -> bool:
    """``VACUUM`` when a quarter or more of the file is free pages; True if it did."""
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    free = con.execute("PRAGMA freelist_count").fetchone()[0]
    if pages and free * 4 >= pages:
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True
    return False


def prune_default(
    *,
    keep_runs: int | None = None,
    older_than: float | str | None = None,
    flow: str | None = None,
    store: Any = None,
) -> PruneReport:
    """``nf.prune``: :func:`prune` the default store (or ``store``: a path or a store).

    Raises:
        ValueError: neither ``keep_runs`` nor ``older_than`` is given.
        StoreError: there is no store, or it cannot be written.
    """
    from . import resolve_store

    found = resolve_store("default" if store is None else store)
    if found is None:
        raise StoreError("no store to prune: NBFLOW_STORE is 'none' (or store=None)")
    return prune(found, keep_runs=keep_runs, older_than=older_than, flow=flow)
