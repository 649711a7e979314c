"""Serialisers: how a task's result becomes bytes in the store, and bytes a result again.

A result is serialised once, when its task returns: a :class:`Snapshot`. What the store keeps
(and what a resumed run or the cache gives back) is what the task returned at that moment,
whatever later happens to the object (a downstream task adding a column to a DataFrame it
received changes nothing stored).

The first serialiser of a store's :class:`Serializers` that accepts a value is used; pickle,
which accepts anything, comes last, and takes a value another serialiser accepted but then
failed to write (a frame Parquet refuses is still stored). Built in:

- ``parquet``: pandas DataFrames, when pyarrow is installed (``pip install nbflow[data]``)
  and the frame comes back from Parquet unchanged (see :mod:`nbflow.store.parquet`);
- ``npy``: numpy arrays of a plain dtype (numpy's own file format);
- ``bytes``: ``bytes`` and ``bytearray``, as they are;
- ``pickle``: everything else (protocol 5).

Small snapshots are kept in the database; one larger than the store's ``file_bytes`` goes to
a :class:`Files` directory beside it, named by the SHA-256 of its content, so an identical
result is stored once. A value whose size is known before it is serialised (a DataFrame,
an array, bytes) is streamed into its file, never held twice in memory.

Add a serialiser for a type of your own with ``store.serializers.register(MySerializer())``:
any object with the attributes and methods of :class:`Serializer` (see docs/extending.md).

Trust: pickled results are trusted local data, like a notebook's own files; never open a
store you did not write yourself (loading a result unpickles it).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from .parquet import ParquetSerializer

PICKLE_PROTOCOL = 5
#: Snapshots larger than this go to files (a store's default ``file_bytes``).
FILE_BYTES = 1 << 20


@runtime_checkable
class Serializer(Protocol):
    """Turns values of some types into bytes and back.

    ``name`` is stored with each result (so a store can read what it wrote: keep it stable);
    ``suffix`` ends the name of a result's file. ``size_hint(value)`` may return the size
    the value will roughly take, or None when unknown: a value known to be large is streamed
    straight into its file.
    """

    name: str
    suffix: str

    def accepts(self, value: Any) -> bool:
        """Whether this serialiser handles ``value``."""

    def dump(self, value: Any, file: IO[bytes]) -> None:
        """Write ``value`` to ``file``."""

    def load(self, file: IO[bytes]) -> Any:
        """Read a value written by :meth:`dump`."""

    def size_hint(self, value: Any) -> int | None:
        """Roughly how many bytes ``value`` will take (None: unknown)."""


class PickleSerializer:
    """Anything that pickles (protocol 5)."""

    name, suffix = "pickle", ".pickle"

    def accepts(self, value: Any) -> bool:
        """Always."""
        return True

    def dump(self, value: Any, file: IO[bytes]) -> None:
        """``pickle.dump``."""
        pickle.dump(value, file, protocol=PICKLE_PROTOCOL)

    def load(self, file: IO[bytes]) -> Any:
        """``pickle.load``."""
        return pickle.load(file)

    def size_hint(self, value: Any) -> int | None:
        """Unknown (pickling is how to know)."""
        return None


class BytesSerializer:
    """``bytes`` and ``bytearray``, as they are."""

    name, suffix = "bytes", ".bin"

    def accepts(self, value: Any) -> bool:
        """For bytes and bytearray."""
        return type(value) in (bytes, bytearray)

    def dump(self, value: Any, file: IO[bytes]) -> None:
        """Write the bytes (a bytearray's type is kept: it pickles in a byte)."""
        file.write(b"A" if type(value) is bytearray else b"B")
        file.write(value)

    def load(self, file: IO[bytes]) -> Any:
        """Read them back."""
        kind, data = file.read(1), file.read()
        return bytearray(data) if kind == b"A" else data

    def size_hint(self, value: Any) -> int | None:
        """Their length."""
        return len(value)


class NumpySerializer:
    """numpy arrays of a plain dtype, in numpy's ``.npy`` format (no pickle inside)."""

    name, suffix = "npy", ".npy"

    def accepts(self, value: Any) -> bool:
        """For ``numpy.ndarray`` (exactly: subclasses may carry more) not of dtype object."""
        kind = type(value)
        return (
            kind.__module__ == "numpy" and kind.__name__ == "ndarray" and not value.dtype.hasobject
        )

    def dump(self, value: Any, file: IO[bytes]) -> None:
        """``numpy.save``."""
        import numpy as np

        np.save(file, value, allow_pickle=False)

    def load(self, file: IO[bytes]) -> Any:
        """``numpy.load``."""
        import numpy as np

        return np.load(file, allow_pickle=False)

    def size_hint(self, value: Any) -> int | None:
        """``nbytes``."""
        return int(value.nbytes)


class Serializers:
    """A store's serialisers, tried in order; pickle, last, takes anything."""

    def __init__(self, serializers: list[Serializer] | None = None) -> None:
        found = serializers if serializers is not None else default_serializers()
        self._list: list[Serializer] = [s for s in found if s.name != "pickle"]
        self._pickle = next((s for s in found if s.name == "pickle"), PickleSerializer())
        #: Whether a serialiser other than the built-in ones was added (see ``register``).
        self.custom = serializers is not None

    def register(self, serializer: Serializer) -> Serializer:
        """Try ``serializer`` before the others (a later registration goes first).

        Raises:
            TypeError: it lacks what :class:`Serializer` needs.
        """
        if not isinstance(serializer, Serializer):
            raise TypeError(
                f"{serializer!r} is not a serializer: it needs name, suffix, accepts(value), "
                "dump(value, file), load(file) and size_hint(value) (see docs/extending.md)"
            )
        self._list.insert(0, serializer)
        self.custom = True
        return serializer

    def for_value(self, value: Any) -> Serializer:
        """The first serialiser that accepts ``value``."""
        for serializer in self._list:
            if serializer.accepts(value):
                return serializer
        return self._pickle

    @property
    def anything(self) -> Serializer:
        """The serialiser tried last, which takes any value that pickles."""
        return self._pickle

    def named(self, name: str) -> Serializer | None:
        """The serialiser that wrote results named ``name`` (None: not registered here)."""
        if name == self._pickle.name:
            return self._pickle
        return next((s for s in self._list if s.name == name), None)

    def __iter__(self) -> Iterator[Serializer]:
        return iter([*self._list, self._pickle])


def default_serializers() -> list[Serializer]:
    """A new list of the built-in serialisers, in the order they are tried."""
    return [ParquetSerializer(), NumpySerializer(), BytesSerializer(), PickleSerializer()]


@dataclass(slots=True)
class Snapshot:
    """A result serialised when its task returned: inline ``data``, or a ``file`` (a path
    relative to the store's files directory) with its content ``digest``."""

    codec: str
    size: int
    data: bytes | None = None
    file: str | None = None
    digest: str | None = None

    def content_digest(self) -> str:
        """SHA-256 (hex) of the serialised bytes (worked out once)."""
        if self.digest is None:
            assert self.data is not None
            self.digest = hashlib.sha256(self.data).hexdigest()
        return self.digest


def snapshot(
    value: Any, serializers: Serializers, files: Files | None, file_bytes: int
) -> Snapshot:
    """Serialise ``value`` once (see the module docstring).

    Raises:
        Exception: whatever the serialiser raises (a value that does not pickle).
    """
    serializer = serializers.for_value(value)
    if serializer.name != "pickle":
        try:
            return _serialised(value, serializer, files, file_bytes)
        except Exception:  # it accepted the value, then could not write it: pickle may
            serializer = serializers.anything  # (a file it began was removed)
    return _serialised(value, serializer, files, file_bytes)


def _serialised(
    value: Any, serializer: Serializer, files: Files | None, file_bytes: int
) -> Snapshot:
    if files is not None:
        hint = serializer.size_hint(value)
        if hint is not None and hint > file_bytes:
            return files.write(serializer, value)
    if serializer.name == "pickle":
        data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
    else:
        buffer = io.BytesIO()
        serializer.dump(value, buffer)
        data = buffer.getvalue()
    if files is not None and len(data) > file_bytes:
        return files.write_bytes(serializer, data)
    return Snapshot(serializer.name, len(data), data)


def restore(serializer: Serializer, data: bytes) -> Any:
    """The value of inline ``data`` written by ``serializer``."""
    if serializer.name == "pickle":
        return pickle.loads(data)
    return serializer.load(io.BytesIO(data))


class _Hashing(io.RawIOBase):
    """A file that hashes what is written to it on the way through."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hash.update(view)
        self.file.write(view)
        self.size += view.nbytes
        return view.nbytes


class Files:
    """Content-addressed result files: ``<root>/<2 hex>/<sha256><suffix>``.

    A file is written under a temporary name, then renamed to its digest's name: a name of
    this directory never holds half a file, even after ``kill -9`` (the store's row that
    refers to a file is committed after the rename; a file no row refers to, or a temporary
    one a killed process left, is removed by :func:`nbflow.prune` once it is an hour old).
    A directory deleted while a file is written is made again and the file written again
    (once); files written before it was deleted are gone: the writer tells their run.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, relative: str) -> Path:
        """The absolute path of a stored file."""
        return self.root / relative

    def write(self, serializer: Serializer, value: Any) -> Snapshot:
        """Stream ``value`` into its file; return its snapshot."""
        return self._store(serializer, lambda file: serializer.dump(value, file))

    def write_bytes(self, serializer: Serializer, data: bytes) -> Snapshot:
        """Store already serialised ``data`` as a file."""
        return self._store(serializer, lambda file: file.write(data))

    def _store(self, serializer: Serializer, fill: Any) -> Snapshot:
        try:
            return self._store_once(serializer, fill)
        except FileNotFoundError:  # the directory was deleted as the file was written
            return self._store_once(serializer, fill)  # (at most once more: then it says)

    def _store_once(self, serializer: Serializer, fill: Any) -> Snapshot:
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(temporary, "wb") as raw:
                hashing = _Hashing(raw)
                with io.BufferedWriter(hashing, buffer_size=1 << 20) as file:
                    fill(file)
            digest = hashing.hash.hexdigest()
            relative = f"{digest[:2]}/{digest}{serializer.suffix}"
            final = self.root / relative
            final.parent.mkdir(exist_ok=True)
            if final.exists():
                temporary.unlink()  # the same content is stored already
            else:
                os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return Snapshot(serializer.name, hashing.size, file=relative, digest=digest)

    def verify(self, relative: str, digest: str) -> Path:
        """The path of a stored file whose content matches its digest (read through once).

        Raises:
            OSError: the file is gone.
            ValueError: its content does not match its digest (it was damaged).
        """
        path = self.path(relative)
        found = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                found.update(chunk)
        if found.hexdigest() != digest:
            raise ValueError(f"file {relative} is damaged: its content does not match its digest")
        return path
