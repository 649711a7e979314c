"""Which runner runs each task that is not one call of its function, for the engine.

Most tasks are one call (:func:`~nbflow.attempts.run_attempts`, or the short path
:func:`~nbflow.attempts.run_plain`). The others have a runner of their own, found in one
dict lookup per task: a fan-out task (:func:`~nbflow.mapped.run_fan_out`: one element per
item) and a loop (:func:`~nbflow.iterations.run_loop`: one iteration after another). A
subflow task is one call, of a function that runs its child run (:mod:`nbflow.children`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .iterations import run_loop
from .mapped import run_fan_out

if TYPE_CHECKING:
    from .engine import Engine
    from .graph import Plan

#: ``await runner(engine, name, kwargs, worker)``: the task's outcome.
Runner = Callable[["Engine", str, dict[str, Any], Any], Awaitable[Any]]


def special_tasks(plan: Plan) -> dict[str, Runner]:
    """The tasks of ``plan`` that have a runner of their own, and that runner."""
    found: dict[str, Runner] = {}
    for name in plan.names:
        spec = plan.specs[name]
        if spec.fan_out:
            found[name] = _fan_out
        elif spec.max_iterations is not None:
            found[name] = run_loop
    return found


async def _fan_out(engine: Engine, name: str, kwargs: dict[str, Any], worker: Any) -> Any:
    return await run_fan_out(engine, name, kwargs)  # elements take their own workers
