"""A flow with a subflow that has a subflow, for the liveness tests (tests/test_liveness.py).

    python nested_flow.py STORE RELEASE [--resume]

``outer`` stores a large result (a file: the store's ``file_bytes`` is 100; its bytes name
this process, so no other run shares the file) and runs its subflow ``done`` to its end;
then its subflow ``middle``, whose subflow ``inner`` has a task that prints ``waiting`` and
waits until the file ``RELEASE`` exists. A test kills the process there, or creates
``RELEASE`` to let the run end.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbflow as nf

STORE, RELEASE = sys.argv[1], Path(sys.argv[2])
store = nf.SQLiteStore(STORE, file_bytes=100)

inner = nf.Flow("inner", store=store)


@inner.task
def wait():
    print("waiting", flush=True)
    while not RELEASE.exists():
        time.sleep(0.02)
    return 1


middle = nf.Flow("middle", store=store)
middle.task(name="inner")(inner)

done = nf.Flow("done", store=store)
done.task(name="step")(lambda: 1)

outer = nf.Flow("outer", store=store)


@outer.task
def big():
    return f"{os.getpid()}:" + "x" * 5_000


outer.task(name="done")(done)
outer.task(name="middle", after=["big", "done"])(middle)

run = outer.run(resume="last" if "--resume" in sys.argv else None)
print(run.status, flush=True)
