"""What the durable store costs a run: nbflow's µs per task with ``store=None`` and with the
SQLite store, in the process's CPU time, on the harness's own workloads (issue #23).

    python -m benchmarks.store_overhead                       # W1-1k W1-10k W2 W3 W7, 21 rounds
    python -m benchmarks.store_overhead --workloads W2-1k --rounds 41 --json out.json

Each workload's flow is defined twice, as ``python -m benchmarks`` defines it (one with the
store on, one file per workload shared by every repeat), and run on one long-lived event
loop, store and no store alternately (which one goes first alternates too), so that the
machine's drift hits both alike; the medians are reported. The measure is the process's CPU
time during ``await flow.arun()`` (``time.process_time``: every thread, the store's writer
too, which shares the GIL with the run), which the machine's other work disturbs much less
than wall time; ``flow.arun()`` returns once the store has committed the run, so the whole
cost is inside. The loop thread's own CPU time (``time.thread_time``) is reported too: the
rest of the store's cost is its writer thread's. Wall times are printed for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

WORKLOADS = ("W1-1k", "W1-10k", "W2-1k", "W3-1k", "W7-2k")


def measure(key: str, rounds: int) -> dict[str, Any]:
    """Medians of µs per task (process CPU, loop-thread CPU, wall) without and with the
    store, for workload ``key``."""
    from benchmarks.engines.nbflow_engine import STORE, NbflowEngine
    from benchmarks.workloads import all_workloads

    workload = all_workloads()[key]
    engine = NbflowEngine()
    engine.setup(workload)
    prepared = {"none": engine.prepare(workload, ""), "store": engine.prepare(workload, STORE)}
    loop = asyncio.new_event_loop()
    samples: dict[str, dict[str, list[float]]] = {
        v: {"cpu": [], "loop": [], "wall": []} for v in prepared
    }
    try:
        for p in prepared.values():  # warm up: imports, the store file, the flow's version
            for _ in range(2):
                loop.run_until_complete(engine.aexecute(p))
        per_task = 1e6 / workload.n_tasks
        for i in range(rounds):
            for variant in ("none", "store") if i % 2 == 0 else ("store", "none"):
                wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
                loop.run_until_complete(engine.aexecute(prepared[variant]))
                found = samples[variant]
                found["loop"].append((time.thread_time() - own) * per_task)
                found["cpu"].append((time.process_time() - cpu) * per_task)
                found["wall"].append((time.perf_counter() - wall) * per_task)
                engine.settle(prepared[variant])  # outside the timing: the run is on disk
    finally:
        loop.close()
        engine.teardown()
    report: dict[str, Any] = {"tasks": workload.n_tasks, "rounds": rounds}
    for variant, found in samples.items():
        report[variant] = {metric: statistics.median(v) for metric, v in found.items()}
    for metric in ("cpu", "loop", "wall"):
        plain, stored = report["none"][metric], report["store"][metric]
        report[f"{metric}_cost_us"] = stored - plain
        report[f"{metric}_cost_pct"] = 100.0 * (stored / plain - 1.0)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print a table, return the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # OverheadWarning: these are no-op tasks on purpose
    print(
        "| workload | CPU µs/task, no store | with the store | cost | of which the loop's "
        "| wall µs/task, no store | with the store | cost |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    results = {}
    for key in args.workloads.split(","):
        r = results[key] = measure(key, args.rounds)
        print(
            f"| {key} | {r['none']['cpu']:.2f} | {r['store']['cpu']:.2f} | "
            f"+{r['cpu_cost_us']:.2f} µs ({r['cpu_cost_pct']:+.1f} %) | "
            f"+{r['loop_cost_us']:.2f} µs | {r['none']['wall']:.2f} | "
            f"{r['store']['wall']:.2f} | {r['wall_cost_pct']:+.1f} % |",
            flush=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
