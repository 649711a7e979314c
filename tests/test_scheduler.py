"""The pure scheduler: transitions compared as whole states, and the trigger-rule table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbflow as nf
from nbflow import scheduler as sch
from nbflow.lifecycle import TaskState as S


def _plan(edges, triggers=None, names=None):
    flow = nf.Flow("f")
    triggers = triggers or {}
    names = names or sorted({n for e in edges for n in e})
    for name in names:
        ups = [u for u, d in edges if d == name]
        flow.task(name=name, after=ups, trigger=triggers.get(name, "all_success"))(lambda: None)
    return flow.plan()


def key_of(plan):
    from nbflow.strategies import PriorityStrategy

    return PriorityStrategy().prepare(plan)


def test_initial_state_queues_roots_in_definition_order():
    plan = _plan([("a", "c"), ("b", "c")])
    state, transition = sch.initial(plan, key_of(plan))
    assert transition.queued == ["a", "b"]
    assert state.counts == {}  # counts start when a task's first upstream task ends
    assert sorted(n for _, n in state.ready) == ["a", "b"]
    assert state.running == set() and state.outcome == {}


def test_complete_walks_downstream_only_when_all_upstream_succeeded():
    plan = _plan([("a", "c"), ("b", "c")])
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    assert sch.pop_ready(state) == "a"
    assert sch.pop_ready(state) == "b"
    first = sch.complete(plan, state, "a", S.SUCCEEDED, key)
    assert first.queued == [] and state.left["c"] == 1  # one more success needed
    second = sch.complete(plan, state, "b", S.SUCCEEDED, key)
    assert second.queued == ["c"]
    assert state.outcome == {"a": S.SUCCEEDED, "b": S.SUCCEEDED}
    assert state.running == set()


def test_failure_cascades_upstream_failed_through_the_chain():
    plan = _plan([("a", "b"), ("b", "c"), ("c", "d")])
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    sch.pop_ready(state)
    transition = sch.complete(plan, state, "a", S.FAILED, key)
    assert [(n, s.value) for n, s, _ in transition.resolved] == [
        ("b", "upstream_failed"),
        ("c", "upstream_failed"),
        ("d", "upstream_failed"),
    ]
    assert state.finished


def test_pop_ready_follows_priority_then_definition_order():
    flow = nf.Flow("f")
    for name, priority in [("t1", 1), ("t2", 10), ("t3", 5), ("t4", 5)]:
        flow.task(name=name, priority=priority)(lambda: None)
    plan = flow.plan()
    state, _ = sch.initial(plan, key_of(plan))
    assert [sch.pop_ready(state) for _ in range(4)] == ["t2", "t3", "t4", "t1"]
    assert sch.pop_ready(state) is None


# Rows: rule, upstream outcomes -> expected decision once all are known (Airflow semantics).
TRIGGER_TABLE = [
    ("all_success", ["succeeded", "succeeded"], "ready"),
    ("all_success", ["succeeded", "failed"], "upstream_failed"),
    ("all_success", ["succeeded", "skipped"], "skipped"),
    ("all_success", ["skipped", "failed"], "upstream_failed"),
    ("all_done", ["succeeded", "failed"], "ready"),
    ("all_done", ["skipped", "upstream_failed"], "ready"),
    ("none_failed", ["succeeded", "skipped"], "ready"),
    ("none_failed", ["skipped", "skipped"], "ready"),
    ("none_failed", ["succeeded", "failed"], "upstream_failed"),
    ("one_success", ["failed", "succeeded"], "ready"),
    ("one_success", ["failed", "failed"], "upstream_failed"),
    ("one_success", ["skipped", "skipped"], "skipped"),
    ("one_success", ["skipped", "failed"], "upstream_failed"),
    ("one_failed", ["succeeded", "failed"], "ready"),
    ("one_failed", ["succeeded", "succeeded"], "skipped"),
    ("one_failed", ["skipped", "upstream_failed"], "ready"),
    ("one_failed", ["skipped", "skipped"], "skipped"),
]


@pytest.mark.parametrize(("rule", "outcomes", "expected"), TRIGGER_TABLE)
def test_trigger_rule_table(rule, outcomes, expected):
    counts = [0, 0, 0, 0]
    for outcome in outcomes:
        state = S(outcome)
        counts[sch.DONE] += 1
        column = (
            sch.OK
            if state in (S.SUCCEEDED, S.CACHED)
            else sch.SKIPPED
            if state is S.SKIPPED
            else sch.FAILED
        )
        counts[column] += 1
    assert sch.decide(rule, len(outcomes), counts) == expected


@pytest.mark.parametrize(
    ("rule", "seen", "expected"),
    [
        ("one_success", ["succeeded"], "ready"),  # fires before the other upstream ends
        ("one_failed", ["failed"], "ready"),
        ("all_success", ["failed"], "upstream_failed"),
        ("all_success", ["succeeded"], None),
        ("all_done", ["failed"], None),
    ],
)
def test_trigger_rules_decide_early_or_wait(rule, seen, expected):
    counts = [0, 0, 0, 0]
    for outcome in seen:
        counts[sch.DONE] += 1
        counts[sch.OK if outcome == "succeeded" else sch.FAILED] += 1
    assert sch.decide(rule, 2, counts) == expected


@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_every_task_is_decided_once_and_as_its_upstream_outcomes_say(data):
    """A random DAG with mixed trigger rules and random outcomes, run to the end: each task
    is queued or resolved exactly once, a default-rule task is queued iff all its upstream
    tasks succeeded, and the final outcomes agree with the trigger-rule table."""
    n = data.draw(st.integers(2, 9), label="tasks")
    names = [f"t{i}" for i in range(n)]
    edges = [
        (names[i], names[j])
        for j in range(n)
        for i in range(j)
        if data.draw(st.booleans(), label=f"{i}->{j}")
    ]
    rules = ["all_success", "all_success", "all_done", "one_success", "none_failed"]
    triggers = {name: data.draw(st.sampled_from(rules), label=name) for name in names}
    plan = _plan(edges, triggers, names)
    key = key_of(plan)
    state, transition = sch.initial(plan, key)
    queued, resolved = list(transition.queued), []
    while True:
        name = sch.pop_ready(state)
        if name is None:
            break
        outcome = data.draw(st.sampled_from([S.SUCCEEDED, S.FAILED]), label=f"{name} ends")
        step = sch.complete(plan, state, name, outcome, key)
        queued += step.queued
        resolved += [(child, verdict) for child, verdict, _ in step.resolved]
    decided = queued + [child for child, _ in resolved]
    assert sorted(decided) == sorted(names)  # each exactly once
    for name in names:
        ups = plan.upstream[name]
        outcomes = [state.outcome[u] for u in ups]
        if triggers[name] == "all_success" and ups:
            assert (name in queued) == all(o is S.SUCCEEDED for o in outcomes)
        counts = [len(outcomes), 0, 0, 0]
        for o in outcomes:
            counts[1 if o is S.SUCCEEDED else 2 if o in (S.FAILED, S.UPSTREAM_FAILED) else 3] += 1
        if name in queued:
            assert not ups or sch.decide(triggers[name], len(ups), counts) is sch.READY
        else:
            assert sch.decide(triggers[name], len(ups), counts) is not sch.READY


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(-20, 20), st.none()), max_size=60))
def test_ready_tasks_leave_in_the_order_of_a_heap(ops):
    """Pushes (ints: keys, in and out of order) and takes (None) against heapq itself."""
    import heapq

    state, reference, serial = sch.SchedulerState(counts={}), [], 0
    for op in ops:
        if op is None:
            if reference:
                assert sch.take(state) == heapq.heappop(reference)
            else:
                with pytest.raises(IndexError):
                    sch.take(state)
        else:
            serial += 1
            item = (op, f"t{serial:03d}")
            sch.push_back(state, [item])
            heapq.heappush(reference, item)
        # The deque's truth value alone says whether any task is ready (the engine asks it).
        assert bool(state.ready) is bool(reference)
        assert sorted(state.queued()) == sorted(reference)
    assert [sch.take(state) for _ in reference] == sorted(reference)


def test_ready_tasks_in_key_order_stay_out_of_the_heap():
    state = sch.SchedulerState(counts={})
    sch.push_back(state, [(k, f"t{k}") for k in range(5)])
    sch.push_back(state, [(2, "late")])  # below the last one: to the heap
    assert (len(state.ready), len(state.ready_heap)) == (5, 1)
    assert [sch.take(state)[1] for _ in range(6)] == ["t0", "t1", "late", "t2", "t3", "t4"]
    assert not state.ready and not state.ready_heap


def test_a_success_counts_down_the_default_rule_and_keeps_its_table_with_the_plan():
    # The default rule (all_success) only counts down the successes it still needs, in
    # `left`; other rules count every outcome, in `counts`.
    plan = _plan([("a", "c"), ("b", "c"), ("a", "d"), ("b", "d")], triggers={"d": "all_done"})
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    sch.complete(plan, state, "a", S.SUCCEEDED, key)
    assert plan.memo["needs"] == {"a": 0, "b": 0, "c": 2, "d": 0}
    assert state.left == {"c": 1}
    assert state.counts == {"d": [1, 1, 0, 0]}  # [done, succeeded, failed-like, skipped]
    sch.complete(plan, state, "b", S.FAILED, key)
    assert state.counts == {"c": [1, 0, 1, 0], "d": [2, 1, 1, 0]}
    assert state.left == {"c": 1}


def test_a_skip_counts_in_its_own_column():
    plan = _plan([("a", "c"), ("b", "c")], triggers={"c": "one_success"})
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    assert sch.complete(plan, state, "a", S.SKIPPED, key) is sch.NOTHING
    assert state.counts == {"c": [1, 0, 0, 1]}
    transition = sch.complete(plan, state, "b", S.SKIPPED, key)
    assert transition.resolved == [("c", S.SKIPPED, "upstream 'b' ended skipped")]


def test_resolved_tasks_carry_the_upstream_task_that_decided_them():
    plan = _plan([("a", "b"), ("b", "c")])
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    transition = sch.complete(plan, state, "a", S.FAILED, key)
    assert transition.resolved == [
        ("b", S.UPSTREAM_FAILED, "upstream 'a' ended failed"),
        ("c", S.UPSTREAM_FAILED, "upstream 'b' ended upstream_failed"),
    ]


def test_decide_rejects_an_unknown_rule():
    with pytest.raises(ValueError, match=r"^unknown trigger rule 'sometimes'$"):
        sch.decide("sometimes", 1, [1, 1, 0, 0])


def test_push_back_returns_taken_tasks_to_the_ready_queue():
    plan = _plan([], names=["a", "b", "c"])
    state, _ = sch.initial(plan, key_of(plan))
    taken = [sch.pop_ready(state), sch.pop_ready(state)]
    assert taken == ["a", "b"] and state.running == {"a", "b"}
    sch.push_back(state, [(key_of(plan)("b"), "b")])
    assert state.running == {"a"}
    assert [sch.pop_ready(state), sch.pop_ready(state), sch.pop_ready(state)] == [
        "b",
        "c",
        None,
    ]


def test_record_keeps_an_outcome_without_deciding_dependants():
    plan = _plan([("a", "b")])
    state, _ = sch.initial(plan, key_of(plan))
    sch.pop_ready(state)
    sch.record(state, "a", S.CANCELLED)
    assert state.running == set()
    assert state.outcome == {"a": S.CANCELLED}
    assert state.counts == {} and state.left == {}
    assert sch.undecided(plan, state) == ["b"]


# -- streaming: a producer counted as it opens (nbflow.streams) ----------------------------


def _streaming_plan():
    # c streams from s (a producer) and also waits for x.
    return _plan([("s", "c"), ("x", "c"), ("s", "d")])


def test_opened_counts_the_producer_for_its_consumers_once():
    plan = _streaming_plan()
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    sch.pop_ready(state), sch.pop_ready(state)
    assert sch.opened(plan, state, "s", ("c",), key).queued == []  # x still runs
    assert state.left["c"] == 1
    done = sch.complete(plan, state, "s", S.SUCCEEDED, key, ("c",))
    assert done.queued == ["d"] and state.left["c"] == 1  # counted at open, not again
    assert sch.complete(plan, state, "x", S.SUCCEEDED, key).queued == ["c"]


def test_opened_queues_a_consumer_whose_other_upstream_tasks_succeeded():
    plan = _streaming_plan()
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    sch.pop_ready(state), sch.pop_ready(state)
    sch.complete(plan, state, "x", S.SUCCEEDED, key)
    assert sch.opened(plan, state, "s", ("c",), key).queued == ["c"]
    assert sch.opened(plan, state, "s", ("c",), key).queued == []  # decided: never twice
    assert sch.complete(plan, state, "s", S.SUCCEEDED, key, ("c",)).queued == ["d"]


def test_a_producer_that_fails_after_it_opened_decides_its_undecided_consumers():
    plan = _streaming_plan()
    key = key_of(plan)
    state, _ = sch.initial(plan, key)
    sch.pop_ready(state), sch.pop_ready(state)
    sch.opened(plan, state, "s", ("c",), key)
    failed = sch.complete(plan, state, "s", S.FAILED, key, ("c",))
    assert sorted((n, s.value) for n, s, _ in failed.resolved) == [
        ("c", "upstream_failed"),
        ("d", "upstream_failed"),
    ]
