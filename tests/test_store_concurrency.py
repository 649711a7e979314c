"""Two processes write one store at the same time: nothing is lost or duplicated."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

FLOWS = Path(__file__).parent / "flows"


@pytest.mark.slow
def test_two_processes_record_every_attempt_of_their_runs_once(tmp_path):
    db, barrier = tmp_path / "shared.db", tmp_path / "barrier"
    barrier.mkdir()
    script = str(FLOWS / "concurrent_flow.py")
    procs = {
        name: subprocess.Popen(
            [sys.executable, script, str(db), name, str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("alpha", "beta")
    }
    runs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        runs[name] = json.loads(out.strip().splitlines()[-1])
        assert runs[name]["status"] == "succeeded"

    from nbflow.store.sqlite import SQLiteStore

    store = SQLiteStore(db)  # attempts are folded from the event log when read
    with sqlite3.connect(db) as con:
        for name, run in runs.items():
            run_id = run["run_id"]
            status, flow = con.execute(
                "SELECT status, flow FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            assert (status, flow) == ("succeeded", name)
            attempts = [(a["task"], a["attempt"], a["state"]) for a in store.attempts(run_id)]
            assert len(attempts) == 202  # 200 tasks, c0_3 failed twice first
            assert len({(t, a) for t, a, _ in attempts}) == 202
            assert sorted(a for t, a, _ in attempts if t == "c0_3") == [1, 2, 3]
            assert sum(s == "succeeded" for _, _, s in attempts) == 200
            seqs = [e["seq"] for e in store.events(run_id)]
            # RunStarted, 200 x (queued, started, succeeded), 2 x (retrying, started again),
            # RunFinished: contiguous, none lost, none twice.
            assert seqs == list(range(1 + 200 * 3 + 2 * 2 + 1))
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.slow
def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(tmp_path):
    """The switch of a new file to WAL can deadlock between processes; SQLite then answers
    "locked" at once (no busy wait), so preparing a store retries until its timeout."""
    script = (
        "import sys, time\n"
        "from nbflow.store.sqlite import prepare\n"
        "start = float(sys.argv[2])\n"
        "while time.time() < start:\n"
        "    pass\n"
        "prepare(sys.argv[1], 10).close()\n"
    )
    for round_ in range(3):
        db = tmp_path / f"fresh{round_}.db"
        start = time.time() + 1.0
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(db), str(start)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
