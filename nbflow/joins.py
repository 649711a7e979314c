"""Partial joins: ``trigger=nf.at_least(n)``, ``cancel_rest=True`` and ``complete_when=``.

A join is a task with several upstream tasks. The trigger rules of :mod:`nbflow.scheduler`
join on all of them (``all_success``...) or on the first (``one_success``); these join on
some:

- ``trigger=nf.at_least(n)``: the task is queued as soon as ``n`` of its upstream tasks
  succeeded (the N-of-M join). Its upstream tasks that have not finished by then pass
  ``None``, as a skipped one does. Once fewer than ``n`` can still succeed, it ends
  ``upstream_failed`` if one of them failed, else ``skipped``, at once (as ``all_success``
  decides at the first upstream that did not succeed). ``at_least(1)`` is ``one_success``.
- ``cancel_rest=True`` (with ``at_least(n)`` or ``one_success``): when the join fires, the
  upstream work that no other task still needs is cancelled at that moment (see
  :func:`rest_of`), each such task ending ``cancelled`` and propagating like a skip.
- ``complete_when="succeeded >= 3"`` on a fan-out task: a safe expression over ``done``,
  ``succeeded``, ``failed`` and ``total`` (its elements), evaluated as each element ends.
  When it holds, no further element starts and the task succeeds with the results of the
  elements that succeeded; its dependants start at once. The elements in flight run to
  their end (their results come too late to count), or, with ``cancel_rest=True``, are
  cancelled at that moment. See :mod:`nbflow.completion`.

Everything here is definition-time data and pure functions: the trigger's text, the checks
that refuse a bad join before any task runs, and the set of tasks a firing join cancels.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from .conditions import Condition, parse_condition
from .errors import ConditionError, DefinitionError, closest

#: The names a ``complete_when`` expression can use.
COMPLETION_NAMES = ("done", "succeeded", "failed", "total")
_AT_LEAST = re.compile(r"at_least\((.*)\)")
_TRIGGER = operator.attrgetter("trigger")


def at_least(n: int) -> str:
    """The trigger rule of an N-of-M join: run once ``n`` upstream tasks succeeded.

    ``@flow.task(trigger=nf.at_least(2))``. The rule is the text ``"at_least(2)"``, which is
    also what a flow document (YAML) writes. ``n`` is checked when the task is defined, so
    the error names the task.
    """
    return f"at_least({n!r})"


def quorum(rule: str) -> int | None:
    """``n`` of an ``at_least(n)`` rule (None for the other rules). Assumes a checked rule."""
    if rule.startswith("at_least("):
        return int(rule[9:-1])
    return None


def check_trigger(rule: str, known: Collection[str]) -> str:
    """``rule`` if it is one of ``known`` or a valid ``at_least(n)``.

    Raises:
        ValueError: neither (the message says what is allowed; pydantic names the field and
            the DSL the task).
    """
    if rule in known:
        return rule
    match = _AT_LEAST.fullmatch(rule)
    if match is None:
        raise ValueError(
            f"unknown trigger rule {rule!r}: it must be one of {', '.join(map(repr, known))} "
            "or at_least(n) (nf.at_least(n))"
        )
    text = match.group(1)
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        raise ValueError(
            f"{rule}: n must be a whole number of at least 1 (how many upstream tasks must "
            "succeed before the task runs); for a task that runs whatever happened use "
            "trigger='all_done'"
        )
    return f"at_least({int(text)})"


def check_join(task: str, options: Any) -> None:
    """The rules between the join options of ``task`` (its ``TaskOptions``).

    Raises:
        DefinitionError: ``complete_when`` without ``fan_out``, or ``cancel_rest`` on a task
            that is no partial join (the message names the task and says how to fix it).
        ConditionError: ``complete_when`` does not parse or uses an unknown name.
    """
    trigger, complete_when = options.trigger, options.complete_when
    if complete_when is not None and options.fan_out is None:
        raise DefinitionError(
            f"task {task!r} complete_when={complete_when!r} needs fan_out='<parameter>': it "
            "counts the task's fan-out elements; for a join of several upstream tasks use "
            "trigger=nf.at_least(n)"
        )
    if options.cancel_rest and complete_when is None and not partial(trigger):
        raise DefinitionError(
            f"task {task!r} cancel_rest=True cancels what a join no longer needs once it "
            "fires, so it needs trigger=nf.at_least(n) or trigger='one_success' (its trigger "
            f"is {trigger!r}), or complete_when= on a fan-out task"
        )
    if complete_when is not None:
        parse_complete_when(task, complete_when)


def partial(trigger: str) -> bool:
    """Whether ``trigger`` may fire before every upstream task ended (a partial join)."""
    return trigger == "one_success" or trigger.startswith("at_least(")


def parse_complete_when(task: str, expression: str) -> Condition:
    """Parse a ``complete_when`` expression of ``task``, checking every name it uses.

    Raises:
        ConditionError: it does not parse, uses a forbidden construct, or a name other than
            done, succeeded, failed and total (with a close match when there is one).
    """
    try:
        condition = parse_condition(task, expression)
    except ConditionError as error:
        raise ConditionError(task, error.expression, error.reason, field="complete_when") from None
    unknown = sorted(condition.names - set(COMPLETION_NAMES))
    if unknown:
        hint = closest(unknown[0], COMPLETION_NAMES)
        reason = f"unknown name {unknown[0]!r}" + (f" (did you mean {hint!r}?)" if hint else "")
        raise ConditionError(
            task,
            expression,
            f"{reason}; complete_when counts the task's fan-out elements and can use "
            f"{', '.join(COMPLETION_NAMES)}",
            field="complete_when",
        )
    return condition


def gate_readers(
    names: Iterable[str],
    specs: Mapping[str, Any],
    upstream: Mapping[str, tuple[str, ...]],
    data_params: Mapping[str, tuple[tuple[str, str], ...]],
) -> dict[str, frozenset[str]]:
    """The upstream tasks of each partial join (``one_success``, ``at_least(n)``) that are
    upstream only because a gate reads them (its ``when=``, or a branch or switch it is in).

    They must end before the join runs, as its gate needs them, but they do not vote: a
    3-of-5 join whose ``when=`` reads ``mode`` still waits for 3 of its 5 (Airflow would
    count the branch task's success as one). A join with no other upstream task counts them
    (there is nothing else to count). See ``scheduler.complete``.
    """
    found: dict[str, frozenset[str]] = {}
    for name in names:
        spec = specs[name]
        if upstream[name] and partial(spec.trigger):
            declared = {dep for _, dep in data_params[name]}.union(spec.after)
            readers = frozenset(upstream[name]).difference(declared)
            if readers and len(readers) < len(upstream[name]):  # (none else: they vote)
                found[name] = readers
    return found


def check_plan(
    names: Iterable[str],
    specs: Mapping[str, Any],
    upstream: Mapping[str, tuple[str, ...]],
    data_params: Mapping[str, tuple[tuple[str, str], ...]],
) -> None:
    """Refuse an ``at_least(n)`` join with fewer than ``n`` upstream tasks that vote (it could
    never run; tasks its gates read do not vote, see :func:`gate_readers`).

    Raises:
        DefinitionError: names the task, its upstream tasks and the fix.
    """
    names = tuple(names)
    triggers = list(map(_TRIGGER, map(specs.__getitem__, names)))  # in C: this runs per plan
    if triggers.count("all_success") == len(names):
        return
    readers = gate_readers(names, specs, upstream, data_params)
    for name, trigger in zip(names, triggers, strict=True):
        n = quorum(trigger)
        read = readers.get(name, frozenset())
        have = [u for u in upstream[name] if u not in read]
        if n is not None and len(have) < n:
            listed = f" ({', '.join(have)})" if have else ""
            also = (
                f"; {', '.join(sorted(read))} only read by its gates (when=, a branch or "
                "switch), which do not count"
                if read
                else ""
            )
            raise DefinitionError(
                f"task {name!r} trigger=at_least({n}) waits for {n} upstream successes but "
                f"has {len(have)} upstream task{'s' if len(have) != 1 else ''}{listed}{also}; "
                "lower n, or add upstream tasks (parameters named after them, or after=[...])"
            )


def rest_of(
    join: str,
    upstream: Mapping[str, tuple[str, ...]],
    downstream: Mapping[str, tuple[str, ...]],
    finished: Callable[[str], bool],
    decided: Callable[[str], bool],
) -> list[str]:
    """The upstream work of ``join`` that nobody else still needs, as it fires.

    A task is in the rest when it has not finished and every task downstream of it is the
    join, another task of the rest, or a task that is already decided (queued, running or
    finished: its inputs no longer wait for this one). So a branch is cancelled whole,
    back to where it meets work that something else still needs. Ancestors are visited
    downstream first (each after all of its dependants among them), ``join``'s own
    upstream tasks first of all.

    Returned in that order; ``finished(task)`` and ``decided(task)`` read the run's state.
    """
    ancestors: list[str] = []  # post-order of a DFS up the graph: each after its upstream
    seen = {join}
    stack: list[tuple[str, int]] = [(join, 0)]
    while stack:
        node, position = stack.pop()
        parents = upstream[node]
        if position < len(parents):
            stack.append((node, position + 1))
            parent = parents[position]
            if parent not in seen and not finished(parent):
                seen.add(parent)
                stack.append((parent, 0))
        elif node != join:
            ancestors.append(node)
    rest: set[str] = set()
    order: list[str] = []
    for task in reversed(ancestors):  # dependants before their upstream tasks
        if all(d == join or d in rest or decided(d) for d in downstream[task]):
            rest.add(task)
            order.append(task)
    return order
