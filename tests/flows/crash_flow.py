"""A 50-task flow for the crash test (tests/test_resume.py): ten layers of five tasks.

    python crash_flow.py STORE MARKERS RELEASE [--resume]

Task ``t{k}_{j}`` receives the results of ``t{k-1}_{j}`` and ``t{k-1}_{(j+1) % 5}`` and
returns their sum plus one. Each task appends this process's pid to ``MARKERS/<task>`` as
its last act, so a marker line means one complete execution. The tasks of layer 5 wait
until the file ``RELEASE`` exists: the first process stalls there, halfway, and is killed;
the resumed one is started after the test creates the file. Prints the run as JSON.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
from pathlib import Path

import nbflow as nf

LAYERS, WIDTH, GATED_LAYER = 10, 5, 5
STORE, MARKERS, RELEASE = (Path(p) for p in sys.argv[1:4])


def make(name: str, layer: int, upstream: list[str]):
    async def task(**inputs):
        if layer == GATED_LAYER:
            while not RELEASE.exists():
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.005)
        with open(MARKERS / name, "a") as marker:
            marker.write(f"{os.getpid()}\n")
        return sum(inputs.values()) + 1

    # Parameters named like upstream tasks make them data dependencies.
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    task.__signature__ = inspect.Signature([inspect.Parameter(u, kind) for u in upstream])
    return task


flow = nf.Flow("crash", max_workers=3, store=STORE)
for k in range(LAYERS):
    for j in range(WIDTH):
        ups = [] if k == 0 else [f"t{k - 1}_{j}", f"t{k - 1}_{(j + 1) % WIDTH}"]
        flow.task(name=f"t{k}_{j}")(make(f"t{k}_{j}", k, ups))

run = flow.run(resume="last" if "--resume" in sys.argv else None)
print(json.dumps({"run_id": run.run_id, "status": run.status, "states": run.states,
                  "results": dict(run.results), "pid": os.getpid()}))  # fmt: skip
