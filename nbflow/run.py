"""``Run``: what a finished (or running) flow run looks like to users.

A :class:`Run` is a read-only view over one :class:`~nbflow.state.RunState`; the same state
feeds the store and the dashboard, so all agree. ``timeline()`` builds a pandas DataFrame
lazily (pandas is imported on first use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .errors import TaskFailedError
from .events import row_label
from .lazy import LazyValues
from .lifecycle import SUCCESSFUL, RunStatus, TaskState
from .state import RunState

if TYPE_CHECKING:
    import pandas as pd

    from .graph import Plan

TIMELINE_COLUMNS = ["task", "attempt", "status", "start", "end", "duration_s", "worker", "error"]
LOG_COLUMNS = ["task", "attempt", "element", "time", "level", "message", "logger"]


class Run:
    """The outcome of one flow run (live while it runs).

    Attributes mirror the API contract: ``status``, ``results``, ``errors``, ``states``,
    ``duration``, ``run_id``, ``flow_version``, ``timeline()``, ``logs()``,
    ``explain(task)``.
    """

    def __init__(
        self,
        state: RunState,
        plan: Plan | None = None,
        strategy: Any = None,
        *,
        executor: Any = None,
        durable: Any = None,
    ) -> None:
        self._state = state
        self._durable = durable  # the store's recorder and hooks (nbflow.cache), or None
        self._plan = plan
        self._strategy = strategy
        # A remote executor (nbflow.dask) leaves results on the cluster; fetch them on read.
        remote = getattr(executor, "remote_results", False)
        self._materialize: Callable[[Any], Any] | None = executor.materialize if remote else None
        self._fetched: dict[str, Any] = {}
        self._results_cache: tuple[int, dict[str, Any]] | None = None

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
        """Name of the flow that runs (known before the run's first event)."""
        return self._state.flow or (self._plan.flow_name if self._plan is not None else "")

    @property
    def parent_run(self) -> str | None:
        """Id of the run that started this one: a chained flow's upstream run, a subflow's
        parent run; else None."""
        return self._state.parent_run

    @property
    def children(self) -> dict[str, list[Run]]:
        """Subflow task -> the child runs it started (one per attempt or loop iteration),
        live while they run (see :mod:`nbflow.subflows`)."""
        return {
            task: [Run(child) for child in runs if child is not None]
            for task, runs in self._state.children.items()
        }

    @property
    def signals(self) -> dict[str, Any]:
        """Signal -> the last value the run received of it (see :mod:`nbflow.waits`)."""
        return dict(self._state.signals)

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
    def results(self) -> Mapping[str, Any]:
        """Task name -> result, for tasks that succeeded (or came from cache).

        A plain dict, except when some results are read only when needed: those a resumed
        run or the cache took from the store (a :class:`~nbflow.lazy.LazyValues`, which reads
        each one when it is looked up), and those of a run on a remote executor
        (``nf.DaskExecutor``: a :class:`RemoteResults` that fetches each from the cluster).
        """
        # Built once per state change, not per access: `run.results[name]` in a loop over
        # 10,000 tasks must not rebuild a 10,000-entry dict each time.
        cached = self._results_cache
        if cached is not None and cached[0] == self._state.last_seq:
            values = cached[1]
        else:
            values = {n: r.result for n, r in self._state.tasks.items() if r.state in SUCCESSFUL}
            self._results_cache = (self._state.last_seq, values)
        if self._materialize is not None:
            return RemoteResults(values, self._materialize, self._fetched)
        if self._durable is not None and self._durable.hooks.served:
            # Results served from the store are read when first needed.
            return LazyValues(values)
        return values

    @property
    def recorded(self) -> bool | None:
        """Whether the store recorded the whole run (None: the flow has no store, or the
        run is still going). False: see :attr:`store_error`."""
        if self._durable is None or not self.done:
            return None
        return self._durable.recorder.error is None

    @property
    def store_error(self) -> Exception | None:
        """Why the store could not record all of the run (SQLite's own words), or None."""
        return self._durable.recorder.error if self._durable is not None else None

    def report(self) -> None:
        """Show, as warnings, what the store could not record of this run (called when the
        run ends, in the caller's context: a notebook shows them under the cell)."""
        if self._durable is not None:
            self._durable.recorder.report()

    @property
    def errors(self) -> dict[str, BaseException]:
        """Task name -> exception of its last attempt, for tasks that failed."""
        return {
            n: r.error
            for n, r in self._state.tasks.items()
            if r.state is TaskState.FAILED and r.error is not None
        }

    @property
    def element_errors(self) -> dict[str, dict[int | str, BaseException]]:
        """Fan-out task -> {element: error} for elements that failed for good; an element
        is its key when the task has ``key=``, else its index.

        With ``allow_partial=True`` the task succeeds with the successes only; its failed
        elements are reported here.
        """
        return {
            n: _by_key(r, r.element_errors)
            for n, r in self._state.tasks.items()
            if r.element_errors
        }

    def elements(self, task: str) -> dict[int | str, Any]:
        """The results of fan-out task ``task``'s elements that succeeded, in element order,
        by key (``key=``) or else by index: ``run.elements("fetch")["nbflow"]``.

        Elements that ended after a ``complete_when`` held are here too (the task's own
        result leaves them out). On a remote executor each value is fetched as it is read
        here.

        Raises:
            KeyError: ``task`` is not a task of the run.
        """
        record = self._state.tasks[task]
        found = _by_key(record, record.element_results or {})
        if self._materialize is not None:
            return {k: self._materialize(v) for k, v in found.items()}
        return found

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

    @property
    def error(self) -> BaseException | None:
        """What failed the run as a whole (a run middleware that raised, or returned without
        calling ``call_next``), else None; tasks' errors are in :attr:`errors`."""
        return self._state.run_error

    def raise_for_status(self) -> Run:
        """Raise the run's own :attr:`error`, or :class:`TaskFailedError` for the first
        failed task; return self otherwise."""
        if self._state.run_error is not None:
            raise self._state.run_error
        for name, error in self.errors.items():
            raise TaskFailedError(name, error) from error
        return self

    def timeline(self) -> pd.DataFrame:
        """One row per attempt: task, attempt, status, start, end, duration_s, worker, error.

        ``start``/``end`` are timestamps (``end`` is NaT while an attempt runs); fan-out
        elements appear as ``task[i]`` (``task[key]`` with ``key=``); a cached result is
        one row with status ``cached`` (a fan-out task's too, and a cached element's).
        Three more columns: ``element`` (the element's index, a nullable ``Int64``:
        ``<NA>`` for a task's own attempt), ``base_task``, and ``key`` (the element's key,
        or None).
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
                _key(s, r.base, r.element),
            )
            for r in s.rows
        ]
        frame = pd.DataFrame(rows, columns=[*TIMELINE_COLUMNS, "element", "base_task", "key"])
        frame["duration_s"] = frame["duration_s"].astype(float)
        frame["element"] = frame["element"].astype("Int64")  # 0, 1, ... beside <NA>, not 0.0
        return frame

    def logs(self, task: str | None = None) -> pd.DataFrame:
        """What the tasks printed and logged, one row per line (of ``task`` only, if given).

        Columns: ``task``, ``attempt``, ``element`` (a fan-out element's index, nullable
        ``Int64``), ``time`` (a timestamp), ``level`` (``"stdout"`` or ``"stderr"`` for
        prints, the level's name for ``logging`` records, ``"nbflow"`` for the line that
        counts lines left out by the cap), ``message`` and ``logger`` (a record's logger,
        None for prints). In the order the lines were written. Live while the run goes on;
        a run read from the store has them too. See :class:`~nbflow.logs.LogCapture`.

        A loop task's lines are labelled as its timeline rows are: ``task`` for the first
        iteration, ``task#2``, ``task#3``... for the next ones, each iteration's attempts
        counted from 1. ``logs("refine")`` gives every iteration's lines (as a fan-out
        task's name gives every element's), ``logs("refine#2")`` the second iteration's.

        Raises:
            KeyError: ``task`` is neither a task of this run nor a loop iteration's row
                (``task#N``) it has reached.
        """
        import pandas as pd

        s = self._state
        wanted = None if task is None else _log_filter(s, task)
        rows = [
            (
                row_label(e.task, e.iteration),
                e.attempt,
                e.element,
                s.wall_start + t,
                level,
                message,
                logger,
            )
            for name, batches in list(s.logs.items())  # a copy: a live run may add meanwhile
            if wanted is None or name == wanted[0]
            for e in batches
            if wanted is None or wanted[1] is None or e.iteration == wanted[1]
            for t, level, message, logger in e.lines
        ]
        frame = pd.DataFrame(rows, columns=LOG_COLUMNS)
        frame["time"] = pd.to_datetime(frame["time"], unit="s")
        frame["element"] = frame["element"].astype("Int64")
        frame["logger"] = frame["logger"].astype(object).where(frame["logger"].notna(), None)
        if task is None and len(frame):  # the tasks' lines, interleaved as they were written
            frame = frame.sort_values("time", kind="stable", ignore_index=True)
        return frame

    def why(self, task: str) -> str:
        """Why ``task`` ran, or why its result was reused, in plain words: what changed
        since the last result of it in the store, or what matched (see
        docs/reuse.md)::

            ran: global `RATE` changed (0.1 -> 0.25) since run 4f2c1a9e

        Raises:
            KeyError: ``task`` is not a task of this run.
        """
        from .reuse import why

        return why(self, task)

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


def _log_filter(state: RunState, label: str) -> tuple[str, int | None]:
    """What ``run.logs(label)`` selects: (task, None) for a task's name, (task, N) for the
    row ``task#N`` of a loop that has reached its iteration N (N >= 2)."""
    if label in state.tasks:  # a task's own name first: '#' may be part of one
        return label, None
    base, _, number = label.rpartition("#")
    iteration = int(number) if number.isdigit() else 0
    if base in state.tasks and 2 <= iteration <= state.iterations.get(base, 0):
        return base, iteration
    if base in state.tasks and number.isdigit():
        reached = state.iterations.get(base, 0)
        raise KeyError(
            f"{label!r} is not a row of run {state.run_id[:8]} (flow {state.flow!r}): "
            + (
                f"loop {base!r} has reached iteration {reached} (its first one's row is {base!r})"
                if reached
                else f"{base!r} ran no second loop iteration"
            )
        )
    raise KeyError(f"{label!r} is not a task of run {state.run_id[:8]} (flow {state.flow!r})")


def _key(state: RunState, task: str, element: int | None) -> str | None:
    if element is None:
        return None
    keys = state.tasks[task].element_keys
    return keys.get(element) if keys else None


def _by_key(record: Any, by_index: Mapping[int, Any]) -> dict[int | str, Any]:
    """``by_index`` in element order, keyed by the elements' keys when they have some."""
    keys = record.element_keys
    return {(keys.get(i, i) if keys else i): by_index[i] for i in sorted(by_index)}


class RemoteResults(Mapping[str, Any]):
    """``run.results`` of a run on a remote executor: each value is fetched when first read.

    Keys (the tasks that succeeded) are known without asking the cluster. ``results[name]``
    fetches that one result and keeps it on the run, so a second read costs nothing; results
    nobody reads never leave the cluster. ``to_dict()`` (and ``==`` with a dict) fetches all
    missing values in one request. ``remote(name)`` gives the handle itself (a Dask future).

    Raises:
        KeyError: on reading a task that did not succeed.
        NbflowError: from the executor, when the cluster cannot be reached any more.
    """

    __slots__ = ("_fetch", "_fetched", "_raw")

    def __init__(
        self, raw: dict[str, Any], fetch: Callable[[Any], Any], fetched: dict[str, Any]
    ) -> None:
        self._raw, self._fetch, self._fetched = raw, fetch, fetched

    def __getitem__(self, name: str) -> Any:
        if name in self._fetched:
            return self._fetched[name]
        value = self._fetch(self._raw[name])
        self._fetched[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def remote(self, name: str) -> Any:
        """The result of ``name`` as the executor holds it (a Dask future), not fetched."""
        return self._raw[name]

    def to_dict(self) -> dict[str, Any]:
        """Every result as a plain dict, fetching the missing ones in one request."""
        missing = {n: v for n, v in self._raw.items() if n not in self._fetched}
        if missing:
            self._fetched.update(self._fetch(missing))
        return {n: self._fetched[n] for n in self._raw}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.to_dict() == dict(other)

    __hash__ = None  # type: ignore[assignment]  # mutable view, like dict

    def __repr__(self) -> str:
        # Unread results show as their handle (a Dask future's repr names its type and key).
        shown = ", ".join(
            f"{n!r}: {self._fetched[n] if n in self._fetched else self._raw[n]!r}"
            for n in self._raw
        )
        return f"RemoteResults({{{shown}}})"
