"""Subflows: a :class:`~nbflow.flow.Flow` used as a task of another flow.

``flow.task(name="etl")(other_flow)`` makes ``other_flow`` a task of ``flow``: when it runs,
it starts a *child run* of ``other_flow`` (its ``parent_run`` is the parent's run id; the
store records it, the dashboard draws it nested under its task) and returns the child run's
``results`` dict. The child receives, as run variables, the parent's variables it reads and
what the subflow task's parameters receive: its parameters are the child's inputs (every
parameter of a child task that is no task of the child), so an input named like a task of
the parent receives that task's result, as any parameter does.
``other_flow.as_task(inputs={"n": "step"})`` renames: the child's ``n`` is the parent's
``step``.

A flow may contain itself (recursion), directly or through others, only with a depth limit
on the way: ``as_task(max_depth=N)``; a cycle of subflows without one is refused before any
task runs (:func:`check_cycles`). The child run is cancelled with its parent (it runs inside
the subflow task's attempt, so a cancel of that task, of the run or an interrupt reaches
it), retried with the task's ``retry=``, bounded by its ``timeout=``, and looped by
``flow.loop``. What runs it is :mod:`nbflow.children`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import DefinitionError
from .identity import IDENTITY_OF
from .loops import PREVIOUS
from .spec import introspect_params

if TYPE_CHECKING:
    from .dsl import Definition


class Subflow:
    """A flow standing as a task of another flow (see the module docstring).

    Args:
        flow: the child flow (a :class:`~nbflow.flow.Flow`).
        max_depth: the deepest nesting at which this task may start a child run (a run
            started by ``flow.run()`` is at depth 0, its children at 1...); None: no limit.
            A flow that contains itself needs one somewhere on the cycle.
        inputs: child input name -> the parameter of the subflow task that feeds it (a
            task name or a variable of the parent); unnamed inputs keep their names.

    Raises:
        DefinitionError: ``max_depth`` is not a positive int, or ``inputs`` names something
            the child does not read.
    """

    def __init__(
        self,
        flow: Definition,
        max_depth: int | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        if max_depth is not None and (type(max_depth) is not int or max_depth < 1):
            raise DefinitionError(
                f"subflow {flow.name!r}: max_depth must be a positive int (how deep the "
                f"recursion may go), got {max_depth!r}"
            )
        self.flow = flow
        self.max_depth = max_depth
        self.inputs = dict(inputs or {})
        free = child_inputs(flow)
        for child_name, parent_name in self.inputs.items():
            if child_name not in free:
                raise DefinitionError(
                    f"subflow {flow.name!r}: inputs={{{child_name!r}: {parent_name!r}}}, but no "
                    f"task of {flow.name!r} reads {child_name!r}; its inputs are {sorted(free)}"
                )
        self.__name__ = self.__qualname__ = flow.name
        self.__doc__ = f"a child run of flow {flow.name!r}"
        # What the identity walker hashes for this task (not the Flow object): the child's
        # version is added by Flow.identify.
        setattr(self, IDENTITY_OF, _child_run)

    @property
    def __signature__(self) -> inspect.Signature:
        """The child's inputs as keyword parameters (renamed by ``inputs``); those that every
        child task reading them gives a default have one here (the child's own applies)."""
        params = [
            inspect.Parameter(
                self.inputs.get(name, name),
                inspect.Parameter.KEYWORD_ONLY,
                default=None if optional else inspect.Parameter.empty,
            )
            for name, optional in sorted(child_inputs(self.flow).items())
        ]
        return inspect.Signature(params)

    def variables(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The child's names for what the task's parameters received (``given``)."""
        back = {parent: child for child, parent in self.inputs.items()}
        return {back.get(name, name): value for name, value in given.items()}

    async def __call__(self, **kwargs: Any) -> Any:
        raise DefinitionError(  # the engine runs a subflow task itself (nbflow.children)
            f"subflow {self.flow.name!r} runs as a task of a flow run; to run it alone, call "
            f"{self.flow.name}.run()"
        )

    def __repr__(self) -> str:
        depth = f" max_depth={self.max_depth}" if self.max_depth is not None else ""
        return f"<Subflow {self.flow.name!r}{depth}>"


def _child_run() -> None:
    """Stands for a subflow task's code in its identity (see ``Flow.identify``)."""


def child_inputs(flow: Definition, _path: set[int] | None = None) -> dict[str, bool]:
    """What ``flow`` reads from outside: each parameter of its tasks that names no task of
    it (nor a signal, nor a loop's ``previous``, nor ``worker``) -> whether every task that
    reads it gives it a default. A subflow task adds its child's inputs (a flow already on
    the way down, a recursion, adds nothing more)."""
    path = _path if _path is not None else set()
    path.add(id(flow))
    tasks = flow.tasks
    found: dict[str, bool] = {}
    for task in list(tasks.values()):
        options = task._options
        own = set(options.wait_for.signals) if options.wait_for is not None else set()
        if options.max_iterations is not None:
            own.add(PREVIOUS)
        fn = task.fn
        if isinstance(fn, Subflow):
            if id(fn.flow) in path:
                continue
            params = [
                (fn.inputs.get(name, name), optional)
                for name, optional in child_inputs(fn.flow, path).items()
            ]
        else:
            params = [(p.name, p.has_default) for p in introspect_params(fn)]
        for name, optional in params:
            if name in tasks or name in own or name == "worker":
                continue
            found[name] = found.get(name, True) and optional
    path.discard(id(flow))
    return found


def subflows_of(flow: Definition) -> dict[str, Subflow]:
    """The subflow tasks of ``flow``: task name -> :class:`Subflow`."""
    return {n: t.fn for n, t in flow.tasks.items() if isinstance(t.fn, Subflow)}


def planned_subflows(plan: Any) -> dict[str, Subflow]:
    """The subflow tasks of a plan (a :class:`~nbflow.graph.Plan`), worked out once per
    plan: task name -> :class:`Subflow`."""
    return plan.table(
        "subflow_tasks",
        lambda: {n: f for n, f in plan.funcs.items() if isinstance(f, Subflow)},
    )


def revisions(flow: Definition) -> tuple[int, ...]:
    """The revisions of every flow ``flow`` contains, depth first (each flow once): a plan
    of ``flow`` is valid until one of them changes."""
    found: list[int] = []
    seen = {id(flow)}
    stack = [flow]
    while stack:
        for sub in subflows_of(stack.pop()).values():
            if id(sub.flow) not in seen:
                seen.add(id(sub.flow))
                found.append(sub.flow.revision)
                stack.append(sub.flow)
    return tuple(found)


def check_cycles(flow: Definition) -> None:
    """Refuse a cycle of subflows (a flow containing itself) that no depth limit bounds.

    Raises:
        DefinitionError: names the cycle (``flow 'a' -> task 'b' (flow 'b') -> task 'a'
            (flow 'a')``) and the fix.
    """
    path: list[tuple[Definition, str, Subflow | None]] = [(flow, "", None)]

    def visit(current: Definition) -> None:
        for name, sub in subflows_of(current).items():
            on_path = [i for i, (f, _, _) in enumerate(path) if f is sub.flow]
            if on_path:
                cycle = [*path[on_path[0] + 1 :], (sub.flow, name, sub)]
                if all(s is not None and s.max_depth is None for _, _, s in cycle):
                    shown = " -> ".join(
                        [f"flow {path[on_path[0]][0].name!r}"]
                        + [f"task {t!r} (flow {f.name!r})" for f, t, _ in cycle]
                    )
                    raise DefinitionError(
                        f"subflows form a cycle without a depth limit: {shown}; the "
                        "recursion would never end. Give one subflow task on the cycle a "
                        f"limit: {current.name}.task(name={name!r})"
                        f"({sub.flow.name}.as_task(max_depth=N))"
                    )
                continue
            path.append((sub.flow, name, sub))
            visit(sub.flow)
            path.pop()

    visit(flow)
