"""Strategies decide which ready task starts next.

A strategy is any object with a ``name`` and a ``prepare(plan)`` method returning a key
function: ``key(task_name) -> sortable``. The engine calls the key once when a task becomes
ready and starts the ready task with the *smallest* key first. Optional attribute
``max_workers`` caps concurrency (``sequential`` sets it to 1).

Built in:

``priority`` (default)
    Higher ``priority`` first, then definition order. Each task's ``weight_rule`` picks its
    effective priority as in Apache Airflow: ``absolute`` (its own), ``downstream`` (its own
    plus all its descendants'), ``upstream`` (its own plus all its ancestors').
``fifo``
    The order in which tasks became ready; ties by definition order.
``critical_path``
    Longest remaining estimated path first: a task's estimate (``estimate=`` seconds, default
    1) plus the longest chain of estimates below it. Starting long chains early shortens the
    whole run.
``sequential``
    ``priority`` with one task at a time: a topological order, ties broken by higher priority,
    then definition order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from .errors import DefinitionError
from .graph import Plan

KeyFunction = Callable[[str], Any]


@runtime_checkable
class Strategy(Protocol):
    """What a strategy provides; see the module docstring."""

    name: str

    def prepare(self, plan: Plan) -> KeyFunction:
        """Precompute what the key needs for this run's plan; return the key function."""
        ...


def effective_priorities(plan: Plan) -> dict[str, int]:
    """Each task's priority after its ``weight_rule`` (Airflow's absolute/downstream/upstream)."""
    import networkx as nx

    own = {n: plan.specs[n].priority for n in plan.names}
    result = dict(own)
    for name in plan.names:
        rule = plan.specs[name].weight_rule
        if rule == "downstream":
            result[name] = own[name] + sum(own[d] for d in nx.descendants(plan.graph, name))
        elif rule == "upstream":
            result[name] = own[name] + sum(own[a] for a in nx.ancestors(plan.graph, name))
    return result


class PriorityStrategy:
    """Higher effective priority first, then definition order."""

    name = "priority"
    max_workers: int | None = None

    def prepare(self, plan: Plan) -> KeyFunction:
        """Key ``-effective priority * n_tasks + position``.

        ``position`` is the task's place in definition order (0 to ``n_tasks - 1``; not its
        spec's ``index``, which keeps growing as a notebook removes and adds tasks). So the
        key orders like the tuple ``(-priority, position)``, but an int compares several times
        faster in the ready heap, which every task goes through.
        """
        return plan.table("priority_keys", lambda: _priority_keys(plan))  # a plan is read-only

    def __repr__(self) -> str:
        return f"<strategy {self.name!r}>"


def _priority_keys(plan: Plan) -> KeyFunction:
    specs, names = plan.specs, plan.names
    n = len(names)
    if all(s.weight_rule == "absolute" for s in specs.values()):
        weights = {name: specs[name].priority for name in names}
    else:
        weights = effective_priorities(plan)
    keys = {name: -weights[name] * n + position for position, name in enumerate(names)}
    return keys.__getitem__


def prepare(plan: Plan, strategy: Any) -> None:
    """Work out ``strategy``'s order of ``plan`` now if it depends on the plan alone (the
    priority strategies', kept with the plan); the others order each run as it goes."""
    if isinstance(strategy, PriorityStrategy):
        strategy.prepare(plan)


class SequentialStrategy(PriorityStrategy):
    """One task at a time, in priority order among the ready ones."""

    name = "sequential"
    max_workers = 1


class FifoStrategy:
    """First ready, first started; ties by definition order."""

    name = "fifo"
    max_workers: int | None = None

    def prepare(self, plan: Plan) -> KeyFunction:
        """Key ``(arrival number, definition index)``."""
        counter = itertools.count()
        index = {n: s.index for n, s in plan.specs.items()}
        return lambda name: (next(counter), index[name])

    def __repr__(self) -> str:
        return f"<strategy {self.name!r}>"


class CriticalPathStrategy:
    """Longest remaining estimated path first; ties by priority, then definition order."""

    name = "critical_path"
    max_workers: int | None = None

    def prepare(self, plan: Plan) -> KeyFunction:
        """Key ``(-remaining path length, -priority, definition index)``."""
        lengths = remaining_path_lengths(plan)
        specs = plan.specs
        keys = {n: (-lengths[n], -specs[n].priority, specs[n].index) for n in plan.names}
        return keys.__getitem__

    def __repr__(self) -> str:
        return f"<strategy {self.name!r}>"


def remaining_path_lengths(plan: Plan) -> dict[str, float]:
    """For each task, its estimate plus the longest chain of estimates downstream of it."""
    lengths: dict[str, float] = {}
    import networkx as nx

    for name in reversed(list(nx.topological_sort(plan.graph))):
        below = max((lengths[d] for d in plan.downstream[name]), default=0.0)
        lengths[name] = (plan.specs[name].estimate or 1.0) + below
    return lengths


BUILTIN: dict[str, Callable[[], Any]] = {
    "priority": PriorityStrategy,
    "fifo": FifoStrategy,
    "critical_path": CriticalPathStrategy,
    "sequential": SequentialStrategy,
}


def resolve_strategy(value: str | Strategy | None) -> Any:
    """A strategy object from a name or an object.

    Raises:
        DefinitionError: an unknown name, or an object without ``prepare``.
    """
    if value is None:
        return PriorityStrategy()
    if isinstance(value, str):
        factory = BUILTIN.get(value)
        if factory is None:
            raise DefinitionError(
                f"unknown strategy {value!r}; use one of {sorted(BUILTIN)} or an object with "
                "prepare(plan) -> key function"
            )
        return factory()
    if not callable(getattr(value, "prepare", None)):
        raise DefinitionError(f"strategy {value!r} needs a prepare(plan) method returning a key")
    return value
