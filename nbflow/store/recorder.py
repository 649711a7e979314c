"""The engine's journal of one run: what the store records of it, as it happens.

:class:`Recorder` registers the run when it is made (its ``runs`` row; the flow version and
task identities the store has not seen), takes every event (``put``: one C-level append to
the writer's queue), takes each result once, when its task returns (:meth:`Recorder.keep`:
a snapshot, see :mod:`nbflow.store.codecs`), and at the run's end waits, without blocking
the event loop, until the writer has written all of it (:meth:`Recorder.finished`). If the
store could not write some of it, the run knows: ``run.recorded`` is False and
``run.store_error`` says why, and a :class:`StoreWarning` shows in the cell.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pickle
import socket
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, describe
from ..identity import Identities, Identity, Unhashable, user_sources
from .codecs import PICKLE_PROTOCOL, Snapshot, snapshot
from .eventlog import HOT, LAYOUTS, ROWS, hot_route
from .keys import CONTROLLED, StoreWarning, controlled
from .results import KEPT, ResultRow
from .writer import RunOpened, safe_json

if TYPE_CHECKING:
    from ..graph import Plan
    from ..identity import FlowIdentity
    from ..spec import FlowSpec
    from .sqlite import SQLiteStore

HOST = socket.gethostname()
#: Result types pickled at once, without asking the serialisers (none of the built-in ones
#: takes them).
_PLAIN = frozenset({type(None), bool, int, float, complex, str, tuple, list, dict, set})
#: A result of a type whose size is unknown is serialised off the event loop when it holds
#: more items than this (a long list of records takes a while to pickle).
MANY_ITEMS = 10_000


@dataclass(slots=True)
class RunContext:
    """What the store is told about a run beyond its events.

    ``identity`` is the flow's version and each task's identity as the run started;
    ``spec`` is given only when the store has not recorded this flow version yet.
    ``local``, with a remote executor, lists the tasks whose results reach the kernel (the
    others stay on the cluster and are not stored); None means all.
    """

    run_id: str
    plan: Plan
    identity: FlowIdentity
    variables: dict[str, Any]
    spec: FlowSpec | None = None
    resumed_from: str | None = None
    parent_run: str | None = None
    local: frozenset[str] | None = None
    var_digests: dict[str, str | None] = field(default_factory=dict)

    @property
    def flow_version(self) -> str:
        """The flow's version for this run."""
        return self.identity.version


def variable_digests(variables: dict[str, Any]) -> dict[str, str | None]:
    """Each run variable's content digest (None: it cannot be hashed)."""
    hasher = Identities()
    found: dict[str, str | None] = {}
    for name, value in variables.items():
        try:
            found[name] = hasher.value_digest(value)
        except Unhashable:
            found[name] = None
    return found


class Recorder:
    """The journal of one run in a store (see the module docstring)."""

    __slots__ = (
        "_digests", "_flat", "_plain", "_unkept", "context", "error", "keys", "routes",
        "snapshots", "store", "warnings",
    )  # fmt: skip

    def __init__(self, store: SQLiteStore, context: RunContext) -> None:
        self.store = store
        self.context = context
        self._digests = {name: found.digest for name, found in context.identity.tasks.items()}
        # Tasks whose results are not stored: persist=False, or left on a remote cluster.
        plan, local = context.plan, context.local
        self._unkept = frozenset(
            n
            for n in plan.names
            if plan.specs[n].persist is False or (local is not None and n not in local)
        )
        # Plain values take the short path of keep() when no serialiser of the user's could
        # claim them.
        self._plain = _PLAIN if not store.serializers.custom else frozenset()
        #: Task -> the snapshot of its result in this run (what its dependants received): a
        #: pickle's bytes, or a :class:`Snapshot`.
        self.snapshots: dict[str, Snapshot | bytes] = {}
        #: Task -> the cache key its coming result is to be stored under (cache=True).
        self.keys: dict[str, str] = {}
        self.warnings: list[str] = []
        self.error: StoreError | None = None
        opened = self._opened()
        # Where the engine puts each event (``routes[event class]``) and where results go:
        # the run's own queues, which the writer reads (one C-level append each), or the
        # store's submit() when a store class wants to see every item.
        if store.sees_every_record:
            put = store.submit
            self.routes: dict[type, Callable[[Any], None]] = dict.fromkeys(LAYOUTS, put)
            self._flat: Callable[[Any], None] | None = None
        else:
            rest: deque[Any] = deque()
            opened.events = {cls: deque() for cls in HOT}
            opened.events[None] = rest
            self.routes = {cls: rest.append for cls in LAYOUTS}
            for cls in HOT:  # kept as rows (plain tuples), not as events: see hot_route
                self.routes[cls] = hot_route(opened.events[cls], ROWS[cls])
            # A result is its FLAT fields at the end of the run's results queue.
            self._flat = opened.results.extend
            opened.identity = self._digests
        store.submit(opened)
        store.wake()

    def _opened(self) -> RunOpened:
        context = self.context
        plan = context.plan
        started = time.time()
        row = (
            context.run_id, plan.flow_name, context.flow_version, safe_json(context.variables),
            json.dumps(context.var_digests), "running", started, None, None, context.parent_run,
            context.resumed_from, HOST, os.getpid(),
        )  # fmt: skip
        version = None
        if context.spec is not None and not self.store.knows_version(
            plan.flow_name, context.flow_version
        ):
            spec_json, sources = describe_version(context.spec, plan.funcs, context.identity)
            version = (plan.flow_name, context.flow_version, started, len(plan.names),
                       spec_json, sources)  # fmt: skip
            self.store.note_version(plan.flow_name, context.flow_version)
        distinct: dict[str, Identity] = {}
        for found in context.identity.tasks.values():  # 10,000 tasks may share a few
            if found.digest is not None and found.digest not in distinct:
                distinct[found.digest] = found
        new = self.store.new_identities(distinct)
        identities = {digest: distinct[digest].to_json() for digest in new}
        return RunOpened(context.run_id, row, started, version, identities)

    # -- results ------------------------------------------------------------------------------

    def keep(self, task: str, attempt: int, value: Any) -> Awaitable[None] | None:
        """Take ``task``'s result as it is now (its snapshot), for the store.

        Small values are serialised at once; one that may take a while (a large frame, a
        long list) in a thread, and the awaitable returned must be awaited before anything
        else sees the value. A value that cannot be serialised is not stored (one warning).
        """
        if type(value) in self._plain and task not in self._unkept:
            # Most results: pickled at once (a microsecond), the snapshot is the pickle.
            data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
            if len(data) <= self.store.file_bytes:
                self._kept(task, attempt, data)
                return None
        if task in self._unkept:
            self._kept(task, attempt, None)
            return None
        if self._slow(value):
            return self._keep_in_thread(task, attempt, value)
        self._kept(task, attempt, self._snapshot(task, value))
        return None

    async def _keep_in_thread(self, task: str, attempt: int, value: Any) -> None:
        self._kept(task, attempt, await asyncio.to_thread(self._snapshot, task, value))

    def _slow(self, value: Any) -> bool:
        serializer = self.store.serializers.for_value(value)
        hint = serializer.size_hint(value)
        if hint is not None:
            return hint > self.store.file_bytes
        try:
            return len(value) > MANY_ITEMS
        except Exception:
            return False

    def _snapshot(self, task: str, value: Any) -> Snapshot | None:
        store = self.store
        try:
            return snapshot(value, store.serializers, store.files, store.file_bytes)
        except Exception as error:
            how = store.serializers.for_value(value).name
            verb = "pickled" if how == "pickle" else f"serialised by {how!r}"
            self.warnings.append(
                f"task {task!r}: its result ({type(value).__name__}) cannot be {verb} "
                f"({describe(error)}), so it is not stored; the run goes on, but "
                "resume and the cache will run this task again (persist=False silences this)"
            )
            return None

    def _kept(self, task: str, attempt: int, snap: Snapshot | bytes | None) -> None:
        if snap is not None:
            self.snapshots[task] = snap
        key = self.keys.pop(task, None) if self.keys else None
        if self._flat is not None:
            self._flat((task, attempt, snap, key))
        else:
            self.store.submit((KEPT, self.context.run_id, task, attempt, self._digests[task],
                               snap, key))  # fmt: skip

    def digest_of(self, task: str) -> str | None:
        """The content digest of ``task``'s result in this run (None: not stored)."""
        snap = self.snapshots.get(task)
        if snap is None:
            return None
        if type(snap) is bytes:
            return hashlib.sha256(snap).hexdigest()
        return snap.content_digest()  # type: ignore[union-attr]

    def not_reusable(self, task: str) -> None:
        """``task``'s coming result is never to be reused: its attempt cancelled or finished
        part of the run, which the result alone cannot replay (no cache entry; its stored
        identity is marked :data:`~nbflow.store.keys.CONTROLLED`, so resume runs it again).
        Safe from the task's own thread: it comes before the result does."""
        self.keys.pop(task, None)
        digest = self._digests.get(task)
        if digest is not None and not controlled(digest):
            self._digests[task] = CONTROLLED + digest

    def reused(self, task: str, row: ResultRow) -> None:
        """Record that ``task``'s result is the stored one of ``row`` (resume, cache)."""
        self.store.submit((KEPT, self.context.run_id, task, 0, self._digests[task], None, None,
                           row))  # fmt: skip

    # -- the end ------------------------------------------------------------------------------

    async def finished(self) -> StoreError | None:
        """Wait until the store has written everything of the run (the loop runs on); the
        error that kept some of it out, if any (also kept as :attr:`error`)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.store.timeout):
                error = await asyncio.shield(self.store.finish(self.context.run_id, loop))
        except TimeoutError:
            error = StoreError(
                f"store {self.store.location}: run {self.context.run_id} was not written "
                f"within {self.store.timeout:g} s (a lock held by another process, or a slow "
                "disk); its records wait in memory and are written when they can be"
            )
        self.error = error
        return error

    def report(self) -> None:
        """Show what could not be stored, as warnings of the caller (a notebook cell)."""
        for message in self.warnings:
            warnings.warn(message, StoreWarning, stacklevel=3)
        self.warnings.clear()
        if self.error is not None:
            warnings.warn(
                f"run {self.context.run_id} of flow {self.context.plan.flow_name!r} is NOT "
                f"fully recorded: {self.error}. Its results are in this session's Run; resume "
                "and the cache cannot use what was lost.",
                StoreWarning,
                stacklevel=3,
            )

    def __repr__(self) -> str:
        return f"<Recorder run={self.context.run_id} store={self.store.location!r}>"


def describe_version(
    spec: FlowSpec, funcs: Mapping[str, Callable[..., Any]], identity: FlowIdentity
) -> tuple[str, str]:
    """``(spec JSON, sources JSON)`` of one flow version.

    The sources JSON is ``{"code": {hash: source}, "tasks": {task: hash}, "helpers": {task:
    {name: hash}}, "parts": {task: [[path, digest, shown], ...]}}``: each distinct source once,
    even for 10,000 tasks made by one factory function, and each task's identity parts (see
    :mod:`nbflow.identity`), which diffs compare.
    """
    spec_json = json.dumps(spec.model_dump(mode="json"), sort_keys=True, default=str)
    code: dict[str, str] = {}
    memo: dict[Any, dict[str, str]] = {}

    def key_of(text: str) -> str:
        found = hashlib.sha256(text.encode()).hexdigest()[:16]
        code[found] = text
        return found

    tasks: dict[str, str] = {}
    helpers: dict[str, dict[str, str]] = {}
    for name, fn in funcs.items():
        marker = getattr(fn, "__code__", None)
        texts = memo.get(marker) if marker is not None else None
        if texts is None:
            texts = user_sources(fn)
            if marker is not None:
                memo[marker] = texts
        tasks[name] = key_of(texts[""])
        if len(texts) > 1:
            helpers[name] = {h: key_of(t) for h, t in sorted(texts.items()) if h}
    parts = {
        name: [[p.path, p.digest, p.shown] for p in found.parts]
        for name, found in identity.tasks.items()
    }
    sources = json.dumps(
        {"code": code, "tasks": tasks, "helpers": helpers, "parts": parts}, sort_keys=True
    )
    return spec_json, sources
