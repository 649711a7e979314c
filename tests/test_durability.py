"""A kill -9 at any moment loses at most the last few finished tasks, never a committed one.

The window itself (how much finished work a kill can take back) is a measure, not a test:
``python -m benchmarks.durability`` (docs/durability.md gives its numbers).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbflow as nf

CHAIN = Path(__file__).parent / "flows" / "chain_flow.py"


def _kill_midway(store: Path, times: Path, after: float) -> None:
    child = subprocess.Popen(
        [sys.executable, str(CHAIN), str(store), str(times), "400"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not times.exists() or times.read_text().count("\n") < 20:
        assert child.poll() is None, child.stderr.read().decode()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the chain never got going"
        time.sleep(0.01)
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    child.wait(30)


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.0, 0.13, 0.31])
def test_after_a_kill_the_store_holds_a_prefix_of_the_finished_tasks(tmp_path, after):
    store, times = tmp_path / "chain.db", tmp_path / "chain.times"
    _kill_midway(store, times, after)
    finished = [line.split()[0] for line in times.read_text().splitlines() if " " in line]
    with sqlite3.connect(store) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = nf.SQLiteStore(store).results(nf.history("chain", store=store).run_id[0])
    # In the order they finished: everything up to some task, nothing after it.
    kept = [name for name in finished if name in stored]
    assert kept == finished[: len(kept)] and len(kept) >= 10
    assert set(stored) == set(kept)
    assert all(row.stored for row in stored.values())
    # ... and a resume runs the rest, each once, starting right after the last one kept.
    nf.store.close_all()
    done = subprocess.run(
        [sys.executable, str(CHAIN), str(store), str(tmp_path / "again.times"), "400", "--resume"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    states = resumed["states"]
    assert resumed["status"] == "succeeded"
    assert [n for n in states if states[n] == "cached"] == kept
    again = [line.split()[0] for line in (tmp_path / "again.times").read_text().splitlines()]
    assert again == [f"t{i}" for i in range(len(kept), 400)]
