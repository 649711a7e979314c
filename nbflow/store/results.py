"""Results in the store: packs of small results, files of large ones, and lazy handles.

What a commit writes of a run's results is one *pack*: a row of ``result_packs`` whose
``rows`` list each result (:data:`RESULT_FIELDS`) and whose ``data`` holds the small ones'
bytes one after the other, with the SHA-256 of ``data`` as its ``checksum``. A large result is
a file (:class:`~nbflow.store.codecs.Files`) whose name is its content's digest. Both are
checked when read: a damaged result is never served, it is a cache miss with a warning.

A result read back from the store is a :class:`StoredResult`: it loads its value when first
asked (``load()``), so a resumed run reads only the results that a task which runs, a
condition, or the user needs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from itertools import accumulate, islice, repeat
from typing import TYPE_CHECKING, Any, NamedTuple

from .codecs import Snapshot, restore

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

#: The items of a row of a pack's ``rows`` JSON, in order.
RESULT_FIELDS = (
    "task",
    "attempt",
    "identity",
    "codec",
    "size",
    "offset",
    "length",
    "file",
    "reused_from",
)


#: The first item of what a run hands the writer for one result through the store's shared
#: queue: ``(KEPT, run_id, task, attempt, identity, snapshot, cache_key[, reused row])``. The
#: snapshot is the value's pickle (bytes), a :class:`~nbflow.store.codecs.Snapshot`, or None
#: (not stored); ``reused`` is the stored row the result was reused from (resume, cache).
#: A run's own results queue holds :data:`FLAT` fields per result instead (see
#: :class:`KeptResults`).
KEPT = "kept"
#: A run's results queue holds, per result, these fields one after the other (no tuple: see
#: :func:`nbflow.store.eventlog.hot_route` for why nothing tracked is left queued).
FLAT = ("task", "attempt", "snapshot", "cache_key")


class Kept(NamedTuple):
    """One result for the writer, as it reads a :data:`KEPT` tuple."""

    marker: str
    run_id: str
    task: str
    attempt: int
    identity: str | None
    snapshot: Snapshot | bytes | None
    cache_key: str | None = None
    reused: ResultRow | None = None


class ResultRow(NamedTuple):
    """One stored result (a row of the ``results`` view)."""

    run_id: str
    pack: int
    task: str
    attempt: int
    identity: str | None
    codec: str | None
    size: int | None
    offset: int | None
    length: int | None
    file: str | None
    reused_from: str | None
    created: float

    @property
    def stored(self) -> bool:
        """Whether the value itself is in the store (not: it did not serialise)."""
        return self.codec is not None

    @property
    def digest(self) -> str | None:
        """The content digest of a result stored as a file (inline ones: ask the handle)."""
        if self.file is None:
            return None
        return self.file.rsplit("/", 1)[-1].split(".", 1)[0]


class KeptResults:
    """The results of one run that one commit writes, as columns.

    Columns, not a tuple per result: a commit of a busy run holds thousands, and that many
    tuples alive at once would each count towards the garbage collector's next collection.
    """

    __slots__ = ("attempts", "identities", "keys", "reused", "snapshots", "tasks")

    def __init__(self) -> None:
        self.tasks: list[str] = []
        self.attempts: list[int] = []
        self.identities: list[str | None] = []
        self.snapshots: list[Snapshot | bytes | None] = []
        self.keys: list[str | None] = []
        self.reused: dict[int, ResultRow] = {}  # position -> the stored row reused there

    def add_flat(self, flat: list[Any], identity: Mapping[str, str | None]) -> None:
        """Add what a run's results queue held (:data:`FLAT` fields per result);
        ``identity`` maps its tasks to their identities."""
        width = len(FLAT)
        tasks = flat[0::width]
        self.tasks += tasks
        self.attempts += flat[1::width]
        self.snapshots += flat[2::width]
        self.keys += flat[3::width]
        self.identities += map(identity.__getitem__, tasks)

    def add(self, item: tuple[Any, ...]) -> None:
        """Add one :data:`KEPT` tuple."""
        kept = Kept(*item)
        if kept.reused is not None:
            self.reused[len(self.tasks)] = kept.reused
        self.tasks.append(kept.task)
        self.attempts.append(kept.attempt)
        self.identities.append(kept.identity)
        self.snapshots.append(kept.snapshot)
        self.keys.append(kept.cache_key)

    def __len__(self) -> int:
        return len(self.tasks)

    def cache_entries(self) -> list[tuple[str, str]]:
        """``(cache key, task)`` of the results to be found by their cache key."""
        return [(key, task) for task, key in zip(self.tasks, self.keys, strict=True) if key]


def pack(kept: KeptResults) -> tuple[str, bytes, str, list[Snapshot]]:
    """``(rows JSON, data, checksum, files)`` of one run's results of one commit; ``files``
    are the snapshots of those stored as files.

    The usual commit holds only small pickles: their rows are made in C.
    """
    snaps = kept.snapshots
    if not kept.reused and all(type(snap) is bytes for snap in snaps):
        lengths = list(map(len, snaps))  # type: ignore[arg-type]
        offsets = accumulate(lengths, initial=0)
        rows = zip(kept.tasks, kept.attempts, kept.identities, repeat("pickle"), lengths, offsets,
                   lengths)  # fmt: skip
        data = b"".join(snaps)  # type: ignore[arg-type]
        return _rows_json(rows), data, hashlib.sha256(data).hexdigest(), []
    listed: list[list[Any]] = []
    chunks: list[bytes] = []
    offset = 0
    files: list[Snapshot] = []
    for position, snap in enumerate(snaps):
        head = [kept.tasks[position], kept.attempts[position], kept.identities[position]]
        reused = kept.reused.get(position)
        if reused is not None:  # the very same stored value, by reference
            listed.append([*head, reused.codec, reused.size, reused.offset, reused.length,
                           reused.file, reused.run_id, reused.pack])  # fmt: skip
        elif snap is None:
            listed.append(head)
        elif isinstance(snap, Snapshot) and snap.file is not None:
            listed.append([*head, snap.codec, snap.size, None, None, snap.file])
            files.append(snap)
        else:
            inline = snap if isinstance(snap, bytes) else snap.data
            assert inline is not None
            codec = snap.codec if isinstance(snap, Snapshot) else "pickle"
            listed.append([*head, codec, len(inline), offset, len(inline)])
            chunks.append(inline)
            offset += len(inline)
    data = b"".join(chunks)
    return _rows_json(iter(listed)), data, hashlib.sha256(data).hexdigest(), files


_dump_rows = json.JSONEncoder(separators=(",", ":")).encode
#: Rows encoded at a time: fewer than the collector's first threshold (700), so the rows of
#: a large commit never exist all at once (see :class:`KeptResults`).
_CHUNK = 256


def _rows_json(rows: Iterator[Any]) -> str:
    """The JSON array of ``rows``, encoded :data:`_CHUNK` rows at a time."""
    parts = []
    while chunk := list(islice(rows, _CHUNK)):
        parts.append(_dump_rows(chunk)[1:-1])
    return "[" + ",".join(parts) + "]"


def unpack(run_id: str, pack_id: int, created: float, rows: str) -> list[ResultRow]:
    """The :class:`ResultRow` of each result of a pack.

    A reused result refers to the pack of the run it came from (its tenth item): the row
    given here points there, so loading it reads the original bytes.
    """
    found = []
    for row in json.loads(rows):
        row = row + [None] * (10 - len(row))
        task, attempt, identity, codec, size, offset, length, file, reused_from, home = row
        found.append(
            ResultRow(
                run_id,
                home if home is not None else pack_id,
                task,
                attempt,
                identity,
                codec,
                size,
                offset,
                length,
                file,
                reused_from,
                created,
            )
        )
    return found


class DamagedResultError(ValueError):
    """A stored result's bytes do not match their checksum (the disk damaged them)."""


class StoredResult:
    """A task's result as a store keeps it, loaded on first :meth:`load` (then kept).

    Its value is what the task returned when it ran (see :mod:`nbflow.store.codecs`).

    Raises (from :meth:`load`):
        DamagedResultError: the stored bytes fail their checksum.
        StoreError: the store cannot be read, or the result's file is gone.
    """

    __slots__ = ("_digest", "_store", "_value", "row")

    #: Read when first needed (see :mod:`nbflow.lazy`).
    nbflow_lazy = True
    _MISSING: Any = object()

    def __init__(self, store: SQLiteStore, row: ResultRow) -> None:
        self._store = store
        self.row = row
        self._value: Any = self._MISSING
        self._digest: str | None = row.digest

    @property
    def loaded(self) -> bool:
        """Whether the value has been read already."""
        return self._value is not self._MISSING

    def load(self) -> Any:
        """The value (read, checked and deserialised the first time)."""
        if self._value is self._MISSING:
            self._value = self._store.read_result(self.row)
        return self._value

    def verify(self) -> None:
        """Check the stored bytes against their checksum (a file: read through once).

        Raises:
            DamagedResultError: they do not match.
            StoreError: they are gone.
        """
        self._store.verify_result(self.row)

    def digest(self) -> str:
        """SHA-256 (hex) of the stored bytes: equal results have equal digests."""
        if self._digest is None:
            self._digest = hashlib.sha256(self._store.result_bytes(self.row)).hexdigest()
        return self._digest

    def __repr__(self) -> str:
        row, size = self.row, self.row.size or 0
        shown = f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size} bytes"
        return f"<stored result of {row.task!r} from run {row.run_id[:8]}: {shown} {row.codec}>"


def load_inline(data: bytes, row: ResultRow, serializer: Any) -> Any:
    """The value of an inline result from its pack's ``data``."""
    assert row.offset is not None and row.length is not None
    return restore(serializer, data[row.offset : row.offset + row.length])
