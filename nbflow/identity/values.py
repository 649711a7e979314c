"""Values by content, for an identity: how a value is hashed and shown (see
:mod:`nbflow.identity`)."""

from __future__ import annotations

import decimal
import io
import operator
import pickle
import types
from collections.abc import Callable
from typing import Any

from ..errors import describe
from .model import sha

# -- values -------------------------------------------------------------------------------------


class Unhashable(Exception):
    """A value that has no stable content hash (it does not pickle, or raises)."""


_SCALARS = (type(None), bool, int, float, complex, str, bytes, range)
_SCALAR_TYPES = frozenset(_SCALARS)


def show(value: Any) -> str:
    """A short rendering of ``value`` for messages (``0.25``, ``<DataFrame 10x3>``)."""
    try:
        if isinstance(value, _SCALARS) and not isinstance(value, bytes):
            text = repr(value)
            return text if len(text) <= 40 else text[:37] + "..."
        if isinstance(value, types.ModuleType):
            return f"module {value.__name__}"
        if isinstance(value, types.FunctionType | type):
            return value.__qualname__
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple):
            return f"<{type(value).__name__} {'x'.join(map(str, shape))}>"
        if isinstance(value, list | tuple | dict | set | frozenset):
            text = repr(value)
            return text if len(text) <= 40 else f"<{type(value).__name__} of {len(value)}>"
        return f"<{type(value).__qualname__}>"
    except Exception:
        return "<?>"


def _immutable(value: Any) -> bool:
    """Whether ``value``'s digest can never change (so an identical object hashes alike):
    builtin scalars, and tuples and frozensets of them. Not an enum member nor an instance
    of a subclass of ``int`` or ``str``: their digest holds their class's code, which a
    later cell can edit in place (``Color.label = ...``)."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return True
    if kind in (tuple, frozenset):
        return all(map(_immutable, value))
    return False


def _text(value: Any) -> str:
    """``repr(value)`` of a scalar; an int too long for it (over 4300 digits, which
    ``repr`` refuses) in hex (``0x...``: no ``repr`` of an int reads so)."""
    try:
        return repr(value)
    except ValueError:
        return hex(value)


def _state(obj: Any) -> Any:
    """An object's state as plain data (its ``__dict__`` and slots)."""
    state: dict[str, Any] = dict(getattr(obj, "__dict__", {}) or {})
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) or ():
            if isinstance(slot, str) and hasattr(obj, slot) and slot not in state:
                state[slot] = getattr(obj, slot)
    return state


class _Pickler(pickle.Pickler):
    """A pickler that notes each class and function the pickle names (``named``): a pickle
    refers to them by their name, it does not hold their code.

    A bound method is pickled as its function bound to its instance: Python pickles it as
    ``getattr(instance, name)``, which names neither the function nor its class when the
    function is not the class's own (``types.MethodType(f, obj)``), so an edit of ``f``
    would pickle as before. A ``staticmethod`` or ``classmethod`` object (which Python
    does not pickle) as its function.
    """

    def __init__(self, file: io.BytesIO, named: list[Any]) -> None:
        super().__init__(file, protocol=5)
        self.named = named

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type | types.FunctionType):
            self.named.append(obj)
        elif isinstance(obj, types.MethodType):  # f.__get__(instance): how a method binds
            return operator.methodcaller("__get__", obj.__self__), (obj.__func__,)
        elif isinstance(obj, staticmethod | classmethod):
            return type(obj), (obj.__func__,)
        return NotImplemented  # pickled as usual


def _pickled(value: Any, named: list[Any]) -> str:
    """The digest of ``value``'s pickle (the bytes of ``pickle.dumps(value, protocol=5)``);
    the classes and functions it names are appended to ``named``."""
    try:
        file = io.BytesIO()
        _Pickler(file, named).dump(value)
        return sha("pickle", file.getbuffer())
    except Exception as error:
        raise Unhashable(
            f"{type(value).__qualname__} cannot be pickled ({describe(error)})"
        ) from None


def _numpy_digest(value: Any, named: list[Any]) -> str:
    import numpy as np

    # An array exactly (a subclass may hold more than its data, as a masked array's mask):
    # its dtype, shape and bytes.
    if type(value) is np.ndarray and value.dtype != object:
        data = np.ascontiguousarray(value)
        return sha("ndarray", _dtype_text(value.dtype), repr(value.shape), data.data.cast("B"))
    if isinstance(value, np.generic):
        return sha("numpy", _dtype_text(value.dtype), value.tobytes())
    return _pickled(value, named)


def _dtype_text(dtype: Any) -> str:
    """A dtype as text that tells every dtype apart: its ``str`` (``<f8``), or for a
    structured one, whose ``str`` is only its size (``|V8``), its fields' names, types and
    offsets (``descr``): renaming a field, or retyping it with the same bytes, is a change."""
    return dtype.str if dtype.fields is None else repr(dtype.descr)


def _pandas_digest(value: Any, named: list[Any], element: Callable[[Any], str]) -> str:
    """The digest of a pandas object: everything code reading it can see. A DataFrame, a
    Series or an Index counts by its values with their exact types (an object column's
    cells one by one: ``1`` and ``'1'``, ``None`` and ``NaN`` differ), its dtypes (a
    categorical's categories and their order), its labels with their types, the names of
    its index, columns and levels, its ``attrs`` and ``flags``. ``element`` hashes a cell,
    a label or ``attrs`` (the walker's own value digest). Anything else of pandas (a
    subclass, a ``Timestamp``): by its pickle."""
    try:
        return _pandas_content(value, named, element)
    except (AttributeError, TypeError, ValueError, NotImplementedError) as error:
        # (A kind of pandas object this does not know, read through an API it lacks.)
        raise Unhashable(f"{type(value).__qualname__}: {describe(error)}") from None


def _pandas_content(value: Any, named: list[Any], element: Callable[[Any], str]) -> str:
    import pandas as pd

    kind = type(value)
    if kind is pd.DataFrame:
        columns = [_array_digest(value.iloc[:, i].array, named, element)
                   for i in range(value.shape[1])]  # fmt: skip
        return sha("DataFrame", *_frame_meta(value, named, element), *columns)
    if kind is pd.Series:
        return sha("Series", element(value.name), *_frame_meta(value, named, element),
                   _array_digest(value.array, named, element))  # fmt: skip
    if isinstance(value, pd.Index):
        return _index_digest(value, named, element)
    if isinstance(value, pd.api.extensions.ExtensionArray):
        return _array_digest(value, named, element)
    return _pickled(value, named)


def _frame_meta(value: Any, named: list[Any], element: Callable[[Any], str]) -> list[str]:
    """A DataFrame's or a Series' labels, ``attrs`` and flags (``columns`` for a frame)."""
    axes = [_index_digest(axis, named, element) for axis in value.axes]
    return [*axes, element(value.attrs), repr(value.flags.allows_duplicate_labels)]


def _index_digest(index: Any, named: list[Any], element: Callable[[Any], str]) -> str:
    import numpy as np
    import pandas as pd

    kind = type(index)
    if kind.__module__.partition(".")[0] != "pandas":
        return _pickled(index, named)  # a subclass of someone's: what it holds, it says
    names = element(list(index.names))
    if isinstance(index, pd.MultiIndex):
        levels = [_index_digest(level, named, element) for level in index.levels]
        codes = [_array_digest(np.asarray(c), named, element) for c in index.codes]
        return sha("MultiIndex", names, repr(index.sortorder), *levels, *codes)
    if isinstance(index, pd.RangeIndex):
        return sha("RangeIndex", names, repr((index.start, index.stop, index.step)))
    frequency = str(getattr(index, "freqstr", None))  # (a DatetimeIndex's freq: shift uses it)
    return sha(kind.__qualname__, names, frequency, _array_digest(index.array, named, element))


def _array_digest(array: Any, named: list[Any], element: Callable[[Any], str]) -> str:
    """The digest of one column's (or an index's) values, with their dtype: numbers and
    dates by their bytes, a categorical by its categories, order and codes, a sparse array
    by its fill value and stored points, a nullable one by its mask and values, any other
    of pandas' by its cells (with their exact types); someone else's by its pickle."""
    import numpy as np
    import pandas as pd

    if isinstance(array, pd.arrays.NumpyExtensionArray):
        array = array.to_numpy()
    if isinstance(array, np.ndarray):
        if array.dtype == object:
            return sha("object", repr(array.shape), _cells_digest(array.ravel(), named, element))
        return _numpy_digest(array, named)
    dtype = array.dtype
    kind = type(array)
    dates = pd.arrays.DatetimeArray | pd.arrays.TimedeltaArray | pd.arrays.PeriodArray
    nullable = pd.arrays.IntegerArray | pd.arrays.FloatingArray | pd.arrays.BooleanArray
    if kind.__module__.partition(".")[0] != "pandas":
        return _pickled(array, named)
    text = f"{type(dtype).__qualname__}|{dtype!r}|{dtype!s}|{getattr(dtype, 'storage', '')}"
    if isinstance(array, pd.Categorical):
        categories = _index_digest(dtype.categories, named, element)
        codes = _array_digest(np.asarray(array.codes), named, element)
        return sha("categorical", categories, repr(dtype.ordered), codes)
    if isinstance(array, pd.arrays.SparseArray):
        index = _array_digest(np.asarray(array.sp_index.indices), named, element)
        values = _array_digest(array.sp_values, named, element)
        return sha("sparse", text, element(array.fill_value), repr(len(array)), index, values)
    if isinstance(array, dates):
        data = np.ascontiguousarray(array.asi8)
        return sha("dates", text, str(getattr(array, "freq", None)), data.data.cast("B"))
    if isinstance(array, nullable):
        mask = np.asarray(array.isna())
        data = array.to_numpy(dtype=dtype.numpy_dtype, na_value=dtype.numpy_dtype.type(0))
        masked = [_array_digest(a, named, element) for a in (mask, data)]
        return sha("masked", text, *masked)
    # Strings, intervals, pyarrow's types: the dtype says the type; each cell its value.
    cells = np.asarray(array.to_numpy(dtype=object))
    return sha("extension", text, _cells_digest(cells.ravel(), named, element))


#: Cell types written as their text, with a tag for their type: a column of them is hashed
#: in one piece (a call per cell costs ~1 µs: 0.1 s for 1e5 cells).
_TEXT_CELLS: dict[type, str] = {str: "s", int: "i", float: "f", bool: "b", type(None): "n",
                                bytes: "y", decimal.Decimal: "d"}  # fmt: skip


def _cells_digest(cells: Any, named: list[Any], element: Callable[[Any], str]) -> str:
    """The digest of an object array's cells, each with its exact type: strings, numbers
    and ``None`` by their text and a tag for their type (``repr`` tells every value of
    those types apart, ``-0.0`` and ``nan`` included), others by their pickle (the
    classes and functions it names noted in ``named``), else by ``element``."""
    import numpy as np

    items = cells.tolist()
    kinds = set(map(type, items))
    if kinds <= _TEXT_KINDS:
        if kinds <= {str}:
            tags, texts = "", items
        else:
            tags = "".join([_TEXT_CELLS[type(v)] for v in items])
            texts = [v if type(v) is str else _text(v) for v in items]
        sizes = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        return sha("text cells", tags, sizes.data.cast("B"), "".join(texts))
    # Other cells (lists, dicts, objects): by their pickle, which holds each one's type and
    # contents (~50x faster than a walk, which costs ~8 µs a cell); cells that do not
    # pickle (a lambda), one by one.
    try:
        return sha("pickled cells", _pickled(items, named))
    except Unhashable:
        return sha("cells", *map(element, items))


_TEXT_KINDS = frozenset(_TEXT_CELLS)
