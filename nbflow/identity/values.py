"""Values by content, for an identity: how a value is hashed and shown (see
:mod:`nbflow.identity`)."""

from __future__ import annotations

import io
import operator
import pickle
import types
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


def _pandas_digest(value: Any, named: list[Any]) -> str:
    import pandas as pd

    try:
        if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
            hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
            frame = isinstance(value, pd.DataFrame)  # (a Series' dtypes is one dtype)
            meta = repr((type(value).__name__, getattr(value, "name", None),
                         list(map(str, value.columns)) if frame else [],
                         list(map(str, value.dtypes if frame else [value.dtype]))))  # fmt: skip
            return sha("pandas", meta, hashed.to_numpy().tobytes())
    except TypeError:
        pass  # cells that pandas cannot hash (lists, dicts): the pickle decides
    return _pickled(value, named)
