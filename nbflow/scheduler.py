"""The scheduler's state as plain data, and the pure transitions that change it.

State (one :class:`SchedulerState` per run)::

    counts[task]   per task: [done, succeeded, failed_like, skipped] among its upstream
                   (from when its first upstream task ends); for a task of the default rule
                   (all_success), only when an upstream task did not succeed
    left[task]     per task of the default rule: upstream successes it still needs (from
                   when its first upstream task succeeds)
    decided        tasks whose fate is known (queued, started, or given a terminal state)
    ready          (strategy key, task) of tasks whose trigger rule fired and that came in
                   key order: a deque (O(1) each way)
    ready_heap     the other ready tasks: a heap. :func:`take` pops the smaller head of the
                   two. The heap is empty whenever the deque is (see ``_push``), so
                   ``ready``'s truth value says whether any task is ready
    running        tasks started and not finished
    outcome        terminal state of each finished task
    readers_left   per partial join (one_success, at_least(n)) with upstream tasks that only
                   its gates read: how many of those have yet to end (they do not vote:
                   :func:`nbflow.joins.gate_readers`)

:func:`complete` records a finished task and walks its downstream tasks through their trigger
rules, returning what became ready and what was skipped or upstream-failed on the way
(cascading). Nothing here knows about asyncio, so every transition is tested by comparing
states. Ties between equal keys break on definition order, deterministically.
"""

from __future__ import annotations

import heapq
import operator
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .graph import Plan
from .joins import gate_readers, quorum
from .lifecycle import FAILED_LIKE, SUCCESSFUL, TaskState

# Indexes into a task's counts list.
DONE, OK, FAILED, SKIPPED = 0, 1, 2, 3

READY = "ready"
WAIT = None


def decide(rule: str, total: int, counts: list[int]) -> str | None:
    """Apply a trigger rule to the upstream counts of one task.

    Returns ``"ready"``, ``"skipped"``, ``"upstream_failed"`` or None (wait). The table
    follows Apache Airflow's semantics for the same rule names; see docs/concepts.md.
    ``at_least(n)`` (:mod:`nbflow.joins`) runs at the n-th success and gives up as soon as
    fewer than n upstream tasks can still succeed.
    """
    done, ok, failed, skipped = counts
    if rule == "all_success":
        if failed:
            return TaskState.UPSTREAM_FAILED
        if skipped:
            return TaskState.SKIPPED
        return READY if ok == total else WAIT
    if rule == "all_done":
        return READY if done == total else WAIT
    if rule == "none_failed":
        if failed:
            return TaskState.UPSTREAM_FAILED
        return READY if done == total else WAIT
    if rule == "one_success":
        if ok:
            return READY
        if done == total:
            return TaskState.SKIPPED if skipped == total else TaskState.UPSTREAM_FAILED
        return WAIT
    if rule == "one_failed":
        if failed:
            return READY
        return TaskState.SKIPPED if done == total else WAIT
    n = quorum(rule)
    if n is not None:  # at_least(n): see nbflow.joins
        if ok >= n:
            return READY
        if ok + total - done < n:  # too few left to reach n: decided at once
            return TaskState.UPSTREAM_FAILED if failed else TaskState.SKIPPED
        return WAIT
    raise ValueError(f"unknown trigger rule {rule!r}")


@dataclass(slots=True)
class SchedulerState:
    """Mutable scheduling state of one run (see the module docstring)."""

    counts: dict[str, list[int]]
    left: dict[str, int] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    ready: deque[tuple[Any, str]] = field(default_factory=deque)
    ready_heap: list[tuple[Any, str]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    outcome: dict[str, TaskState] = field(default_factory=dict)
    #: Partial join -> how many of the tasks only its gates read have yet to end.
    readers_left: dict[str, int] = field(default_factory=dict)

    def queued(self) -> list[tuple[Any, str]]:
        """Every ready ``(key, task)``, in no particular order."""
        return [*self.ready, *self.ready_heap]

    @property
    def finished(self) -> bool:
        """True when no task is ready or running (the run can end)."""
        return not self.ready and not self.running


@dataclass(slots=True)
class Transition:
    """What one call to :func:`complete` or :func:`initial` decided."""

    queued: list[str] = field(default_factory=list)
    #: (task, state, reason) for tasks that became skipped or upstream_failed.
    resolved: list[tuple[str, TaskState, str]] = field(default_factory=list)


#: What :func:`complete` returns when it decided nothing (most calls, in wide flows): shared,
#: so never mutate a returned transition.
NOTHING = Transition()

Key = Callable[[str], Any]


def initial(plan: Plan, key: Key) -> tuple[SchedulerState, Transition]:
    """The starting state: every task without upstream is ready."""
    state = SchedulerState(counts={})  # made when a task's first upstream task ends
    transition = Transition()
    for name in plan.roots():
        _enqueue(state, name, key, transition)
    return state, transition


# Ready tasks. Tasks mostly become ready in key order (roots in definition order, then layer
# by layer), so they wait in a deque and leave it in O(1), where a heap of 10,000 ready tasks
# costs some thirteen comparisons a pop (W1-10k with max_workers=64). One that comes in below
# the deque's last item goes to a heap; a pop takes the smaller head, so the order is exactly
# a heap's. The heap is empty whenever the deque is: an item goes to the heap only when it
# is below the deque's last item, which leaves only after everything below it has left. So
# the deque's truth value (in C) says whether any task is ready.


def _push(state: SchedulerState, item: tuple[Any, str]) -> None:
    ready = state.ready
    if not ready or item > ready[-1]:
        ready.append(item)
    else:
        heapq.heappush(state.ready_heap, item)


def take(state: SchedulerState) -> tuple[Any, str]:
    """Remove and return the smallest ready ``(key, task)``. Raises IndexError if none."""
    ready, heap = state.ready, state.ready_heap
    if heap and heap[0] < ready[0]:
        return heapq.heappop(heap)
    return ready.popleft()


def _enqueue(state: SchedulerState, name: str, key: Key, transition: Transition) -> None:
    state.decided.add(name)
    _push(state, (key(name), name))
    transition.queued.append(name)


def pop_ready(state: SchedulerState) -> str | None:
    """Take the best ready task (smallest key) and mark it running; None when none is ready."""
    if not state.ready:
        return None
    _, name = take(state)
    state.running.add(name)
    return name


def push_back(state: SchedulerState, items: Iterable[tuple[Any, str]]) -> None:
    """Return tasks taken with :func:`pop_ready` that could not be placed on a worker."""
    for item in items:
        state.running.discard(item[1])
        _push(state, item)


def complete(
    plan: Plan,
    state: SchedulerState,
    name: str,
    outcome: TaskState,
    key: Key,
    streamed: tuple[str, ...] | None = None,
) -> Transition:
    """Record that ``name`` ended in ``outcome``; propagate through trigger rules.

    Mutates ``state`` (call it from one thread only). Skips and upstream failures cascade:
    a task resolved here is itself completed, so its dependants are decided too.
    ``streamed``: the dependants that :func:`opened` counted ``name`` for already; its
    success does not count for them again (a failure does: it decides the undecided ones).
    """
    transition = None
    # Read straight from the memo on this hot path; plan.table makes it the first time.
    needs = plan.memo.get("needs") or prepare(plan)
    decided, all_counts, left = state.decided, state.counts, state.left
    stack = [(name, outcome)]
    while stack:
        current, result = stack.pop()
        state.running.discard(current)
        state.outcome[current] = result
        decided.add(current)
        column = _COLUMN[result]
        children = plan.downstream[current]
        if streamed is not None:  # only for `name` itself, and only its success
            if column == OK:
                children = tuple(c for c in children if c not in streamed)
            streamed = None
        for child in children:
            need = needs[child]
            if need and column == OK:
                # decide() for the default rule and a success, inline (the hot case): one
                # count down. No look at `decided` (a likely cache miss in a big flow): such a
                # task is decided only when all its upstream tasks succeeded, which happens
                # once, or when one of them did not, after which its count never reaches 0.
                # (decide() needs no success count for this rule: a failure or a skip
                # decides it alone.)
                still = left.get(child, need) - 1
                if still:
                    left[child] = still
                    continue
                verdict = READY
            else:
                if child in decided:
                    continue
                counts = all_counts.get(child)
                if counts is None:
                    counts = all_counts[child] = [0, 0, 0, 0]
                readers = _gate_readers(plan).get(child)
                if readers is None:  # every upstream task votes
                    counts[DONE] += 1
                    counts[column] += 1
                    verdict_of = decide(plan.specs[child].trigger, len(plan.upstream[child]),
                                        counts)  # fmt: skip
                else:
                    verdict_of = _partial_join(state, plan, child, current, column, readers)
                if verdict_of is None:
                    continue
                verdict = verdict_of
            if transition is None:
                transition = Transition()
            if verdict is READY:
                _enqueue(state, child, key, transition)
            else:
                decided.add(child)
                reason = f"upstream {current!r} ended {result.value}"
                transition.resolved.append((child, TaskState(verdict), reason))
                stack.append((child, TaskState(verdict)))
    return NOTHING if transition is None else transition


def prepare(plan: Plan) -> dict[str, int]:
    """Make the scheduler's tables of ``plan`` (what :func:`complete` reads) if not made
    yet; returns the first (each task's number of upstream successes it waits for)."""
    _gate_readers(plan)
    return plan.table("needs", lambda: _needs(plan))


def _gate_readers(plan: Plan) -> dict[str, frozenset[str]]:
    found = plan.memo.get("gate_readers")  # (read straight from the memo: complete's path)
    if found is None:
        found = plan.memo["gate_readers"] = gate_readers(
            plan.names, plan.specs, plan.upstream, plan.data_params
        )
    return found


def gate_readers_of(plan: Plan, join: str) -> frozenset[str]:
    """The upstream tasks of ``join`` that only its gates read (no vote in its trigger)."""
    return _gate_readers(plan).get(join, frozenset())


def _partial_join(
    state: SchedulerState,
    plan: Plan,
    join: str,
    current: str,
    column: int,
    readers: frozenset[str],
) -> str | None:
    """decide() for a partial join some of whose upstream tasks only its gates read
    (:func:`nbflow.joins.gate_readers`): those do not vote, but it runs only once they all
    ended; one that did not succeed decides it as under ``all_success`` (its gate could not
    read it)."""
    counts = state.counts[join]
    if current in readers:
        if column == FAILED:
            return TaskState.UPSTREAM_FAILED
        if column == SKIPPED:
            return TaskState.SKIPPED
        left = state.readers_left[join] = state.readers_left.get(join, len(readers)) - 1
    else:
        counts[DONE] += 1
        counts[column] += 1
        left = state.readers_left.get(join, len(readers))
    verdict = decide(plan.specs[join].trigger, len(plan.upstream[join]) - len(readers), counts)
    return None if verdict is READY and left else verdict


def opened(plan: Plan, state: SchedulerState, name: str, consumers: tuple[str, ...], key: Key
           ) -> Transition:  # fmt: skip
    """``name`` began to stream its elements: count it as a success for ``consumers`` (its
    fan-out dependants of the default rule that stream from it, see :mod:`nbflow.streams`),
    which are queued once their other upstream tasks succeeded too.

    Pass ``consumers`` again as ``streamed`` when ``name`` completes, so that its success
    is not counted twice.
    """
    transition = Transition()
    needs = plan.memo.get("needs") or plan.table("needs", lambda: _needs(plan))
    left = state.left
    for child in consumers:
        if child in state.decided:
            continue
        still = left.get(child, needs[child]) - 1
        if still:
            left[child] = still
        else:
            left[child] = 0
            _enqueue(state, child, key, transition)
    return transition


def column_of(outcome: TaskState) -> int:
    """Which count a finished upstream task adds to: OK, FAILED or SKIPPED.

    ``cancelled`` counts as a skip: only a task cancelled on its own reaches
    :func:`complete` (a stopped run records its tasks with :func:`record` and decides
    nothing more), and like a skipped task it did not fail (see :mod:`nbflow.termination`).
    """
    return _COLUMN[outcome]


_COLUMN = {
    state: OK if state in SUCCESSFUL else FAILED if state in FAILED_LIKE else SKIPPED
    for state in TaskState
}


def withdraw(state: SchedulerState, name: str) -> None:
    """Take ``name``, not started, out of the run's future (it is being cancelled on its
    own): out of the ready queue if it waits there, and never queued later. Then
    :func:`complete` records it and decides its dependants."""
    state.left[name] = 0  # the inline countdown of complete() never reaches 0 from here
    state.decided.add(name)
    for queue in (state.ready, state.ready_heap):
        for item in queue:
            if item[1] == name:
                queue.remove(item)
                break
    heapq.heapify(state.ready_heap)
    if not state.ready and state.ready_heap:  # keep the heap empty whenever the deque is
        state.ready.extend(sorted(state.ready_heap))
        state.ready_heap.clear()


def _needs(plan: Plan) -> dict[str, int]:
    """Per task: its number of upstream tasks if its rule is ``all_success``, else 0.

    One lookup instead of three per edge in :func:`complete` (the spec, its rule, the upstream
    tuple): at 100,000 tasks each lookup is a likely cache miss. Kept with the plan.
    """
    names, specs, upstream = plan.names, plan.specs, plan.upstream
    needs = dict(zip(names, map(len, map(upstream.__getitem__, names)), strict=True))
    triggers = list(map(_TRIGGER, map(specs.__getitem__, names)))
    if triggers.count("all_success") != len(names):  # in C above; other rules are rare
        for name, trigger in zip(names, triggers, strict=True):
            if trigger != "all_success":
                needs[name] = 0
    return needs


_TRIGGER = operator.attrgetter("trigger")


def record(state: SchedulerState, name: str, outcome: TaskState) -> None:
    """Record ``name``'s outcome without deciding its dependants (the run is stopping)."""
    state.running.discard(name)
    state.outcome[name] = outcome
    state.decided.add(name)


def undecided(plan: Plan, state: SchedulerState) -> list[str]:
    """Tasks never queued nor resolved (what a stopped run marks ``cancelled``)."""
    if len(state.decided) == len(plan.names):  # every run that was not stopped: no pass
        return []
    return [n for n in plan.names if n not in state.decided]
