"""A 200-task flow for the two-writer test (tests/test_store_concurrency.py).

    python concurrent_flow.py STORE NAME BARRIER_DIR

Waits until both processes have written their file in ``BARRIER_DIR`` (so the two runs
overlap), then runs 200 tasks in chains of ten. Task ``c0_3`` fails twice before it
succeeds, so the run has 202 attempts. Prints the run id and status as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbflow as nf

STORE, NAME, BARRIER = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
TASKS, CHAIN = 200, 10
failures = {"c0_3": 2}


def make(name: str):
    def task():
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            raise ConnectionError(f"{name}: transient")
        return name

    return task


flow = nf.Flow(NAME, max_workers=8, store=STORE)
for i in range(TASKS):
    chain, link = divmod(i, CHAIN)
    after = [f"c{chain}_{link - 1}"] if link else []
    flow.task(name=f"c{chain}_{link}", after=after, retry=nf.Retry(max_retries=3, delay=0.001))(
        make(f"c{chain}_{link}")
    )

(BARRIER / NAME).write_text("ready")
deadline = time.monotonic() + 60
while len(list(BARRIER.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.005)
run = flow.run()
print(json.dumps({"run_id": run.run_id, "status": run.status}))
