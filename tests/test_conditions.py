"""Safe conditions and branches: what is accepted, what is rejected, and how fast."""

from __future__ import annotations

import re
import sys
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


# -- hostile conditions: bounded work and memory, read-only, no deep nesting (#25) -----------


def _bounded(expression: str, names: dict) -> nf.ConditionError:
    """Evaluate, and return the ConditionError; it must come fast and allocate little."""
    import tracemalloc

    condition = parse_condition("t", expression)
    tracemalloc.start()
    # CPU time, not wall time: other processes on a loaded machine do not count, and an
    # unbounded operation (a 2 GB zfill, a huge power) takes far more than the bound.
    started = time.process_time()
    try:
        with pytest.raises(nf.ConditionError) as info:
            condition.evaluate_names(dict(names))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - started < 2.0  # bounded, not a timing benchmark
    assert peak < 50_000_000  # zfill(2 * 10**9) allocated 2 GB
    return info.value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("len(s.zfill(2 * 10**9)) > 0", r"str.zfill\(\) would make 2,000,000,000 characters"),
        ("len(s.ljust(10**10)) > 0", r"str.ljust\(\)"),
        ("len(s.rjust(10**10)) > 0", r"str.rjust\(\)"),
        ("len(s.center(10**10, 'x')) > 0", r"str.center\(\)"),
        ("len(('\\t' * 1000).expandtabs(10**8)) > 0", r"str.expandtabs\(\)"),
        ("len(('a' * 99999).replace('a', 'a' * 99999)) > 0", r"str.replace\(\)"),
        ("len((s * 50000).translate({97: 'b' * 99999})) > 0", r"str.translate\(\)"),
        ("len(','.join(['a' * 99999] * 10000)) > 0", r"join\(\)"),
        ("len(b'ab'.zfill(10**10)) > 0", r"bytes.zfill\(\)"),
        ("len('x' * 10**9) > 0", "this repetition"),
        ("len([0] * 10**9) > 0", "this repetition"),
        ("len([s.zfill(99999) for x in items]) > 0", "may create 10,000,000 in all"),
        ("len(f'{1:>999999999}') > 0", "f-string"),
        ("len(str([[0] * 10000] * 10000)) > 0", r"str\(\) of a value of more than"),
        ("len('%0999999999d' % 1) > 0", "%-formatting"),
        ("sum([[0] * 10000] * 10000, []) == []", "start must be a number"),
        ("((10**1000)**64)**64 > 0", "too large to compute"),
        ("(5).to_bytes(10**10, 'big') != b''", r"int.to_bytes\(\)"),
    ],
)
def test_conditions_cannot_make_huge_values(expression, reason):
    error = _bounded(expression, {"s": "ab", "items": list(range(10_000))})
    assert re.search(reason, error.reason), error.reason


def test_read_only_and_bounded_methods_still_work():
    condition = parse_condition(
        "t",
        "s.upper() == 'AB' and s.split('a') == ['', 'b'] and s.zfill(4) == '00ab' "
        "and ','.join(sorted(d.keys())) == 'j,k' and d.get('k') == 1 and data.count(3) == 1 "
        "and f'{s}-{n:>3}' == 'ab-  3' and str(data) == '[3, 1, 2]' and len(data * 2) == 6",
    )
    names = {"s": "ab", "data": [3, 1, 2], "d": {"k": 1, "j": 2}, "n": 3}
    assert condition.evaluate_names(names) is True


def test_a_huge_zfill_fails_its_task_fast_and_the_run_goes_on():
    flow = nf.Flow("zfill", store=None, on_error="continue")

    @flow.task
    def s():
        return "ab"

    @flow.task(when="len(s.zfill(2 * 10**9)) > 0")
    def padded(s):
        return s

    started = time.process_time()  # CPU of every thread of this process, not wall time
    run = flow.run()
    assert time.process_time() - started < 5
    assert run.states == {"s": "succeeded", "padded": "failed"}
    assert isinstance(run.errors["padded"], nf.ConditionError)
    assert "str.zfill() would make 2,000,000,000 characters" in str(run.errors["padded"])


@pytest.mark.parametrize(
    "expression",
    [
        "data.clear() is None",
        "data.append(4) is None",
        "data.pop() == 3",
        "results['data'].sort() is None",
        "vars['limits'].update({'x': 1}) is None",
        "len(sorted(data, key=data.remove)) > 0",
        "data.drop(columns=['a'], inplace=True) is None",
    ],
)
def test_mutating_conditions_are_refused_when_defined(expression):
    flow = nf.Flow("f", store=None)
    flow.task(name="data")(lambda: [1, 2, 3])
    with pytest.raises(nf.ConditionError, match="a condition only reads results and variables"):
        flow.task(name="t", when=expression)(lambda data: data)


def test_a_mutating_method_is_refused_at_run_time_too():
    """Should a mutating call get past the definition check, evaluation refuses it."""
    import ast

    from nbflow.conditions import Condition

    expression = "data.clear() is None"
    tree = ast.parse(expression, mode="eval")
    condition = Condition("t", expression, tree, frozenset({"data"}), frozenset())
    data = [1, 2, 3]
    with pytest.raises(nf.ConditionError, match=r"list.clear\(\) changes its value"):
        condition.evaluate({"data": data}, {})
    assert data == [1, 2, 3]


def test_downstream_tasks_receive_the_result_a_condition_read():
    """numpy's partition() sorts in place (str.partition does not): refused at run time,
    so the task after the gated one receives the array unchanged."""
    np = pytest.importorskip("numpy")
    flow = nf.Flow("intact", store=None, on_error="continue")

    @flow.task
    def data():
        return np.array([3, 1, 2])

    @flow.task(when="data.partition(0) is None")
    def gated(data):
        return "ran"

    @flow.task(after=["gated"], trigger="all_done")
    def downstream(data):
        return data.tolist()

    run = flow.run()
    assert run.states["gated"] == "failed"
    assert "may change its value" in str(run.errors["gated"])
    assert run.results["downstream"] == [3, 1, 2]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        # Python 3.11/3.12's parser gives up; 3.13's parses it, and the depth limit refuses it.
        ("-" * 5000 + "x", "nested too deeply to parse|nests more than 100 levels deep"),
        ("not " * 150 + "x", "nests more than 100 levels deep"),
        ("x" + " + x" * 150, "nests more than 100 levels deep"),
        ("[" * 150 + "x" + "]" * 150, "nests more than 100 levels deep"),
        (" + ".join(["x"] * 5000), "a condition may have 10,000"),
    ],
)
def test_deep_nesting_is_a_condition_error_when_defined(expression, reason):
    flow = nf.Flow("f", store=None)
    flow.task(name="x")(lambda: 1)
    with pytest.raises(nf.ConditionError, match=reason) as info:
        flow.task(name="t", when=expression)(lambda x: x)
    assert info.value.task == "t" and info.value.expression == expression
    assert len(str(info.value)) < 500  # the expression is cut short in the message


def test_deep_nesting_at_run_time_is_a_condition_error():
    """A tree deeper than the interpreter's stack, had it been built without parse_condition."""
    import ast

    from nbflow.conditions import Condition

    expression = "-" * 900 + "x"
    tree = ast.parse(expression, mode="eval")
    condition = Condition("t", expression, tree, frozenset({"x"}), frozenset())
    with pytest.raises(nf.ConditionError, match="RecursionError while evaluating"):
        condition.evaluate({"x": 1}, {})


@pytest.mark.parametrize(
    ("expression", "allowed"),
    [
        ("2 ** 1000", True),
        ("2 ** 1001", False),  # past the exponent bound
        ("1000001 ** 65", True),  # 1,300 bits: a big base is fine while the result is small
        ("-1000001 ** 65", True),
        ("(10 ** 400) ** 999", False),  # the exponent is allowed, the result's size is not
        ("(-(10 ** 400)) ** 999", False),
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


def test_results_of_no_task_of_the_flow_is_refused_before_any_task_runs():
    ran: list[str] = []
    flow = nf.Flow("typo", store=None)
    flow.task(name="total")(lambda: ran.append("total") or 3)
    flow.task(name="report", when="results['totl'] > 0")(lambda: ran.append("report"))
    with pytest.raises(nf.ConditionError) as info:
        flow.run()
    assert info.value.task == "report"
    assert info.value.reason == "results['totl'] reads no task of this flow; did you mean 'total'?"
    assert ran == []


def test_a_missing_variable_says_how_to_give_it():
    flow = nf.Flow("modes", store=None)
    flow.task(name="a")(lambda: 1)
    flow.task(name="publish", when="vars['mode'] == 'full'")(lambda a: a)
    run = flow.run()
    assert run.states["publish"] == "failed"
    reason = run.errors["publish"].reason
    assert reason.startswith("vars['mode']: the run has no variable 'mode'; pass it")
    assert "vars.get('mode')" in reason
    guarded = nf.Flow("guarded", store=None)
    guarded.task(name="a")(lambda: 1)
    guarded.task(name="publish", when="vars.get('mode') == 'full'")(lambda a: a)
    assert guarded.run().states["publish"] == "skipped"  # an optional one: no error


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


def test_a_condition_may_be_max_length_characters_long_and_no_longer():
    from nbflow.conditions import MAX_LENGTH

    longest = "True" + " " * (MAX_LENGTH - 4)
    assert parse_condition("t", longest).evaluate_names({}) is True
    with pytest.raises(nf.ConditionError) as error:
        parse_condition("t", longest + " ")
    assert str(error.value).endswith(
        f"it is {MAX_LENGTH + 1:,} characters long; a condition may have {MAX_LENGTH:,}"
    )


def test_a_condition_python_cannot_parse_for_its_depth_is_refused_by_name():
    with pytest.raises(nf.ConditionError) as error:
        parse_condition("t", "-" * 3000 + "1 == 1")
    assert error.value.task == "t"
    if sys.version_info >= (3, 13):  # its parser takes it; nbflow's own depth check refuses it
        assert str(error.value).endswith(
            "nests more than 100 levels deep; split it or compute in a task"
        )
    else:
        assert str(error.value).endswith(": it is nested too deeply to parse")


def test_a_condition_that_runs_out_of_stack_as_it_evaluates_names_its_task():
    import sys

    condition = parse_condition("t", "-" * 90 + "1 == 1")  # within the static bound
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 60)  # a deep caller: too little stack left for 90 levels
    try:
        with pytest.raises(nf.ConditionError) as error:
            condition.evaluate_names({})
    finally:
        sys.setrecursionlimit(limit)
    assert error.value.task == "t"
    assert str(error.value).endswith(
        "RecursionError while evaluating: the expression is too deep or large"
    )
