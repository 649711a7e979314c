"""From a flow definition to a validated dependency graph and an execution plan.

:func:`build_plan` resolves every dependency (parameter names that name tasks, ``after=``,
task names read by conditions and branches) and raises every definition error before anything
runs: :class:`CycleError` naming the cycle,
:class:`MissingDependencyError` with the closest name, :class:`ConditionError` for names a
condition cannot see. Then :func:`nbflow.variables.check_inputs` checks, at each run, that run
variables or defaults supply every parameter that is not a task.

The :class:`Plan` is plain data (tuples and dicts keyed by task name) so the engine's hot path
never touches networkx. Validation is O(tasks + edges) on those tuples (Kahn's algorithm finds
cycles); ``plan.graph``, a :class:`networkx.DiGraph` for graph algorithms, is built on first
use, because at 100,000 tasks its node and edge dicts cost more memory than the rest of the
plan.
"""

from __future__ import annotations

import operator
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import mapping
from .collector import paused_gc
from .conditions import Condition, parse_condition
from .errors import CycleError, DefinitionError, MissingDependencyError
from .identity import identity_options
from .joins import check_plan as check_joins
from .loops import PREVIOUS, check_until_names, parse_until
from .signals import check_choices, check_wait_for
from .spec import ParamSpec, TaskSpec

if TYPE_CHECKING:
    import networkx as nx

    from .dsl import Definition

T = TypeVar("T")


#: The spec fields :func:`~nbflow.identity.identity_options` reads.
_IDENTITY_FIELDS = (
    "fan_out",
    "allow_partial",
    "when_fn",
    "cache_key",
    "retry",
    "cache_ignore",
    "complete_when",
    "cancel_rest",
    "until_fn",
    "until",
    "max_iterations",
)


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
    #: The hash of the definition (names, options, dependencies, each task's own code): the
    #: flow's version is worked out from it and the tasks' identities at each run.
    spec_version: str
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
    _graph: nx.DiGraph | None = field(default=None, repr=False)
    #: Tables derived from the plan by its readers (the scheduler's trigger needs...), made
    #: on first use and kept with it: a flow runs the same plan many times.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def table(self, key: Any, make: Callable[[], T]) -> T:
        """``memo[key]``, made by ``make()`` the first time: what depends only on the plan
        (a reader's per-task table) is worked out once, however many runs use the plan."""
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = make()
        return found

    @property
    def graph(self) -> nx.DiGraph:
        """The dependency graph (edges upstream -> task; node attribute ``spec``), built once."""
        if self._graph is None:
            self._graph = _digraph(self.names, self.specs, self.upstream)
        return self._graph

    def roots(self) -> list[str]:
        """Tasks with no upstream, in definition order (shared: do not change the list)."""
        return self.table("roots", lambda: [n for n in self.names if not self.upstream[n]])

    def identity_calls(self) -> list[tuple[Callable[..., Any], tuple[tuple[str, Any], ...]]]:
        """``(function, options)`` of each task, for :meth:`Identities.tasks
        <nbflow.identity.Identities.tasks>`: tasks with equal options share one tuple, which
        is then hashed once."""

        def make() -> list[tuple[Callable[..., Any], tuple[tuple[str, Any], ...]]]:
            # Tasks defined with the same options hold the very same option values: by
            # their ids (the specs hold them, so they stay theirs), one tuple for them all.
            shared: dict[tuple[int, ...], tuple[tuple[str, Any], ...]] = {}
            calls = []
            for name in self.names:
                spec = self.specs[name]
                values = spec.__dict__
                key = tuple(map(id, map(values.__getitem__, _IDENTITY_FIELDS)))
                options = shared.get(key)
                if options is None:
                    options = shared[key] = identity_options(spec)
                calls.append((self.funcs[name], options))
            return calls

        return self.table("identity_calls", make)

    def with_free_params(self) -> list[str]:
        """Tasks with a parameter that is no task's name (a run variable, a default, the
        worker), in definition order; few in most flows (shared: do not change the list)."""
        return self.table("free", lambda: [n for n, p in self.free_params.items() if p])


def _digraph(
    names: tuple[str, ...], specs: Mapping[str, TaskSpec], upstream: Mapping[str, Any]
) -> nx.DiGraph:
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from((n, {"spec": specs[n]}) for n in names)
    graph.add_edges_from((dep, n) for n in names for dep in upstream[n])
    return graph


def _check_acyclic(
    names: tuple[str, ...],
    downstream: Mapping[str, Any],
    upstream: Mapping[str, Any],
    specs: Mapping[str, TaskSpec],
) -> None:
    """Raise :class:`CycleError` if the dependencies have a cycle (O(V+E)).

    Usually every task depends only on tasks defined before it, which proves there is no
    cycle in one look at each edge; otherwise Kahn's algorithm decides. Only when there is
    a cycle does networkx look for it, so the cycle named is the one it finds.
    """
    position = dict(zip(names, range(len(names)), strict=True))
    where = position.__getitem__
    if all(max(map(where, deps)) < where(n) for n, deps in upstream.items() if deps):
        return
    pending = {n: len(upstream[n]) for n in names}
    ready = [n for n, count in pending.items() if not count]
    done = 0
    while ready:
        name = ready.pop()
        done += 1
        for child in downstream.get(name, ()):
            pending[child] -= 1
            if not pending[child]:
                ready.append(child)
    if done < len(names):
        import networkx as nx

        cycle = [u for u, _ in nx.find_cycle(_digraph(names, specs, upstream))]
        raise CycleError([*cycle, cycle[0]])


_consume: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend  # runs an iterator out, in C
_name = operator.attrgetter("_name")
_param_name = operator.attrgetter("name")
_spec = operator.attrgetter("_spec")
_fn = operator.attrgetter("fn")


def _more(
    extra: dict[str, dict[str, None]], upstream: dict[str, Any], name: str
) -> dict[str, None]:
    """The ordered set of ``name``'s upstream tasks, started from its data dependencies."""
    found = extra.get(name)
    if found is None:
        found = extra[name] = dict.fromkeys(upstream.get(name, ()))
    return found


def _add_sources(
    fan_out: Any,
    name: str,
    known: set[str],
    data: list[tuple[str, str]],
    free: list[ParamSpec],
    pair_of: Callable[[str], tuple[str, str]],
) -> None:
    """Add the sources of ``name``'s renamed element parameters to its inputs: a task's
    result as a data input named after the task, a run variable as a free one (the
    fan-out reads both by the source's name, see :mod:`nbflow.mapped`)."""
    have = {p for p, _ in data} | {p.name for p in free}
    for param, source in mapping.pairs(fan_out):
        if param == source or source in have:
            continue
        have.add(source)
        if source in known and source != name:
            data.append(pair_of(source))
        else:
            free.append(ParamSpec(name=source, has_default=False, kind="keyword_only"))


def build_plan(definition: Definition) -> Plan:
    """Resolve and validate ``definition`` into a :class:`Plan`.

    Raises:
        MissingDependencyError: an ``after=`` or branch entry names no task.
        ConditionError: a condition uses a name that is neither an upstream task nor
            ``results``/``vars``.
        CycleError: the dependencies form a cycle (its message shows it: ``a -> b -> a``).
        DefinitionError: an ``at_least(n)`` join has fewer than n upstream tasks.
    """
    with paused_gc():  # a few containers per task, no garbage: no collections
        return _build_plan(definition)


def _build_plan(definition: Definition) -> Plan:
    tasks = definition._built_tasks()  # in definition order, specs built
    names = tuple(map(_name, tasks))
    known = set(names)
    specs = dict(zip(names, map(_spec, tasks), strict=True))
    # Tables hold () for most tasks (no upstream, no gates...): they start as that, in C,
    # and the loop below writes only what a task has. An ordered set of upstream tasks is
    # built only for tasks with more than data parameters (after=, conditions, branches).
    upstream: dict[str, tuple[str, ...]] = dict.fromkeys(names, ())
    data_params: dict[str, tuple[tuple[str, str], ...]] = dict.fromkeys(names, ())
    free_params: dict[str, tuple[ParamSpec, ...]] = dict.fromkeys(names, ())
    extra: dict[str, dict[str, None]] = {}
    gates: dict[str, list[Gate]] = {}
    waiting = False  # some task waits for signals
    # One (parameter, task) tuple per task name, shared by all its readers; made in C.
    pair_of = dict(zip(names, zip(names, names, strict=True), strict=True)).__getitem__

    for task in tasks:
        name, condition = task._name, task.condition
        values = task._spec.__dict__  # the fields, without attribute lookups
        params = values["params"]
        fan_out = values["fan_out"]
        # Element parameters named freely (fan_out={"repo": "repos"}) are filled by the
        # fan-out, never a dependency; their sources are (below).
        elements = mapping.renamed(fan_out)
        if params:
            param_names = tuple(map(_param_name, params))
            if known.issuperset(param_names) and name not in param_names and not elements:
                # Every parameter names another task (the usual case; a fan-in of 10,000
                # parameters too): all in C.
                data_params[name] = tuple(map(pair_of, param_names))
                upstream[name] = param_names
            else:
                data: list[tuple[str, str]] = []
                free: list[ParamSpec] = []
                for param, param_name in zip(params, param_names, strict=True):
                    if param_name in elements:
                        continue
                    if param_name in known and param_name != name:
                        data.append(pair_of(param_name))
                    else:
                        free.append(param)
                if elements:
                    _add_sources(fan_out, name, known, data, free, pair_of)
                if data:
                    data_params[name] = tuple(data)
                    upstream[name] = tuple([p for p, _ in data])
                if free:
                    free_params[name] = tuple(free)
        for dep in values["after"]:
            if dep not in known:
                raise MissingDependencyError(name, dep, known - {name}, field="after")
            _more(extra, upstream, name)[dep] = None
        if values["wait_for"] is not None or values["max_iterations"] is not None:
            _own_inputs(name, values, known, free_params)
            waiting = waiting or values["wait_for"] is not None
        if condition is not None:
            # sorted: a set's order differs between processes, the plan's must not
            for dep in sorted(condition.referenced_tasks(known)):
                if dep != name:
                    _more(extra, upstream, name)[dep] = None
            gates.setdefault(name, []).append(Gate(condition))
        if values["when_fn"] is not None:
            gates.setdefault(name, []).append(Gate(None, callable=values["when_fn"]))

    for switch in definition.switches.values():  # its branches follow; it names the case
        switch.check(known)
    for branch in definition.branches.values():
        condition = parse_condition(branch.name, branch.expression)
        readers = condition.referenced_tasks(known)
        for negate, group in ((False, branch.then), (True, branch.otherwise)):
            for member in group:
                if member not in known:
                    raise MissingDependencyError(branch.name, member, known, field="branch")
                if member in readers:
                    raise DefinitionError(
                        f"branch {branch.name!r}: its condition {branch.expression!r} reads "
                        f"{member!r}, which it also gates (in "
                        f"{'otherwise' if negate else 'then'}): a task cannot be gated by "
                        "its own result; branch on a task upstream of it"
                    )
                for dep in sorted(readers - {member}):  # sorted, as above
                    _more(extra, upstream, member)[dep] = None
                gates.setdefault(member, []).append(
                    Gate(condition, negate=negate, branch=branch.name)
                )
    for name, ordered in extra.items():
        upstream[name] = tuple(ordered)

    # Conditions may only read tasks that are upstream (now that all edges are known).
    for name, task_gates in gates.items():
        for gate in task_gates:
            if gate.condition is not None:
                gate.condition.check_names(upstream[name], known)
    if waiting:
        check_choices(specs.values())
    for task in tasks:
        until = task._options.until
        if until is not None:
            check_until_names(parse_until(task._name, until), upstream[task._name])

    # Each edge appends the task to its upstream's list: in C (map over the upstream names),
    # since a flow of 100,000 tasks has a few hundred thousand edges.
    downstream_lists: defaultdict[str, list[str]] = defaultdict(list)
    list_of = downstream_lists.__getitem__
    for name, deps in upstream.items():
        if deps:
            _consume(map(operator.methodcaller("append", name), map(list_of, deps)))
    _check_acyclic(names, downstream_lists, upstream, specs)
    check_joins(names, specs, upstream, data_params)
    downstream: dict[str, tuple[str, ...]] = dict.fromkeys(names, ())
    downstream.update(zip(downstream_lists, map(tuple, downstream_lists.values()), strict=True))
    gate_table: dict[str, tuple[Gate, ...]] = dict.fromkeys(names, ())
    gate_table.update(zip(gates, map(tuple, gates.values()), strict=True))
    plan = Plan(
        flow_name=definition.name,
        spec_version=definition._version(tasks),
        names=names,
        specs=specs,
        funcs=dict(zip(names, map(_fn, tasks), strict=True)),
        upstream=upstream,
        downstream=downstream,
        data_params=data_params,
        free_params=free_params,
        gates=gate_table,
    )
    plan.identity_calls()  # definition-time work: each run only reads the values
    return plan


def _own_inputs(
    name: str,
    values: dict[str, Any],
    known: set[str],
    free_params: dict[str, tuple[ParamSpec, ...]],
) -> None:
    """Take the parameters the engine fills itself out of a task's free parameters: the
    signals it waits for (:mod:`nbflow.signals`) and a loop's ``previous``.

    Raises:
        DefinitionError: a signal named like a task (see
            :func:`~nbflow.signals.check_wait_for`).
    """
    own: set[str] = set()
    wait = values["wait_for"]
    if wait is not None:
        check_wait_for(name, wait, None, known)  # its parameters: checked by the DSL
        own.update(wait.signals)
    if values["max_iterations"] is not None:
        own.add(PREVIOUS)
    free_params[name] = tuple(p for p in free_params[name] if p.name not in own)
