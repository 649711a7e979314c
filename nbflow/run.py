"""``Run``: what a finished (or running) flow run looks like to users.

A :class:`Run` is a read-only view over one :class:`~nbflow.state.RunState`; the same state
feeds the store and the dashboard, so all agree. ``timeline()`` builds a pandas DataFrame
lazily (pandas is imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import TaskFailedError
from .lifecycle import SUCCESSFUL, RunStatus, TaskState
from .state import RunState

if TYPE_CHECKING:
    import pandas as pd

    from .graph import Plan

TIMELINE_COLUMNS = ["task", "attempt", "status", "start", "end", "duration_s", "worker", "error"]


class Run:
    """The outcome of one flow run (live while it runs).

    Attributes mirror the API contract: ``status``, ``results``, ``errors``, ``states``,
    ``duration``, ``run_id``, ``flow_version``, ``timeline()``, ``explain(task)``.
    """

    def __init__(self, state: RunState, plan: Plan | None = None, strategy: Any = None) -> None:
        self._state = state
        self._plan = plan
        self._strategy = strategy

    @property
    def state(self) -> RunState:
        """The underlying reduced state (shared with observers)."""
        return self._state

    @property
    def run_id(self) -> str:
        """Unique id of this run."""
        return self._state.run_id

    @property
    def flow(self) -> str:
        """Name of the flow that ran."""
        return self._state.flow

    @property
    def flow_version(self) -> str:
        """Content hash of the flow definition that ran."""
        return self._state.flow_version

    @property
    def status(self) -> str:
        """``"succeeded"``, ``"failed"``, ``"cancelled"`` (or ``"running"`` while live)."""
        return self._state.status.value

    @property
    def done(self) -> bool:
        """Whether the run has finished."""
        return self._state.status not in (RunStatus.PENDING, RunStatus.RUNNING)

    @property
    def results(self) -> dict[str, Any]:
        """Task name -> result, for tasks that succeeded (or came from cache)."""
        return {n: r.result for n, r in self._state.tasks.items() if r.state in SUCCESSFUL}

    @property
    def errors(self) -> dict[str, BaseException]:
        """Task name -> exception of its last attempt, for tasks that failed."""
        return {
            n: r.error
            for n, r in self._state.tasks.items()
            if r.state is TaskState.FAILED and r.error is not None
        }

    @property
    def element_errors(self) -> dict[str, dict[int, BaseException]]:
        """Fan-out task -> {element index: error} for elements that failed for good.

        With ``allow_partial=True`` the task succeeds with the successes only; its failed
        elements are reported here.
        """
        return {n: dict(r.element_errors) for n, r in self._state.tasks.items() if r.element_errors}

    @property
    def tracebacks(self) -> dict[str, str]:
        """Task name -> formatted traceback of its final failure."""
        return {n: r.traceback for n, r in self._state.tasks.items() if r.traceback}

    @property
    def states(self) -> dict[str, str]:
        """Task name -> state name (``pending``, ``running``, ``succeeded``...)."""
        return {n: r.state.value for n, r in self._state.tasks.items()}

    @property
    def duration(self) -> float:
        """Seconds from start to end (to now while running)."""
        return self._state.duration

    def raise_for_status(self) -> Run:
        """Raise :class:`TaskFailedError` for the first failed task; return self otherwise."""
        for name, error in self.errors.items():
            raise TaskFailedError(name, error) from error
        return self

    def timeline(self) -> pd.DataFrame:
        """One row per attempt: task, attempt, status, start, end, duration_s, worker, error.

        ``start``/``end`` are timestamps (``end`` is NaT while an attempt runs); fan-out
        elements appear as ``task[i]``; a cached result is one row with status ``cached``.
        """
        import pandas as pd

        s = self._state
        origin = pd.Timestamp(s.wall_start, unit="s")
        rows = [
            (
                r.task,
                r.attempt,
                r.status,
                origin + pd.Timedelta(seconds=r.start),
                origin + pd.Timedelta(seconds=r.end) if r.end is not None else pd.NaT,
                (r.end - r.start) if r.end is not None else None,
                r.worker,
                r.error,
                r.element,
                r.base,
            )
            for r in s.rows
        ]
        frame = pd.DataFrame(rows, columns=[*TIMELINE_COLUMNS, "element", "base_task"])
        frame["duration_s"] = frame["duration_s"].astype(float)
        return frame

    def explain(self, task: str) -> str:
        """Why ``task`` started when it did, in plain words."""
        from .explain import explain

        return explain(self, task)

    def __repr__(self) -> str:
        counts = self._state.counts()
        finished = sum(counts.get(k, 0) for k in ("succeeded", "cached", "skipped"))
        total = len(self._state.tasks)
        failed = counts.get("failed", 0)
        return f"<Run {self.flow!r} {self.status} done={finished}/{total} failed={failed}>"

    def _repr_html_(self) -> str:
        from .summary import run_summary_html

        return run_summary_html(self)
