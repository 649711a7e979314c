"""Liveness: whether a run the store shows as ``running`` is really going on.

A run's process records the run's end; a process that is killed (kill -9, Kernel ->
Restart, out of memory) never does, and its ``runs`` row would say ``running`` for ever.
Each row keeps the ``host`` and ``pid`` of the process that records it. A running row is
*dead* when it was recorded on this host and

- no process has its pid; or
- its pid is this process's, but this process records no such run (a new kernel, in a
  restarted container say, got the pid of the one that was killed); or
- the process with its pid does not have the store's file open: the pid was reused by
  another program. A process recording a run holds the file open from before the run's row
  is written until after its end is (its writer's connection).

Any other row is taken to be alive, so a live run is never cut short on paper: a run of
another host, a row without a pid, a process of another user (whose open files cannot be
read), a system without ``/proc``. A run is declared dead only when that is known.

What is found is written once, where the row is: :func:`mark` sets the dead runs, and every
run started under one (the child runs of subflows, transitively) still marked running, to
``interrupted``, in the caller's transaction and only where the row still says ``running``
(a run whose end was written meanwhile keeps it). The store settles its running rows so
when history is read, when a run is resumed and before a prune (by hand or the store's
own): from then on a dead run is shown, and pruned, like any other finished run.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: The host name each run's row records (see :mod:`nbflow.store.recorder`).
HOST = socket.gethostname()
#: Where this system lists a process's open files (absent: liveness beyond "the pid is
#: gone" cannot be told, and is not guessed).
_PROC = "/proc"

#: ``own(run_id)``: whether this process is recording ``run_id`` now.
Own = Callable[[str], bool]


def dead_runs(rows: Iterable[Sequence[Any]], location: str, own: Own) -> list[str]:
    """The runs of ``rows`` (``run_id, host, pid`` of rows marked running) whose process is
    known to be gone (see the module docstring); ``location``: the store's file."""
    found, holders = [], {}  # pid -> whether it holds the file (asked once per pid)
    for run_id, host, pid in rows:
        if host != HOST or not pid:
            continue  # another host's run, or one that says nothing of its process
        pid = int(pid)
        if pid == os.getpid():
            if not own(run_id):
                found.append(run_id)
            continue
        if pid not in holders:
            holders[pid] = _holds(pid, location)
        if holders[pid] is False:
            found.append(run_id)
    return found


def _holds(pid: int, location: str) -> bool | None:
    """Whether process ``pid`` is alive with the file at ``location`` open; False when it is
    gone, None when that cannot be told (so it may be alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process (EPERM): alive, and not ours to look into
        return None
    try:
        wanted = os.stat(location)
    except OSError:  # the store's file is gone: nothing to compare with
        return None
    try:
        names = os.listdir(f"{_PROC}/{pid}/fd")
    except FileNotFoundError:  # it ended since kill(), or this system has no /proc
        return False if os.path.isdir(f"{_PROC}/self/fd") else None
    except OSError:
        return None
    for name in names:
        try:
            found = os.stat(f"{_PROC}/{pid}/fd/{name}")  # follows the link to the open file
        except OSError:  # closed meanwhile
            continue
        if (found.st_dev, found.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    return False


def mark(con: sqlite3.Connection, runs: Sequence[str]) -> int:
    """Set ``runs`` and the runs started under them (``parent_run``, transitively) that are
    still marked running to ``interrupted``, in the caller's transaction; how many rows."""
    if not runs:
        return 0
    return con.execute(
        "WITH RECURSIVE under(run_id) AS (SELECT value FROM json_each(?) "
        "UNION SELECT r.run_id FROM runs r JOIN under u ON r.parent_run = u.run_id) "
        "UPDATE runs SET status = 'interrupted' "
        "WHERE status = 'running' AND run_id IN (SELECT run_id FROM under)",
        (json.dumps(list(runs)),),
    ).rowcount


def settle(con: sqlite3.Connection, location: str, own: Own) -> int:
    """Find the dead runs of the store at ``location`` and :func:`mark` them, in the
    caller's transaction (one that writes: the rows read are those it updates)."""
    rows = con.execute("SELECT run_id, host, pid FROM runs WHERE status = 'running'").fetchall()
    return mark(con, dead_runs(rows, location, own)) if rows else 0
