"""From a flow definition to a validated dependency graph and an execution plan.

:func:`build_plan` resolves every dependency (parameter names that name tasks, ``after=``,
task names read by conditions and branches), builds a :class:`networkx.DiGraph`, and raises
every definition error before anything runs: :class:`CycleError` naming the cycle,
:class:`MissingDependencyError` with the closest name, :class:`ConditionError` for names a
condition cannot see. :func:`check_inputs` then checks that run variables or defaults supply
every parameter that is not a task.

The :class:`Plan` is plain data (tuples and dicts keyed by task name) so the engine's hot path
never touches networkx.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .conditions import Condition, parse_condition
from .errors import CycleError, DefinitionError, MissingDependencyError, MissingInputError
from .spec import ParamSpec, TaskSpec

if TYPE_CHECKING:
    import networkx as nx

    from .dsl import Definition


@dataclass(frozen=True, slots=True)
class Gate:
    """One condition a task must pass to run: its own ``when`` or a branch it belongs to."""

    condition: Condition | None
    callable: Callable[..., Any] | None = None
    negate: bool = False
    branch: str | None = None


@dataclass(slots=True)
class Plan:
    """Everything the engine needs, precomputed; read-only during a run."""

    flow_name: str
    flow_version: str
    names: tuple[str, ...]
    specs: dict[str, TaskSpec]
    funcs: dict[str, Callable[..., Any]]
    upstream: dict[str, tuple[str, ...]]
    downstream: dict[str, tuple[str, ...]]
    #: (parameter, upstream task) pairs filled from results.
    data_params: dict[str, tuple[tuple[str, str], ...]]
    #: parameters filled from run variables or defaults.
    free_params: dict[str, tuple[ParamSpec, ...]]
    gates: dict[str, tuple[Gate, ...]]
    graph: nx.DiGraph = field(repr=False)

    def roots(self) -> list[str]:
        """Tasks with no upstream, in definition order."""
        return [n for n in self.names if not self.upstream[n]]


def build_plan(definition: Definition, flow_version: str | None = None) -> Plan:
    """Resolve and validate ``definition`` into a :class:`Plan`.

    Raises:
        MissingDependencyError: an ``after=`` or branch entry names no task.
        ConditionError: a condition uses a name that is neither an upstream task nor
            ``results``/``vars``.
        CycleError: the dependencies form a cycle (its message shows it: ``a -> b -> a``).
        DefinitionError: ``fan_out`` names a parameter that no upstream task fills.
    """
    import networkx as nx

    tasks = sorted(definition.tasks.values(), key=lambda t: t.spec.index)
    names = tuple(t.name for t in tasks)
    known = set(names)
    specs = {t.name: t.spec for t in tasks}
    upstream_sets: dict[str, dict[str, None]] = {n: {} for n in names}  # ordered sets
    data_params: dict[str, tuple[tuple[str, str], ...]] = {}
    free_params: dict[str, tuple[ParamSpec, ...]] = {}
    gates: dict[str, list[Gate]] = {n: [] for n in names}

    for task in tasks:
        name, spec = task.name, task.spec
        data, free = [], []
        for param in spec.params:
            if param.name in known and param.name != name:
                data.append((param.name, param.name))
                upstream_sets[name][param.name] = None
            else:
                free.append(param)
        data_params[name], free_params[name] = tuple(data), tuple(free)
        for dep in spec.after:
            if dep not in known:
                raise MissingDependencyError(name, dep, known - {name}, field="after")
            upstream_sets[name][dep] = None
        if spec.fan_out is not None and spec.fan_out not in dict(data):
            raise DefinitionError(
                f"task {name!r} fan_out={spec.fan_out!r}: that parameter must name an upstream "
                f"task whose result is iterable; tasks are {sorted(known - {name})}"
            )
        if task.condition is not None:
            for dep in task.condition.referenced_tasks(known - {name}):
                upstream_sets[name][dep] = None
            gates[name].append(Gate(task.condition))
        if spec.when_fn is not None:
            gates[name].append(Gate(None, callable=spec.when_fn))

    for branch in definition.branches.values():
        condition = parse_condition(branch.name, branch.expression)
        readers = condition.referenced_tasks(known)
        for negate, group in ((False, branch.then), (True, branch.otherwise)):
            for member in group:
                if member not in known:
                    raise MissingDependencyError(branch.name, member, known, field="branch")
                for dep in readers - {member}:
                    upstream_sets[member][dep] = None
                gates[member].append(Gate(condition, negate=negate, branch=branch.name))

    # Conditions may only read tasks that are upstream (now that all edges are known).
    for name in names:
        for gate in gates[name]:
            if gate.condition is not None:
                gate.condition.check_names(upstream_sets[name])

    graph = nx.DiGraph()
    graph.add_nodes_from((n, {"spec": specs[n]}) for n in names)
    graph.add_edges_from((dep, n) for n in names for dep in upstream_sets[n])
    if not nx.is_directed_acyclic_graph(graph):
        cycle = [u for u, _ in nx.find_cycle(graph)]
        raise CycleError([*cycle, cycle[0]])

    upstream = {n: tuple(upstream_sets[n]) for n in names}
    downstream_lists: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for dep in upstream[n]:
            downstream_lists[dep].append(n)
    return Plan(
        flow_name=definition.name,
        flow_version=flow_version or definition.spec().version(),
        names=names,
        specs=specs,
        funcs={t.name: t.fn for t in tasks},
        upstream=upstream,
        downstream={n: tuple(v) for n, v in downstream_lists.items()},
        data_params=data_params,
        free_params=free_params,
        gates={n: tuple(g) for n, g in gates.items()},
        graph=graph,
    )


def check_inputs(plan: Plan, variables: Mapping[str, Any]) -> None:
    """Check that every non-task parameter has a run variable or a default.

    Raises:
        MissingInputError: names the task, the parameter, and a close task name if any.
    """
    for name in plan.names:
        for param in plan.free_params[name]:
            if not param.has_default and param.name not in variables and param.name != "worker":
                raise MissingInputError(name, param.name, plan.names)
