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
#: Workloads nbflow also runs with the SQLite store on, and their names in the store table.
STORE_ROWS = {
    "W1-1k": "W1 (1k wide)",
    "W1-10k": "W1 (10k wide)",
    "W2-1k": "W2 (1k chain)",
    "W3-1k": "W3 (1k layered)",
    "W7-2k": "W7 (2k layered)",
}


def _table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """``(engine label, workload)`` -> cells, from the long markdown table."""
    rows: dict[tuple[str, str], list[str]] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] in ENGINES:
            rows[(cells[0], cells[1])] = cells
    return rows


def _store_table(stdout: str) -> dict[str, list[str]]:
    """workload -> cells, from the table of the store's cost (after its heading)."""
    _, _, after = stdout.partition("### The store's cost")
    rows: dict[str, list[str]] = {}
    for line in after.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[0] in STORE_ROWS.values():
            rows[cells[0]] = cells
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
    store_rows = _store_table(proc.stdout)
    for workload, name in STORE_ROWS.items():
        cells = rows.get(("nbflow", f"{workload} +sqlite-store"))
        assert cells is not None, f"no store row for {workload}:\n{proc.stdout}"
        assert NUMBER.match(cells[4]), f"nbflow {workload} +sqlite-store: {cells}"
        assert name in store_rows, f"no line {name!r} in the store table:\n{proc.stdout}"
        plain, store, cost, cpu_plain, cpu_store, cpu_cost = store_rows[name][1:]
        assert all(map(NUMBER.match, (plain, store, cpu_plain, cpu_store))), store_rows[name]
        assert re.match(r"^[+-]\d+ %$", cost), store_rows[name]
        assert re.match(r"^[+-]\d+ %$", cpu_cost), store_rows[name]

    data = json.loads(out_json.read_text())
    ok = {(r["engine"], r["workload"]) for r in data["rows"] if r["status"] == "ok"}
    assert ("nbflow", "W7-2k") in ok
    assert ("asyncio-rq", "W6-100k") in ok
    assert (tmp_path / "results" / "latest.json").exists()
    engines = {r["engine"] for r in data["rows"]}
    assert engines <= {"nbflow", "asyncio", "asyncio-rq", "graphlib-threads"}, engines


def test_store_table_prints_the_cost_of_the_store_per_workload() -> None:
    from benchmarks import report

    def row(
        key: str, variant: str, run_s: float, cpu_s: float, status: str = "ok"
    ) -> dict[str, object]:
        return {
            "engine": "nbflow",
            "label": "nbflow",
            "workload": key,
            "group": key[:2],
            "n_tasks": 1000,
            "variant": variant,
            "status": status,
            "run_s": [run_s],
            "cpu_s": [cpu_s, cpu_s + 1.0, cpu_s - 1.0],  # the median is taken
        }

    rows = report.summarize(
        [
            row("W1-1k", "", 0.0102, 0.0100),
            row("W1-1k", "+sqlite-store", 0.0112, 0.0105),
            row("W2-1k", "", 0.0100, 0.0098),
            row("W2-1k", "+sqlite-store", 0.0, 0.0, status="error"),
            row("W4", "", 0.1, 0.01),
        ]
    )
    assert report.store_table(rows).splitlines() == [
        "| workload | no store | SQLite store | cost of the store | CPU: no store | CPU: SQLite "
        "store | CPU: cost of the store |",
        "|---|--:|--:|--:|--:|--:|--:|",
        "| W1 (1k wide) | 10.2 | 11.2 | +10 % | 10.0 | 10.5 | +5 % |",
        "| W2 (1k chain) | 10.0 | error |  | 9.8 | error |  |",
    ]
    assert report.store_table(rows[-1:]) == ""


def test_rounds_are_merged_and_each_ratio_is_taken_round_by_round() -> None:
    """``--rounds``: a round in which the machine was slow for everyone does not move the
    ratio (each round's ratio is taken between rows measured close in time), the timings of
    all rounds are kept, and a cell that failed in any round says which."""
    from benchmarks import report

    def row(engine: str, k: int, run_s: float, variant: str = "", **extra: object) -> dict:
        return {
            "engine": engine, "label": engine, "workload": "W1-1k", "group": "W1",
            "n_tasks": 1000, "variant": variant, "status": "ok", "round": k,
            "run_s": [run_s, run_s], "cpu_s": [run_s], "peak_rss_kib": 1000 + k, **extra,
        }  # fmt: skip

    raw = [
        row("asyncio-rq", 0, 0.005), row("nbflow", 0, 0.010),
        row("nbflow", 0, 0.011, "+sqlite-store"),
        row("asyncio-rq", 1, 0.050), row("nbflow", 1, 0.100),  # a slow round: ten times
        row("nbflow", 1, 0.110, "+sqlite-store"),
        row("asyncio-rq", 2, 0.005), row("nbflow", 2, 0.012),
        row("nbflow", 2, 0.0132, "+sqlite-store"),
        row("asyncio", 0, 0.004), row("asyncio", 1, 0.0, status="error", reason="boom"),
    ]  # fmt: skip
    rows = {(r["engine"], r["variant"]): r for r in report.summarize(report.merge_rounds(raw))}
    nbflow = rows["nbflow", ""]
    assert nbflow["run_s"] == [0.010, 0.010, 0.100, 0.100, 0.012, 0.012]
    assert nbflow["rounds"] == 3 and "round" not in nbflow
    assert nbflow["peak_rss_kib"] == 1002
    assert nbflow["ratio"] == pytest.approx(2.0)  # rounds: 2.0, 2.0, 2.4
    assert nbflow["ratio_range"] == pytest.approx((2.0, 2.4))
    # Across rounds instead, the medians (0.012 over 0.005) would say 2.4.
    assert rows["nbflow", "+sqlite-store"]["overhead_pct"] == pytest.approx(10.0)
    assert rows["nbflow", "+sqlite-store"]["cpu_overhead_pct"] == pytest.approx(10.0)
    assert rows["asyncio", ""]["status"] == "error"
    assert rows["asyncio", ""]["reason"] == "boom (round 2)"
    assert "ratio 2.00-2.40 over 3 rounds" in report.markdown(list(rows.values()))
    assert "over 3 rounds" not in report.markdown([rows["asyncio-rq", ""]])
