"""What a task reads besides its global names, end to end through a real store (cache=True):
modules of user code as loaded (edited files, reloads, the modules they import), reads
nbflow cannot see (``globals()``, ``eval``...), and environment variables.

Cells run as IPython runs them (see ``ipython_cells.py``); modules are real files in a
temporary folder on ``sys.path``, edited and reloaded as a user does.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

import pytest
from ipython_cells import Cells, kernel

from nbflow.identity import CacheWarning, Identities, Part, code_facts, sha


def _run(cells: Cells, flow: str = "flow") -> tuple[object, str, str]:
    """Run the flow of the cells (as a cell would); (result, state, why) of task ``t``."""
    cells.run(f"run = {flow}.run()\n")
    run = cells["run"]
    return run.results["t"], run.states["t"], run.why("t")


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """A folder of user modules on sys.path; the modules written there are forgotten after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(name: str, text: str) -> None:
        (tmp_path / f"{name}.py").write_text(text)
        names.append(name)

    yield write
    for name in names:
        sys.modules.pop(name, None)


def _flow_cell(tmp_path, body: str) -> str:
    """A cell defining ``flow`` with ``body`` (its imports first, then ``def t``) cached."""
    imports, _, definition = body.rpartition("def t():")
    return (
        f"{imports}import nbflow as nf\n"
        f"flow = nf.Flow('loaded', store={str(tmp_path / 's.db')!r})\n"
        f"@flow.task(cache=True)\ndef t():{definition}"
    )


# -- modules: the code loaded counts, not the file -----------------------------------------------


@pytest.mark.parametrize("style", ["module", "from-import", "local-import", "class"])
def test_an_edited_module_counts_once_it_is_reloaded(modules, tmp_path, style):
    modules("lib_loaded", "def f():\n    return 1\nclass C:\n    def v(self):\n        return 1\n")
    bodies = {
        "module": "import lib_loaded\ndef t():\n    return lib_loaded.f()\n",
        "from-import": "from lib_loaded import f\ndef t():\n    return f()\n",
        "local-import": "def t():\n    import lib_loaded\n    return lib_loaded.f()\n",
        "class": "from lib_loaded import C\ndef t():\n    return C().v()\n",
    }
    with kernel() as cells:
        cells.run("import lib_loaded\n")
        cells.run(_flow_cell(tmp_path, bodies[style]))
        assert _run(cells)[:2] == (1, "succeeded")
        assert _run(cells)[:2] == (1, "cached")  # the cache stays useful
        # The file edited, not reloaded: the old code runs, and its result is the one
        # stored (under the identity of the code that ran, not of the file).
        (tmp_path / "lib_loaded.py").write_text(
            "def f():\n    return 2\nclass C:\n    def v(self):\n        return 2\n"
        )
        assert _run(cells)[:2] == (1, "cached")
        cells.run(_flow_cell(tmp_path, bodies[style]))  # the flow's cell run again
        assert _run(cells)[:2] == (1, "cached")
        cells.run("import importlib\nimportlib.reload(lib_loaded)\n")
        if style in ("from-import", "class"):  # the cell that imports it, run again
            cells.run(bodies[style].split("\n")[0] + "\n")
        result, state, why = _run(cells)
        assert (result, state) == (2, "succeeded"), why
        assert _run(cells)[:2] == (2, "cached")


def test_a_module_counts_with_the_user_modules_it_imports(modules, tmp_path):
    modules("inner_loaded", "def h():\n    return 10\n")
    modules("outer_loaded", "import inner_loaded\ndef g():\n    return inner_loaded.h()\n")
    with kernel() as cells:
        cells.run(
            _flow_cell(tmp_path, "import outer_loaded\ndef t():\n    return outer_loaded.g()\n")
        )
        assert _run(cells)[:2] == (10, "succeeded")
        assert _run(cells)[:2] == (10, "cached")
        (tmp_path / "inner_loaded.py").write_text("def h():\n    return 20\n")
        cells.run("import importlib, inner_loaded\nimportlib.reload(inner_loaded)\n")
        result, state, why = _run(cells)
        assert (result, state) == (20, "succeeded")
        assert "helper `outer_loaded.g`: helper `inner_loaded.h` changed" in why


def test_a_module_used_as_a_whole_counts_with_its_modules_cycles_too(modules, tmp_path):
    # Two modules that import each other; the task hands the module on (not one attribute).
    modules("cyc_a", "import cyc_b\nRATE = 1\ndef f():\n    return cyc_b.g()\n")
    modules("cyc_b", "import cyc_a\ndef g():\n    return cyc_a.RATE\n")
    with kernel() as cells:
        cells.run(
            _flow_cell(tmp_path, "import cyc_a\ndef t():\n    return getattr(cyc_a, 'f')()\n")
        )
        assert _run(cells)[:2] == (1, "succeeded")
        assert _run(cells)[:2] == (1, "cached")
        (tmp_path / "cyc_b.py").write_text("import cyc_a\ndef g():\n    return cyc_a.RATE + 1\n")
        cells.run("import importlib, cyc_b\nimportlib.reload(cyc_b)\n")
        assert _run(cells)[:2] == (2, "succeeded")
        assert _run(cells)[:2] == (2, "cached")


def test_a_module_imported_inside_a_task_and_not_loaded_is_never_reused(modules, tmp_path):
    modules("late_loaded", "def f():\n    return 1\n")
    with kernel() as cells:
        cells.run(
            _flow_cell(tmp_path, "def t():\n    import late_loaded\n    return late_loaded.f()\n")
        )
        with pytest.warns(CacheWarning, match="task 't'.*imports late_loaded"):
            assert _run(cells)[:2] == (1, "succeeded")
        assert _run(cells)[:2] == (1, "succeeded")  # now loaded: seen, stored
        assert _run(cells)[:2] == (1, "cached")


def test_code_from_a_file_counts_by_its_bytecode_not_its_lines_now(modules, tmp_path):
    modules("lines_loaded", "def f(x):\n    return x + 1\n")
    import lines_loaded

    before = code_facts(lines_loaded.f.__code__).digest
    (tmp_path / "lines_loaded.py").write_text("def f(x):\n    return x - 1\n")
    import linecache

    linecache.checkcache()
    assert code_facts(lines_loaded.f.__code__).digest == before
    importlib.reload(lines_loaded)
    assert code_facts(lines_loaded.f.__code__).digest != before


@pytest.fixture
def env_pkg(tmp_path, monkeypatch):
    """A user package on sys.path, ``env_pkg.inner``: ``conf`` imports ``getenv``, and
    ``relative`` reads it through relative imports inside its functions."""
    inner = tmp_path / "env_pkg" / "inner"
    inner.mkdir(parents=True)
    (tmp_path / "env_pkg" / "__init__.py").write_text("")
    (inner / "__init__.py").write_text("")
    (inner / "conf.py").write_text("from os import getenv\n")
    (inner / "relative.py").write_text(
        "def one():\n    from . import conf\n    return conf.getenv('NBFLOW_T_I')\n"
        "def two():\n    from ..inner.conf import getenv\n    return getenv('NBFLOW_T_I')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [n for n in sys.modules if n.partition(".")[0] == "env_pkg"]:
        del sys.modules[name]


@pytest.mark.parametrize(
    "body",
    [
        "import os\n    return os.getenv('NBFLOW_T_I')",
        "import os as o\n    return o.environ['NBFLOW_T_I']",
        "from os import sep, environ as env\n    return env['NBFLOW_T_I']",
        "from os.path import sep, expanduser as home\n    return os.environ['NBFLOW_T_I']",
        "import env_pkg.inner.conf\n    return env_pkg.inner.conf.getenv('NBFLOW_T_I')",
        "import env_pkg.inner.conf as c\n    return c.getenv('NBFLOW_T_I')",
        "import env_pkg.inner as i\n    return i.conf.getenv('NBFLOW_T_I')",
        "from env_pkg.inner import conf\n    return conf.getenv('NBFLOW_T_I')",
        "from env_pkg.inner.conf import getenv as g\n    return g('NBFLOW_T_I')",
        "from env_pkg.inner.relative import one\n    return one()",
        "from env_pkg.inner.relative import two\n    return two()",
    ],
    ids=[
        "import", "import-as", "from-import", "from-import-unused", "dotted", "dotted-as",
        "package-as", "from-package", "from-module-as", "relative", "relative-parent",
    ],
)  # fmt: skip
def test_an_environment_variable_read_through_an_import_in_the_body_counts(
    env_pkg, tmp_path, monkeypatch, body
):
    # Each import binds what Python binds (the top package for `import a.b`, the module
    # itself for `import a.b.c as c` and `from a.b import c`): the variable read through
    # the name counts, and nothing read makes the task one nbflow cannot follow.
    monkeypatch.setenv("NBFLOW_T_I", "1")
    import env_pkg.inner.conf
    import env_pkg.inner.relative  # noqa: F401 (loaded, as a notebook that uses it has)

    with kernel() as cells:
        cells.run(_flow_cell(tmp_path, f"import os\ndef t():\n    {body}\n"))
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            assert _run(cells)[:2] == ("1", "succeeded")
            assert _run(cells)[:2] == ("1", "cached")
            monkeypatch.setenv("NBFLOW_T_I", "2")
            result, state, why = _run(cells)
        assert (result, state) == ("2", "succeeded")
        if "relative" not in body:  # (else a helper of the module it imports changed)
            assert "environment `NBFLOW_T_I` changed ('1' -> '2')" in why


@pytest.mark.parametrize(
    "loaded",
    [
        "    n = len(LOG.copy())\n    LOG.append(x)\n    return n\n",  # read, then added to
        "    return len(LOG)\n",
    ],
    ids=["read-then-added", "read"],
)
def test_a_global_the_loaded_code_reads_counts_though_the_edited_file_only_adds_to_it(
    modules, tmp_path, loaded
):
    # The file, edited and not reloaded, says f only appends to LOG; the code that runs
    # reads it: LOG counts, and a change of LOG is a change of f.
    modules("adds_loaded", f"LOG = []\ndef f(x):\n{loaded}")
    import adds_loaded

    (tmp_path / "adds_loaded.py").write_text("LOG = []\ndef f(x):\n    LOG.append(x)\n")
    import linecache

    linecache.checkcache()
    facts = code_facts(adds_loaded.f.__code__)
    assert "LOG" in facts.global_names and "LOG" not in facts.write_only


def test_a_global_the_loaded_code_only_adds_to_is_left_out_as_the_edited_file_says(
    modules, tmp_path
):
    # The loaded code rebinds LOG (a store is no read) and appends to it; the file, edited
    # since, only appends: LOG is written only, by both.
    modules("store_loaded", "def f(x):\n    global LOG\n    LOG = []\n    LOG.append(x)\n")
    import store_loaded

    (tmp_path / "store_loaded.py").write_text("LOG = []\ndef f(x):\n    LOG.append(x)\n")
    import linecache

    linecache.checkcache()
    assert "LOG" in code_facts(store_loaded.f.__code__).write_only


def test_a_global_a_files_function_only_adds_to_is_not_part_of_it(modules):
    # A log a function nested in f appends to (the one of f's nested functions that is not
    # the last): what it holds cannot change what f computes.
    modules(
        "log_loaded",
        "LOG = []\ndef f(x):\n    def first():\n        LOG.append(x)\n"
        "    def second():\n        return x\n    first()\n    return second()\n",
    )
    import log_loaded

    facts = code_facts(log_loaded.f.__code__)
    assert facts.write_only == frozenset({"LOG"}) and "LOG" not in facts.global_names


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("x in {1, 2}", "x in {1, 3}"),  # a frozenset constant
        ("x in (1, 2)", "x in (1, 3)"),  # a tuple constant
        ("x in (1, (2, 3))", "x in (1, (2, 4))"),
        ("(lambda: x in {1, 2})()", "(lambda: x in {1, 3})()"),  # nested code
    ],
)
def test_a_constant_of_code_from_a_file_counts_once_reloaded(modules, tmp_path, before, after):
    modules("consts_loaded", f"def f(x):\n    return {before}\n")
    import consts_loaded

    first = code_facts(consts_loaded.f.__code__).digest
    importlib.reload(consts_loaded)
    assert code_facts(consts_loaded.f.__code__).digest == first  # the same code: the same
    (tmp_path / "consts_loaded.py").write_text(f"def f(x):\n    return {after}\n")
    importlib.reload(consts_loaded)
    assert code_facts(consts_loaded.f.__code__).digest != first


def test_a_module_not_imported_yet_is_a_library_where_libraries_are_installed(
    tmp_path, monkeypatch
):
    # Found without importing it: a module file or a namespace package (a folder without
    # __init__.py) in a library folder is a library; one of the notebook's folder is not.
    from nbflow.identity import code

    library, mine = tmp_path / "site", tmp_path / "mine"
    (library / "lib_ns").mkdir(parents=True)
    (library / "lib_ns" / "part.py").write_text("")
    (library / "lib_file.py").write_text("")
    (mine / "mine_ns").mkdir(parents=True)
    (mine / "mine_file.py").write_text("")
    monkeypatch.syspath_prepend(str(library))
    monkeypatch.syspath_prepend(str(mine))
    monkeypatch.setattr(code, "_ROOTS", (os.path.join(os.path.realpath(library), ""),))
    assert code.is_library("lib_file") and code.is_library("lib_ns.part")
    assert not code.is_library("mine_file") and not code.is_library("mine_ns")
    assert not code.is_library("nbflow_no_such_module")
    assert "lib_file" not in sys.modules and "mine_file" not in sys.modules


# -- reads nbflow cannot see ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("return globals()['G']", "globals()"),
        ("return eval('G')", "eval()"),
        ("out = {}\n    exec('x = G', None, out)\n    return out['x']", "exec()"),
        ("import sys\n    return sys.modules['__main__'].G", "sys.modules"),
        ("return getattr(sys.modules['__main__'], 'G')", "sys.modules"),
        ("import importlib\n    return importlib.import_module('__main__').G", "import_module"),
        ("return helper()", "globals()"),  # in a helper it reaches
    ],
    ids=["globals", "eval", "exec", "sys-modules", "getattr", "import-module", "helper"],
)
def test_a_global_read_by_a_computed_name_is_never_reused(tmp_path, body, named):
    with kernel() as cells:
        cells.run("import sys\nG = 1\ndef helper():\n    return globals()['G']\n")
        cells.run(_flow_cell(tmp_path, f"def t():\n    {body}\n"))
        with pytest.warns(CacheWarning) as caught:
            assert _run(cells)[:2] == (1, "succeeded")
        messages = [str(w.message) for w in caught if w.category is CacheWarning]
        assert len(messages) == 1
        assert "task 't'" in messages[0] and named in messages[0]
        assert "cannot see" in messages[0]
        cells.run("G = 2\n")
        with pytest.warns(CacheWarning):
            result, state, why = _run(cells)
        assert (result, state) == (2, "succeeded")
        assert named in why


def test_common_code_that_reads_no_global_by_name_stays_cached(tmp_path):
    # getattr on an object, vars(obj), locals() and vars() (in a function: its own
    # variables), a library call: nothing hidden.
    with kernel() as cells:
        cells.run(
            "import types, math\nOBJ = types.SimpleNamespace(x=1)\n"
            + _flow_cell(
                tmp_path,
                "def t():\n    y = getattr(OBJ, 'x') + vars(OBJ)['x']\n"
                "    return y + len(locals()) - len(vars()) + int(math.sqrt(0))\n",
            )
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            assert _run(cells)[:2] == (2, "succeeded")
            assert _run(cells)[:2] == (2, "cached")
            cells.run("OBJ.x = 2\n")
            assert _run(cells)[:2] == (4, "succeeded")


# -- environment variables -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "read",
    [
        "os.environ['NBFLOW_T_X']",
        "os.getenv('NBFLOW_T_X')",
        "os.getenv('NBFLOW_T_X', 'unset')",
        "os.environ.get('NBFLOW_T_X')",
        "environ['NBFLOW_T_X']",
        "str('NBFLOW_T_X' in os.environ) + os.environ['NBFLOW_T_X']",
    ],
)
def test_an_environment_variable_read_by_its_name_counts(tmp_path, monkeypatch, read):
    monkeypatch.setenv("NBFLOW_T_X", "1")
    with kernel() as cells:
        cells.run("import os\nfrom os import environ\n")
        cells.run(_flow_cell(tmp_path, f"def t():\n    return {read}\n"))
        first = _run(cells)
        assert first[1] == "succeeded"
        assert _run(cells)[:2] == (first[0], "cached")
        monkeypatch.setenv("NBFLOW_T_X", "2")
        result, state, why = _run(cells)
        assert state == "succeeded" and "2" in str(result)
        assert "environment `NBFLOW_T_X` changed ('1' -> '2')" in why
        monkeypatch.delenv("NBFLOW_T_X")
        if "['NBFLOW_T_X']" not in read:  # (a KeyError else)
            assert _run(cells)[1] == "succeeded"


@pytest.mark.parametrize(
    "read",
    ["os.environ[KEY]", "os.environ.get(KEY)", "dict(os.environ.items())[KEY]"],
    ids=["index", "get", "items"],
)
def test_the_environment_read_as_a_whole_is_never_reused(tmp_path, monkeypatch, read):
    monkeypatch.setenv("NBFLOW_T_Y", "1")
    with kernel() as cells:
        cells.run("import os\nKEY = 'NBFLOW_T_Y'\n")
        cells.run(_flow_cell(tmp_path, f"def t():\n    return {read}\n"))
        with pytest.warns(CacheWarning, match="task 't'.*os.environ"):
            assert _run(cells)[:2] == ("1", "succeeded")
        monkeypatch.setenv("NBFLOW_T_Y", "2")
        with pytest.warns(CacheWarning):
            assert _run(cells)[:2] == ("2", "succeeded")


def test_an_environment_write_is_no_read(tmp_path):
    with kernel() as cells:
        cells.run("import os\n")
        cells.run(
            _flow_cell(tmp_path, "def t():\n    os.environ['NBFLOW_T_Z'] = '1'\n    return 1\n")
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheWarning)
            assert _run(cells)[:2] == (1, "succeeded")
            assert _run(cells)[:2] == (1, "cached")
        cells.run("def w():\n    os.environ['NBFLOW_T_Z'] = '1'\n")
        parts = Identities().task(cells["w"]).parts
        assert [p.path for p in parts if p.path.startswith("environment")] == []


def test_an_unchanged_module_is_checked_not_read_each_pass(modules, tmp_path, monkeypatch):
    # Identity work stays at definition: a pass over an unchanged flow with a user module
    # makes no node and reads no file.
    from nbflow.identity import walk

    modules("memo_loaded", "import json\nRATE = 1\ndef f():\n    return RATE\n")
    with kernel() as cells:
        cells.run("import memo_loaded\ndef t():\n    return memo_loaded, memo_loaded.f()\n")
        ids = Identities()
        first = ids.task(cells["t"])
        made: list[object] = []
        monkeypatch.setattr(walk, "code_facts", lambda code: made.append(code))
        original = Identities._make_module
        monkeypatch.setattr(
            Identities, "_make_module", lambda self, *a: made.append(a) or original(self, *a)
        )
        monkeypatch.setattr("builtins.open", lambda *a, **k: made.append(a))
        for _ in range(3):
            assert ids.task(cells["t"]) == first
        assert made == []


def test_an_environment_variable_can_be_left_out(tmp_path, monkeypatch):
    # One that does not change the result (how long to wait, how many threads).
    monkeypatch.setenv("NBFLOW_T_W", "1")
    with kernel() as cells:
        cells.run(
            "import os\nimport nbflow as nf\n"
            f"flow = nf.Flow('ignored', store={str(tmp_path / 's.db')!r})\n"
            "@flow.task(cache=True, cache_ignore=('NBFLOW_T_W',))\n"
            "def t():\n    return len(os.environ['NBFLOW_T_W'])\n"
        )
        assert _run(cells)[:2] == (1, "succeeded")
        monkeypatch.setenv("NBFLOW_T_W", "2")
        assert _run(cells)[:2] == (1, "cached")


# -- found by the review of 2026-12-07 -----------------------------------------------------------


@pytest.mark.parametrize(
    "read",
    ["lazy_attr.RATE", "lazy_attr.__dict__['CONFIG']['RATE']"],
    ids=["module-getattr", "module-dict"],
)
def test_a_module_attribute_not_read_from_its_globals_counts_the_whole_module(
    modules, tmp_path, read
):
    # RATE is made up by the module's __getattr__ (PEP 562) from CONFIG, and `__dict__` is
    # every global: reading either is reading the module whole, so CONFIG's edit counts.
    # (Its __getattr__ raises KeyError for a name it does not know, as such code does.)
    modules("lazy_attr", "CONFIG = {'RATE': 1}\ndef __getattr__(name):\n    return CONFIG[name]\n")
    with kernel() as cells:
        cells.run(_flow_cell(tmp_path, f"import lazy_attr\ndef t():\n    return {read}\n"))
        assert _run(cells)[:2] == (1, "succeeded")
        assert _run(cells)[:2] == (1, "cached")
        cells.run("lazy_attr.CONFIG['RATE'] = 2\n")
        assert _run(cells)[:2] == (2, "succeeded")
        assert _run(cells)[:2] == (2, "cached")


def test_a_library_function_that_reads_the_environment_itself_is_never_reused(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("NBFLOW_T_Z", "one")
    with kernel() as cells:
        cells.run(
            _flow_cell(
                tmp_path, "import os\ndef t():\n    return os.path.expandvars('$NBFLOW_T_Z')\n"
            )
        )
        with pytest.warns(CacheWarning, match=r"task 't'.*os\.path\.expandvars"):
            assert _run(cells)[:2] == ("one", "succeeded")
        monkeypatch.setenv("NBFLOW_T_Z", "two")
        with pytest.warns(CacheWarning):
            assert _run(cells)[:2] == ("two", "succeeded")


def test_the_notebooks_namespace_imported_as_a_module_is_a_read_nbflow_cannot_see():
    with kernel() as cells:
        cells.run("G = 1\ndef t():\n    import __main__\n    return __main__.G\n")
        found = Identities().task(cells["t"])
        assert found.digest is None
        assert found.unhashable == (
            (
                "import __main__",
                "the notebook's namespace as a module: nbflow cannot see which globals are "
                "read from it; read the global by name, or pass it as a parameter",
            ),
        )
        assert [(p.path, p.shown) for p in found.parts][1:] == [("import __main__", "__main__")]


@pytest.mark.parametrize(
    ("body", "edit", "before", "after"),
    [
        # through its __dict__ (every global), with no module __getattr__
        ("plain_attr.__dict__['RATE']", "plain_attr.RATE = 2", 1, 2),
        # through an attribute of a value it holds (a dict's method)
        ("plain_attr.CONFIG.get('a')", "plain_attr.CONFIG['a'] = 2", 1, 2),
        # an attribute it does not have yet, then one that is None
        (
            "_later()",
            "plain_attr.LATER = None",
            "none",
            None,
        ),
        # its own __getattr__, edited
        ("plain_attr.MADE", "plain_attr.__getattr__ = lambda name: 2", 1, 2),
    ],
    ids=["dict", "value-method", "undefined-then-none", "module-getattr-edited"],
)
def test_what_a_task_reads_from_a_user_module_counts(modules, tmp_path, body, edit, before, after):
    modules(
        "plain_attr",
        "RATE = 1\nCONFIG = {'a': 1}\n"
        + ("def __getattr__(name):\n    return 1\n" if "MADE" in body else ""),
    )
    later = (
        "def _later():\n    try:\n        return plain_attr.LATER\n"
        "    except AttributeError:\n        return 'none'\n"
    )
    with kernel() as cells:
        cells.run("import plain_attr\n" + later)
        cells.run(_flow_cell(tmp_path, f"import plain_attr\ndef t():\n    return {body}\n"))
        assert _run(cells)[:2] == (before, "succeeded")
        assert _run(cells)[:2] == (before, "cached")
        cells.run(edit + "\n")
        assert _run(cells)[:2] == (after, "succeeded")


def test_a_module_imported_in_a_task_lists_its_name_and_globals_as_parts(modules):
    # What run.why() names when one of them changes (two levels down, as any part).
    modules("parts_loaded", "RATE = 2\ndef f(x):\n    return x * RATE\n")
    import parts_loaded  # noqa: F401 (loaded, as in the notebook)

    with kernel() as cells:
        cells.run("def t():\n    import parts_loaded\n    return parts_loaded.f(1)\n")
        parts = Identities().task(cells["t"]).parts
    module, name, rate, helper = parts[1:]
    assert (module.path, module.shown) == (
        "import parts_loaded",
        f"parts_loaded (code {module.digest[:8]})",
    )
    assert name == Part("import parts_loaded / name", sha("parts_loaded"), "parts_loaded")
    assert rate.path == "import parts_loaded / global RATE" and rate.shown == "2"
    assert (helper.path, helper.shown) == ("import parts_loaded / helper f", "")


def test_reads_of_the_environment_nbflow_cannot_follow_are_each_named():
    fix = 'read each variable by a literal name (os.environ["X"], os.getenv("X"))'
    with kernel() as cells:
        cells.run(
            "import os\nKEY = 'NBFLOW_T_Y'\n"
            "def t():\n    g = os.getenv\n"
            "    return g(KEY), os.environ[KEY], eval(KEY), globals()\n"
        )
        why = (
            "nbflow cannot see which globals it reads; read the global by name, or pass it as "
            "a parameter"
        )
        assert Identities().task(cells["t"]).unhashable == (
            ("reads eval()", why),
            ("reads globals()", why),
            ("reads os.environ", f"nbflow cannot see which variables it reads; {fix}"),
            ("reads os.getenv()", f"nbflow cannot see which variable it reads; {fix}"),
        )


def test_an_environment_variable_counts_beside_a_name_that_is_not_defined(monkeypatch):
    monkeypatch.setenv("NBFLOW_T_U", "1")
    with kernel() as cells:
        cells.run(
            "import os\ndef t(flag=False):\n    if flag:\n        return UNDEFINED_NAME  # noqa\n"
            "    return os.environ['NBFLOW_T_U']\n"
        )
        before = Identities().task(cells["t"]).digest
        monkeypatch.setenv("NBFLOW_T_U", "2")
        assert Identities().task(cells["t"]).digest != before
