"""pandas DataFrames as Parquet files, for the frames that come back as they were.

Parquet is the fast way to keep a large frame, but it is a columnar format with its own
types, and pandas does not get every frame back from it as it was: an ``object`` column of
ints comes back ``int64``, tuples and lists come back as numpy arrays, ``Decimal('2.5')`` as
``Decimal('2.50')``, categories of ints as plain ints, ``flags.allows_duplicate_labels``
is lost, and some frames are refused outright (a mixed-type column, duplicate or non-string
column names, a sparse column). A cached or resumed result must be what the task returned
(a downstream task that worked on the first run must work on the second), so
:class:`ParquetSerializer` takes only the frames it can give back unchanged, and leaves the
others to pickle, which keeps any frame as it is:

- an exact ``pandas.DataFrame`` (a subclass may carry more than its columns) whose column
  names are unique strings, with the default flags;
- no column or index level of dtype ``object``, but for one of strings only (no missing
  value: Parquet reads a NaN among strings back as None): what an ``object`` column holds
  is known only by looking at every cell, and Parquet converts what it finds there (pandas
  2 keeps its strings in such columns; pandas 3 reads them back as ``str``, which the
  round trip below refuses);
- and the frame's *schema* survives the round trip: its first row (with the same columns,
  dtypes, index, names and ``attrs``) is written and read back once, and compared; a row,
  not an empty frame, because pyarrow gives an empty categorical's string categories back
  as ``object``. A
  serialiser remembers the verdict for each schema it has checked (a run of tasks returning
  frames of one shape costs one check, a few milliseconds).
"""

from __future__ import annotations

import importlib.util
import io
from typing import IO, Any

#: Schemas remembered per serialiser; the memo starts again when it is full.
_MEMO = 256


class ParquetSerializer:
    """pandas DataFrames as Parquet, with pyarrow (the ``data`` extra), when the frame comes
    back unchanged (see the module); other frames are pickled."""

    name, suffix = "parquet", ".parquet"

    def __init__(self) -> None:
        self._available: bool | None = None
        self._verdicts: dict[Any, bool] = {}

    def accepts(self, value: Any) -> bool:
        """For a pandas DataFrame that Parquet gives back unchanged, when pyarrow is
        installed."""
        kind = type(value)
        if kind.__name__ != "DataFrame" or kind.__module__.split(".")[0] != "pandas":
            return False
        if self._available is None:
            self._available = importlib.util.find_spec("pyarrow") is not None
        if not self._available or not _plain_frame(value):
            return False
        key = _schema_key(value)
        if key is None:  # attrs that do not make a key: checked every time
            return _schema_survives(value)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= _MEMO:
                self._verdicts.clear()
            verdict = self._verdicts[key] = _schema_survives(value)
        return verdict

    def dump(self, value: Any, file: IO[bytes]) -> None:
        """``DataFrame.to_parquet``."""
        value.to_parquet(file, engine="pyarrow")

    def load(self, file: IO[bytes]) -> Any:
        """``pandas.read_parquet``."""
        import pandas as pd

        return pd.read_parquet(file, engine="pyarrow")

    def size_hint(self, value: Any) -> int | None:
        """The frame's memory (shallow: Parquet is usually smaller)."""
        return int(value.memory_usage(index=True, deep=False).sum())


def _plain_frame(frame: Any) -> bool:
    """Unique string column names, default flags, and no ``object`` column or index level
    (the checks that need no round trip)."""
    columns = frame.columns
    if not columns.is_unique or not all(type(c) is str for c in columns):
        return False
    if not frame.flags.allows_duplicate_labels:
        return False
    index = frame.index
    levels = [index.get_level_values(i) for i in range(index.nlevels)]
    columns = [frame.iloc[:, i] for i in range(frame.shape[1])]
    return all(map(_faithful, [*columns, *levels]))


def _faithful(values: Any) -> bool:
    """Not of dtype ``object``, or of strings only (checked in C, cell by cell)."""
    dtype = values.dtype
    if getattr(dtype, "kind", None) != "O" or str(dtype) != "object":
        return True
    from pandas.api.types import infer_dtype

    return bool(infer_dtype(values, skipna=False) == "string")


def _schema_key(frame: Any) -> Any:
    """What decides whether the frame's schema survives: names, dtypes (a categorical's
    by its categories' dtype and order), the index's type, names and dtypes, the columns'
    dtype and name. None when its ``attrs`` are more than a few plain values."""
    attrs = frame.attrs
    if attrs:
        try:
            attrs_key: Any = tuple(sorted((str(k), repr(v)) for k, v in attrs.items()))
        except Exception:  # a repr that raises
            return None
        if sum(len(v) for _, v in attrs_key) > 1000:
            return None
    else:
        attrs_key = ()
    index = frame.index
    index_dtypes = tuple(_dtype_key(index.get_level_values(i).dtype) for i in range(index.nlevels))
    return (
        tuple(frame.columns),
        tuple(map(_dtype_key, frame.dtypes)),
        type(index).__name__,
        tuple(map(repr, index.names)),
        index_dtypes,
        _dtype_key(frame.columns.dtype),
        repr(frame.columns.name),
        attrs_key,
    )


def _dtype_key(dtype: Any) -> Any:
    categories = getattr(dtype, "categories", None)
    if categories is not None:  # the categories' own type decides, not their values
        return ("category", _dtype_key(categories.dtype), bool(dtype.ordered))
    return (type(dtype).__name__, str(dtype))


def _schema_survives(frame: Any) -> bool:
    """Whether the first row of ``frame`` (its schema) comes back from Parquet the same."""
    import pandas as pd

    head = frame.iloc[:1]
    try:
        buffer = io.BytesIO()
        head.to_parquet(buffer, engine="pyarrow")
        buffer.seek(0)
        back = pd.read_parquet(buffer, engine="pyarrow")
        return bool(
            _schema_key(back) == _schema_key(head)
            and back.index.equals(head.index)
            and back.attrs == head.attrs
        )
    except Exception:  # Parquet refuses it, or attrs that cannot be compared
        return False
