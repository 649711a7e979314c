"""A chain of short tasks that notes when each one finishes, for the kill-window measure.

    python chain_flow.py STORE TIMES [TASKS] [--resume]

Task ``t{i}`` sleeps 2 ms, then appends ``t{i} <time.time()>`` to TIMES (flushed at once:
the line is on disk before the task returns), and returns ``i``. The chain runs until the
process is killed (or TASKS tasks are done); ``--resume`` resumes the last run. Prints the
run's status and states as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbflow as nf

args = [a for a in sys.argv[1:] if a != "--resume"]
STORE, TIMES = Path(args[0]), Path(args[1])
TASKS = int(args[2]) if len(args) > 2 else 5000
notes = open(TIMES, "a", buffering=1)  # noqa: SIM115 - open for the process's life


def make(i: int):
    def task(**upstream):
        time.sleep(0.002)
        notes.write(f"t{i} {time.time()!r}\n")
        return i

    return task


flow = nf.Flow("chain", store=STORE)
for i in range(TASKS):
    flow.task(name=f"t{i}", after=[f"t{i - 1}"] if i else [])(make(i))
run = flow.run(resume="last" if "--resume" in sys.argv else None)
print(json.dumps({"status": run.status, "states": run.states}))
