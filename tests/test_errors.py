"""Formatting exceptions defensively: describe() and format_exception() never raise, and a
task raising an exception that cannot be printed still ends as a recorded failure."""

from __future__ import annotations

import pytest

import nbflow as nf
from nbflow.errors import describe, format_exception
from nbflow.widgets import Dashboard


class Unprintable(Exception):
    """What a hostile (or just buggy) library may raise: its message cannot be formatted."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


class NotAString(Exception):
    def __str__(self) -> str:
        return 42  # type: ignore[return-value]


class WeirdText(str):
    def __format__(self, spec: str) -> str:
        raise RuntimeError("__format__ is broken")


class WeirdMessage(Exception):
    def __str__(self) -> str:
        return WeirdText("odd")


def test_describe_gives_type_and_message():
    assert describe(ValueError("bad row")) == "ValueError: bad row"
    assert describe(None) == ""


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (Unprintable(), "Unprintable: <str() raised RuntimeError>"),
        (NotAString(), "NotAString: <str() raised TypeError>"),
        (WeirdMessage(), "WeirdMessage: odd"),
    ],
)
def test_describe_never_raises(error, text):
    assert describe(error) == text


def test_format_exception_never_raises():
    try:
        raise Unprintable()
    except Unprintable as error:
        text = format_exception(error)
    assert "raise Unprintable()" in text
    assert text.rstrip().endswith("Unprintable: <exception str() failed>")
    assert format_exception(None) == ""


def test_task_failed_error_describes_an_unprintable_error():
    error = nf.TaskFailedError("load", Unprintable())
    assert str(error) == "task 'load' failed: Unprintable: <str() raised RuntimeError>"


def test_an_unprintable_error_fails_its_task_and_the_run_goes_on(tmp_path):
    """Formatting the error used to raise inside the engine: the run aborted and its
    all_done cleanup never ran. Now the task fails like any other, everywhere it is shown."""
    store = tmp_path / "runs.db"
    flow = nf.Flow("hostile", on_error="continue", store=store)
    cleaned = []

    @flow.task
    def load():
        raise Unprintable()

    @flow.task(after=["load"], trigger="all_done")
    def cleanup():
        cleaned.append(True)

    run = flow.run()
    assert run.states == {"load": "failed", "cleanup": "succeeded"}
    assert cleaned == [True]
    assert isinstance(run.errors["load"], Unprintable)
    assert run.timeline()["error"].tolist()[0] == "Unprintable: <str() raised RuntimeError>"
    assert "raise Unprintable()" in run.state.tasks["load"].traceback
    with pytest.raises(nf.TaskFailedError, match=r"Unprintable: <str\(\) raised RuntimeError>"):
        run.raise_for_status()
    assert "Unprintable: &lt;str() raised RuntimeError&gt;" in run._repr_html_()
    assert "Unprintable" in Dashboard(run, prefer="python")._table
    recorded = [e for e in flow.state_store.events(run.run_id) if e["kind"] == "TaskFailed"]
    assert recorded and "Unprintable" in str(recorded[0])
