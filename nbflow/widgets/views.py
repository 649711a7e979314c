"""From a run's state to what the renderers draw: pure functions, no widgets, no events.

:class:`Structure` is the drawn shape of one flow (names, edges, static node facts, and for
big flows the grouping), computed once per dashboard. Per update it turns a
:class:`~nbflow.state.RunState` into node views, and :func:`gantt_rows` turns the state's
attempt rows into Gantt input. :func:`~nbflow.widgets.digraph.to_digraph` draws a structure as the
``graphviz.Digraph`` that ``flow.graph(run)`` returns. The dashboard, the static summary and
``flow.graph`` all draw from here, so they agree.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, is_
from typing import TYPE_CHECKING, Any

from nbflow.errors import describe
from nbflow.lifecycle import RunStatus, TaskState
from nbflow.render import GraphView, NodeView, topological_layers
from nbflow.render.palette import TERMINAL, URGENCY
from nbflow.render.svg import fit_node_w

if TYPE_CHECKING:
    from nbflow.graph import Plan
    from nbflow.state import RunState, TaskRecord

#: Flows with more tasks than this are drawn grouped (by tag, else by topological level).
MAX_NODES = 300

_RANK = {state: i for i, state in enumerate(URGENCY)}
_STATE = attrgetter("state")


def state_counts(records: Sequence[TaskRecord]) -> Counter[str]:
    """Number of ``records`` per state (keys are the ``TaskState`` members themselves).

    ``TaskState`` members are ``str`` subclasses that hash and compare like their names.
    """
    return Counter(map(_STATE, records))


def partial_count(state: RunState) -> int:
    """How many of the run's fan-out tasks are drawn "partial" (see :func:`partial`): only
    fan-out tasks have elements, so only they are looked at."""
    tasks = state.tasks
    return sum(1 for n in state.fan_out if (r := tasks.get(n)) is not None and partial(r))


def _drawn_counts(state: RunState) -> Counter[str]:
    counts = state_counts(list(state.tasks.values()))
    n = partial_count(state) if state.fan_out else 0
    if n:  # they succeeded, but are drawn (and so counted) "partial"
        counts["partial"] = n
        counts["succeeded"] -= n
        if not counts["succeeded"]:
            del counts["succeeded"]
    return counts


def counts_of(state: RunState) -> Counter[str]:
    """Number of the state's tasks per state as drawn ("partial" apart from "succeeded");
    counted once per finished state (do not change the result: it may be shared)."""
    if state.finished_t is None:
        return _drawn_counts(state)
    key = (id(state), state.run_id, state.last_seq)
    if _COUNTS[0] != key:
        _COUNTS[:] = [key, _drawn_counts(state)]
    return _COUNTS[1]


# The counts of the last finished state counted: the final drawing (header and graph), the
# static summary and sync() count a 2,000-task run once. A finished state no longer changes;
# the key has the run's id, so a later state at the same address never matches, and only
# the counts are kept, not the state.
_COUNTS: list[Any] = [None, None]


@dataclass(frozen=True, slots=True)
class TaskFacts:
    """What the definition says about a task (does not change during a run)."""

    priority: int = 0
    tags: tuple[str, ...] = ()
    #: what the task waits for (``wait_for=``), as its node will say it; "" for none
    waits_for: str = ""


def error_text(error: BaseException | None) -> str | None:
    """``"ValueError: bad row"`` for an exception, None for None."""
    return None if error is None else describe(error)


def now_t(state: RunState) -> float:
    """The run clock's current time: live while running, the end time once finished, the
    moment shown in a replay.

    The run clock starts at 0 at ``wall_start`` (``time.time()``), so while a run is live
    the wall clock tells how far it is, even between events (a long task's elapsed time
    keeps growing on screen).
    """
    if state.shown_t is not None:  # a replay: the moment it shows
        return state.shown_t
    if state.finished_t is not None:
        return state.finished_t
    if state.status is RunStatus.RUNNING and state.wall_start:
        return max(state.last_t, time.time() - state.wall_start)
    return state.last_t


def counter(record: TaskRecord) -> str | None:
    """``"37/100"`` for a fan-out task whose size is known; ``"37/…"`` for one whose
    elements stream in (their count is known when the task ends); else None."""
    done = record.elements_done
    if record.size is not None:
        return f"{done}/{record.size}"
    ended = done + record.elements_failed
    if not ended:
        return None
    return f"{done}/…" if record.state is TaskState.RUNNING else f"{done}/{ended}"


def partial(record: TaskRecord) -> bool:
    """Whether ``record`` is a fan-out task that succeeded (``allow_partial=True``) while
    some of its elements failed: drawn as "partial", not as a plain success."""
    return record.elements_failed > 0 and record.state == "succeeded"


def shown_state(record: TaskRecord) -> str:
    """The state a task is drawn in: its own, or "partial" (see :func:`partial`)."""
    return "partial" if partial(record) else str(record.state)


def element_errors_text(record: TaskRecord) -> str | None:
    """``"3 of 10 elements failed; first: work[3] ValueError: bad"``; None if none failed."""
    if not record.elements_failed:
        return None
    n = record.elements_failed
    if record.size is not None:  # "1 of 6 elements failed"
        text = f"{n} of {record.size} elements failed"
    else:
        text = f"{n} element{'s' if n != 1 else ''} failed"
    if record.element_errors:
        index = min(record.element_errors)
        text += f"; first: {record.element_label(index)} {error_text(record.element_errors[index])}"
    return text


def progress_of(state: RunState, record: TaskRecord) -> tuple[str, float | None] | None:
    """A running task's own progress (``nf.track``, ``ctx.progress``) in its current
    attempt: ``("37/100", 0.37)``, ``("40%", 0.4)`` or ``("37", None)`` without a total;
    None when it reported none (or is not running)."""
    if not state.progress or record.state != "running":
        return None
    found = state.progress.get(record.name)
    if found is None or found[0] != record.attempts:
        return None
    return progress_text(found[1], found[2])


def progress_text(done: float, total: float | None) -> tuple[str, float | None]:
    """How ``done`` of ``total`` is shown, and the fraction done (None: no total)."""
    if total is None:
        return f"{done:g}", None
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    if float(done).is_integer() and float(total).is_integer():
        return f"{int(done)}/{int(total)}", fraction
    return f"{fraction:.0%}", fraction


def node_view(
    name: str,
    record: TaskRecord | None,
    facts: TaskFacts,
    now: float,
    progress: tuple[str, float | None] | None = None,
) -> NodeView:
    """The node of one task: state, attempts, duration (elapsed while running), error, and
    ``progress`` (see :func:`progress_of`).

    A fan-out task whose failed elements were allowed (``allow_partial=True``) is drawn
    "partial", its error saying how many elements failed and the first error.
    """
    if record is None:  # a waiting task's note makes room on the node for what it will say
        note = f"waiting for {facts.waits_for}" if facts.waits_for else None
        return NodeView(name, "pending", facts.priority, tags=facts.tags, note=note)
    duration = record.duration
    if duration is None and record.started_t is not None:
        duration = max(0.0, now - record.started_t)
    return NodeView(
        name,
        "partial" if partial(record) else record.state,
        facts.priority,
        record.attempts,
        duration,
        error_text(record.error) or element_errors_text(record),
        facts.tags,
        counter(record) or (progress[0] if progress else None),
        note=record.reason or None,
        progress=progress[1] if progress and record.size is None else None,
    )


def group_keys(
    names: Sequence[str],
    level: Mapping[str, int],
    facts: Mapping[str, TaskFacts],
    max_nodes: int = MAX_NODES,
) -> dict[str, str]:
    """Map each task to its group when a flow is too big to draw task by task.

    By first tag when some task has a tag and the keys make at most ``max_nodes`` groups;
    else by topological ``level``, consecutive levels merged so at most ``max_nodes`` remain.

    Raises:
        ValueError: ``max_nodes < 1``.
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1, not {max_nodes!r}")
    tagged = {n: facts[n].tags[0] if facts[n].tags else "untagged" for n in names}
    if any(facts[n].tags for n in names) and len(set(tagged.values())) <= max_nodes:
        return tagged
    depth = max(level.values(), default=0) + 1
    chunk = math.ceil(depth / max_nodes)
    keys = {}
    for name in names:
        k = level[name]
        a = k - k % chunk
        keys[name] = f"level {a}" if chunk == 1 else f"levels {a}-{min(a + chunk, depth) - 1}"
    return keys


def group_node(
    key: str,
    members: Sequence[TaskRecord | None],
    priority: int = 0,
    complete: bool = False,
    states: list[Any] | None = None,
) -> NodeView:
    """One group's node: its most urgent member state and ``done/total`` members.

    ``None`` members have not started (pending); ``priority`` is the group's highest.
    ``complete``: the caller knows that no member is None (then they are counted in C).
    ``states``: the members' states, when the caller has them (counted faster still).
    """
    counts: Mapping[Any, int]
    if states is not None:
        # Most groups hold one or two states: a set and a C-level count per state beat a
        # Counter (40 groups of a 2,000-task flow: ~90 -> ~40 us).
        counts = {k: states.count(k) for k in set(states)}
    elif complete:
        counts = Counter(map(shown_state, members))  # type: ignore[arg-type]
    else:
        counts = Counter(shown_state(r) if r is not None else "pending" for r in members)
    # TaskState members hash like their names, so the counts index by plain strings.
    state = min(counts, key=_RANK.__getitem__, default="pending")
    done = sum(n for k, n in counts.items() if k in TERMINAL)
    error = None
    if counts.get("failed"):
        failed = [
            f"{r.name}: {error_text(r.error) or 'failed'}"
            for r in members
            if r is not None and r.state == "failed"
        ]
        error = (
            f"{len(failed)} failed: " + "; ".join(failed[:3]) + ("; …" if len(failed) > 3 else "")
        )
    return NodeView(key, state, priority, error=error, counter=f"{done}/{len(members)}")


class Structure:
    """The drawn shape of a flow: full task graph, or groups when it has over ``max_nodes``.

    ``view`` is the :class:`GraphView` to lay out (all nodes pending); :meth:`nodes` gives
    the current node views for a run state, keyed like ``view``'s nodes.

    Raises:
        ValueError: ``max_nodes < 1``.
    """

    def __init__(
        self,
        names: Sequence[str],
        edges: Sequence[tuple[str, str]],
        facts: Mapping[str, TaskFacts] | None = None,
        max_nodes: int = MAX_NODES,
    ) -> None:
        if max_nodes < 1:
            raise ValueError(f"max_nodes must be at least 1, not {max_nodes!r}")
        self.names = tuple(names)
        self.edges = tuple(dict.fromkeys(edges))
        self.facts = {n: (facts or {}).get(n, TaskFacts()) for n in self.names}
        self.grouped = len(self.names) > max_nodes
        self.groups: dict[str, list[str]] = {}
        if self.grouped:
            layers = topological_layers(list(self.names), list(self.edges))
            level = {name: k for k, layer in enumerate(layers) for name in layer}
            keys = group_keys(self.names, level, self.facts, max_nodes)
            for name in self.names:
                self.groups.setdefault(keys[name], []).append(name)
            # Groups left to right by their earliest member; an edge against this order
            # (possible with tags) is dropped so the drawn graph stays acyclic.
            order = sorted(self.groups, key=lambda g: min(level[n] for n in self.groups[g]))
            rank = {g: i for i, g in enumerate(order)}
            self.groups = {g: self.groups[g] for g in order}
            # Members in group order, and each group's slice of them: nodes() looks every
            # task up in one pass.
            self._members = [n for m in self.groups.values() for n in m]
            self._slices: list[tuple[str, int, int]] = []
            start = 0
            for g, m in self.groups.items():
                self._slices.append((g, start, start + len(m)))
                start += len(m)
            self._group_priority = {
                g: max(self.facts[n].priority for n in m) for g, m in self.groups.items()
            }
            group_edges = {
                (keys[u], keys[v]): None for u, v in self.edges if rank[keys[u]] < rank[keys[v]]
            }
            self.view = GraphView(
                tuple(
                    group_node(g, [None] * len(m), self._group_priority[g])
                    for g, m in self.groups.items()
                ),
                tuple(group_edges),
            )
        else:
            self.view = GraphView(
                tuple(node_view(n, None, self.facts[n], 0.0) for n in self.names), self.edges
            )

    @classmethod
    def from_plan(cls, plan: Plan, max_nodes: int = MAX_NODES) -> Structure:
        """The structure of a validated plan (edges from its upstream map)."""
        edges = [(u, n) for n in plan.names for u in plan.upstream[n]]
        facts = {
            n: TaskFacts(
                s.priority, tuple(s.tags), s.wait_for.describe() if s.wait_for is not None else ""
            )
            for n, s in plan.specs.items()
        }
        return cls(plan.names, edges, facts, max_nodes)

    @classmethod
    def from_state(cls, state: RunState, max_nodes: int = MAX_NODES) -> Structure:
        """A structure with no edges, for a run whose plan is unknown (e.g. from a store)."""
        return cls(list(state.tasks), [], None, max_nodes)

    @functools.cached_property
    def key(self) -> tuple[Any, ...]:
        """Identity of the drawn graph: equal keys can share a layout (same shape, and the
        same node width, which the names and priorities decide)."""
        return (tuple(self.view.names), self.view.edges, fit_node_w(self.view))

    @functools.cached_property
    def priorities(self) -> dict[str, int]:
        """Task name -> priority, for the tasks whose priority is not 0."""
        return {n: f.priority for n, f in self.facts.items() if f.priority}

    def _uniform(self, state: Any) -> dict[str, NodeView]:
        """Group nodes when every task is in ``state`` (not "failed", whose node lists the
        errors): no counting per group."""
        done, priority = state in TERMINAL, self._group_priority
        return {
            g: NodeView(g, state, priority[g], counter=f"{b - a if done else 0}/{b - a}")
            for g, a, b in self._slices
        }

    def nodes(self, state: RunState) -> dict[str, NodeView]:
        """Current node views for ``state`` (group nodes when grouped)."""
        records = state.tasks
        if self.grouped:
            if state.finished_t is not None and len(records) == len(self._members):
                # A finished run with every task in one state (most often: all succeeded)
                # needs no look at its records: its counts are known (shared with the header).
                per_state = counts_of(state)
                if len(per_state) == 1:
                    only, n = next(iter(per_state.items()))
                    if n == len(records) and only != "failed":
                        return self._uniform(only)
            found = list(map(records.get, self._members))
            priority = self._group_priority
            if any(map(is_, found, repeat(None))):  # identity: no __eq__ calls
                return {g: group_node(g, found[a:b], priority[g]) for g, a, b in self._slices}
            # The states as drawn: "partial" for a fan-out task with failed elements allowed.
            shown: Any = shown_state if state.fan_out and partial_count(state) else _STATE
            states = list(map(shown, found))
            first = states[0] if states else None
            if first is not None and first != "failed" and states.count(first) == len(states):
                return self._uniform(first)
            return {
                g: group_node(g, found[a:b], priority[g], True, states[a:b])
                for g, a, b in self._slices
            }
        now = now_t(state)
        facts = self.facts
        if state.progress:  # some task reported its progress
            nodes = {
                n: node_view(n, r, facts[n], now, progress_of(state, r) if r else None)
                for n in self.names
                for r in (records.get(n),)
            }
        else:
            nodes = {n: node_view(n, records.get(n), facts[n], now) for n in self.names}
        if state.waiting or state.iterations or state.children:
            annotate(nodes, state)
        return nodes


def annotate(nodes: dict[str, NodeView], state: RunState) -> None:
    """Say on their nodes where tasks that wait for signals, loop or run a subflow are:
    ``waiting for 'approved'``, ``iteration 7``, the child run's ``done/total``."""
    records = state.tasks
    for name, waits_for in list(state.waiting.items()):
        node, record = nodes.get(name), records.get(name)
        if node is not None and record is not None and record.state == "queued":
            nodes[name] = dataclasses.replace(
                node, state="waiting", note=f"waiting for {waits_for}"
            )
    for name, iteration in list(state.iterations.items()):
        node = nodes.get(name)
        if node is not None:
            nodes[name] = dataclasses.replace(node, counter=f"iteration {iteration}")
    for name, runs in list(state.children.items()):
        node, child = nodes.get(name), runs[-1] if runs else None
        if node is not None and child is not None and child.tasks:
            done = sum(n for k, n in counts_of(child).items() if k in TERMINAL)
            nodes[name] = dataclasses.replace(
                node,
                counter=node.counter or f"{done}/{len(child.tasks)}",
                note=f"child run {child.run_id[:8]} of flow {child.flow!r}: {child.status.value}",
            )


def gantt_rows(state: RunState) -> list[dict[str, Any]]:
    """The state's attempt rows as :func:`~nbflow.render.gantt_svg` input (run-clock seconds).

    One row per attempt (per fan-out element attempt, labelled ``task[i]``); an open attempt
    has ``end=None`` and is drawn up to now.
    """
    return [
        {
            "task": r.task,
            "attempt": r.attempt,
            "status": r.status,
            "start": r.start,
            "end": r.end,
            "duration_s": None if r.end is None else r.end - r.start,
            "worker": r.worker,
            "error": r.error,
        }
        for r in list(state.rows)  # a copy: a run in another thread may append meanwhile
    ]
