"""Strategies: priority with weight rules, fifo, critical_path; explain; health; simulation."""

from __future__ import annotations

import asyncio
import time

import pytest

import nbflow as nf
from nbflow.strategies import (
    CriticalPathStrategy,
    PriorityStrategy,
    effective_priorities,
    remaining_path_lengths,
    resolve_strategy,
)


def _sleep(seconds):
    async def work():
        await asyncio.sleep(seconds)

    return work


def test_critical_path_finishes_sooner_than_fifo():
    """Two workers; three short leaves and a chain head -> long tail, all ready at once.

    fifo starts leaf0 and leaf1 first, so the chain starts late (makespan 6 s);
    critical_path starts the chain's head first and overlaps the leaves with it (5 s).
    """
    flow = nf.Flow("wide", max_workers=2, store=None)
    for i in range(3):
        flow.task(name=f"leaf{i}", estimate=1.0)(_sleep(1.0))
    flow.task(name="head", estimate=1.0)(_sleep(1.0))
    flow.task(name="tail", after=["head"], estimate=4.0)(_sleep(4.0))
    fifo = flow.run(simulate=True, strategy="fifo")
    critical = flow.run(simulate=True, strategy="critical_path")
    assert fifo.timeline()["task"].tolist()[:2] == ["leaf0", "leaf1"]
    assert critical.timeline()["task"].tolist()[0] == "head"
    assert (fifo.duration, critical.duration) == (pytest.approx(6.0), pytest.approx(5.0))


def test_weight_rules_follow_airflow():
    flow = nf.Flow("weights", store=None)
    flow.task(name="a", priority=1, weight_rule="downstream")(lambda: 1)
    flow.task(name="b", priority=2, after=["a"], weight_rule="upstream")(lambda: 1)
    flow.task(name="c", priority=3, after=["b"])(lambda: 1)
    weights = effective_priorities(flow.plan())
    assert weights == {"a": 1 + 2 + 3, "b": 2 + 1, "c": 3}


def test_priority_orders_ready_tasks_and_explain_says_why():
    flow = nf.Flow("explain", max_workers=1, store=None)
    flow.task(name="low", priority=1)(lambda: 1)
    flow.task(name="high", priority=9)(lambda: 2)
    flow.task(name="child", after=["high"])(lambda: 3)
    run = flow.run()
    assert run.timeline()["task"].tolist() == ["high", "low", "child"]
    text = run.explain("low")
    assert "no upstream tasks" in text
    assert "these started first: high (priority 9)" in text
    assert "its priority is 1" in text
    assert "waited for 1 upstream task(s): high (succeeded" in run.explain("child")
    with pytest.raises(KeyError, match="not a task of run"):
        run.explain("nope")


def test_custom_strategy_object():
    class Alphabetical:
        name = "alphabetical"

        def prepare(self, plan):
            return lambda task: task

    flow = nf.Flow("custom", max_workers=1, strategy=Alphabetical(), store=None)
    for name in ["c", "a", "b"]:
        flow.task(name=name)(lambda: None)
    assert flow.run().timeline()["task"].tolist() == ["a", "b", "c"]


def test_unknown_strategy_is_refused():
    with pytest.raises(nf.DefinitionError, match="unknown strategy 'random'"):
        nf.Flow("f", strategy="random")


def test_simulated_hour_runs_fast_and_identically_twice():
    flow = nf.Flow("sim", max_workers=3, store=None)
    for i in range(12):

        @flow.task(name=f"t{i}", retry=nf.Retry(max_retries=1, delay=30, jitter=5, seed=i))
        async def work(i=i):
            await asyncio.sleep(300)  # 5 virtual minutes each: an hour in total
            if i % 4 == 0 and not seen.get(i):
                seen[i] = True
                raise ConnectionError("transient")
            return i

    seen: dict[int, bool] = {}
    started = time.perf_counter()
    first = flow.run(simulate=True)
    elapsed = time.perf_counter() - started
    seen.clear()
    second = flow.run(simulate=True)
    assert first.status == second.status == "succeeded"
    assert elapsed < 5  # generous bound for a shared machine; the virtual run lasts ~1.5 hours
    assert first.timeline()["duration_s"].sum() >= 3600  # an hour of virtual sleeping
    one, two = first.timeline(), second.timeline()
    columns = ["task", "attempt", "status", "start", "end", "worker", "error"]
    assert one[columns].equals(two[columns])


def test_health_reports_active_runs_and_oldest_task():
    flow = nf.Flow("health", store=None)
    gate = asyncio.Event()

    @flow.task
    async def slow():
        await gate.wait()

    async def scenario():
        handle = flow.start()
        await asyncio.sleep(0.05)
        report = nf.health()
        mine = nf.health(flow)
        gate.set()
        await handle
        return report, mine, nf.health(flow)

    report, mine, after = asyncio.run(scenario())
    assert report["active_runs"] >= 1 and mine["active_runs"] == 1
    assert mine["tasks_in_flight"] == 1 and mine["oldest_task"] == "slow"
    assert mine["oldest_age_s"] > 0
    assert str(mine).startswith("nbflow: 1 active run(s), 1 task(s) in flight, oldest slow")
    assert after["active_runs"] == 0


def test_timeouts_and_retry_delays_use_the_virtual_clock():
    flow = nf.Flow("sim-timeout", store=None)
    attempts = []

    @flow.task(timeout=60, retry=nf.Retry(max_retries=2, delay=120, backoff=1.0, max_delay=600))
    async def stuck():
        attempts.append(1)
        await asyncio.sleep(3600 if len(attempts) < 3 else 1)
        return "done"

    started = time.perf_counter()
    run = flow.run(simulate=True)
    assert time.perf_counter() - started < 5
    assert run.results["stuck"] == "done"
    frame = run.timeline()
    assert frame["status"].tolist() == ["failed", "failed", "succeeded"]
    assert frame["duration_s"].round(6).tolist() == [60.0, 60.0, 1.0]
    assert run.duration == pytest.approx(60 + 120 + 60 + 120 + 1)


def _order(plan, strategy):
    """Every task of ``plan`` sorted by the key ``strategy`` gives it (all ready at once)."""
    key = strategy.prepare(plan)
    return sorted(plan.names, key=key)


def test_priority_keys_use_the_weight_rules():
    # c's own priority is lowest, but with weight_rule="downstream" it counts d's as well.
    flow = nf.Flow("weighted", store=None)
    flow.task(name="a", priority=3)(lambda: 1)
    flow.task(name="b", priority=2)(lambda: 1)
    flow.task(name="c", priority=1, weight_rule="downstream")(lambda: 1)
    flow.task(name="d", priority=5, after=["c"])(lambda: 1)
    plan = flow.plan()
    # Effective priorities c 1 + 5, d 5, a 3, b 2 (by their own: d, a, b, c).
    assert _order(plan, PriorityStrategy()) == ["c", "d", "a", "b"]
    assert plan.memo["priority_keys"] is PriorityStrategy().prepare(plan)  # once a plan

    # No task of the default rule: the same holds (by their own priorities: y, x).
    flow = nf.Flow("all-weighted", store=None)
    flow.task(name="x", priority=1, weight_rule="downstream")(lambda: 1)
    flow.task(name="y", priority=2, after=["x"], weight_rule="upstream")(lambda: 1)
    assert _order(flow.plan(), PriorityStrategy()) == [
        "x",
        "y",
    ]  # effective: 1 + 2, 2 + 1


def test_remaining_path_lengths_add_estimates_down_the_longest_chain():
    flow = nf.Flow("paths", store=None)
    flow.task(name="a", estimate=2.0)(lambda: 1)
    flow.task(name="b", after=["a"])(lambda: 1)  # no estimate: 1 second
    flow.task(name="c", after=["a"], estimate=0.5)(lambda: 1)
    flow.task(name="d", estimate=3.0)(lambda: 1)
    assert remaining_path_lengths(flow.plan()) == {
        "a": 3.0,
        "b": 1.0,
        "c": 0.5,
        "d": 3.0,
    }


def test_critical_path_breaks_ties_by_higher_priority_then_definition_order():
    flow = nf.Flow("ties", store=None)
    flow.task(name="low", priority=1)(lambda: 1)
    flow.task(name="high", priority=9)(lambda: 1)
    flow.task(name="also_low", priority=1)(lambda: 1)
    flow.task(name="long", estimate=5.0)(lambda: 1)
    order = _order(flow.plan(), CriticalPathStrategy())
    assert order == ["long", "high", "low", "also_low"]


def test_a_strategy_without_prepare_is_refused():
    with pytest.raises(nf.DefinitionError, match=r"^strategy 42 needs a prepare\(plan\) method"):
        resolve_strategy(42)  # type: ignore[arg-type]
    with pytest.raises(nf.DefinitionError, match=r"or an object with prepare\(plan\) -> key fun"):
        resolve_strategy("random")
