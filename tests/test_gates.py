"""What a task's ``when=`` sees and awaits, and run variables that nothing reads (#18).

(The tests of the condition language itself are in test_conditions.py.)
"""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf


def _publishing(when):
    flow = nf.Flow("report", store=None)

    @flow.task
    def joined():
        return [1, 2]

    @flow.task(after=["joined"], when=when)
    def publish(joined, mode="full"):
        return f"published {len(joined)} ({mode})"

    return flow


def test_the_api_example_reads_a_parameter_default_through_vars():
    flow = _publishing("len(results['joined']) > 0 and vars['mode'] == 'full'")
    run = flow.run()
    assert run.status == "succeeded"
    assert run.results["publish"] == "published 2 (full)"


def test_a_run_variable_overrides_the_default_in_vars():
    run = _publishing("vars['mode'] == 'full'").run(variables={"mode": "quick"})
    assert run.states["publish"] == "skipped"


def test_a_callable_when_sees_the_defaults_too():
    run = _publishing(lambda ctx: ctx.vars["mode"] == "full").run()
    assert run.states["publish"] == "succeeded"


@pytest.mark.parametrize(("answer", "state"), [(True, "succeeded"), (False, "skipped")])
def test_an_async_when_is_awaited(answer, state):
    asked: list[str] = []

    async def ready(ctx):
        asked.append(ctx.task)
        await asyncio.sleep(0.01)
        return answer

    run = _publishing(ready).run()
    assert asked == ["publish"]
    assert run.states["publish"] == state


def test_an_async_when_that_raises_fails_the_task_with_a_condition_error():
    async def broken(ctx):
        raise KeyError("nope")

    run = _publishing(broken).run()
    assert run.states["publish"] == "failed"
    assert isinstance(run.errors["publish"], nf.ConditionError)
    assert "KeyError" in str(run.errors["publish"])


def test_a_sync_when_that_returns_a_coroutine_is_a_clear_error():
    async def later():
        return False

    run = _publishing(lambda ctx: later()).run()  # truthy if it were not checked
    assert run.states["publish"] == "failed"
    assert "define it with `async def`" in str(run.errors["publish"])


def test_a_misspelt_run_variable_is_an_error_before_any_task_runs():
    ran: list[str] = []
    flow = nf.Flow("vars", store=None)

    @flow.task
    def publish(mode="full"):
        ran.append("publish")

    with pytest.raises(nf.DefinitionError, match=r"unknown variable 'mdoe'; did you mean 'mode'"):
        flow.run(variables={"mdoe": "quick"})
    assert ran == []
    # A variable close to nothing that is read is not an error: it may be meant for others.
    assert flow.run(variables={"unrelated": 1}).status == "succeeded"


def test_variables_read_by_conditions_count_as_readable():
    flow = _publishing("vars['verbose'] or True")
    with pytest.raises(nf.DefinitionError, match="did you mean 'verbose'"):
        flow.run(variables={"verbos": True})
    assert flow.run(variables={"verbose": True}).status == "succeeded"


def test_a_condition_reading_vars_by_a_computed_key_disables_the_check():
    flow = _publishing("vars.get('mode', 'x') != ''")
    assert flow.run(variables={"mdoe": "quick"}).status == "succeeded"
