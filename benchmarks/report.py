"""Turn raw result rows into summaries, a markdown table and a JSON document.

A raw row comes from one child (``benchmarks/runner.py``) or from the parent when the child
could not produce one (timeout, crash, missing peer). :func:`summarize` adds the medians and the
derived columns; :func:`markdown` prints them. Column meanings are in ``benchmarks/README.md``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.engines import BASELINE
from benchmarks.engines.nbflow_engine import STORE

Row = dict[str, Any]


def _median(values: Sequence[float] | None) -> float | None:
    return statistics.median(values) if values else None


def merge_rounds(rows: Iterable[Row]) -> list[Row]:
    """One row per (engine, workload, variant) from the rows of every round (``--rounds``):
    the timings of all rounds together, each round's median apart (``round_s``,
    ``round_cpu_s``), the largest peak RSS. A cell that failed in any round is reported by
    its first failed row, which says the round. Rows without a ``round`` pass unchanged."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["engine"], r["workload"], r.get("variant", "")), []).append(r)
    out = []
    for group in groups.values():
        if "round" not in group[0]:
            out.extend(group)
            continue
        failed = next((r for r in group if r.get("status") != "ok"), None)
        if failed is not None:
            reason = failed.get("reason") or failed["status"]
            out.append({**failed, "reason": f"{reason} (round {failed['round'] + 1})"})
            continue
        merged = dict(group[0])
        for key in ("run_s", "cpu_s", "build_s"):
            if key in merged:
                merged[key] = [v for r in group for v in r.get(key) or ()]
        merged["phases"] = {}
        for r in group:
            for phase, seconds in (r.get("phases") or {}).items():
                merged["phases"].setdefault(phase, []).extend(seconds)
        merged["round_s"] = [statistics.median(r["run_s"]) for r in group]
        if all(r.get("cpu_s") for r in group):
            merged["round_cpu_s"] = [statistics.median(r["cpu_s"]) for r in group]
        rss = [r["peak_rss_kib"] for r in group if r.get("peak_rss_kib")]
        merged["peak_rss_kib"] = max(rss) if rss else None
        merged["rounds"] = len(group)
        del merged["round"]
        out.append(merged)
    return out


def _per_round(a: Row, b: Row, key: str) -> list[float] | None:
    """``a``'s time over ``b``'s, round by round (None: they did not run the same rounds)."""
    x, y = a.get(key), b.get(key)
    if not x or not y or len(x) != len(y) or not all(y):
        return None
    return [p / q for p, q in zip(x, y, strict=True)]


def summarize(rows: Iterable[Row]) -> list[Row]:
    """Add ``median_s``, ``us_per_task``, ``build_median_s``, ``ratio``, ``efficiency`` and
    the W6 (100k/10k) and W7 (vs. plain) comparisons to each ok row; return new dicts."""
    out = [dict(r) for r in rows]
    for r in out:
        if r.get("status") != "ok":
            continue
        r["median_s"] = _median(r.get("run_s"))
        r["build_median_s"] = _median(r.get("build_s"))
        r["us_per_task"] = r["median_s"] * 1e6 / max(1, r["n_tasks"])
        cpu = _median(r.get("cpu_s"))
        r["cpu_us_per_task"] = cpu * 1e6 / max(1, r["n_tasks"]) if cpu is not None else None
        if r.get("ideal_s"):
            r["efficiency"] = r["ideal_s"] / r["median_s"]
    ok = {
        (r["engine"], r["workload"], r.get("variant", "")): r
        for r in out
        if r.get("status") == "ok"
    }
    for (engine, key, variant), r in ok.items():
        base = ok.get((BASELINE, key, ""))
        if base and (rounds := _per_round(r, base, "round_s")):
            # Each round's ratio: measured close in time, whatever the machine did between.
            r["ratio"] = statistics.median(rounds)
            r["ratio_range"] = (min(rounds), max(rounds))
        elif base and base["median_s"]:
            r["ratio"] = r["median_s"] / base["median_s"]
        if key == "W6-100k" and (small := ok.get((engine, "W6-10k", variant))):
            r["scale_ratio"] = r["median_s"] / small["median_s"]
        if variant and (plain := ok.get((engine, key, ""))):
            r["overhead_pct"] = 100.0 * (r["median_s"] / plain["median_s"] - 1.0)
            if rounds := _per_round(r, plain, "round_s"):
                r["overhead_pct"] = 100.0 * (statistics.median(rounds) - 1.0)
            if rounds := _per_round(r, plain, "round_cpu_s"):
                r["cpu_overhead_pct"] = 100.0 * (statistics.median(rounds) - 1.0)
            elif r.get("cpu_us_per_task") and plain.get("cpu_us_per_task"):
                ratio = r["cpu_us_per_task"] / plain["cpu_us_per_task"]
                r["cpu_overhead_pct"] = 100.0 * (ratio - 1.0)
    return out


def _fmt_s(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def _fmt_num(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{v:,.{digits}f}"


def _notes(r: Row) -> str:
    notes = []
    if r.get("status") != "ok":
        text = r["status"] if not r.get("reason") else f"{r['status']}: {r['reason']}"
        return text.replace("|", "/").replace("\n", " ")
    if r.get("scale_ratio") is not None:
        notes.append(f"100k/10k time x{r['scale_ratio']:.1f}")
    if r.get("overhead_pct") is not None:
        notes.append(f"{r['overhead_pct']:+.0f}% vs plain")
    if r.get("efficiency") is not None:
        notes.append(f"ideal {r['ideal_s']:.2f} s")
    if r.get("ratio_range") is not None and r["engine"] != BASELINE:
        low, high = r["ratio_range"]
        notes.append(f"ratio {low:.2f}-{high:.2f} over {r['rounds']} rounds")
    phases = r.get("phases") or {}
    if phases and r["group"] in ("W6", "E"):
        notes.append(", ".join(f"{k} {_fmt_s(_median(v))}" for k, v in phases.items()))
    n = len(r.get("run_s") or [])
    notes.append(f"n={n}")
    return "; ".join(notes)


def _short_status(r: Row) -> str:
    """A few words for the pivot: ``no retries``, ``too slow (>120 s)``, ``not run``."""
    status, reason = r["status"], r.get("reason") or ""
    if status == "n/a":
        return reason.split(":")[0].split(" (")[0] or "n/a"
    if status == "too slow":
        return f"too slow ({reason})" if reason.startswith(">") else "too slow (projected)"
    return status


def _workload_cell(r: Row) -> str:
    return r["workload"] + (f" {r['variant']}" if r.get("variant") else "")


COLUMNS = (
    "engine",
    "workload",
    "tasks",
    "median wall",
    "µs/task",
    "vs ready-queue",
    "peak RSS MiB",
    "W4 eff",
    "build",
    "notes",
)


def markdown(rows: Sequence[Row]) -> str:
    """The long table: one line per (engine, workload, variant), in run order."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|"
        + "|".join(["---", "---", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "---"])
        + "|",
    ]
    for r in rows:
        ok = r.get("status") == "ok"
        rss = r.get("peak_rss_kib")
        cells = [
            r["label"],
            _workload_cell(r),
            f"{r['n_tasks']:,}",
            _fmt_s(r.get("median_s")) if ok else "",
            _fmt_num(r.get("us_per_task")) if ok else "",
            _fmt_num(r.get("ratio"), 2) if ok else "",
            _fmt_num(rss / 1024, 0) if ok and rss else "",
            _fmt_num(r.get("efficiency"), 2),
            _fmt_s(r.get("build_median_s"))
            if ok and (r.get("build_median_s") or 0) >= 1e-4
            else "",
            _notes(r),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pivot(rows: Sequence[Row]) -> str:
    """The issue-9 layout: workloads down, engines across, µs/task (W4: efficiency)."""
    engines: list[str] = []
    keys: list[str] = []
    cell: dict[tuple[str, str], str] = {}
    for r in rows:
        wk = _workload_cell(r)
        if r["label"] not in engines:
            engines.append(r["label"])
        if wk not in keys:
            keys.append(wk)
        if r.get("status") != "ok":
            text = _short_status(r)
        elif r.get("efficiency") is not None:
            text = f"eff {r['efficiency']:.2f}"
        else:
            text = f"{r['us_per_task']:,.0f}"
            if r.get("build_median_s") and r["engine"] in ("hamilton", "nbflow"):
                text += f" / {r['build_median_s'] * 1e6 / max(1, r['n_tasks']):,.0f}"
        cell[(wk, r["label"])] = text
    head = "| workload | " + " | ".join(engines) + " |"
    rule = "|---|" + "--:|" * len(engines)
    body = [
        "| " + k + " | " + " | ".join(cell.get((k, e), "") for e in engines) + " |" for k in keys
    ]
    return "\n".join([head, rule, *body])


#: How the store table names a workload family: ``W1-10k`` -> ``W1 (10k wide)``.
SHAPES = {"W1": "wide", "W2": "chain", "W3": "layered", "W7": "layered"}


def _store_workload(key: str) -> str:
    group, _, size = key.partition("-")
    return f"{group} ({size} {SHAPES[group]})" if group in SHAPES and size else key


def store_table(rows: Sequence[Row]) -> str:
    """nbflow's µs per task without a store and with the SQLite store, and the store's cost
    (issue #23), in wall time and in the process's CPU time (every thread: the store's
    writer too; less disturbed by the machine's other work): one line per workload that ran
    both ways; empty when none did."""
    nbflow = [r for r in rows if r["engine"] == "nbflow"]
    stored = {r["workload"]: r for r in nbflow if r.get("variant") == STORE}
    lines = []
    for plain in nbflow:
        store = stored.get(plain["workload"])
        if plain.get("variant") or store is None:
            continue
        cells = [_store_workload(plain["workload"])]
        for key, cost_key in (("us_per_task", "overhead_pct"), ("cpu_us_per_task",
                                                              "cpu_overhead_pct")):
            for r in (plain, store):
                value = r.get(key) if r["status"] == "ok" else None
                cells.append(f"{value:,.1f}" if value is not None else _short_status(r))
            cost = store.get(cost_key)
            cells.append("" if cost is None else f"{cost:+.0f} %")
        lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = (
        "| workload | no store | SQLite store | cost of the store | CPU: no store | CPU: SQLite "
        "store | CPU: cost of the store |"
    )
    return "\n".join([head, "|---|--:|--:|--:|--:|--:|--:|", *lines])


def versions(rows: Iterable[Row]) -> str:
    """``dask 2026.8.0, prefect 3.8.8, ...``: every package version the children reported."""
    found: dict[str, str] = {}
    for r in rows:
        found.update(r.get("versions") or {})
    return ", ".join(f"{k} {v}" for k, v in sorted(found.items()))


def environment() -> dict[str, Any]:
    """Where the numbers were measured."""
    import os

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def write_json(path: Path, rows: Sequence[Row], meta: dict[str, Any]) -> None:
    """Write ``{"meta": ..., "rows": [...]}`` (creating the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": list(rows)}, indent=1, default=str))
