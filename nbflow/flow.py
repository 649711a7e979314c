"""``Flow``: the composition root that wires definition, plan, engine and observers.

``Flow`` inherits the DSL (:class:`~nbflow.dsl.Definition`: ``task``, ``branch``) and adds
what runs it: ``run`` (blocking, notebook-safe), ``arun`` (awaitable), ``start`` (background
handle), plus ``subscribe`` and ``use`` for observers and middleware.

Longer than 500 lines: it is the one composition root, a single class. ``run``, ``arun`` and
``start`` share the plan memo, the task identities kept between runs and the run options set
in ``Flow(...)`` through ``_engine``; the methods of flows as data, chaining and schedules
are a few lines each that hand the flow to their own modules. Split, the wiring would be
spread over modules that each need all of Flow's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import operator
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from . import health
from .checks import check_run
from .dsl import Definition
from .engine import Engine, prepare
from .events import Event, EventBus
from .graph import Plan, build_plan
from .handle import RunHandle
from .identity import (
    FlowIdentity,
    Identities,
    Identity,
    Part,
    flow_version,
    parts_digest,
    sha,
)
from .lines import LogCapture
from .lines import resolve as resolve_logs
from .locks import Locks, check_executor
from .logs import observing
from .pool import Pool
from .run import Run
from .runtime import run_blocking, running_loop
from .spec import OnError
from .strategies import prepare as prepare_order
from .strategies import resolve_strategy
from .streams import check_generators
from .subflows import check_cycles, planned_subflows, revisions, subflows_of
from .variables import check_inputs
from .waits import resumed


def _tell_interrupted(run: Run) -> None:
    """A short word, instead of a traceback, on a run that Kernel -> Interrupt cancelled."""
    counts = run.state.counts()
    finished = sum(counts.get(k, 0) for k in ("succeeded", "cached"))
    print(
        f"nbflow: run {run.run_id[:8]} of {run.flow!r} cancelled by an interrupt; "
        f"{finished} of {len(run.states)} tasks had finished. The run is flow.last_run.",
        file=sys.stderr,
    )


#: The flows being identified in this context, innermost last: a flow that contains itself
#: is identified once (its inner occurrences count by their definition's hash).
_identifying: contextvars.ContextVar[tuple[int, ...]] = contextvars.ContextVar(
    "nbflow_identifying", default=()
)


def _subflow_identity(own: Identity, sub: Any) -> Identity:
    """The identity of a subflow task: its options' (``own``), its depth limit and inputs,
    and its child flow's version as of now (the child's tasks, their code and what they
    depend on), so a change in the child re-runs the task on resume and misses the cache."""
    child = sub.flow
    if id(child) in _identifying.get():  # a recursion: the outer identification covers it
        version = "recursive:" + child.spec_version
    else:
        token = _identifying.set((*_identifying.get(), id(child)))
        try:
            version = child.identify().version
        finally:
            _identifying.reset(token)
    option_parts = tuple(p for p in own.parts if p.path.startswith("option "))
    parts = (
        Part(f"subflow {child.name}", sha("subflow", version), f"version {version[:8]}"),
        Part("option subflow", sha(repr(sub.max_depth), repr(sorted(sub.inputs.items()))),
             f"max_depth={sub.max_depth} inputs={sub.inputs}"),
        *option_parts,
    )  # fmt: skip
    bad = tuple(b for b in own.unhashable if b[0].startswith("option "))
    digest = None if bad else parts_digest(parts)
    return Identity(digest, parts, bad)


class Flow(Definition):
    """A named set of tasks and how to run them.

    Args:
        name: the flow's name (used in history, the store and the dashboard).
        max_workers: at most this many tasks in flight (None: no limit but the pool's).
        on_error: ``"stop"`` (first failure stops the run) or ``"continue"`` (only the
            failed task's dependants are affected).
        strategy: ``"priority"`` (default), ``"fifo"``, ``"critical_path"``,
            ``"sequential"`` or a custom strategy object.
        pool: an :class:`~nbflow.pool.Pool` of named workers.
        executor: where task functions run (default: the loop and a thread pool).
        store: where runs are recorded (history, resume, cache): ``"default"`` is the
            ``NBFLOW_STORE`` environment variable if set (``"none"`` for no store), else
            ``.nbflow/nbflow.db`` under the working directory at run time; or a path, a
            store object (:class:`~nbflow.store.sqlite.SQLiteStore`, ``MemoryStore``), or
            None for no store.
        logs: what tasks print and log, captured per attempt (``run.logs()``, the
            dashboard, the store): True (default), False (not captured), or an
            :class:`~nbflow.logs.LogCapture` (the cap, echo). ``nf.track`` and
            ``ctx.progress`` work either way.
        locks: the :class:`~nbflow.locks.Locks` table that ``lock=`` names refer to (None:
            the table of the loop each run runs on, shared by every run on that loop).

    Raises:
        DefinitionError: a bad option (the message names it).
        TypeError: ``logs`` is not True, False or a ``LogCapture``.
    """

    def __init__(
        self,
        name: str,
        *,
        max_workers: int | None = None,
        on_error: OnError = "stop",
        strategy: Any = "priority",
        pool: Pool | None = None,
        executor: Any = None,
        store: Any = "default",
        logs: bool | LogCapture = True,
        locks: Locks | None = None,
    ) -> None:
        super().__init__(name, max_workers=max_workers, on_error=on_error, strategy="priority")
        resolve_logs(logs)  # a bad value is an error now, not at the first run
        self.logs = logs
        self.strategy = resolve_strategy(strategy)
        self.pool = pool
        self.executor = executor
        self.store = store
        self.locks = locks
        self.middleware: list[Any] = []
        self.bus = EventBus()
        self._plan_cache: tuple[Any, Plan] | None = None
        # Task identities, remembered between runs of this flow (see nbflow.identity).
        self._identities = Identities()
        # The last version computed: (definition hash, task identities, version).
        self._last_version: tuple[str, list[Identity], str] | None = None
        #: The last run started by run(), arun() or start(), also when it was interrupted.
        self.last_run: Run | None = None

    # -- observers and extensions ------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event of every run of this flow.

        Returns a function that unsubscribes. A callback that raises is logged and ignored.
        """
        return self.bus.subscribe(callback)

    def use(self, middleware: Any) -> Any:
        """Add a middleware (``async def mw(ctx, call_next)``); the first added is outermost."""
        self.middleware.append(middleware)
        return middleware

    # -- planning ----------------------------------------------------------------------------

    def plan(self) -> Plan:
        """Validate the definition and return its execution plan (kept until it changes).

        The plan is kept for the definition's :attr:`revision`, which every task added,
        replaced or removed and every branch added moves on: a plan never outlives the
        functions it was made from.

        What every run reads that depends on the definition alone is worked out as the
        plan is made (definition time): the engine's tables of the plan and each task's
        identity (see :meth:`identify`). A run computes the identities again, as of its
        start, and finds those of an unchanged flow in a check of the objects they were
        made from.

        Raises:
            DefinitionError: the definition is invalid (its subclasses CycleError,
                MissingDependencyError and ConditionError say how).
        """
        cached = self._plan_cache
        if cached is None or cached[0] != self.revision:
            key: Any = self.revision
            subflows = subflows_of(self)
            if subflows:  # a plan is valid until this flow or one it contains changes
                key = (self.revision, revisions(self))
                if cached is not None and cached[0] == key:
                    return cached[1]
                for name in subflows:  # their parameters are their child's inputs: anew
                    self.tasks[name]._spec = None
            plan = build_plan(self)
            prepare(plan)
            prepare_order(plan, self.strategy)
            # Ahead of the runs, which compute identities again: what fails here fails
            # there (raised by the run), not in plan(), graph() or validate().
            with contextlib.suppress(Exception):
                self.identify(plan)
            cached = self._plan_cache = (key, plan)
        return cached[1]

    def identify(self, plan: Plan | None = None) -> FlowIdentity:
        """The flow's version and each task's identity, as of now (see :mod:`nbflow.identity`).

        Raises:
            DefinitionError: the definition is invalid.
        """
        plan = plan or self.plan()
        found = self._identities.tasks(plan.identity_calls())
        tasks = dict(zip(plan.names, found, strict=True))
        for name, sub in planned_subflows(plan).items():  # a subflow is what its child is
            tasks[name] = _subflow_identity(tasks[name], sub)
        spec = plan.spec_version + self._version_extra()
        found = list(tasks.values())
        last = self._last_version
        if (
            last is None
            or last[0] != spec
            or len(last[1]) != len(found)
            or not all(map(operator.is_, last[1], found))
        ):  # (an unchanged task comes back as the very same Identity: no new hash needed)
            last = self._last_version = (spec, found, flow_version(spec, tasks))
        return FlowIdentity(last[2], tasks)

    def _version_extra(self) -> str:
        """What else a subclass's version covers (a data flow's default variables)."""
        return ""

    def validate(self, variables: Mapping[str, Any] | None = None) -> Plan:
        """Raise every definition error now, as a run would before starting any task."""
        plan = self.plan()
        subflows = planned_subflows(plan)
        if subflows:
            check_cycles(self)
            for sub in subflows.values():  # a child's definition errors, now
                if isinstance(sub.flow, Flow):
                    sub.flow.plan()
        check_inputs(plan, dict(variables or {}))
        if self.pool is not None:
            for name in plan.names:
                self.pool.check_request(name, plan.specs[name].worker)
        return plan

    @property
    def flow_version(self) -> str:
        """Content hash of the definition and of everything its tasks depend on now: their
        code, defaults, closures, the globals and helpers they use (see :meth:`identify`)."""
        return self.identify().version

    def graph(self, run: Run | None = None) -> Any:
        """The flow's DAG as a ``graphviz.Digraph`` (Jupyter renders it by itself).

        Given a ``run``, nodes are coloured by that run's task states (same palette as the
        dashboard), with attempts, durations and fan-out counters; flows of over 300 tasks
        are drawn grouped. Rendering the Digraph needs Graphviz's ``dot``.

        Raises:
            DefinitionError: the definition is invalid (its subclasses CycleError,
                MissingDependencyError and ConditionError say how).
        """
        from .widgets.digraph import to_digraph
        from .widgets.views import Structure

        return to_digraph(Structure.from_plan(self.plan()), run.state if run else None)

    # -- durability (nbflow.store, nbflow.cache, nbflow.versions) ----------------------------

    def _durable(
        self,
        plan: Plan,
        identity: FlowIdentity,
        run_id: str,
        variables: dict[str, Any],
        resume: Any,
        executor: Any,
        parent_run: str | None,
    ) -> Any:
        from .cache import attach_store

        return attach_store(
            self.store,
            plan,
            identity,
            run_id,
            variables,
            resume=resume,
            spec=self.spec,
            executor=executor,
            parent_run=parent_run,
        )

    @property
    def state_store(self) -> Any:
        """The store this flow's runs are recorded in now (None: no store).

        Raises:
            StoreError: the store cannot be used (corrupted, locked, from a newer nbflow).
        """
        from .store import resolve_store

        return resolve_store(self.store)

    def versions(self) -> Any:
        """The recorded versions of this flow: a pandas DataFrame, oldest first.

        Columns: ``version``, ``created``, ``n_tasks``, ``runs``, ``last_run``, ``current``
        (whether it is the definition as it is now). See :func:`nbflow.diff_versions`.

        Raises:
            StoreError: the flow has no store, or it cannot be read.
        """
        from .versions import flow_versions

        return flow_versions(self)

    def _engine(
        self,
        variables: Mapping[str, Any] | None,
        strategy: Any,
        max_workers: int | None,
        on_error: OnError | None,
        executor: Any,
        wall_start: float | None = None,
        parent_run: str | None = None,
        resume: str | None = None,
        record: bool = True,
    ) -> tuple[Engine, Run]:
        values = dict(variables or {})
        plan = self.validate(values)
        chosen = resolve_strategy(strategy) if strategy is not None else self.strategy
        run_id = uuid.uuid4().hex
        executor = executor if executor is not None else self.executor
        check_executor(plan, executor)  # lock= needs the executor's locks off the kernel
        check_generators(plan, executor)  # generator tasks stream from the kernel only
        # What every task depends on, read now, as the run starts: a cell that changes a
        # global while the run goes on does not change this run's versions.
        identity = self.identify(plan)
        # Durability (nbflow.cache): the store's recorder sees each event first; the hooks
        # skip tasks that a resumed run or the cache has done already.
        durable = (
            self._durable(plan, identity, run_id, values, resume, executor, parent_run)
            if record
            else None
        )
        hooks = durable.hooks if durable is not None and durable.hooks.active else None
        engine = Engine(
            plan,
            flow_version=identity.version,
            run_id=run_id,
            variables=values,
            strategy=chosen,
            max_workers=max_workers if max_workers is not None else self.max_workers,
            on_error=on_error or self.on_error,
            bus=self.bus,
            journal=durable.recorder if durable is not None else None,
            pool=self.pool,
            executor=executor,
            middleware=self.middleware,
            wall_start=wall_start,
            parent_run=parent_run,
            hooks=hooks,
            locks=self.locks,
        )
        if engine.waits is not None and durable is not None:
            source = durable.recorder.context.resumed_from
            if source is not None:  # the signals of the run it resumes (nbflow.waits)
                engine.inherited = resumed(
                    engine.waits, durable.store.event_objects(source), source
                )
        run = Run(engine.state, plan, chosen, executor=engine.executor, durable=durable)
        return engine, run

    # -- running -----------------------------------------------------------------------------

    async def arun(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        strategy: Any = None,
        max_workers: int | None = None,
        on_error: OnError | None = None,
        executor: Any = None,
        show: bool = False,
        simulate: bool = False,
        resume: str | None = None,
    ) -> Run:
        """Run the flow on the current event loop and return the finished :class:`Run`.

        Definition errors are raised before any task runs. Cancelling the awaiting task
        cancels the run (its tasks end ``cancelled``) and re-raises ``CancelledError``.
        ``resume="last"`` or ``resume=run_id`` skips what that run of this flow already did
        (see :meth:`run`). Simulated runs are what-ifs: they are not recorded in the store.

        Raises:
            DefinitionError: a bad option or variable (as ``Flow()`` checks them).
            StoreError: the store cannot be used or ``resume`` names no run of this flow.
        """
        check_run(self, variables, max_workers=max_workers, on_error=on_error)
        if simulate:
            if resume is not None:
                raise ValueError("simulate=True runs are not recorded; resume= needs a real run")
            from .clock import simulate as on_virtual_clock

            simulated = await on_virtual_clock(
                lambda: self._simulated_run(variables, strategy, max_workers, on_error)
            )
            if show:  # the run took no real time: show its final state, from this thread
                self._show(simulated, None)
            return simulated
        engine, run = self._engine(
            variables, strategy, max_workers, on_error, executor, resume=resume
        )
        return await self._execute(engine, run, show)

    async def _execute(
        self,
        engine: Engine,
        run: Run,
        show: bool,
        observers: list[Any] | None = None,
        *,
        shown: bool | None = None,
        child: bool = False,
    ) -> Run:
        """Run ``engine`` (shown live if ``show``) and return its :class:`Run`.

        ``observers``: the run's dashboards, redrawn when the store could not record the
        run (which is known only after the run ended, when the store has answered).
        ``shown``: a dashboard shows the run (default: ``show``), so tasks' prints need no
        echo.
        ``child``: a subflow's run (nbflow.children), which is not ``last_run``.
        """
        if not child:
            self.last_run = run
        observers = [] if observers is None else observers
        if show:
            observers.append(self._show(run, engine))
        with health.tracking(engine), self.observing(engine, show if shown is None else shown):
            await engine.run()
        run.report()  # what the store could not record, as warnings of this cell
        if run.state.store_error is not None:
            for observer in observers:
                with contextlib.suppress(Exception):  # a widget never fails the run
                    observer.sync()
        return run

    async def _simulated_run(
        self, variables: Any, strategy: Any, max_workers: Any, on_error: Any
    ) -> Run:
        from .clock import SIMULATION_EPOCH, InlineExecutor

        engine, run = self._engine(
            variables,
            strategy,
            max_workers,
            on_error,
            InlineExecutor(),
            wall_start=SIMULATION_EPOCH,
            record=False,
        )
        with self.observing(engine, False):
            await engine.run()
        return run

    def observing(self, engine: Engine, shown: bool) -> Any:
        """The context in which ``engine`` runs: its tasks' logs and progress are captured
        (see :mod:`nbflow.logs`) as ``self.logs`` says; ``shown``: a dashboard shows the run.
        Enter it on the run's loop."""
        return observing(engine, self.logs, shown=shown)

    def run(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        strategy: Any = None,
        max_workers: int | None = None,
        on_error: OnError | None = None,
        executor: Any = None,
        show: bool = False,
        simulate: bool = False,
        resume: str | None = None,
    ) -> Run:
        """Run the flow to the end and return the :class:`Run`; blocks.

        Works in a plain script and inside a running Jupyter kernel (whose loop it re-enters,
        so tasks run on the kernel's own loop). ``simulate=True`` runs on a virtual clock:
        ``asyncio.sleep`` and timeouts cost no real time, and timelines are reproducible.

        The run is recorded in the flow's store (see ``store=``). ``resume="last"`` (the
        last run of this flow in the store) or ``resume=run_id``: tasks that succeeded in
        that run, with the same task version and inputs, are not run again; their results
        load from the store and they show as ``cached``. Everything else runs.

        Kernel -> Interrupt (or Ctrl-C) cancels the run cleanly: running tasks are
        cancelled and their cleanup runs, queued tasks never start, and ``run()`` returns the
        :class:`Run`, ``cancelled``, with what did finish (it is ``flow.last_run`` too). In a
        script, ``KeyboardInterrupt`` is then raised as usual.

        Raises:
            DefinitionError: a bad option or variable (as ``Flow()`` checks them).
            StoreError: the store cannot be used or ``resume`` names no run of this flow.
        """
        check_run(self, variables, max_workers=max_workers, on_error=on_error)
        if simulate:
            return run_blocking(
                self.arun(
                    variables,
                    strategy=strategy,
                    max_workers=max_workers,
                    on_error=on_error,
                    show=show,
                    simulate=True,
                    resume=resume,
                )
            )
        engine, run = self._engine(
            variables, strategy, max_workers, on_error, executor, resume=resume
        )
        interrupted = []

        def interrupt() -> None:
            interrupted.append(True)
            engine.cancel()

        result = run_blocking(self._execute(engine, run, show), on_interrupt=interrupt)
        if interrupted:
            _tell_interrupted(result)
        return result

    def start(
        self,
        variables: Mapping[str, Any] | None = None,
        *,
        strategy: Any = None,
        max_workers: int | None = None,
        on_error: OnError | None = None,
        executor: Any = None,
        show: bool = False,
        resume: str | None = None,
    ) -> RunHandle:
        """Start a run in the background of the current loop and return its handle.

        With no running loop (a plain script), the run gets its own loop in a thread.
        Definition errors (and store errors) are raised here, before anything starts.
        ``resume`` works as in :meth:`run`.
        """
        check_run(self, variables, max_workers=max_workers, on_error=on_error)
        engine, run = self._engine(
            variables, strategy, max_workers, on_error, executor, resume=resume
        )
        loop = running_loop()
        observers: list[Any] = []
        if loop is not None:
            handle = RunHandle(
                engine,
                run,
                task=loop.create_task(self._execute(engine, run, False, observers, shown=show)),
            )
        else:
            thread = threading.Thread(
                target=asyncio.run,
                args=(self._execute(engine, run, False, observers, shown=show),),
                daemon=True,
                name=f"nbflow-{self.name}",
            )
            handle = RunHandle(engine, run, thread=thread)
            thread.start()
            while engine.loop is None and thread.is_alive():
                time.sleep(0.001)  # until the engine's loop exists, so cancel() can reach it
        handle._observers = observers  # waiting for the handle re-syncs them too
        if show:
            observers.append(self._show(run, engine))
        return handle

    def _show(self, run: Run, engine: Engine | None) -> Any:
        from .widgets import Dashboard

        dashboard = Dashboard(run, engine=engine)
        dashboard.display()
        return dashboard

    # -- flows as data, chaining, schedules (nbflow.data, nbflow.chaining, nbflow.schedule) --

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, agents: Any = None, **options: Any) -> Flow:
        """Build a flow from a document mapping (parsed YAML/JSON); see :mod:`nbflow.data`.

        ``options`` are the other ``Flow`` arguments (``store=``, ``pool=``, ``executor=``).

        Raises:
            FlowValidationError: every problem of the document, each with its path.
        """
        from .data.loader import from_dict

        return from_dict(document, agents=agents, **options)

    def to_dict(self, *, agents: Any = None) -> dict[str, Any]:
        """This flow as a document mapping (the inverse of :meth:`from_dict`)."""
        from .data.export import to_dict

        return to_dict(self, agents=agents)

    def to_yaml(self, path: Any = None, *, agents: Any = None) -> str:
        """This flow as YAML text, also written to ``path`` if given (:mod:`nbflow.data.export`).

        Raises:
            DefinitionError: a task's function is registered with no agent, or an option is
                a Python callable.
        """
        from .data.export import to_yaml

        return to_yaml(self, path, agents=agents)

    def trigger_after(
        self,
        upstream: Flow,
        *,
        when: str | None = None,
        variables: Mapping[str, Any] | None = None,
        version: str | None = None,
    ) -> Any:
        """Start a run of this flow whenever a run of ``upstream`` finishes and ``when`` holds.

        See :func:`nbflow.chaining.trigger_after` (returns a ``Chain``).
        """
        from .chaining import trigger_after

        return trigger_after(self, upstream, when=when, variables=variables, version=version)

    def every(self, interval: float | str, **options: Any) -> Any:
        """Start runs every ``interval`` (seconds or ``"5m"``) until ``.stop()``.

        See :func:`nbflow.schedule.every` (returns a ``Schedule``).
        """
        from .schedule import every

        return every(self, interval, **options)

    def __repr__(self) -> str:
        strategy = getattr(self.strategy, "name", self.strategy)
        return f"<Flow {self.name!r} tasks={len(self.tasks)} strategy={strategy!r}>"
