"""Trigger rules in real runs: success, failure and skip upstream (one table test)."""

from __future__ import annotations

import pytest

import nbflow as nf

# Outcomes of the two upstream tasks ("ok", "fail", "skip"), in the order of TABLE's columns.
PAIRS = [
    ("ok", "ok"),
    ("ok", "fail"),
    ("ok", "skip"),
    ("fail", "fail"),
    ("fail", "skip"),
    ("skip", "skip"),
]
S, UF, SK = "succeeded", "upstream_failed", "skipped"
# rule -> state of the downstream task for each pair of PAIRS (Airflow's semantics). Every
# rule differs from every other in some column: with one upstream task that always
# succeeded (the old table), one_success could not be told from all_done.
TABLE = {
    #              ok-ok ok-fail ok-skip fail-fail fail-skip skip-skip
    "all_success": (S, UF, SK, UF, f"{SK}|{UF}", SK),  # whichever is decided first
    "all_done": (S, S, S, S, S, S),
    "none_failed": (S, UF, S, UF, UF, S),
    "one_success": (S, S, S, UF, UF, SK),
    "one_failed": (SK, S, SK, S, S, SK),
}


def _flow(rule: str, first: str, second: str) -> nf.Flow:
    flow = nf.Flow(f"{rule}-{first}-{second}", store=None, on_error="continue")
    outcome = {"a": first, "b": second}

    # Async tasks that never wait end in definition order: a, then b.
    @flow.task(when="vars['a'] != 'skip'")
    async def a():
        if outcome["a"] == "fail":
            raise RuntimeError("a broke")
        return 1

    @flow.task(when="vars['b'] != 'skip'")
    async def b():
        if outcome["b"] == "fail":
            raise RuntimeError("b broke")
        return 2

    @flow.task(after=["a", "b"], trigger=rule)
    def downstream():
        return "ran"

    return flow


@pytest.mark.parametrize("rule", sorted(TABLE))
@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_trigger_rule_outcomes(rule, first, second):
    run = _flow(rule, first, second).run(variables={"a": first, "b": second})
    assert run.states["a"] == {"ok": "succeeded", "fail": "failed", "skip": "skipped"}[first]
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
