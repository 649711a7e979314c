"""``python -m benchmarks.engine``: nbflow's own cost per task (issue 2), and its define time.

1. Engine overhead: 10,000 no-op tasks in three shapes — independent, a chain, a layered DAG
   (200 x 50, fan-in 3) — on nbflow and on the plain-asyncio ready-queue baseline, in the same
   run, each in its own subprocess. Prints µs per task and the ratio.
2. Define time: decorating the 10,000 tasks of W1 plus building the spec and graph
   (``flow.validate()``) against Apache Hamilton's driver build for the same graph (Hamilton
   runs from ``benchmarks/.venv-peers``, installed on first use; skipped with ``--no-peers``).

Options: ``--quick`` (tiny sizes), ``--repeat N``, ``--timeout S``, ``--no-peers``,
``--json PATH``. Results also go to ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import cli, report, workloads
from benchmarks.engines import BY_NAME

SHAPES = (("E-indep", "independent"), ("E-chain", "chain"), ("E-layered", "layered"))


def _find(rows: list[dict[str, Any]], engine: str, key: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["engine"] == engine and r["workload"] == key
                 and not r.get("variant")), None)


def _status(row: dict[str, Any] | None) -> str:
    if row is None:
        return "not run"
    return row["status"] + (f": {row['reason']}" if row.get("reason") else "")


def overhead_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: µs per task of nbflow and the ready queue, and their ratio, per shape."""
    lines = ["| shape | tasks | nbflow µs/task | ready-queue µs/task | ratio |",
             "|---|--:|--:|--:|--:|"]
    for key, shape in SHAPES:
        nb, rq = _find(rows, "nbflow", key), _find(rows, "asyncio-rq", key)
        n = (nb or rq or {}).get("n_tasks", 0)
        nb_us = f"{nb['us_per_task']:.1f}" if nb and nb["status"] == "ok" else _status(nb)
        rq_us = f"{rq['us_per_task']:.1f}" if rq and rq["status"] == "ok" else _status(rq)
        ratio = f"{nb['ratio']:.2f}" if nb and nb.get("ratio") else ""
        lines.append(f"| {shape} | {n:,} | {nb_us} | {rq_us} | {ratio} |")
    return "\n".join(lines)


def define_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: nbflow's define + validate time for W1-10k vs Hamilton's driver build."""
    nb, ham = _find(rows, "nbflow", "W1-10k"), _find(rows, "hamilton", "W1-10k")
    n = (nb or ham or {}).get("n_tasks", 0)
    lines = [f"| step (W1-10k graph, {n:,} tasks) | median |", "|---|--:|"]
    nb_total = ham_build = None
    if nb and nb["status"] == "ok":
        for phase, label in (("define", "nbflow: decorate every task"),
                             ("validate", "nbflow: spec + graph (`flow.validate()`)")):
            values = nb.get("phases", {}).get(phase)
            if values:
                lines.append(f"| {label} | {statistics.median(values) * 1e3:.1f} ms |")
        nb_total = nb["build_median_s"]
        lines.append(f"| nbflow: total define time | {nb_total * 1e3:.1f} ms |")
    else:
        lines.append(f"| nbflow | {_status(nb)} |")
    if ham and ham["status"] == "ok":
        ham_build = ham["build_median_s"]
        lines.append(f"| Hamilton: `driver.Builder()...build()` | {ham_build * 1e3:.1f} ms |")
    else:
        lines.append(f"| Hamilton driver build | {_status(ham)} |")
    if nb_total and ham_build:
        lines.append(f"| ratio nbflow / Hamilton (target <= 0.33) | {nb_total / ham_build:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the overhead and define-time cells; print two markdown tables; return 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--no-peers", action="store_true", help="skip the Hamilton comparison")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    known = workloads.all_workloads(args.quick)
    opts = cli.Options(
        engines=[BY_NAME["asyncio-rq"], BY_NAME["nbflow"]],
        workloads=[known[k] for k, _ in SHAPES],
        quick=args.quick, repeat=max(1, args.repeat), timeout_s=args.timeout,
        with_peers=not args.no_peers,
    )
    cli.resolve_interpreters(opts)
    rows = cli.run_matrix(opts)
    define_engines = [BY_NAME["nbflow"]] + ([] if args.no_peers else [BY_NAME["hamilton"]])
    define_opts = cli.Options(engines=define_engines, workloads=[known["W1-10k"]],
                              quick=args.quick, repeat=opts.repeat, timeout_s=args.timeout,
                              with_peers=not args.no_peers)
    cli.resolve_interpreters(define_opts)
    define_rows = cli.run_matrix(define_opts)
    if args.no_peers:
        define_rows.append({**cli.base_row(BY_NAME["hamilton"], known["W1-10k"]),
                            "status": "not run", "reason": "--no-peers"})
    summary = report.summarize(rows + define_rows)
    meta = {**report.environment(), "quick": args.quick, "repeat": opts.repeat}
    report.write_json(cli.RESULTS / "engine.json", summary, meta)
    if args.json:
        report.write_json(args.json, summary, meta)
    print(f"## nbflow engine overhead (Python {meta['python']}, {meta['cpus']} CPUs, "
          f"repeat={opts.repeat}{', quick' if args.quick else ''})\n")
    print(overhead_table(summary))
    print("\n## Define time\n")
    print(define_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
