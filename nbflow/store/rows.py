"""From events to rows: the projection every store backend writes.

The :class:`Projector` runs in a store's writer thread. It turns what the :class:`Recorder`
submits (a :class:`RunContext`, then the run's events) and what the cache hooks submit
(``("keys", ...)``, ``("ref", ...)``) into a :class:`Batch` of rows: runs, attempts, the
ordered event log, results with their keys, pickled result blobs, flow versions. A backend
only has to write a batch in one transaction.

Results are pickled here, off the event loop. A result's digest (SHA-256 of its pickle) is
also what its dependants' inputs hash is made of, so each result is pickled once.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import events as ev
from ..spec import helper_functions, source_of
from .keys import (
    EMPTY_INPUTS,
    NONE_BLOB,
    NONE_DIGEST,
    blob_digest,
    cache_key,
    dumps,
    inputs_hash,
    sha,
    value_digest,
)
from .recorder import RunContext

if TYPE_CHECKING:
    from ..spec import FlowSpec

NO_ELEMENT = -1  # attempts of a task as a whole (not of one fan-out element)
HOST = socket.gethostname()


class ResultRow(NamedTuple):
    """The result of one task of one run (``digest`` None: succeeded, result not stored).

    ``created`` is when the task ended (Unix seconds); ``cache_ttl`` is measured from it.
    """

    run_id: str
    task: str
    task_version: str
    inputs_hash: str | None
    cache_key: str | None
    digest: str | None
    size: int | None
    created: float


#: Columns of an attempt row, in order. The closing attempt of a task that succeeded (or
#: was served from a resumed run or the cache) also carries its result's keys and digest.
ATTEMPT_COLUMNS = (
    "run_id", "task", "element", "attempt", "state", "started", "ended", "worker", "error",
    "traceback", "task_version", "inputs_hash", "cache_key", "digest", "size",
)  # fmt: skip
RUN_COLUMNS = (
    "run_id", "flow", "version", "variables", "status", "started", "ended", "error",
    "parent_run", "resumed_from", "host", "pid",
)  # fmt: skip


@dataclass(slots=True)
class Batch:
    """Rows to write in one transaction; attempt and run rows are upserts."""

    flows: dict[str, float] = field(default_factory=dict)
    versions: list[tuple[str, str, float, int, str, str]] = field(default_factory=list)
    runs: dict[str, list[Any]] = field(default_factory=dict)
    statuses: list[tuple[str, str]] = field(default_factory=list)
    attempts: dict[tuple[str, str, int, int], list[Any]] = field(default_factory=dict)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def __len__(self) -> int:
        return (
            len(self.flows)
            + len(self.versions)
            + len(self.runs)
            + len(self.statuses)
            + len(self.attempts)
            + len(self.events)
            + len(self.blobs)
        )


_ENCODE = json.JSONEncoder(separators=(",", ":"), default=repr).encode
_quote = json.encoder.encode_basestring_ascii


def safe_json(value: Any) -> str:
    """JSON of ``value``; what JSON cannot hold becomes its ``repr``."""
    try:
        return _ENCODE(value)
    except (TypeError, ValueError):  # e.g. a dict with tuple keys
        return _ENCODE(repr(value))


def describe_version(spec: FlowSpec, funcs: Mapping[str, Callable[..., Any]]) -> tuple[str, str]:
    """``(spec JSON, sources JSON)`` of one flow version.

    The sources JSON is ``{"code": {hash: source}, "tasks": {task: hash},
    "helpers": {task: {name: hash}}}``: each distinct source once, even for 10,000 tasks
    made by one factory function.
    """
    spec_json = json.dumps(spec.model_dump(mode="json"), sort_keys=True, default=str)
    code: dict[str, str] = {}
    memo: dict[Any, str] = {}

    def key_of(fn: Callable[..., Any]) -> str:
        marker = getattr(fn, "__code__", None) or id(fn)
        found = memo.get(marker)
        if found is None:
            text = source_of(fn)
            found = memo[marker] = sha(text, 16)
            code[found] = text
        return found

    tasks = {name: key_of(fn) for name, fn in funcs.items()}
    helpers: dict[str, dict[str, str]] = {}
    for name, fn in funcs.items():
        found = helper_functions(fn)
        if found:
            helpers[name] = {helper: key_of(f) for helper, f in found}
    sources = json.dumps({"code": code, "tasks": tasks, "helpers": helpers}, sort_keys=True)
    return spec_json, sources


#: Event fields with a column of their own in the event log (``result`` is in ``blobs``,
#: ``traceback`` in ``attempts``); every other field goes to the JSON ``payload``.
_COLUMN_FIELDS = frozenset(
    {"run_id", "seq", "t", "task", "attempt", "element", "worker", "result", "traceback"}
)
EVENT_COLUMNS = ("run_id", "seq", "kind", "t", "task", "attempt", "element", "worker", "payload")


def _encoder(cls: type) -> Callable[[Any], str | None]:
    """The payload encoder of an event class: JSON of its other fields, None/False left out.

    Hand-rolled for the common field types; the writer encodes thousands of events per
    second and ``json.dumps`` on a fresh dict costs several times more. The hot events
    (queued, started, succeeded) usually have no payload at all.
    """
    names = tuple(f.name for f in dataclasses.fields(cls) if f.name not in _COLUMN_FIELDS)

    def encode(event: Any) -> str | None:
        parts = []
        for name in names:
            value = getattr(event, name)
            kind = type(value)
            if value is None or value is False or (kind is tuple and not value):
                continue
            if kind is int:
                parts.append(f'"{name}":{value}')
            elif kind is str:
                parts.append(f'"{name}":{_quote(value)}')
            elif value is True:
                parts.append(f'"{name}":true')
            elif isinstance(value, BaseException):
                parts.append(f'"{name}":{_quote(_error_text(value))}')
            else:
                parts.append(f'"{name}":{safe_json(value)}')
        return "{" + ",".join(parts) + "}" if parts else None

    return encode


def _row_builder(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """A function turning an event of class ``cls`` into its event-log row.

    Built once per class, so that a row costs one call: no failing ``getattr`` for fields
    the class lacks, and no payload encoding while the other fields are all None or False,
    which is the common case.
    """
    fields = [f.name for f in dataclasses.fields(cls)]
    kind = cls.__name__
    columns = [
        name if name in fields else None for name in ("task", "attempt", "element", "worker")
    ]
    getters = [operator.attrgetter(name) if name else (lambda e: None) for name in columns]
    get_task, get_attempt, get_element, get_worker = getters
    extras = operator.attrgetter(*[f for f in fields if f not in _COLUMN_FIELDS] or ["run_id"])
    has_extras = any(f not in _COLUMN_FIELDS for f in fields)
    encode = _encoder(cls)

    def build(e: Any) -> tuple[Any, ...]:
        payload = None
        if has_extras:
            values = extras(e)
            values = values if isinstance(values, tuple) else (values,)
            if any(v is not None and v is not False for v in values):
                payload = encode(e)
        return (
            e.run_id,
            e.seq,
            kind,
            e.t,
            get_task(e),
            get_attempt(e),
            get_element(e),
            get_worker(e),
            payload,
        )

    return build


def _error_text(error: Any) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass(slots=True)
class _Track:
    """Writer-side state of one run while its events arrive."""

    context: RunContext
    row: list[Any]
    wall: float = 0.0
    open: dict[tuple[str, int], list[Any]] = field(default_factory=dict)
    digests: dict[str, str | None] = field(default_factory=dict)
    var_digests: dict[str, str] = field(default_factory=dict)
    #: task -> (version, inputs hash, cache key) computed by a cache lookup that missed.
    keys: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    #: task -> (version, inputs hash, cache key, digest) of a result loaded by a lookup.
    refs: dict[str, tuple[str, str | None, str | None, str]] = field(default_factory=dict)


def _attempt(run_id: str, task: str, element: int, attempt: int, state: str, t: float) -> list[Any]:
    return [run_id, task, element, attempt, state, t, None, None, None, None,
            None, None, None, None, None]  # fmt: skip


class Projector:
    """Turns submitted items into :class:`Batch` rows (runs in the writer thread only).

    Args:
        max_result_bytes: a pickled result larger than this is not stored (with a warning).
    """

    def __init__(self, max_result_bytes: int) -> None:
        self.max_result_bytes = max_result_bytes
        self.known_versions: set[tuple[str, str]] = set()
        self.warnings: dict[str, list[str]] = {}
        self._runs: dict[str, _Track] = {}
        self._handlers: dict[type, Callable[[_Track, Any, Batch], None] | None] = {
            ev.RunStarted: self._run_started,
            ev.RunFinished: self._run_finished,
            ev.TaskStarted: self._task_started,
            ev.TaskRetrying: self._task_retrying,
            ev.TaskSucceeded: self._task_succeeded,
            ev.TaskFailed: self._task_failed,
            ev.TaskCancelled: self._task_cancelled,
        }
        #: event class -> (row builder, handler or None), filled on first sight.
        self._kinds: dict[type, tuple[Callable[[Any], tuple[Any, ...]], Any]] = {}

    def warn(self, run_id: str, message: str) -> None:
        """Keep ``message`` for the recorder of ``run_id`` to re-issue as a warning."""
        self.warnings.setdefault(run_id, []).append(message)

    # -- items -------------------------------------------------------------------------------

    def apply(self, item: Any, batch: Batch) -> None:
        """Project one submitted item into ``batch``."""
        kind = self._kinds.get(type(item))
        if kind is None and isinstance(item, ev.Event):
            cls = type(item)
            kind = self._kinds[cls] = (_row_builder(cls), self._handlers.get(cls))
        if kind is not None:
            track = self._runs.get(item.run_id)
            if track is None:
                return  # a run this store has no context for (never recorded)
            build, handler = kind
            batch.events.append(build(item))
            if handler is not None:
                handler(track, item, batch)
        elif isinstance(item, RunContext):
            self._context(item, batch)
        else:
            tag, run_id, task, *rest = item
            track = self._runs.get(run_id)
            if tag == "status":
                batch.statuses.append((run_id, task))
            elif track is None:
                return
            elif tag == "keys":
                track.keys[task] = tuple(rest)
            elif tag == "ref":
                track.refs[task] = tuple(rest)
                track.digests[task] = rest[-1]
            else:
                raise ValueError(f"unknown store item {item!r}")

    def _context(self, context: RunContext, batch: Batch) -> None:
        plan = context.plan
        row = [
            context.run_id, plan.flow_name, plan.flow_version, safe_json(context.variables),
            "pending", None, None, None, None, context.resumed_from, HOST, os.getpid(),
        ]  # fmt: skip
        self._runs[context.run_id] = _Track(context, row)
        key = (plan.flow_name, plan.flow_version)
        if context.spec is not None and key not in self.known_versions:
            spec_json, sources = describe_version(context.spec, plan.funcs)
            now = time.time()
            batch.flows.setdefault(plan.flow_name, now)
            batch.versions.append(
                (plan.flow_name, plan.flow_version, now, len(plan.names), spec_json, sources)
            )
            self.known_versions.add(key)

    # -- run events --------------------------------------------------------------------------

    def _run_started(self, track: _Track, e: ev.RunStarted, batch: Batch) -> None:
        track.wall = e.wall_start - e.t
        row = track.row
        row[4], row[5], row[8] = "running", e.wall_start, e.parent_run
        batch.flows.setdefault(e.flow, e.wall_start)
        batch.runs[e.run_id] = row

    def _run_finished(self, track: _Track, e: ev.RunFinished, batch: Batch) -> None:
        row = track.row
        row[4], row[6], row[7] = e.status, track.wall + e.t, e.error
        batch.runs[e.run_id] = row
        for attempt in track.open.values():  # attempts a stop left open
            attempt[4], attempt[6] = "cancelled", track.wall + e.t
            self._put(batch, attempt)
        del self._runs[e.run_id]

    # -- attempts ----------------------------------------------------------------------------

    @staticmethod
    def _put(batch: Batch, row: list[Any]) -> None:
        batch.attempts[(row[0], row[1], row[2], row[3])] = row

    def _close(self, track: _Track, e: Any, state: str, batch: Batch) -> list[Any] | None:
        row = track.open.pop((e.task, NO_ELEMENT if e.element is None else e.element), None)
        if row is None:
            return None
        row[4], row[6] = state, track.wall + e.t
        worker = getattr(e, "worker", None)
        if worker is not None:
            row[7] = worker
        batch.attempts[(row[0], row[1], row[2], row[3])] = row
        return row

    def _task_started(self, track: _Track, e: ev.TaskStarted, batch: Batch) -> None:
        element = NO_ELEMENT if e.element is None else e.element
        row = _attempt(e.run_id, e.task, element, e.attempt, "running", track.wall + e.t)
        row[7] = e.worker
        track.open[(e.task, element)] = row
        batch.attempts[(e.run_id, e.task, element, e.attempt)] = row

    def _task_retrying(self, track: _Track, e: ev.TaskRetrying, batch: Batch) -> None:
        row = self._close(track, e, "failed", batch)
        if row is not None:
            row[8] = _error_text(e.error)

    def _task_failed(self, track: _Track, e: ev.TaskFailed, batch: Batch) -> None:
        row = self._close(track, e, "failed", batch)
        if row is None:  # failed before any attempt started (a condition, an input)
            t = track.wall + e.t
            element = NO_ELEMENT if e.element is None else e.element
            row = _attempt(e.run_id, e.task, element, e.attempt, "failed", t)
            row[6] = t
            self._put(batch, row)
        row[8], row[9] = _error_text(e.error), e.traceback or None

    def _task_cancelled(self, track: _Track, e: ev.TaskCancelled, batch: Batch) -> None:
        self._close(track, e, "cancelled", batch)

    def _task_succeeded(self, track: _Track, e: ev.TaskSucceeded, batch: Batch) -> None:
        state = "cached" if e.cached else "succeeded"
        row = self._close(track, e, state, batch)
        if e.element is not None:
            return
        if row is None:  # a cached result (no attempt ran)
            t = track.wall + e.t
            row = _attempt(e.run_id, e.task, NO_ELEMENT, e.attempt, state, t)
            row[6] = t
            self._put(batch, row)
        if e.cached:
            ref = track.refs.pop(e.task, None)
            if ref is not None:
                row[10], row[11], row[12], row[13] = ref
        else:
            self._result(track, e, row, batch)

    # -- results -----------------------------------------------------------------------------

    def _result(self, track: _Track, e: ev.TaskSucceeded, row: list[Any], batch: Batch) -> None:
        context, name = track.context, e.task
        spec = context.plan.specs[name]
        if spec.persist is not False and (context.local is None or name in context.local):
            digest, stored, size = self._pickle(track, name, e.result, batch)
        else:
            digest, stored, size = None, False, None
        track.digests[name] = digest
        keys = track.keys.pop(name, None) if track.keys else None
        if keys is None:
            version = context.task_version(name)
            inputs = self._inputs_hash(track, name)
            key = None
            if inputs is not None and (spec.cache or spec.cache_key is not None):
                key = cache_key(context.plan.flow_name, name, version, inputs)
        else:
            version, inputs, key = keys
        row[10], row[11], row[12], row[13], row[14] = (
            version,
            inputs,
            key,
            digest if stored else None,
            size,
        )

    def _pickle(
        self, track: _Track, name: str, result: Any, batch: Batch
    ) -> tuple[str | None, bool, int | None]:
        if result is None:
            batch.blobs.setdefault(NONE_DIGEST, NONE_BLOB)
            return NONE_DIGEST, True, len(NONE_BLOB)
        run_id = track.context.run_id
        try:
            blob = dumps(result)
        except Exception as error:
            self.warn(
                run_id,
                f"task {name!r}: its result ({type(result).__name__}) cannot be pickled "
                f"({type(error).__name__}: {error}), so it is not stored; the run goes on, but "
                "resume and the cache will run this task again (persist=False silences this)",
            )
            return None, False, None
        digest = blob_digest(blob)
        if len(blob) > self.max_result_bytes:
            self.warn(
                run_id,
                f"task {name!r}: its result pickles to {len(blob):,} bytes, more than the "
                f"store's max_result_bytes={self.max_result_bytes:,}, so it is not stored; "
                "resume and the cache will run this task again (persist=False silences this)",
            )
            return digest, False, len(blob)
        batch.blobs.setdefault(digest, blob)
        return digest, True, len(blob)

    def _inputs_hash(self, track: _Track, name: str) -> str | None:
        context = track.context
        plan = context.plan
        if not plan.data_params[name] and not plan.free_params[name]:
            return EMPTY_INPUTS
        digests, variables = track.digests, context.variables

        def dep_digest(param: str, dep: str) -> str | None:
            # A dependency that did not succeed passed None (trigger rules like all_done).
            return digests.get(dep, NONE_DIGEST)

        def var_digest(param: str) -> str:
            found = track.var_digests.get(param)
            if found is None:
                found = track.var_digests[param] = value_digest(
                    variables[param],
                    name,
                    f"run variable {param!r}",
                    lambda message: self.warn(context.run_id, message),
                )
            return found

        return inputs_hash(plan, name, variables, dep_digest, var_digest)
