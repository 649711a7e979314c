"""A run whose process was killed is shown and pruned as ``interrupted``, with its child
runs; a run going on in another process is left running (nbflow.store.liveness).

Most tests kill a real process (SIGKILL) in the middle of a real run recorded in a real
SQLite file: ``outer`` -> subflow ``middle`` -> subflow ``inner``, whose task waits, after
subflow ``done`` ended (tests/flows/nested_flow.py). What the file says is read with
sqlite3 directly, so reading it does not itself settle the runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import nbflow as nf
from nbflow.store.retention import AUTO_EVERY
from nbflow.store.sqlite import SQLiteStore

NESTED = Path(__file__).parent / "flows" / "nested_flow.py"
FLOWS = ("outer", "middle", "inner")  # the runs going on when the process is killed


def _rows(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as con:
        return con.execute(sql, params).fetchall()


def _statuses(db: Path) -> dict[str, list[str]]:
    """Flow -> the statuses of its runs, oldest first, as the file says (but for ``done``,
    which always ends, and must stay as it ended)."""
    found: dict[str, list[str]] = {}
    for flow, status in _rows(db, "SELECT flow, status FROM runs ORDER BY started, rowid"):
        found.setdefault(flow, []).append(status)
    assert set(found.pop("done", ["succeeded"])) == {"succeeded"}
    return found


def _start(db: Path, release: Path, *options: str) -> subprocess.Popen[str]:
    """A process running ``outer`` until its innermost task waits, with all three runs and
    ``big``'s result file committed."""
    child = subprocess.Popen(
        [sys.executable, str(NESTED), str(db), str(release), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    if child.stdout.readline().strip() != "waiting":
        child.wait(30)
        pytest.fail(child.stderr.read())
    deadline = time.monotonic() + 60
    while _rows(db, "SELECT count(*) FROM runs WHERE status = 'running'") != [(3,)] or _rows(
        db, "SELECT count(*) FROM results WHERE task = 'big' AND codec IS NOT NULL"
    ) != [(1,)]:
        assert time.monotonic() < deadline, "the runs were never all recorded"
        time.sleep(0.02)
    return child


def _killed(db: Path, release: Path) -> int:
    """Run ``outer`` in a process and kill it (SIGKILL) while ``inner`` waits; its pid."""
    child = _start(db, release)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert _statuses(db) == {flow: ["running"] for flow in FLOWS}  # nobody wrote an end
    return child.pid


def test_history_shows_a_killed_run_and_its_child_runs_interrupted(tmp_path):
    db = tmp_path / "killed.db"
    _killed(db, tmp_path / "release")
    history = nf.history(store=db)
    assert dict(zip(history.flow, history.status, strict=True)) == {
        "outer": "interrupted",
        "done": "succeeded",  # a child run that had ended keeps its end
        "middle": "interrupted",
        "inner": "interrupted",
    }
    assert _statuses(db) == {flow: ["interrupted"] for flow in FLOWS}  # written, once
    assert nf.history("inner", store=db).status.tolist() == ["interrupted"]


def test_the_runs_started_under_a_dead_run_go_with_it(tmp_path):
    """A child run is marked with its parent even when its own process cannot be judged
    (here: its row names another host); a running row of another host that no dead run
    started stays running."""
    db = tmp_path / "children.db"
    _killed(db, tmp_path / "release")
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE runs SET host = 'another-host' WHERE flow IN ('middle', 'inner')")
        con.execute(
            "INSERT INTO runs (run_id, flow, version, status, started, host, pid) "
            "VALUES ('elsewhere', 'inner', 'v', 'running', 0, 'another-host', 1)"
        )
    nf.history(store=db)
    assert _statuses(db) == {
        "outer": ["interrupted"],
        "middle": ["interrupted"],
        "inner": ["running", "interrupted"],  # 'elsewhere' (started 0) first
    }


def test_resume_marks_the_killed_run_and_its_child_runs(tmp_path):
    db, release = tmp_path / "resume.db", tmp_path / "release"
    _killed(db, release)
    release.write_text("go")
    done = subprocess.run(
        [sys.executable, str(NESTED), str(db), str(release), "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "succeeded"
    assert _statuses(db) == {flow: ["interrupted", "succeeded"] for flow in FLOWS}


def test_prune_removes_a_killed_run_and_exactly_what_it_alone_held(tmp_path):
    db, release = tmp_path / "prune.db", tmp_path / "release"
    _killed(db, release)
    dead = tuple(r[0] for r in _rows(db, "SELECT run_id FROM runs"))
    in_dead = f"run_id IN ({', '.join('?' * len(dead))})"
    (dead_file,) = _rows(db, f"SELECT file FROM results WHERE {in_dead} AND task = 'big'", dead)
    release.write_text("go")  # the flow is run again, to its end, in another process
    again = subprocess.run(
        [sys.executable, str(NESTED), str(db), str(release)], capture_output=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert _statuses(db) == {flow: ["running", "succeeded"] for flow in FLOWS}
    files = tmp_path / "prune.db-results"
    before = {p for p in files.rglob("*") if p.is_file()}
    assert len(before) == 2 and files / dead_file[0] in before  # each run's own `big`

    report = nf.prune(keep_runs=1, store=db)  # the killed runs, and the older `done`
    assert (report.runs, report.cache_entries, report.files) == (4, 0, 1)
    assert _statuses(db) == {flow: ["succeeded"] for flow in FLOWS}
    assert _rows(db, f"SELECT count(*) FROM records WHERE {in_dead}", dead) == [(0,)]
    assert {p for p in files.rglob("*") if p.is_file()} == before - {files / dead_file[0]}
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_store_prunes_killed_runs_by_itself(tmp_path):
    db = tmp_path / "auto.db"
    _killed(db, tmp_path / "release")
    store = SQLiteStore(db, keep_runs=1)
    flow = nf.Flow("outer", store=store)  # the same flow name, run in this process
    flow.task(name="step")(lambda: 1)
    for _ in range(AUTO_EVERY):
        flow.run()
    store.flush()
    # The 51st run of `outer` pruned it to its newest run; the runs the killed one started
    # (other flows, within their keep_runs) are marked, and stay.
    assert _statuses(db) == {
        "outer": ["succeeded"],
        "middle": ["interrupted"],
        "inner": ["interrupted"],
    }


def test_a_run_going_on_in_another_process_is_left_running(tmp_path):
    db, release = tmp_path / "live.db", tmp_path / "release"
    finished = nf.Flow("finished", store=db)
    finished.task(name="step")(lambda: 1)
    finished.run()
    child = _start(db, release)
    try:
        history = nf.history(store=db)
        assert dict(zip(history.flow, history.status, strict=True)) == {
            "finished": "succeeded",
            "outer": "running",
            "done": "succeeded",
            "middle": "running",
            "inner": "running",
        }
        report = nf.prune(keep_runs=0, store=db)
        assert report.runs == 2  # `finished`, `done`: the live runs stay, running
        again = nf.Flow("outer", store=db)
        again.task(name="other")(lambda: 2)
        assert again.run(resume="last").status == "succeeded"  # a resume reads it, live
        assert _statuses(db) == {
            "outer": ["running", "succeeded"],
            "middle": ["running"],
            "inner": ["running"],
        }
    finally:
        release.write_text("go")
        out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split()[-1] == "succeeded"
    assert _statuses(db) == {
        "outer": ["succeeded", "succeeded"],
        "middle": ["succeeded"],
        "inner": ["succeeded"],
    }


def test_a_run_going_on_in_this_process_is_left_running(tmp_path):
    """A kernel that reads its history or prunes while a run of its own goes on (here on a
    loop in another thread): the rows name this process, which records those runs."""
    db = tmp_path / "here.db"
    started, release = threading.Event(), threading.Event()
    inner = nf.Flow("inner", store=db)

    @inner.task
    def wait():
        started.set()
        release.wait(60)
        return 1

    outer = nf.Flow("outer", store=db)
    outer.task(name="inner")(inner)
    handle = outer.start()
    try:
        assert started.wait(60)
        deadline = time.monotonic() + 60
        while _rows(db, "SELECT count(*) FROM runs WHERE status = 'running'") != [(2,)]:
            assert time.monotonic() < deadline, "the runs were never recorded"
            time.sleep(0.02)
        assert nf.history(store=db).status.tolist() == ["running", "running"]
        assert nf.prune(keep_runs=0, store=db).runs == 0
        assert _statuses(db) == {"outer": ["running"], "inner": ["running"]}
    finally:
        release.set()
        run = handle.wait(60)
    assert run.status == "succeeded"
    assert _statuses(db) == {"outer": ["succeeded"], "inner": ["succeeded"]}


def test_a_pid_taken_by_another_process_is_no_sign_of_life(tmp_path):
    """A pid the OS gave to another program (one without the store's file open), or to
    this process (which records no such run), is that of a dead run; a row of another
    host is never judged, whatever its pid."""
    db = tmp_path / "reused.db"
    _killed(db, tmp_path / "release")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with contextlib.closing(sqlite3.connect(db)) as con, con:
            con.execute("UPDATE runs SET parent_run = NULL")  # each judged on its own
            con.execute("UPDATE runs SET pid = ? WHERE flow = 'outer'", (other.pid,))
            con.execute("UPDATE runs SET pid = ? WHERE flow = 'middle'", (os.getpid(),))
            con.execute("UPDATE runs SET host = 'another-host' WHERE flow = 'inner'")
        nf.history(store=db)
        assert _statuses(db) == {
            "outer": ["interrupted"],
            "middle": ["interrupted"],
            "inner": ["running"],
        }
        assert other.poll() is None  # still alive: it was its pid all along
    finally:
        other.kill()
        other.wait(30)
