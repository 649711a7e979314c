"""From events to SQL: the projection every store backend writes.

The :class:`Projector` runs in a store's writer thread. It turns what the :class:`Recorder`
submits (a :class:`RunContext`, then the run's events) and what the cache hooks submit
(``("keys", ...)``, ``("ref", ...)``, ``("status", ...)``) into a :class:`Batch`: SQL
statements applied in one transaction, in order.

The common events (queued, started, succeeded: three per task) cost almost no Python. The
writer drops them into one list per event class (:attr:`Projector.hot`); :meth:`Projector.cut`
then turns each list into one JSON array with C-level ``map``/``zip`` and one ``json``
encode, and SQL does the rest from that array: the event-log segment is the array itself,
and the attempt rows are derived from it by ``INSERT ... SELECT FROM json_each(?)`` (in
SQLite's C code, which runs without the GIL, beside the event loop). Python only computes,
per succeeded task, its result's keys: the digest of its pickle, version and inputs hash.

Rare events (retries, failures, cancellations, run start and end) are projected one by one;
one that changes attempt rows first cuts the lists, so statements keep the events' order.

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
from itertools import chain, compress
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
EVENT_COLUMNS = ("run_id", "seq", "kind", "t", "task", "attempt", "element", "worker", "payload")


@dataclass(slots=True)
class Batch:
    """What to write in one transaction: ``(sql, parameters)`` statements in order (a list
    of parameter rows runs the statement once per row), then result blobs."""

    ops: list[tuple[str, Any]] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ops) + len(self.blobs)


# -- SQL -------------------------------------------------------------------------------------

_INSERT_FLOW = "INSERT OR IGNORE INTO flows (name, created) VALUES (?, ?)"
_INSERT_VERSION = (
    "INSERT OR IGNORE INTO flow_versions (flow, version, created, n_tasks, spec, sources) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_RUN = (
    "INSERT INTO runs (run_id, flow, version, variables, status, started, ended, error, "
    "parent_run, resumed_from, host, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, started = excluded.started, "
    "ended = excluded.ended, error = excluded.error, parent_run = excluded.parent_run"
)
_STATUS = "UPDATE runs SET status = ?2 WHERE run_id = ?1 AND status = 'running'"
_SEGMENT = (
    "INSERT INTO event_segments (run_id, first_seq, last_seq, kind, events) VALUES (?,?,?,?,?)"
)


def _at(i: int) -> str:
    return f"json_extract(value, '$[{i}]')"


#: Hot event rows in the log (JSON arrays; ``t`` in integer nanoseconds of the run clock):
#: TaskQueued [seq, t, task]; TaskStarted [seq, t, task, attempt, worker, element, size];
#: TaskSucceeded [seq, t, task, attempt, element, cached, worker, began].
#: Attempt rows as the writer binds them: (task, element, attempt, state, started, ended,
#: worker, task_version, inputs_hash, cache_key, digest, size); the run is ``?1``.
_ATTEMPT_VALUES = "(?1," + ",".join("?" * 7) + ",NULL,NULL," + ",".join("?" * 5) + ")"
_ROWS_PER_STATEMENT = 200
_statements: dict[int, str] = {}
_NO_KEYS = (None, None, None, None, None)


def _insert_attempts(run_id: str, rows: list[tuple[Any, ...]], batch: Batch) -> None:
    """Statements inserting ``rows`` (attempt rows of ``run_id``), up to 200 rows each.

    One statement with many ``VALUES`` rows binds them in C and steps once; ``executemany``
    would step once per row, releasing and re-taking the GIL each time, and each re-take
    waits for the busy event loop to let go of it.
    """
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        part = rows[start : start + _ROWS_PER_STATEMENT]
        sql = _statements.get(len(part))
        if sql is None:
            sql = _statements[len(part)] = "INSERT OR REPLACE INTO attempts VALUES " + ",".join(
                [_ATTEMPT_VALUES] * len(part)
            )
        batch.ops.append((sql, (run_id, *chain.from_iterable(part))))


_OPEN = "run_id = ?1 AND task = ?2 AND element = ?3 AND state = 'running'"
#: Close the open attempt of (run, task, element): state, ended, worker, error, traceback.
_CLOSE = (
    "UPDATE attempts SET state = ?4, ended = ?5, worker = coalesce(?6, worker), "
    f"error = coalesce(?7, error), traceback = coalesce(?8, traceback) WHERE {_OPEN}"
)
#: A failure with no open attempt (a condition or an input failed before any attempt).
_FAILED_UNSTARTED = (
    "INSERT OR REPLACE INTO attempts (run_id, task, element, attempt, state, started, ended, "
    "worker, error, traceback) SELECT ?1, ?2, ?3, ?4, 'failed', ?5, ?5, ?6, ?7, ?8 "
    f"WHERE NOT EXISTS (SELECT 1 FROM attempts WHERE {_OPEN})"
)
_CLOSE_RUN = (
    "UPDATE attempts SET state = 'cancelled', ended = ?2 WHERE run_id = ?1 AND state = 'running'"
)


def _view_part(kind: str, columns: list[str]) -> str:
    kind_sql = f"'{kind}'" if kind != "*" else columns.pop(1)
    seq, t, *rest = columns
    return (
        f"SELECT s.run_id AS run_id, {seq} AS seq, {kind_sql} AS kind, {t} AS t, "
        + ", ".join(f"{expr} AS {name}" for expr, name in zip(rest, EVENT_COLUMNS[4:], strict=True))
        + f" FROM event_segments s, json_each(s.events) WHERE s.kind = '{kind}'"
    )


def _json_true(index: int) -> str:
    return f"CASE WHEN {_at(index)} THEN json('true') END"


#: The ``events`` view: one row per event, whatever the segment format.
EVENTS_VIEW = "CREATE VIEW events AS " + " UNION ALL ".join(
    [
        _view_part("*", [_at(i) for i in range(8)]),
        _view_part("TaskQueued", [_at(0), f"{_at(1)} / 1e9", _at(2), *["NULL"] * 4]),
        _view_part(
            "TaskStarted",
            [_at(0), f"{_at(1)} / 1e9", _at(2), _at(3), _at(5), _at(4),
             f"CASE WHEN {_at(6)} IS NOT NULL THEN json_object('size', {_at(6)}) END"],
        ),
        _view_part(
            "TaskSucceeded",
            [_at(0), f"{_at(1)} / 1e9", _at(2), _at(3), _at(4), _at(6),
             "nullif(json_patch('{}', json_object("
             f"'cached', {_json_true(5)}, 'began', {_at(7)})), '{{}}')"],
        ),
    ]
)  # fmt: skip

_ENCODE = json.JSONEncoder(separators=(",", ":"), default=repr).encode
_ENCODE_ROWS = json.JSONEncoder(separators=(",", ":"), check_circular=False, default=repr).encode
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


# -- event rows ------------------------------------------------------------------------------

#: Event fields with a column of their own in the event log (``result`` is in ``blobs``,
#: ``traceback`` in ``attempts``); every other field goes to the JSON ``payload``.
_COLUMN_FIELDS = frozenset(
    {"run_id", "seq", "t", "task", "attempt", "element", "worker", "result", "traceback"}
)


def _encoder(cls: type) -> Callable[[Any], str | None]:
    """The payload encoder of an event class: JSON of its other fields, None/False left out."""
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
    """A function turning an event of class ``cls`` into its generic event-log row:
    ``(seq, kind, t, task, attempt, element, worker, payload)`` (the run is the segment's)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    kind = cls.__name__
    getters = [
        operator.attrgetter(name) if name in fields else (lambda e: None)
        for name in ("task", "attempt", "element", "worker")
    ]
    get_task, get_attempt, get_element, get_worker = getters
    encode = _encoder(cls)

    def build(e: Any) -> tuple[Any, ...]:
        return (e.seq, kind, e.t, get_task(e), get_attempt(e), get_element(e), get_worker(e),
                encode(e))  # fmt: skip

    return build


def _error_text(error: Any) -> str:
    return f"{type(error).__name__}: {error}"


_RUN = operator.attrgetter("run_id")
_SEQ = operator.attrgetter("seq")
_T = operator.attrgetter("t")
_TASK = operator.attrgetter("task")
_ATTEMPT = operator.attrgetter("attempt")
_ELEMENT = operator.attrgetter("element")
_WORKER = operator.attrgetter("worker")
_NS = (1e9).__mul__


def _times(events: list[Any]) -> Any:
    return map(round, map(_NS, map(_T, events)))


def _queued_rows(events: list[Any]) -> Any:
    return zip(map(_SEQ, events), _times(events), map(_TASK, events), strict=True)


def _started_rows(events: list[Any]) -> Any:
    size = operator.attrgetter("size")
    return zip(
        map(_SEQ, events), _times(events), map(_TASK, events), map(_ATTEMPT, events),
        map(_WORKER, events), map(_ELEMENT, events), map(size, events), strict=True,
    )  # fmt: skip


def _succeeded_rows(events: list[Any]) -> Any:
    cached, began = operator.attrgetter("cached"), operator.attrgetter("began")
    return zip(
        map(_SEQ, events), _times(events), map(_TASK, events), map(_ATTEMPT, events),
        map(_ELEMENT, events), map(cached, events), map(_WORKER, events), map(began, events),
        strict=True,
    )  # fmt: skip


#: Hot event class -> its log rows from a list of its events.
_HOT: dict[type, Callable[[list[Any]], Any]] = {
    ev.TaskQueued: _queued_rows,
    ev.TaskStarted: _started_rows,
    ev.TaskSucceeded: _succeeded_rows,
}
_KEY = operator.attrgetter("task", "element", "attempt")


@dataclass(slots=True)
class _Track:
    """Writer-side state of one run while its events arrive."""

    context: RunContext
    row: list[Any]
    wall: float = 0.0
    #: (task, element, attempt) -> TaskStarted of the attempts that have not ended.
    open: dict[tuple[str, int | None, int], Any] = field(default_factory=dict)
    digests: dict[str, str | None] = field(default_factory=dict)
    var_digests: dict[str, str] = field(default_factory=dict)
    #: generic event-log rows of the rare events, written as one segment per batch.
    rare: list[tuple[Any, ...]] = field(default_factory=list)
    #: task -> (version, inputs hash, cache key) computed by a cache lookup that missed.
    keys: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    #: task -> (version, inputs hash, cache key, digest) of a result loaded by a lookup.
    refs: dict[str, tuple[str, str | None, str | None, str]] = field(default_factory=dict)


class Projector:
    """Turns submitted items into :class:`Batch` statements (runs in the writer thread only).

    The writer appends events of the hot classes to the lists of :attr:`hot` itself, and
    passes every other item to :meth:`apply`; :meth:`cut` (before a commit) projects the lists.

    Args:
        max_result_bytes: a pickled result larger than this is not stored (with a warning).
    """

    def __init__(self, max_result_bytes: int) -> None:
        self.max_result_bytes = max_result_bytes
        self.known_versions: set[tuple[str, str]] = set()
        self.warnings: dict[str, list[str]] = {}
        #: hot event class -> its events since the last cut, in order.
        self.hot: dict[type, list[Any]] = {cls: [] for cls in _HOT}
        self._runs: dict[str, _Track] = {}
        self._finished: list[tuple[str, _Track]] = []  # runs ended since the last commit
        self._handlers: dict[type, Callable[[_Track, Any, Batch], None] | None] = {
            ev.RunStarted: self._run_started,
            ev.RunFinished: self._run_finished,
            ev.TaskRetrying: self._task_retrying,
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
        """Project one submitted item into ``batch`` (hot events: append to :attr:`hot`)."""
        cls = type(item)
        found = self.hot.get(cls)
        if found is not None:
            found.append(item)
            return
        kind = self._kinds.get(cls)
        if kind is None and isinstance(item, ev.Event):
            kind = self._kinds[cls] = (_row_builder(cls), self._handlers.get(cls))
        if kind is not None:
            track = self._runs.get(item.run_id)
            if track is None:
                return  # a run this store has no context for (never recorded)
            build, handler = kind
            track.rare.append(build(item))
            if handler is not None:
                self.cut(batch)  # keep the order of attempt statements
                handler(track, item, batch)
        elif isinstance(item, RunContext):
            self._context(item, batch)
        else:
            tag, run_id, task, *rest = item
            track = self._runs.get(run_id)
            if tag == "status":
                batch.ops.append((_STATUS, (run_id, task)))
            elif track is None:
                return
            elif tag == "keys":
                track.keys[task] = tuple(rest)
            elif tag == "ref":
                track.refs[task] = tuple(rest)
                track.digests[task] = rest[-1]
            else:
                raise ValueError(f"unknown store item {item!r}")

    def cut(self, batch: Batch) -> None:
        """Project the hot lists into ``batch`` and empty them."""
        hot = self.hot
        lists = [hot[cls] for cls in _HOT]
        if not any(lists):
            return
        for cls in _HOT:
            hot[cls] = []
        runs = {e.run_id for events in lists if events for e in (events[0], events[-1])}
        if len(runs) == 1 and all(
            operator.countOf(map(_RUN, events), events[0].run_id) == len(events)
            for events in lists
            if events
        ):
            self._project_hot(runs.pop(), lists, batch)
            return
        by_run: dict[str, list[list[Any]]] = {}  # several runs at once
        for i, events in enumerate(lists):
            for e in events:
                by_run.setdefault(e.run_id, [[], [], []])[i].append(e)
        for run_id, parts in by_run.items():
            self._project_hot(run_id, parts, batch)

    def end(self, batch: Batch) -> None:
        """Before a commit: :meth:`cut`, and the rare events' log segments."""
        self.cut(batch)
        for run_id, track in list(self._runs.items()) + self._finished:
            if track.rare:
                self._segment(run_id, "*", track.rare, batch)
                track.rare = []
        self._finished.clear()

    def _segment(self, run_id: str, kind: str, rows: list[Any], batch: Batch) -> None:
        batch.ops.append((_SEGMENT, (run_id, rows[0][0], rows[-1][0], kind, _ENCODE_ROWS(rows))))

    def _project_hot(self, run_id: str, lists: list[list[Any]], batch: Batch) -> None:
        """Log segments and attempt rows of one run's hot events (queued, started, succeeded)."""
        track = self._runs.get(run_id)
        if track is None:
            return  # a run this store has no context for
        for cls, events in zip(_HOT, lists, strict=True):
            if events:
                self._segment(run_id, cls.__name__, list(_HOT[cls](events)), batch)
        _, started, succeeded = lists
        opened = track.open
        if started:
            keys = list(map(_KEY, started))
            opened.update(zip(keys, started, strict=True))
        rows = self._succeeded(track, succeeded, batch) if succeeded else []
        if started:  # attempts still running: a row each, replaced when they end
            wall = track.wall
            rows.extend(
                (e.task, NO_ELEMENT if e.element is None else e.element, e.attempt, "running",
                 wall + e.t, None, e.worker, *_NO_KEYS)
                for e in compress(started, map(opened.__contains__, keys))
            )  # fmt: skip
        if rows:
            _insert_attempts(run_id, rows, batch)

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
            batch.ops.append((_INSERT_FLOW, (plan.flow_name, now)))
            batch.ops.append(
                (
                    _INSERT_VERSION,
                    (plan.flow_name, plan.flow_version, now, len(plan.names), spec_json, sources),
                )
            )
            self.known_versions.add(key)

    # -- rare events -------------------------------------------------------------------------

    def _run_started(self, track: _Track, e: ev.RunStarted, batch: Batch) -> None:
        track.wall = e.wall_start - e.t
        row = track.row
        row[4], row[5], row[8] = "running", e.wall_start, e.parent_run
        batch.ops.append((_INSERT_FLOW, (e.flow, e.wall_start)))
        batch.ops.append((_UPSERT_RUN, tuple(row)))

    def _run_finished(self, track: _Track, e: ev.RunFinished, batch: Batch) -> None:
        row = track.row
        row[4], row[6], row[7] = e.status, track.wall + e.t, e.error
        batch.ops.append((_UPSERT_RUN, tuple(row)))
        batch.ops.append((_CLOSE_RUN, (e.run_id, track.wall + e.t)))  # attempts a stop left open
        del self._runs[e.run_id]
        self._finished.append((e.run_id, track))

    def _close(
        self, track: _Track, e: Any, state: str, batch: Batch, error: str | None = None,
        traceback: str | None = None,
    ) -> None:  # fmt: skip
        track.open.pop((e.task, e.element, e.attempt), None)
        element = NO_ELEMENT if e.element is None else e.element
        params = (e.run_id, e.task, element, state, track.wall + e.t, getattr(e, "worker", None),
                  error, traceback)  # fmt: skip
        batch.ops.append((_CLOSE, params))

    def _task_retrying(self, track: _Track, e: ev.TaskRetrying, batch: Batch) -> None:
        self._close(track, e, "failed", batch, _error_text(e.error))

    def _task_failed(self, track: _Track, e: ev.TaskFailed, batch: Batch) -> None:
        element = NO_ELEMENT if e.element is None else e.element
        error, traceback = _error_text(e.error), e.traceback or None
        batch.ops.append(
            (
                _FAILED_UNSTARTED,
                (e.run_id, e.task, element, e.attempt, track.wall + e.t, e.worker, error,
                 traceback),
            )
        )  # fmt: skip
        self._close(track, e, "failed", batch, error, traceback)

    def _task_cancelled(self, track: _Track, e: ev.TaskCancelled, batch: Batch) -> None:
        self._close(track, e, "cancelled", batch)

    # -- results -----------------------------------------------------------------------------

    def _succeeded(self, track: _Track, events: list[Any], batch: Batch) -> list[tuple[Any, ...]]:
        """Final attempt rows of ``events`` (TaskSucceeded), with the results' keys."""
        rows: list[tuple[Any, ...]] = []
        append, pop, refs, wall = rows.append, track.open.pop, track.refs, track.wall
        for e in events:
            name, element = e.task, e.element
            start = pop((name, element, e.attempt), None)
            ended = wall + e.t
            worker = e.worker
            if start is not None:
                started = wall + start.t
                if worker is None:
                    worker = start.worker
            elif element is None:
                started = ended  # a cached result: no attempt ran
            else:
                continue
            if element is not None:
                append((name, element, e.attempt, "succeeded", started, ended, worker, *_NO_KEYS))
            elif e.cached:
                ref = refs.pop(name, None)
                append((name, NO_ELEMENT, e.attempt, "cached", started, ended, worker,
                        *(ref if ref is not None else _NO_KEYS[:4]), None))  # fmt: skip
            else:
                append((name, NO_ELEMENT, e.attempt, "succeeded", started, ended, worker,
                        *self._result(track, name, e.result, batch)))  # fmt: skip
        return rows

    def _result(self, track: _Track, name: str, result: Any, batch: Batch) -> tuple[Any, ...]:
        """``(task_version, inputs_hash, cache_key, digest, size)`` of a task's result."""
        context = track.context
        plan = context.plan
        spec = plan.specs[name]
        if spec.persist is False or (context.local is not None and name not in context.local):
            digest, stored, size = None, False, None
        elif result is None:
            batch.blobs[NONE_DIGEST] = NONE_BLOB
            digest, stored, size = NONE_DIGEST, True, len(NONE_BLOB)
        else:
            digest, stored, size = self._pickle(track, name, result, batch)
        track.digests[name] = digest
        keys = track.keys.pop(name, None) if track.keys else None
        if keys is None:
            version = context.task_version(name)
            if not plan.data_params[name] and not plan.free_params[name]:
                inputs: str | None = EMPTY_INPUTS
            else:
                inputs = self._inputs_hash(track, name)
            key = None
            if inputs is not None and (spec.cache or spec.cache_key is not None):
                key = cache_key(plan.flow_name, name, version, inputs)
        else:
            version, inputs, key = keys
        return (version, inputs, key, digest if stored else None, size)

    def _pickle(
        self, track: _Track, name: str, result: Any, batch: Batch
    ) -> tuple[str | None, bool, int | None]:
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
