"""Results in the store: packs of small results, files of large ones, and lazy handles.

A run's journal gives the writer, per result, the task and its *item*: the value itself when
it is plain (:data:`~nbflow.store.eventlog.LOGGED`: None, a bool, an int, a float), else its
snapshot (:mod:`nbflow.store.codecs`): a pickle's bytes, or a :class:`Snapshot` (another
codec, or a file), or :data:`UNSTORED`, or the :class:`ResultRow` of a stored result the
run reused (resume, cache). What a commit writes of a run's results is one *pack*, in the
run's ``records`` row of that commit: ``tasks`` lists the tasks (JSON), ``data`` is one
pickle of their items (a value, or the bytes of its snapshot: a snapshot's own bytes are
copied, never unpickled) and ``checksum`` is the SHA-256 of ``data``. Items that are more
than that have a ``meta`` entry (:data:`META`); a pack of plain items has none.

Both packs and files are checked when read: a damaged result is never served, it is a cache
miss with a warning. A result read back is a :class:`StoredResult`, which loads its value
when first asked (``load()``), so a resumed run reads only the results that a task which
runs, a condition, or the user needs.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Mapping, Set
from typing import TYPE_CHECKING, Any, NamedTuple

from .codecs import PICKLE_PROTOCOL, Snapshot
from .eventlog import LOGGED
from .keys import CONTROLLED

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

#: The items of a pack's ``meta`` entry, in order (None where the item is plain); a result
#: whose attempt cancelled or finished part of its run is ``controlled``: never reused.
META = ("codec", "size", "file", "reused_from", "pack", "item", "controlled")
#: The item of a result that could not be serialised (it is not stored: a warning said so).
UNSTORED = "nbflow:unstored"
_PLAIN = LOGGED | {bytes}  # items that need no meta entry: a value, or a pickle's bytes
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _names(tasks: list[str]) -> str:
    """The JSON array of ``tasks``: joined as they are when no name needs escaping (task
    names are identifiers, as a rule), which is several times faster than encoding each."""
    if not tasks:
        return "[]"
    joined = '","'.join(tasks)
    # Every quote is a separator's (a name with a quote, a backslash or a control character
    # needs escaping: then JSON's own encoder).
    if (
        joined.isascii()
        and "\\" not in joined
        and joined.count('"') == 2 * len(tasks) - 2
        and joined.isprintable()
    ):
        return f'["{joined}"]'
    return _dumps(tasks)


class ResultRow(NamedTuple):
    """One stored result (a row of the ``results`` view); ``pack`` and ``item`` say where its
    value is (for a reused result: in the pack it was first stored in)."""

    run_id: str
    pack: int
    item: int
    task: str
    identity: str | None
    codec: str | None
    size: int | None
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


class Pack(NamedTuple):
    """What a commit writes of one run's results (see the module docstring)."""

    tasks: str
    meta: str | None
    data: bytes
    checksum: str
    files: list[tuple[str, Snapshot]]  # (task, its file's snapshot)
    cache_entries: list[tuple[str, str, int]]  # (cache key, task, item)


def pack(flat: list[Any], keys: dict[str, str], controlled: Set[str] = frozenset()) -> Pack:
    """The pack of ``flat`` (task, item, task, item...); ``keys`` holds the cache keys of
    tasks whose results go into the cache (taken from it as they are stored), ``controlled``
    the tasks whose results are never to be reused."""
    tasks, items = flat[0::2], flat[1::2]
    meta: list[Any] | None = None
    files: list[tuple[str, Snapshot]] = []
    if controlled or not set(map(type, items)) <= _PLAIN:
        meta = [None] * len(items)
        for i, item in enumerate(items):
            kind = type(item)
            if kind is Snapshot:
                if item.file is not None:
                    files.append((tasks[i], item))
                    items[i] = None
                else:
                    items[i] = item.data
                if item.codec != "pickle" or item.file is not None:
                    meta[i] = [item.codec, item.size, item.file]
            elif kind is ResultRow:  # the very same stored value, by reference
                items[i] = None
                meta[i] = [item.codec, item.size, item.file, item.run_id, item.pack, item.item]
            elif item is UNSTORED:
                items[i] = None
                meta[i] = [None]
            if tasks[i] in controlled:
                meta[i] = [*(meta[i] or ["pickle"]), None, None, None, None, None, None][:6]
                meta[i].append(True)
    entries: list[tuple[str, str, int]] = []
    if keys:
        for i, task in enumerate(tasks):
            key = keys.pop(task, None)
            if key is not None and (meta is None or meta[i] is None or meta[i][0] is not None):
                entries.append((key, task, i))
    data = pickle.dumps(items, protocol=PICKLE_PROTOCOL)
    return Pack(
        _names(tasks),
        _dumps(meta) if meta is not None else None,
        data,
        hashlib.sha256(data).hexdigest(),
        files,
        entries,
    )


def unpack(
    run_id: str,
    pack_id: int,
    created: float,
    tasks: str,
    meta: str | None,
    identities: Mapping[str, str | None],
) -> list[ResultRow]:
    """The :class:`ResultRow` of each result of a pack (``identities``: of the run's tasks)."""
    names = json.loads(tasks)
    extras = json.loads(meta) if meta else [None] * len(names)
    return [
        result_row(run_id, pack_id, created, i, task, extra, identities.get(task))
        for i, (task, extra) in enumerate(zip(names, extras, strict=True))
    ]


def result_row(
    run_id: str,
    pack_id: int,
    created: float,
    item: int,
    task: str,
    extra: list[Any] | None,
    identity: str | None,
) -> ResultRow:
    """The :class:`ResultRow` of item ``item`` of a pack, whose meta entry is ``extra``."""
    if extra is None:  # a plain item: the value, or its pickle
        return ResultRow(run_id, pack_id, item, task, identity, "pickle", None, None, None,
                         created)  # fmt: skip
    codec, size, file, reused_from, home, home_item, controlled = (*extra, *[None] * 7)[:7]
    if home is None:
        home, home_item = pack_id, item
    if controlled and identity is not None:
        identity = CONTROLLED + identity
    return ResultRow(run_id, home, home_item, task, identity, codec, size, file, reused_from,
                     created)  # fmt: skip


def item_bytes(item: Any) -> bytes:
    """The serialised bytes of an inline item (a plain value: its pickle)."""
    return item if type(item) is bytes else pickle.dumps(item, protocol=PICKLE_PROTOCOL)


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

    @property
    def cheap(self) -> bool:
        """Whether reading it is quick: its bytes are in the database (a value below the
        store's ``file_bytes``), not a file of a large result (see :mod:`nbflow.lazy`)."""
        return self.row.file is None

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
        row = self.row
        size = "" if row.size is None else f"{row.size / 2**20:.1f} MB " if row.size >= 2**20 \
            else f"{row.size} bytes "  # fmt: skip
        return f"<stored result of {row.task!r} from run {row.run_id[:8]}: {size}{row.codec}>"
