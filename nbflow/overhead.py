"""A warning for runs whose tasks are shorter than nbflow's own cost per task.

The engine calls :func:`warn_if_overhead_dominates` as a real-time run ends: a run of many
tasks of a few microseconds each spends most of its time in nbflow, and the remedy (batch
the work into fewer, bigger tasks) is the user's to apply.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from .errors import OverheadWarning

if TYPE_CHECKING:
    from .state import RunState

#: Below this median attempt duration, nbflow's ~8-20 µs per task is a large share of a run.
SHORT_TASK_S = 50e-6
#: ...and only for runs this big, where the overhead adds up to something a person notices.
MANY_TASKS = 1000


def warn_if_overhead_dominates(state: RunState) -> None:
    """Warn (``OverheadWarning``) when a big run's tasks were shorter than nbflow's overhead."""
    rows = state.rows
    if len(rows) < MANY_TASKS:
        return
    # The median of an even sample of about 1,000 rows: close enough, and O(1) per run.
    sample = rows[:: len(rows) // MANY_TASKS]
    durations = sorted(r.end - r.start for r in sample if r.end is not None)
    if durations and durations[len(durations) // 2] < SHORT_TASK_S:
        warnings.warn(
            f"flow {state.flow!r}: {len(rows)} attempts with a median of "
            f"{durations[len(durations) // 2] * 1e6:.0f} µs each; nbflow's own cost (~10 µs a "
            "task) dominates. Batch small work into fewer, bigger tasks (e.g. fan_out over "
            "chunks); see docs/performance.md",
            OverheadWarning,
            stacklevel=2,
        )
