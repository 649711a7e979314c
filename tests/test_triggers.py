"""Trigger rules in real runs: success, failure, skip and cancelled (on its own) upstream (one
table test)."""

from __future__ import annotations

import asyncio

import pytest

import nbflow as nf

# Outcomes of the two upstream tasks ("ok", "fail", "skip", "cancel": cancelled on its own
# by another task, while it runs), in the order of TABLE's columns.
PAIRS = [
    ("ok", "ok"),
    ("ok", "fail"),
    ("ok", "skip"),
    ("fail", "fail"),
    ("fail", "skip"),
    ("skip", "skip"),
    ("ok", "cancel"),
    ("fail", "cancel"),
    ("skip", "cancel"),
    ("cancel", "cancel"),
]
S, UF, SK = "succeeded", "upstream_failed", "skipped"
EITHER = f"{SK}|{UF}"  # all_success after a failure and a skip: whichever is decided first
# rule -> state of the downstream task for each pair of PAIRS (Airflow's semantics; a task
# cancelled on its own counts as a skip, see docs/concepts.md). Every rule differs from
# every other in some column: with one upstream task that always succeeded (the old
# table), one_success could not be told from all_done.
TABLE = {
    #              ok-ok ok-fail ok-skip fail-fail fail-skip skip-skip
    #              ok-cancel fail-cancel skip-cancel cancel-cancel
    "all_success": (S, UF, SK, UF, EITHER, SK, SK, UF, SK, SK),
    "all_done": (S, S, S, S, S, S, S, S, S, S),
    "none_failed": (S, UF, S, UF, UF, S, S, UF, S, S),
    "one_success": (S, S, S, UF, UF, SK, S, UF, SK, SK),
    "one_failed": (SK, S, SK, S, S, SK, SK, S, SK, SK),
}
# (With two upstream tasks, at_least(1) is one_success and at_least(2) all_success: see
# tests/test_joins.py for N-of-M joins.)


def _flow(rule: str, first: str, second: str) -> nf.Flow:
    flow = nf.Flow(f"{rule}-{first}-{second}", store=None, on_error="continue")
    outcome = {"a": first, "b": second}

    # Async tasks that never wait end in definition order: a, then b.
    @flow.task(when="vars['a'] != 'skip'")
    async def a():
        if outcome["a"] == "fail":
            raise RuntimeError("a broke")
        if outcome["a"] == "cancel":
            await asyncio.sleep(30)
        return 1

    @flow.task(when="vars['b'] != 'skip'")
    async def b():
        if outcome["b"] == "fail":
            raise RuntimeError("b broke")
        if outcome["b"] == "cancel":
            await asyncio.sleep(30)
        return 2

    @flow.task
    async def canceller():  # runs after a and b began
        for name in ("a", "b"):
            if outcome[name] == "cancel":
                nf.context().cancel(name)

    @flow.task(after=["a", "b"], trigger=rule)
    def downstream():
        return "ran"

    return flow


@pytest.mark.parametrize("rule", sorted(TABLE))
@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_trigger_rule_outcomes(rule, first, second):
    run = _flow(rule, first, second).run(variables={"a": first, "b": second})
    states = {"ok": "succeeded", "fail": "failed", "skip": "skipped", "cancel": "cancelled"}
    assert (run.states["a"], run.states["b"]) == (states[first], states[second])
    assert run.status == ("failed" if "fail" in (first, second) else "succeeded")
    expected = TABLE[rule][PAIRS.index((first, second))]
    assert run.states["downstream"] in expected.split("|")


def test_the_table_tells_every_two_rules_apart():
    # A rule mutated into another one fails at least one case above.
    rows = list(TABLE.values())
    assert len(set(rows)) == len(rows)


def test_cleanup_runs_after_a_failure_and_alert_only_then():
    flow = nf.Flow("etl", store=None, on_error="continue")
    fail = {"now": True}

    @flow.task
    def load():
        if fail["now"]:
            raise OSError("disk full")
        return "loaded"

    @flow.task(after=["load"], trigger="all_done")
    def cleanup():
        return "cleaned"

    @flow.task(after=["load"], trigger="one_failed")
    def alert():
        return "paged"

    failed = flow.run()
    assert failed.states == {
        "load": "failed",
        "cleanup": "succeeded",
        "alert": "succeeded",
    }
    fail["now"] = False
    fine = flow.run()
    assert fine.states == {
        "load": "succeeded",
        "cleanup": "succeeded",
        "alert": "skipped",
    }


def test_all_done_task_receives_none_for_a_failed_upstream():
    flow = nf.Flow("none", store=None, on_error="continue")

    @flow.task
    def broken():
        raise RuntimeError("x")

    @flow.task(trigger="all_done")
    def report(broken):
        return broken is None

    assert flow.run().results["report"] is True
