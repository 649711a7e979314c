"""The store's event log: every kind of event, with every field set, comes back as it was."""

from __future__ import annotations

import dataclasses

import pytest

import nbflow as nf
from nbflow import events as ev
from nbflow.state import RunState
from nbflow.store import eventlog

KINDS = sorted(
    (c for c in vars(ev).values() if isinstance(c, type) and issubclass(c, ev.Event)),
    key=lambda c: c.__name__,
)
KINDS.remove(ev.Event)


def _value(field: dataclasses.Field, i: int):
    """A value for ``field`` that is not its default (so a field left out shows)."""
    kind = str(field.type)
    if kind == "BaseException":
        return ValueError(f"boom {i}")
    if kind == "bool":
        return True
    if kind.startswith(("int", "float")):
        return 10 + i + (0.5 if kind.startswith("float") else 0)
    if kind.startswith("str"):
        return f"{field.name}-{i}"
    if kind.startswith("tuple[tuple"):
        return ((1.5, "stdout", f"line {i}", None),)
    if kind.startswith("tuple"):
        return (f"a{i}", f"b{i}")
    if kind.startswith("dict"):
        return {"k": [i, "v"], "n": None}
    return {"any": i, "list": [1.5, "x"]}  # Any: a result, a signal's value


def _made(cls: type[ev.Event]) -> tuple[float, tuple]:
    """``(t, args)`` of an event of ``cls`` with every field set."""
    fields = dataclasses.fields(cls)[3:]  # run_id, seq, t: the log's own
    args = tuple(_value(f, i) for i, f in enumerate(fields))
    if cls is ev.SubflowStarted:
        args = (*args[:-1], RunState())  # a live child run: the store has it apart
    return 0.25, args


@pytest.mark.parametrize("cls", KINDS, ids=lambda c: c.__name__)
def test_every_event_round_trips_through_the_log_with_every_field(cls):
    t, args = _made(cls)
    other_t, other_args = _made(ev.TaskQueued)
    data = eventlog.encode([cls, t, *args, ev.TaskQueued, other_t, *other_args])
    first, second = eventlog.decode("run", [data])
    assert type(first) is cls and (first.run_id, first.seq, first.t) == ("run", 0, t)
    for field, sent in zip(dataclasses.fields(cls)[3:], args, strict=True):
        back = getattr(first, field.name)
        if isinstance(sent, BaseException):  # its type's name and its message
            assert (type(back).__name__, str(back)) == (type(sent).__name__, str(sent))
        elif isinstance(sent, RunState):
            assert back is None
        else:
            assert back == sent, field.name
    assert (type(second), second.seq, second.task) == (ev.TaskQueued, 1, other_args[0])


def test_every_event_kind_has_its_columns():
    # What store.events() shows of each kind: every field is a column or in its payload.
    assert set(eventlog.LAYOUTS) == set(KINDS)
    for cls, layout in eventlog.LAYOUTS.items():
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(layout) <= names and "t" in names


def test_a_run_with_a_retry_a_failure_and_a_skip_reads_back_as_it_ran(tmp_path):
    flow = nf.Flow("kinds", store=tmp_path / "kinds.db", on_error="continue")
    tries = {"n": 0}

    @flow.task(retry=nf.Retry(max_retries=1, delay=0))
    def flaky():
        tries["n"] += 1
        if tries["n"] == 1:
            raise ConnectionError("once")
        return 1

    @flow.task
    def broken(flaky):
        raise ValueError("no")

    @flow.task
    def after(broken):
        return 2

    seen: list[ev.Event] = []
    flow.subscribe(seen.append)
    run = flow.run()
    stored = flow.state_store.event_objects(run.run_id)
    assert [type(e) for e in stored] == [type(e) for e in seen]
    for live, back in zip(seen, stored, strict=True):
        for field in dataclasses.fields(live):
            sent, got = getattr(live, field.name), getattr(back, field.name)
            if isinstance(sent, BaseException):
                assert (type(got).__name__, str(got)) == (type(sent).__name__, str(sent))
            elif field.name == "result" and type(sent) not in eventlog.LOGGED:
                assert got is None  # kept apart, in the run's results
            else:
                assert got == sent, (type(live).__name__, field.name)
