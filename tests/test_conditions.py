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


@pytest.mark.parametrize(
    ("expression", "allowed"),
    [
        ("2 ** 1000", True),
        ("2 ** 1001", False),  # past the exponent bound
        ("1000000 ** 65", True),  # a base of 10**6 may go that far
        ("1000001 ** 64", True),
        ("1000001 ** 65", False),  # a bigger base may not
        ("-1000001 ** 65", False),
        ("1000001.0 ** 65", "OverflowError"),  # floats are not bounded: they overflow
    ],
)
def test_powers_are_bounded_by_exponent_and_base(expression, allowed):
    condition = parse_condition("t", f"({expression}) != 0")
    if allowed is True:
        assert condition.evaluate({}, {}) is True
        return
    with pytest.raises(nf.ConditionError, match=allowed or r"is too large to compute"):
        condition.evaluate({}, {})


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("", "a condition must be a non-empty string"),
        ("   ", "a condition must be a non-empty string"),
        ("_secret > 1", "name '_secret' is not allowed"),
        ("vars._x", "access to private attribute '_x' is not allowed"),
        ("(y := 1)", "namedexpr is not allowed"),
    ],
)
def test_a_rejected_condition_names_its_task_and_expression(expression, reason):
    with pytest.raises(nf.ConditionError) as info:
        parse_condition("t", expression)
    error = info.value
    assert (error.task, error.expression, error.reason) == ("t", expression, reason)
    assert str(error) == f"task 't' condition {expression!r}: {reason}"


def test_a_condition_that_is_not_a_string_is_refused():
    with pytest.raises(nf.ConditionError) as info:
        parse_condition("t", None)  # type: ignore[arg-type]
    assert (info.value.expression, info.value.reason) == (
        "None",
        "a condition must be a non-empty string",
    )


def test_results_keys_and_names_read_are_the_tasks_referenced():
    condition = parse_condition("t", "results['a'] > 0 and b and other['c'] == 1")
    assert condition.result_keys == frozenset({"a"})  # only results[...] with a constant key
    assert condition.names == frozenset({"results", "b", "other"})
    assert condition.referenced_tasks(["a", "b", "c"]) == {"a", "b"}  # a list is fine too
    assert condition.referenced_tasks({"a": 1}) == {"a"}


def test_an_unknown_name_says_what_a_condition_can_use():
    condition = parse_condition("t", "missing > 1")
    with pytest.raises(nf.ConditionError) as info:
        condition.check_names(["b", "a"])
    assert info.value.reason == (
        "unknown name 'missing'; a condition can use a, b, results, vars "
        "(read run variables as vars['name'])"
    )


def test_evaluation_errors_name_the_task_and_the_error():
    condition = parse_condition("t", "results['nope'] > 1")
    with pytest.raises(nf.ConditionError) as info:
        condition.evaluate({"a": 1}, {})
    assert (info.value.task, info.value.expression) == ("t", "results['nope'] > 1")
    assert info.value.reason == "KeyError: 'nope'"
    with pytest.raises(nf.ConditionError) as info:
        parse_condition("t", "undefined_name > 1").evaluate({}, {})
    assert (info.value.task, info.value.expression) == ("t", "undefined_name > 1")
    assert "undefined_name" in info.value.reason


def test_an_upstream_result_is_seen_by_its_bare_name_unless_a_variable_has_it():
    condition = parse_condition("t", "a == 1 and results['a'] == 1")
    assert condition.evaluate({"a": 1}, {}) is True
    assert parse_condition("t", "vars == {}").evaluate({"vars": 5}, {}) is True
