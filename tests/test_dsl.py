"""The decorator DSL: tasks, options, re-definition, plain calls."""

from __future__ import annotations

import inspect

import pytest

import nbflow as nf
from nbflow.dsl import Definition
from nbflow.spec import TaskOptions


def test_task_bare_and_with_arguments():
    flow = nf.Flow("f")

    @flow.task
    def a():
        return 1

    @flow.task(priority=5, tags=["io"])
    def b(a):
        return a + 1

    assert isinstance(a, nf.Task) and a.name == "a"
    assert b.spec.priority == 5 and b.spec.tags == ("io",)
    assert list(flow.tasks) == ["a", "b"]


def test_decorated_task_stays_callable_as_plain_function():
    flow = nf.Flow("f")

    @flow.task
    def add(x, y=2):
        """Adds."""
        return x + y

    assert add(1) == 3
    assert add.__doc__ == "Adds."
    assert add.__name__ == "add"


def test_task_wraps_its_function_like_functools_wraps():
    flow = nf.Flow("f")

    def load(x: int, y=2) -> int:
        """Loads."""
        return x + y

    load.custom = "kept"
    task = flow.task(load)
    assert task.__wrapped__ is load and task.fn is load
    assert (task.__module__, task.__qualname__, task.__annotations__) == (
        load.__module__,
        load.__qualname__,
        load.__annotations__,
    )
    assert task.custom == "kept"  # the function's own attributes are read through the task
    assert inspect.signature(task) == inspect.signature(load)
    load.spec = load.name = "the function's"  # ...but never hide the task's own
    assert task.name == "load" and task.spec.name == "load"
    with pytest.raises(AttributeError, match="missing"):
        task.missing  # noqa: B018


def test_a_callable_object_is_wrapped_too():
    class Scale:
        """Scales."""

        def __call__(self, a):
            return a * 2

    flow = nf.Flow("f")
    scale = Scale()
    task = flow.task(name="double")(scale)
    assert task.__wrapped__ is scale and task.__doc__ == "Scales." and task(2) == 4
    assert [p.name for p in task.spec.params] == ["a"] and not task.spec.is_async


def test_redefinition_replaces_task_and_keeps_position():
    flow = nf.Flow("f")

    @flow.task
    def a():
        return 1

    @flow.task
    def b():
        return 2

    @flow.task(name="a")
    def a_again():
        return 10

    assert list(flow.tasks) == ["a", "b"]
    assert flow.tasks["a"].spec.index == 0
    flow.remove("a")
    flow.task(name="a")(a_again)  # back, now last: positions follow definition order
    assert list(flow.tasks) == ["b", "a"] and [t.index for t in flow.spec().tasks] == [1, 2]
    run = flow.run(strategy="sequential")
    assert run.results == {"a": 10, "b": 2}
    assert [r.task for r in run.state.rows] == ["b", "a"]  # the order the positions say


def test_priorities_hold_after_tasks_are_removed_and_added_again():
    # Indexes keep growing as a notebook removes and re-adds tasks; the order must not care.
    flow = nf.Flow("reordered", strategy="sequential")
    for i in range(6):
        flow.task(name=f"t{i}")(lambda: None)
    for i in range(1, 6):
        flow.remove(f"t{i}")
    flow.task(name="urgent", priority=1)(lambda: None)
    assert [t.index for t in flow.spec().tasks] == [0, 6]  # far more than the 2 tasks
    run = flow.run()
    assert [r.task for r in run.state.rows] == ["urgent", "t0"]


def test_retry_int_means_max_retries():
    flow = nf.Flow("f")

    @flow.task(retry=2)
    def a():
        return 1

    assert a.spec.retry == nf.Retry(max_retries=2)


def test_after_accepts_task_objects():
    flow = nf.Flow("f")

    @flow.task
    def a():
        return 1

    @flow.task(after=[a])
    def b():
        return 2

    assert b.spec.after == ("a",)


def test_unknown_option_names_task_field_and_known_options():
    flow = nf.Flow("f")
    with pytest.raises(
        nf.DefinitionError, match=r"task 'a': prio: unknown option; known options are .*priority"
    ):

        @flow.task(prio=3)
        def a():
            return 1


def test_bad_option_value_names_the_field():
    flow = nf.Flow("f")
    with pytest.raises(
        nf.DefinitionError, match=r"task 'a': timeout: Input should be greater than 0"
    ):

        @flow.task(timeout=-1)
        def a():
            return 1


def test_lambda_needs_a_name():
    flow = nf.Flow("f")
    with pytest.raises(nf.DefinitionError, match="needs a task name"):
        flow.task(lambda: 1)
    assert flow.task(name="one")(lambda: 1).name == "one"


def test_fan_out_must_name_a_parameter():
    flow = nf.Flow("f")
    with pytest.raises(nf.DefinitionError, match=r"fan_out='items': 'items' is not a parameter"):

        @flow.task(fan_out="items")
        def a(x):
            return x


def test_concurrency_without_fan_out_is_refused():
    flow = nf.Flow("f")
    with pytest.raises(nf.DefinitionError, match="need fan_out"):

        @flow.task(concurrency=3)
        def a(x):
            return x


def test_decorator_signature_matches_task_options():
    """The decorator's keyword arguments are exactly TaskOptions' fields (one source of truth)."""
    from typing import get_overloads

    with_options = get_overloads(Definition.task)[-1]
    keyword_names = {
        p.name
        for p in inspect.signature(with_options).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    # `when`, `until` and `key` accept a callable, which the DSL stores as `when_fn`,
    # `until_fn` and `key_fn` (kept out of the JSON spec).
    assert keyword_names == set(TaskOptions.model_fields) - {"when_fn", "until_fn", "key_fn"}


def test_callable_when_is_stored_out_of_the_json_spec():
    flow = nf.Flow("f")

    @flow.task(when=lambda ctx: True)
    def a():
        return 1

    assert a.spec.when is None and a.spec.when_fn is not None
    assert "when_fn" not in a.spec.model_dump()


@pytest.mark.parametrize("bad", ["", 3])
def test_flow_name_must_be_a_string(bad):
    with pytest.raises(nf.DefinitionError, match="non-empty name"):
        nf.Flow(bad)


def test_on_error_must_be_known():
    with pytest.raises(nf.DefinitionError, match="on_error must be 'stop' or 'continue'"):
        nf.Flow("f", on_error="explode")


def test_options_validated_once_per_option_set_are_not_mixed_up():
    flow = nf.Flow("shared-options")
    flow.task(name="a")(lambda: 1)
    flow.task(name="b", when="a > 0")(lambda a: a)  # one option besides the name
    flow.task(name="c")(lambda: 1)
    flow.task(name="d", priority=True)(lambda: 1)  # equal to 1, validated on its own
    flow.task(name="e", priority=1)(lambda: 1)
    flow.task(tags=["x"])(lambda_named := _named("f"))  # unhashable value: no sharing
    assert flow.tasks["b"].spec.when == "a > 0" and flow.tasks["c"].spec.when is None
    assert flow.tasks["b"].condition is not None and flow.tasks["c"].condition is None
    assert flow.tasks["d"].spec.priority == flow.tasks["e"].spec.priority == 1
    assert flow.tasks["f"].spec.tags == ("x",) and lambda_named.__name__ == "f"
    assert [flow.tasks[n].spec.name for n in "abcdef"] == list("abcdef")


def _named(name):
    def fn():
        return 1

    fn.__name__ = name
    return fn


class _Unreadable:
    """A callable whose parameters inspect cannot read, as some C functions' (which ones
    depends on the Python version: threading.Lock has a signature from 3.13 on)."""

    def __call__(self) -> int:
        return 1

    @property
    def __signature__(self) -> None:
        raise ValueError("no signature found for builtin <built-in function allocate_lock>")


def test_a_function_whose_parameters_cannot_be_read_is_a_definition_error_naming_the_task():
    ran: list[str] = []
    flow = nf.Flow("builtins", store=None)
    flow.task(name="first")(lambda: ran.append("first"))
    flow.task(name="guard")(_Unreadable())
    with pytest.raises(nf.DefinitionError, match=r"task 'guard': its function's parameters"):
        flow.run()
    assert ran == []  # raised before any task ran
