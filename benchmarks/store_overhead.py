"""What the durable store costs a run: a 2,000-task no-op flow, ``store=None`` vs SQLite.

    python -m benchmarks.store_overhead                 # 2,000 tasks, 15 rounds
    python -m benchmarks.store_overhead --tasks 500 --rounds 5 --json out.json

Each round runs the same flow once without a store and once with an
:class:`~nbflow.store.sqlite.SQLiteStore` in a temporary directory, alternating which goes
first so drift in machine load hits both alike. Wall time is what ``flow.run()`` takes: a
recorded run returns once its records are checked (results pickled), and its last commit
follows in the writer thread (write-behind). CPU time (all threads of the process) is
measured until that commit is done (``store.flush()``), so it is the store's whole cost,
deferred work included, and it is less disturbed by other processes than wall time is.

The flow is a binary tree (task i runs after task (i - 1) // 2) of sync no-op functions, so
the engine's own per-task cost is as small as it gets and the store's share is the largest.
Target: median overhead under 20 %. Met on CPU, borderline on wall time. Measured on the
2-core development machine (shared with other benchmarks, so wall times are noisy; CPU is
steadier), with the engine at 17 to 25 us of CPU per no-op task: before the bulk projection
(schema 2) +124 to +153 % wall, +85 to +101 % CPU, 20 us of writer-thread CPU per task;
with it (schema 3) +29 to +58 % wall, +33 to +45 % CPU, 9 us of writer CPU per task; with
attempts derived from the event log when read and no rows per task (schema 4), three runs of
21 to 31 rounds: wall min +23 to +29 %, wall median +19 to +29 %, CPU median +16 to +19 %,
2.4 to 2.7 us of writer-thread CPU per task (about 3.6 us in all threads). Then, with the
recorder as the engine's journal (one C-level append per event on the loop, no recording
bus) and the engine at ~15 us per sync no-op task, quiet machine: wall min +9 to +17 %,
wall median +14 to +22 %, CPU median +13 to +21 %. With write-behind and the run's own
event queues (2026-11-24): wall median +16 %, CPU median (commit included) +15 %; after
the fixes that free a recorded run's memory when it ends (no engine cycle, the writer lets a
batch's items go before committing), 21 rounds: wall median +13 %, CPU median +15 %. Tasks
returning values with inputs cost
the writer more (pickle, digest, inputs hash): see the W7 row of ``python -m benchmarks``.
See docs/durability.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def build(store: Any, tasks: int, work_ms: float = 0.0) -> Any:
    """A ``tasks``-task flow (a binary tree of ``after=`` edges) on ``store``.

    Each task sleeps ``work_ms`` milliseconds (0: a no-op) and returns None.
    """
    import nbflow as nf

    flow = nf.Flow("store-overhead", store=store)

    def make() -> Any:
        def noop() -> None:
            if work_ms:
                time.sleep(work_ms / 1000)

        return noop

    for i in range(tasks):
        flow.task(name=f"t{i}", after=[f"t{(i - 1) // 2}"] if i else [])(make())
    return flow


def measure(flow: Any) -> tuple[float, float]:
    """Wall seconds of one ``flow.run()``, and CPU seconds until its records are committed."""
    wall, cpu = time.perf_counter(), time.process_time()
    run = flow.run()
    wall = time.perf_counter() - wall
    if flow.store is not None:
        flow.store.flush()  # the run's last commit (write-behind) is part of its CPU cost
    cpu = time.process_time() - cpu
    assert run.status == "succeeded", run
    return wall, cpu


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a report, return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--work-ms", type=float, default=0.0, help="sleep per task (0: no-op)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    from nbflow.store import close_all
    from nbflow.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        flows = {
            "none": build(None, args.tasks, args.work_ms),
            "sqlite": build(store, args.tasks, args.work_ms),
        }
        for flow in flows.values():  # warm up: imports, plan, the version record
            measure(flow)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in flows}
        for round_ in range(args.rounds):
            order = ["none", "sqlite"] if round_ % 2 == 0 else ["sqlite", "none"]
            for name in order:
                samples[name].append(measure(flows[name]))
        runs = store.runs("store-overhead")
        attempts = sum(len(store.attempts(r["run_id"])) for r in runs[-2:])
        close_all()
    if attempts != 2 * args.tasks:
        raise SystemExit(f"store lost records: {attempts} attempts for 2 runs")

    report: dict[str, Any] = {"tasks": args.tasks, "rounds": args.rounds, "work_ms": args.work_ms}
    for name, values in samples.items():
        walls, cpus = [w for w, _ in values], [c for _, c in values]
        report[name] = {
            "wall_min_s": min(walls),
            "wall_median_s": statistics.median(walls),
            "cpu_min_s": min(cpus),
            "cpu_median_s": statistics.median(cpus),
        }
    metrics = ("wall_min_s", "wall_median_s", "cpu_min_s", "cpu_median_s")
    for metric in metrics:
        base, with_store = report["none"][metric], report["sqlite"][metric]
        report[f"overhead_{metric[:-2]}_pct"] = 100.0 * (with_store - base) / base
    kind = f"{args.work_ms:g} ms-per-task" if args.work_ms else "no-op"
    print(f"{args.tasks}-task {kind} flow, {args.rounds} rounds (seconds per run)")
    print(f"{'':10}" + "".join(f"{m[:-2].replace('_', ' '):>13}" for m in metrics))
    for name in ("none", "sqlite"):
        print(f"{name:10}" + "".join(f"{report[name][m]:13.3f}" for m in metrics))
    print(
        f"{'overhead':10}" + "".join(f"{report[f'overhead_{m[:-2]}_pct']:12.1f}%" for m in metrics)
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
