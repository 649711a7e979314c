"""A DataFrame result comes back from the store (cache, resume) exactly as the task returned it.

Parquet does not give every frame back as it was (``nbflow.store.parquet``): such frames are
pickled, and frames Parquet refuses are pickled too rather than left unstored. Each case
runs through the default SQLite store, twice, and compares the cached frame with the
returned one cell by cell, types included.
"""

from __future__ import annotations

import sqlite3
import threading
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

import nbflow as nf

pytest.importorskip("pyarrow")


def _flags_off() -> pd.DataFrame:
    frame = pd.DataFrame({"a": [1, 2]})
    return frame.set_flags(allows_duplicate_labels=False)


def _with_attrs() -> pd.DataFrame:
    frame = pd.DataFrame({"a": [1.5, 2.5]})
    frame.attrs["source"] = "sensor-7"
    return frame


#: Frames Parquet would give back changed, or refuse.
CHANGED_OR_REFUSED = {
    "object column of ints": lambda: pd.DataFrame({"ids": pd.Series([1, 2], dtype=object)}),
    "tuples": lambda: pd.DataFrame({"pair": [(1, 2), (3, 4)]}),
    "lists": lambda: pd.DataFrame({"tags": [["a"], ["b", "c"]]}),
    "decimals": lambda: pd.DataFrame({"price": [Decimal("2.5"), Decimal("1.10")]}),
    "categories of ints": lambda: pd.DataFrame({"grade": pd.Categorical([3, 1, 3])}),
    "duplicate labels refused": _flags_off,
    "mixed object column": lambda: pd.DataFrame({"code": [1, "A2", 3.5]}),
    "duplicate column names": lambda: pd.DataFrame([[1, 2]], columns=["a", "a"]),
    "sparse column": lambda: pd.DataFrame({"s": pd.arrays.SparseArray([0, 0, 1])}),
    "object index": lambda: pd.DataFrame({"a": [1, 2]}, index=pd.Index([1, "x"], dtype=object)),
}
#: Frames Parquet gives back as they were: still stored as Parquet.
KEPT_AS_PARQUET = {
    "numbers and strings": lambda: pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
    "categories of strings": lambda: pd.DataFrame(
        {"c": pd.Categorical(["lo", "hi"], categories=["lo", "hi"], ordered=True)}
    ),
    "time zones": lambda: pd.DataFrame({"t": pd.date_range("2026-01-01", periods=2, tz="UTC")}),
    "nullable ints": lambda: pd.DataFrame({"n": pd.array([1, None], dtype="Int64")}),
    "attrs": _with_attrs,
}


def _cells(frame: pd.DataFrame) -> list[list[tuple[type, str]]]:
    """Each column's cells as (type, repr): Decimal('2.50') is not Decimal('2.5') here."""
    return [[(type(x), repr(x)) for x in frame.iloc[:, i]] for i in range(frame.shape[1])]


def _same(back: Any, returned: pd.DataFrame) -> None:
    assert type(back) is pd.DataFrame
    assert list(back.columns) == list(returned.columns)
    assert back.dtypes.tolist() == returned.dtypes.tolist()
    assert back.index.equals(returned.index) and back.index.dtype == returned.index.dtype
    assert [type(x) for x in back.index] == [type(x) for x in returned.index]
    assert back.flags.allows_duplicate_labels == returned.flags.allows_duplicate_labels
    assert back.attrs == returned.attrs
    assert _cells(back) == _cells(returned)


def _codecs(path: str, task: str) -> set[str]:
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT codec FROM results WHERE task = ?", (task,)).fetchall()
    return {codec for (codec,) in rows}


def _cached_twice(make, tmp_path) -> set[str]:
    """Run a cache=True task returning ``make()`` twice: the second is served from the store
    and equals what the task returned, cell by cell; the codecs it was stored with."""
    path = str(tmp_path / "frames.db")
    calls: list[str] = []

    def flow() -> nf.Flow:
        f = nf.Flow("frames", store=path)

        @f.task(cache=True)
        def frame():
            calls.append("frame")
            return make()

        return f

    flow().run()
    calls.clear()
    second = flow().run()
    assert calls == [] and second.states["frame"] == "cached"
    _same(second.results["frame"], make())
    return _codecs(path, "frame")


@pytest.mark.parametrize("case", CHANGED_OR_REFUSED)
def test_a_frame_parquet_would_change_or_refuse_is_pickled_and_comes_back_the_same(case, tmp_path):
    assert _cached_twice(CHANGED_OR_REFUSED[case], tmp_path) == {"pickle"}


@pytest.mark.parametrize("case", KEPT_AS_PARQUET)
def test_a_frame_parquet_gives_back_unchanged_is_stored_as_parquet(case, tmp_path):
    assert _cached_twice(KEPT_AS_PARQUET[case], tmp_path) == {"parquet"}


def test_a_downstream_task_that_worked_on_the_first_run_works_on_the_cached_frame(tmp_path):
    """The user's code sees the same frame on both runs (tuples stayed tuples: hashable)."""
    path = str(tmp_path / "edges.db")

    def flow() -> nf.Flow:
        f = nf.Flow("edges", store=path)

        @f.task(cache=True)
        def edges():
            return pd.DataFrame({"pair": [(1, 2), (2, 3), (1, 2)]})

        @f.task
        def distinct(edges):
            return len(set(edges["pair"]))

        return f

    assert flow().run().results["distinct"] == 2
    again = flow().run()
    assert again.states == {"edges": "cached", "distinct": "succeeded"}
    assert again.results["distinct"] == 2


def test_a_serialiser_that_accepts_a_value_then_fails_leaves_it_to_pickle(tmp_path):
    """A registered serialiser whose dump raises: the result is still stored, by pickle."""

    class Fragile:
        name, suffix = "fragile", ".fragile"

        def accepts(self, value: Any) -> bool:
            return isinstance(value, np.ndarray)

        def dump(self, value: Any, file: Any) -> None:
            file.write(b"half")
            raise OSError("the format cannot hold this one")

        def load(self, file: Any) -> Any:
            raise AssertionError("nothing was written by this serialiser")

        def size_hint(self, value: Any) -> int | None:
            return None

    path = str(tmp_path / "fragile.db")
    calls: list[str] = []

    def flow() -> nf.Flow:
        f = nf.Flow("fragile", store=path)
        f.state_store.serializers.register(Fragile())

        @f.task(cache=True)
        def values():
            calls.append("values")
            return np.arange(4)

        return f

    flow().run()
    calls.clear()
    second = flow().run()
    assert calls == [] and second.states["values"] == "cached"
    assert second.results["values"].tolist() == [0, 1, 2, 3]
    assert _codecs(path, "values") == {"pickle"}


def test_a_value_neither_its_serialiser_nor_pickle_can_write_is_warned_about_once(tmp_path):
    class Refusing:
        name, suffix = "refusing", ".refusing"

        def accepts(self, value: Any) -> bool:
            return type(value).__name__ == "lock"

        def dump(self, value: Any, file: Any) -> None:
            raise OSError("the format cannot hold a lock")

        def load(self, file: Any) -> Any:
            raise AssertionError("nothing was written by this serialiser")

        def size_hint(self, value: Any) -> int | None:
            return None

    flow = nf.Flow("locks", store=str(tmp_path / "locks.db"))
    flow.state_store.serializers.register(Refusing())
    flow.task(name="guard")(lambda: threading.Lock())
    with pytest.warns(nf.StoreWarning) as caught:
        flow.run()
    said = [str(w.message) for w in caught if "guard" in str(w.message)]
    assert len(said) == 1
    assert "cannot be serialised by 'refusing' nor pickled" in said[0]
    assert "cannot pickle '_thread.lock' object" in said[0]  # pickle's error: the last one
