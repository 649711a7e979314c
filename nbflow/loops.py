"""Structured loops: ``@flow.loop(until=..., max_iterations=...)``, as definition-time data.

A loop task runs again and again, each iteration receiving the previous one's result as its
parameter ``previous`` (``None``, or the function's default, the first time), until its
``until`` condition holds on the iteration's result; the task's result is the last
iteration's. ``max_iterations`` bounds it: a loop that reaches it without ``until`` holding
fails, naming the task, the condition and the last result. A loop without a bound is refused
when it is defined.

``until`` is a safe expression (like ``when=``: parsed once, evaluated with the bounded
evaluator) over ``result`` (this iteration's result), ``iteration`` (1, 2, ...),
``previous`` (the iteration before's result), ``results`` / upstream task names and
``vars``; or a callable given a :class:`LoopContext`. What runs the iterations is
:mod:`nbflow.iterations`.
"""

from __future__ import annotations

from typing import Any

from .conditions import Condition, parse_condition
from .errors import ConditionError, DefinitionError, NbflowError, describe

#: The names an ``until`` expression can use besides upstream tasks, ``results`` and ``vars``.
LOOP_NAMES = ("result", "iteration", "previous")
#: The parameter that receives the previous iteration's result.
PREVIOUS = "previous"


class LoopError(NbflowError, RuntimeError):
    """A loop task reached ``max_iterations`` and its ``until`` still did not hold."""

    def __init__(self, task: str, until: str, max_iterations: int, last: Any) -> None:
        self.task, self.until, self.max_iterations, self.last = task, until, max_iterations, last
        try:
            shown = repr(last)
        except Exception as error:
            shown = f"<repr() raised {describe(error)}>"
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        super().__init__(
            f"task {task!r}: loop reached max_iterations={max_iterations} and until={until} "
            f"still does not hold; last result: {shown}. Raise max_iterations, or check that "
            "the loop can reach its condition"
        )


class LoopContext:
    """What a callable ``until=`` receives: this iteration's ``result``, its number
    (``iteration``, from 1), the ``previous`` result, upstream ``results``, run ``vars``."""

    __slots__ = ("iteration", "previous", "result", "results", "task", "vars")

    def __init__(
        self,
        task: str,
        result: Any,
        iteration: int,
        previous: Any,
        results: dict[str, Any],
        variables: dict[str, Any],
    ) -> None:
        self.task, self.result, self.iteration, self.previous = task, result, iteration, previous
        self.results, self.vars = results, variables


def check_loop(task: str, options: Any) -> None:
    """The rules of a loop task's options.

    Raises:
        DefinitionError: ``until`` without ``max_iterations`` (a loop without a bound) or
            the other way round, or a loop that is also a fan-out.
        ConditionError: the ``until`` string does not parse.
    """
    has_until = options.until is not None or options.until_fn is not None
    if has_until and options.max_iterations is None:
        raise DefinitionError(
            f"task {task!r} loops until {options.until or options.until_fn!r} but has no "
            "bound: give it max_iterations=N (the loop fails, naming the task, if the "
            "condition still does not hold after N iterations)"
        )
    if options.max_iterations is not None and not has_until:
        raise DefinitionError(
            f"task {task!r} max_iterations={options.max_iterations} needs until=... (the "
            "condition that ends the loop)"
        )
    if has_until and options.fan_out is not None:
        raise DefinitionError(
            f"task {task!r}: a loop cannot also be a fan-out (fan_out={options.fan_out!r}); "
            "loop a task that takes the whole list, or fan out over a loop's result"
        )
    if options.until is not None:
        parse_until(task, options.until)


def parse_until(task: str, expression: str) -> Condition:
    """Parse an ``until`` expression of ``task``.

    Raises:
        ConditionError: it does not parse or uses a forbidden construct (field ``until``).
    """
    try:
        return parse_condition(task, expression)
    except ConditionError as error:
        raise ConditionError(task, error.expression, error.reason, field="until") from None


def check_until_names(condition: Condition, upstream: tuple[str, ...]) -> None:
    """Refuse a name the ``until`` expression cannot see (checked with the plan).

    Raises:
        ConditionError: an unknown name (field ``until``), with what it can use.
    """
    try:
        condition.check_names((*upstream, *LOOP_NAMES))
    except ConditionError as error:
        raise ConditionError(
            condition.task, error.expression, error.reason, field="until"
        ) from None
