"""Running a loop task: its iterations, each a timeline row (see :mod:`nbflow.loops`).

Each iteration is a run of the task's attempts (retried by its policy, bounded by its
timeout), given the iteration before's result as ``previous``. The first iteration's
attempts are plain ``TaskStarted`` rows named after the task; the next ones are
``IterationStarted`` rows ``task#2``, ``task#3``..., and the node shows ``iteration N``.
Between two iterations ``IterationEnded`` closes the row; the last iteration ends the task
(``TaskSucceeded`` with its result, which the store keeps), or its failure does, or
reaching ``max_iterations`` without ``until`` holding (a :class:`~nbflow.loops.LoopError`
on the last row).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from . import events as ev
from .attempts import run_attempts, upstream_results
from .errors import ConditionError, describe
from .errors import format_exception as format_error
from .lifecycle import TaskState
from .loops import PREVIOUS, LoopContext, LoopError, parse_until
from .variables import task_variables

if TYPE_CHECKING:
    from .engine import Engine

S = TaskState


async def run_loop(engine: Engine, name: str, kwargs: dict[str, Any], worker: str | None) -> S:
    """Run loop task ``name``'s iterations to the end; emit its events; its outcome."""
    plan = engine.plan
    spec = plan.specs[name]
    limit = spec.max_iterations
    assert limit is not None
    # Its parameter `previous`: given from the second iteration on, and the first time too
    # (None) when it has no default (the first iteration has no result before it).
    param = plan.table(
        ("previous_param", name), lambda: next((p for p in spec.params if p.name == PREVIOUS), None)
    )
    previous: Any = None
    for iteration in range(1, limit + 1):
        give = param is not None and (iteration > 1 or not param.has_default)
        inputs = {**kwargs, PREVIOUS: previous} if give else kwargs
        ok, outcome = await run_attempts(engine, name, inputs, worker, None, iteration)
        if not ok:
            return S.FAILED  # its TaskFailed is out
        value, where = outcome
        attempt = engine.state.tasks[name].attempts
        try:
            done = await _holds(engine, name, value, iteration, previous)
        except Exception as error:
            engine._emit(ev.TaskFailed, name, attempt, error, format_error(error))
            return S.FAILED
        if done:
            if engine._keep is not None:
                pending = engine._keep(name, attempt, value)  # the store's snapshot
                if pending is not None:
                    await pending
            engine._emit(ev.TaskSucceeded, name, attempt, value, None, False, *where)
            return S.SUCCEEDED
        if iteration == limit:
            shown = repr(spec.until) if spec.until is not None else repr(spec.until_fn)
            failure = LoopError(name, shown, limit, value)
            engine._emit(ev.TaskFailed, name, attempt, failure, format_error(failure), None, *where)
            return S.FAILED
        engine._emit(ev.IterationEnded, name, attempt, iteration, *where)
        previous = value
    raise AssertionError("unreachable: the last iteration returns")  # pragma: no cover


async def _holds(engine: Engine, name: str, result: Any, iteration: int, previous: Any) -> bool:
    """Whether loop ``name``'s ``until`` holds after ``iteration`` gave ``result``.

    Raises:
        ConditionError: the expression or the callable failed (field ``until``).
    """
    plan = engine.plan
    spec = plan.specs[name]
    results = upstream_results(engine, name)
    variables = task_variables(plan, name, engine.variables)
    if spec.until is not None:
        expression = spec.until
        condition = plan.table(("until", name), lambda: parse_until(name, expression))
        names: dict[str, Any] = {n: results[n] for n in condition.names if n in results}
        names.update(results=results, vars=variables, result=result, iteration=iteration,
                     previous=previous)  # fmt: skip
        try:
            return condition.evaluate_names(names)
        except ConditionError as error:
            raise ConditionError(name, error.expression, error.reason, field="until") from error
    fn = spec.until_fn
    assert fn is not None
    try:
        value = fn(LoopContext(name, result, iteration, previous, results, variables))
        if inspect.isawaitable(value):
            value = await value
    except Exception as error:
        raise ConditionError(name, repr(fn), describe(error), field="until") from error
    return bool(value)
