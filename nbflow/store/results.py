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
import operator
from itertools import accumulate, repeat
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


#: The first item of what a run hands the writer for one result, a plain tuple (made once
#: per task, on the event loop: a tuple costs less than a NamedTuple's ``__new__``):
#: ``(KEPT, run_id, task, attempt, identity, snapshot, cache_key[, reused row])``. The
#: snapshot is the value's pickle (bytes), a :class:`~nbflow.store.codecs.Snapshot`, or None
#: (not stored); ``reused`` is the stored row the result was reused from (resume, cache).
KEPT = "kept"


class Kept(NamedTuple):
    """One result for the writer, as :func:`pack` reads it (see :data:`KEPT`)."""

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


_TASK, _ATTEMPT, _IDENTITY, _SNAPSHOT = (
    operator.itemgetter(2), operator.itemgetter(3), operator.itemgetter(4), operator.itemgetter(5),
)  # fmt: skip


def pack(results: list[tuple[Any, ...]]) -> tuple[str, bytes, str, list[Snapshot]]:
    """``(rows JSON, data, checksum, files)`` of one run's results of one commit, from the
    tuples its recorder handed over (:data:`KEPT`); ``files`` are the snapshots of those
    stored as files.

    The usual commit holds only small pickles: their rows are made in C.
    """
    snaps = list(map(_SNAPSHOT, results))
    if all(type(snap) is bytes for snap in snaps):
        lengths = list(map(len, snaps))
        offsets = list(accumulate(lengths, initial=0))[:-1]
        rows: list[Any] = list(
            zip(
                map(_TASK, results), map(_ATTEMPT, results), map(_IDENTITY, results),
                repeat("pickle"), lengths, offsets, lengths, strict=False,
            )
        )  # fmt: skip
        data = b"".join(snaps)
        return _dump_rows(rows), data, hashlib.sha256(data).hexdigest(), []
    rows, chunks, offset = [], [], 0
    files: list[Snapshot] = []
    for item in results:
        kept = Kept(*item)
        snap, reused = kept.snapshot, kept.reused
        head = [kept.task, kept.attempt, kept.identity]
        if reused is not None:  # the very same stored value, by reference
            rows.append([*head, reused.codec, reused.size, reused.offset, reused.length,
                         reused.file, reused.run_id, reused.pack])  # fmt: skip
        elif snap is None:
            rows.append(head)
        elif isinstance(snap, Snapshot) and snap.file is not None:
            rows.append([*head, snap.codec, snap.size, None, None, snap.file])
            files.append(snap)
        else:
            inline = snap if isinstance(snap, bytes) else snap.data
            assert inline is not None
            codec = snap.codec if isinstance(snap, Snapshot) else "pickle"
            rows.append([*head, codec, len(inline), offset, len(inline)])
            chunks.append(inline)
            offset += len(inline)
    data = b"".join(chunks)
    return _dump_rows(rows), data, hashlib.sha256(data).hexdigest(), files


_dump_rows = json.JSONEncoder(separators=(",", ":")).encode


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
