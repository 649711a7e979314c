"""Chaining: a finished run of A starts a run of B when a condition holds."""

from __future__ import annotations

import asyncio
import logging

import pytest

import nbflow as nf
from nbflow.chaining import ChainCycleError, ChainVersionError, trigger_after
from nbflow.data.templates import TemplateSyntaxError


def make_pair(count: int = 12) -> tuple[nf.Flow, nf.Flow]:
    a = nf.Flow("a", store=None)
    b = nf.Flow("b", store=None)

    @a.task
    def total(base=count):
        return base

    @b.task
    def report(n=0, source="none"):
        return f"{source}:{n}"

    return a, b


def run_a_then_wait(a: nf.Flow, chain, variables=None) -> tuple[nf.Run, list[nf.Run]]:
    async def main():
        run = await a.arun(variables)
        return run, await chain.wait()

    return asyncio.run(main())


def test_true_condition_starts_b_with_a_results_in_its_variables():
    a, b = make_pair(12)
    chain = b.trigger_after(
        a,
        when="status == 'succeeded' and results['total'] > 10",
        variables={"n": "${results.total}", "source": "${flow}-${run_id}"},
    )
    run_a, runs_b = run_a_then_wait(a, chain)
    assert len(runs_b) == 1
    (run_b,) = runs_b
    assert run_b.status == "succeeded"
    assert run_b.results["report"] == f"a-{run_a.run_id}:12"
    assert run_b.state.variables == {"n": 12, "source": f"a-{run_a.run_id}"}
    assert run_b.state.parent_run == run_a.run_id  # linked in history
    (trigger,) = chain.triggers
    assert (trigger.upstream_run, trigger.status, trigger.fired, trigger.reason) == (
        run_a.run_id,
        "succeeded",
        True,
        "started",
    )


def test_false_condition_does_not_start_b():
    a, b = make_pair(3)
    chain = b.trigger_after(a, when="status == 'succeeded' and results['total'] > 10")
    _, runs_b = run_a_then_wait(a, chain)
    assert runs_b == []
    assert [(t.fired, t.reason) for t in chain.triggers] == [(False, "condition is false")]


def test_condition_sees_variables_and_failed_runs():
    a, b = make_pair()

    @a.task
    def fragile(total, mode="safe"):
        if mode == "risky":
            raise RuntimeError("broke")
        return total

    chain = b.trigger_after(a, when="status == 'failed' and vars['mode'] == 'risky'")
    _, runs = run_a_then_wait(a, chain, {"mode": "safe"})
    assert runs == []
    _, runs = run_a_then_wait(a, chain, {"mode": "risky"})
    assert len(runs) == 1 and [t.fired for t in chain.triggers] == [False, True]


def test_without_condition_only_a_successful_run_triggers():
    a, b = make_pair()
    chain = b.trigger_after(a)

    @a.task
    def gate(total, fail=False):
        if fail:
            raise ValueError("no")
        return total

    run_a_then_wait(a, chain, {"fail": True})
    run_a_then_wait(a, chain)
    assert [(t.status, t.fired) for t in chain.triggers] == [("failed", False), ("succeeded", True)]
    assert chain.triggers[0].reason == "upstream run failed (no condition given)"


def test_failed_condition_is_logged_and_does_not_start_b(caplog):
    a, b = make_pair()
    chain = b.trigger_after(a, when="results['missing'] > 1")
    with caplog.at_level(logging.ERROR, logger="nbflow.chaining"):
        _, runs = run_a_then_wait(a, chain)
    assert runs == []
    (trigger,) = chain.triggers
    assert not trigger.fired and trigger.reason.startswith("condition error:")
    assert "'missing'" in trigger.reason
    assert "chain a->b: condition" in caplog.text


def test_missing_template_key_is_logged_and_does_not_start_b(caplog):
    a, b = make_pair()
    chain = b.trigger_after(a, variables={"n": "${results.nothing}"})
    with caplog.at_level(logging.ERROR, logger="nbflow.chaining"):
        _, runs = run_a_then_wait(a, chain)
    assert runs == []
    assert chain.triggers[0].reason.startswith("TemplateError: template '${results.nothing}'")
    assert "not starting 'b'" in caplog.text


def test_bad_condition_or_template_is_refused_at_registration():
    a, b = make_pair()
    with pytest.raises(nf.ConditionError, match="unknown name 'count'; a chain condition can use"):
        b.trigger_after(a, when="count > 1")
    with pytest.raises(nf.ConditionError, match="syntax error"):
        b.trigger_after(a, when="status ==")
    with pytest.raises(TemplateSyntaxError, match="starts with 'env'"):
        b.trigger_after(a, variables={"x": "${env.HOME}"})


def test_a_cycle_of_chains_is_refused_with_the_cycle_named():
    a, b = make_pair()
    b.trigger_after(a)
    with pytest.raises(ChainCycleError) as caught:
        a.trigger_after(b)
    error = caught.value
    assert isinstance(error, nf.CycleError)
    assert error.cycle == ["b", "a", "b"]
    assert "chains of flows form a cycle: b -> a -> b" in str(error)


def test_a_longer_cycle_and_a_self_chain_are_refused():
    a, b = make_pair()
    c = nf.Flow("c", store=None)
    c.task(name="x")(lambda: 1)
    b.trigger_after(a)
    c.trigger_after(b)
    with pytest.raises(ChainCycleError, match="c -> a -> b -> c"):
        a.trigger_after(c)
    with pytest.raises(ChainCycleError, match="a -> a"):
        a.trigger_after(a)


def test_chaining_the_same_pair_again_replaces_the_chain():
    a, b = make_pair()
    first = b.trigger_after(a)
    second = b.trigger_after(a)  # re-running the notebook cell
    _, runs = run_a_then_wait(a, second)
    assert len(runs) == 1 and first.triggers == []


def test_removed_chain_starts_nothing():
    a, b = make_pair()
    chain = b.trigger_after(a)
    chain.remove()
    run_a_then_wait(a, chain)
    assert chain.triggers == []


def test_pinned_version_runs_while_it_matches_and_refuses_after_a_change(caplog):
    a, b = make_pair()
    chain = trigger_after(b, a, version=b.flow_version)
    _, runs = run_a_then_wait(a, chain)
    assert len(runs) == 1

    @b.task
    def report(n=0, source="none"):  # redefined: a new flow_version
        return "changed"

    with caplog.at_level(logging.ERROR, logger="nbflow.chaining"):
        _, runs = run_a_then_wait(a, chain)
    assert len(runs) == 1  # still only the first one
    last = chain.triggers[-1]
    assert not last.fired and last.reason.startswith("ChainVersionError: chain pins flow 'b'")


def test_a_wrong_pin_is_refused_at_registration():
    a, b = make_pair()
    with pytest.raises(ChainVersionError, match=r"re-pin \(version="):
        b.trigger_after(a, version="0000000000000000")


def test_simulated_runs_do_not_trigger():
    a, b = make_pair()
    chain = b.trigger_after(a)
    a.run(simulate=True)
    assert chain.triggers == []


def test_chain_repr_tells_the_story():
    a, b = make_pair()
    chain = b.trigger_after(a, when="status == 'succeeded'")
    run_a_then_wait(a, chain)
    assert repr(chain) == "<Chain 'a' -> 'b' when=\"status == 'succeeded'\" fired=1/1>"


def test_chained_run_is_linked_to_its_parent_in_history(tmp_path):
    versions = pytest.importorskip("nbflow.versions")
    store = str(tmp_path / "nbflow.db")
    a = nf.Flow("a", store=store)
    b = nf.Flow("b", store=store)
    a.task(name="total")(lambda: 12)
    b.task(name="report")(lambda: "ok")
    chain = b.trigger_after(a)
    run_a, (run_b,) = run_a_then_wait(a, chain)
    rows = versions.history("b", store=store)
    assert rows["run_id"].tolist() == [run_b.run_id]
    assert rows["parent_run"].tolist() == [run_a.run_id]


def test_chained_run_completes_after_a_blocking_run_in_a_script():
    """`flow_a.run()` with no running loop waits for the run it triggered instead of
    letting asyncio.run cancel it when A's loop closes."""
    a = nf.Flow("script-a", store=None)
    b = nf.Flow("script-b", store=None)
    a.task(name="count")(lambda: 11)
    b.task(name="report")(lambda total: f"total {total}")
    chain = b.trigger_after(
        a, when="results['count'] > 10", variables={"total": "${results.count}"}
    )
    assert a.run().status == "succeeded"
    assert [r.results for r in chain.runs] == [{"report": "total 11"}]


def test_chained_run_knows_its_parent():
    a = nf.Flow("parent-a", store=None)
    b = nf.Flow("parent-b", store=None)
    a.task(name="x")(lambda: 1)
    b.task(name="y")(lambda: 2)
    chain = b.trigger_after(a)
    first = a.run()
    assert [r.parent_run for r in chain.runs] == [first.run_id]
    assert first.parent_run is None
