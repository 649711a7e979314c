"""Definition errors: all raised before any task runs, with precise messages."""

from __future__ import annotations

import pytest

import nbflow as nf


def _ran_nothing(flow, **kwargs):
    ran = []
    flow.subscribe(lambda e: ran.append(e) if isinstance(e, nf.TaskStarted) else None)
    return ran


def test_cycle_error_names_the_cycle():
    flow = nf.Flow("f")

    @flow.task
    def a(c):
        return 1

    @flow.task
    def b(a):
        return 1

    @flow.task
    def c(b):
        return 1

    ran = _ran_nothing(flow)
    with pytest.raises(
        nf.CycleError,
        match=r"tasks are in a cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)",
    ) as info:
        flow.run()
    assert info.value.cycle[0] == info.value.cycle[-1] and len(info.value.cycle) == 4
    assert ran == []


def test_after_cycle_is_found_too():
    flow = nf.Flow("f")
    flow.task(name="a", after=["b"])(lambda: 1)
    flow.task(name="b", after=["a"])(lambda: 1)
    with pytest.raises(nf.CycleError, match=r"a -> b -> a|b -> a -> b"):
        flow.validate()


def test_missing_dependency_names_task_unknown_and_closest():
    flow = nf.Flow("f")

    @flow.task
    def users():
        return 1

    @flow.task(after=["user"])
    def report():
        return 1

    with pytest.raises(
        nf.MissingDependencyError,
        match=r"task 'report' depends on 'user' \(after\), which is not a task of this flow; "
        r"did you mean 'users'\?",
    ) as info:
        flow.run()
    assert info.value.suggestion == "users"


def test_required_parameter_nothing_supplies():
    flow = nf.Flow("f")

    @flow.task
    def users():
        return 1

    @flow.task
    def report(usres):
        return 1

    with pytest.raises(
        nf.MissingInputError,
        match=r"task 'report' parameter 'usres' .* did you mean task 'users'\?",
    ):
        flow.run()
    # the same parameter supplied by a run variable is fine
    assert flow.run(variables={"usres": 5}).results["report"] == 1


def test_condition_syntax_error_is_raised_at_definition():
    flow = nf.Flow("f")
    with pytest.raises(
        nf.ConditionError,
        match=r"task 'a' condition 'len\(results\[': syntax error",
    ):

        @flow.task(when="len(results[")
        def a():
            return 1


def test_condition_unknown_name_is_raised_before_run():
    flow = nf.Flow("f")

    @flow.task
    def a():
        return 1

    @flow.task(when="mode == 'full'")
    def b(a):
        return 1

    with pytest.raises(
        nf.ConditionError,
        match=r"task 'b' condition \"mode == 'full'\": unknown name 'mode'.*vars\['name'\]",
    ):
        flow.validate()


def test_condition_reading_a_task_makes_it_upstream():
    flow = nf.Flow("f")

    @flow.task
    def a():
        return 3

    @flow.task(when="a > 2")
    def b():
        return "ran"

    plan = flow.plan()
    assert plan.upstream["b"] == ("a",)
    assert flow.run().results["b"] == "ran"


def test_fan_out_source_must_be_a_task_or_a_run_variable():
    flow = nf.Flow("f")

    @flow.task(fan_out="items")
    def each(items):
        return items

    with pytest.raises(nf.MissingInputError, match=r"task 'each' parameter 'items' is not a task"):
        flow.validate()
    flow.validate({"items": [1, 2]})  # a run variable is a source


def test_plan_is_cached_until_definition_changes():
    flow = nf.Flow("f")
    flow.task(name="a")(lambda: 1)
    first = flow.plan()
    assert flow.plan() is first
    flow.task(name="b")(lambda: 2)
    second = flow.plan()
    assert second is not first
    flow.task(name="a")(lambda: 3)  # redefined in place: a new plan too
    assert flow.plan() is not second and flow.plan().funcs["a"]() == 3


def test_a_task_may_read_tasks_defined_after_it():
    flow = nf.Flow("forward", store=None)
    flow.task(name="reader")(lambda a: a + 1)  # `a` is defined below: no cycle for that
    flow.task(name="a", after=["b"])(lambda: 1)
    flow.task(name="b")(lambda: 0)
    plan = flow.validate()
    assert plan.downstream == {"reader": (), "a": ("reader",), "b": ("a",)}
    assert plan.upstream == {"reader": ("a",), "a": ("b",), "b": ()}
    assert flow.run().results["reader"] == 2


def test_plan_graph_is_built_on_first_use_and_matches_the_plan():
    flow = nf.Flow("lazy")
    flow.task(name="a")(lambda: 1)
    flow.task(name="b")(lambda a: a)
    flow.task(name="c", after=["a"], when="b > 0")(lambda b: b)
    plan = flow.plan()
    assert plan._graph is None  # validation does not need networkx
    graph = plan.graph
    assert graph is plan.graph and sorted(graph.edges) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert graph.nodes["c"]["spec"] is plan.specs["c"]
    assert plan.upstream["c"] == ("b", "a")  # data, then after=, then condition reads


def test_validation_is_linear_in_tasks_with_conditions():
    import gc
    import time

    def define(n):
        flow = nf.Flow("many-conditions")
        flow.task(name="root")(lambda: 1)
        for i in range(n):
            flow.task(name=f"t{i}", when="root > 0")(lambda root: root)
        gc.collect()
        start = time.perf_counter()
        flow.validate()
        return time.perf_counter() - start

    define(200)  # warm up
    small, large = min(define(1_000) for _ in range(3)), min(define(8_000) for _ in range(3))
    assert large < 8 * small * 3  # not quadratic (copying all names per condition was)


def test_validation_leaves_the_garbage_collector_as_it_was():
    import gc

    flow = nf.Flow("gc", store=None)
    flow.task(name="a")(lambda: 1)
    flow.task(name="b")(lambda a: a)
    before = (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count())
    flow.validate()
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == before
    flow.task(name="a", after=["b"])(lambda: 1)  # a cycle: validation raises
    with pytest.raises(nf.CycleError):
        flow.validate()
    assert (gc.isenabled(), gc.get_threshold(), gc.get_freeze_count()) == before
    gc.disable()
    try:
        flow.task(name="a")(lambda: 1)
        flow.validate()
        assert not gc.isenabled()  # not turned on by validation
    finally:
        gc.enable()


def test_validation_during_a_run_keeps_the_runs_frozen_heap(monkeypatch):
    import gc

    monkeypatch.setenv("NBFLOW_GC_FREEZE", "1")  # the collector is tuned only when asked
    inner = nf.Flow("validated-inside", store=None)
    inner.task(name="x")(lambda: 1)
    outer = nf.Flow("runs", store=None)
    seen = []

    @outer.task
    def probe():
        frozen = gc.get_freeze_count()
        inner.validate()  # pauses the collector; must not unfreeze what the run froze
        seen.append((frozen, gc.get_freeze_count()))

    gc.unfreeze()  # what an interpreter or a test before froze (Python 3.12 may have some)
    outer.run()
    ((frozen, after_validate),) = seen
    assert frozen > 0 and after_validate >= frozen
    assert gc.get_freeze_count() == 0  # the run's end unfreezes what it froze


def _branchy() -> nf.Flow:
    flow = nf.Flow("branchy", store=None)

    @flow.task
    def score():
        return 3

    @flow.task
    def publish():
        return "published"

    @flow.task
    def archive():
        return "archived"

    return flow


def test_a_branch_gates_both_groups_and_makes_what_it_reads_upstream():
    flow = _branchy()
    flow.branch("score > 2", then=["publish"], otherwise=["archive"], name="good")
    plan = flow.plan()
    assert plan.upstream == {"score": (), "publish": ("score",), "archive": ("score",)}
    assert plan.downstream["score"] == ("publish", "archive")
    (then,), (otherwise,) = plan.gates["publish"], plan.gates["archive"]
    assert (then.negate, then.branch, otherwise.negate, otherwise.branch) == (
        False,
        "good",
        True,
        "good",
    )
    assert then.condition is otherwise.condition
    assert (then.condition.task, then.condition.expression) == ("good", "score > 2")
    assert then.callable is None and plan.gates["score"] == ()
    assert flow.run().states == {
        "score": "succeeded",
        "publish": "succeeded",
        "archive": "skipped",
    }


def test_a_branch_member_that_is_no_task_is_named():
    flow = _branchy()
    flow.branch("score > 2", then=["publish", "publsh"], name="good")
    with pytest.raises(nf.MissingDependencyError) as info:
        flow.plan()
    assert str(info.value) == (
        "task 'good' depends on 'publsh' (branch), which is not a task of this flow; "
        "did you mean 'publish'?"
    )


def test_the_plan_is_plain_data_with_an_entry_for_every_task():
    flow = nf.Flow("tables", store=None)

    @flow.task
    def a():
        return 1

    @flow.task
    def b(a, x, y=2):
        return a

    @flow.task(after=["a"])
    def c():
        return 3

    plan = flow.plan()
    assert plan.upstream == {"a": (), "b": ("a",), "c": ("a",)}
    assert plan.downstream == {"a": ("b", "c"), "b": (), "c": ()}
    assert plan.data_params == {"a": (), "b": (("a", "a"),), "c": ()}
    free = {name: [p.name for p in params] for name, params in plan.free_params.items()}
    assert free == {"a": [], "b": ["x", "y"], "c": []}
    assert plan.gates == {"a": (), "b": (), "c": ()}
    assert plan.funcs["b"].__name__ == "b" and plan.specs["c"].after == ("a",)


def test_tables_derived_from_a_plan_are_made_once_under_their_names():
    flow = nf.Flow("memo", store=None)
    flow.task(name="a")(lambda: 1)
    flow.task(name="b", after=["a"])(lambda x: 1)
    plan = flow.plan()
    assert plan.roots() is plan.roots() and plan.roots() == ["a"]
    assert plan.with_free_params() is plan.with_free_params() == ["b"]
    assert plan.identity_calls() is plan.identity_calls()
    assert {"roots", "free", "identity_calls"} <= set(plan.memo)


def test_tasks_with_equal_options_share_their_identity_options():
    flow = nf.Flow("options", store=None)
    ignore = ("seed",)  # one object: the options of p and q hold the very same values
    for name in ["p", "q"]:
        flow.task(name=name, cache_ignore=ignore)(lambda: 1)
    flow.task(name="r")(lambda: 1)
    (_, p), (_, q), (_, r) = flow.plan().identity_calls()
    assert p is q and p != r
    assert dict(p)  # not empty: the option that shapes identity is there


def test_a_task_that_depends_on_itself_is_a_cycle():
    flow = nf.Flow("self", store=None)
    flow.task(name="a", after=["a"])(lambda: 1)
    with pytest.raises(nf.CycleError, match=r"a -> a"):
        flow.plan()


def test_a_cycle_found_by_counting_is_reported_even_with_one_task_in_it():
    # `late` reads a task defined after it, so the one-look proof fails and Kahn's
    # algorithm counts: two tasks done of three, the third is in a cycle.
    flow = nf.Flow("kahn", store=None)
    flow.task(name="late", after=["early"])(lambda: 1)
    flow.task(name="early")(lambda: 1)
    flow.task(name="loop", after=["loop"])(lambda: 1)
    with pytest.raises(nf.CycleError, match=r"loop -> loop"):
        flow.plan()
