"""Task and run lifecycles: one enum each, with the table of allowed transitions.

A leaf module (like ``errors``): any module may import it.

    pending ──> queued ──> running ──> succeeded | failed | cancelled
       │          │           │  ^
       │          │           v  │
       │          │        retrying
       └──────────┴──> skipped | upstream_failed | cancelled | cached
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """Where one task of one run stands."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    CACHED = "cached"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    """Where a whole run stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = TaskState
TERMINAL: frozenset[TaskState] = frozenset(
    {S.SUCCEEDED, S.CACHED, S.FAILED, S.SKIPPED, S.UPSTREAM_FAILED, S.CANCELLED}
)
#: States whose result downstream tasks can read.
SUCCESSFUL: frozenset[TaskState] = frozenset({S.SUCCEEDED, S.CACHED})
#: States that count as a failure for trigger rules. (``cancelled`` counts as a skip: only
#: a task cancelled on its own has dependants left to decide; see ``scheduler.column_of``.)
FAILED_LIKE: frozenset[TaskState] = frozenset({S.FAILED, S.UPSTREAM_FAILED})

TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.PENDING: frozenset({S.QUEUED, S.SKIPPED, S.UPSTREAM_FAILED, S.CANCELLED}),
    # queued -> failed: a `when` condition that raises fails the task before it starts.
    S.QUEUED: frozenset({S.RUNNING, S.SKIPPED, S.CANCELLED, S.CACHED, S.SUCCEEDED, S.FAILED}),
    # running -> skipped / upstream_failed: a fan-out whose streaming source did not
    # succeed while its elements ran (see nbflow.streams).
    S.RUNNING: frozenset(
        {S.SUCCEEDED, S.FAILED, S.RETRYING, S.CANCELLED, S.CACHED, S.SKIPPED, S.UPSTREAM_FAILED}
    ),
    S.RETRYING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED}),
    **{state: frozenset() for state in TERMINAL},
}


def can_transition(old: TaskState, new: TaskState) -> bool:
    """Whether a task may move from ``old`` to ``new`` (see the module's diagram)."""
    return new in TRANSITIONS[old]
