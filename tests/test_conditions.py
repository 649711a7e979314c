"""Safe conditions and branches: what is accepted, what is rejected, and how fast."""

from __future__ import annotations

import time

import pytest

import nbflow as nf
from nbflow.conditions import parse_condition


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('echo hacked')", "name '__import__' is not allowed"),
        ("results.__class__", "private attribute '__class__'"),
        ("().__class__.__bases__[0]", "private attribute '__(class|bases)__'"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("x := 1", "syntax error"),
        ("import os", "syntax error"),
    ],
)
def test_dangerous_conditions_are_rejected_at_definition(expression, reason):
    flow = nf.Flow("f", store=None)
    with pytest.raises(nf.ConditionError, match=reason):
        flow.task(name="t", when=expression)(lambda: 1)


def test_huge_power_is_refused_quickly_without_effect():
    condition = parse_condition("t", "9**9**9 > 1")
    started = time.perf_counter()
    with pytest.raises(nf.ConditionError, match="too large"):
        condition.evaluate({}, {})
    assert time.perf_counter() - started < 1.0  # bounded, not a timing benchmark


def test_conditions_see_results_vars_and_upstream_names():
    condition = parse_condition("t", "len(results['a']) == 2 and a[0] == 1 and vars['mode'] == 'x'")
    assert condition.referenced_tasks({"a", "b"}) == {"a"}
    assert condition.evaluate({"a": [1, 2]}, {"mode": "x"}) is True
    assert condition.evaluate({"a": [1, 2]}, {"mode": "y"}) is False


def test_comprehension_variables_are_not_unknown_names():
    condition = parse_condition("t", "all(x > 0 for x in a)")
    condition.check_names({"a"})
    assert condition.evaluate({"a": [1, 2]}, {}) is True


def _branch_flow():
    flow = nf.Flow("branch", store=None)

    @flow.task
    def score():
        return 0

    @flow.task
    def celebrate():
        return "party"

    @flow.task
    def investigate():
        return "look"

    @flow.task
    def follow_up(investigate):
        return "follow"

    flow.branch("score > vars['threshold']", then=[celebrate], otherwise=["investigate", follow_up])
    return flow


@pytest.mark.parametrize(
    ("threshold", "ran", "skipped"),
    [
        (-1, {"celebrate"}, {"investigate", "follow_up"}),
        (5, {"investigate", "follow_up"}, {"celebrate"}),
    ],
)
def test_branch_runs_exactly_one_group(threshold, ran, skipped):
    run = _branch_flow().run(variables={"threshold": threshold})
    assert {n for n, s in run.states.items() if s == "succeeded"} == {"score"} | ran
    assert {n for n, s in run.states.items() if s == "skipped"} == skipped


def test_branch_task_in_both_groups_is_refused():
    flow = nf.Flow("branch", store=None)
    flow.task(name="a")(lambda: 1)
    with pytest.raises(nf.DefinitionError, match="'a' is in both branches"):
        flow.branch("True", then=["a"], otherwise=["a"])


def test_branch_naming_an_unknown_task_is_a_missing_dependency():
    flow = nf.Flow("branch", store=None)
    flow.task(name="a")(lambda: 1)
    flow.branch("True", then=["b"])
    with pytest.raises(nf.MissingDependencyError, match=r"'b' \(branch\)"):
        flow.validate()


def test_callable_condition_that_raises_fails_the_task():
    flow = nf.Flow("f", store=None, on_error="continue")

    @flow.task(when=lambda ctx: ctx.results["nope"])
    def t():
        return 1

    run = flow.run()
    assert run.states["t"] == "failed"
    assert isinstance(run.errors["t"], nf.ConditionError)
