"""Resume and result caching: the engine hooks that answer "has this already been done?".

:func:`attach_store` wires a run to its store: a :class:`~nbflow.store.recorder.Recorder`,
the engine's ``journal`` of the run, and a :class:`ReuseHooks`, the engine's ``hooks``.
Before running a task the engine awaits ``hooks.lookup(name, kwargs)``; a stored result
(a :class:`~nbflow.store.results.StoredResult`, loaded only when something needs its value)
ends the task as ``cached``.

A task's stored result is reused when

- **resume** (``resume="last"`` or a run id): that run succeeded at it with the same identity
  (see :mod:`nbflow.identity`) and the same inputs: each upstream result it receives has the
  digest it had there (or is the very result restored from there), each run variable too; or
- **cache** (``cache=True`` or ``cache_key=callable``): any earlier run stored a result under
  the same key (flow, task, identity, and inputs or ``cache_key(**inputs)``), younger than
  ``cache_ttl`` seconds when set.

A result whose stored bytes fail their checksum is never reused: the task runs, with a
:class:`StoreWarning`. Each decision is kept (``decisions``) for ``run.why()``.
"""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .element_cache import ElementCache, unusable
from .errors import StoreError, describe
from .identity import CacheWarning, FlowIdentity, Identities, Unhashable
from .lifecycle import SUCCESSFUL
from .store import resolve_store
from .store.keys import NONE_DIGEST, StoreWarning, cache_key, inputs_hash
from .store.recorder import Recorder, RunContext, variable_digests
from .store.results import DamagedResultError, ResultRow, StoredResult

T = TypeVar("T")

if TYPE_CHECKING:
    from .graph import Plan
    from .state import RunState
    from .store.sqlite import SQLiteStore


@dataclass(slots=True)
class Decision:
    """Why a task of a run was or was not served from the store.

    ``kind``: ``resumed``, ``cached``, ``ran``, or ``elements`` (a fan-out task whose
    elements are cached one by one: ``reason`` says how many were served); ``source``: the
    run whose result was reused; ``reason``: for ``ran``, why not (``no earlier result``,
    ``identity``, ``inputs``, ``unhashable``, ``damaged``, ``unreadable``, ``off``).
    """

    kind: str
    source: str | None = None
    reason: str = ""

    def summary(self) -> str:
        """``"resumed from run 4f2c1a9e"``, ``"cached from run …"``, or ``"ran: identity"``."""
        if self.kind in ("ran", "elements"):
            return f"ran: {self.reason}"
        return f"{self.kind} from run {(self.source or '?')[:8]}"


@dataclass(slots=True)
class Durable:
    """What :func:`attach_store` gives a run: its store, its recorder (the engine's
    ``journal``) and the engine's ``hooks``."""

    store: SQLiteStore
    recorder: Recorder
    hooks: ReuseHooks


def attach_store(
    store_value: Any,
    plan: Plan,
    identity: FlowIdentity,
    run_id: str,
    variables: Mapping[str, Any],
    *,
    resume: str | None = None,
    spec: Any = None,
    executor: Any = None,
    parent_run: str | None = None,
) -> Durable | None:
    """Connect one run to its store; None when the flow has no store.

    Args:
        store_value: the flow's ``store=`` (see :func:`~nbflow.store.resolve_store`).
        spec: a callable returning the flow's :class:`~nbflow.spec.FlowSpec`, called only
            when the store has not recorded this flow version yet.
        resume: ``"last"`` (the last run of this flow in the store; none: nothing to resume)
            or a run id.

    Raises:
        StoreError: the store cannot be used, ``resume`` names no run of this flow, or
            ``resume`` is given while the flow has no store.
    """
    store = resolve_store(store_value)
    if store is None:
        if resume is not None:
            raise StoreError(
                f"flow {plan.flow_name!r} has no store (store=None or NBFLOW_STORE=none), so "
                "there is nothing to resume from; give it one with Flow(..., store=PATH)"
            )
        cached = _cached_tasks(plan)
        if cached:
            warnings.warn(
                f"flow {plan.flow_name!r} has no store, so cache=True on {list(cached[:3])} does "
                "nothing; give the flow a store to cache results",
                StoreWarning,
                stacklevel=4,
            )
        return None
    store.ensure_open()
    resumed_from, previous, previous_vars = _resumed(store, plan.flow_name, resume)
    spec_now = (
        spec()
        if spec is not None and not store.knows_version(plan.flow_name, identity.version)
        else None
    )
    local = None
    if getattr(executor, "remote_results", False):  # other results stay on the cluster
        local = frozenset(_cached_tasks(plan))
    context = RunContext(
        run_id, plan, identity, dict(variables), spec_now, resumed_from, parent_run, local,
        variable_digests(dict(variables)),
    )  # fmt: skip
    _warn_unhashable(plan, identity, resume is not None)
    recorder = Recorder(store, context)
    hooks = ReuseHooks(store, context, recorder, previous, previous_vars)
    return Durable(store, recorder, hooks)


def _warn_unhashable(plan: Plan, identity: FlowIdentity, resuming: bool) -> None:
    """One :class:`CacheWarning` per task that would be reused but cannot be: something it
    depends on has no stable hash, so it always runs (never a stale result)."""
    tasks = (
        identity.tasks.items()
        if resuming
        else ((n, identity.tasks[n]) for n in _cached_tasks(plan))
    )
    for name, found in tasks:
        if found.digest is not None:
            continue
        path, reason = found.unhashable[0]
        if "nbflow cannot see" in reason:  # a read it cannot follow (identity/reads.py)
            warnings.warn(
                f"task {name!r} {path.replace(' / ', ': ')}: {reason}. So its result is never "
                f"{'resumed' if resuming else 'reused'}: it runs every time",
                CacheWarning,
                stacklevel=5,
            )
            continue
        warnings.warn(
            f"task {name!r}: {path} cannot be hashed ({reason}), so the task cannot be "
            f"{'resumed' if resuming else 'served from the cache'} and runs every time. Make "
            "the value picklable, pass it as a run variable or an upstream task's result, or "
            "leave it out with cache_ignore=('name',) if it does not change the result",
            CacheWarning,
            stacklevel=5,
        )


def _cached_tasks(plan: Plan) -> tuple[str, ...]:
    """The tasks of ``plan`` with ``cache=True`` or a ``cache_key`` (worked out once)."""
    return plan.table(
        "cached_tasks",
        lambda: tuple(n for n in plan.names if plan.specs[n].cache or plan.specs[n].cache_key),
    )


def _resumed(
    store: SQLiteStore, flow: str, resume: str | None
) -> tuple[str | None, dict[str, ResultRow], dict[str, str | None]]:
    """``(run id, task -> result row, run variable -> digest)`` of the run to resume."""
    if resume is None:
        return None, {}, {}
    run_id = store.last_run(flow) if resume == "last" else str(resume)
    if run_id is None:
        return None, {}, {}  # nothing ran before: run everything
    record = store.run(run_id)
    if record is None or record["flow"] != flow:
        owner = f" (it is a run of flow {record['flow']!r})" if record else ""
        raise StoreError(
            f"resume={run_id!r}: no run of flow {flow!r} with that id in store "
            f"{store.location}{owner}; see nf.history({flow!r}) for run ids, or use "
            "resume='last'"
        )
    if record["status"] == "running":
        store.settle()  # its process may be gone: then it, and its child runs, interrupted
    return run_id, store.results(run_id), json.loads(record.get("var_digests") or "{}")


class ReuseHooks:
    """The engine's hooks for one run: serve tasks from the resumed run or the cache.

    ``previous`` maps task -> :class:`ResultRow` of the run being resumed (empty: none);
    ``previous_vars`` its run variables' digests.
    """

    def __init__(
        self,
        store: SQLiteStore,
        context: RunContext,
        recorder: Recorder,
        previous: Mapping[str, ResultRow],
        previous_vars: Mapping[str, str | None],
    ) -> None:
        self.store = store
        self.context = context
        self.recorder = recorder
        self.previous = dict(previous)
        self.previous_vars = dict(previous_vars)
        self.decisions: dict[str, Decision] = {}
        self._reused: dict[str, StoredResult] = {}  # tasks served from the store, this run
        self._state: RunState | None = None
        self._unreadable = False  # a read of the store failed in this run (said once)

    @property
    def active(self) -> bool:
        """Whether any task may be served from the store (a resume, or a cached task)."""
        return bool(self.previous) or bool(_cached_tasks(self.context.plan))

    @property
    def served(self) -> bool:
        """Whether this run has served any task from the store (its result is read from
        there when first needed)."""
        return bool(self._reused)

    def bind(self, state: RunState) -> None:
        """Read upstream outcomes from ``state`` (the run's reduced state)."""
        self._state = state

    async def lookup(self, name: str, kwargs: Mapping[str, Any]) -> StoredResult | None:
        """The stored result that task ``name`` with these inputs need not recompute, else
        None (the decision is kept in :attr:`decisions`).

        Raises:
            RuntimeError: the task's ``cache_key`` callable raised (the task fails).
        """
        plan, context = self.context.plan, self.context
        spec = plan.specs[name]
        # A fan-out task caches each element by its own input (element_cache), not its list.
        caching = bool(spec.cache or spec.cache_key is not None) and spec.fan_out is None
        previous = self.previous.get(name)
        identity = context.identity.tasks[name].digest
        if previous is None and not caching:
            self.decisions[name] = Decision("ran", reason="off")
            return None
        if identity is None:
            self.decisions[name] = Decision("ran", reason="unhashable")
            return None
        digests = self._input_digests(name)
        self._warn_unhashable_variables(name, digests)
        if previous is not None:
            hit = await self._resume(name, previous, identity, digests)
            if hit is not None:
                return hit
        if not caching:
            return None
        key = self._cache_key(name, spec, identity, digests, kwargs)
        if key is None:
            self.decisions[name] = Decision("ran", reason="inputs")
            return None
        since = time.time() - spec.cache_ttl if spec.cache_ttl is not None else None
        row = await self.read(name, self.store.find_cached, key, since)
        if row is not None:
            hit = await self._checked(name, row)
            if hit is not None:
                self.decisions[name] = Decision("cached", row.run_id)
                return self._serve(name, row, hit)
        self.recorder.keys[name] = key  # its result goes into the cache under this key
        self.decisions.setdefault(name, Decision("ran", reason="no earlier result"))
        return None

    async def _resume(
        self, name: str, previous: ResultRow, identity: str, digests: dict[str, str | None]
    ) -> StoredResult | None:
        if not previous.stored:
            self.decisions[name] = Decision("ran", reason="not stored")
            return None
        if previous.identity != identity:  # (also when it is CONTROLLED: never reused)
            self.decisions[name] = Decision("ran", previous.run_id, "identity")
            return None
        old = await self.read(name, self._old_digests, name)
        if old is None:
            return None
        same = all(
            digests.get(param) is not None
            and (digests[param] == old.get(param) or digests[param] == _RESTORED)
            for param in digests
        )
        if not same:
            self.decisions[name] = Decision("ran", previous.run_id, "inputs")
            return None
        hit = await self._checked(name, previous, lazy=True)
        if hit is None:
            return None
        self.decisions[name] = Decision("resumed", previous.run_id)
        return self._serve(name, previous, hit)

    async def read(self, name: str, read: Callable[..., T], *args: Any) -> T | None:
        """``read(*args)``, a read of the store for task ``name``, in a thread; None when
        the store cannot be read (see :meth:`unreadable`)."""
        try:
            return await asyncio.to_thread(read, *args)
        except StoreError as error:
            self.unreadable(name, error)
            return None

    def unreadable(self, name: str, error: StoreError) -> None:
        """A read of the store for ``name`` failed (a lock held elsewhere past the timeout,
        a damaged file): nothing is reused, the task runs (a miss costs time, never a wrong
        result, and never the task), and the first such failure of the run is a warning."""
        self.decisions[name] = Decision("ran", reason="unreadable")
        if not self._unreadable:
            self._unreadable = True
            warnings.warn(
                f"task {name!r}: the store could not be read ({error}); tasks of run "
                f"{self.context.run_id} that could reuse a stored result run instead",
                StoreWarning,
                stacklevel=2,
            )

    def elements_decided(self, name: str, served: int, ran: int) -> None:
        """Fan-out task ``name`` had ``served`` elements from the cache and ``ran`` ran
        (:class:`~nbflow.element_cache.ElementCache`), for ``run.why()``."""
        before = self.decisions.get(name)
        unread = before is not None and before.reason == "unreadable"
        note = " (the store could not be read for some: a StoreWarning said why)" if unread else ""
        self.decisions[name] = Decision(
            "elements",
            reason=f"{served} of {served + ran} elements served from the cache (each by "
            f"its own input), {ran} ran{note}",
        )

    def _serve(self, name: str, row: ResultRow, hit: StoredResult) -> StoredResult:
        self._reused[name] = hit
        self.recorder.reused(name, row)
        return hit

    async def _checked(self, name: str, row: ResultRow, lazy: bool = False) -> StoredResult | None:
        """A handle on ``row``'s value once its bytes pass their checksum (a large file
        of a resumed run: once it exists; its content is checked when it is read)."""
        hit = StoredResult(self.store, row)
        try:
            if row.file is not None and lazy:
                if not self.store.files.path(row.file).exists():
                    raise StoreError(f"the file of its result is gone ({row.file})")
            else:
                await asyncio.to_thread(hit.verify)  # reads the bytes, checks the checksum
        except (DamagedResultError, StoreError) as error:
            unusable(f"task {name!r}", row, error, "the task")
            self.decisions[name] = Decision("ran", row.run_id, "damaged")
            return None
        return hit

    def element_cache(self, name: str, kwargs: Mapping[str, Any]) -> ElementCache | None:
        """The cache of fan-out task ``name``'s elements in this run (None: not cached)."""
        spec = self.context.plan.specs[name]
        if not (spec.cache or spec.cache_key is not None):
            return None
        return ElementCache(self, name, kwargs)

    # -- digests -----------------------------------------------------------------------------

    def _input_digests(self, name: str) -> dict[str, str | None]:
        """Parameter -> digest of what task ``name`` receives now (None: unknown)."""
        plan, state = self.context.plan, self._state
        assert state is not None, "bind() the run's state first"
        found: dict[str, str | None] = {}
        for param, dep in plan.data_params[name]:
            if state.tasks[dep].state not in SUCCESSFUL:
                found[param] = NONE_DIGEST
            elif dep in self._reused:
                reused = self._reused[dep]
                restored = reused.row is self.previous.get(dep)
                # Restored from the resumed run: the very value it had there.
                found[param] = _RESTORED if restored else reused.digest()
            else:
                found[param] = self.recorder.digest_of(dep, state.tasks[dep].result)
        for p in plan.free_params[name]:
            if p.name in self.context.variables:
                found[p.name] = self.context.var_digests.get(p.name)
        return found

    def _warn_unhashable_variables(self, name: str, digests: dict[str, str | None]) -> None:
        variables = self.context.variables
        for param, digest in digests.items():
            if digest is None and param in variables:
                try:
                    Identities().value_digest(variables[param])
                    reason = "it cannot be hashed"
                except Unhashable as error:
                    reason = str(error)
                warnings.warn(
                    f"task {name!r}: run variable {param!r} cannot be hashed ({reason}), so the "
                    "task cannot be reused from the store and runs every time",
                    CacheWarning,
                    stacklevel=4,
                )

    def _old_digests(self, name: str) -> dict[str, str | None]:
        """Parameter -> digest of what task ``name`` received in the resumed run."""
        plan = self.context.plan
        found: dict[str, str | None] = {}
        for param, dep in plan.data_params[name]:
            row = self.previous.get(dep)
            if row is None:
                found[param] = NONE_DIGEST  # it did not succeed there: None was passed
            elif not row.stored:
                found[param] = None
            else:
                try:
                    found[param] = StoredResult(self.store, row).digest()
                except (DamagedResultError, StoreError):
                    found[param] = None
        for p in plan.free_params[name]:
            if p.name in self.context.variables:
                found[p.name] = self.previous_vars.get(p.name)
        return found

    def _cache_key(
        self,
        name: str,
        spec: Any,
        identity: str,
        digests: dict[str, str | None],
        kwargs: Mapping[str, Any],
    ) -> str | None:
        flow = self.context.plan.flow_name
        if spec.cache_key is None:
            resolved = {
                p: (self._reused_digest(p, name) if d == _RESTORED else d)
                for p, d in digests.items()
            }
            found = inputs_hash(resolved)
            return cache_key(flow, name, identity, found) if found is not None else None
        try:
            user_key = spec.cache_key(**kwargs)
        except Exception as error:
            raise RuntimeError(
                f"task {name!r}: cache_key={getattr(spec.cache_key, '__name__', spec.cache_key)}"
                f" raised {describe(error)}; it is called with the task's inputs "
                f"as keyword arguments ({sorted(kwargs)})"
            ) from error
        if user_key is None:
            return None  # the task asked not to use the cache for these inputs
        return cache_key(flow, name, identity, "", user_key)

    def _reused_digest(self, param: str, name: str) -> str | None:
        dep = dict(self.context.plan.data_params[name])[param]
        return self._reused[dep].digest()


#: An input that is the very result the resumed run had (equal by construction).
_RESTORED = "restored"
