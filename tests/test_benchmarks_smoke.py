"""Smoke test of the benchmark harness (issue 9): it runs end to end and prints numbers.

This checks the harness, not speed: ``python -m benchmarks --quick --no-peers --repeat 1`` runs
every workload at a tiny size on nbflow and the asyncio baselines (no peer virtualenv), each in
its own subprocess, and must print a table whose rows for those engines carry numbers. Each
engine's results are also checked against a reference inside the harness, so a row with
numbers means the engine computed the right values.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("nbflow", "plain asyncio (idiomatic)", "asyncio ready-queue")
NUMBER = re.compile(r"^\d[\d,]*(\.\d+)?( ms| s)?$")


def _table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """``(engine label, workload)`` -> cells, from the long markdown table."""
    rows: dict[tuple[str, str], list[str]] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] in ENGINES:
            rows[(cells[0], cells[1])] = cells
    return rows


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_benchmarks_quick_run_prints_numbers_for_nbflow_and_baselines(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--no-peers",
            "--repeat",
            "1",
            "--json",
            str(out_json),
            "--results-dir",
            str(tmp_path / "results"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _table_rows(proc.stdout)
    for engine in ENGINES:
        for workload in ("W1-1k", "W1-10k", "W2-1k", "W3-1k", "W4", "W5", "W6-10k", "W6-100k"):
            cells = rows.get((engine, workload))
            assert cells is not None, f"no row for {engine} {workload}:\n{proc.stdout}"
            median, us_per_task, ratio = cells[3], cells[4], cells[5]
            for value in (median, us_per_task, ratio):
                assert NUMBER.match(value), f"{engine} {workload}: {cells}\n{proc.stderr[-2000:]}"
    assert re.match(r"^\d", rows[("nbflow", "W4")][7]), "W4 efficiency missing"

    data = json.loads(out_json.read_text())
    ok = {(r["engine"], r["workload"]) for r in data["rows"] if r["status"] == "ok"}
    assert ("nbflow", "W7-2k") in ok
    assert ("asyncio-rq", "W6-100k") in ok
    assert (tmp_path / "results" / "latest.json").exists()
    engines = {r["engine"] for r in data["rows"]}
    assert engines <= {"nbflow", "asyncio", "asyncio-rq", "graphlib-threads"}, engines
