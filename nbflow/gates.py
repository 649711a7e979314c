"""Gates: what decides whether a task runs at all (its ``when=``, the branches it is in).

A gate is a :class:`~nbflow.graph.Gate`: a parsed condition string (evaluated safely, see
:mod:`nbflow.conditions`) or a callable ``when=`` given a :class:`GateContext`. Conditions and
sync callables are decided as the task is placed; an ``async def`` callable is awaited as the
task's first step. A gate that is false skips the task; one that fails (raises, or is a sync
callable that returned an awaitable) fails it with a :class:`~nbflow.errors.ConditionError`.
"""

from __future__ import annotations

import ast
import inspect
from typing import Any

from . import mapping
from .errors import ConditionError, describe
from .graph import Gate, Plan
from .loops import parse_until


class GateContext:
    """What a callable ``when=`` receives: upstream ``results``, run ``vars`` (with the
    task's parameter defaults under them), the ``task``'s name."""

    __slots__ = ("results", "task", "vars")

    def __init__(self, task: str, results: dict[str, Any], variables: dict[str, Any]) -> None:
        self.task, self.results, self.vars = task, results, variables

    def __getitem__(self, name: str) -> Any:
        return self.results[name]


def evaluate(gate: Gate, name: str, results: dict[str, Any], variables: dict[str, Any]) -> bool:
    """Whether ``gate`` lets task ``name`` run (a sync gate).

    Raises:
        ConditionError: the condition failed, or a sync callable returned an awaitable.
    """
    if gate.condition is not None:
        passed = gate.condition.evaluate(results, variables)
    else:
        assert gate.callable is not None
        try:
            value = gate.callable(GateContext(name, results, variables))
        except Exception as error:
            raise condition_error(name, gate.callable, error) from error
        if inspect.isawaitable(value):
            # Not an `async def` (that is awaited), but it returned an awaitable: its truth
            # value would be that of the awaitable, always true. Say so instead.
            if inspect.iscoroutine(value):
                value.close()
            raise ConditionError(
                name,
                repr(gate.callable),
                "it returned an awaitable, which a condition cannot wait for here; define it "
                "with `async def` so that nbflow awaits it",
            )
        passed = bool(value)
    return not passed if gate.negate else passed


def condition_error(name: str, fn: Any, error: BaseException) -> ConditionError:
    """The error of a callable gate of task ``name`` that raised ``error``."""
    return ConditionError(name, repr(fn), describe(error))


def is_async(fn: Any) -> bool:
    """Whether ``fn`` (a function or a callable object) is to be awaited."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        inspect.getattr_static(type(fn), "__call__", None)
    )


def awaits(gates: tuple[Gate, ...]) -> bool:
    """Whether some gate is an async callable (awaited when its task is placed)."""
    return any(g.callable is not None and is_async(g.callable) for g in gates)


def needs_local(plan: Plan) -> frozenset[str]:
    """Tasks whose results the kernel reads itself, so a remote executor must fetch them.

    A condition string reads the tasks it names (all upstream ones if it uses ``results`` as a
    whole), a callable gate may read any upstream result; a fan-out enumerates its source; the
    cache stores a cached task's result and keys it on its inputs.
    """
    names: set[str] = set()
    for name in plan.names:
        spec = plan.specs[name]
        for gate in plan.gates[name]:
            condition = gate.condition
            if condition is None or reads_all_results(condition.tree):
                names.update(plan.upstream[name])
            else:
                names.update(condition.referenced_tasks(plan.upstream[name]))
        if spec.fan_out is not None:
            names.update(s for _, s in mapping.pairs(spec.fan_out) if s in plan.specs)
        if spec.cache:
            names.add(name)
            names.update(dep for _, dep in plan.data_params[name])
        if spec.max_iterations is not None:  # its until= reads each iteration's result,
            names.add(name)  # and the upstream results it names (a callable: any of them)
            if spec.until is None:
                names.update(plan.upstream[name])
            else:
                condition = parse_until(name, spec.until)
                if reads_all_results(condition.tree):
                    names.update(plan.upstream[name])
                else:
                    names.update(condition.referenced_tasks(plan.upstream[name]))
    return frozenset(names)


def reads_all_results(tree: ast.AST) -> bool:
    """Whether a condition uses ``results`` other than as ``results['<constant>']``."""
    keyed = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
    }
    return any(
        isinstance(node, ast.Name) and node.id == "results" and id(node) not in keyed
        for node in ast.walk(tree)
    )
