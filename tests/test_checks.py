"""One validator for Flow() and run()/arun()/start(), one list of reserved task names for the
DSL and the loader, and run variables named like tasks: all refused before any task runs."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf
from nbflow.checks import RESERVED_TASK_NAMES
from nbflow.data.loader import loads_flow
from nbflow.data.schema import RESERVED_IDS

BAD_OPTIONS = [
    ({"on_error": "bogus"}, "on_error must be 'stop' or 'continue', got 'bogus'"),
    ({"max_workers": 0}, "max_workers must be a positive int or None, got 0"),
    ({"max_workers": -3}, "max_workers must be a positive int or None, got -3"),
    ({"max_workers": 2.5}, "max_workers must be a positive int or None, got 2.5"),
    ({"max_workers": True}, "max_workers must be a positive int or None, got True"),
]


def _flow(calls: list[str]) -> nf.Flow:
    flow = nf.Flow("checked", store=None)

    @flow.task
    def load():
        calls.append("load")
        return 1

    return flow


def _run(flow: nf.Flow, how: str, **options):
    if how == "run":
        return flow.run(**options)
    if how == "arun":
        return asyncio.run(flow.arun(**options))
    if how == "simulate":
        return flow.run(simulate=True, **options)
    return flow.start(**options).wait()


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_flow_refuses_a_bad_option(options, message):
    with pytest.raises(nf.DefinitionError, match=f"^{message}$"):
        nf.Flow("f", **options)


@pytest.mark.parametrize("how", ["run", "arun", "start", "simulate"])
@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_run_methods_refuse_a_bad_option_as_flow_does(how, options, message):
    calls: list[str] = []
    with pytest.raises(nf.DefinitionError, match=f"^{message}$"):
        _run(_flow(calls), how, **options)
    assert calls == []  # before any task ran


@pytest.mark.parametrize("how", ["run", "arun", "start", "simulate"])
def test_a_run_variable_named_like_a_task_is_refused_before_any_task_runs(how):
    calls: list[str] = []
    flow = _flow(calls)

    @flow.task
    def report(load):
        calls.append("report")
        return load

    message = "variable 'load' is named like task 'load': parameter 'load' of task 'report'"
    with pytest.raises(nf.DefinitionError, match=message):
        _run(flow, how, variables={"load": 5})
    assert calls == []


def test_a_run_variable_that_names_no_task_is_still_fine():
    calls: list[str] = []
    flow = _flow(calls)

    @flow.task
    def scaled(load, factor):
        return load * factor

    assert flow.run(variables={"factor": 3}).results["scaled"] == 3


def test_a_variable_named_like_a_task_that_no_parameter_receives_is_fine():
    # Read by a condition only, as vars['archive']: nothing shadows it.
    flow = nf.Flow("archive-gate", store=None)

    @flow.task(when="vars['archive']")
    def archive():
        return "archived"

    assert flow.run(variables={"archive": True}).states["archive"] == "succeeded"
    assert flow.run(variables={"archive": False}).states["archive"] == "skipped"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ([("x", 1)], "variables must be a mapping of names to values, got list"),
        ({1: "x"}, "variable names must be strings, got 1"),
    ],
)
def test_run_variables_must_be_a_mapping_of_names(variables, message):
    with pytest.raises(nf.DefinitionError, match=message):
        _flow([]).run(variables=variables)


def test_run_options_left_out_use_the_flows():
    flow = nf.Flow("defaults", store=None, on_error="continue", max_workers=2)
    flow.task(name="a")(lambda: 1)
    assert flow.run(on_error=None, max_workers=None).status == "succeeded"


@pytest.mark.parametrize("name", sorted(RESERVED_TASK_NAMES))
def test_reserved_task_names_are_refused_by_the_dsl_as_by_the_loader(name):
    flow = nf.Flow("reserved", store=None)
    with pytest.raises(nf.DefinitionError, match=f"task name {name!r} is reserved"):
        flow.task(name=name)(lambda: 1)
    text = f"name: f\ntasks:\n  - id: {name}\n    agent: echo\n    action: run\n"
    with pytest.raises(nf.FlowValidationError, match=f"{name!r} is reserved"):
        loads_flow(text, store=None)


def test_the_dsl_and_the_loader_share_one_list():
    assert RESERVED_IDS is RESERVED_TASK_NAMES
    assert {"vars", "results"} <= RESERVED_TASK_NAMES


def test_a_function_named_like_a_reserved_name_needs_another_task_name():
    flow = nf.Flow("reserved", store=None)

    def results():
        return 1

    with pytest.raises(nf.DefinitionError, match="'results' is reserved"):
        flow.task(results)
    assert flow.task(name="totals")(results).name == "totals"
