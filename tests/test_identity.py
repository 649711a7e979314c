"""A task's identity sees everything its result depends on, and nothing it does not.

Cells run the way IPython runs them (a fresh ``<ipython-input-N-…>`` file name per
execution, the text in linecache): see ``ipython_cells.py``.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading

import numpy as np
import pandas as pd
import pytest
from ipython_cells import Cells

from nbflow.identity import Identities, Identity, identity_options, sha, write_only_names


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
    cells.run("import mylib_for_identity\ndef t():\n    return mylib_for_identity.VALUE\n")
    ids = Identities()
    before = ids.task(cells["t"])
    (tmp_path / "mylib_for_identity.py").write_text("VALUE = 22\n")  # a new size: seen
    importlib.reload(sys.modules["mylib_for_identity"])
    after = ids.task(cells["t"])
    assert after.digest != before.digest
    assert after.changes_since(before)[0].startswith("module `mylib_for_identity` changed")


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
    ids = Identities()
    before = ids.task(cells["u"])
    cells.run("calls.append('again')\n")
    assert ids.task(cells["u"]).digest != before.digest


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
