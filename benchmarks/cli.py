"""``python -m benchmarks``: every workload on every engine, each in its own subprocess.

The parent never imports an engine. For each (workload, engine) cell it starts
``python -m benchmarks.runner`` — with the current interpreter for nbflow and the asyncio
baselines, with ``benchmarks/.venv-peers`` for Dask, Prefect and Hamilton (installed on first
use) — under a timeout, collects the JSON rows it prints, and reports a table. Cells run
workload by workload, so the rows compared with each other are measured close in time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import peers_env, report, workloads
from benchmarks.engines import BASELINE, BY_NAME, EngineInfo
from benchmarks.engines import select as select_engines
from benchmarks.runner import MARK

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

# Larger cells that are skipped when the smaller one of the same shape says they cannot finish.
PROJECTIONS = {"W1-10k": "W1-1k", "W6-100k": "W6-10k"}


@dataclass
class Options:
    """What to run and how (the parsed command line)."""

    engines: list[EngineInfo]
    workloads: list[workloads.Workload]
    quick: bool = False
    repeat: int = 3
    rounds: int = 1
    timeout_s: float = 120.0
    with_peers: bool = True
    json_path: Path | None = None
    results_dir: Path = RESULTS
    interpreters: dict[str, str] = field(default_factory=dict)
    peer_errors: dict[str, str] = field(default_factory=dict)


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def base_row(info: EngineInfo, w: workloads.Workload) -> dict[str, Any]:
    return {
        "engine": info.name,
        "label": info.label,
        "workload": w.key,
        "group": w.group,
        "title": w.title,
        "n_tasks": w.n_tasks,
        "ideal_s": w.ideal_s,
        "variant": "",
    }


def resolve_interpreters(opts: Options) -> None:
    """Pick each engine's interpreter; install peers on first use (errors are kept, not raised)."""
    wanted = {e.peer for e in opts.engines if e.peer}
    statuses = peers_env.ensure_peers(wanted) if wanted else {}
    for e in opts.engines:
        if e.peer is None:
            opts.interpreters[e.name] = sys.executable
            continue
        status = statuses.get(e.peer)
        if status is None:
            opts.peer_errors[e.name] = f"no group {e.peer!r} in {peers_env.REQUIREMENTS.name}"
        elif status.ok:
            opts.interpreters[e.name] = str(status.python)
        else:
            opts.peer_errors[e.name] = status.error or "unknown install error"


def run_child(info: EngineInfo, w: workloads.Workload, opts: Options) -> list[dict[str, Any]]:
    """Run one cell in a subprocess (its own session, killed whole on timeout)."""
    cmd = [
        opts.interpreters[info.name],
        "-m",
        "benchmarks.runner",
        "--engine",
        info.name,
        "--workload",
        w.key,
        "--repeat",
        str(opts.repeat),
        "--budget",
        f"{opts.timeout_s * 0.4:.0f}",
    ]
    if opts.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    logs = opts.results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{w.key}-{info.name}.log"
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=opts.timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's session: Prefect's server goes too
        out, err = proc.communicate()
        log_path.write_text(err)
        return [{**base_row(info, w), "status": "too slow", "reason": f">{opts.timeout_s:.0f} s"}]
    log_path.write_text(err)
    rows = [json.loads(line[len(MARK) :]) for line in out.splitlines() if line.startswith(MARK)]
    if not rows:
        last = next((ln for ln in reversed(err.splitlines()) if ln.strip()), "no output")
        rows = [
            {
                **base_row(info, w),
                "status": "error",
                "reason": f"exit {proc.returncode}: {last.strip()}"[:300],
            }
        ]
    return rows


def _skip_reason(
    info: EngineInfo, w: workloads.Workload, done: list[dict[str, Any]], timeout_s: float
) -> str | None:
    """Why a large cell need not run: its smaller sibling timed out or projects past the limit."""
    smaller = PROJECTIONS.get(w.key)
    if smaller is None:
        return None
    prior = next(
        (
            r
            for r in done
            if r["engine"] == info.name and r["workload"] == smaller and not r.get("variant")
        ),
        None,
    )
    if prior is None:
        return None
    if prior["status"] == "too slow":
        return f"{smaller} already took >{timeout_s:.0f} s"
    if prior["status"] == "ok":
        factor = 10.0
        projected = factor * min(prior["run_s"]) + (prior.get("setup_s") or 0.0)
        if projected > timeout_s:
            return (
                f"projected {projected:.0f} s from {smaller} "
                f"({min(prior['run_s']):.1f} s x {factor:.0f}), limit {timeout_s:.0f} s"
            )
    return None


def run_matrix(opts: Options) -> list[dict[str, Any]]:
    """Run every selected cell, workload-major; return raw rows in run order.

    With ``rounds`` > 1 each workload's cells run that many times, the engines' order turned
    by one each round (A B C, then B C A, ...), and every row says its ``round``: a machine
    that speeds up or slows down meanwhile weighs on each engine alike, and
    :func:`report.merge_rounds` takes each ratio round by round."""
    rows: list[dict[str, Any]] = []
    for w in opts.workloads:
        for k in range(opts.rounds):
            shift = k % len(opts.engines)
            for info in opts.engines[shift:] + opts.engines[:shift]:
                new = _run_cell(info, w, opts, rows)
                rows.extend([{**r, "round": k} for r in new] if opts.rounds > 1 else new)
    return rows


def _run_cell(
    info: EngineInfo, w: workloads.Workload, opts: Options, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One (workload, engine) cell's rows: run, or why it was not."""
    if not info.runs(w.group):
        return []
    if info.name in opts.peer_errors:
        return [{**base_row(info, w), "status": "not run", "reason": opts.peer_errors[info.name]}]
    skip = _skip_reason(info, w, rows, opts.timeout_s)
    if skip:
        _log(f"{w.key:8} {info.name:17} skipped ({skip})")
        return [{**base_row(info, w), "status": "too slow", "reason": skip}]
    started = time.perf_counter()
    new = run_child(info, w, opts)
    status = ", ".join(r["status"] for r in new)
    _log(f"{w.key:8} {info.name:17} {status} ({time.perf_counter() - started:.1f} s)")
    return new


def parse_args(argv: Sequence[str] | None) -> Options:
    """Build :class:`Options` from the command line.

    Raises:
        SystemExit: unknown engine or workload (argparse's usual exit).
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--engines", help=f"comma list of: {', '.join(BY_NAME)}")
    parser.add_argument("--workloads", help="comma list, e.g. W1,W2 or W1-10k (default: W1..W7)")
    parser.add_argument("--repeat", type=int, default=3, help="timed repeats per cell (median)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run each workload's cells this many times, interleaved; a ratio is then the "
        "median of its per-round ratios, with their range",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per cell")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=RESULTS,
        help="where latest.json and the children's logs go",
    )
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="nbflow and the asyncio baselines only, current interpreter",
    )
    args = parser.parse_args(argv)
    try:
        names = args.engines.split(",") if args.engines else None
        engines = select_engines(names, with_peers=not args.no_peers)
        chosen = workloads.select(
            args.workloads.split(",") if args.workloads else None, quick=args.quick
        )
    except ValueError as exc:
        parser.error(str(exc))
    if all(e.name != BASELINE for e in engines):  # ratios need the baseline of the same run
        engines.insert(0, BY_NAME[BASELINE])
    return Options(
        engines=engines,
        workloads=chosen,
        quick=args.quick,
        repeat=max(1, args.repeat),
        rounds=max(1, args.rounds),
        timeout_s=args.timeout,
        with_peers=not args.no_peers,
        json_path=args.json,
        results_dir=args.results_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``; prints markdown, writes JSON; returns 0."""
    opts = parse_args(argv)
    resolve_interpreters(opts)
    started = time.time()
    rows = report.summarize(report.merge_rounds(run_matrix(opts)))
    meta = {
        **report.environment(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "wall_s": round(time.time() - started, 1),
        "quick": opts.quick,
        "repeat": opts.repeat,
        "rounds": opts.rounds,
        "timeout_s": opts.timeout_s,
    }
    report.write_json(opts.results_dir / "latest.json", rows, meta)
    if opts.json_path:
        report.write_json(opts.json_path, rows, meta)
    print(
        f"## nbflow benchmarks ({meta['started']}, Python {meta['python']}, "
        f"{meta['cpus']} CPUs, repeat={opts.repeat}"
        f"{f', rounds={opts.rounds}' if opts.rounds > 1 else ''}"
        f"{', quick' if opts.quick else ''})\n"
    )
    print(f"Versions: {report.versions(rows)}.\n")
    print(report.markdown(rows))
    print("\n### µs per task (W4: efficiency; nbflow and Hamilton: run / build)\n")
    print(report.pivot(rows))
    store = report.store_table(rows)
    if store:
        print("\n### The store's cost (nbflow, µs per task)\n")
        print(store)
    return 0
