"""Chaining: a finished run of one flow starts a run of another, when a condition holds.

::

    chain = flow_b.trigger_after(
        flow_a,
        when="status == 'succeeded' and results['count'] > 10",
        variables={"count": "${results.count}", "source": "${run_id}"},
    )

The chain subscribes to A's events and folds each run into a
:class:`~nbflow.state.RunState` (the same reducer a :class:`~nbflow.run.Run` reads). When a
run of A finishes, ``when`` is evaluated safely (simpleeval, as task conditions) with the
names ``status``, ``results``, ``vars``, ``run_id`` and ``flow``; if true, a run of B starts
in the background of the same event loop, with ``variables`` resolved as templates against
A's run (``${results.count}``, ``${vars.region}``, ``${run_id}``). B's run records
``parent_run`` = A's run id, so history and the dashboard show them linked.

Every finished run of A leaves a :class:`Trigger` in ``chain.triggers``: fired or not, and
why. Simulated runs (``simulate=True``) are what-ifs and trigger nothing. A ``when`` that
fails to evaluate is logged and does not start B. A pinned ``version`` refuses to start B
when B's ``flow_version`` has changed since. A cycle of chains (A -> B -> A) is refused
when the second link is made, with the cycle named.

The chained run lives on the loop A finished on: in Jupyter the kernel's loop. In a script,
``flow_a.run()`` closes its own loop when A ends, which would cancel B: there, run A with
``await flow_a.arun()`` inside your ``asyncio.run(main())`` and ``await chain.wait()``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import events as ev
from .clock import SIMULATION_EPOCH
from .conditions import parse_condition
from .errors import ConditionError, CycleError, DefinitionError, describe
from .handle import RunHandle
from .health import tracking
from .run import Run
from .runtime import keep_alive
from .state import RunState

if TYPE_CHECKING:
    from .flow import Flow

log = logging.getLogger("nbflow.chaining")

#: Names a chain's ``when`` and ``variables`` templates can read.
CHAIN_NAMES: tuple[str, ...] = ("status", "results", "vars", "run_id", "flow")

_chains: weakref.WeakSet[Chain] = weakref.WeakSet()


class ChainCycleError(CycleError):
    """Chains of flows form a cycle; ``cycle`` holds the flow names, first and last the same."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = list(cycle)
        DefinitionError.__init__(
            self,
            f"chains of flows form a cycle: {' -> '.join(self.cycle)}; each run would start "
            "the next forever. Remove one trigger_after (chain.remove())",
        )


class ChainVersionError(DefinitionError):
    """The downstream flow's ``flow_version`` is not the one the chain pins."""

    def __init__(self, flow: str, pinned: str, current: str) -> None:
        self.flow, self.pinned, self.current = flow, pinned, current
        super().__init__(
            f"chain pins flow {flow!r} at version {pinned!r} but its definition is now "
            f"{current!r}; re-pin (version={current!r}) or restore the pinned definition"
        )


@dataclass(frozen=True, slots=True)
class Trigger:
    """What a chain did when a run of its upstream flow finished."""

    upstream_run: str
    status: str
    fired: bool
    reason: str
    handle: RunHandle | None = None


class Chain:
    """A link "when a run of ``upstream`` finishes, maybe start a run of ``downstream``".

    Made by ``downstream.trigger_after(upstream, ...)``; see the module docstring.
    ``triggers`` lists one :class:`Trigger` per finished upstream run.
    """

    def __init__(
        self,
        upstream: Flow,
        downstream: Flow,
        when: str | None,
        variables: Mapping[str, Any] | None,
        version: str | None,
    ) -> None:
        from .data.templates import compile_value

        self.upstream, self.downstream = upstream, downstream
        self.when, self.version = when, version
        self.variables = dict(variables or {})
        self.label = f"chain {upstream.name}->{downstream.name}"
        self._condition = None
        if when is not None:
            condition = parse_condition(self.label, when)
            unknown = sorted(condition.names - set(CHAIN_NAMES) - {"True", "False", "None"})
            if unknown:
                raise ConditionError(
                    self.label,
                    when,
                    f"unknown name {unknown[0]!r}; a chain condition can use "
                    f"{', '.join(CHAIN_NAMES)}",
                )
            self._condition = condition
        self._templates = compile_value(self.variables, "variables", roots=CHAIN_NAMES)
        self.triggers: list[Trigger] = []
        self._live: dict[str, RunState] = {}
        self._unsubscribe = upstream.subscribe(self._on_event)

    # -- public ------------------------------------------------------------------------------

    @property
    def handles(self) -> list[RunHandle]:
        """Handles of the downstream runs this chain started, oldest first."""
        return [t.handle for t in self.triggers if t.handle is not None]

    @property
    def runs(self) -> list[Run]:
        """The downstream runs this chain started (live while they run)."""
        return [h.run for h in self.handles]

    async def wait(self) -> list[Run]:
        """Wait until every downstream run started so far has finished; return them."""
        return [await handle for handle in self.handles]

    def remove(self) -> None:
        """Stop listening to the upstream flow; runs already started go on."""
        self._unsubscribe()
        _chains.discard(self)

    def __repr__(self) -> str:
        fired = sum(t.fired for t in self.triggers)
        when = f" when={self.when!r}" if self.when else ""
        return (
            f"<Chain {self.upstream.name!r} -> {self.downstream.name!r}{when} "
            f"fired={fired}/{len(self.triggers)}>"
        )

    # -- events ------------------------------------------------------------------------------

    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            if event.wall_start == SIMULATION_EPOCH:
                return  # simulated runs are what-ifs: they start nothing real
            self._live[event.run_id] = RunState()
        state = self._live.get(event.run_id)
        if state is None:
            return
        state.apply(event)
        if isinstance(event, ev.RunFinished):
            del self._live[event.run_id]
            self.triggers.append(self._decide(state))

    def _decide(self, state: RunState) -> Trigger:
        run_id, status = state.run_id, state.status.value
        names = {
            "status": status,
            "results": Run(state).results,
            "vars": dict(state.variables),
            "run_id": run_id,
            "flow": state.flow,
        }
        if self._condition is not None:
            try:
                passed = self._condition.evaluate_names(names)
            except Exception as error:
                log.error(
                    "%s: condition %r failed on run %s: %s", self.label, self.when, run_id, error
                )
                return Trigger(run_id, status, False, f"condition error: {error}")
            if not passed:
                return Trigger(run_id, status, False, "condition is false")
        elif status != "succeeded":
            return Trigger(run_id, status, False, f"upstream run {status} (no condition given)")
        try:
            self._check_version()
            variables = self._templates.resolve(names)
            handle = _start(self.downstream, variables, parent_run=run_id)
        except Exception as error:
            log.error(
                "%s: not starting %r after run %s: %s",
                self.label,
                self.downstream.name,
                run_id,
                error,
            )
            return Trigger(run_id, status, False, describe(error))
        return Trigger(run_id, status, True, "started", handle)

    def _check_version(self) -> None:
        if self.version is not None:
            current = self.downstream.flow_version
            if current != self.version:
                raise ChainVersionError(self.downstream.name, self.version, current)


def _start(flow: Flow, variables: dict[str, Any], *, parent_run: str) -> RunHandle:
    """Start a run of ``flow`` on the running loop, linked to ``parent_run``."""
    loop = asyncio.get_running_loop()
    engine, run = flow._engine(variables, None, None, None, None, parent_run=parent_run)

    async def execute() -> Run:
        with tracking(engine), flow.observing(engine, False):
            await engine.run()
        return run

    task = loop.create_task(execute(), name=f"nbflow-chain-{flow.name}-{uuid.uuid4().hex[:6]}")
    keep_alive(task)
    return RunHandle(engine, run, task=task)


def trigger_after(
    downstream: Flow,
    upstream: Flow,
    *,
    when: str | None = None,
    variables: Mapping[str, Any] | None = None,
    version: str | None = None,
) -> Chain:
    """Start a run of ``downstream`` each time a run of ``upstream`` finishes and ``when`` holds.

    ``when`` is an expression over ``status``, ``results``, ``vars``, ``run_id`` and ``flow``;
    without it, B starts after each *successful* run of A. ``variables`` are B's run
    variables; string values are templates over the same names (``${results.count}``).
    ``version`` pins B's ``flow_version``: B is not started once its definition changed.
    Chaining the same two flows again replaces the earlier chain (re-running a cell).

    Raises:
        ChainCycleError: the chain would close a cycle (the message names it: ``a -> b -> a``).
        ConditionError: ``when`` does not parse or uses an unknown name.
        TemplateSyntaxError: a variable template is malformed.
        ChainVersionError: ``version`` is not ``downstream``'s current version.
    """
    for chain in list(_chains):
        if chain.upstream is upstream and chain.downstream is downstream:
            chain.remove()
    path = _path(downstream, upstream)
    if path is not None:
        raise ChainCycleError([upstream.name, *(f.name for f in path)])
    chain = Chain(upstream, downstream, when, variables, version)
    try:
        chain._check_version()
    except ChainVersionError:
        chain.remove()
        raise
    _chains.add(chain)
    return chain


def _path(start: Flow, goal: Flow) -> list[Flow] | None:
    """Flows from ``start`` to ``goal`` along existing chains (both ends included), or None."""
    if start is goal:
        return [start]
    stack: list[list[Flow]] = [[start]]
    seen = {id(start)}
    while stack:
        trail = stack.pop()
        for chain in list(_chains):
            if chain.upstream is not trail[-1] or id(chain.downstream) in seen:
                continue
            if chain.downstream is goal:
                return [*trail, goal]
            seen.add(id(chain.downstream))
            stack.append([*trail, chain.downstream])
    return None
