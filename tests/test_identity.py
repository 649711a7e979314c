"""A task's identity sees everything its result depends on, and nothing it does not.

Cells run the way IPython runs them (a fresh ``<ipython-input-N-…>`` file name per
execution, the text in linecache): see ``ipython_cells.py``.
"""

from __future__ import annotations

import functools
import importlib
import json
import operator
import os
import sys
import sysconfig
import threading

import numpy as np
import pandas as pd
import pytest
from ipython_cells import Cells, kernel

from nbflow.identity import (
    Identities,
    Identity,
    Part,
    Unhashable,
    code_facts,
    flow_version,
    identity_options,
    is_code_path,
    is_library,
    sha,
    show,
    source_digest,
    user_sources,
    write_only_names,
)
from nbflow.identity.code import _distribution_version, _library_roots


def identity_of(cells: Cells, name: str, ids: Identities | None = None) -> Identity:
    return (ids or Identities()).task(cells[name])


def changed(cells: Cells, name: str, edit: str) -> list[str]:
    """Run ``edit`` as a new cell and say how ``name``'s identity changed."""
    ids = Identities()
    before = ids.task(cells[name])
    cells.run(edit)
    after = ids.task(cells[name])
    assert after.digest != before.digest
    return after.changes_since(before)


@pytest.fixture
def cells() -> Cells:
    return Cells()


# -- each kind of thing a result depends on, changed in turn -----------------------------------


def test_an_edited_default_changes_the_identity_and_says_which(cells):
    cells.run("def t(x=1):\n    return x\n")
    assert changed(cells, "t", "def t(x=2):\n    return x\n") == ["default `x` changed (1 -> 2)"]


def test_an_edited_keyword_only_default_changes_the_identity(cells):
    cells.run("def t(*, k='a'):\n    return k\n")
    assert changed(cells, "t", "def t(*, k='b'):\n    return k\n") == [
        "default `k` changed ('a' -> 'b')"
    ]


def test_a_default_taken_from_a_global_counts_by_value(cells):
    cells.run("RATE = 0.1\n")
    cells.run("def t(x=RATE):\n    return x\n")
    cells.run("RATE = 0.25\n")  # the default was evaluated at the def: unchanged
    same = identity_of(cells, "t")
    cells.run("def t(x=RATE):\n    return x\n")  # the cell re-run: the default is new
    assert identity_of(cells, "t").changes_since(same) == ["default `x` changed (0.1 -> 0.25)"]


def test_a_global_constant_rebound_by_another_cell(cells):
    cells.run("RATE = 0.10\ndef t():\n    return RATE * 2\n")
    assert changed(cells, "t", "RATE = 0.25\n") == ["global `RATE` changed (0.1 -> 0.25)"]


def test_a_global_container_mutated_in_place(cells):
    cells.run("CONFIG = {'mode': 'quick'}\ndef t():\n    return CONFIG['mode']\n")
    assert changed(cells, "t", "CONFIG['mode'] = 'full'\n") == [
        "global `CONFIG` changed ({'mode': 'quick'} -> {'mode': 'full'})"
    ]


def test_a_closure_variable_of_a_factory(cells):
    cells.run("def make(k):\n    def t():\n        return k\n    return t\nt = make(1)\n")
    assert changed(cells, "t", "t = make(2)\n") == ["closure `k` changed (1 -> 2)"]


def test_a_closure_variable_rebound_by_nonlocal(cells):
    cells.run(
        """
        def make():
            n = 0
            def t():
                return n
            def bump():
                nonlocal n
                n += 1
            return t, bump
        t, bump = make()
        """
    )
    assert changed(cells, "t", "bump()\n") == ["closure `n` changed (0 -> 1)"]


def test_a_helper_redefined_by_a_cell_rerun(cells):
    cells.run("def clean(x):\n    return x.strip()\n")
    cells.run("def t():\n    return clean(' a ')\n")
    assert changed(cells, "t", "def clean(x):\n    return x.strip().upper()\n") == [
        "helper `clean` changed"
    ]


def test_a_global_read_by_a_helper(cells):
    cells.run("FACTOR = 2\ndef scale(x):\n    return x * FACTOR\ndef t():\n    return scale(3)\n")
    assert changed(cells, "t", "FACTOR = 3\n") == [
        "helper `scale`: global `FACTOR` changed (2 -> 3)"
    ]


def test_a_helper_of_a_helper(cells):
    cells.run(
        "def leaf():\n    return 1\ndef mid():\n    return leaf()\ndef t():\n    return mid()\n"
    )
    assert changed(cells, "t", "def leaf():\n    return 2\n") == [
        "helper `mid`: helper `leaf` changed"
    ]


def test_the_order_of_a_partials_keywords(cells):
    # A function taking **kwargs sees them in the order the partial holds them.
    cells.run(
        "import functools\ndef f(**kw):\n    return list(kw)\n"
        "t = functools.partial(f, a=1, b=2)\n"
    )
    assert changed(cells, "t", "t = functools.partial(f, b=2, a=1)\n") == [
        "keywords changed (a, b -> b, a)"
    ]


def test_a_partial_argument(cells):
    cells.run("import functools\ndef f(a, b):\n    return a + b\nt = functools.partial(f, b=1)\n")
    assert changed(cells, "t", "t = functools.partial(f, b=2)\n") == [
        "argument `b` changed (1 -> 2)"
    ]


def test_a_callable_object_whose_class_was_redefined(cells):
    cells.run("class Scale:\n    def __call__(self):\n        return 1\nt = Scale()\n")
    assert changed(
        cells, "t", "class Scale:\n    def __call__(self):\n        return 2\nt = Scale()\n"
    ) == ["class `Scale`: method `__call__` changed"]


def test_a_callable_objects_state(cells):
    cells.run(
        "class Scale:\n    def __init__(self, k):\n        self.k = k\n"
        "    def __call__(self):\n        return self.k\nt = Scale(1)\n"
    )
    assert changed(cells, "t", "t.k = 5\n") == ["instance changed ({'k': 1} -> {'k': 5})"]


def test_a_class_used_by_the_task_and_its_class_attribute(cells):
    cells.run("class Cfg:\n    rate = 1\ndef t():\n    return Cfg.rate\n")
    assert changed(cells, "t", "Cfg.rate = 2\n") == [
        "class `Cfg`: attribute `rate` changed (1 -> 2)"
    ]


def test_a_local_module_edited_on_disk(cells, tmp_path, monkeypatch):
    (tmp_path / "mylib_for_identity.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # A second run in one process (mutmut's) would import the first run's module file.
    monkeypatch.delitem(sys.modules, "mylib_for_identity", raising=False)
    cells.run("import mylib_for_identity\ndef t():\n    return mylib_for_identity.VALUE\n")
    ids = Identities()
    before = ids.task(cells["t"])
    (tmp_path / "mylib_for_identity.py").write_text("VALUE = 22\n")  # a new size: seen
    importlib.reload(sys.modules["mylib_for_identity"])
    after = ids.task(cells["t"])
    assert after.digest != before.digest
    assert after.changes_since(before) == ["global `mylib_for_identity.VALUE` changed (1 -> 22)"]


def test_a_library_module_counts_by_name_and_version(cells):
    cells.run("import json\ndef t():\n    return json.dumps([1])\n")
    parts = {p.path: p.shown for p in identity_of(cells, "t").parts}
    assert parts["module json"] == f"json {sys.version.split()[0]}"


def test_numpy_and_pandas_globals_count_by_content(cells):
    cells.namespace["ARR"] = np.arange(4)
    cells.namespace["DF"] = pd.DataFrame({"a": [1, 2]})
    cells.run("def t():\n    return ARR.sum() + DF.a.sum()\n")
    ids = Identities()
    first = ids.task(cells["t"])
    assert ids.task(cells["t"]).digest == first.digest
    cells.namespace["ARR"][0] = 100  # in place: the same object, new content
    assert ids.task(cells["t"]).changes_since(first) == ["global `ARR` changed"]
    second = ids.task(cells["t"])
    cells.namespace["DF"].loc[0, "a"] = 7
    assert ids.task(cells["t"]).changes_since(second) == ["global `DF` changed"]


def test_equal_values_of_different_types_are_different(cells):
    cells.run("def t(x=1):\n    return x\n")
    one = identity_of(cells, "t")
    cells.run("def t(x=True):\n    return x\n")
    assert identity_of(cells, "t").digest != one.digest
    cells.run("def t(x=1.0):\n    return x\n")
    assert identity_of(cells, "t").digest != one.digest


# -- what does not count ----------------------------------------------------------------------


def test_rerunning_the_same_cell_keeps_the_identity(cells):
    source = "import math\nRATE = 2\ndef t(x=1):\n    return math.sqrt(x) * RATE\n"
    cells.run(source)
    first = identity_of(cells, "t")
    cells.run(source)  # a new file name, new function and code objects: the same task
    assert identity_of(cells, "t") == first


def test_comments_blank_lines_and_decorators_do_not_count(cells):
    cells.run("def deco(f):\n    return f\n")
    cells.run("def t(x=1):\n    return x + 1\n")
    plain = identity_of(cells, "t")
    cells.run("@deco\ndef t(x=1):\n    # add one\n\n    return x + 1  # here\n")
    assert identity_of(cells, "t").digest == plain.digest


def test_a_list_the_task_only_appends_to_does_not_count(cells):
    cells.run("calls = []\ndef t():\n    calls.append('t')\n    return 1\n")
    first = identity_of(cells, "t")
    cells.run("calls.append('more')\n")
    assert identity_of(cells, "t").digest == first.digest
    # ... but a list it reads does.
    cells.run("def u():\n    calls.append('u')\n    return len(calls)\n")
    assert changed(cells, "u", "calls.append('again')\n")


def test_write_only_names_are_only_those_used_as_adders():
    import ast

    tree = ast.parse(
        "def f():\n    a.append(1)\n    b.add(2)\n    b.clear()\n    x = c.append(3)\n"
    )
    assert write_only_names(tree) == {"a"}


def test_cache_ignore_leaves_a_name_out(cells):
    cells.run("import threading\nLOCK = threading.Lock()\nN = 1\ndef t():\n    return N\n")
    cells.run("def u():\n    with LOCK:\n        return N\n")
    assert identity_of(cells, "u").digest is None  # a lock does not hash
    ignoring = (("cache_ignore", ("LOCK",)),)
    found = Identities().task(cells["u"], ignoring)
    assert found.digest is not None
    assert all("LOCK" not in p.path for p in found.parts)


# -- values that cannot be hashed --------------------------------------------------------------


def test_an_unpicklable_global_leaves_no_digest_and_says_which(cells):
    cells.namespace["conn"] = threading.Lock()
    cells.run("def t():\n    return conn\n")
    found = identity_of(cells, "t")
    assert found.digest is None
    assert found.unhashable[0][0] == "global conn"
    assert "cannot be pickled" in found.unhashable[0][1]


def test_an_unpicklable_value_in_a_helper_reaches_the_task(cells):
    cells.namespace["conn"] = threading.Lock()
    cells.run("def helper():\n    return conn\ndef t():\n    return helper()\n")
    assert identity_of(cells, "t").unhashable[0][0] == "global helper / global conn"


# -- the memo: never stale, never growing ---------------------------------------------------------


def test_the_memo_never_serves_a_stale_identity(cells):
    cells.run(
        """
        N = 1
        ITEMS = [1]
        def helper():
            return N
        def t():
            return helper() + len(ITEMS)
        """
    )
    ids = Identities()
    seen = {ids.task(cells["t"]).digest}
    for edit in ("N = 2\n", "ITEMS.append(2)\n", "def helper():\n    return N + 1\n", "N = 1\n"):
        cells.run(edit)
        digest = ids.task(cells["t"]).digest
        assert digest not in seen, edit
        seen.add(digest)


def test_the_memo_keeps_only_what_the_last_pass_used(cells):
    ids = Identities()
    for i in range(300):
        cells.run(f"def t():\n    return {i}\n")
        ids.task(cells["t"])
    assert len(ids._nodes) == 1 and len(ids._code) == 1


def test_closures_of_one_factory_share_one_node():
    def make(op):
        def node():
            return op()

        return node

    fns = [make(len) for _ in range(1000)]
    ids = Identities()
    found = ids.tasks([(f, ()) for f in fns])
    assert len({i.digest for i in found}) == 1
    assert len(ids._nodes) == 1


def test_tasks_made_in_a_loop_each_see_their_own_objects():
    # Consecutive tasks of the same code, globals, defaults, closure contents and options
    # share the identity of the one before; one that differs in any of them gets its own,
    # exactly what it gets computed alone.
    def make(value):
        def node(x=0):  # one defaults tuple (a constant) for every node
            return value + x

        return node

    def keyword(value):
        def node(*, y=0):  # a dict of its own for each node
            return value + y

        return node

    def kwonly(value):
        def node(*, y):  # no keyword defaults, unless given some later
            return value + y

        return node

    def twice(value):  # other code, the same everything else
        def node():
            return value * 2

        return node

    def once(value):
        def node():
            return value

        return node

    def unbound():
        def node():
            return later

        return node
        later = 1  # never bound: the closure cell stays empty

    def in_module(value):  # the same code, bound to another globals dict
        scope = {"VALUE": value}
        exec(code, scope)
        return scope["node"]

    code = compile("def node():\n    return VALUE\n", "<cell>", "exec")
    values = [1, 1, 2, 2, 1, 1.0, True, [1], [1]]
    fns = [make(v) for v in values] + [make(1), make(1)]
    fns[-1].__defaults__ = (7,)
    fns += [keyword(1), keyword(1), in_module(1), in_module(2), in_module(2)]
    fns[12].__kwdefaults__["y"] = 9
    fns += [kwonly(1), kwonly(1), once(1), twice(1)]
    fns[17].__kwdefaults__ = {"y": 4}
    fns += [unbound(), unbound()]
    plain, other = (("fan_out", None),), (("fan_out", "x"),)
    options = [plain] * len(fns)
    options[3] = other
    calls = list(zip(fns, options, strict=True))
    ids = Identities()
    found = [i.digest for i in ids.tasks(calls)]
    alone = [Identities().task(f, o).digest for f, o in calls]
    assert found == alone
    assert found[0] == found[1] == found[4] == found[9] and found[2] != found[3]
    assert len({found[0], found[5], found[6], found[7], found[10]}) == 5
    assert found[7] == found[8] and found[11] != found[12]
    assert found[13] != found[14] == found[15]
    assert found[16] != found[17] and found[18] != found[19] and found[20] == found[21]
    fns[1].__closure__[0].cell_contents = 3  # rebound: seen by the next pass
    fns[15].__globals__["VALUE"] = 3
    again = [i.digest for i in ids.tasks(calls)]
    assert again == [Identities().task(f, o).digest for f, o in calls]
    assert again[1] != found[1] and again[15] != found[15]
    assert [d for i, d in enumerate(again) if i not in (1, 15)] == [
        d for i, d in enumerate(found) if i not in (1, 15)
    ]


class _Counter:
    def __init__(self) -> None:
        self.attempts = [0, 0]

    def total(self) -> int:
        return sum(self.attempts)


def test_mutable_values_are_hashed_again_each_pass_and_the_rest_reused():
    # A node made from mutable values (a partial over a counter, a list in a closure, a
    # default dict) is checked, not made again: the same identity while they hash alike,
    # and exactly a fresh computation's as soon as one of them changes in any way.
    scope: dict = {"RATE": 1}
    exec("def f(counter, i):\n    return counter.attempts[i] * RATE\n", scope)
    exec("def g(counter, i):\n    return -counter.attempts[i]\n", scope)
    counter, items = _Counter(), [1]

    def make(op):
        def node(options={"mode": "a"}):  # noqa: B006 - a mutable default, on purpose
            return op() + len(items)

        return node

    partials = [functools.partial(scope["f"], counter, i) for i in range(2)]
    other = _Counter()
    fns = [make(p) for p in partials] + [make(other.total)]  # a bound method: made again
    calls = [(f, ()) for f in fns]
    ids = Identities()

    def check() -> list[Identity]:
        found = ids.tasks(calls)
        assert [i.digest for i in found] == [Identities().task(f).digest for f in fns]
        return found

    first = check()
    assert all(map(operator.is_, check()[:2], first))  # reused: nothing was made again
    edits = [
        lambda: other.attempts.append(1),  # the bound method's instance
        lambda: counter.attempts.__setitem__(0, 1),  # the partial's argument, in place
        lambda: items.append(2),  # a closure list
        lambda: fns[1].__defaults__[0].__setitem__("mode", "b"),  # a default dict
        lambda: scope.__setitem__("RATE", 2),  # a global of the partial's function
        lambda: partials[1].__setstate__((scope["g"], (counter, 1), None, None)),
        lambda: partials[0].__setstate__((scope["f"], (counter, 0), {"i": 0}, None)),
    ]
    seen = {tuple(i.digest for i in first)}
    for edit in edits:
        edit()
        digests = tuple(i.digest for i in check())
        assert digests not in seen
        seen.add(digests)


def test_recursive_helpers_end(cells):
    cells.run(
        """
        def even(n):
            return n == 0 or odd(n - 1)
        def odd(n):
            return n != 0 and even(n - 1)
        """
    )
    cells.run("def t():\n    return even(4)\n")
    assert identity_of(cells, "t").digest is not None


def test_recursive_helpers_are_checked_again_on_the_next_pass(cells):
    # The second pass re-checks remembered nodes instead of rebuilding them: a recursive
    # group must end there too (it recursed without end: a Task used as a task function),
    # give the same digest, and still see an edit of either member.
    cells.run(
        """
        def even(n):
            return n == 0 or odd(n - 1)
        def odd(n):
            return n != 0 and even(n - 1)
        def t():
            return even(4)
        """
    )
    ids = Identities()
    first = ids.task(cells["t"])
    assert ids.task(cells["t"]).digest == first.digest
    assert ids.task(cells["t"]).digest == first.digest
    cells.run("def odd(n):\n    return n != 0 and not even(n - 1)\n")
    assert ids.task(cells["t"]).digest != first.digest


@pytest.mark.parametrize("order", [["t", "handle"], ["handle", "t"]])
def test_a_value_changed_in_place_to_hold_its_reader_is_checked_to_an_end(cells, order):
    # A remembered node is checked with its function open, as it is made: when a value it
    # read comes to hold the function (changed in place: the node's key is unchanged), the
    # check meets the function's stand-in, fails, and the group is found (it recursed
    # without end when the check ran with the function not open).
    cells.run("HANDLERS = {}\ndef handle():\n    return HANDLERS\ndef t():\n    return handle()\n")

    def identities(ids: Identities) -> list[Identity]:
        return ids.tasks([(cells[name], ()) for name in order])

    ids = Identities()
    first = identities(ids)
    cells.run("HANDLERS['handle'] = handle\n")
    held = identities(ids)
    assert [i.digest for i in held] == [i.digest for i in identities(Identities())]
    assert {i.digest for i in held}.isdisjoint({i.digest for i in first})
    assert identities(ids) == held
    cells.run("HANDLERS['n'] = 1\n")
    more = identities(ids)
    assert [i.digest for i in more] == [i.digest for i in identities(Identities())]
    assert {i.digest for i in more}.isdisjoint({i.digest for i in held})


def test_options_that_shape_a_result_count_and_others_do_not():
    import nbflow as nf

    flow = nf.Flow("opts", store=None)

    @flow.task
    def items():
        return [1]

    @flow.task(fan_out="items", priority=5, retry=3, tags=["x"])
    def each(items):
        return items

    names = [name for name, _ in identity_options(flow.tasks["each"].spec)]
    assert names == ["fan_out", "allow_partial"]


def test_digests_are_short_and_stable():
    assert sha("a") == sha("a") and len(sha("a")) == 16
    assert (
        Identities().task(functools.partial(len)).digest
        == Identities().task(functools.partial(len)).digest
    )


# -- digests and words, pinned ------------------------------------------------------------------

#: Digests are kept in stores (cache keys, resume): a change of any of these invalidates every
#: stored result, so it must be deliberate. Only values whose digest is the same on every
#: Python and library version here (no pickles, no pandas internals).
PINNED = [
    (None, "6b8abd708f0c9c75"),
    (True, "d225c3e3e088104e"),
    (7, "072478fd3d3f4b2d"),
    (2.5, "900b791182468dd5"),
    (1j, "8f326c04c9168499"),
    ("text", "8b9376ad20db60bb"),
    (b"raw", "482b76182bc19493"),
    (range(3), "aa0057b54d4535d6"),
    ((1, "a"), "40155df3821b45eb"),
    ([1, "a"], "2b24bf491c9ffae7"),
    ({"b": 2, "a": 1}, "7aafdec436d464b4"),
    ({1, 2}, "6c71e6e1cca4e111"),
    (frozenset({1, 2}), "9a479b93d3965572"),
    (np.arange(6, dtype=np.int32).reshape(2, 3), "12878927076a3c75"),
    (np.float64(1.5), "95b5289d51d50812"),
]


@pytest.mark.parametrize(("value", "digest"), PINNED, ids=[type(v).__name__ for v, _ in PINNED])
def test_value_digests_are_pinned(value, digest):
    assert Identities().value_digest(value) == digest


def test_numpy_values_differ_by_dtype_shape_and_content():
    ids = Identities()
    base = np.arange(6, dtype=np.int64)
    digests = {
        ids.value_digest(base),
        ids.value_digest(base.astype(np.int32)),
        ids.value_digest(base.reshape(2, 3)),
        ids.value_digest(base[::-1]),  # not contiguous: its own bytes
        ids.value_digest(np.array([1, None], dtype=object)),  # objects: by pickle
    }
    assert len(digests) == 5
    assert ids.value_digest(base[::-1]) == ids.value_digest(np.array([5, 4, 3, 2, 1, 0]))
    assert ids.value_digest(np.int64(1)) != ids.value_digest(np.int32(1))


def test_structured_arrays_differ_by_their_fields(cells):
    # A structured dtype's str is its size alone ("|V8"): an array whose field was renamed
    # or retyped (the same bytes) had the digest it had.
    cells.run(
        "import numpy as np\nROWS = np.zeros(2, dtype=[('a', '<i4'), ('b', '<i4')])\n"
        "def t():\n    return ROWS['a'].sum()\n"
    )
    seen = {identity_of(cells, "t").digest}
    assert changed(cells, "t", "ROWS = np.zeros(2, dtype=[('x', '<i4'), ('b', '<i4')])\n")
    seen.add(identity_of(cells, "t").digest)
    assert changed(cells, "t", "ROWS = np.zeros(2, dtype=[('x', '<f4'), ('b', '<i4')])\n")
    seen.add(identity_of(cells, "t").digest)
    assert changed(cells, "t", "ROWS = ROWS[0]\n")  # one row: a numpy scalar
    seen.add(identity_of(cells, "t").digest)
    assert changed(cells, "t", "ROWS = np.zeros(2, dtype=[('y', '<f4'), ('b', '<i4')])[0]\n")
    seen.add(identity_of(cells, "t").digest)
    assert len(seen) == 5 and None not in seen
    assert np.zeros(2, dtype="<f8").dtype.str == "<f8"  # (plain dtypes keep their digests)


def test_pandas_values_differ_by_content_name_columns_and_dtype():
    ids = Identities()
    frame = pd.DataFrame({"a": [1, 2]})
    same = ids.value_digest(pd.DataFrame({"a": [1, 2]}))
    assert ids.value_digest(frame) == same
    others = [
        pd.DataFrame({"a": [1, 3]}),
        pd.DataFrame({"b": [1, 2]}),
        pd.DataFrame({"a": [1.0, 2.0]}),
        pd.DataFrame({"a": [1, 2]}, index=[5, 6]),
        pd.Series([1, 2], name="a"),
        pd.Series([1, 2], name="b"),
        pd.Index([1, 2]),
        pd.DataFrame({"a": [[1], [2]]}),  # cells pandas cannot hash: by pickle
    ]
    digests = [ids.value_digest(o) for o in others]
    assert same not in digests and len(set(digests)) == len(digests)


def test_an_identity_summary_counts_its_kinds_of_parts():
    def parts(*paths):
        return Identity("d", tuple(Part(path, "x") for path in paths))

    assert parts().summary() == "nothing"
    assert parts("source").summary() == "source"
    full = parts(
        "source",
        "default x",
        "default y",
        "closure k",
        "global RATE",
        "helper f",
        "helper f / global K",  # counted with the helper
        "module math",
        "class C",
        "option fan_out",
    )
    assert full.summary() == ("source, 2 defaults, 1 closure variable, 4 globals and 1 option")
    assert parts("closure a", "closure b").summary() == "2 closure variables"


def test_parts_that_are_code():
    assert is_code_path("source")
    assert is_code_path("helper f") and is_code_path("class C")
    assert is_code_path("helper f / source")
    assert not is_code_path("global RATE")
    assert not is_code_path("helper f / helper g")  # a helper's helper is its own part


def test_an_identity_round_trips_through_json():
    identity = Identity("d1", (Part("source", "aa"), Part("global RATE", "bb", "0.25")))
    text = identity.to_json()
    assert json.loads(text) == [["source", "aa", ""], ["global RATE", "bb", "0.25"]]
    assert Identity.from_json("d1", text) == identity
    assert Identity.from_json(None, None) == Identity(None)


def test_libraries_are_found_under_the_interpreter_and_site_packages():
    roots = _library_roots()
    assert all(root.endswith(os.sep) for root in roots)
    assert os.path.join(os.path.realpath(sysconfig.get_paths()["stdlib"]), "") in roots
    assert is_library("json") and is_library("numpy.linalg") and not is_library(None)
    assert is_library("builtins") and not is_library("__main__")
    assert not is_library("nbflow_no_such_module")
    assert _distribution_version("numpy") == np.__version__
    assert _distribution_version("nbflow_no_such_module") == ""


def test_library_code_counts_by_name_and_version(cells):
    cells.run(
        "import math\nimport numpy\nfrom math import sqrt\nfrom collections import OrderedDict\n"
        "def t():\n    return math.pi, numpy.pi, sqrt(4), OrderedDict()\n"
    )
    python = sys.version.split()[0]
    parts = {p.path: p for p in identity_of(cells, "t").parts}
    assert parts["module math"] == Part(
        "module math", sha("module", "math", python), f"math {python}"
    )
    assert parts["module numpy"] == Part(
        "module numpy",
        sha("module", "numpy", np.__version__),
        f"numpy {np.__version__}",
    )
    assert parts["global sqrt"] == Part(
        "global sqrt", sha("builtin", "math", "sqrt", python), "sqrt"
    )
    ordered = sha("class", "collections", "OrderedDict", python)
    assert parts["global OrderedDict"] == Part("global OrderedDict", ordered, "OrderedDict")


def test_a_user_class_counts_by_its_name_bases_methods_and_attributes(cells):
    cells.run(
        "class Base:\n    K = 1\n"
        "class C(Base):\n    rate = 2\n    def m(self):\n        return 1\n"
        "    @staticmethod\n    def s():\n        return 2\n"
        "    @property\n    def p(self):\n        return 3\n"
        "def t():\n    return C().m()\n"
    )
    ids = Identities()
    first = ids.task(cells["t"])
    assert [p.path for p in first.parts] == [
        "source",
        "class C",
        "class C / name",
        "class C / base Base",
        "class C / method m",
        "class C / method p",
        "class C / attribute rate",
        "class C / method s",
    ]
    assert {p.path: p.shown for p in first.parts}["class C / attribute rate"] == "2"
    for edit, words in {
        "C.rate = 3\n": "class `C`: attribute `rate` changed (2 -> 3)",
        "C.s = staticmethod(lambda: 5)\n": "class `C`: method `s` changed",
        "C.p = property(lambda self: 4)\n": "class `C`: method `p` changed",
        "Base.K = 2\n": "class `C`: base `Base` changed",
    }.items():
        assert changed(cells, "t", edit) == [words], edit


def test_a_callable_objects_slots_count_too(cells):
    # Its own class's slots first, then its bases' (the slot descriptors themselves do not
    # pickle: they are left out of the class's identity).
    cells.run(
        "class Base:\n    __slots__ = ('k',)\n"
        "class Scale(Base):\n    __slots__ = ('m',)\n"
        "    def __call__(self):\n        return self.k * self.m\n"
        "t = Scale()\nt.k, t.m = 1, 2\n"
    )
    assert changed(cells, "t", "t.k = 5\n") == [
        "instance changed ({'m': 2, 'k': 1} -> {'m': 2, 'k': 5})"
    ]
    assert changed(cells, "t", "t.m = 7\n") == [
        "instance changed ({'m': 2, 'k': 5} -> {'m': 7, 'k': 5})"
    ]


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("import math\ndef t():\n    return math.pi\n", "math"),
        ("def helper():\n    return 1\ndef t():\n    return helper()\n", "helper"),
        ("class K:\n    pass\ndef t():\n    return K\n", "K"),
        ("def t(x=1):\n    return x\n", "x"),
        (
            "def make(v):\n    def t():\n        return v\n    return t\nt = make(3)\n",
            "v",
        ),
    ],
    ids=["module", "helper", "class", "default", "closure"],
)
def test_cache_ignore_leaves_out_each_kind_of_name(cells, source, name):
    cells.run(source)
    plain = identity_of(cells, "t")
    ignoring = Identities().task(cells["t"], (("cache_ignore", (name,)),))
    kept = {p.path for p in plain.parts if name not in p.path} | {"option cache_ignore"}
    assert {p.path for p in ignoring.parts} == kept != {p.path for p in plain.parts}
    keeping = Identities().task(cells["t"], (("cache_ignore", ("other",)),))
    assert [p.path for p in keeping.parts if name in p.path] != []


def test_an_unpicklable_value_says_why():
    with pytest.raises(Unhashable, match=r"^lock cannot be pickled \(TypeError: cannot pickle"):
        Identities().value_digest(threading.Lock())


def test_user_sources_follow_helpers_but_not_libraries(cells):
    cells.run(
        "import json\ndef inner():\n    return 1\ndef helper():\n    return inner()\n"
        "def t():\n    return helper() + len(json.dumps(1))\n"
    )
    found = user_sources(cells["t"])
    assert sorted(found) == ["", "helper", "inner"]
    assert found["helper"].startswith("def helper():")
    assert user_sources(functools.partial(cells["t"])) == found
    assert user_sources(len) == {"": "<builtin_function_or_method>"}


def test_a_lambdas_source_is_its_own_syntax_tree(cells):
    cells.run("f = lambda x: x + 1\ng = lambda x: x + 2\n")
    assert identity_of(cells, "f").digest != identity_of(cells, "g").digest
    cells.run("h = (lambda x: x + 1)\n")  # the same lambda, written otherwise
    assert identity_of(cells, "h").parts[0] == identity_of(cells, "f").parts[0]


def test_keyword_only_defaults_count_by_name(cells):
    cells.run("def t(*, a=1, b=2):\n    return a + b\n")
    assert changed(cells, "t", "def t(*, a=2, b=1):\n    return a + b\n") == [
        "default `a` changed (1 -> 2)",
        "default `b` changed (2 -> 1)",
    ]


def test_a_local_module_counts_by_what_is_loaded_not_its_file(cells, tmp_path, monkeypatch):
    """Its file edited (or gone) without a reload: the code that runs is the one loaded."""
    (tmp_path / "gone_for_identity.py").write_text("VALUE = 1\ndef f():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gone_for_identity", raising=False)
    cells.run("import gone_for_identity\ndef t():\n    return gone_for_identity")
    before = Identities().task(cells["t"])
    assert {p.path: p for p in before.parts}["module gone_for_identity"].shown.startswith(
        "gone_for_identity (code "
    )
    (tmp_path / "gone_for_identity.py").write_text("VALUE = 2\ndef f():\n    return 2\n")
    assert Identities().task(cells["t"]).digest == before.digest
    (tmp_path / "gone_for_identity.py").unlink()
    assert Identities().task(cells["t"]).digest == before.digest


def test_source_digests_follow_what_a_callable_runs():
    def f(x):
        return x

    @functools.wraps(f)
    def wrapper(x):
        return f(x)

    class Scale:
        def method(self):
            return 1

        def __call__(self):
            return 2

    assert source_digest(f) == code_facts(f.__code__).digest
    assert source_digest(functools.partial(f, 1)) == source_digest(f)
    assert source_digest(wrapper) == source_digest(f)
    assert source_digest(Scale().method) == source_digest(Scale.method)
    call = code_facts(Scale.__call__.__code__).digest
    assert source_digest(Scale()) == sha(Scale.__qualname__, call)
    assert source_digest(Scale) == sha("callable", Scale.__qualname__)
    assert source_digest(len) == sha("callable", "len")


def test_mappings_enums_and_deep_values_have_digests():
    import collections
    import enum

    ids = Identities()
    plain = ids.value_digest({"a": 1, "b": 2})
    assert ids.value_digest({"a": 1, "b": 2}) == plain
    assert ids.value_digest({"a": 1, "b": 3}) != plain
    # A mapping counts in its order and by its type and state: code can see them.
    assert ids.value_digest({"b": 2, "a": 1}) != plain
    assert ids.value_digest(collections.OrderedDict([("a", 1), ("b", 2)])) != plain
    counts = {"a": 1, "b": 2}
    assert ids.value_digest(collections.defaultdict(int, counts)) != ids.value_digest(
        collections.defaultdict(list, counts)
    )
    ordered = collections.OrderedDict(counts)
    before = ids.value_digest(ordered)
    ordered.move_to_end("a")  # the dict underneath keeps its order; OrderedDict's changes
    assert Identities().value_digest(ordered) != before
    assert ids.value_digest(collections.Counter(counts)) != plain
    assert ids.value_digest({1, 2}) != ids.value_digest(frozenset({1, 2}))
    assert ids.value_digest((1, 2)) != ids.value_digest([1, 2])
    assert ids.value_digest("a") != ids.value_digest(b"a")

    class Color(enum.Enum):
        RED = 1
        BLUE = 2

    assert ids.value_digest(Color.RED) == ids.value_digest(Color.RED)
    assert ids.value_digest(Color.RED) != ids.value_digest(Color.BLUE)
    deep: list = [1]
    for _ in range(60):  # deeper than the walk goes: the rest by pickle, still a digest
        deep = [deep]
    assert len(ids.value_digest(deep)) == 16
    deeper = [deep]
    assert ids.value_digest(deeper) != ids.value_digest(deep)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.25, "0.25"),
        ("x" * 50, repr("x" * 50)[:37] + "..."),
        (b"raw", "<bytes>"),
        (json, "module json"),
        (Identities, "Identities"),
        (np.zeros((2, 3)), "<ndarray 2x3>"),
        ([1, 2], "[1, 2]"),
        (list(range(30)), "<list of 30>"),
        (threading.Lock(), "<lock>"),
    ],
    ids=["float", "long-str", "bytes", "module", "class", "array", "list", "long-list", "other"],
)
def test_values_are_shown_short(value, shown):
    assert show(value) == shown


def test_module_versions_come_from_the_loaded_code(monkeypatch):
    import types as types_module

    ids = Identities()
    assert ids._module_version("json.decoder") == sys.version.split()[0]
    assert ids._module_version("numpy.linalg") == np.__version__
    fake = types_module.ModuleType("nbflow_fake_lib")
    fake.__version__ = "9.9"
    monkeypatch.setitem(sys.modules, "nbflow_fake_lib", fake)
    assert ids._module_version("nbflow_fake_lib.sub") == "9.9"
    fake.__version__ = "10.0"
    assert ids._module_version("nbflow_fake_lib") == "9.9"  # read once per Identities
    assert Identities()._module_version("nbflow_fake_lib") == "10.0"


# -- objects of notebook classes, recursion, cycles ----------------------------------------------

VEC = "class Vec:\n    def __init__(self, x):\n        self.x = x\n    def norm(self):\n"


@pytest.mark.parametrize(
    "task",
    [
        "ORIGIN = Vec({'a', 'b'})\ndef t():\n    return ORIGIN.norm()\n",
        "def t(v=Vec({'a', 'b'})):\n    return v.norm()\n",
        "import functools\nt = functools.partial(lambda v: v.norm(), [Vec({'a', 'b'})])\n",
    ],
    ids=["global", "default", "argument"],
)
def test_an_object_counts_by_its_class_code_and_its_state(task):
    # A pickle names an object's class, it does not hold its code: the class's identity
    # counts too, so an edited method is seen (it was not: a stale result).
    with kernel() as cells:
        cells.run(VEC + "        return 1\n")
        cells.run(task)
        ids = Identities()
        first = ids.task(cells["t"])
        assert first.digest is not None
        cells.run(VEC + "        return 1\n")  # the class cell re-run unchanged
        cells.run(task)  # and the object made again, equal (its set built anew)
        assert ids.task(cells["t"]).digest == first.digest
        cells.run(VEC + "        return 2\n")  # a method edited
        cells.run(task)
        edited = ids.task(cells["t"])
        assert edited.digest not in (None, first.digest)
        assert Identities().task(cells["t"]) == edited


def test_an_object_made_before_its_class_was_edited_keeps_the_old_code():
    with kernel() as cells:
        cells.run(VEC + "        return 1\nOLD = Vec(1)\n")
        cells.run("def t():\n    return OLD.norm()\n")
        ids = Identities()
        first = ids.task(cells["t"])
        cells.run(VEC + "        return 2\n")  # OLD still runs the old norm()
        assert ids.task(cells["t"]) == first
        cells.run("OLD = Vec(1)\n")
        assert ids.task(cells["t"]).digest != first.digest


@pytest.mark.parametrize("order", ["caller first", "callee first"])
def test_recursive_helpers_are_identified_as_a_group(cells, order):
    cells.run(
        "def even(n):\n    return n == 0 or odd(n - 1)\n"
        "def odd(n):\n    return n != 0 and even(n - 1)\n"
        "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
        "def t1():\n    return even(4)\ndef t2():\n    return odd(3)\n"
        "def t3():\n    return fact(3)\n"
    )
    names = ["t1", "t2", "t3"] if order == "caller first" else ["t3", "t2", "t1"]

    def identities(ids: Identities) -> dict[str, Identity]:
        return dict(zip(names, ids.tasks([(cells[n], ()) for n in names]), strict=True))

    ids = Identities()
    first = identities(ids)
    assert identities(ids) == first  # a second pass (it raised RecursionError)
    assert identities(Identities()) == first
    cells.run("def odd(n):\n    return n != 0 and even(n - 1) and True\n")
    edited = identities(ids)
    # Every task reaching the group sees an edit of any member (t1 did not, when t2 was
    # walked first), and whichever task was walked first, the digests are the same.
    assert edited["t1"].digest != first["t1"].digest
    assert edited["t2"].digest != first["t2"].digest
    assert edited["t3"] == first["t3"]
    assert edited["t1"].changes_since(first["t1"]) == ["helper `even` changed"]
    other = ["t2", "t1", "t3"]
    swapped = dict(zip(other, Identities().tasks([(cells[n], ()) for n in other]), strict=True))
    assert swapped == edited


def test_a_flow_with_recursive_helpers_runs_twice():
    with kernel() as cells:
        cells.run(
            "import nbflow as nf\nflow = nf.Flow('recursive', store=None)\n"
            "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
            "@flow.task\ndef t():\n    return fact(5)\n"
        )
        assert [cells["flow"].run().results["t"] for _ in range(2)] == [120, 120]


def test_values_that_hold_themselves_or_share_parts_are_hashed_once_each():
    # A tree whose nodes know their parent: walked path by path, each level multiplied the
    # work by the number of children (this one would never have ended).
    ids = Identities()
    root: dict = {"kids": []}
    root["kids"] += [{"parent": root, "n": i} for i in range(30)]
    first = ids.value_digest(root)
    assert ids.value_digest(root) == first
    root["kids"][7]["n"] = -1
    assert ids.value_digest(root) != first
    # A structure that shares its parts, outside a pass (a run's variables): 2^60 paths.
    shared: list = [1]
    for _ in range(60):
        shared = [shared, shared]
    assert ids.value_digest(shared) == Identities().value_digest(shared)


def test_a_tuple_class_attribute_is_an_attribute(cells):
    cells.run("class Cfg:\n    sizes = (1, 2)\ndef t():\n    return Cfg.sizes\n")
    assert changed(cells, "t", "Cfg.sizes = (1, 3)\n") == [
        "class `Cfg`: attribute `sizes` changed ((1, 2) -> (1, 3))"
    ]


# -- a helper reached through each place, builtins, no source, unbound names ------------------

HELPER = "import functools\nK = 1\ndef helper():\n    return K\n"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def t():\n    return helper()\n", "helper `helper`: global `K`"),
        ("def t(f=helper):\n    return f()\n", "default `f`: global `K`"),
        ("def t(*, f=helper):\n    return f()\n", "default `f`: global `K`"),
        (
            "def make(f):\n    def t():\n        return f()\n    return t\nt = make(helper)\n",
            "closure `f`: global `K`",
        ),
        ("t = functools.partial(lambda f: f(), helper)\n", "argument `0`: global `K`"),
        ("t = functools.partial(lambda f=None: f(), f=helper)\n", "argument `f`: global `K`"),
        ("t = functools.partial(helper)\n", "global `K`"),
        ("t = functools.lru_cache(helper)\n", "global `K`"),  # a library's wrapper
        (
            "class Call:\n    def __call__(self):\n        return helper()\nt = Call()\n",
            "class `Call`: method `__call__`: helper `helper`",
        ),
        (
            "class Cfg:\n    f = staticmethod(helper)\ndef t():\n    return Cfg.f()\n",
            "class `Cfg`: method `f`",
        ),
    ],
    ids=[
        "global",
        "default",
        "kw-default",
        "closure",
        "argument",
        "kw-argument",
        "partial",
        "wrapper",
        "callable",
        "static",
    ],
)
def test_a_helper_reached_through_each_place_says_what_changed_in_it(cells, source, words):
    # Down to two levels, a helper's own parts are listed under the place it is read from,
    # so that run.why() can say which of its globals changed.
    cells.run(HELPER)
    cells.run(source)
    ids = Identities()
    before = ids.task(cells["t"])
    cells.run("K = 2\n")
    after = ids.task(cells["t"])
    assert after.digest != before.digest
    assert [w.split(" changed")[0] for w in after.changes_since(before)] == [words]
    assert Identities().task(cells["t"]) == after


def test_builtins_count_by_name_and_their_instance_by_value(cells):
    import math
    import operator

    ids = Identities()
    python = sys.version.split()[0]
    sqrt = ids.task(math.sqrt)
    assert sqrt.parts == (Part("source", sha("builtin", "math", "sqrt", python), "sqrt"),)
    assert ids.task(math.sqrt) == sqrt and ids.task(math.floor).digest != sqrt.digest
    # A builtin bound to an object: the object counts by value.
    items = [1, 2]
    count = ids.task(items.count)
    assert [p.path for p in count.parts] == ["source", "instance"]
    assert count.parts[0].digest == sha("builtin", "builtins", "list.count", python)
    items.append(3)
    assert ids.task(items.count).changes_since(count) == ["instance changed ([1, 2] -> [1, 2, 3])"]
    assert ids.task(functools.partial(math.sqrt, 4)).digest != ids.task(math.sqrt).digest
    # A library's callable object keeps its state where only its pickle sees it.
    picks = {ids.task(operator.itemgetter(k)).digest for k in (0, 1, "a")}
    assert len(picks) == 3
    assert ids.task(operator.itemgetter(1)).digest == ids.task(operator.itemgetter(1)).digest


def test_a_function_without_source_counts_by_its_bytecode():
    # exec'd code (no file, nothing in linecache): its bytecode, constants and names.
    def define(source: str) -> dict:
        namespace: dict = {"__name__": "__main__"}
        exec(compile(source, "<no source>", "exec"), namespace)  # the test's own code
        return namespace

    plain = "def t(x=1):\n    return x + 10\n"
    nested = "def t():\n    def inner():\n        return 10\n    return inner()\n"
    lam = "t = lambda x: x + 10\n"
    ids = Identities()
    for source in (plain, nested, lam):
        first = ids.task(define(source)["t"])
        assert first.digest is not None
        assert Identities().task(define(source)["t"]) == first  # the same code, made again
        edited = ids.task(define(source.replace("10", "11"))["t"])
        assert edited.changes_since(first) == ["source changed"], source
        renamed = ids.task(define(source.replace("x", "y"))["t"])
        assert renamed.digest != first.digest or "x" not in source
    global_reader = define("def t():\n    return LIMIT\n")
    global_reader["LIMIT"] = 1
    before = ids.task(global_reader["t"])
    global_reader["LIMIT"] = 2
    assert ids.task(global_reader["t"]).changes_since(before) == ["global `LIMIT` changed (1 -> 2)"]


def test_names_not_bound_yet(cells):
    # A global not defined yet is a part ("undefined"); a builtin is not, unless shadowed.
    cells.run("def t():\n    return len(LATER)\n")
    ids = Identities()
    before = ids.task(cells["t"])
    assert [(p.path, p.shown) for p in before.parts[1:]] == [("global LATER", "undefined")]
    assert before.summary() == "source and 1 global"
    cells.run("LATER = [1]\n")
    after = ids.task(cells["t"])
    assert after.changes_since(before) == ["global `LATER` changed (undefined -> [1])"]
    cells.run("def len(x):\n    return 0\n")  # a builtin shadowed by the notebook
    assert ids.task(cells["t"]).changes_since(after) == ["helper `len` is new"]
    # A closure cell not bound yet is no part until it is.
    cells.run(
        "def make():\n    def u():\n        return later\n    first = u\n    later = 1\n"
        "    return first\nu = make()\n"
    )
    assert [p.path for p in ids.task(cells["u"]).parts] == ["source", "closure later"]
    cells.run(
        "def make2():\n    def u():\n        return later\n    return u\n"
        "    later = 1\nu = make2()\n"
    )
    assert [p.path for p in ids.task(cells["u"]).parts] == ["source"]


def test_a_closure_list_the_task_only_appends_to_does_not_count(cells):
    cells.run(
        "def make(log, k):\n    def t():\n        log.append(k)\n        return k\n    return t\n"
        "LOG = []\nt = make(LOG, 1)\n"
    )
    ids = Identities()
    first = ids.task(cells["t"])
    assert [p.path for p in first.parts] == ["source", "closure k"]
    cells.run("LOG.append('more')\n")
    assert ids.task(cells["t"]) == first


# -- options, stored digests, words ----------------------------------------------------------


def test_the_code_in_options_counts(cells):
    import nbflow as nf

    cells.run(
        "def gate(vars):\n    return True\ndef key(x):\n    return 1\n"
        "def transient(error):\n    return True\n"
    )
    flow = nf.Flow("code-options", store=None)
    flow.task(name="x")(lambda: 1)

    def identity() -> tuple[tuple[tuple[str, object], ...], Identity]:
        """Task t (re)defined with the notebook's functions of the moment in its options."""
        retry = nf.Retry(max_retries=1, retry_if=cells["transient"])
        when, key = cells["gate"], cells["key"]
        define = flow.task(name="t", when=when, cache_key=key, retry=retry, cache_ignore=("b", "a"))
        define(lambda x: x)
        options = identity_options(flow.tasks["t"].spec)
        return options, ids.task(flow.tasks["t"].fn, options)

    ids = Identities()
    options, before = identity()
    assert [name for name, _ in options] == [
        "fan_out",
        "allow_partial",
        "when",
        "cache_key",
        "retry_if",
        "cache_ignore",
    ]
    assert dict(options)["cache_ignore"] == ("a", "b")
    for name, edit in [
        ("when", "def gate(vars):\n    return False\n"),
        ("cache_key", "def key(x):\n    return 2\n"),
        ("retry_if", "def transient(error):\n    return False\n"),
    ]:
        cells.run(edit)
        after = identity()[1]
        assert after.changes_since(before) == [f"option `{name}` changed"], name
        before = after


#: Kept in stores too (see PINNED): a value's pickle (the same bytes on Python 3.11-3.13), a
#: pandas object's digest (its values' bytes, labels, names and dtypes, read through pandas'
#: public API) and a flow's version.
PINNED_MORE = [
    (__import__("datetime").date(2020, 1, 2), "6961a619fa3aa6ff"),
    (__import__("decimal").Decimal("1.5"), "4ab000f33dad9015"),
    (pd.Series([1, 2], name="a"), "4f6f91b23fb8e44f"),
]


@pytest.mark.parametrize(("value", "digest"), PINNED_MORE, ids=["date", "decimal", "series"])
def test_pickled_and_pandas_digests_are_pinned(value, digest):
    assert Identities().value_digest(value) == digest


def test_flow_versions_are_pinned_and_name_what_cannot_be_hashed():
    def version(**tasks: Identity) -> str:
        return flow_version("spec", tasks)

    unhashable = Identity(None, (), (("global LOCK", "lock cannot be pickled"),))
    assert version(a=Identity("d1"), b=unhashable) == "33629323a4fa96a3"
    assert version(b=Identity(None, (), (("global LOCK", "another reason"),))) == version(
        b=unhashable
    )
    assert version(b=Identity(None, (), (("global CONN", "r"),))) != version(b=unhashable)
    assert version(b=Identity(None, (), (("global LOCK", "r"), ("global CONN", "r")))) != (
        version(b=unhashable)
    )


def test_summaries_leave_out_unset_options_and_join_two_kinds():
    def parts(*items: tuple[str, str]) -> Identity:
        return Identity("d", tuple(Part(path, "x", shown) for path, shown in items))

    unset = [("option fan_out", "None"), ("option allow_partial", "False"), ("option x", "()")]
    assert parts(("source", ""), *unset).summary() == "source"
    assert parts(("source", ""), ("option when", "gate")).summary() == "source and 1 option"
    assert parts(("source", ""), ("global A", "1")).summary() == "source and 1 global"


def test_code_paths_at_every_depth():
    assert is_code_path("option when / helper g / source")
    assert not is_code_path("global source")  # a value named source
    assert not is_code_path("option when / helper g / global source")


def test_library_roots_are_the_interpreters_install_paths_and_site_packages(monkeypatch):
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    paths = {key: f"/nbflow-none/{key}" for key in keys}  # (no links to resolve)
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {**paths, "scripts": "/bin"})
    monkeypatch.setattr(
        sys, "path", ["/nbflow-none/dist-packages", "/nbflow-none/site-packages", "/nbflow-none"]
    )
    expected = [*paths.values(), "/nbflow-none/dist-packages", "/nbflow-none/site-packages"]
    assert sorted(_library_roots()) == sorted(os.path.join(p, "") for p in expected)


def test_a_module_of_the_working_directory_is_user_code():
    # tests/ is on sys.path (pytest put it there), as a notebook's folder is.
    import ipython_cells

    assert not is_library(ipython_cells.__name__)


def test_an_equal_frame_built_another_way_keeps_its_digest():
    # Its pickle differs (one block of columns, or one per column added): its content not.
    at_once = pd.DataFrame({"x": [1, 2], "y": [3, 4]})
    by_column = pd.DataFrame({"x": [1, 2]})
    by_column["y"] = [3, 4]
    ids = Identities()
    assert ids.value_digest(by_column) == ids.value_digest(at_once)
    named = pd.Series([1, 2], name="a")
    assert ids.value_digest(pd.Series(np.array([1, 2]), name="a")) == ids.value_digest(named)
    assert ids.value_digest(pd.Series([1, 2], name="b")) != ids.value_digest(named)
    assert ids.value_digest(pd.Index([1, 2])) == ids.value_digest(pd.Index([1, 2]))


def test_a_task_whose_file_lines_do_not_tokenize_still_runs():
    """linecache's lines for a code's file may not be its source (the file changed, or code
    compiled under another file's name, as the README test does); on Python 3.12+ that is a
    tokenize.TokenError from inspect, which must not stop the run."""
    import linecache

    import nbflow as nf

    name = "<nbflow-test-garbled-source>"
    namespace: dict[str, object] = {}
    exec(compile("def garbled():\n    return 1\n", name, "exec"), namespace)
    lines = ["def garbled():\n", "    x = '''never closed\n", "    return 1\n"]
    linecache.cache[name] = (sum(map(len, lines)), None, lines, name)
    try:
        flow = nf.Flow("garbled", store=None)
        flow.task(namespace["garbled"])
        assert flow.run().results == {"garbled": 1}
    finally:
        linecache.cache.pop(name, None)


# -- edges: lengths shown, library boundaries, sources for diffs -------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x" * 38, repr("x" * 38)),  # 40 characters: whole
        ("x" * 39, repr("x" * 39)[:37] + "..."),
        (["a" * 36], repr(["a" * 36])),  # 40 characters
        (["a" * 37], "<list of 1>"),
    ],
    ids=["str-40", "str-41", "list-40", "list-41"],
)
def test_values_up_to_40_characters_are_shown_whole(value, shown):
    assert show(value) == shown


def test_a_value_that_cannot_be_shown():
    class Odd:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert show([Odd()]) == "<?>"


def test_changed_values_are_shown_while_short():
    def words(old: str, new: str) -> list[str]:
        before = Identity("a", (Part("global X", "1", old),))
        return Identity("b", (Part("global X", "2", new),)).changes_since(before)

    assert words("a" * 40, "b" * 39) == [f"global `X` changed ({'a' * 40} -> {'b' * 39})"]
    assert words("a" * 40, "b" * 40) == ["global `X` changed"]


def test_changes_of_options_helpers_and_parts_gone(cells):
    cells.run("def g():\n    return 1\ndef gate(vars):\n    return True\n")
    gate = (("when", cells["gate"]),)
    cells.run("REMOVED = 1\ndef t():\n    return REMOVED\n")
    ids = Identities()
    before = ids.task(cells["t"], gate)
    cells.run("def gate(vars):\n    return g()\ndef t():\n    return 1\n")
    after = ids.task(cells["t"], (("when", cells["gate"]),))
    assert after.changes_since(before) == [
        "source changed",
        "option `when` changed",
        "option `when`: helper `g` is new",
        "global `REMOVED` is gone",
    ]
    assert after.changes_since(before, skip=is_code_path) == [
        "option `when`: helper `g` is new",
        "global `REMOVED` is gone",
    ]


def test_flow_versions_name_every_variable_that_cannot_be_hashed():
    two = Identity(None, (), (("global A", "r"), ("global B", "r")))
    assert flow_version("spec", {"t": two}) == "6bdf0916aa9571f4"


def test_complete_when_counts():
    import nbflow as nf

    def options(complete_when: str, cancel_rest: bool) -> tuple[tuple[str, object], ...]:
        flow = nf.Flow("complete", store=None)
        flow.task(name="items")(lambda: [1, 2])
        flow.task(
            name="each", fan_out="items", complete_when=complete_when, cancel_rest=cancel_rest
        )(lambda items: items)
        return identity_options(flow.tasks["each"].spec)

    found = dict(options("succeeded >= 1", False))
    assert found["complete_when"] == ("succeeded >= 1", False)
    digests = {
        Identities().task(len, options(when, cancel)).digest
        for when, cancel in [
            ("succeeded >= 1", False),
            ("succeeded >= 2", False),
            ("succeeded >= 1", True),
        ]
    }
    assert len(digests) == 3


def test_what_is_a_library(monkeypatch, tmp_path):
    import types as types_module

    absent = next(n for n in sorted(sys.stdlib_module_names) if n not in sys.modules)
    assert is_library(absent)  # the standard library, imported or not
    assert is_library("json.nbflow_no_such_module")  # in a package of the standard library
    assert is_library("numpy.nbflow_not_loaded")  # not loaded: its package decides
    # A module without a file (a namespace package) is installed code.
    monkeypatch.setitem(sys.modules, "nbflow_no_file", types_module.ModuleType("nbflow_no_file"))
    assert is_library("nbflow_no_file")
    # A module of yours inside a package installed in site-packages is yours.
    top = types_module.ModuleType("nbflow_lib_top")
    top.__file__ = os.path.join(sysconfig.get_paths()["purelib"], "nbflow_lib_top.py")
    mine = types_module.ModuleType("nbflow_lib_top.mine")
    mine.__file__ = str(tmp_path / "mine.py")
    monkeypatch.setitem(sys.modules, "nbflow_lib_top", top)
    monkeypatch.setitem(sys.modules, "nbflow_lib_top.mine", mine)
    assert is_library("nbflow_lib_top") and not is_library("nbflow_lib_top.mine")


def test_sources_for_diffs_follow_wrappers_methods_and_recursion(cells):
    cells.run(
        "import functools\n"
        "def deco(f):\n    @functools.wraps(f)\n    def wrapper(*a):\n        return f(*a)\n"
        "    return wrapper\n"
        "@deco\ndef helper():\n    return fact(3)\n"
        "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n"
        "@deco\ndef t():\n    return helper()\n"
        "class Obj:\n    def m(self):\n        return helper()\n"
    )
    found = user_sources(cells["t"])
    assert sorted(found) == ["", "fact", "helper"]
    assert found[""].startswith("@deco\ndef t():")
    assert found["helper"].startswith("@deco\ndef helper():")
    method = user_sources(cells["Obj"]().m)
    assert method[""].startswith("def m(self):") and sorted(method) == ["", "fact", "helper"]


def test_the_source_digest_of_a_librarys_callable_object():
    import operator

    assert source_digest(operator.itemgetter(1)) == sha("callable", "itemgetter")


def test_an_unset_slot_of_a_callable_object(cells):
    cells.run(
        "class Scale:\n    __slots__ = ('k',)\n    def __call__(self):\n        return self.k\n"
        "t = Scale()\n"
    )
    ids = Identities()
    unset = ids.task(cells["t"])
    assert {p.path: p.shown for p in unset.parts}["instance"] == "{}"
    cells.run("t.k = 2\n")
    assert ids.task(cells["t"]).changes_since(unset) == ["instance changed ({} -> {'k': 2})"]


def test_numpy_arrays_of_objects_differ_by_content():
    ids = Identities()
    assert ids.value_digest(np.array([1, None], dtype=object)) != ids.value_digest(
        np.array([2, None], dtype=object)
    )


RING = (
    "def a(n):\n    return b(n) + c(n)\n"
    "def b(n):\n    return n and a(n - 1)\n"
    "def c(n):\n    return b(n)\n"
    "def via():\n    return c(1)\n"  # reaches the ring, is not in it
    "def ta():\n    return a(2)\ndef tv():\n    return via()\n"
)


def test_a_recursive_groups_digests_do_not_depend_on_the_order_tasks_are_walked(cells):
    cells.run(RING)
    orders = [["ta", "tv"], ["tv", "ta"]]
    found = [
        dict(zip(order, Identities().tasks([(cells[n], ()) for n in order]), strict=True))
        for order in orders
    ]
    assert found[0] == found[1]
    ids = Identities()
    ids.tasks([(cells[n], ()) for n in orders[0]])
    again = dict(zip(orders[1], ids.tasks([(cells[n], ()) for n in orders[1]]), strict=True))
    assert again == found[0]


def test_a_global_bound_to_another_member_of_a_group_changes_the_identity(cells):
    cells.run(
        "def even(n):\n    return n == 0 or odd(n - 1)\n"
        "def odd(n):\n    return n != 0 and even(n - 1)\n"
        "pick = even\ndef via():\n    return pick(3)\ndef t():\n    return via()\n"
    )  # (through via: past the depth its parts are listed to, its digest alone tells)
    assert changed(cells, "t", "pick = odd\n")


def test_a_recursive_group_that_cannot_be_hashed_names_the_variable(cells):
    cells.namespace["LOCK"] = threading.Lock()
    cells.run(
        "def even(n):\n    return n == 0 or odd(n - 1)\n"
        "def odd(n):\n    return n != 0 and even(n - 1) and LOCK\n"
        "class Node:\n    lock = LOCK\n    def child(self):\n        return Node()\n"
        "def t():\n    return even(3)\ndef u():\n    return Node().child()\n"
    )
    t, u = Identities().tasks([(cells["t"], ()), (cells["u"], ())])
    assert t.digest is None and u.digest is None
    assert t.unhashable[0][0] == "global even / helper odd / global LOCK"
    assert [path for path, _ in u.unhashable] == ["global Node / attribute lock"]
    # A helper in a group with the class: its variable is named through the class.
    cells.run(
        "def helper():\n    return Node\nNode.make = lambda self: helper()\n"
        "def v():\n    return helper()\n"
    )
    (v,) = Identities().tasks([(cells["v"], ())])
    assert [path for path, _ in v.unhashable] == ["global helper / class Node / attribute lock"]


# -- more places: a class as a task, code held in globals, library functions, deep values ----

CLASSES = (
    "import functools\nK = 1\ndef helper():\n    return K\n"
    "class Base:\n    B = 1\n"
    "class Make(Base):\n    limit__ = 1\n    def __init__(self):\n        self.v = helper()\n"
    "class Registry(dict):\n    def m(self):\n        return K\n"
)


def test_a_class_as_a_task_counts_by_its_identity(cells):
    cells.run(CLASSES)
    ids = Identities()
    before = ids.task(cells["Make"])
    assert [p.path for p in before.parts] == [
        "source",
        "source / name",
        "source / base Base",
        "source / base Base / name",
        "source / base Base / attribute B",
        "source / method __init__",
        "source / method __init__ / source",
        "source / method __init__ / helper helper",
        "source / attribute limit__",
    ]
    cells.run("K = 2\n")
    after = ids.task(cells["Make"])
    assert after.changes_since(before) == ["source: method `__init__`: helper `helper` changed"]
    cells.run("Base.B = 2\n")  # in place: Make is the same object, made of the same ones
    later = ids.task(cells["Make"])
    assert later.changes_since(after) == ["source: base `Base`: attribute `B` changed (1 -> 2)"]
    cells.run("Make.limit__ = 2\n")  # (a name ending in __ is no dunder)
    assert ids.task(cells["Make"]).changes_since(later) == [
        "source: attribute `limit__` changed (1 -> 2)"
    ]
    # A builtin bound to a class of yours (a dict's classmethod): that class counts.
    before = ids.task(cells["Registry"].fromkeys)
    cells.run("K = 3\n")
    assert ids.task(cells["Registry"].fromkeys).changes_since(before) == [
        "instance: method `m`: global `K` changed (2 -> 3)"
    ]


def test_classes_differ_by_name_and_say_so(cells):
    cells.run("class A:\n    x = 1\nclass B:\n    x = 1\nC = A\ndef t():\n    return C\n")
    assert changed(cells, "t", "C = B\n") == ["class `C`: name changed (A -> B)"]


def test_code_held_in_globals_counts_by_the_code_it_runs(cells):
    # A partial, a library's wrapper and a bound method read through globals: by what they
    # call (a pickle would name the function, not hold its code).
    cells.run(
        CLASSES + "p_fn = functools.partial(helper)\ncached = functools.lru_cache(helper)\n"
        "class Obj:\n    def m(self):\n        return helper()\nbound = Obj().m\n"
        "def t():\n    return p_fn(), cached(), bound()\n"
    )
    ids = Identities()
    before = ids.task(cells["t"])
    assert [(p.path, p.shown) for p in before.parts] == [
        ("source", ""),
        ("global bound", "<method>"),
        ("global cached", "<_lru_cache_wrapper>"),
        ("global p_fn", "<partial>"),
    ]
    cells.run("K = 2\n")
    after = ids.task(cells["t"])
    assert after.changes_since(before) == [
        "global `bound` changed",
        "global `cached` changed",
        "global `p_fn` changed",
    ]
    # Redefining helper: the partial and the wrapper still run the old one, the method not.
    cells.run("def helper():\n    return K + 1\n")
    assert ids.task(cells["t"]).changes_since(after) == ["global `bound` changed"]


def test_a_wrapper_object_of_yours_counts_by_its_own_class_and_state(cells):
    cells.run(
        "def f():\n    return 1\n"
        "class Logged:\n    def __init__(self, fn):\n        self.__wrapped__ = fn\n"
        "    def __call__(self):\n        return self.__wrapped__() + 1\nt = Logged(f)\n"
    )
    edit = (
        "class Logged:\n    def __init__(self, fn):\n        self.__wrapped__ = fn\n"
        "    def __call__(self):\n        return self.__wrapped__() + 2\nt = Logged(f)\n"
    )
    assert changed(cells, "t", edit) == ["class `Logged`: method `__call__` changed"]


def test_library_functions_and_modules_in_other_places(cells):
    cells.run("import json\nfrom json import dumps\ndef t(m=json):\n    return dumps(m)\n")
    python = sys.version.split()[0]
    parts = {p.path: p for p in identity_of(cells, "t").parts}
    assert parts["global dumps"] == Part(
        "global dumps", sha("function", "json", "dumps", python), "dumps"
    )
    assert parts["default m"].shown == f"json {python}"


def test_a_value_that_stops_being_hashable_says_from_what(cells):
    cells.run("X = 1\ndef t():\n    return X\n")
    edit = "import threading\nX = threading.Lock()\n"
    assert changed(cells, "t", edit) == ["global `X` changed (1 -> <lock>)"]
    assert identity_of(cells, "t").digest is None


def test_an_object_whose_class_cannot_be_hashed(cells):
    with kernel() as main:
        main.namespace["LOCK"] = threading.Lock()
        main.run("class Conn:\n    lock = LOCK\nC = Conn()\ndef t():\n    return C\n")
        found = Identities().task(main["t"])
        assert found.digest is None
        assert found.unhashable == (
            (
                "global C",
                "its class Conn cannot be hashed (attribute lock: lock cannot be pickled "
                "(TypeError: cannot pickle '_thread.lock' object))",
            ),
        )


def test_an_enum_member_counts_by_its_class(cells):
    cells.run(
        "import enum\nclass Mode(enum.Enum):\n    FAST = 1\ndef t(m=Mode.FAST):\n    return m\n"
    )
    ids = Identities()
    assert ids.task(cells["t"]) == ids.task(cells["t"])
    edit = "class Mode(enum.Enum):\n    FAST = 2\ndef t(m=Mode.FAST):\n    return m\n"
    assert changed(cells, "t", edit) == ["default `m` changed"]


def deep(levels: int, make, bottom: object = 1) -> object:
    value: object = bottom
    for _ in range(levels):
        value = make(value)
    return value


#: Deeper than the walk (40 levels): the rest by its pickle (stable bytes: ints, tuples,
#: lists, dicts), and a tree that knows its parent by the pickle of the whole.
def _tree() -> dict:
    root: dict = {"kids": [], "day": __import__("datetime").date(2020, 1, 2)}
    root["kids"] += [{"parent": root, "n": i} for i in range(3)]
    return root


DEEP = [
    (deep(45, lambda v: [v], __import__("datetime").date(2020, 1, 2)), "3f1e354e66db3007"),
    (deep(45, lambda v: (v,)), "f09d63367061400f"),
    (deep(45, lambda v: {"k": v}), "d0451e83f2b089f3"),
    ({deep(45, lambda v: (v,)): 1}, "97f9144195efb360"),
    (frozenset({deep(45, lambda v: (v,))}), "a01740c4c7f42679"),
    (_tree(), "5434d01b7e86440c"),
]


@pytest.mark.parametrize(
    ("value", "digest"), DEEP, ids=["list", "tuple", "dict", "key", "set", "cycle"]
)
def test_deep_and_cyclic_values_are_pinned(value, digest):
    assert Identities().value_digest(value) == digest


def test_objects_deeper_than_the_walk_are_hashed_by_their_pickle(cells):
    with kernel() as main:
        main.run("class Box:\n    def __init__(self, v):\n        self.v = v\n")
        box = main["Box"]
        # 45 objects down (an object and its attributes are two levels), a function (which
        # does not pickle) is past the walk.
        with pytest.raises(Unhashable):
            Identities().value_digest(_boxes(box, 45, lambda: 1))
        # 15 down, a set is still walked: it counts by content, not by its order.
        one, two = {1, 9}, {9, 1}
        assert list(one) != list(two)  # (1 and 9 share a slot: the order they came in)
        assert Identities().value_digest(_boxes(box, 15, one)) == Identities().value_digest(
            _boxes(box, 15, two)
        )


def _boxes(box, levels: int, inner):
    value = inner
    for _ in range(levels):
        value = box(value)
    return value


def test_other_mappings_and_collections(cells):
    import collections

    ids = Identities()
    assert ids.value_digest(collections.deque([1, 2])) != ids.value_digest(
        collections.deque([1, 3])
    )


# -- one Identities over many passes: what it remembers must never be stale ---------------------


def test_one_function_as_several_tasks_in_one_pass(cells):
    cells.run("def helper():\n    return 1\ndef t():\n    return helper()\n")
    ids = Identities()
    t, helper = cells["t"], cells["helper"]
    gated = (("when", helper),)
    for _ in range(2):  # a second pass: what the first remembered
        found = ids.tasks([(t, ()), (helper, ()), (t, gated), (t, ()), (helper, ())])
        fresh = [Identities().task(fn, options) for fn, options in
                 [(t, ()), (helper, ()), (t, gated), (t, ()), (helper, ())]]  # fmt: skip
        assert found == fresh
        assert found[0] == found[3] and found[1] == found[4] and found[0] != found[2]


def test_a_cycle_made_by_editing_a_helper_is_seen_by_a_long_lived_memo(cells):
    cells.run(
        "def h():\n    return 1\ndef g():\n    return h()\ndef f():\n    return g()\n"
        "def t():\n    return f()\n"
    )
    ids = Identities()
    ids.task(cells["t"])
    cells.run("def h():\n    return f()\n")  # f -> g -> h -> f
    assert ids.task(cells["t"]) == Identities().task(cells["t"])
    assert ids.task(cells["t"]) == Identities().task(cells["t"])


def test_classes_and_enums_that_reach_themselves_over_passes(cells):
    cells.run(
        "import enum\nclass Mode(enum.Enum):\n    FAST = 1\n    SLOW = 2\n"
        "class Vec:\n    def __init__(self, x):\n        self.x = x\n"
        "    def add(self, o):\n        return Vec(self.x + o.x)\n"
        "def t():\n    return Vec(1).add(Vec(2)), Mode.FAST\n"
    )
    ids = Identities()
    for edit in ("", "Vec.scale = 2\n", "def helper():\n    return Vec\nVec.make = helper\n"):
        cells.run(edit)
        assert ids.task(cells["t"]) == Identities().task(cells["t"]), edit
        assert ids.task(cells["t"]) == Identities().task(cells["t"]), edit


def test_a_module_file_is_read_once_while_it_is_unchanged(cells, tmp_path, monkeypatch):
    (tmp_path / "steady_for_identity.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "steady_for_identity", raising=False)
    cells.run("import steady_for_identity\ndef t():\n    return steady_for_identity.VALUE\n")
    ids = Identities()
    first = ids.task(cells["t"])
    assert ids.task(cells["t"]) == first == Identities().task(cells["t"])


def test_a_module_made_in_the_notebook_counts_by_its_contents(cells):
    # (No file: what it holds, as any module of user code.)
    cells.run(
        "import types\ncfg = types.ModuleType('cfg')\ndef t():\n    return cfg\n"
        "other = types.ModuleType('other')\n"
    )
    found = {p.path: p for p in identity_of(cells, "t").parts}
    assert found["module cfg"].shown.startswith("cfg (code ")
    cells.run("cfg.RATE = 2\n")
    assert changed(cells, "t", "cfg.RATE = 3\n") == ["module `cfg`: global `RATE` changed (2 -> 3)"]
    cells.run("cfg = other\n")
    assert {p.path: p for p in identity_of(cells, "t").parts}["module cfg"] != found["module cfg"]


def test_every_global_after_a_builtin_counts(cells):
    cells.run("zeta = 1\ndef t():\n    return abs(zeta)\n")
    assert changed(cells, "t", "zeta = 2\n") == ["global `zeta` changed (1 -> 2)"]


def test_builtins_are_those_the_function_sees():
    import builtins
    import types as types_module

    def function(source: str, scope: dict) -> types_module.FunctionType:
        exec(compile(source, "<builtins test>", "exec"), scope)  # the test's own code
        return scope["t"]

    source = "def t():\n    return len(print)\n"
    restricted = function(source, {"__builtins__": {"len": len}})  # print is not there
    assert [p.path for p in Identities().task(restricted).parts] == ["source", "global print"]
    as_module = function(source, {"__builtins__": builtins})  # a kernel's __main__
    assert [p.path for p in Identities().task(as_module).parts] == ["source"]
    code = compile(source, "<builtins test>", "exec").co_consts[0]
    bare = types_module.FunctionType(code, {"__name__": "bare"})  # no __builtins__ key
    assert [p.path for p in Identities().task(bare).parts] == ["source"]


def test_keyword_only_defaults_replaced_in_place(cells):
    cells.run("def t(*, k=1):\n    return k\n")
    assert changed(cells, "t", "t.__kwdefaults__ = {'k': 2}\n") == ["default `k` changed (1 -> 2)"]


def test_a_pass_reads_values_as_of_its_start(cells):
    cells.run("ITEMS = [1]\ndef t():\n    return ITEMS\n")
    ids = Identities()
    ids.begin()
    first = ids.task(cells["t"])
    cells["ITEMS"].append(2)  # within the pass: not seen (one moment, a run's start)
    assert ids.task(cells["t"]) == first
    ids.end()
    assert ids.task(cells["t"]).digest != first.digest


@pytest.mark.parametrize(
    ("source", "words"),
    [
        (
            "def h2():\n    return helper()\nt = functools.partial(lambda f: f(), h2)\n",
            ["argument `0`: helper `helper`: global `K` changed (1 -> 2)"],
        ),
        (
            "class Obj:\n    def m(self):\n        return helper()\nt = Obj().m\n",
            ["helper `helper`: global `K` changed (1 -> 2)", "instance changed"],
        ),
        (
            "class Obj:\n    @classmethod\n    def cm(cls):\n        return K\nt = Obj.cm\n",
            [
                "global `K` changed (1 -> 2)",
                "instance: method `cm`: global `K` changed (1 -> 2)",
            ],
        ),
    ],
    ids=["argument-of-argument", "method", "classmethod"],
)
def test_what_changed_two_levels_down(cells, source, words):
    cells.run(HELPER)
    cells.run(source)
    assert changed(cells, "t", "K = 2\n") == words


def test_fan_outs_over_several_parameters_and_loops_count(cells):
    import nbflow as nf

    cells.run("def done(result):\n    return result > 1\n")

    def options(**kwargs: object) -> dict[str, object]:
        flow = nf.Flow("shaped", store=None)
        flow.task(name="a")(lambda: [1, 2])
        flow.task(name="b")(lambda: [3])
        flow.task(name="t", **kwargs)(lambda a, b, previous=None: a)
        return dict(identity_options(flow.tasks["t"].spec))

    product = options(fan_out=["a", "b"])["fan_out"]
    assert product == ("product", (("a", "a"), ("b", "b")))
    assert options(fan_out=nf.zip("a", "b"))["fan_out"] == ("zip", (("a", "a"), ("b", "b")))
    assert options(fan_out="a")["fan_out"] == "a"
    loop = options(until="result > 1", max_iterations=3)
    assert loop["loop"] == ("result > 1", 3)
    assert options(until="result > 1", max_iterations=4)["loop"] == ("result > 1", 4)
    assert options(until=cells["done"], max_iterations=3)["until"] is cells["done"]


def test_a_value_holding_a_member_of_a_group_is_not_remembered_half_made(cells):
    # even reads TABLE, which holds odd: while the group is made again, TABLE is hashed with
    # odd standing in by its name; a task reading TABLE must still see odd's own code.
    cells.run(
        "def even(n):\n    return n == 0 or TABLE['odd'](n - 1)\n"
        "def odd(n):\n    return n != 0 and even(n - 1)\nTABLE = {'odd': odd}\n"
        "def t():\n    return even(3)\ndef u():\n    return TABLE\n"
    )
    ids = Identities()
    before = ids.tasks([(cells["t"], ()), (cells["u"], ())])
    cells.run("def odd(n):\n    return n != 0 and even(n - 1) and True\nTABLE['odd'] = odd\n")
    after = ids.tasks([(cells["t"], ()), (cells["u"], ())])
    assert after[1].digest != before[1].digest
    assert after == Identities().tasks([(cells["t"], ()), (cells["u"], ())])
    assert after[1] == Identities().task(cells["u"])


def test_pandas_values_other_than_frames_count_by_content():
    ids = Identities()
    assert ids.value_digest(pd.Timestamp("2020-01-01")) != ids.value_digest(
        pd.Timestamp("2021-01-01")
    )
    assert ids.value_digest(pd.Categorical(["a"])) != ids.value_digest(pd.Categorical(["b"]))


def test_code_a_pickle_names_counts(cells):
    # A library's object (a SimpleNamespace) holding a helper, and an object pickled its own
    # way, holding one: the pickle names the helper, its identity counts.
    with kernel() as main:
        main.run(
            "import types\nK = 1\ndef helper():\n    return K\n"
            "CFG = types.SimpleNamespace(step=helper)\n"
            "class Own:\n    def __init__(self, f):\n        self.f = f\n"
            "    def __getstate__(self):\n        return {'f': self.f}\n"
            "OWN = Own(helper)\ndef t():\n    return CFG.step(), OWN.f()\n"
        )
        ids = Identities()
        before = ids.task(main["t"])
        main.run("K = 2\n")
        after = ids.task(main["t"])
        assert after.changes_since(before) == ["global `CFG` changed", "global `OWN` changed"]
        assert after == Identities().task(main["t"])
        main.namespace["LOCK"] = threading.Lock()
        main.run("def helper():\n    return LOCK\nCFG.step = helper\n")
        found = Identities().task(main["t"])
        # (OWN still holds the helper before, which its name no longer finds: no pickle.)
        assert [path for path, _ in found.unhashable] == ["global CFG", "global OWN"]
        reason = found.unhashable[0][1]
        assert reason.startswith("its function helper cannot be hashed (global LOCK: ")


def test_a_generated_function_has_the_identity_of_what_it_stands_for(cells):
    from nbflow.identity import IDENTITY_OF

    cells.run(
        "def action(x):\n    return x + 1\ndef call(**kwargs):\n    return action(**kwargs)\n"
    )
    setattr(cells["call"], IDENTITY_OF, cells["action"])
    assert Identities().task(cells["call"]) == Identities().task(cells["action"])


def test_options_code_two_levels_down_and_options_that_cannot_be_hashed(cells):
    cells.run("K = 1\ndef g():\n    return K\ndef gate(vars):\n    return g()\n")
    cells.run("def t():\n    return 1\n")
    ids = Identities()
    gate = (("when", cells["gate"]),)
    before = ids.task(cells["t"], gate)
    cells.run("K = 2\n")
    assert ids.task(cells["t"], gate).changes_since(before) == [
        "option `when`: helper `g`: global `K` changed (1 -> 2)"
    ]
    locked = ids.task(cells["t"], (("x", threading.Lock()),))
    generated = ids.task(cells["t"], (("x", (i for i in ())),))
    assert "lock" in locked.unhashable[0][1] and "generator" in generated.unhashable[0][1]


def test_functions_alike_but_for_their_code_have_their_own_identities(cells):
    # The same keyword-only defaults, or closures of the same values, another code.
    cells.run(
        "def f(*, k=1):\n    return k\ndef g(*, k=1):\n    return k + 1\n"
        "def make_a(v):\n    def a():\n        return v\n    return a\n"
        "def make_b(v):\n    def b():\n        return v + 1\n    return b\n"
        "a, b = make_a(1), make_b(1)\n"
    )
    ids = Identities()
    assert ids.task(cells["f"]).digest != ids.task(cells["g"]).digest
    assert ids.task(cells["a"]).digest != ids.task(cells["b"]).digest


def test_builtins_of_other_modules_count_by_their_module(cells):
    import collections

    python = sys.version.split()[0]
    counter = Identities().task(collections.deque().count)
    assert counter.parts[0] == Part(
        "source", sha("builtin", "collections", "deque.count", python), "deque.count"
    )
    empty = Identities().task(np.empty)
    assert empty.parts == (
        Part("source", sha("builtin", "numpy", "empty", np.__version__), "empty"),
    )


def test_a_library_without_a_version_attribute_counts_by_its_distributions(cells):
    import importlib.metadata

    cells.run("import anyio\ndef t():\n    return anyio\n")
    shown = {p.path: p.shown for p in identity_of(cells, "t").parts}["module anyio"]
    assert shown == f"anyio {importlib.metadata.version('anyio')}"


def test_more_code_that_counts(cells):
    # A parameter's annotation (a wrapper like pydantic's validate_call acts on it), a
    # member of a recursive group held in a list, a keyword argument two levels down, and a
    # value of a library's class holding code and data: each change is seen.
    cells.run(HELPER + "def h2():\n    return helper()\n")
    cells.run("t = functools.partial(lambda f=None: f(), f=h2)\n")
    assert changed(cells, "t", "K = 2\n") == [
        "argument `f`: helper `helper`: global `K` changed (1 -> 2)"
    ]
    cells.run("def t(x: int = 1):\n    return x\n")
    assert changed(cells, "t", "def t(x: str = 1):\n    return x\n") == ["source changed"]
    cells.run(
        "def even(n):\n    return n == 0 or odd(n - 1)\n"
        "def odd(n):\n    return n != 0 and even(n - 1)\n"
        "FUNCS = [even]\ndef t():\n    return FUNCS[0](3)\n"
    )
    (words,) = changed(cells, "t", "FUNCS[0] = odd\n")
    assert words.startswith("global `FUNCS` changed")
    with kernel() as main:
        main.run(
            "import types\ndef helper():\n    return 1\n"
            "CFG = types.SimpleNamespace(step=helper, rate=1)\ndef t():\n    return CFG\n"
        )
        assert changed(main, "t", "CFG.rate = 2\n") == ["global `CFG` changed"]


def test_elements_equal_but_for_their_type_or_sign_are_told_apart(cells):
    # (Elements' digests are remembered for a pass by type and value, floats excepted.)
    cells.run("V = [1, True, 1, 0.0, -0.0, 'a', b'a', None]\ndef t():\n    return V\n")
    ids = Identities()
    seen = {ids.task(cells["t"]).digest}
    for edit in ("V[1] = 1", "V[0] = True", "V[3] = -0.0", "V[4] = 0.0", "V[6] = 'a'"):
        cells.run(f"V = [1, True, 1, 0.0, -0.0, 'a', b'a', None]\n{edit}\n")
        digest = ids.task(cells["t"]).digest
        assert digest not in seen, edit
        assert digest == Identities().task(cells["t"]).digest
        seen.add(digest)


def test_an_enum_member_or_a_number_of_a_class_edited_in_place_is_seen():
    # Their digests hold their class's code: a node that read one is checked by hashing it
    # again, not kept as if the value were a plain number (the memo kept the old identity).
    with kernel() as cells:
        cells.run(
            "import enum\nclass Color(enum.Enum):\n    RED = 1\n"
            "    def label(self):\n        return 'red'\n"
            "class Rate(float):\n    def apply(self, x):\n        return x * self\n"
            "C, R = Color.RED, Rate(0.5)\n"
            "def t():\n    return C.label()\ndef u():\n    return R.apply(2)\n"
        )
        ids = Identities()
        calls = [(cells["t"], ()), (cells["u"], ())]
        before = ids.tasks(calls)
        cells.run("Color.label = lambda self: 'RED'\nRate.apply = lambda self, x: x + self\n")
        after = ids.tasks(calls)
        assert after == Identities().tasks(calls)
        assert [a.changes_since(b) for a, b in zip(after, before, strict=True)] == [
            ["global `C` changed"],
            ["global `R` changed"],
        ]


def test_a_module_counts_by_what_it_loaded_not_by_its_bytes(cells, tmp_path, monkeypatch):
    # (Line endings do not change the code loaded; a reload of a new value does.)
    path = tmp_path / "bytes_for_identity.py"
    path.write_bytes(b"VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "bytes_for_identity", raising=False)
    cells.run("import bytes_for_identity\ndef t():\n    return bytes_for_identity\n")
    before = Identities().task(cells["t"])
    path.write_bytes(b"VALUE = 1\r\n")
    importlib.reload(sys.modules["bytes_for_identity"])
    assert Identities().task(cells["t"]).digest == before.digest
    path.write_bytes(b"VALUE = 2\r\n")
    importlib.reload(sys.modules["bytes_for_identity"])
    assert Identities().task(cells["t"]).digest != before.digest


def test_a_value_holding_code_that_cannot_be_hashed_tells_what_else_that_code_reads(cells):
    # The handler reads a lock and X: the list held it by the mark of a node without a
    # digest, so that an edit of X changed nothing (a stale result). Now the list cannot be
    # hashed, and says why; a library function in a value counts by name and version.
    cells.namespace["LOCK"] = threading.Lock()
    cells.run(
        "import statistics\nX = 1\ndef handle():\n    return LOCK, X\n"
        "HANDLERS = [handle]\nTOOLS = [statistics.mean]\n"
        "def t():\n    return HANDLERS\ndef u():\n    return TOOLS\n"
    )
    t, u = Identities().tasks([(cells["t"], ()), (cells["u"], ())])
    assert t.digest is None
    assert t.unhashable == (
        (
            "global HANDLERS",
            "its function handle cannot be hashed (global LOCK: lock cannot be pickled "
            "(TypeError: cannot pickle '_thread.lock' object))",
        ),
    )
    assert u.digest is not None
    assert u == Identities().task(cells["u"])


def test_a_helper_made_by_exec_in_a_dict_of_its_own_counts_by_its_code(cells):
    # Its __module__ is None: taken for a library's (by name and version), it failed the
    # identity (no version of None) and would have hidden its code and globals.
    scope = {"K": 1}
    exec("def helper():\n    return K\n", scope)  # the test's own code
    cells.namespace["helper"] = scope["helper"]
    cells.run("def t():\n    return helper()\n")
    ids = Identities()
    before = ids.task(cells["t"])
    scope["K"] = 2
    after = ids.task(cells["t"])
    assert after.changes_since(before) == ["helper `helper`: global `K` changed (1 -> 2)"]


# -- what the memo of a flow saves, and what it must never serve (mutation run 5) ------------


class _Counting(Identities):
    """Identities that count the work a pass does (see the test below)."""

    def __init__(self, work: dict[str, int]) -> None:
        super().__init__()
        self.work = work

    def _count(self, what: str) -> None:
        self.work[what] = self.work.get(what, 0) + 1

    def _make(self, obj, make, *args):  # type: ignore[no-untyped-def]
        self._count("open")
        return super()._make(obj, make, *args)

    def _make_function(self, fn, facts):  # type: ignore[no-untyped-def]
        self._count("make")
        return super()._make_function(fn, facts)

    def _make_class(self, cls, items, bases):  # type: ignore[no-untyped-def]
        self._count("make")
        return super()._make_class(cls, items, bases)

    def _task(self, fn, options):  # type: ignore[no-untyped-def]
        self._count("task")
        return super()._task(fn, options)

    def _module_version(self, module_name):  # type: ignore[no-untyped-def]
        self._count("version")
        return super()._module_version(module_name)

    def _value_parts(self, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        if path.startswith("option "):
            self._count("option")
        return super()._value_parts(path, *args, **kwargs)


def test_an_unchanged_flow_is_checked_not_made_again(cells, tmp_path, monkeypatch):
    # The memo's promise (docs/performance.md): the next pass over an unchanged flow makes
    # no node and reads no source, hashes a mutable value once and each number in it once,
    # a file once, a library's version once, and a task's identity is the one remembered.
    from nbflow.identity import walk

    work: dict[str, int] = {}

    def counted(name: str, function):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            work[name] = work.get(name, 0) + 1
            return function(*args, **kwargs)

        return call

    monkeypatch.setattr(walk, "code_facts", counted("source", walk.code_facts))
    monkeypatch.setattr(walk, "is_library", counted("library", walk.is_library))
    monkeypatch.setattr(walk, "_scalar_digest", counted("number", walk._scalar_digest))
    monkeypatch.setattr(walk, "open", counted("read", open), raising=False)
    (tmp_path / "local_for_memo.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "local_for_memo", raising=False)
    cells.run(
        "import math\nimport local_for_memo\nfrom collections import OrderedDict\n"
        "from math import sqrt\n"
        "CFG = {'n': [1, 1, 1, 2]}\n"
        "class Call:\n    def __call__(self):\n        return 1\nCALL = Call()\n"
        "def make_helper(cfg):\n    def helper():\n        return cfg, local_for_memo\n"
        "    return helper\nH1, H2 = make_helper(CFG), make_helper(CFG)\n"
        "BOUND = CALL.__call__\ndef hb():\n    return BOUND\n"
        "def a():\n    return H1(), OrderedDict, CALL, sqrt, math.pi, local_for_memo, hb\n"
        "def b():\n    return H2(), OrderedDict, CFG, hb\n"
    )
    ids = _Counting(work)
    options = (("fan_out", None), ("allow_partial", False))
    calls = [(cells["a"], options), (cells["b"], options)]
    first = ids.tasks(calls)
    assert work["option"] == 2  # the options both tasks share, hashed once
    for _ in range(2):  # (the third pass finds what the second kept)
        work.clear()
        assert ids.tasks(calls) == first
        # The first task hashes the shared options again (one task's identity worked out
        # the long way, from its node), the second is the one remembered; three nodes are
        # checked, each once: a's, H1's (H2 shares it), class Call's (CALL hashed
        # again) and module local_for_memo's (no file read); hb's, which reads a bound
        # method, is made again, once for both tasks; CFG's numbers once each ("n", 1, 2,
        # and the options' None and False); the versions of collections and math once each.
        assert work == {"task": 1, "option": 2, "open": 5, "make": 1, "number": 5, "version": 2}


def test_a_helper_made_like_a_member_of_a_recursive_group_gets_a_whole_node(cells):
    # step_a is in t's group; step_b, made by the same factory (the same code and globals:
    # one node key), is reached after the group is made. The node step_a had while the
    # group was being made holds the other members by name only: it must not be kept for
    # step_b (u did not see an edit of t's default), whichever task is walked first.
    cells.run(
        "def make_step():\n    def step(n):\n        return n and t(n - 1)\n    return step\n"
        "step_a, step_b = make_step(), make_step()\n"
        "def t(n=3):\n    return step_a(n)\ndef u():\n    return step_b(2)\n"
    )
    ids = Identities()
    _, u = ids.tasks([(cells["t"], ()), (cells["u"], ())])
    assert u == Identities().task(cells["u"])
    cells.namespace["t"].__defaults__ = (4,)
    assert ids.tasks([(cells["t"], ()), (cells["u"], ())])[1].digest != u.digest


def test_a_partials_keywords_changed_in_place_are_seen(cells):
    cells.run(
        "import functools\ndef pf(x, q=None):\n    return x, q\n"
        "P = functools.partial(pf, 1, q=2)\ndef t():\n    return P()\n"
    )
    ids = Identities()
    before = ids.task(cells["t"])
    cells["P"].keywords["q"] = 3
    after = ids.task(cells["t"])
    assert after.digest != before.digest and after == Identities().task(cells["t"])


def test_a_partial_given_another_function_or_arguments_in_place_is_seen(cells):
    # (functools.partial.__setstate__ replaces them in the very object a task reads.)
    cells.run(
        "import functools\ndef pf(x, y=None):\n    return x, y\ndef pg(x, y=None):\n    return y\n"
        "P = functools.partial(pf, functools.partial(pf, 1))\ndef t():\n    return P()\n"
    )
    ids = Identities()
    seen = {ids.task(cells["t"]).digest}
    assert ids.task(cells["t"]).digest in seen  # (a partial holding a partial: checked)
    partial = cells["P"]
    for state in ((cells["pg"], partial.args), (cells["pg"], (2,))):
        partial.__setstate__((*state, {}, None))
        found = ids.task(cells["t"])
        assert found.digest not in seen and found == Identities().task(cells["t"])
        seen.add(found.digest)


def test_a_list_that_comes_to_hold_a_lock_in_place_leaves_no_digest(cells):
    cells.run("L = [1]\ndef t():\n    return L\n")
    ids = Identities()
    assert ids.task(cells["t"]).digest is not None
    cells["L"].append(threading.Lock())
    found = ids.task(cells["t"])
    assert found.digest is None and [path for path, _ in found.unhashable] == ["global L"]


def test_a_global_bound_to_none_then_deleted_is_seen(cells):
    # (A node is remembered under the ids of the objects its globals are bound to: an
    # undefined global must not be taken for one bound to None.)
    cells.run("X = None\ndef t():\n    return X\n")
    assert changed(cells, "t", "del X\n") == ["global `X` changed (None -> undefined)"]


def test_tasks_in_a_row_with_another_kind_between_them(cells):
    # Tasks made in a loop take the identity of the one before them; a task of another
    # kind (a partial) between two of them must not be taken for one of them.
    cells.run(
        "import functools\nK = 1\nmade = []\nfor i in range(2):\n"
        "    def t():\n        return K\n    made.append(t)\n"
        "P = functools.partial(pow, 2)\n"
    )
    t0, t1 = cells["made"]
    calls = [(t0, ()), (cells["P"], ()), (t1, ())]
    assert Identities().tasks(calls) == [Identities().task(fn) for fn, _ in calls]


def test_a_class_whose_method_reads_it_is_a_group_whichever_is_walked_first(cells):
    # u walks Node first, then its method child meets Node again: they are one group, so
    # t, which calls child through a global, sees an attribute of Node changed in place.
    cells.run(
        "class Node:\n    K = 1\n    def child(self):\n        return Node.K\n"
        "step = Node.child\ndef u():\n    return Node\ndef t():\n    return step(None)\n"
    )
    ids = Identities()
    calls = [(cells["u"], ()), (cells["t"], ())]
    before = ids.tasks(calls)
    cells["Node"].K = 2
    after = ids.tasks(calls)
    assert after == Identities().tasks(calls)
    assert after[1].digest != before[1].digest


def test_two_local_modules_with_the_same_bytes_are_two_modules(cells, tmp_path, monkeypatch):
    # (Their names count: a module's code can read its own __name__, and pickles name it.)
    for name in ("twin_a_for_identity", "twin_b_for_identity"):
        (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    cells.run("import twin_a_for_identity as mod\ndef t():\n    return mod\n")
    assert changed(cells, "t", "import twin_b_for_identity as mod\n")


def test_a_frame_counts_by_its_contents_not_by_how_it_was_built(cells):
    # One built at once, one column by column (two blocks inside: another pickle). (Not
    # by the module path: pandas' and numpy's public types name their top module.)
    cells.run(
        "import pandas as pd\nA = pd.DataFrame({'a': [1, 2], 'b': [3, 4]})\n"
        "B = pd.DataFrame({'a': [1, 2]})\nB['b'] = [3, 4]\n"
    )
    ids = Identities()
    assert ids.value_digest(cells["A"]) == ids.value_digest(cells["B"])


def test_a_method_of_a_function_foreign_to_the_class_is_made_again_each_pass():
    # M binds a function that is not the class's: its pickle (held in L too) names the
    # instance and a method name, not the function, so a node reading M is made again
    # each pass rather than checked by M's digest (an edit of f's global was not seen).
    with kernel() as cells:
        cells.run(
            "import types\nK = 1\nclass Obj:\n    pass\ndef f(self):\n    return K\n"
            "O = Obj()\nO.f = None\nM = types.MethodType(f, O)\nL = [M]\n"
            "def t():\n    return L, M\n"
        )
        ids = Identities()
        before = ids.task(cells["t"])
        cells.run("K = 2\n")
        after = ids.task(cells["t"])
        assert after.digest is not None
        assert after.digest != before.digest and after == Identities().task(cells["t"])


def test_a_remembered_node_holds_the_objects_its_key_is_the_ids_of(cells):
    # Closures of one factory over numbers made one after the other: a number freed as
    # soon as its closure is would leave its id to the next one (CPython reuses the
    # memory), and a node keyed by that id, if it did not hold its number, would be served
    # for the next closure: the identity of the number before.
    cells.run("def make(n):\n    def t():\n        return n\n    return t\n")
    ids = Identities()
    for i in range(20):
        fn = cells["make"](10**30 + i)
        assert ids.task(fn) == Identities().task(fn), i
        del fn


def test_a_lambda_counts_by_its_source_as_written(cells):
    # Its syntax tree, as a def's: not its bytecode, which another Python version compiles
    # otherwise, and which folds `1 + 1` into `2`.
    cells.run("f = lambda: 1 + 1\n")
    cells.run("g = lambda: 2\n")
    assert code_facts(cells["f"].__code__).digest != code_facts(cells["g"].__code__).digest
    cells.run("h = lambda: 1 + 1  # the same, written again\n")
    assert code_facts(cells["h"].__code__).digest == code_facts(cells["f"].__code__).digest


def test_code_that_no_definition_names_counts_by_its_whole_text(cells):
    # A generator expression's code: the whole line, not the one lambda in it.
    cells.run("G1 = (v for v in [1] if (lambda w: w)(v))\n")
    cells.run("G2 = (v for v in [2] if (lambda w: w)(v))\n")
    assert code_facts(cells["G1"].gi_code).digest != code_facts(cells["G2"].gi_code).digest


def test_a_global_that_wraps_a_function_but_is_not_callable_is_no_helper(cells):
    # A classmethod object has __wrapped__ and cannot be called: no code of the task's.
    cells.run(
        "def helper():\n    return 1\nHOLDER = classmethod(helper)\ndef t():\n    return HOLDER\n"
    )
    assert user_sources(cells["t"]) == {"": "def t():\n    return HOLDER\n"}


def test_library_code_in_a_value_counts_by_its_name_and_version(cells, monkeypatch):
    import statistics
    import types as types_module

    fake = types_module.ModuleType("nbflow_fake_lib_in_value")
    fake.__version__ = "1.0"
    monkeypatch.setitem(sys.modules, "nbflow_fake_lib_in_value", fake)
    cells.run(
        "import statistics, threading\ndef tool():\n    return 1\n"
        "tool.__module__ = 'nbflow_fake_lib_in_value'\n"
        "TOOLS = [statistics.mean, threading.active_count, tool]\ndef t():\n    return TOOLS\n"
    )
    # (active_count reads a lock: by its name, its code is not walked.)
    seen = {Identities().task(cells["t"]).digest}
    assert None not in seen
    cells["TOOLS"][0] = statistics.median
    seen.add(Identities().task(cells["t"]).digest)
    fake.__version__ = "2.0"
    seen.add(Identities().task(cells["t"]).digest)
    cells.run("import copy, shutil\nTOOLS[0] = copy.copy\n")
    seen.add(Identities().task(cells["t"]).digest)
    cells["TOOLS"][0] = cells["shutil"].copy  # (a namesake in another module of the same version)
    seen.add(Identities().task(cells["t"]).digest)
    assert len(seen) == 5


def test_a_module_held_in_a_value_counts_as_a_global_one(cells, tmp_path, monkeypatch):
    (tmp_path / "held_for_identity.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "held_for_identity", raising=False)
    cells.run(
        "import math, held_for_identity\nMODS = [math, held_for_identity]\n"
        "def t():\n    return MODS[1].VALUE\n"
    )
    before = Identities().task(cells["t"])
    (tmp_path / "held_for_identity.py").write_text("VALUE = 22\n")
    importlib.reload(sys.modules["held_for_identity"])
    after = Identities().task(cells["t"])
    assert None not in (before.digest, after.digest) and after.digest != before.digest


def test_library_functions_are_no_helpers_in_a_tasks_sources(cells):
    cells.run("from statistics import mean\ndef t():\n    return mean([1, 2])\n")
    assert user_sources(cells["t"]) == {"": "def t():\n    return mean([1, 2])\n"}


# -- code held in values: bound methods and their neighbours ------------------------------------

#: ``f`` bound to ``box`` with ``types.MethodType``, though it is not a method of ``box``'s
#: class, held in each place a task can read it: (the cell defining ``M`` and the task ``t``).
#: Python pickles such a method as ``getattr(box, "f")``, which holds neither ``f`` nor its
#: code: hashed by its pickle, an edit of ``f`` was served from the cache.
_FOREIGN = "types.MethodType(f, box)"
BOUND_METHOD_PLACES = {
    "a list": (f"M = [{_FOREIGN}]\n", "def t():\n    return M[0]()\n"),
    "a tuple": (f"M = ({_FOREIGN},)\n", "def t():\n    return M[0]()\n"),
    "a dict": (f"M = {{'m': {_FOREIGN}}}\n", "def t():\n    return M['m']()\n"),
    "a set": (f"M = {{{_FOREIGN}}}\n", "def t():\n    return next(iter(M))()\n"),
    "nested containers": (
        f"M = [{{'deep': ({_FOREIGN},)}}]\n",
        "def t():\n    return M[0]['deep'][0]()\n",
    ),
    "a global": (f"M = {_FOREIGN}\n", "def t():\n    return M()\n"),
    "a default": (f"M = {_FOREIGN}\n", "def t(m=M):\n    return m()\n"),
    "a default list": (f"M = {_FOREIGN}\n", "def t(ms=[M]):\n    return ms[0]()\n"),
    "a closure": (
        f"M = [{_FOREIGN}]\n",
        "def make(ms):\n    def t():\n        return ms[0]()\n    return t\nt = make(M)\n",
    ),
    "a partial's arguments": (
        f"M = {_FOREIGN}\n",
        "def call(m):\n    return m()\nt = functools.partial(call, M)\n",
    ),
    "a partial in a list": (
        f"M = [functools.partial(operator.call, {_FOREIGN})]\n",
        "def t():\n    return M[0]()\n",
    ),
    "an object of yours": (
        f"class Holder:\n    pass\nM = Holder()\nM.m = {_FOREIGN}\n",
        "def t():\n    return M.m()\n",
    ),
    # (Hashed by its pickle: a library's object, and an instance holding its own method.)
    "a library's object": (
        f"M = types.SimpleNamespace(m={_FOREIGN})\n",
        "def t():\n    return M.m()\n",
    ),
    "its own instance": (f"box.m = {_FOREIGN}\nM = box\n", "def t():\n    return M.m()\n"),
}


@pytest.mark.parametrize("place", list(BOUND_METHOD_PLACES))
def test_a_method_bound_to_a_function_foreign_to_the_class_counts_by_its_code(place):
    holder, task = BOUND_METHOD_PLACES[place]
    with kernel() as cells:
        cells.run(
            "import functools, operator, types\nclass Box:\n    pass\nbox = Box()\nK = 1\n"
            "def f(self):\n    return K\n"
        )
        cells.run(holder)
        cells.run(task)
        ids = Identities()
        first = ids.task(cells["t"])
        assert first.digest is not None, first.unhashable
        assert ids.task(cells["t"]) == first  # unchanged: the cache stays useful
        # The cell defining f edited, and the cells binding it re-run.
        assert changed(cells, "t", "def f(self):\n    return K + 1\n" + holder + task)
        assert changed(cells, "t", "K = 2\n")  # what f reads, changed
        assert ids.task(cells["t"]) == Identities().task(cells["t"])  # (the memo: not stale)


def test_a_method_of_a_lambda_in_an_object_that_holds_it_cannot_be_hashed_and_says_where():
    # A value that holds itself is hashed by its pickle, and a lambda does not pickle: no
    # digest (never a stale hit), the variable named.
    with kernel() as cells:
        cells.run(
            "import types\nclass Box:\n    pass\nbox = Box()\n"
            "box.m = types.MethodType(lambda self: 1, box)\ndef t():\n    return box.m()\n"
        )
        found = Identities().task(cells["t"])
        assert found.digest is None
        assert [path for path, _ in found.unhashable] == ["global box"]


#: Neighbours of a foreign bound method: code held in a value that a pickle names (or not)
#: without its code. (the cell defining ``M`` and ``t``, the edit.)
CODE_IN_VALUES = {
    "a builtin bound to a list": (
        "ITEMS = [1]\nM = [ITEMS.count]\ndef t():\n    return M[0](1)\n",
        "ITEMS.append(1)\n",
    ),
    "an unbound method of a builtin": (
        "M = [str.upper]\ndef t():\n    return M[0]('a')\n",
        "M = [str.lower]\n",
    ),
    "a staticmethod in a list": (
        "def g():\n    return 1\nM = [staticmethod(g)]\ndef t():\n    return M[0]()\n",
        "def g():\n    return 2\nM = [staticmethod(g)]\n",
    ),
    "a classmethod in a dict": (
        "def g(cls):\n    return 1\nM = {'c': classmethod(g)}\n"
        "def t():\n    return M['c'].__func__(None)\n",
        "def g(cls):\n    return 2\nM = {'c': classmethod(g)}\n",
    ),
    "a classmethod as a global": (
        "def g(cls):\n    return 1\nM = classmethod(g)\ndef t():\n    return M.__func__(None)\n",
        "def g(cls):\n    return 2\nM = classmethod(g)\n",
    ),
    "a staticmethod in a library's object": (
        "def g():\n    return 1\nM = types.SimpleNamespace(s=staticmethod(g))\n"
        "def t():\n    return M.s()\n",
        "def g():\n    return 2\nM.s = staticmethod(g)\n",
    ),
    "a partial of a lambda in a list": (
        "M = [functools.partial(lambda x: x, 1)]\ndef t():\n    return M[0]()\n",
        "M = [functools.partial(lambda x: x + 1, 1)]\n",
    ),
    "a partial's keyword in a tuple": (
        "def g(x=0):\n    return x\nM = (functools.partial(g, x=1),)\n"
        "def t():\n    return M[0]()\n",
        "M[0].keywords['x'] = 2\n",
    ),
    "a lambda bound to an object, in a list": (
        "class Box:\n    pass\nbox = Box()\nM = [types.MethodType(lambda self: 1, box)]\n"
        "def t():\n    return M[0]()\n",
        "M = [types.MethodType(lambda self: 2, box)]\n",
    ),
    "a staticmethod of a lambda in a list": (
        "M = [staticmethod(lambda: 1)]\ndef t():\n    return M[0]()\n",
        "M = [staticmethod(lambda: 2)]\n",
    ),
    "a lambda in a dict": (
        "M = {'f': lambda: 1}\ndef t():\n    return M['f']()\n",
        "M['f'] = lambda: 2\n",
    ),
    "a bound method of a class of yours in a list": (
        "class C:\n    def m(self):\n        return 1\nM = [C().m]\ndef t():\n    return M[0]()\n",
        "class C:\n    def m(self):\n        return 2\nM = [C().m]\n",
    ),
}


@pytest.mark.parametrize("place", list(CODE_IN_VALUES))
def test_code_held_in_a_value_counts_by_what_it_runs(place):
    source, edit = CODE_IN_VALUES[place]
    with kernel() as cells:
        cells.run("import functools, types\n")
        cells.run(source)
        ids = Identities()
        first = ids.task(cells["t"])
        assert first.digest is not None, first.unhashable
        assert ids.task(cells["t"]) == first
        words = changed(cells, "t", edit)
        assert [w.split(" (")[0] for w in words] == ["global `M` changed"]
        assert ids.task(cells["t"]) == Identities().task(cells["t"])


# -- digests of several pieces: each piece told apart -------------------------------------------


def test_pieces_of_a_digest_are_told_apart_however_they_split():
    # Joined without a mark between them, "json" + "dumps" read as "jsond" + "umps".
    assert sha("json", "dumps") != sha("jsond", "umps")
    assert sha("a", "") != sha("", "a") != sha("a")
    assert sha("ab") != sha("a", "b") and sha(b"ab") != sha(b"a", b"b")


def test_library_functions_whose_module_and_name_join_alike_differ(cells, monkeypatch):
    # A library function counts by its module, name and version: `dumps` of `fakelib` and
    # `umps` of `fakelibd` (both 1.0) had one digest, so rebinding one to the other was not seen.
    import types as types_module

    for name in ("fakelib", "fakelibd"):
        module = types_module.ModuleType(name)
        module.__version__ = "1.0"
        monkeypatch.setitem(sys.modules, name, module)
    cells.run(
        "def dumps():\n    return 1\ndumps.__module__ = 'fakelib'\n"
        "def umps():\n    return 2\numps.__module__ = 'fakelibd'\n"
        "TOOL = dumps\ndef t():\n    return TOOL()\n"
    )
    assert changed(cells, "t", "TOOL = umps\n") == ["global `TOOL` changed (dumps -> umps)"]


def test_a_partials_keyword_that_reads_like_two_parts_is_one(cells):
    # The parts of an identity were joined as "path=digest" lines, and a keyword's name can
    # hold any character: partial(g, x=1, y=2) and partial(g, **{"x=<digest of 1>\nargument
    # y": 2}) had one digest.
    cells.run("import functools\ndef g(**kwargs):\n    return kwargs\n")
    one = Identities().value_digest(1)
    cells.run("t = functools.partial(g, x=1, y=2)\n")
    cells.namespace["tricky"] = {f"x={one}\nargument y": 2}
    assert changed(cells, "t", "t = functools.partial(g, **tricky)\n")


def test_flow_versions_tell_task_names_and_paths_apart_however_they_split():
    def version(**tasks: Identity) -> str:
        return flow_version("spec", tasks)

    a, b = Identity("d1"), Identity("d2")
    # (Joined as "name=digest" lines: a task named "a=d1\nb" read as two tasks.)
    assert version(a=a, b=b) != version(**{"a=d1\nb": b})
    # (The paths that cannot be hashed, joined with ",": a keyword named "x,argument y".)
    two = Identity(None, (), (("argument x", "r"), ("argument y", "r")))
    assert version(t=two) != version(t=Identity(None, (), (("argument x,argument y", "r"),)))
    assert version(t=Identity("unhashable")) != version(t=Identity(None, (), (("", "r"),)))
