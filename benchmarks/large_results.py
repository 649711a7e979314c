"""What storing a large DataFrame result costs, against writing it with ``df.to_parquet``.

    python -m benchmarks.large_results                # a 200 MB frame, 3 rounds
    python -m benchmarks.large_results --mb 50 --rounds 5

Each round times, on the same frame: ``df.to_parquet(path)`` (pyarrow, what a user would
write by hand); a one-task flow returning the frame with ``store=None``; and the same flow
with a SQLite store in a fresh directory (the frame becomes a content-addressed Parquet
file, hashed as it is written, see ``nbflow.store.codecs``). The store's cost is the
difference of the two runs; the target (issue #23) is at most 1.3 times ``to_parquet``.
Then a second run with ``resume=`` of a run whose last task failed shows what a resume costs
when no re-running task needs the frame: it is not read. (Both runs hash the frame, which the
task's function closes over: it is part of the task's identity, see docs/reuse.md.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def frame(megabytes: int) -> Any:
    """A DataFrame of about ``megabytes`` MB: float, int and string-category columns."""
    import numpy as np
    import pandas as pd

    rows = megabytes * 2**20 // 24
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "value": rng.random(rows),
            "count": rng.integers(0, 1_000_000, rows),
            "group": pd.Categorical(rng.choice(["a", "b", "c", "d"], rows)),
            "weight": rng.random(rows),
        }
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the benchmark, print a report, return the medians (seconds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import nbflow as nf

    df = frame(args.mb)
    size = df.memory_usage(deep=True).sum() / 2**20
    times: dict[str, list[float]] = {"to_parquet": [], "run, no store": [], "run, store": []}
    resumed: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            start = time.perf_counter()
            df.to_parquet(Path(tmp) / f"direct{round_}.parquet", engine="pyarrow")
            times["to_parquet"].append(time.perf_counter() - start)

            for label, store in (("run, no store", None), ("run, store", f"{tmp}/s{round_}.db")):
                flow = nf.Flow("large-result", store=store, on_error="continue")
                failing = {"yes": True}
                flow.task(name="data")(lambda: df)

                @flow.task
                def summary(data):
                    return len(data)

                @flow.task
                def report(summary):
                    if failing["yes"]:  # noqa: B023 - used within this iteration only
                        raise RuntimeError("fails once, for the resume")
                    return f"{summary} rows"

                start = time.perf_counter()
                flow.run()
                times[label].append(time.perf_counter() - start)
                if store is not None:
                    failing["yes"] = False
                    start = time.perf_counter()
                    run = flow.run(resume="last")
                    resumed.append(time.perf_counter() - start)
                    assert run.states["summary"] == "cached", run.states
    medians = {label: statistics.median(values) for label, values in times.items()}
    cost = medians["run, store"] - medians["run, no store"]
    print(f"a {size:.0f} MB DataFrame, {args.rounds} rounds (median seconds)")
    for label, value in medians.items():
        print(f"  {label:16} {value:8.3f}")
    print(f"  store's cost     {cost:8.3f}  = {cost / medians['to_parquet']:.2f} x to_parquet")
    print(f"  resume (frame not needed, not read) {statistics.median(resumed):.3f}")
    return {**medians, "store_cost": cost, "resume": statistics.median(resumed)}


if __name__ == "__main__":
    main(sys.argv[1:])
