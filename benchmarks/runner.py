"""Child process: run one workload on one engine, print result rows as JSON lines.

Usage (the parent, ``benchmarks/cli.py``, spawns this; run it by hand to debug one cell)::

    python -m benchmarks.runner --engine nbflow --workload W1-1k [--quick] [--repeat 5]

Each repeat is timed with ``time.perf_counter``: ``build_s`` for :meth:`Engine.prepare`,
``run_s`` for :meth:`Engine.execute` (asyncio engines run on one long-lived loop, as in a
kernel); ``cpu_s`` is the process's CPU time (``time.process_time``, every thread) of the
run. A small warm-up run of the same shape comes first, so imports, thread pools and servers
are not billed to the first repeat. Every run's sink values are checked against the reference.
An engine may also expose ``engine.phases`` (seconds by name, e.g. nbflow's ``define`` and
``validate``), collected per repeat. Peak RSS is ``ru_maxrss`` of this process. Rows are
printed on stdout after :data:`MARK`; an engine's own chatter on stdout is ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from benchmarks.engines import BY_NAME
from benchmarks.engines.base import Engine, NotRunnable
from benchmarks.workloads import Workload, all_workloads, expected_sinks

MARK = "@@BENCH-ROW@@ "


def _emit(row: dict[str, Any]) -> None:
    sys.stdout.write(MARK + json.dumps(row) + "\n")
    sys.stdout.flush()


def _peak_rss_kib() -> int:
    # Linux reports kilobytes (macOS bytes); the benchmark machines are Linux.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _one(engine: Engine, runner: asyncio.Runner, workload: Workload, variant: str
         ) -> tuple[float, float, float, Mapping[str, int]]:
    """One timed repeat: (build seconds, run seconds, run CPU seconds, sinks). The CPU time
    is the whole process's (every thread: a store's writer too)."""
    t0 = time.perf_counter()
    prepared = engine.prepare(workload, variant)
    t1 = time.perf_counter()
    if engine.is_async:

        async def timed() -> tuple[float, float, Mapping[str, int]]:
            start, cpu = time.perf_counter(), time.process_time()
            sinks = await engine.aexecute(prepared)
            return time.perf_counter() - start, time.process_time() - cpu, sinks

        run_s, cpu_s, sinks = runner.run(timed())
    else:
        start, cpu = time.perf_counter(), time.process_time()
        sinks = engine.execute(prepared)
        run_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    engine.settle(prepared)
    return t1 - t0, run_s, cpu_s, sinks


def _check(workload: Workload, sinks: Mapping[str, int]) -> None:
    expected = expected_sinks(workload)
    got = {k: sinks.get(k) for k in expected}
    if got != expected:
        wrong = [k for k in expected if got[k] != expected[k]][:3]
        raise AssertionError(
            f"wrong results for {workload.key}: "
            + ", ".join(f"{k}={got[k]!r} (expected {expected[k]!r})" for k in wrong)
        )


def run_cell(engine_name: str, key: str, quick: bool, repeat: int, budget_s: float) -> None:
    """Run one (engine, workload) cell and emit one row per variant."""
    info = BY_NAME[engine_name]
    workload = all_workloads(quick)[key]
    warmup = all_workloads(quick=True)[key]
    base: dict[str, Any] = {
        "engine": engine_name, "label": info.label, "workload": key, "group": workload.group,
        "title": workload.title, "n_tasks": workload.n_tasks, "ideal_s": workload.ideal_s,
    }
    try:
        engine = info.load()
    except Exception as exc:
        _emit({**base, "status": "not run", "reason": f"import failed: {exc!r}"[:300]})
        return
    reason = engine.unsupported(workload)
    if reason:
        _emit({**base, "status": "n/a", "reason": reason})
        return
    t_setup = time.perf_counter()
    try:
        engine.setup(workload)
    except NotRunnable as exc:
        _emit({**base, "status": "not run", "reason": str(exc)[:300]})
        return
    setup_s = time.perf_counter() - t_setup
    try:
        with asyncio.Runner() as runner:
            _run_variants(engine, runner, workload, warmup, engine.variants(workload), base,
                          repeat, budget_s, setup_s)
    finally:
        engine.teardown()


def _run_variants(engine: Engine, runner: asyncio.Runner, workload: Workload, warmup: Workload,
                  variants: tuple[str, ...], base: dict[str, Any], repeat: int, budget_s: float,
                  setup_s: float) -> None:
    """Time every variant ``repeat`` times, interleaved (A B C, then B C A, ...), so that a
    machine that slows down or speeds up meanwhile weighs on every variant alike: the ratios
    between variants (W7: store on vs off) are what this cell is for."""
    rows = {v: {**base, "variant": v, "setup_s": setup_s} for v in variants}
    builds: dict[str, list[float]] = {v: [] for v in variants}
    runs: dict[str, list[float]] = {v: [] for v in variants}
    cpus: dict[str, list[float]] = {v: [] for v in variants}
    phases: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    live = list(variants)
    for variant in variants:  # warm-up of each variant first (imports, threads, the store file)
        if not _attempt(rows[variant], lambda v=variant: _check(warmup, _one(
                engine, runner, warmup, v)[3])):
            live.remove(variant)
    started = time.perf_counter()
    for i in range(max(repeat, workload.min_repeat)):
        shift = i % len(live) if live else 0
        for variant in live[shift:] + live[:shift]:

            def once(variant: str = variant) -> None:
                gc.collect()
                build_s, run_s, cpu_s, sinks = _one(engine, runner, workload, variant)
                _check(workload, sinks)
                builds[variant].append(build_s)
                runs[variant].append(run_s)
                cpus[variant].append(cpu_s)
                for phase, seconds in (getattr(engine, "phases", None) or {}).items():
                    phases[variant].setdefault(phase, []).append(seconds)

            if not _attempt(rows[variant], once):
                live.remove(variant)
        if time.perf_counter() - started > budget_s:
            break  # slow engine: fewer repeats rather than a timeout
    for variant in variants:
        row = rows[variant]
        if "status" not in row:
            row.update(status="ok", run_s=runs[variant], cpu_s=cpus[variant],
                       phases=phases[variant], versions=engine.versions())
            if engine.reports_build:
                row["build_s"] = builds[variant]
        row["peak_rss_kib"] = _peak_rss_kib()
        _emit(row)


def _attempt(row: dict[str, Any], step: Any) -> bool:
    """Run ``step()``; on failure mark ``row`` (n/a or error) and return False."""
    try:
        step()
    except NotRunnable as exc:
        row.update(status="n/a", reason=str(exc)[:300])
        return False
    except Exception as exc:
        print(traceback.format_exc(limit=4), file=sys.stderr)
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:300])
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """Parse the child's arguments and run the cell."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner")
    parser.add_argument("--engine", required=True, choices=sorted(BY_NAME))
    parser.add_argument("--workload", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=40.0,
                        help="stop repeating once this many seconds went into repeats")
    args = parser.parse_args(argv)
    run_cell(args.engine, args.workload, args.quick, max(1, args.repeat), args.budget)


if __name__ == "__main__":
    main()
