"""Safe ``when=`` conditions: parsed once at definition, evaluated with simpleeval.

A condition string is a Python expression over ``results`` (upstream results by task name),
``vars`` (run variables) and each upstream task's result by its bare name. It is parsed with
:mod:`ast` when the task is defined (a syntax error is a :class:`ConditionError` then), every
name is checked against what will exist, and it is evaluated by simpleeval with limits: no
``__import__``, no dunder or private attribute access, read-only method calls, bounded work and
memory (see :mod:`nbflow.evaluator`). Nothing here calls :func:`eval` or :func:`exec`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import simpleeval

from .errors import ConditionError, closest, describe
from .evaluator import BoundedEval, static_problem

#: Functions a condition may call: pure, cheap, and unable to reach the outside world.
SAFE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "sum": sum,
    "any": any,
    "all": all,
    "round": round,
    "sorted": sorted,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
}
RESERVED_NAMES = frozenset({"results", "vars", "True", "False", "None"})
#: The longest condition accepted, in characters (a condition is a line, not a program).
MAX_LENGTH = 10_000


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition string, with the task names it reads."""

    task: str
    expression: str
    tree: ast.Expression
    names: frozenset[str]
    #: task names read through ``results['name']`` with a constant key.
    result_keys: frozenset[str]

    def referenced_tasks(self, tasks: Iterable[str]) -> set[str]:
        """Task names this condition reads, as bare names or ``results[...]`` keys.

        ``tasks`` may be a set or dict of a flow's 100,000 names: it is not copied.
        """
        known = tasks if isinstance(tasks, set | frozenset | dict) else set(tasks)
        return {n for n in (self.names | self.result_keys) if n in known}

    def check_names(self, allowed: Iterable[str], tasks: Iterable[str] = ()) -> None:
        """Raise :class:`ConditionError` when the expression uses a name it cannot see, or
        reads ``results['name']`` of no task it can see (a task it reads that way is its
        upstream: what is not there is no task of the flow). ``tasks``: the flow's, for a
        close match to suggest."""
        allowed_set = set(allowed) | RESERVED_NAMES | set(SAFE_FUNCTIONS)
        missing = sorted(self.result_keys - set(allowed))
        if missing:
            close = closest(missing[0], tasks)
            hint = f"; did you mean {close!r}?" if close else ""
            raise ConditionError(
                self.task,
                self.expression,
                f"results[{missing[0]!r}] reads no task of this flow{hint}",
            )
        unknown = sorted(self.names - allowed_set)
        if unknown:
            visible = ", ".join(sorted(set(allowed) | {"results", "vars"}))
            raise ConditionError(
                self.task,
                self.expression,
                f"unknown name {unknown[0]!r}; a condition can use {visible} "
                "(read run variables as vars['name'])",
            )

    def evaluate(self, results: Mapping[str, Any], variables: Mapping[str, Any]) -> bool:
        """Evaluate against upstream ``results`` and run ``variables``.

        Raises:
            ConditionError: the expression failed at run time (bad key, forbidden construct).
        """
        names: dict[str, Any] = {"results": dict(results), "vars": _Variables(variables)}
        for name in self.names:
            if name in results and name not in names:
                names[name] = results[name]
        return self.evaluate_names(names)

    def evaluate_names(self, names: dict[str, Any]) -> bool:
        """Evaluate against an explicit namespace (chaining uses ``status``, ``run_id``...).

        Raises:
            ConditionError: the expression failed at run time.
        """
        return bool(self.value(names))

    def value(self, names: dict[str, Any]) -> Any:
        """The expression's value (not only its truth) in the namespace ``names``.

        Raises:
            ConditionError: the expression failed at run time.
        """
        evaluator = BoundedEval(names, SAFE_FUNCTIONS)
        try:
            return evaluator.eval(self.expression, previously_parsed=self.tree.body)
        except simpleeval.InvalidExpression as error:
            raise ConditionError(self.task, self.expression, str(error)) from None
        except _MissingVariable as missing:
            raise ConditionError(self.task, self.expression, missing.reason) from None
        except (RecursionError, MemoryError) as error:
            reason = f"{type(error).__name__} while evaluating: the expression is too deep or large"
            raise ConditionError(self.task, self.expression, reason) from None
        except Exception as error:  # a KeyError or TypeError inside the user's expression
            raise ConditionError(self.task, self.expression, describe(error)) from error


class _MissingVariable(KeyError):
    def __init__(self, name: Any) -> None:
        super().__init__(name)
        self.reason = (
            f"vars[{name!r}]: the run has no variable {name!r}; pass it "
            f"(flow.run(variables={{{name!r}: ...}})) or give a parameter {name!r} of a task "
            f"a default (read an optional one as vars.get({name!r}))"
        )


class _Variables(dict[str, Any]):
    """The run's variables as a condition reads them: a missing one says how to give it."""

    def __missing__(self, name: Any) -> Any:
        raise _MissingVariable(name)


def constant_key(node: ast.AST, mapping: str) -> str | None:
    """``"key"`` when ``node`` is ``mapping['key']`` (a constant string key), else None."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == mapping
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def parse_condition(task: str, expression: str) -> Condition:
    """Parse ``expression`` for ``task``; reject what simpleeval would refuse, up front.

    Raises:
        ConditionError: a syntax error, a statement, a dunder/private attribute, ``lambda``,
            a construct simpleeval does not evaluate, a mutating method (``data.clear()``),
            more than :data:`MAX_LENGTH` characters or too deep a nesting.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ConditionError(task, str(expression), "a condition must be a non-empty string")
    if len(expression) > MAX_LENGTH:
        reason = f"it is {len(expression):,} characters long; a condition may have {MAX_LENGTH:,}"
        raise ConditionError(task, expression, reason)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ConditionError(task, expression, f"syntax error: {error.msg}") from None
    except (RecursionError, MemoryError):  # Python's own parser gives up on deep nesting
        raise ConditionError(task, expression, "it is nested too deeply to parse") from None
    problem = static_problem(tree)
    if problem is not None:
        raise ConditionError(task, expression, problem)
    names: set[str] = set()
    result_keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
            if node.id.startswith("_"):
                raise ConditionError(task, expression, f"name {node.id!r} is not allowed")
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ConditionError(
                task, expression, f"access to private attribute {node.attr!r} is not allowed"
            )
        elif isinstance(node, ast.Lambda | ast.NamedExpr | ast.Await | ast.Yield | ast.YieldFrom):
            raise ConditionError(task, expression, f"{type(node).__name__.lower()} is not allowed")
        elif (key := constant_key(node, "results")) is not None:
            result_keys.add(key)
    # Comprehension variables are local names, not references to tasks or variables.
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            for target in ast.walk(node.target):
                if isinstance(target, ast.Name):
                    names.discard(target.id)
    names -= set(SAFE_FUNCTIONS)
    return Condition(task, expression, tree, frozenset(names), frozenset(result_keys))
