"""A cached flow for the cross-process cache test (tests/test_cache.py).

    python cache_flow.py STORE MARKERS

``base`` calls the notebook helper ``scale()``; the test edits ``scale`` in a copy of this
file to show that changing a helper invalidates ``base`` and, through its changed result,
``report``. Executed tasks append to ``MARKERS/<task>``. Prints states and results as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbflow as nf

STORE, MARKERS = Path(sys.argv[1]), Path(sys.argv[2])
flow = nf.Flow("cached", store=STORE)


def mark(name: str) -> None:
    with open(MARKERS / name, "a") as marker:
        marker.write("ran\n")


def scale() -> int:
    return 10


@flow.task(cache=True)
def base():
    mark("base")
    return [scale() * i for i in range(3)]


@flow.task(cache=True)
def report(base):
    mark("report")
    return sum(base)


run = flow.run()
print(json.dumps({"status": run.status, "states": run.states, "results": dict(run.results)}))
