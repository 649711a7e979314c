"""The run-state reducer: events folded into a RunState, compared as whole records and rows."""

from __future__ import annotations

import pytest

from nbflow import events as ev
from nbflow.lifecycle import RunStatus, TaskState
from nbflow.state import AttemptRow, RunState, TaskRecord

RUN = "r1"


def _state(*tasks: str, fan_out: tuple[str, ...] = ()) -> RunState:
    state = RunState()
    state.apply(
        ev.RunStarted(
            RUN,
            0,
            10.0,
            "flow",
            "v1",
            tasks,
            {"x": 1},
            1000.0,
            fan_out=fan_out,
            parent_run="p0",
        )
    )
    return state


def test_run_started_sets_up_every_task_and_the_run():
    variables = {"x": 1}
    state = RunState()
    state.apply(ev.RunStarted(RUN, 0, 10.0, "flow", "v1", ("a", "b"), variables, 1000.0))
    assert (state.run_id, state.flow, state.flow_version) == (RUN, "flow", "v1")
    assert state.variables == {"x": 1} and state.variables is not variables  # a copy
    assert (state.wall_start, state.started_t, state.status) == (
        1000.0,
        10.0,
        RunStatus.RUNNING,
    )
    assert state.tasks == {"a": TaskRecord("a"), "b": TaskRecord("b")}
    assert (state.last_seq, state.last_t, state.parent_run, state.fan_out) == (
        0,
        10.0,
        None,
        frozenset(),
    )
    assert _state("a", fan_out=("a",)).fan_out == frozenset({"a"})
    assert _state("a").parent_run == "p0"


def test_a_task_queued_started_and_succeeded():
    state = _state("a")
    state.apply(ev.TaskQueued(RUN, 1, 11.0, "a"))
    assert state.tasks["a"] == TaskRecord("a", TaskState.QUEUED, queued_t=11.0, queued_seq=1)
    state.apply(ev.TaskStarted(RUN, 2, 12.0, "a", 1, "w0"))
    row = AttemptRow("a", 1, "running", 12.0, None, "w0", None, None, "a", 2)
    assert state.rows == [row] and state.open_rows == {"a": row}
    state.apply(ev.TaskSucceeded(RUN, 3, 14.5, "a", 1, result=42))
    assert state.tasks["a"] == TaskRecord(
        "a",
        TaskState.SUCCEEDED,
        attempts=1,
        result=42,
        worker="w0",
        queued_t=11.0,
        queued_seq=1,
        started_t=12.0,
        started_seq=2,
        ended_t=14.5,
    )
    assert state.rows == [AttemptRow("a", 1, "succeeded", 12.0, 14.5, "w0", None, None, "a", 2)]
    assert state.open_rows == {}
    assert state.tasks["a"].duration == 2.5
    assert (state.last_seq, state.last_t) == (3, 14.5)


def test_a_retried_task_keeps_its_first_start_and_one_row_per_attempt():
    state = _state("a")
    error = OSError("disk")
    state.apply(ev.TaskStarted(RUN, 1, 11.0, "a", 1, "w0"))
    state.apply(ev.TaskRetrying(RUN, 2, 12.0, "a", 1, error, 0.5))
    record = state.tasks["a"]
    assert (record.state, record.error, record.attempts) == (
        TaskState.RETRYING,
        error,
        1,
    )
    state.apply(ev.TaskStarted(RUN, 3, 12.5, "a", 2, "w1"))
    state.apply(ev.TaskFailed(RUN, 4, 13.0, "a", 2, error, "Traceback..."))
    assert state.rows == [
        AttemptRow("a", 1, "failed", 11.0, 12.0, "w0", "OSError: disk", None, "a", 1),
        AttemptRow("a", 2, "failed", 12.5, 13.0, "w1", "OSError: disk", None, "a", 3),
    ]
    assert state.tasks["a"] == TaskRecord(
        "a",
        TaskState.FAILED,
        attempts=2,
        error=error,
        traceback="Traceback...",
        worker="w1",
        started_t=11.0,
        started_seq=1,
        ended_t=13.0,
    )


def test_a_remote_worker_and_start_correct_the_row():
    state = _state("a", "b")
    state.apply(ev.TaskStarted(RUN, 1, 11.0, "a", 1, "local"))
    state.apply(ev.TaskSucceeded(RUN, 2, 15.0, "a", 1, worker="dask-1", began=13.0))
    assert state.rows[0] == AttemptRow(
        "a", 1, "succeeded", 13.0, 15.0, "dask-1", None, None, "a", 1
    )
    assert state.tasks["a"].worker == "dask-1"
    # A start outside (start, end] is not believed: the row keeps its own.
    state.apply(ev.TaskStarted(RUN, 3, 16.0, "b", 1, "local"))
    state.apply(ev.TaskFailed(RUN, 4, 17.0, "b", 1, ValueError("x"), began=17.5))
    assert (state.rows[1].start, state.rows[1].worker) == (16.0, "local")
    state.apply(ev.TaskStarted(RUN, 5, 18.0, "b", 2, "local"))
    state.apply(ev.TaskFailed(RUN, 6, 19.0, "b", 2, ValueError("x"), began=19.0))
    assert state.rows[2].start == 19.0  # the end itself is inside


def test_fan_out_elements_have_rows_of_their_own():
    state = _state("f", fan_out=("f",))
    state.apply(ev.TaskStarted(RUN, 1, 11.0, "f", 1, "w0", size=3))
    assert state.rows == [] and state.tasks["f"].size == 3  # the task itself has no row
    state.apply(ev.TaskStarted(RUN, 2, 11.5, "f", 1, "w0", element=0))
    state.apply(ev.TaskStarted(RUN, 3, 11.5, "f", 1, "w1", element=1))
    state.apply(ev.TaskStarted(RUN, 4, 11.6, "f", 1, "w2", element=2))
    assert state.open_rows[("f", 0)] == AttemptRow(
        "f[0]", 1, "running", 11.5, None, "w0", None, 0, "f", 2
    )
    boom = KeyError("k")
    state.apply(ev.TaskSucceeded(RUN, 5, 12.0, "f", 1, result=1, element=0))
    state.apply(ev.TaskFailed(RUN, 6, 12.5, "f", 1, boom, element=1))
    state.apply(ev.TaskCancelled(RUN, 7, 13.0, "f", 1, element=2))
    assert state.rows == [
        AttemptRow("f[0]", 1, "succeeded", 11.5, 12.0, "w0", None, 0, "f", 2),
        AttemptRow("f[1]", 1, "failed", 11.5, 12.5, "w1", "KeyError: 'k'", 1, "f", 3),
        AttemptRow("f[2]", 1, "cancelled", 11.6, 13.0, "w2", None, 2, "f", 4),
    ]
    record = state.tasks["f"]
    assert (record.elements_done, record.elements_failed) == (1, 1)
    assert record.element_errors == {1: boom}
    assert record.state == TaskState.RUNNING  # an element's end is not the task's
    state.apply(ev.TaskStarted(RUN, 8, 13.5, "f", 2, "w0", element=1))
    state.apply(ev.TaskRetrying(RUN, 9, 14.0, "f", 2, boom, 0.1, element=1))
    assert state.rows[-1].status == "failed" and record.state == TaskState.RUNNING
    state.apply(ev.TaskStarted(RUN, 10, 14.5, "f", 3, "w0", element=1))
    state.apply(ev.TaskFailed(RUN, 11, 15.0, "f", 3, boom, element=1))
    assert record.elements_failed == 2 and record.element_errors == {1: boom}


def test_a_cached_result_gets_a_row_of_its_own():
    state = _state("a", "f", fan_out=("f",))
    state.apply(ev.TaskSucceeded(RUN, 1, 11.0, "a", 0, result="old", cached=True))
    state.apply(ev.TaskSucceeded(RUN, 2, 11.0, "f", 0, result=[1], cached=True))
    assert state.rows == [
        AttemptRow("a", 0, "cached", 11.0, 11.0, None, None, None, "a", 1),
        AttemptRow("f", 0, "cached", 11.0, 11.0, None, None, None, "f", 2),
    ]
    assert state.tasks["a"] == TaskRecord(
        "a", TaskState.CACHED, result="old", started_t=11.0, started_seq=1, ended_t=11.0
    )


def test_skipped_and_cancelled_tasks():
    state = _state("a", "b", "c")
    state.apply(ev.TaskSkipped(RUN, 1, 11.0, "a", "upstream_failed", "upstream 'x' failed"))
    assert state.tasks["a"] == TaskRecord(
        "a", TaskState.UPSTREAM_FAILED, reason="upstream 'x' failed", ended_t=11.0
    )
    state.apply(ev.TaskStarted(RUN, 2, 12.0, "b", 1))
    state.apply(ev.TaskCancelled(RUN, 3, 13.0, "b", 1))
    assert state.tasks["b"].state == TaskState.CANCELLED and state.tasks["b"].ended_t == 13.0
    assert state.rows == [AttemptRow("b", 1, "cancelled", 12.0, 13.0, None, None, None, "b", 2)]
    state.apply(ev.TaskCancelled(RUN, 4, 13.0, "c"))  # never started: no row to close
    assert len(state.rows) == 1 and state.tasks["c"].state == TaskState.CANCELLED
    assert state.counts() == {"upstream_failed": 1, "cancelled": 2}


def test_run_finished_and_the_run_duration():
    state = RunState()
    assert state.duration == 0.0  # not started
    state = _state("a")
    state.apply(ev.TaskQueued(RUN, 1, 12.5, "a"))
    assert state.duration == 2.5  # running: up to the last event
    state.apply(ev.RunFinished(RUN, 2, 14.0, "failed", error="boom"))
    assert (state.status, state.finished_t, state.error) == (
        RunStatus.FAILED,
        14.0,
        "boom",
    )
    assert state.duration == 4.0
    early = _state("a")
    early.finished_t = 9.0  # a clock that went back: never a negative duration
    assert early.duration == 0.0


def test_a_task_duration_needs_a_start_and_an_end():
    assert TaskRecord("a", started_t=1.0).duration is None
    assert TaskRecord("a", ended_t=1.0).duration is None
    assert TaskRecord("a", started_t=1.0, ended_t=3.5).duration == pytest.approx(2.5)


def _end(kind: str, element: int | None, worker: str, began: float) -> ev.Event:
    error = OSError("x")
    if kind == "retrying":
        return ev.TaskRetrying(RUN, 9, 20.0, "f", 1, error, 0.1, element, worker, began)
    if kind == "failed":
        return ev.TaskFailed(RUN, 9, 20.0, "f", 1, error, "", element, worker, began)
    return ev.TaskSucceeded(RUN, 9, 20.0, "f", 1, 5, element, False, worker, began)


@pytest.mark.parametrize("element", [None, 0])
@pytest.mark.parametrize("kind", ["retrying", "failed", "succeeded"])
def test_every_end_of_an_attempt_closes_its_row_with_where_and_when_it_ran(kind, element):
    state = _state("f", fan_out=("f",) if element is not None else ())
    state.apply(ev.TaskStarted(RUN, 1, 10.0, "f", 1, "local", element=element))
    state.apply(_end(kind, element, "remote", 15.0))
    status = {"retrying": "failed"}.get(kind, kind)
    error = None if kind == "succeeded" else "OSError: x"
    label = "f" if element is None else "f[0]"
    assert state.rows == [
        AttemptRow(label, 1, status, 15.0, 20.0, "remote", error, element, "f", 1)
    ]
    assert state.open_rows == {}


def test_a_fan_out_task_that_ends_adds_no_row_of_its_own():
    state = _state("f", fan_out=("f",))
    state.apply(ev.TaskStarted(RUN, 1, 10.0, "f", 1, "w0", size=1))
    state.apply(ev.TaskStarted(RUN, 2, 10.0, "f", 1, "w0", element=0))
    state.apply(ev.TaskSucceeded(RUN, 3, 11.0, "f", 1, result=1, element=0))
    state.apply(ev.TaskSucceeded(RUN, 4, 11.0, "f", 1, result=[1]))
    assert [row.task for row in state.rows] == ["f[0]"]
    assert state.tasks["f"].state == TaskState.SUCCEEDED and state.tasks["f"].result == [1]


def test_elements_done_count_every_success():
    state = _state("f", fan_out=("f",))
    for i in range(3):
        state.apply(ev.TaskStarted(RUN, 1 + 2 * i, 11.0, "f", 1, "w0", element=i))
        state.apply(ev.TaskSucceeded(RUN, 2 + 2 * i, 12.0, "f", 1, result=i, element=i))
    assert state.tasks["f"].elements_done == 3


def test_a_cached_result_after_an_attempt_keeps_the_tasks_worker():
    state = _state("a")
    state.apply(ev.TaskStarted(RUN, 1, 11.0, "a", 1, "w0"))
    state.apply(ev.TaskRetrying(RUN, 2, 12.0, "a", 1, OSError("x"), 0.5))
    state.apply(ev.TaskSucceeded(RUN, 3, 13.0, "a", 2, result=1, cached=True))
    assert state.rows[-1] == AttemptRow("a", 2, "cached", 13.0, 13.0, "w0", None, None, "a", 3)


def test_elements_served_from_the_cache_get_rows_labelled_by_their_key():
    state = _state("f", fan_out=("f",))
    state.apply(ev.ElementKeyed(RUN, 1, 10.0, "f", 0, "paris"))
    state.apply(ev.TaskStarted(RUN, 2, 10.0, "f", 1, "w0", size=3))
    state.apply(ev.TaskSucceeded(RUN, 3, 11.0, "f", 0, result=1, element=0, cached=True))
    state.apply(ev.TaskSucceeded(RUN, 4, 11.5, "f", 0, result=2, element=1, cached=True))
    state.apply(ev.TaskStarted(RUN, 5, 12.0, "f", 1, "w1", element=2))  # no key: its index
    assert state.rows == [
        AttemptRow("f[paris]", 0, "cached", 11.0, 11.0, None, None, 0, "f", 3),
        AttemptRow("f[1]", 0, "cached", 11.5, 11.5, None, None, 1, "f", 4),
        AttemptRow("f[2]", 1, "running", 12.0, None, "w1", None, 2, "f", 5),
    ]
    assert state.tasks["f"].element_results == {0: 1, 1: 2}
    unkeyed = _state("g", fan_out=("g",))
    unkeyed.apply(ev.TaskSucceeded(RUN, 1, 11.0, "g", 0, result=1, element=0, cached=True))
    assert [row.task for row in unkeyed.rows] == ["g[0]"]


def test_a_fan_out_task_over_no_element_has_one_row_of_its_own():
    state = _state("f", fan_out=("f",))
    state.apply(ev.TaskStarted(RUN, 1, 10.0, "f", 1, "w0", size=0))
    assert state.rows == []  # a fan-out task's rows are its elements'...
    state.apply(ev.TaskSucceeded(RUN, 2, 10.5, "f", 1, result=[]))
    assert state.tasks["f"].state == TaskState.SUCCEEDED
    # ...but over nothing, it gets one, from its start: the timeline lists every task
    assert state.rows == [AttemptRow("f", 1, "succeeded", 10.0, 10.5, "w0", None, None, "f", 1)]


def test_a_fan_out_task_failing_before_its_first_element_has_one_row_with_the_error():
    state = _state("f", fan_out=("f",))
    state.apply(ev.TaskStarted(RUN, 1, 10.0, "f", 1, "w0"))
    state.apply(ev.TaskFailed(RUN, 2, 11.0, "f", 1, ValueError("not iterable")))
    assert state.rows == [
        AttemptRow("f", 1, "failed", 10.0, 11.0, "w0", "ValueError: not iterable", None, "f", 1)
    ]
    elements = _state("g", fan_out=("g",))  # one that failed after an element: its rows
    elements.apply(ev.TaskStarted(RUN, 1, 10.0, "g", 1, "w0", size=1))
    elements.apply(ev.TaskStarted(RUN, 2, 10.0, "g", 1, "w0", element=0))
    elements.apply(ev.TaskFailed(RUN, 3, 11.0, "g", 1, ValueError("no"), element=0))
    elements.apply(ev.TaskFailed(RUN, 4, 11.0, "g", 1, ValueError("no")))
    assert [row.task for row in elements.rows] == ["g[0]"]


def test_a_reused_result_and_a_cancellation_say_why():
    state = _state("a", "b")
    state.apply(ev.TaskSucceeded(RUN, 1, 11.0, "a", 0, result=1, cached=True, reused="run r0"))
    assert state.tasks["a"].reason == "run r0"
    state.apply(ev.TaskCancelled(RUN, 2, 12.0, "b", reason="cancel_rest: 'j' fired"))
    assert state.tasks["b"].reason == "cancel_rest: 'j' fired"


def test_a_task_waiting_for_signals_and_receiving_them():
    state = _state("a")
    state.apply(ev.TaskWaiting(RUN, 1, 5.0, "a", ("go", "data"), "signals 'go' and 'data'"))
    assert state.waiting == {"a": "signals 'go' and 'data'"}
    assert state.tasks["a"].reason == "waiting for signals 'go' and 'data'"
    assert state.signalled == {"a": (5.0, 5.0)}
    state.apply(ev.TaskSignalled(RUN, 2, 9.0, "a", ("go", "data")))
    assert state.waiting == {} and state.signalled == {"a": (5.0, 9.0)}
    assert state.tasks["a"].reason == "received 'go', 'data'"


def test_an_iteration_has_a_row_closed_with_where_and_when_it_ran():
    state = _state("a")
    state.apply(ev.IterationStarted(RUN, 1, 10.0, "a", 1, "local", iteration=2))
    state.apply(ev.IterationEnded(RUN, 2, 20.0, "a", 1, 2, worker="remote", began=15.0))
    assert state.iterations == {"a": 2}
    assert state.rows == [
        AttemptRow("a#2", 1, "succeeded", 15.0, 20.0, "remote", None, None, "a", 1)
    ]
    assert state.open_rows == {}


def test_an_element_that_started_and_then_came_from_the_cache_keeps_one_row():
    state = _state("f", fan_out=("f",))
    state.apply(ev.TaskStarted(RUN, 1, 10.0, "f", 1, "w0", element=0))
    state.apply(ev.TaskSucceeded(RUN, 2, 11.0, "f", 1, result=1, element=0, cached=True))
    assert state.rows == [AttemptRow("f[0]", 1, "cached", 10.0, 11.0, "w0", None, 0, "f", 1)]
    assert state.open_rows == {}
