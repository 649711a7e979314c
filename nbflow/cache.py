"""Resume and result caching: the engine hooks that answer "has this already been done?".

:func:`attach_store` wires a run to its store: a :class:`~nbflow.store.recorder.Recorder`,
the engine's ``journal`` of the run's events, and, when some task can be skipped, a
:class:`StoreHooks` passed to the engine as ``hooks``. Before running a task the engine awaits
``hooks.lookup(engine, name, kwargs)``; a ``(result,)`` answer ends the task as ``cached``.

A task is skipped when

- **resume**: the run being resumed succeeded at it with the same task version (its code,
  the notebook helpers it calls, result-shaping options) and the same inputs hash (digests
  of the upstream results and run variables it receives); or
- **cache** (``cache=True`` or ``cache_key=callable``): any earlier run stored a result under
  the same key (flow, task, version, and inputs hash or ``cache_key(**inputs)``), younger than
  ``cache_ttl`` seconds when set.

Changing a task's code changes its version; changing its result changes its dependants'
inputs hash, so they run again too. Results themselves are recorded by the store's writer
from ``TaskSucceeded`` events; the hooks only decide what need not run.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import socket
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import StoreError, describe
from .store import StateStore, resolve_store
from .store.keys import (
    NONE_DIGEST,
    StoreWarning,
    cache_key,
    cache_tasks,
    inputs_hash,
    value_digest,
)
from .store.recorder import Recorder, RunContext
from .store.rows import PACK_PREFIX

if TYPE_CHECKING:
    from .engine import Engine
    from .graph import Plan
    from .store.rows import ResultRow

Resume = str | None


@dataclass(slots=True)
class Durable:
    """What :func:`attach_store` gives a run: its store, the recorder (the engine's
    ``journal``: every event, before subscribers) and the engine's hooks."""

    store: StateStore
    recorder: Recorder
    hooks: StoreHooks | None
    resumed_from: str | None


def attach_store(
    store_value: Any,
    plan: Plan,
    run_id: str,
    variables: Mapping[str, Any],
    *,
    resume: Resume = None,
    spec: Any = None,
    executor: Any = None,
) -> Durable | None:
    """Connect one run to its store; None when the flow has no store.

    Args:
        store_value: the flow's ``store=`` (see :func:`~nbflow.store.resolve_store`).
        spec: a callable returning the flow's :class:`~nbflow.spec.FlowSpec`, called only
            when the store has not recorded this version yet.
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
        cached = cache_tasks(plan)
        if cached:
            warnings.warn(
                f"flow {plan.flow_name!r} has no store, so cache=True on {cached[:3]} does "
                "nothing; give the flow a store to cache results",
                StoreWarning,
                stacklevel=4,
            )
        return None
    ensure_open = getattr(store, "ensure_open", None)
    if ensure_open is not None:
        ensure_open()
    resumed_from, previous, previous_vars = _resume_rows(store, plan.flow_name, resume)
    spec_now = None
    if not store.knows_version(plan.flow_name, plan.flow_version) and spec is not None:
        spec_now = spec()
    local = None
    if getattr(executor, "remote_results", False):
        local = frozenset(cache_tasks(plan))  # other results stay on the cluster
    context = RunContext(
        run_id, plan, dict(variables), spec_now, resumed_from=resumed_from, local=local
    )
    recorder = Recorder(store, context)
    hooks = None
    if previous or cache_tasks(plan):
        if not previous:
            store.flush()  # this process's latest results are visible to the cache
        hooks = StoreHooks(store, context, previous, previous_vars)
    return Durable(store, recorder, hooks, resumed_from)


def _resume_rows(
    store: StateStore, flow: str, resume: Resume
) -> tuple[str | None, dict[str, ResultRow], dict[str, str]]:
    """``(run id, task -> result row, run variable -> digest)`` of the run to resume."""
    if resume is None:
        return None, {}, {}
    store.flush()
    if resume == "last":
        run_id = store.last_run(flow)
        if run_id is None:
            return None, {}, {}  # nothing ran before: run everything
    else:
        run_id = str(resume)
    record = store.run(run_id)
    if record is None or record["flow"] != flow:
        owner = f" (it is a run of flow {record['flow']!r})" if record else ""
        raise StoreError(
            f"resume={run_id!r}: no run of flow {flow!r} with that id in store "
            f"{store.location}{owner}; see nf.history({flow!r}) for run ids, or use "
            "resume='last'"
        )
    if record["status"] == "running" and _dead(record):
        store.submit(("status", run_id, "interrupted"))
    var_digests = json.loads(record.get("var_digests") or "{}")
    return run_id, store.results(run_id), var_digests


def _dead(record: Mapping[str, Any]) -> bool:
    # A run still marked running whose process on this host is gone was interrupted.
    if record.get("host") != socket.gethostname() or not record.get("pid"):
        return False
    pid = int(record["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class StoreHooks:
    """Engine hooks for one run: answer lookups from the resumed run and the cache.

    ``previous`` maps task -> :class:`ResultRow` of the run being resumed (empty: none);
    ``previous_vars`` its run variables' digests.

    A row with an inputs hash is a hit when the task's inputs hash now is the same. A row
    without one (a packed result: see :meth:`nbflow.store.rows.Projector._pack`) is a hit
    when the task receives what it received then (:meth:`_same_inputs`): each upstream
    result is one restored from that run too, or has the same digest as the one it had there
    (worked out from the stored value only then), and so has each run variable.
    """

    def __init__(
        self,
        store: StateStore,
        context: RunContext,
        previous: Mapping[str, ResultRow],
        previous_vars: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.context = context
        self.previous = dict(previous)
        self.previous_vars = dict(previous_vars or {})
        self._digests: dict[str, str] = {}  # digests of results loaded in this run
        self._restored: set[str] = set()  # tasks whose result this run took from `previous`
        self._old: dict[str, str | None] = {}  # task -> digest of its result in `previous`
        self._packs: dict[str, list[Any]] = {}  # pack id -> its results, each loaded once
        self._vars: dict[str, str] = {}  # run variable -> its digest, pickled once per run

    async def lookup(self, engine: Engine, name: str, kwargs: dict[str, Any]) -> tuple[Any] | None:
        """``(result,)`` when task ``name`` need not run with these inputs, else None.

        Raises:
            RuntimeError: the task's ``cache_key`` callable raised (the task fails).
        """
        spec = engine.plan.specs[name]
        caching = spec.cache or spec.cache_key is not None
        previous = self.previous.get(name)
        if previous is None and not caching:
            return None
        context = self.context
        version = context.task_version(name)
        inputs = None
        if (
            previous is not None
            and previous.digest is not None
            and previous.task_version == version
        ):
            if previous.inputs_hash is None:
                same = await self._same_inputs(name, kwargs)
            else:
                inputs = self._inputs_hash(name, kwargs)
                same = inputs is not None and previous.inputs_hash == inputs
            if same:
                hit = await self._load(name, previous, version, inputs, previous.cache_key)
                if hit is not None:
                    self._restored.add(name)
                    return hit
        if not caching:
            return None  # its result is packed: no keys to hand over
        if inputs is None:
            inputs = self._inputs_hash(name, kwargs)
        key = self._cache_key(name, spec, version, inputs, kwargs)
        if key is not None:
            since = time.time() - spec.cache_ttl if spec.cache_ttl is not None else None
            row = await asyncio.to_thread(self.store.find_cached, key, since)
            if row is not None:
                hit = await self._load(name, row, version, inputs, key)
                if hit is not None:
                    return hit
        self.store.submit(("keys", context.run_id, name, version, inputs, key))
        return None

    async def _same_inputs(self, name: str, kwargs: Mapping[str, Any]) -> bool:
        """Whether ``name`` receives what it received in the resumed run."""
        plan = self.context.plan
        for param, dep in plan.data_params[name]:
            if dep in self._restored:
                continue  # the very value it had then
            old = await self._old_digest(dep)
            if old is None or old != value_digest(kwargs.get(param), name, f"input {param!r}"):
                return False
        variables = self.context.variables
        for p in plan.free_params[name]:
            now = self._var_digest(name, p.name, kwargs) if p.name in variables else None
            if now != self.previous_vars.get(p.name):
                return False
        return True

    async def _old_digest(self, task: str) -> str | None:
        """Digest of ``task``'s result in the resumed run (None: unknown)."""
        if task in self._old:
            return self._old[task]
        row = self.previous.get(task)
        digest: str | None
        if row is None:
            digest = NONE_DIGEST  # it did not succeed there: its dependants received None
        elif row.digest is None or not row.digest.startswith(PACK_PREFIX):
            digest = row.digest  # None: its result was not stored, so it cannot be compared
        else:
            try:
                found = await self._packed(row.digest)
            except Exception:
                found = None  # unreadable: the dependant runs again
            digest = None if found is None else value_digest(found[0], task, "its result")
        self._old[task] = digest
        return digest

    async def _packed(self, ref: str) -> tuple[Any] | None:
        """``(value,)`` of a packed result (``pack:<id>:<index>``), or None when gone."""
        pack_id, _, index = ref[len(PACK_PREFIX) :].partition(":")
        values = self._packs.get(pack_id)
        if values is None:
            blob = await asyncio.to_thread(self.store.load, PACK_PREFIX + pack_id)
            if blob is None:
                return None
            values = self._packs[pack_id] = pickle.loads(blob)
        return (values[int(index)],)

    # -- helpers -----------------------------------------------------------------------------

    def _inputs_hash(self, name: str, kwargs: Mapping[str, Any]) -> str | None:
        context = self.context
        loaded = self._digests

        def dep_digest(param: str, dep: str) -> str | None:
            found = loaded.get(dep)
            if found is not None:
                return found
            return value_digest(kwargs.get(param), name, f"input {param!r}")

        def var_digest(param: str) -> str:
            return self._var_digest(name, param, kwargs)

        return inputs_hash(context.plan, name, context.variables, dep_digest, var_digest)

    def _var_digest(self, name: str, param: str, kwargs: Mapping[str, Any]) -> str:
        """Digest of run variable ``param`` (received by task ``name``), once per run."""
        found = self._vars.get(param)
        if found is None:
            found = self._vars[param] = value_digest(
                kwargs.get(param), name, f"run variable {param!r}"
            )
        return found

    def _cache_key(
        self, name: str, spec: Any, version: str, inputs: str | None, kwargs: dict[str, Any]
    ) -> str | None:
        flow = self.context.plan.flow_name
        if spec.cache_key is None:
            return cache_key(flow, name, version, inputs) if inputs is not None else None
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
        return cache_key(flow, name, version, inputs, user_key)

    async def _load(
        self, name: str, row: ResultRow, version: str, inputs: str | None, key: str | None
    ) -> tuple[Any] | None:
        digest = row.digest
        assert digest is not None
        packed = digest.startswith(PACK_PREFIX)
        try:
            if packed:
                found = await self._packed(digest)
                if found is None:
                    return None
                value = found[0]
            else:
                blob = await asyncio.to_thread(self.store.load, digest)
                if blob is None:
                    return None
                value = pickle.loads(blob)
        except StoreError:
            raise
        except Exception as error:
            warnings.warn(
                f"task {name!r}: its stored result (run {row.run_id}) cannot be loaded "
                f"({describe(error)}); running the task again",
                StoreWarning,
                stacklevel=2,
            )
            return None
        if not packed:
            self._digests[name] = digest  # a content digest: its dependants' inputs hash
        self.store.submit(("ref", self.context.run_id, name, version, inputs, key, digest))
        return (value,)
