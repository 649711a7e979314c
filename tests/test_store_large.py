"""Large results: files beside the database, read only when needed, never half written.

A result above the store's ``file_bytes`` is a content-addressed file (``<db>-results/``).
These tests use results of a few MB (the mechanism does not depend on the size; the cost of
storing 200 MB is measured by ``python -m benchmarks.large_results``, not timed here).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import nbflow as nf
from nbflow.store import retention
from nbflow.store.results import DamagedResultError
from nbflow.store.sqlite import SQLiteStore

ROWS = 500_000  # 4 MB of int64: above the store's 1 MiB file threshold


def _files(db: Path) -> list[Path]:
    root = Path(f"{db}-results")
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _flow(db: Path, broken: dict[str, bool]) -> nf.Flow:
    flow = nf.Flow("large", store=str(db), on_error="continue")

    @flow.task
    def frame():
        return np.arange(ROWS)

    @flow.task
    def count(frame):
        return int(frame.size)

    @flow.task
    def report(count):
        if broken["report"]:
            raise RuntimeError("report fails the first time")
        return f"{count} rows"

    return flow


def test_a_resumed_run_does_not_read_a_large_result_no_rerunning_task_needs(tmp_path):
    db = tmp_path / "large.db"
    broken = {"report": True}
    flow = _flow(db, broken)
    first = flow.run()
    assert first.states == {"frame": "succeeded", "count": "succeeded", "report": "failed"}
    [stored] = _files(db)
    assert stored.suffix == ".npy"

    # Damage the file where a read would notice (its checksum), not where a look would (it
    # is there, with its size): a resume that read it would warn and run `frame` again.
    size = stored.stat().st_size
    with open(stored, "r+b") as file:
        file.seek(size // 2)
        file.write(b"\xff" * 64)
    broken["report"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no StoreWarning: nothing was found damaged
        second = flow.run(resume="last")
    assert second.status == "succeeded"
    assert second.states == {"frame": "cached", "count": "cached", "report": "succeeded"}
    assert second.results["report"] == f"{ROWS} rows"
    assert second.why("frame").startswith("resumed")
    # Printing the results shows the large one as what it is, unread.
    assert "'frame': <stored result of 'frame' from run" in repr(second.results)
    # Only now is the frame read, and only now is the damage found.
    with pytest.raises(DamagedResultError):
        second.results["frame"]


def test_printed_results_show_small_stored_values_and_leave_large_ones_unread(tmp_path):
    """`run.results` printed in a cell: a cached or resumed small result is a value like any
    other to the person looking (it is read from the database to be shown); a large one,
    a file, shows as what it is (task, run, size, format) and is not read to be printed."""
    flow = nf.Flow("shown", store=str(tmp_path / "shown.db"))
    flow.task(name="small", cache=True)(lambda: {"rows": 3})
    flow.task(name="big", cache=True)(lambda: np.arange(ROWS))
    flow.run()
    again = flow.run()
    assert set(again.states.values()) == {"cached"}
    shown = repr(again.results)
    assert "'small': {'rows': 3}" in shown
    assert "'big': <stored result of 'big' from run" in shown and "MB npy>" in shown
    assert not again.results._raw["big"].loaded  # printing read nothing large


def test_a_task_that_reruns_reads_the_large_result_it_needs_and_checks_it(tmp_path):
    db = tmp_path / "large.db"
    broken = {"report": True}
    flow = _flow(db, broken)
    flow.run()

    @flow.task
    def count(frame):  # edited: runs again, and needs the stored frame
        return int(frame.sum() > 0) * int(frame.size)

    broken["report"] = False
    run = flow.run(resume="last")
    assert run.states == {"frame": "cached", "count": "succeeded", "report": "succeeded"}
    assert run.results["report"] == f"{ROWS} rows"


def test_identical_large_results_are_stored_once(tmp_path):
    db = tmp_path / "twins.db"
    flow = nf.Flow("twins", store=str(db))
    flow.task(name="left")(lambda: np.arange(ROWS))
    flow.task(name="right")(lambda: np.arange(ROWS))
    flow.run()
    flow.run()
    assert len(_files(db)) == 1


def test_prune_removes_orphan_and_temporary_files_once_they_are_old(tmp_path):
    db = tmp_path / "orphans.db"
    flow = nf.Flow("orphans", store=str(db))
    flow.task(name="big")(lambda: np.arange(ROWS))
    flow.run()
    [kept] = _files(db)
    root = Path(f"{db}-results")
    orphan = root / "ab" / ("ab" + "0" * 62 + ".npy")  # written, row never committed
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"x" * 100)
    temporary = root / ".tmp-0123"  # a write a kill -9 interrupted
    temporary.write_bytes(b"y" * 100)
    young = root / ".tmp-4567"  # another process may be writing it right now
    young.write_bytes(b"z")
    old = time.time() - retention.ORPHAN_AGE - 60
    for path in (orphan, temporary):
        os.utime(path, (old, old))

    report = nf.prune(keep_runs=10, store=str(db))
    assert report.files == 2
    assert _files(db) == sorted([kept, young])
    assert flow.run().status == "succeeded"


KILLED_WRITER = """
import sys, numpy as np, nbflow as nf
flow = nf.Flow("killed", store=sys.argv[1])

@flow.task
def small():
    return 1

@flow.task
def big(small):
    print("writing", flush=True)
    return np.random.default_rng(0).random(10_000_000)  # 80 MB: written for a while

resume = sys.argv[2] if len(sys.argv) > 2 else None
print(flow.run(resume=resume).states)
"""


def test_kill_9_while_a_large_result_is_written_leaves_no_half_file(tmp_path):
    db = tmp_path / "killed.db"
    root = Path(f"{db}-results")
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    process = subprocess.Popen(
        [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "writing\n"
        deadline = time.monotonic() + 60
        while not list(root.glob(".tmp-*")):  # the file's write has begun
            assert process.poll() is None, "the writer ended before it was killed"
            assert time.monotonic() < deadline, "no temporary file appeared"
            time.sleep(0.0005)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM result_files").fetchone() == (0,)
    # Under its final name, no file is there, half or whole: only the temporary one.
    assert [p.name[:5] for p in _files(db)] == [".tmp-"]

    # A resume in a new process runs `big` again (nothing of it was recorded), `small` not.
    [dead] = SQLiteStore(db).runs("killed")
    resumed = subprocess.run(
        [sys.executable, str(script), str(db), dead["run_id"]],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert resumed.stdout.splitlines()[-1] == "{'small': 'cached', 'big': 'succeeded'}"
    assert len([p for p in _files(db) if p.suffix == ".npy"]) == 1
