"""Run variables: which a flow's plan needs, which it can read, and what each task sees.

A flow's parameters that name no task are filled from the run's variables or their defaults.
:func:`check_inputs` checks them before any task runs (a missing one, a misspelled one, a
fan-out source that is no collection); :func:`readable_variables` is every name something
in the plan can read; :func:`task_variables` is what a task's conditions see as ``vars``.
Each table is worked out once per :class:`~nbflow.graph.Plan` and kept in it
(``plan.table``): a flow runs the same plan many times, and these run before every run.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import mapping
from .conditions import constant_key
from .element_keys import Keys
from .errors import MissingInputError, UnknownVariableError, closest
from .spec import parameters

if TYPE_CHECKING:
    from .graph import Plan


def check_inputs(plan: Plan, variables: Mapping[str, Any]) -> None:
    """Check that every non-task parameter has a run variable or a default, and that no run
    variable is a misspelling of one that something reads.

    Raises:
        MissingInputError: names the task, the parameter, and a close task name if any.
        UnknownVariableError: a variable nothing reads is a close match of one that a task
            parameter, a condition or a template reads (``mdoe`` for ``mode``).
        FanOutError: a run variable that a fan-out maps over is not a collection, or (when
            all of a fan-out's sources are run variables) a zip of unequal lengths or a
            ``key=`` that is not unique (see :func:`check_variable_sources`).
    """
    for name in plan.with_free_params():  # not every task: this runs before every run
        for param in plan.free_params[name]:
            if not param.has_default and param.name not in variables and param.name != "worker":
                raise MissingInputError(name, param.name, plan.names)
    for name in plan.table("variable_fan_outs", lambda: _variable_fan_outs(plan)):
        check_variable_sources(plan, name, variables)
    readable = plan.table("readable_variables", lambda: _readable_variables(plan))
    if readable is None:
        return  # some condition reads variables by computed names: any name may be read
    for variable in variables:
        if variable not in readable:
            suggestion = closest(str(variable), readable)
            if suggestion is not None:
                raise UnknownVariableError(str(variable), suggestion)


def readable_variables(plan: Plan) -> frozenset[str] | None:
    """Every run variable something in ``plan`` can read (None: any name may be read), made
    once per plan (see :func:`_readable_variables`)."""
    return plan.table("readable_variables", lambda: _readable_variables(plan))


def _variable_fan_outs(plan: Plan) -> tuple[str, ...]:
    """Fan-out tasks that map over a run variable (or a parameter's default)."""
    found = []
    for name in plan.names:
        fan_out = plan.specs[name].fan_out
        if fan_out is not None and any(s not in plan.specs for _, s in mapping.pairs(fan_out)):
            found.append(name)
    return tuple(found)


def check_variable_sources(plan: Plan, name: str, variables: Mapping[str, Any]) -> None:
    """Check the run-variable sources of fan-out task ``name`` before any task runs: each
    must be a collection (:func:`~nbflow.mapping.check_source`); when every source is one,
    the elements are known now, so a zip of unequal lengths and a duplicate ``key=`` are
    refused now too.

    Raises:
        FanOutError: as above (:class:`~nbflow.errors.DuplicateKeyError` for a key).
    """
    spec = plan.specs[name]
    fan_out = spec.fan_out
    assert fan_out is not None
    given = task_variables(plan, name, variables)
    pairs = mapping.pairs(fan_out)
    lists = []
    for _, source in pairs:
        if source in plan.specs:
            continue
        value = given[source]  # check_inputs made sure it is there
        mapping.check_source(name, fan_out, source, value, "run variable")
        lists.append(list(value))
    if len(lists) < len(pairs):
        return  # some source is a task: its elements are known when it has run
    elements = mapping.combine_lists(fan_out, name, lists)
    if spec.key is not None or spec.key_fn is not None:
        keys = Keys(name, spec.key, spec.key_fn, tuple(p for p, _ in pairs))
        for index, values in enumerate(elements):
            keys.key(index, values)


def _readable_variables(plan: Plan) -> frozenset[str] | None:
    """Every run variable something in ``plan`` can read: task parameters that are no task,
    and ``vars['name']`` in conditions. None when a condition uses ``vars`` otherwise (a
    computed key, the whole mapping) or a callable gate gets them: then any name may be read.
    """
    names = {p.name for task in plan.with_free_params() for p in plan.free_params[task]}
    for gates in plan.gates.values():
        for gate in gates:
            if gate.condition is None:
                return None
            keys = variable_keys(gate.condition.tree)
            if keys is None:
                return None
            names |= keys
    return frozenset(names)


def variable_keys(tree: ast.AST) -> set[str] | None:
    """The constant keys a condition reads as ``vars['key']`` (None: it also uses ``vars``
    another way, so it may read any variable)."""
    keys: set[str] = set()
    keyed: set[int] = set()
    for node in ast.walk(tree):
        key = constant_key(node, "vars")
        if key is not None:
            keys.add(key)
            keyed.add(id(node.value))  # type: ignore[attr-defined]  # a Subscript's
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "vars" and id(node) not in keyed:
            return None
    return keys


def task_variables(plan: Plan, name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """What a condition of task ``name`` sees as ``vars``: the run's variables over the
    defaults of the task's own parameters (``def publish(joined, mode="full")`` reads
    ``vars['mode']`` as ``"full"`` unless the run says otherwise)."""
    defaults = plan.table("defaults", lambda: _defaults(plan)).get(name)
    return {**defaults, **variables} if defaults else dict(variables)


def _defaults(plan: Plan) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name in plan.with_free_params():
        free = {p.name for p in plan.free_params[name] if p.has_default}
        if free:
            found[name] = {
                param: default
                for param, _, default in parameters(plan.funcs[name])
                if param in free
            }
    return found
