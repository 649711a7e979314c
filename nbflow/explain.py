"""``run.explain(task)``: why a task started when it did, reconstructed from the run state.

Nothing is recorded for this on the hot path: the reducer already keeps, per task, the event
sequence numbers at which it was queued and started. From those we know which upstream tasks
it waited for, which other tasks were ready at the moment it started, and how the strategy's
key ordered them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lifecycle import TaskState
from .streams import stream_consumers

if TYPE_CHECKING:
    from .run import Run


def explain(run: Run, task: str) -> str:
    """Describe in words why ``task`` started (or did not start) when it did.

    Raises:
        KeyError: ``task`` is not a task of this run.
    """
    state = run.state
    if task not in state.tasks:
        raise KeyError(f"{task!r} is not a task of run {run.run_id}; tasks: {sorted(state.tasks)}")
    record = state.tasks[task]
    plan = run._plan
    lines: list[str] = []
    upstream = plan.upstream[task] if plan is not None else ()
    if upstream:
        waited = sorted(
            upstream,
            key=lambda d: state.tasks[d].ended_t or -1.0,
        )
        streamed = _streamed_from(run, task)
        described = ", ".join(
            f"{d} ({'streaming its elements into it, then ' if d in streamed else ''}"
            f"{state.tasks[d].state.value}"
            + (f" at {state.tasks[d].ended_t:.3f}s" if state.tasks[d].ended_t is not None else "")
            + ")"
            for d in waited
        )
        lines.append(f"{task!r} waited for {len(upstream)} upstream task(s): {described}.")
    else:
        lines.append(f"{task!r} has no upstream tasks, so it was ready when the run started.")
    if record.state in (TaskState.SKIPPED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED):
        lines.append(
            f"It never started: it ended {record.state.value}"
            + (f" ({record.reason})." if record.reason else ".")
        )
        return " ".join(lines)
    if record.queued_seq is None or record.started_seq is None:
        lines.append(f"It has not started yet (state {record.state.value}).")
        return " ".join(lines)
    lines.append(
        f"It became ready at {record.queued_t:.3f}s and started at {record.started_t:.3f}s."
    )
    if task in state.signalled:  # it waited for signals, holding no worker meanwhile
        began, came = state.signalled[task]
        what = f"signal(s) {plan.specs[task].wait_for}" if plan is not None else "its signals"
        lines.append(
            f"It waited for {what} from {began:.3f}s, holding no worker; they came at {came:.3f}s."
            if began is not None
            else f"Its {what} had come already."
        )
    rivals = [
        r
        for r in state.tasks.values()
        if r.name != task
        and r.queued_seq is not None
        and r.queued_seq < record.started_seq
        and (r.started_seq is None or r.started_seq > record.started_seq)
    ]
    earlier = [
        r
        for r in state.tasks.values()
        if r.name != task
        and r.queued_seq is not None
        and r.started_seq is not None
        and r.queued_seq < record.started_seq
        and record.queued_seq < r.started_seq < record.started_seq
        # a task waiting for signals competed for a worker only once they came
        and (task not in state.signalled or (r.started_t or 0) >= state.signalled[task][1])
    ]
    strategy = getattr(run._strategy, "name", "priority")
    if plan is not None:
        prio = plan.specs[task].priority
        lines.append(f"Strategy {strategy!r}; its priority is {prio}.")
        if earlier:
            names = ", ".join(
                f"{r.name} (priority {plan.specs[r.name].priority})"
                for r in sorted(earlier, key=lambda r: r.started_seq or 0)
            )
            lines.append(f"While it was ready, these started first: {names}.")
        if rivals:
            names = ", ".join(
                f"{r.name} (priority {plan.specs[r.name].priority})" for r in rivals[:10]
            )
            more = f" and {len(rivals) - 10} more" if len(rivals) > 10 else ""
            lines.append(f"Ready with it and started after it: {names}{more}.")
        if not earlier and not rivals:
            lines.append("No other task competed for a worker at that moment.")
    if record.worker:
        lines.append(
            f"It ran on {record.worker}"
            + (f" and took {record.attempts} attempt(s)." if record.attempts else ".")
        )
    return " ".join(lines)


def _streamed_from(run: Run, task: str) -> set[str]:
    """The upstream tasks ``task`` streamed from in ``run``: producers it may stream from
    (:mod:`nbflow.streams`) that had not ended when it was queued."""
    plan, state = run._plan, run.state
    queued = state.tasks[task].queued_t
    if plan is None or queued is None:
        return set()
    found = set()
    for producer, consumers in stream_consumers(plan).items():
        ended = state.tasks[producer].ended_t
        if task in consumers and (ended is None or ended > queued):
            found.add(producer)
    return found
