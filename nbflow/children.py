"""Running a subflow task: a child run inside the task's attempt (see :mod:`nbflow.subflows`).

The child run is made by the child flow itself (its plan checked, its store, its version)
with ``parent_run`` set to the parent's run id, and awaited inside the subflow task's
attempt, on the parent's loop: so everything that ends an attempt ends the child run too
(a cancel of the task or of the run, Kernel -> Interrupt, the task's ``timeout=``), and the
task's ``retry=`` and ``flow.loop`` start new child runs. It holds no slot of the parent (its
tasks take the child's own), like a fan-out task.

What the child gets: as run variables, the parent's variables it reads and what the task's
parameters received (renamed by ``as_task(inputs=...)``); the executor the parent was given
(a Dask executor, the simulated clock's), else its own; on the simulated clock, the same
virtual time and no store; and the parent's signals (:mod:`nbflow.waits`). What the parent
gets: a ``SubflowStarted`` event (the dashboard nests the child's live state under the task)
and, as the task's result, the child's ``results`` dict; a child run that does not succeed
fails the task with a :class:`SubflowError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import events as ev
from .context import current
from .errors import NbflowError, describe
from .subflows import Subflow, planned_subflows
from .variables import readable_variables

if TYPE_CHECKING:
    from .engine import Engine
    from .graph import Plan


class SubflowError(NbflowError, RuntimeError):
    """A subflow task's child run did not succeed, or would go deeper than ``max_depth``."""


def run_funcs(plan: Plan) -> dict[str, Callable[..., Any]]:
    """What the engine calls for each task: its function, or for a subflow task a function
    that runs the child run (``plan.funcs`` itself when the plan has none)."""
    subflows = planned_subflows(plan)
    if not subflows:
        return plan.funcs
    return {**plan.funcs, **{n: _runner(f) for n, f in subflows.items()}}


def kernel_tasks(plan: Plan) -> frozenset[str]:
    """Tasks whose calls stay in the kernel whatever the executor: subflows (their child
    run's tasks go to the executor)."""
    return frozenset(planned_subflows(plan))


def _runner(subflow: Subflow) -> Callable[..., Awaitable[Any]]:
    async def run_child(**kwargs: Any) -> Any:
        found = current.get()
        assert found is not None, "a subflow runs inside an attempt of its task"
        engine, task = found[0], found[1]
        return await start_child(engine, task, subflow, kwargs)

    run_child.__name__ = run_child.__qualname__ = subflow.flow.name
    return run_child


async def start_child(parent: Engine, task: str, subflow: Subflow, kwargs: dict[str, Any]) -> Any:
    """Run one child run of ``subflow`` for ``task`` of ``parent``'s run; its results.

    Raises:
        SubflowError: the child run failed or was cancelled on its own, or it would be
            nested deeper than the task's ``max_depth``.
        DefinitionError: the child flow's definition or inputs are invalid.
    """
    flow: Any = subflow.flow
    lineage = (*parent.lineage, parent.plan.flow_name)
    if subflow.max_depth is not None and len(lineage) > subflow.max_depth:
        raise SubflowError(
            f"task {task!r}: subflow {flow.name!r} would run at depth {len(lineage)}, past "
            f"its max_depth={subflow.max_depth} ({' -> '.join([*lineage, flow.name])}); the "
            "recursion did not end by itself (its when= or trigger) before the limit"
        )
    plan = flow.plan()
    readable = readable_variables(plan)
    given = {**parent.variables, **subflow.variables(kwargs)}
    variables = given if readable is None else {k: v for k, v in given.items() if k in readable}
    origin = parent.wall_start  # a fixed wall clock: the simulated one
    simulated = origin is not None
    engine, run = flow._engine(
        variables, None, None, None,
        None if parent._owns_executor else parent.executor,
        wall_start=origin + (parent._clock() - parent._t0) if origin is not None else None,
        parent_run=parent.run_id,
        record=not simulated,
    )  # fmt: skip
    engine.lineage = lineage
    waits = parent.waits
    if waits is not None and engine.waits is not None:
        sender = f"parent run {parent.run_id[:8]}"
        engine.inherited = [
            (signal, value, sender)
            for signal, (_, value) in sorted(waits.box.items(), key=lambda item: item[1][0])
            if signal in engine.waits.known
        ]
        waits.children.append(engine)
    parent._emit(ev.SubflowStarted, task, engine.run_id, flow.name, run.state)
    try:
        await flow._execute(engine, run, False, child=True)
    finally:
        if waits is not None and engine in waits.children:
            waits.children.remove(engine)
    if run.status != "succeeded":
        failed = next(iter(run.errors.items()), None)
        why = f"task {failed[0]!r}: {describe(failed[1])}" if failed else run.state.error or ""
        error = SubflowError(
            f"task {task!r}: subflow {flow.name!r} (run {run.run_id[:8]}) ended "
            f"{run.status}" + (f"; {why}" if why else "")
        )
        if failed is not None:
            raise error from failed[1]
        raise error
    return dict(run.results)
