"""A value a task reads counts by everything code reading it can see: a pandas object's
labels, names, dtypes, ``attrs``, flags and cells with their exact types; a dict's order; a
container subclass's class and state. Each edit below was a stale hit (found by the break-it
review): the cache served the result computed before it.

Cells run the way IPython runs them (see ``ipython_cells.py``), through a real SQLite store.
"""

from __future__ import annotations

import collections
import decimal
import functools
import importlib.util
import warnings

import numpy as np
import pandas as pd
import pytest
from ipython_cells import kernel

import nbflow as nf
from nbflow.identity import Identities

#: A name -> (the cell binding the global, the task's body reading it, the user's edit, the
#: result before, the result after). Each edit changes what the task computes.
EDITS: dict[str, tuple[str, str, str, object, object]] = {
    # -- pandas
    "index name, in place": (
        "V = pd.DataFrame({'a': [1, 2]})",
        "list(V.reset_index().columns)",
        "V.index.name = 'day'",
        ["index", "a"],
        ["day", "a"],
    ),
    "object cell 1 -> '1'": (
        "V = pd.Series([1], dtype=object)",
        "type(V[0]).__name__",
        "V[0] = '1'",
        "int",
        "str",
    ),
    "object cell None -> NaN": (
        "V = pd.Series([None, 'x'], dtype=object)",
        "V[0] is None",
        "V[0] = float('nan')",
        True,
        False,
    ),
    "categories reordered": (
        "V = pd.Series(pd.Categorical(['lo', 'hi'], categories=['lo', 'hi'], ordered=True))",
        "V.sort_values().tolist()",
        "V = V.cat.reorder_categories(['hi', 'lo'])",
        ["lo", "hi"],
        ["hi", "lo"],
    ),
    "categorical made unordered": (
        "V = pd.Series(pd.Categorical(['lo', 'hi'], ordered=True))",
        "V.cat.ordered",
        "V = V.cat.as_unordered()",
        True,
        False,
    ),
    "column label 1 -> '1'": (
        "V = pd.DataFrame({1: [5]})",
        "1 in V.columns",
        "V.columns = ['1']",
        True,
        False,
    ),
    "columns' name": (
        "V = pd.DataFrame({'a': [5]})",
        "V.columns.name",
        "V.columns.name = 'field'",
        None,
        "field",
    ),
    "attrs": (
        "V = pd.DataFrame({'a': [5]})",
        "V.attrs.get('unit')",
        "V.attrs['unit'] = 'm'",
        None,
        "m",
    ),
    "MultiIndex level names": (
        "V = pd.Series([1, 2], index=pd.MultiIndex.from_tuples([(1, 'x'), (2, 'y')]))",
        "list(V.index.names)",
        "V.index.names = ['n', 'k']",
        [None, None],
        ["n", "k"],
    ),
    "Index -> CategoricalIndex": (
        "V = pd.Series([1, 2], index=pd.Index(['a', 'b']))",
        "type(V.index).__name__",
        "V.index = pd.CategoricalIndex(['a', 'b'])",
        "Index",
        "CategoricalIndex",
    ),
    "Series name 1 -> '1'": (
        "V = pd.Series([1], name=1)",
        "type(V.name).__name__",
        "V.name = '1'",
        "int",
        "str",
    ),
    "allows_duplicate_labels": (
        "V = pd.DataFrame({'a': [5]})",
        "V.flags.allows_duplicate_labels",
        "V.flags.allows_duplicate_labels = False",
        True,
        False,
    ),
    "sparse fill value": (
        "V = pd.Series(pd.arrays.SparseArray([0.0, 1.0], fill_value=0.0))",
        "float(V.sparse.fill_value)",
        "V = pd.Series(pd.arrays.SparseArray([0.0, 1.0], fill_value=1.0))",
        0.0,
        1.0,
    ),
    "nullable NA -> 0": (
        "V = pd.Series([0, None], dtype='Int64')",
        "int(V.isna().sum())",
        "V[1] = 0",
        1,
        0,
    ),
    "a DatetimeIndex's freq": (
        "V = pd.date_range('2020-01-01', periods=2, freq='D')",
        "str(V.freq)",
        "V = pd.DatetimeIndex(list(V))",
        "<Day>",
        "None",
    ),
    # -- mappings and container subclasses
    "OrderedDict.move_to_end": (
        "V = collections.OrderedDict([('a', 1), ('b', 2)])",
        "next(iter(V))",
        "V.move_to_end('a')",
        "a",
        "b",
    ),
    "defaultdict's factory": (
        "V = collections.defaultdict(int, {'k': 1})",
        "V.default_factory()",
        "V = collections.defaultdict(list, {'k': 1})",
        0,
        [],
    ),
    "dict in another order": (
        "V = {'a': 1, 'b': 2}",
        "list(V)",
        "V = {'b': 2, 'a': 1}",
        ["a", "b"],
        ["b", "a"],
    ),
    "dict -> Counter": (
        "V = {'a': 1}",
        "V['zzz'] if isinstance(V, collections.Counter) else 'none'",
        "V = collections.Counter({'a': 1})",
        "none",
        0,
    ),
    "a dict subclass's attribute": (
        "class Tagged(dict):\n    pass\nV = Tagged(a=1)\nV.unit = 'm'",
        "V.unit",
        "V.unit = 'km'",
        "m",
        "km",
    ),
    "a list subclass's attribute": (
        "class Rows(list):\n    pass\nV = Rows([1])\nV.unit = 'm'",
        "V.unit",
        "V.unit = 'km'",
        "m",
        "km",
    ),
    "namedtuple fields": (
        "V = collections.namedtuple('P', 'x y')(1, 2)",
        "V._fields",
        "V = collections.namedtuple('P', 'y x')(1, 2)",
        ("x", "y"),
        ("y", "x"),
    ),
}


@pytest.mark.parametrize("name", list(EDITS))
def test_an_edit_of_what_a_task_reads_runs_it_again(name, tmp_path):
    setup, body, edit, before, after = EDITS[name]
    with kernel() as cells:
        cells.run(
            "import collections\nimport pandas as pd\nimport nbflow as nf\n"
            f"flow = nf.Flow('values', store={str(tmp_path / 's.db')!r})\n"
        )
        cells.run(setup)
        cells.run(f"def t():\n    return {body}\nflow.task(name='t', cache=True)(t)\n")
        first = cells["flow"].run()
        assert first.states == {"t": "succeeded"} and first.results == {"t": before}
        again = cells["flow"].run()  # unchanged: served from the cache
        assert again.states == {"t": "cached"} and again.results == {"t": before}
        cells.run(edit)
        edited = cells["flow"].run()
        assert edited.results == {"t": after}, edited.why("t")
        assert edited.states == {"t": "succeeded"}
        assert edited.why("t").startswith("ran: global `V` changed")


#: A value rebuilt from scratch, equal in everything code can see: still served from the
#: cache (the digest is of contents, not of an object).
SAME = {
    "DataFrame": "V = pd.DataFrame({'a': [1, 2], 'o': pd.Series([1, 'x'], dtype=object)},"
    " index=pd.Index([3, 4], name='n'))\nV.attrs['unit'] = 'm'",
    "categorical": "V = pd.Series(pd.Categorical(['a', 'b'], categories=['b', 'a'], ordered=True))",
    "dict": "V = {'b': 2, 'a': 1}",
    "OrderedDict": "V = collections.OrderedDict([('b', 2), ('a', 1)])",
    "set": "V = {'x', 'y', 'z', 'w'}",
}


@pytest.mark.parametrize("name", list(SAME))
def test_a_value_rebuilt_alike_is_still_served_from_the_cache(name, tmp_path):
    with kernel() as cells:
        cells.run(
            "import collections\nimport pandas as pd\nimport nbflow as nf\n"
            f"flow = nf.Flow('values', store={str(tmp_path / 's.db')!r})\n"
        )
        cells.run(SAME[name])
        cells.run("def t():\n    return repr(V)\nflow.task(name='t', cache=True)(t)\n")
        assert cells["flow"].run().states == {"t": "succeeded"}
        cells.run(SAME[name])  # the cell run again: a new object, the same contents
        assert cells["flow"].run().states == {"t": "cached"}


def test_a_run_variable_counts_in_its_order(tmp_path):
    # A dict given as a run variable: its digest follows the rule of any value.
    flow = nf.Flow("variables", store=str(tmp_path / "s.db"))

    @flow.task(cache=True)
    def keys(v):
        return list(v)

    assert flow.run(variables={"v": {"a": 1, "b": 2}}).results == {"keys": ["a", "b"]}
    assert flow.run(variables={"v": {"a": 1, "b": 2}}).states == {"keys": "cached"}
    run = flow.run(variables={"v": {"b": 2, "a": 1}})
    assert run.states == {"keys": "succeeded"} and run.results == {"keys": ["b", "a"]}


def test_a_frame_holding_what_cannot_be_hashed_means_a_warning_and_no_reuse(tmp_path):
    with kernel() as cells:
        cells.run(
            "import threading\nimport pandas as pd\nimport nbflow as nf\n"
            f"flow = nf.Flow('values', store={str(tmp_path / 's.db')!r})\n"
            "V = pd.DataFrame({'h': pd.Series([threading.Lock()], dtype=object)})\n"
            "def t():\n    return len(V)\nflow.task(name='t', cache=True)(t)\n"
        )
        for _ in range(2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run = cells["flow"].run()
            found = [str(w.message) for w in caught if issubclass(w.category, nf.CacheWarning)]
            assert len(found) == 1 and found[0].startswith("task 't': global V cannot be hashed")
            assert run.states == {"t": "succeeded"}


# -- digests, one value against another -------------------------------------------------------


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2], "o": pd.Series([1, "x"], dtype=object)})


def _attrs(frame: pd.DataFrame, **attrs: object) -> pd.DataFrame:
    frame.attrs.update(attrs)
    return frame


class _Mine(pd.arrays.IntegerArray):
    """An array class of the notebook's (not pandas'): counted by its pickle."""


class _Rate:
    def __init__(self, rate: int) -> None:
        self.rate = rate

    def get(self) -> int:
        return self.rate


def _twice(x: int) -> int:
    return 2 * x


def _tagged(value: functools.partial, unit: str) -> functools.partial:
    value.unit = unit  # type: ignore[attr-defined]
    return value


#: Values that differ only in what the name says: every pair has two digests.
PAIRS = {
    "object cell int / str": (pd.Series([1], dtype=object), pd.Series(["1"], dtype=object)),
    "object cell None / NaN": (
        pd.Series([None], dtype=object),
        pd.Series([float("nan")], dtype=object),
    ),
    "object cell 0.0 / -0.0": (pd.Series([0.0], dtype=object), pd.Series([-0.0], dtype=object)),
    "object cell True / 1": (pd.Series([True], dtype=object), pd.Series([1], dtype=object)),
    "object cells split": (
        pd.Series(["ab", "c"], dtype=object),
        pd.Series(["a", "bc"], dtype=object),
    ),
    "object cell list / tuple": (
        pd.Series([[1]], dtype=object),
        pd.Series([(1,)], dtype=object),
    ),
    "object cell Decimal": (
        pd.Series([decimal.Decimal("1.0")], dtype=object),
        pd.Series([decimal.Decimal("1.00")], dtype=object),
    ),
    "index label type": (pd.Series([1], index=[1]), pd.Series([1], index=["1"])),
    "index name": (pd.Series([1]), pd.Series([1]).rename_axis("n")),
    "columns name": (_frame(), _frame().rename_axis(columns="c")),
    "attrs": (_frame(), _attrs(_frame(), x=1)),
    "attrs order": (_attrs(_frame(), a=1, b=2), _attrs(_frame(), b=2, a=1)),
    "flags": (_frame(), _frame().set_flags(allows_duplicate_labels=False)),
    "categories order": (
        pd.Series(pd.Categorical(["a"], categories=["a", "b"])),
        pd.Series(pd.Categorical(["a"], categories=["b", "a"])),
    ),
    "categorical ordered": (
        pd.Series(pd.Categorical(["a"], ordered=False)),
        pd.Series(pd.Categorical(["a"], ordered=True)),
    ),
    "CategoricalIndex / Index": (pd.Index(["a"]), pd.CategoricalIndex(["a"])),
    "MultiIndex names": (
        pd.MultiIndex.from_tuples([(1, "x")]),
        pd.MultiIndex.from_tuples([(1, "x")], names=["n", None]),
    ),
    "RangeIndex / Index": (pd.RangeIndex(2), pd.Index([0, 1])),
    "Int64 NA / 0": (pd.Series([None], dtype="Int64"), pd.Series([0], dtype="Int64")),
    "int64 / Int64": (pd.Series([0]), pd.Series([0], dtype="Int64")),
    "sparse fill": (
        pd.Series(pd.arrays.SparseArray([0, 1], fill_value=0)),
        pd.Series(pd.arrays.SparseArray([0, 1], fill_value=1)),
    ),
    "sparse / dense": (pd.Series(pd.arrays.SparseArray([0, 1])), pd.Series([0, 1])),
    "time zone": (
        pd.Series(pd.to_datetime(["2020-01-01"])),
        pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("UTC")),
    ),
    "datetime unit": (
        pd.Series(np.array(["2020-01-01"], dtype="datetime64[s]")),
        pd.Series(np.array(["2020-01-01"], dtype="datetime64[ns]")),
    ),
    "period freq": (
        pd.Series(pd.period_range("2020-01", periods=1, freq="M")),
        pd.Series(pd.period_range("2020-01", periods=1, freq="D")),
    ),
    "interval closed": (
        pd.Series(pd.IntervalIndex.from_breaks([0, 1], closed="right")),
        pd.Series(pd.IntervalIndex.from_breaks([0, 1], closed="left")),
    ),
    "dict order": ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    "dict / OrderedDict": ({"a": 1}, collections.OrderedDict(a=1)),
    "defaultdict factory": (
        collections.defaultdict(int, a=1),
        collections.defaultdict(list, a=1),
    ),
    "Counter order": (collections.Counter(a=1, b=1), collections.Counter(b=1, a=1)),
    "Counter counts": (collections.Counter(a=1), collections.Counter(a=2)),
    "OrderedDict values": (collections.OrderedDict(a=1), collections.OrderedDict(a=2)),
    "tuple / namedtuple": ((1, 2), collections.namedtuple("P", "x y")(1, 2)),
    "ChainMap maps": (
        collections.ChainMap({"a": 1}, {"a": 2}),
        collections.ChainMap({"a": 1}, {"a": 3}),
    ),
    # (found by mutation testing: each part of these dropped from the digest went unseen)
    "object cells int / str among others": (
        pd.Series([1, None], dtype=object),
        pd.Series(["1", None], dtype=object),
    ),
    "object cells that do not pickle": (
        pd.Series([lambda: 1], dtype=object),
        pd.Series([lambda: 2], dtype=object),
    ),
    "a frame's cells that do not pickle": (
        pd.DataFrame({"f": pd.Series([lambda: 1], dtype=object)}),
        pd.DataFrame({"f": pd.Series([lambda: 2], dtype=object)}),
    ),
    "sparse points' places": (
        pd.Series(pd.arrays.SparseArray([0, 1], fill_value=0)),
        pd.Series(pd.arrays.SparseArray([1, 0], fill_value=0)),
    ),
    "sparse length": (  # (the arrays themselves: a Series' index tells the lengths apart)
        pd.arrays.SparseArray([0, 1], fill_value=0),
        pd.arrays.SparseArray([0, 1, 0], fill_value=0),
    ),
    "sparse values": (
        pd.Series(pd.arrays.SparseArray([0, 1], fill_value=0)),
        pd.Series(pd.arrays.SparseArray([0, 2], fill_value=0)),
    ),
    "dates": (
        pd.Series(pd.to_datetime(["2020-01-01"])),
        pd.Series(pd.to_datetime(["2020-01-02"])),
    ),
    "categorical values": (
        pd.Series(pd.Categorical(["a", "b"], categories=["a", "b"])),
        pd.Series(pd.Categorical(["b", "a"], categories=["a", "b"])),
    ),
    "MultiIndex labels": (
        pd.MultiIndex.from_tuples([(1, "x")]),
        pd.MultiIndex.from_tuples([(2, "x")]),
    ),
    "MultiIndex pairs": (
        pd.MultiIndex.from_tuples([(1, "x"), (2, "y")]),
        pd.MultiIndex.from_tuples([(1, "y"), (2, "x")]),
    ),
    "MultiIndex sortorder": (
        pd.MultiIndex(levels=[[1, 2]], codes=[[0, 1]]),
        pd.MultiIndex(levels=[[1, 2]], codes=[[0, 1]], sortorder=0),
    ),
    # (object cells, pickled: a method with its instance, a wrapped function with its wrapper)
    "a bound method's instance in a cell": (
        pd.Series([_Rate(1).get], dtype=object),
        pd.Series([_Rate(2).get], dtype=object),
    ),
    "staticmethod / classmethod in a cell": (
        pd.Series([staticmethod(_twice)], dtype=object),
        pd.Series([classmethod(_twice)], dtype=object),
    ),
    "staticmethod / classmethod": (staticmethod(_twice), classmethod(_twice)),
    "a partial's attribute": (
        _tagged(functools.partial(_twice, 1), "m"),
        _tagged(functools.partial(_twice, 1), "km"),
    ),
    "Timestamp": (pd.Timestamp("2020-01-01"), pd.Timestamp("2020-01-02")),
    "an array class of yours": (
        pd.Series(_Mine(np.array([1, 2]), np.zeros(2, bool))),
        pd.Series(_Mine(np.array([1, 3]), np.zeros(2, bool))),
    ),
}
if importlib.util.find_spec("pyarrow") is not None:  # the data extra (not in a core install)
    PAIRS["pyarrow int64 / int32"] = (
        pd.Series([1], dtype="int64[pyarrow]"),
        pd.Series([1], dtype="int32[pyarrow]"),
    )
    PAIRS["string storage"] = (
        pd.Series(["a"], dtype="string[python]"),
        pd.Series(["a"], dtype="string[pyarrow]"),
    )


@pytest.mark.parametrize("name", list(PAIRS))
def test_values_that_code_can_tell_apart_have_two_digests(name):
    one, other = PAIRS[name]
    assert Identities().value_digest(one) != Identities().value_digest(other)


#: pandas values holding objects of a class of the notebook's (``P``), each in another place.
HOLDERS = {
    "a frame's column": "pd.DataFrame({'p': pd.Series([P(1)], dtype=object)})",
    "a frame's index": "pd.DataFrame({'a': [1]}, index=pd.Index([P(1)], dtype=object))",
    "a Series": "pd.Series([P(1)], dtype=object)",
    "a Series' index": "pd.Series([1], index=pd.Index([P(1)], dtype=object))",
    "a MultiIndex level": "pd.Series([1], index=pd.MultiIndex.from_tuples([(P(1), 1)]))",
    "an Index": "pd.Index([P(1)], dtype=object)",
    "a categorical": "pd.Categorical([P(1)])",
    "a categorical column": "pd.Series(pd.Categorical([P(1)]))",
}


@pytest.mark.parametrize("name", list(HOLDERS))
def test_a_pandas_value_counts_with_the_code_of_the_classes_its_cells_hold(name):
    # A cell is hashed by its pickle, which names its class and does not hold its code.
    with kernel() as cells:
        cells.run(
            "import pandas as pd\nclass P:\n    def __init__(self, x):\n        self.x = x\n"
            "    def __hash__(self):\n        return hash(self.x)\n"
            "    def __eq__(self, other):\n"
            "        return isinstance(other, P) and other.x == self.x\n"
            "    def get(self):\n        return self.x\n"
        )
        cells.run(f"V = {HOLDERS[name]}\n")
        before = Identities().value_digest(cells["V"])
        assert Identities().value_digest(cells["V"]) == before
        cells.run("P.get = lambda self: self.x + 1\n")  # in place: V's objects see it
        assert Identities().value_digest(cells["V"]) != before


def test_a_set_counts_in_no_order():
    # Its order is its elements' hashes' (a string's changes with each process): not one
    # code means to read, and counting it would miss the cache across kernels.
    first, then = {8, 16}, {16, 8}  # (8 and 16 share a slot: the first in comes first)
    assert list(first) != list(then)
    assert Identities().value_digest(first) == Identities().value_digest(then)
    assert Identities().value_digest(frozenset(first)) == Identities().value_digest(frozenset(then))
