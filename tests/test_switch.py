"""flow.switch (nbflow.switch): exactly one group runs, the others are skipped; checks of
its definition before any task runs."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf
from nbflow.switch import UnknownMemberError


def modes() -> nf.Flow:
    flow = nf.Flow("modes", store=None)

    @flow.task
    async def measure():
        await asyncio.sleep(1)
        return 7

    for name in ("full_a", "full_b", "quick", "fallback"):

        async def step(name=name):
            await asyncio.sleep(2)
            return name

        flow.task(name=name)(step)

    @flow.task(trigger="none_failed")
    def report(full_a, full_b, quick, fallback):
        return [r for r in (full_a, full_b, quick, fallback) if r]

    flow.task(name="after_quick")(lambda quick: quick)
    flow.switch(
        "vars['mode']",
        cases={"full": ["full_a", "full_b"], "quick": ["quick"]},
        default=["fallback"],
        name="mode",
    )
    return flow


@pytest.mark.parametrize(
    ("mode", "ran"),
    [("full", ["full_a", "full_b"]), ("quick", ["quick"]), ("other", ["fallback"])],
)
def test_exactly_one_group_runs_the_others_are_skipped(mode, ran):
    run = modes().run(variables={"mode": mode}, simulate=True)
    members = ["full_a", "full_b", "quick", "fallback"]
    assert {m: run.states[m] for m in members} == {
        m: "succeeded" if m in ran else "skipped" for m in members
    }
    assert run.results["report"] == ran
    assert run.states["after_quick"] == ("succeeded" if mode == "quick" else "skipped")
    assert run.status == "succeeded" and run.duration == 2.0  # the chosen group ran at once
    skipped = next(m for m in members if m not in ran)
    assert run.state.tasks[skipped].reason.startswith('branch "mode[')  # the group's branch


def test_without_a_default_an_unmatched_value_runs_no_group():
    flow = modes()
    flow.switch("vars['mode']", cases={"full": ["full_a", "full_b"], "quick": ["quick"]},
                name="mode")  # fmt: skip
    run = flow.run(variables={"mode": "other"}, simulate=True)
    assert [run.states[m] for m in ("full_a", "full_b", "quick", "fallback")] == [
        "skipped", "skipped", "skipped", "succeeded"  # fallback is in no group now
    ]  # fmt: skip


def test_the_expression_may_read_an_upstream_result_and_keys_are_any_literal():
    flow = modes()
    flow.switch("measure % 2 == 1", cases={True: ["quick"], False: ["full_a"]}, name="mode")
    run = flow.run(simulate=True)
    assert run.states["quick"] == "succeeded" and run.states["full_a"] == "skipped"
    assert (
        run.timeline().set_index("task").loc["quick", "start"]
        > run.timeline().set_index("task").loc["measure", "start"]
    )  # it waits for what its switch reads
    assert flow.plan().upstream["quick"] == ("measure",)


def test_defining_a_switch_of_the_same_name_again_replaces_it():
    flow = modes()
    before = set(flow.branches)
    flow.switch("vars['mode']", cases={"quick": ["quick"]}, name="mode")
    assert set(flow.branches) == {"mode['quick']"} != before
    (branch,) = flow.spec().branches  # a switch is plain data: one branch per group
    assert (branch.expression, branch.then) == ("(vars['mode']) == 'quick'", ("quick",))


def test_a_case_naming_an_unknown_task_is_refused_before_any_task_runs():
    flow = modes()
    flow.switch("vars['mode']", cases={"full": ["full_a", "ful_b"]}, name="mode")
    with pytest.raises(UnknownMemberError) as error:
        flow.run(variables={"mode": "full"})
    assert str(error.value) == (
        "switch 'mode': case 'full' names 'ful_b', which is not a task of this flow; did you "
        "mean 'full_b'? Define that task, or correct the name in the switch"
    )
    assert isinstance(error.value, nf.MissingDependencyError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cases": {}}, "switch 'bad': cases must be a mapping of values to tasks"),
        ({"cases": {(1,): ["quick"]}}, "switch 'bad': case key (1,) is not a literal"),
        ({"cases": {float("nan"): ["quick"]}}, "switch 'bad': case key nan is not a literal"),
        (
            {"cases": {"a": ["quick"]}, "default": ["quick"]},
            "switch 'bad': task 'quick' is in case 'a' and in default",
        ),
    ],
)
def test_a_bad_switch_is_refused_where_it_is_defined(kwargs, message):
    with pytest.raises(nf.DefinitionError) as error:
        modes().switch("vars['mode']", name="bad", **kwargs)
    assert str(error.value).startswith(message)


def test_a_bad_expression_is_a_condition_error():
    with pytest.raises(nf.ConditionError, match="syntax error"):
        modes().switch("vars['mode'] ==", cases={"a": ["quick"]})


def test_a_case_naming_a_task_the_expression_reads_is_refused_before_any_task_runs():
    flow = modes()
    flow.switch("measure > 5", cases={True: ["measure", "quick"]}, name="mode")
    with pytest.raises(nf.DefinitionError) as error:
        flow.run(variables={"mode": "full"})
    assert str(error.value) == (
        "switch 'mode': case True names 'measure', which the switch's expression 'measure > 5' "
        "reads: a task cannot be chosen by its own result; take it out of the switch, or "
        "switch on a task upstream of it"
    )


def test_a_branch_gating_a_task_its_condition_reads_is_refused_the_same_way():
    flow = modes()
    flow.branch("measure > 5", then=["quick"], otherwise=["measure"], name="size")
    with pytest.raises(nf.DefinitionError, match=r"^branch 'size': its condition 'measure > 5' "
                       r"reads 'measure', which it also gates \(in otherwise\)"):  # fmt: skip
        flow.plan()


SKIPPED_BY = {key: ("skipped", f"branch \"mode['{key}']\"") for key in "xy"}


@pytest.mark.parametrize(
    ("mode", "go", "outcome"),
    [
        ("x", True, {"a": ("succeeded", ""), "b": SKIPPED_BY["y"]}),
        # chosen, but its own when= is false:
        ("x", False, {"a": ("skipped", "condition is false"), "b": SKIPPED_BY["y"]}),
        ("y", True, {"a": SKIPPED_BY["x"], "b": ("succeeded", "")}),
    ],
)
def test_a_case_task_with_its_own_when_runs_only_when_both_hold(mode, go, outcome):
    flow = nf.Flow("switch-when", store=None)
    flow.task(name="a", when="vars['go']")(lambda: "a")
    flow.task(name="b")(lambda: "b")
    flow.switch("vars['mode']", cases={"x": ["a"], "y": ["b"]}, name="mode")
    run = flow.run(variables={"mode": mode, "go": go}, simulate=True)
    found = {t: (run.states[t], run.state.tasks[t].reason) for t in ("a", "b")}
    assert found == outcome
