"""How much finished work a kill -9 can take back: the store's re-run window, measured.

    python -m benchmarks.durability            # 20 kills
    python -m benchmarks.durability --kills 50

A child process runs a chain of 2 ms tasks (``tests/flows/chain_flow.py``) with the SQLite
store; each task notes the wall-clock time it finished. The parent kills it (SIGKILL) at a
random moment, then reads what the store committed. A task that had finished but is not in
the store would run again on resume: the *window* of a kill is the age, at the kill, of the
oldest such task (0 when none was lost). Printed: the windows' median, 95th percentile and
maximum, and how many tasks were lost per kill. See docs/durability.md.
"""

from __future__ import annotations

import argparse
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHAIN = Path(__file__).resolve().parents[1] / "tests" / "flows" / "chain_flow.py"


def one_kill(folder: Path, seed: int) -> tuple[float, int]:
    """``(window in seconds, tasks lost)`` of one kill at a random moment."""
    store, times = folder / f"k{seed}.db", folder / f"k{seed}.times"
    child = subprocess.Popen(
        [sys.executable, str(CHAIN), str(store), str(times)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not times.exists() or times.stat().st_size < 200:  # the chain is under way
        if time.monotonic() > deadline or child.poll() is not None:
            raise RuntimeError("the chain never started")
        time.sleep(0.01)
    time.sleep(random.Random(seed).uniform(0.1, 0.6))
    child.send_signal(signal.SIGKILL)
    killed_at = time.time()
    child.wait(30)
    finished = {}
    for line in times.read_text().splitlines():
        name, _, stamp = line.partition(" ")
        if stamp:
            finished[name] = float(stamp)
    with sqlite3.connect(store) as con:
        stored = {row[0] for row in con.execute("SELECT task FROM results")}
    lost = [killed_at - at for name, at in finished.items() if name not in stored]
    return (max(lost) if lost else 0.0), len(lost)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure, print and return the windows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        found = [one_kill(Path(tmp), seed) for seed in range(args.kills)]
    windows = sorted(w for w, _ in found)
    report = {
        "kills": args.kills,
        "median_ms": 1e3 * statistics.median(windows),
        "p95_ms": 1e3 * windows[int(0.95 * (len(windows) - 1))],
        "max_ms": 1e3 * windows[-1],
        "max_tasks_lost": max(n for _, n in found),
    }
    print(
        f"{args.kills} kills of a chain of 2 ms tasks: finished work re-run on resume "
        f"(window) median {report['median_ms']:.1f} ms, p95 {report['p95_ms']:.1f} ms, max "
        f"{report['max_ms']:.1f} ms; at most {report['max_tasks_lost']} tasks"
    )
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
