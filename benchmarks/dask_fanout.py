"""``python -m benchmarks.dask_fanout``: a CPU-bound fan-out on Dask vs the local executor.

One flow, one run each, in the same process and minutes: a fan-out of ``--n`` elements (default
1,000), each a pure-Python loop of about ``--ms`` milliseconds (default 50), run

* on the local executor (the default: sync tasks in a thread pool, so the GIL lets one element
  compute at a time), and
* on ``nf.DaskExecutor`` with a ``LocalCluster`` of ``--workers`` worker processes (default 2,
  one thread each, loopback).

Prints the wall time of each (median of ``--repeat`` interleaved runs), the speed-up, each one's
overhead per element against the ideal (``n * element time / parallelism``, the element time
measured here on an undisturbed core), and the cost per element of the same fan-out with no-op
elements. The loop length is calibrated in this process first; cluster start-up and a small
warm-up run on each executor are not timed. The load average is printed, and so is the gain
that ``--workers`` plain processes (multiprocessing, no Dask) get over one on this machine at
that moment: the ceiling for any process-based executor. On a shared machine other processes
take cores from the workers, and both numbers show it. ``--quick`` runs 40 elements of 20 ms
(a check of the script, not a measurement). ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbflow as nf


def burn(loops: int) -> int:
    """CPU-bound work that holds the GIL: ``loops`` iterations of integer arithmetic."""
    total = 0
    for i in range(loops):
        total = (total + i * i) % 1_000_003
    return total


def element_seconds(loops: int, probes: int = 5) -> float:
    """The fastest of a few timed ``burn(loops)``: one element's CPU time, least disturbed."""
    best = float("inf")
    for _ in range(probes):
        start = time.perf_counter()
        burn(loops)
        best = min(best, time.perf_counter() - start)
    return best


def calibrate(ms: float) -> int:
    """Loop count that takes about ``ms`` milliseconds here (on an undisturbed core)."""
    probe = 400_000
    return max(1, round(ms / 1000 / (element_seconds(probe) / probe)))


def _timed_burn(loops: int) -> float:
    start = time.perf_counter()
    burn(loops)
    return time.perf_counter() - start


def parallel_ceiling(processes: int, loops: int) -> float:
    """Throughput gain of ``processes`` plain processes over one, here and now (no Dask).

    On an idle machine with that many free cores this is about ``processes``; on a busy one
    it is what any process-based executor can hope for at best.
    """
    import multiprocessing

    alone = min(_timed_burn(loops) for _ in range(2))
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_timed_burn, [1] * processes)  # start-up, not timed
        start = time.perf_counter()
        pool.map(_timed_burn, [loops] * processes)
        wall = time.perf_counter() - start
    return processes * alone / wall


def build_flow(n: int, loops: int) -> nf.Flow:
    """``items`` (n numbers) -> ``work`` (fan-out: burn per element) -> ``total``."""
    flow = nf.Flow("dask-fanout-bench", store=None)

    @flow.task
    def items() -> list[int]:
        return list(range(n))

    @flow.task(fan_out="items")
    def work(items: int) -> int:
        return burn(loops) + items

    @flow.task
    def total(work: list[int]) -> int:
        return sum(work)

    return flow


def timed_run(flow: nf.Flow, executor: Any) -> tuple[float, int]:
    """Wall seconds of one run, and its checked result."""
    start = time.perf_counter()
    run = flow.run(executor=executor)
    elapsed = time.perf_counter() - start
    run.raise_for_status()
    return elapsed, int(run.results["total"])


def table(numbers: dict[str, Any]) -> str:
    """The markdown report."""
    workers = numbers["workers"]
    return (
        "| executor | wall s | ideal s | overhead ms/element | no-op fan-out ms/element |\n"
        "|---|--:|--:|--:|--:|\n"
        f"| local (threads: GIL, one at a time) | {numbers['local_s']:.2f} | "
        f"{numbers['ideal_local_s']:.2f} | {numbers['local_overhead_ms']:.2f} | "
        f"{numbers['local_noop_ms']:.2f} |\n"
        f"| Dask LocalCluster ({workers} processes) | {numbers['dask_s']:.2f} | "
        f"{numbers['ideal_dask_s']:.2f} | {numbers['dask_overhead_ms']:.2f} | "
        f"{numbers['dask_noop_ms']:.2f} |\n\n"
        f"speed-up of Dask over local: {numbers['speedup']:.2f}x; {workers} plain processes "
        f"reach {numbers['process_ceiling']:.2f}x over one on this machine right now "
        f"(cluster start-up, not included: {numbers['dask_cluster_start_s']:.2f} s; "
        f"load average before/after: {numbers['load_before']} / {numbers['load_after']})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_fanout")
    parser.add_argument("--n", type=int, default=1000, help="fan-out elements (default 1000)")
    parser.add_argument("--ms", type=float, default=50.0, help="CPU ms per element (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs each (median)")
    parser.add_argument("--quick", action="store_true", help="40 elements of 20 ms")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.ms = 40, 20.0

    try:
        from nbflow.dask import DaskExecutor
    except ImportError as error:
        print(f"skipped: {error}", file=sys.stderr)
        return 2

    load_before = round(os.getloadavg()[0], 2)
    loops = calibrate(args.ms)
    element_s = element_seconds(loops)
    flow, noop = build_flow(args.n, loops), build_flow(args.n, 0)
    warm = build_flow(min(args.n, 2 * args.workers), loops)
    print(
        f"fan-out of {args.n} elements x {element_s * 1000:.1f} ms CPU ({loops:,} loops), "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, load {load_before}",
        file=sys.stderr,
    )

    local = nf.LocalExecutor()
    start = time.perf_counter()
    with DaskExecutor(n_workers=args.workers) as dask_executor:
        startup_s = time.perf_counter() - start
        timed_run(warm, local)
        timed_run(warm, dask_executor)
        local_noop, _ = timed_run(noop, local)
        dask_noop, _ = timed_run(noop, dask_executor)
        local_times, dask_times = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine
            local_s, local_total = timed_run(flow, local)
            dask_s, dask_total = timed_run(flow, dask_executor)
            assert dask_total == local_total, (dask_total, local_total)
            local_times.append(local_s)
            dask_times.append(dask_s)
            print(f"local {local_s:.2f} s, dask {dask_s:.2f} s", file=sys.stderr)
    local.close()

    ceiling = parallel_ceiling(args.workers, 10 * loops)
    local_s, dask_s = statistics.median(local_times), statistics.median(dask_times)
    ideal_local = args.n * element_s  # the GIL runs one element at a time
    ideal_dask = ideal_local / args.workers
    numbers = {
        "n": args.n,
        "element_ms": round(element_s * 1000, 2),
        "workers": args.workers,
        "cores": os.cpu_count(),
        "repeat": args.repeat,
        "local_s": round(local_s, 3),
        "dask_s": round(dask_s, 3),
        "ideal_local_s": round(ideal_local, 3),
        "ideal_dask_s": round(ideal_dask, 3),
        "speedup": round(local_s / dask_s, 3),
        "process_ceiling": round(ceiling, 3),
        "local_overhead_ms": round((local_s - ideal_local) / args.n * 1000, 2),
        "dask_overhead_ms": round((dask_s - ideal_dask) / args.n * 1000, 2),
        "local_noop_ms": round(local_noop / args.n * 1000, 3),
        "dask_noop_ms": round(dask_noop / args.n * 1000, 3),
        "dask_cluster_start_s": round(startup_s, 3),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
    }
    print(table(numbers))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
