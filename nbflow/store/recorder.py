"""The engine's journal of one run: what the store records of it, as it happens.

:class:`Recorder` registers the run when it is made (its ``runs`` row; the flow version and
task identities the store has not seen) and hands the writer two lists that the engine
fills: :attr:`Recorder.log`, each event's class, time and arguments (one ``list.extend``, see
:mod:`nbflow.store.eventlog`), and :attr:`Recorder.kept`, each result's
task and item (:meth:`Recorder.keep`, when its task returns: the value itself when it is
plain, else its snapshot, see :mod:`nbflow.store.codecs`). The writer takes what they hold
every ``interval``. At the run's end :meth:`Recorder.finished` waits, without blocking the
event loop, until the writer has written all of it. If the store could not write some of
it, the run knows: ``run.recorded`` is False and ``run.store_error`` says why, and a
:class:`StoreWarning` shows in the cell.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import pickle
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, describe
from ..identity import Identities, Identity, Unhashable, user_sources
from .codecs import PICKLE_PROTOCOL, Snapshot, snapshot
from .eventlog import LOGGED
from .keys import StoreWarning
from .liveness import HOST
from .results import UNSTORED, ResultRow
from .writer import RunOpened, Status, safe_json

if TYPE_CHECKING:
    from ..graph import Plan
    from ..identity import FlowIdentity
    from ..spec import FlowSpec
    from ..state import RunState
    from .sqlite import SQLiteStore

#: Result types pickled at once, without asking the serialisers (none of the built-in ones
#: takes them).
_PICKLED = frozenset({str, tuple, list, dict, set, complex})
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


#: Errors of the disk, not of the value, when a result is written as a file.
_DISK_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES}
)


class _Watched(list[Any]):
    """A run's log for a store that sees every record (it overrides ``submit``): each event
    is also handed to ``submit``."""

    def __init__(self, submit: Callable[[Any], None], run_id: str) -> None:
        super().__init__()
        self.submit, self.run_id, self.seq = submit, run_id, 0

    def extend(self, row: Any) -> None:
        self.submit(row[0](self.run_id, self.seq, *row[1:]))
        self.seq += 1
        super().extend(row)


class Recorder:
    """The journal of one run in a store (see the module docstring)."""

    __slots__ = (
        "_kept", "_pickled", "_plain", "_started", "_timer", "_unkept", "context", "controlled",
        "error", "kept", "keys", "log", "logged", "snapshots", "store", "warnings",
    )  # fmt: skip

    def __init__(self, store: SQLiteStore, context: RunContext) -> None:
        self.store = store
        self.context = context
        plan, local = context.plan, context.local
        # Tasks whose results are not stored: persist=False, or left on a remote cluster.
        self._unkept = plan.table(
            "unpersisted",
            lambda: frozenset(n for n in plan.names if plan.specs[n].persist is False),
        )
        if local is not None:
            self._unkept = self._unkept | frozenset(n for n in plan.names if n not in local)
        #: Result types whose values go to the store as they are: in the event rows (the
        #: engine leaves other results out of them) and, as items, in the results.
        self.logged = LOGGED
        # ...unless a serialiser of the user's might claim them (then the serialisers decide).
        custom = store.serializers.custom
        self._plain = LOGGED if not custom else frozenset()
        self._pickled = _PICKLED if not custom else frozenset()
        #: The run's events, for the writer: class, t, arguments, class... (the engine
        #: extends it; see nbflow.store.eventlog).
        self.log: list[Any] = (
            _Watched(store.submit, context.run_id) if store.sees_every_record else []
        )
        #: The run's results, task and item after task and item, for the writer.
        self.kept: list[Any] = []
        self._kept = self.kept.extend
        #: Task -> the snapshot of its result in this run (what its dependants received),
        #: for results that are not plain.
        self.snapshots: dict[str, Snapshot | bytes] = {}
        #: Task -> the cache key its coming result is to be stored under (cache=True).
        self.keys: dict[str, str] = {}
        #: Tasks whose results are never to be reused (see :meth:`not_reusable`).
        self.controlled: set[str] = set()
        self.warnings: list[str] = []
        self.error: StoreError | None = None
        opened = self._opened()
        self._started: float = opened.row[6]
        self._timer: asyncio.TimerHandle | None = None
        store.submit(opened)  # written with the run's first records (see started())

    def _opened(self) -> RunOpened:
        context = self.context
        plan, store = context.plan, self.store
        started = time.time()
        row = (
            context.run_id, plan.flow_name, context.flow_version, safe_json(context.variables),
            json.dumps(context.var_digests), "running", started, None, None, context.parent_run,
            context.resumed_from, HOST, os.getpid(),
        )  # fmt: skip
        version, identities = None, {}
        if context.spec is not None and not store.knows_version(
            plan.flow_name, context.flow_version
        ):
            spec_json, sources = describe_version(context.spec, plan.funcs, context.identity)
            tasks = context.identity.tasks
            digests = json.dumps({name: found.digest for name, found in tasks.items()})
            version = (plan.flow_name, context.flow_version, started, len(plan.names),
                       spec_json, sources, digests)  # fmt: skip
            store.note_version(plan.flow_name, context.flow_version)
            distinct: dict[str, Identity] = {}
            for found in tasks.values():  # 10,000 tasks may share a few
                if found.digest is not None and found.digest not in distinct:
                    distinct[found.digest] = found
            identities = {d: distinct[d].to_json() for d in store.new_identities(distinct)}
        return RunOpened(context.run_id, row, version, identities, self.log, self.kept, self.keys,
                         self.controlled, store.token)  # fmt: skip

    # -- results ------------------------------------------------------------------------------

    def keep(self, task: str, attempt: int, value: Any) -> Awaitable[None] | None:
        """Take ``task``'s result as it is now (its snapshot), for the store.

        A plain value is taken as it is; small others are serialised at once; one that may
        take a while (a large frame, a long list) in a thread, and the awaitable returned
        must be awaited before anything else sees the value. A value that cannot be
        serialised is not stored (one warning).
        """
        kind = type(value)
        if kind in self._plain and task not in self._unkept:
            self._kept((task, value))  # immutable: what the task returned, as it is
            return None
        if task in self._unkept:
            self._kept((task, UNSTORED))
            return None
        if kind in self._pickled:
            # Most other results: pickled at once (a microsecond), the snapshot is the pickle.
            data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
            if len(data) <= self.store.file_bytes:
                self._took(task, data)
                return None
        if self._slow(value):
            return self._keep_in_thread(task, value)
        self._took(task, self._snapshot(task, value))
        return None

    async def _keep_in_thread(self, task: str, value: Any) -> None:
        self._took(task, await asyncio.to_thread(self._snapshot, task, value))

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
            # (snapshot() leaves what another serialiser could not write to pickle: the
            # error is pickle's then)
            verb = "pickled" if how == "pickle" else f"serialised by {how!r} nor pickled"
            problem = f"cannot be {verb} ({describe(error)})"
            if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:  # not the value's fault
                where = store.files.root if store.files is not None else store.location
                problem = (
                    f"could not be written to {where} ({describe(error)}; free disk space: "
                    "nf.prune() removes old runs)"
                )
            self.warnings.append(
                f"task {task!r}: its result ({type(value).__name__}) {problem}, so it is not "
                "stored; the run goes on, but resume and the cache will run this task again "
                "(persist=False silences this)"
            )
            return None

    def _took(self, task: str, snap: Snapshot | bytes | None) -> None:
        if snap is None:
            self._kept((task, UNSTORED))
            return
        self.snapshots[task] = snap
        self._kept((task, snap))

    def keep_element(
        self, task: str, label: str, value: Any, cache_key: str
    ) -> Awaitable[None] | None:
        """Store a fan-out element's result as ``label`` (``task[key]``) under
        ``cache_key`` (``cache=True`` caches each element: see :class:`nbflow.element_cache.
        ElementCache`). Like :meth:`keep`, an awaitable to await when it serialises in a
        thread; a value that cannot be serialised is not stored (one warning)."""
        if task in self._unkept:
            return None
        kind = type(value)
        if kind in self._plain:
            self._element_kept(label, value, cache_key)
            return None
        if kind in self._pickled:
            data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
            if len(data) <= self.store.file_bytes:
                self._element_kept(label, data, cache_key)
                return None
        if self._slow(value):
            return self._keep_element_in_thread(label, value, cache_key)
        self._element_kept(label, self._snapshot(label, value), cache_key)
        return None

    async def _keep_element_in_thread(self, label: str, value: Any, cache_key: str) -> None:
        self._element_kept(label, await asyncio.to_thread(self._snapshot, label, value), cache_key)

    def _element_kept(self, label: str, item: Any, cache_key: str) -> None:
        if item is None:  # it did not serialise (a warning says so)
            return
        self.keys[label] = cache_key  # first: the writer may take the item at once
        self._kept((label, item))

    def digest_of(self, task: str, value: Any) -> str | None:
        """The content digest of ``task``'s result ``value`` in this run (None: not
        stored)."""
        snap = self.snapshots.get(task)
        if snap is None:
            if type(value) in self._plain and task not in self._unkept:
                return hashlib.sha256(pickle.dumps(value, protocol=PICKLE_PROTOCOL)).hexdigest()
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
        self.controlled.add(task)

    def reused(self, task: str, row: ResultRow) -> None:
        """Record that ``task``'s result is the stored one of ``row`` (resume, cache)."""
        self._kept((task, row))

    # -- the start and the end ------------------------------------------------------------------

    def started(self) -> None:
        """The run starts on the running loop: the writer, which sleeps while no run goes on,
        is woken once the run has gone on for an interval (a run shorter than that is
        written once, at its end)."""
        self._timer = asyncio.get_running_loop().call_later(self.store.interval, self.store.wake)

    async def finished(self, state: RunState) -> StoreError | None:
        """Record the run's end (as ``state`` has it) and wait until the store has written
        everything of the run (the loop runs on); the error that kept some of it out, if
        any (also kept as :attr:`error`)."""
        store, run_id = self.store, self.context.run_id
        if self._timer is not None:
            self._timer.cancel()
        ended = time.time() if state.finished_t is None else self._started + state.finished_t
        store.submit(Status(run_id, state.status.value, ended, state.error))
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(store.timeout):
                error = await asyncio.shield(store.finish(run_id, loop))
        except TimeoutError:
            error = StoreError(
                f"store {store.location}: run {run_id} was not written within "
                f"{store.timeout:g} s (a lock held by another process, or a slow disk); its "
                "records wait in memory and are written when they can be"
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
