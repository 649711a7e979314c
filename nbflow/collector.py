"""The garbage collector while nbflow builds a flow and runs it: left alone, unless asked.

nbflow does not change the process it runs in: by default the collector is left exactly as
it is. ``NBFLOW_GC_FREEZE=1`` (set before the runs, e.g. in the notebook's first cell) opts in
to keeping it out of the way, which pays for flows of tens of thousands of tasks: a run
allocates a few records per task that live until it ends, and validation a few containers
per task that live as long as the flow; no garbage in either, yet in a kernel holding
100,000 tasks those allocations set off collections that traverse the whole heap again and
again. Two context managers, sharing one lock and one count of the runs going on:

- :func:`frozen_gc` (a run): what exists when the first run starts moves to the permanent
  generation, so collections scan only what runs allocate, and the young threshold is raised;
- :func:`paused_gc` (validation): no collection in the block; what it allocated then counts
  as old, without being traversed.

Both do nothing unless ``NBFLOW_GC_FREEZE=1``, and nothing to a process whose collector
something else froze already (``gc.get_freeze_count() > 0`` when the first run starts):
Python can only unfreeze everything, which would undo that freeze.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Iterator

#: Allocations between two young-generation collections during a run (Python's default:
#: 700). A run allocates a few records per task that live until it ends; collecting them
#: every 700 allocations costs ~0.3 µs per task for nothing. Cyclic garbage still goes,
#: just in bigger, rarer batches.
GC_YOUNG_THRESHOLD = int(os.environ.get("NBFLOW_GC_THRESHOLD", "20000"))

_lock = threading.Lock()
_depth = 0  # runs going on (nested or concurrent runs share one freeze)
_owner = False  # whether the runs going on froze the collector (else someone else did)
_thresholds = gc.get_threshold()


def _freezing() -> bool:
    """Whether the user opted in (``NBFLOW_GC_FREEZE=1``)."""
    return os.environ.get("NBFLOW_GC_FREEZE", "0") == "1"


@contextlib.contextmanager
def frozen_gc() -> Iterator[None]:
    """Freeze the garbage collector's generations while runs are active.

    Objects alive when a run starts (the plan, task specs, the notebook's own data) move to
    the permanent generation, so collections during the run scan only what the run allocates
    instead of the whole heap: about a third less engine overhead on a 10,000-task flow.
    The young-generation threshold is raised to :data:`GC_YOUNG_THRESHOLD` meanwhile. Nested
    and concurrent runs share one freeze; the last to finish unfreezes and restores the
    threshold. Only with ``NBFLOW_GC_FREEZE=1``.
    """
    global _depth, _owner, _thresholds
    if not _freezing():
        yield
        return
    with _lock:
        if _depth == 0:
            _owner = gc.get_freeze_count() == 0  # a freeze of someone else's stays theirs
            if _owner:
                gc.freeze()
                _thresholds = gc.get_threshold()
                gc.set_threshold(GC_YOUNG_THRESHOLD, *_thresholds[1:])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _owner:
                gc.set_threshold(*_thresholds)
                gc.unfreeze()
                _owner = False


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No garbage collection in the block; what exists when it ends counts as old.

    At the end, everything the collector tracks moves to the oldest generation untraversed
    (``gc.freeze()`` then ``gc.unfreeze()``, both O(1)); otherwise the next young collection
    would traverse all the block allocated. While a run goes on, it joins that run's freeze
    instead (unfreezing would undo it). Only with ``NBFLOW_GC_FREEZE=1``.
    """
    if not _freezing():
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _freezing():
            with _lock:
                if _depth and _owner:  # a run's freeze: join it
                    gc.freeze()
                elif not _depth and gc.get_freeze_count() == 0:  # nobody's: freeze, thaw
                    gc.freeze()
                    gc.unfreeze()
        if enabled:
            gc.enable()
