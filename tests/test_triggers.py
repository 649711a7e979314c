"""Trigger rules in real runs: success, failure and skip upstream (one table test)."""

from __future__ import annotations

import pytest

import nbflow as nf

# upstream outcome ("ok", "fail", "skip") -> expected state of the downstream task per rule
TABLE = {
    "all_success": {"ok": "succeeded", "fail": "upstream_failed", "skip": "skipped"},
    "all_done": {"ok": "succeeded", "fail": "succeeded", "skip": "succeeded"},
    "none_failed": {"ok": "succeeded", "fail": "upstream_failed", "skip": "succeeded"},
    # `fine` always succeeds, so one success is always there
    "one_success": {"ok": "succeeded", "fail": "succeeded", "skip": "succeeded"},
    "one_failed": {"ok": "skipped", "fail": "succeeded", "skip": "skipped"},
}


def _flow(rule: str, outcome: str) -> nf.Flow:
    flow = nf.Flow(f"{rule}-{outcome}", store=None, on_error="continue")

    @flow.task
    def fine():
        return 1

    @flow.task(when="vars['outcome'] != 'skip'")
    def upstream():
        if flow_outcome["value"] == "fail":
            raise RuntimeError("upstream broke")
        return 2

    @flow.task(after=["fine", "upstream"], trigger=rule)
    def downstream():
        return "ran"

    flow_outcome = {"value": outcome}
    return flow


@pytest.mark.parametrize("rule", sorted(TABLE))
@pytest.mark.parametrize("outcome", ["ok", "fail", "skip"])
def test_trigger_rule_outcomes(rule, outcome):
    run = _flow(rule, outcome).run(variables={"outcome": outcome})
    assert run.states["downstream"] == TABLE[rule][outcome]


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
    assert failed.states == {"load": "failed", "cleanup": "succeeded", "alert": "succeeded"}
    fail["now"] = False
    fine = flow.run()
    assert fine.states == {"load": "succeeded", "cleanup": "succeeded", "alert": "skipped"}


def test_all_done_task_receives_none_for_a_failed_upstream():
    flow = nf.Flow("none", store=None, on_error="continue")

    @flow.task
    def broken():
        raise RuntimeError("x")

    @flow.task(trigger="all_done")
    def report(broken):
        return broken is None

    assert flow.run().results["report"] is True
