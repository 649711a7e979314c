"""From events to SQL: the projection every store backend writes.

The :class:`Projector` runs in a store's writer thread. It turns what the :class:`Recorder`
submits (a :class:`RunContext`, then the run's events) and what the cache hooks submit
(``("keys", ...)``, ``("ref", ...)``, ``("status", ...)``) into a :class:`Batch`: SQL
statements applied in one transaction, in order.

The common events (queued, started, succeeded: three per task) cost almost no Python. The
writer drops them into one list per event class (:attr:`Projector.hot`); :meth:`Projector.cut`
then turns each list into one JSON array with C-level ``map``/``zip`` and one ``json``
encode: the event-log segment. Nothing is written per attempt: the ``attempts`` view derives
attempts from the event log when read (one GROUP BY over the segments), and the keys of the
results go in bulk too: a result None of a task that receives nothing (the common case of a
no-op task) needs no row at all, only the version noted on its segment; the other results that
need no cache key are *packed*, one pickle of their list per batch with a JSON array of their
rows (``result_segments``); results with a cache key get their keys (version, inputs hash,
cache key, digest) in such an array too, and a row of the indexed ``cache_entries``.

Rare events (retries, failures, cancellations, run start and end) are projected one by one
into a segment of their own per batch.

Work is done in two steps, so a run's end waits only for the first (see
:meth:`~nbflow.store.writer.Writer.settle`): projecting a batch pickles its results (a result
that does not pickle is known, and warned about, at once) and leaves the rest as deferred
statements (:attr:`Batch.ops` holds callables), which :meth:`Batch.resolve` works out just
before the commit: log rows, task versions, JSON.

Results are pickled here, off the event loop. Packed results get no digest (SHA-256 of a
pickle) during the run, resume works theirs out when it needs them; a cached task's result, or
one too large for a pack, is stored by its digest.
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
from functools import partial
from itertools import compress, repeat, starmap
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import events as ev
from ..errors import describe
from ..spec import helper_functions, source_of
from .keys import (
    EMPTY_INPUTS,
    NONE_BLOB,
    NONE_DIGEST,
    blob_digest,
    cache_key,
    cache_tasks,
    dumps,
    inputs_hash,
    sha,
    value_digest,
)
from .recorder import HOT_EVENTS, RunContext

if TYPE_CHECKING:
    from ..spec import FlowSpec

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


EVENT_COLUMNS = ("run_id", "seq", "kind", "t", "task", "attempt", "element", "worker", "payload")


#: A statement left for later: called by :meth:`Batch.resolve`, it returns its statements.
Deferred = Callable[[], list[tuple[str, Any]]]


@dataclass(slots=True)
class Batch:
    """What to write in one transaction: ``(sql, parameters)`` statements in order (a list
    of parameter rows runs the statement once per row), then result blobs.

    ``ops`` may also hold :data:`Deferred` callables, which :meth:`resolve` replaces by the
    statements they return, in place, before the batch is written.
    """

    ops: list[Any] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ops) + len(self.blobs)

    def resolve(self) -> None:
        """Replace the deferred statements by what they return (in order)."""
        ops: list[tuple[str, Any]] = []
        for op in self.ops:
            if type(op) is tuple:
                ops.append(op)
            else:
                ops.extend(op())
        self.ops = ops


# -- SQL -------------------------------------------------------------------------------------

_INSERT_FLOW = "INSERT OR IGNORE INTO flows (name, created) VALUES (?, ?)"
_INSERT_VERSION = (
    "INSERT OR IGNORE INTO flow_versions (flow, version, created, n_tasks, spec, sources) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_UPSERT_RUN = (
    "INSERT INTO runs (run_id, flow, version, variables, status, started, ended, error, "
    "parent_run, resumed_from, host, pid, t0, var_digests) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, started = excluded.started, "
    "ended = excluded.ended, error = excluded.error, parent_run = excluded.parent_run, "
    "t0 = excluded.t0"
)
_STATUS = "UPDATE runs SET status = ?2 WHERE run_id = ?1 AND status = 'running'"
_SEGMENT = (
    "INSERT INTO event_segments (run_id, first_seq, last_seq, kind, events, result_version) "
    "VALUES (?,?,?,?,?,?)"
)
_RESULT_SEGMENT = "INSERT INTO result_segments (run_id, kind, created, rows) VALUES (?,?,?,?)"
_PACK_SEGMENT = (
    "INSERT INTO result_segments (run_id, kind, created, rows, data) VALUES (?,'packed',?,?,?)"
)
_CACHE_ENTRY = (
    "INSERT INTO cache_entries (cache_key, created, run_id, task, task_version, inputs_hash, "
    "digest, size) VALUES (?,?,?,?,?,?,?,?)"
)


def _at(i: int, value: str = "value") -> str:
    return f"json_extract({value}, '$[{i}]')"


#: Hot event rows in the log (JSON arrays; ``t`` in integer nanoseconds of the run clock):
#: TaskQueued [seq, t, task]; TaskStarted [seq, t, task, attempt, worker, element, size];
#: TaskSucceeded [seq, t, task, attempt, element, cached, worker, began]. Rows of the other
#: events (kind ``*``): [seq, kind, t (seconds), task, attempt, element, worker, payload
#: (JSON text or null), traceback (TaskFailed)].
#:
#: Result rows (``result_segments.rows``), one per task that succeeded as a whole: kind
#: ``none`` [task, attempt, version] (a result None, stored, inputs hash of no inputs, no
#: cache key); kind ``packed`` [task, attempt, version]: the results are the segment's
#: ``data``, one pickle of the list of them in row order (a row's digest reads
#: ``pack:<segment id>:<index>``; no inputs hash: resume compares the inputs when it needs
#: to, see :mod:`nbflow.cache`); kind ``rows`` [task, attempt, version, inputs_hash,
#: cache_key, digest, size, created] (``digest`` None: not stored; ``inputs_hash`` None:
#: compared at resume, as for ``packed``).
_NONE_SIZE = len(NONE_BLOB)
#: The prefix of a packed result's reference (``pack:<segment id>:<index>``).
PACK_PREFIX = "pack:"
_PACK_REF = f"'{PACK_PREFIX}' || s.id || ':' || key"


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

#: Columns of the ``task_results`` view (and of :class:`ResultRow`).
RESULT_COLUMNS = (
    "run_id", "task", "task_version", "inputs_hash", "cache_key", "digest", "size", "created",
)  # fmt: skip

#: The ``task_results`` view: one row per task of a run that succeeded as a whole (or was
#: served from a resumed run or the cache): its version, inputs hash, cache key, result
#: digest (None: not stored) and size. Runs of schema 3 and older: their attempt rows.
RESULTS_VIEW = (
    "CREATE VIEW task_results AS "
    f"SELECT s.run_id AS run_id, {_at(0)} AS task, {_at(2)} AS task_version, "
    f"{_at(3)} AS inputs_hash, {_at(4)} AS cache_key, {_at(5)} AS digest, {_at(6)} AS size, "
    f"{_at(7)} AS created FROM result_segments s, json_each(s.rows) WHERE s.kind = 'rows' "
    f"UNION ALL SELECT s.run_id, {_at(0)}, {_at(2)}, '{EMPTY_INPUTS}', NULL, '{NONE_DIGEST}', "
    f"{_NONE_SIZE}, s.created FROM result_segments s, json_each(s.rows) WHERE s.kind = 'none' "
    f"UNION ALL SELECT s.run_id, {_at(0)}, {_at(2)}, NULL, NULL, {_PACK_REF}, NULL, s.created "
    "FROM result_segments s, json_each(s.rows) WHERE s.kind = 'packed' "
    f"UNION ALL SELECT s.run_id, {_at(2)}, s.result_version, '{EMPTY_INPUTS}', NULL, "
    f"'{NONE_DIGEST}', {_NONE_SIZE}, (SELECT t0 FROM runs r WHERE r.run_id = s.run_id) + "
    f"{_at(1)} / 1e9 FROM event_segments s, json_each(s.events) "
    "WHERE s.kind = 'TaskSucceeded' AND s.result_version IS NOT NULL "
    "UNION ALL SELECT run_id, task, task_version, inputs_hash, cache_key, digest, size, ended "
    "FROM attempt_rows WHERE element = -1 AND task_version IS NOT NULL"
)

# The attempts of a run, derived from its event log and result rows. Each source row is a
# mark of one attempt (run, task, element, attempt): its start (0), its end (1: succeeded,
# cached, failed, retried, cancelled) or its result's keys (2); one GROUP BY folds them.
_MARK = (
    "run_id, task, element, attempt, mark, t, state, worker, error, traceback, orphan, "
    "task_version, inputs_hash, cache_key, digest, size"
)
_NO_RESULT = "NULL, NULL, NULL, NULL, NULL"
_IF_VERSION = ", ".join(
    f"CASE WHEN s.result_version IS NOT NULL THEN {value} END"
    for value in (f"'{EMPTY_INPUTS}'", "NULL", f"'{NONE_DIGEST}'", str(_NONE_SIZE))
)
_MARKS = " UNION ALL ".join(
    [
        "SELECT "
        + ", ".join(
            f"{expr} AS {name}"
            for expr, name in zip(
                [
                    "s.run_id",
                    _at(2),
                    f"coalesce({_at(5)}, -1)",
                    _at(3),
                    "0",
                    f"{_at(1)} / 1e9",
                    "NULL",
                    _at(4),
                    "NULL",
                    "NULL",
                    "0",
                    *["NULL"] * 5,
                ],
                _MARK.split(", "),
                strict=True,
            )
        )
        + " FROM event_segments s, json_each(s.events) WHERE s.kind = 'TaskStarted'",
        f"SELECT s.run_id, {_at(2)}, coalesce({_at(4)}, -1), {_at(3)}, 1, {_at(1)} / 1e9, "
        f"CASE WHEN {_at(4)} IS NULL AND {_at(5)} THEN 'cached' ELSE 'succeeded' END, "
        f"{_at(6)}, NULL, NULL, {_at(4)} IS NULL, s.result_version, {_IF_VERSION} "
        "FROM event_segments s, json_each(s.events) WHERE s.kind = 'TaskSucceeded'",
        f"SELECT s.run_id, {_at(3)}, coalesce({_at(5)}, -1), {_at(4)}, 1, {_at(2)}, "
        f"CASE {_at(1)} WHEN 'TaskCancelled' THEN 'cancelled' ELSE 'failed' END, {_at(6)}, "
        f"json_extract({_at(7)}, '$.error'), {_at(8)}, {_at(1)} = 'TaskFailed', {_NO_RESULT} "
        "FROM event_segments s, json_each(s.events) WHERE s.kind = '*' "
        f"AND {_at(1)} IN ('TaskRetrying', 'TaskFailed', 'TaskCancelled')",
        f"SELECT s.run_id, {_at(0)}, -1, {_at(1)}, 2, NULL, NULL, NULL, NULL, NULL, 0, {_at(2)}, "
        f"{_at(3)}, {_at(4)}, {_at(5)}, {_at(6)} FROM result_segments s, json_each(s.rows) "
        "WHERE s.kind = 'rows'",
        f"SELECT s.run_id, {_at(0)}, -1, {_at(1)}, 2, NULL, NULL, NULL, NULL, NULL, 0, {_at(2)}, "
        f"'{EMPTY_INPUTS}', NULL, '{NONE_DIGEST}', {_NONE_SIZE} "
        "FROM result_segments s, json_each(s.rows) WHERE s.kind = 'none'",
        f"SELECT s.run_id, {_at(0)}, -1, {_at(1)}, 2, NULL, NULL, NULL, NULL, NULL, 0, {_at(2)}, "
        f"NULL, NULL, {_PACK_REF}, NULL FROM result_segments s, json_each(s.rows) "
        "WHERE s.kind = 'packed'",
    ]
)
_FOLDED = (
    "SELECT run_id, task, element, attempt, max(CASE WHEN mark = 0 THEN t END) AS started, "
    "max(CASE WHEN mark = 1 THEN t END) AS ended, max(CASE WHEN mark = 1 THEN state END) "
    "AS state, coalesce(max(CASE WHEN mark = 1 THEN worker END), max(CASE WHEN mark = 0 "
    "THEN worker END)) AS worker, max(error) AS error, max(traceback) AS traceback, "
    "max(orphan) AS orphan, max(task_version) AS task_version, max(inputs_hash) AS "
    "inputs_hash, max(cache_key) AS cache_key, max(digest) AS digest, max(size) AS size "
    f"FROM ({_MARKS}) GROUP BY run_id, task, element, attempt"
)
_OPEN_RUN = "r.status IN ('pending', 'running')"

#: The ``attempts`` view: one row per attempt of each task (``element`` -1: the task as a
#: whole), with the columns of schema 3's table; the attempt that ends a task successfully
#: also has its result's keys. Attempts that have not ended are ``running`` while their run
#: is, ``cancelled`` (at the run's end) once it is not. Runs of schema 3 and older: their
#: attempt rows.
ATTEMPTS_VIEW = (
    "CREATE VIEW attempts AS SELECT * FROM attempt_rows UNION ALL "
    "SELECT a.run_id AS run_id, a.task AS task, a.element AS element, a.attempt AS attempt, "
    f"coalesce(a.state, CASE WHEN {_OPEN_RUN} THEN 'running' ELSE 'cancelled' END) AS state, "
    "r.t0 + coalesce(a.started, a.ended) AS started, CASE WHEN a.state IS NOT NULL THEN "
    f"r.t0 + a.ended WHEN {_OPEN_RUN} THEN NULL ELSE r.ended END AS ended, "
    "a.worker AS worker, a.error AS error, a.traceback AS traceback, "
    "a.task_version AS task_version, a.inputs_hash AS inputs_hash, a.cache_key AS cache_key, "
    f"a.digest AS digest, a.size AS size FROM ({_FOLDED}) a JOIN runs r "
    "ON r.run_id = a.run_id WHERE r.t0 IS NOT NULL AND (a.started IS NOT NULL OR a.orphan)"
)

#: The attempts of one run (``:run``), as the view has them: the same query with the run
#: filtered in every source (SQLite does not push the filter through the view's GROUP BY).
ATTEMPTS_OF_RUN = (
    ATTEMPTS_VIEW.removeprefix("CREATE VIEW attempts AS ")
    .replace("FROM attempt_rows", "FROM attempt_rows WHERE run_id = :run")
    .replace("WHERE s.kind", "WHERE s.run_id = :run AND s.kind")
    .replace("ON r.run_id = a.run_id WHERE", "ON r.run_id = a.run_id WHERE r.run_id = :run AND")
)

#: Schema 4: attempts and results are derived from the event log when read (see above).
SCHEMA_4 = (
    "ALTER TABLE attempts RENAME TO attempt_rows",
    "ALTER TABLE runs ADD COLUMN t0 REAL",
    "ALTER TABLE event_segments ADD COLUMN result_version TEXT",
    """CREATE TABLE result_segments (
        id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, kind TEXT NOT NULL, created REAL NOT NULL,
        rows TEXT NOT NULL)""",
    "CREATE INDEX result_segments_by_run ON result_segments (run_id)",
    """CREATE TABLE cache_entries (
        cache_key TEXT NOT NULL, created REAL NOT NULL, run_id TEXT NOT NULL,
        task TEXT NOT NULL, task_version TEXT, inputs_hash TEXT, digest TEXT NOT NULL,
        size INTEGER)""",
    "CREATE INDEX cache_entries_by_key ON cache_entries (cache_key, created)",
    "INSERT INTO cache_entries SELECT cache_key, ended, run_id, task, task_version, "
    "inputs_hash, digest, size FROM attempt_rows WHERE element = -1 AND cache_key IS NOT NULL "
    "AND task_version IS NOT NULL AND digest IS NOT NULL",
    RESULTS_VIEW,
    ATTEMPTS_VIEW,
)

#: Schema 5: results that need no cache key are packed, one pickle per batch
#: (``result_segments.data``), with no digest or inputs hash computed while the run goes on;
#: runs keep the digests of their variables, for resume to compare inputs with.
SCHEMA_5 = (
    "ALTER TABLE result_segments ADD COLUMN data BLOB",
    "ALTER TABLE runs ADD COLUMN var_digests TEXT",
    "DROP VIEW attempts",
    "DROP VIEW task_results",
    RESULTS_VIEW,
    ATTEMPTS_VIEW,
)

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
#: ``traceback`` is the last item of the row); every other field goes to the JSON ``payload``.
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
    if "traceback" in fields:  # kept in the log: the attempts view reads it from there

        def build_with_traceback(e: Any) -> tuple[Any, ...]:
            return (e.seq, kind, e.t, get_task(e), get_attempt(e), get_element(e),
                    get_worker(e), encode(e), e.traceback or None)  # fmt: skip

        return build_with_traceback

    def build(e: Any) -> tuple[Any, ...]:
        return (e.seq, kind, e.t, get_task(e), get_attempt(e), get_element(e), get_worker(e),
                encode(e))  # fmt: skip

    return build


def _error_text(error: Any) -> str:
    return describe(error)


_RUN = operator.attrgetter("run_id")
_SEQ = operator.attrgetter("seq")
_T = operator.attrgetter("t")
_TASK = operator.attrgetter("task")
_ATTEMPT = operator.attrgetter("attempt")
_ELEMENT = operator.attrgetter("element")
_WORKER = operator.attrgetter("worker")
_NS = (1e9).__mul__
_SIZE = operator.attrgetter("size")
_CACHED = operator.attrgetter("cached")
_BEGAN = operator.attrgetter("began")


def _times(events: list[Any]) -> Any:
    return map(round, map(_NS, map(_T, events)))


def _queued_rows(events: list[Any]) -> Any:
    return zip(map(_SEQ, events), _times(events), map(_TASK, events), strict=True)


def _started_rows(events: list[Any]) -> Any:
    n = len(events)
    elements = list(map(_ELEMENT, events))
    sizes = list(map(_SIZE, events))
    if elements.count(None) == n and sizes.count(None) == n:  # trailing nulls left out
        return zip(
            map(_SEQ, events), _times(events), map(_TASK, events), map(_ATTEMPT, events),
            map(_WORKER, events), strict=True,
        )  # fmt: skip
    return zip(
        map(_SEQ, events), _times(events), map(_TASK, events), map(_ATTEMPT, events),
        map(_WORKER, events), elements, sizes, strict=True,
    )  # fmt: skip


def _succeeded_rows(events: list[Any]) -> Any:
    n = len(events)
    elements, cached = list(map(_ELEMENT, events)), list(map(_CACHED, events))
    workers, began = list(map(_WORKER, events)), list(map(_BEGAN, events))
    if (
        elements.count(None) == n
        and cached.count(False) == n
        and workers.count(None) == n
        and began.count(None) == n
    ):  # trailing nulls left out
        return zip(map(_SEQ, events), _times(events), map(_TASK, events), map(_ATTEMPT, events),
                   strict=True)  # fmt: skip
    return zip(
        map(_SEQ, events), _times(events), map(_TASK, events), map(_ATTEMPT, events), elements,
        cached, workers, began, strict=True,
    )  # fmt: skip


#: Hot event class -> its log rows from a list of its events.
_HOT: dict[type, Callable[[list[Any]], Any]] = dict(
    zip(HOT_EVENTS, (_queued_rows, _started_rows, _succeeded_rows), strict=True)
)
_RESULT = operator.attrgetter("result")


def _log_segment(
    run_id: str,
    kind: str,
    events: list[Any],
    make_rows: Callable[[list[Any]], Any],
    version: Callable[[], str | None] | None,
) -> list[tuple[str, Any]]:
    """The event-log segment of ``events`` (deferred: see :meth:`Batch.resolve`)."""
    rows = list(make_rows(events))
    noted = version() if version is not None else None
    return [(_SEGMENT, (run_id, rows[0][0], rows[-1][0], kind, _ENCODE_ROWS(rows), noted))]


class _Noting:
    """A deferred statement that may leave a version for the log segment after it."""

    __slots__ = ("noted",)

    def __init__(self) -> None:
        self.noted: str | None = None

    def version(self) -> str | None:
        """The version to note on the log segment (once this was called), or None."""
        return self.noted


class _LaterResults(_Noting):
    """Deferred :meth:`Projector._results` of succeeded events whose results all pickle
    (``blob``, made by :meth:`Projector._pickled`): their rows, with :meth:`version` for the
    log segment that follows. Its blobs go to ``batch`` (written after its statements)."""

    __slots__ = ("batch", "blob", "events", "projector", "track")

    def __init__(self, projector: Projector, track: _Track, events: list[Any], blob: bytes,
                 batch: Batch) -> None:  # fmt: skip
        super().__init__()
        self.projector, self.track, self.events = projector, track, events
        self.blob, self.batch = blob, batch

    def __call__(self) -> list[tuple[str, Any]]:
        own = Batch()
        version = self.projector._results(self.track, self.events, own, self.blob)
        own.resolve()
        self.batch.blobs.update(own.blobs)
        self.noted = version() if version is not None else None
        ops: list[tuple[str, Any]] = own.ops
        return ops


class _NoneResults(_Noting):
    """Deferred result rows of tasks that returned None and receive nothing.

    When ``alone`` (the batch's other results need rows of their own) and the tasks share one
    version, no row is written: :meth:`version` gives the version for the log segment.
    """

    __slots__ = ("alone", "attempts", "context", "tasks")

    def __init__(self, context: RunContext, tasks: list[str], events: list[Any], alone: bool):
        super().__init__()
        self.context, self.tasks, self.alone = context, tasks, alone
        self.attempts = list(map(_ATTEMPT, events))

    def __call__(self) -> list[tuple[str, Any]]:
        versions = self.context.all_versions()
        of_tasks = list(map(versions.__getitem__, self.tasks))
        if self.alone and of_tasks.count(of_tasks[0]) == len(of_tasks):
            self.noted = of_tasks[0]
            return []
        rows = list(zip(self.tasks, self.attempts, of_tasks, strict=True))
        created = time.time()
        return [(_RESULT_SEGMENT, (self.context.run_id, "none", created, _ENCODE_ROWS(rows)))]


@dataclass(slots=True)
class _Track:
    """Writer-side state of one run while its events arrive."""

    context: RunContext
    row: list[Any]
    wall: float = 0.0
    digests: dict[str, str | None] = field(default_factory=dict)
    var_digests: dict[str, str] = field(default_factory=dict)
    #: generic event-log rows of the rare events, written as one segment per batch.
    rare: list[tuple[Any, ...]] = field(default_factory=list)
    #: task -> (version, inputs hash, cache key) computed by a cache lookup that missed.
    keys: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    #: task -> (version, inputs hash, cache key, digest) of a result loaded by a lookup.
    refs: dict[str, tuple[str, str | None, str | None, str]] = field(default_factory=dict)
    #: tasks whose result None needs no Python (see :meth:`Projector._results`).
    plain: frozenset[str] | None = None
    #: tasks whose results are packed (see :meth:`Projector._pack`).
    packed: frozenset[str] | None = None


def _packed_tasks(context: RunContext) -> frozenset[str]:
    """Tasks of the run whose results are packed: persisted, kept local, no cache key.

    Kept in ``plan.memo``, per set of local tasks.
    """
    plan, local = context.plan, context.local

    def make() -> frozenset[str]:
        specs = list(map(plan.specs.__getitem__, plan.names))
        found = frozenset(plan.names).difference(cache_tasks(plan))
        if operator.countOf(map(_PERSIST, specs), False):  # checked in C: rare
            found = found.difference(s.name for s in specs if s.persist is False)
        return found if local is None else found & local

    return plan.table(("packed_tasks", local), make)


def _plain_tasks(context: RunContext) -> frozenset[str]:
    """Packed tasks (:func:`_packed_tasks`) that receive nothing: a result None of theirs has
    the empty inputs hash, no cache key and the digest of None.

    Kept in ``plan.memo``, per set of run variables' names and local tasks.
    """
    plan, variables = context.plan, context.variables

    def make() -> frozenset[str]:
        names = plan.names
        no_data = compress(names, map(operator.not_, map(plan.data_params.__getitem__, names)))
        if variables:
            no_data = (  # type: ignore[assignment]
                name
                for name in no_data
                if not any(p.name in variables for p in plan.free_params[name])
            )
        return _packed_tasks(context).intersection(no_data)

    return plan.table(("plain_tasks", frozenset(variables), context.local), make)


_PERSIST = operator.attrgetter("persist")


def _silent(message: str) -> None:
    """A ``warn`` for :func:`value_digest` that says nothing."""


#: A batch's results are packed into one pickle when it is at most this large (a resume
#: loads a whole pack to restore one of its results); larger ones are stored one by one.
PACK_BYTES = 1 << 20


class Projector:
    """Turns submitted items into :class:`Batch` statements (runs in the writer thread only).

    The writer appends events of the hot classes to the lists of :attr:`hot` itself, and
    passes every other item to :meth:`apply`; :meth:`cut` (before a commit) projects the lists.

    Nothing is written per attempt: the ``attempts`` view derives attempts from the event
    log, and the results' keys (version, inputs hash, cache key, digest) are written in bulk,
    one JSON array per batch (see :data:`RESULTS_VIEW`).

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
        }
        #: event class -> (row builder, handler or None), filled on first sight.
        self._kinds: dict[type, tuple[Callable[[Any], tuple[Any, ...]], Any]] = {}

    @property
    def active(self) -> bool:
        """Whether a run is going on (its context arrived, its end did not)."""
        return bool(self._runs)

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

    def take(self, track: _Track, batch: Batch) -> None:
        """Project the events waiting in the run's own queues (``context.hot``), if any."""
        queues = track.context.hot
        if queues is not None:
            # popleft as many times as there are items now, in C: safe while the loop appends.
            lists = [list(starmap(q.popleft, repeat((), len(q)))) for q in queues]
            if any(lists):
                self._project_hot(track.context.run_id, lists, batch)

    def end(self, batch: Batch) -> None:
        """Before a commit: :meth:`cut`, the runs' queues, and the rare events' segments."""
        self.cut(batch)
        for track in list(self._runs.values()):
            self.take(track, batch)
        for run_id, track in list(self._runs.items()) + self._finished:
            if track.rare:
                batch.ops.append(partial(_log_segment, run_id, "*", track.rare, list, None))
                track.rare = []
        self._finished.clear()

    def _project_hot(self, run_id: str, lists: list[list[Any]], batch: Batch) -> None:
        """Log segments and result rows of one run's hot events (queued, started, succeeded)."""
        track = self._runs.get(run_id)
        if track is None:
            return  # a run this store has no context for
        queued, started, succeeded = lists
        ops = batch.ops
        if queued:
            ops.append(partial(_log_segment, run_id, "TaskQueued", queued, _queued_rows, None))
        if started:
            ops.append(partial(_log_segment, run_id, "TaskStarted", started, _started_rows, None))
        if succeeded:
            blob = self._pickled(succeeded)
            version: Callable[[], str | None] | None
            if blob is not None and len(blob) <= min(PACK_BYTES, self.max_result_bytes // 2):
                # Every result pickles, and they are small: none can be refused, so there is
                # nothing to warn about and their rows can wait.
                later = _LaterResults(self, track, succeeded, blob, batch)
                ops.append(later)
                version = later.version
            else:  # a result may not be storable: now, so that its warning is known
                version = self._results(track, succeeded, batch, blob)
            ops.append(
                partial(_log_segment, run_id, "TaskSucceeded", succeeded, _succeeded_rows, version)
            )

    @staticmethod
    def _pickled(events: list[Any]) -> bytes | None:
        """The pickle of the events' results, as one list (what a pack holds), or None when
        some result does not pickle."""
        try:
            return dumps(list(map(_RESULT, events)))
        except Exception:
            return None

    def _context(self, context: RunContext, batch: Batch) -> None:
        plan = context.plan
        track = _Track(context, [])
        track.row = [
            context.run_id, plan.flow_name, plan.flow_version, safe_json(context.variables),
            "pending", None, None, None, None, context.resumed_from, HOST, os.getpid(), None,
            self._var_digests(track),
        ]  # fmt: skip
        self._runs[context.run_id] = track
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

    def _var_digests(self, track: _Track) -> str | None:
        """JSON of the run variables' digests, for resume to compare inputs with."""
        variables = track.context.variables
        if not variables:
            return None
        for name, value in variables.items():
            # No warning here: the tasks that receive a variable that does not pickle warn.
            track.var_digests[name] = value_digest(value, "", warn=_silent)
        return _ENCODE(track.var_digests)

    # -- rare events -------------------------------------------------------------------------

    def _run_started(self, track: _Track, e: ev.RunStarted, batch: Batch) -> None:
        track.wall = e.wall_start - e.t
        row = track.row
        row[4], row[5], row[8], row[12] = "running", e.wall_start, e.parent_run, track.wall
        batch.ops.append((_INSERT_FLOW, (e.flow, e.wall_start)))
        batch.ops.append((_UPSERT_RUN, tuple(row)))

    def _run_finished(self, track: _Track, e: ev.RunFinished, batch: Batch) -> None:
        self.cut(batch)  # the run's hot events still need its track
        self.take(track, batch)  # all of them are queued: the engine emits RunFinished last
        row = track.row
        row[4], row[6], row[7] = e.status, track.wall + e.t, e.error
        batch.ops.append((_UPSERT_RUN, tuple(row)))
        del self._runs[e.run_id]
        self._finished.append((e.run_id, track))

    # -- results -----------------------------------------------------------------------------

    def _results(
        self, track: _Track, events: list[Any], batch: Batch, blob: bytes | None = None
    ) -> Callable[[], str | None] | None:
        """Result rows of ``events`` (TaskSucceeded), in bulk: one JSON array per kind.

        - Tasks of :func:`_plain_tasks` that returned None: a kind ``none`` row each, made in
          C; when all of ``events`` are such tasks of one version, no row at all: the version
          is to be noted on the events' log segment (``result_version``). What is returned
          tells it, once the deferred statements before it are resolved (else None).
          ``blob``: the pickle of all of ``events``' results, when :meth:`_pickled` made it.
        - Other results that need no cache key (:func:`_packed_tasks`): one pickle of the
          list of them and a kind ``packed`` row each (:meth:`_pack`).
        - The rest (cache keys, results served by a lookup, ``persist=False``): a kind
          ``rows`` row each, with their keys (:meth:`_result`).
        """
        n = len(events)
        tasks = list(map(_TASK, events))
        plain = track.plain
        if plain is None:
            plain = track.plain = _plain_tasks(track.context)
        fast: list[Any] = []
        packed: list[Any] = []
        slow: list[Any] = []
        if (
            operator.countOf(map(_ELEMENT, events), None) == n
            and operator.countOf(map(_CACHED, events), False) == n
        ):  # no fan-out elements, nothing served by a lookup: sorted in C when possible
            # `is`, never `==`: a result's == may return an array or raise (DataFrames).
            if not any(map(operator.is_not, map(_RESULT, events), repeat(None))) and all(
                map(plain.__contains__, tasks)
            ):
                fast = events
            elif all(map(self._packed(track).__contains__, tasks)):
                packed = events
        if not fast and not packed:
            packable = self._packed(track)
            for e in events:
                if e.element is not None:
                    continue  # fan-out elements have no result of their own
                if e.cached:
                    slow.append(e)
                elif e.result is None and e.task in plain:
                    fast.append(e)
                elif e.task in packable:
                    packed.append(e)
                else:
                    slow.append(e)
        run_id = track.context.run_id
        noted: _NoneResults | None = None
        if fast:
            tasks = list(map(_TASK, fast))
            if track.keys:
                for name in tasks:
                    track.keys.pop(name, None)
            batch.blobs[NONE_DIGEST] = NONE_BLOB
            noted = _NoneResults(track.context, tasks, fast, alone=not slow and not packed)
            batch.ops.append(noted)
        if packed:
            self._pack(track, packed, batch, blob if packed is events else None)
        if slow:
            now = time.time()
            rows = []
            entries = []
            for e in slow:
                name = e.task
                ended = track.wall + e.t
                if e.cached:
                    ref = track.refs.pop(name, None)
                    if ref is None:
                        continue  # served by a hook this store did not hear of
                    version, inputs, key, digest = ref
                    size = None
                else:
                    version, inputs, key, digest, size = self._result(track, name, e.result, batch)
                rows.append((name, e.attempt, version, inputs, key, digest, size, ended))
                if key is not None and digest is not None:
                    entries.append((key, ended, run_id, name, version, inputs, digest, size))
            if rows:
                batch.ops.append((_RESULT_SEGMENT, (run_id, "rows", now, _ENCODE_ROWS(rows))))
            if entries:
                batch.ops.append((_CACHE_ENTRY, entries))
        return noted.version if noted is not None and noted.alone else None

    def _packed(self, track: _Track) -> frozenset[str]:
        found = track.packed
        if found is None:
            found = track.packed = _packed_tasks(track.context)
        return found

    def _pack(
        self, track: _Track, events: list[Any], batch: Batch, blob: bytes | None = None
    ) -> None:
        """One pickle of the results of ``events`` and a ``packed`` row per task.

        No digest and no inputs hash is computed: resume works them out from the values
        when it needs them (see :mod:`nbflow.cache`), so the common case costs one C-level
        ``pickle.dumps`` per batch (none when ``blob``, that pickle, is given). A pack that
        cannot be pickled as a whole (some result does not pickle), or is large, is stored
        result by result instead (:meth:`_pickle`: one warning per result that cannot be
        stored).
        """
        tasks = list(map(_TASK, events))
        attempts = list(map(_ATTEMPT, events))
        if track.keys:
            for name in tasks:
                track.keys.pop(name, None)
        track.digests.update(zip(tasks, repeat(None)))  # no digest known: see _inputs_hash
        if blob is None:
            blob = self._pickled(events)
        run_id, context, now = track.context.run_id, track.context, time.time()
        if blob is not None and len(blob) <= min(PACK_BYTES, self.max_result_bytes):

            def pack_segment() -> list[tuple[str, Any]]:
                of_tasks = map(context.all_versions().__getitem__, tasks)
                rows = _ENCODE_ROWS(list(zip(tasks, attempts, of_tasks, strict=True)))
                return [(_PACK_SEGMENT, (run_id, now, rows, blob))]

            batch.ops.append(pack_segment)
            return
        stored_as = [self._pickle(track, e.task, e.result, batch) for e in events]
        ended = [track.wall + e.t for e in events]

        def rows_segment() -> list[tuple[str, Any]]:
            versions = context.all_versions()
            rows = [
                (name, attempt, versions[name], None, None, digest if stored else None, size, t)
                for name, attempt, (digest, stored, size), t in zip(
                    tasks, attempts, stored_as, ended, strict=True
                )
            ]
            return [(_RESULT_SEGMENT, (run_id, "rows", now, _ENCODE_ROWS(rows)))]

        batch.ops.append(rows_segment)

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
                f"({describe(error)}), so it is not stored; the run goes on, but "
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
            # A dependency that did not succeed passed None (trigger rules like all_done); a
            # packed result has no digest (None: then this task gets no inputs hash).
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
