"""The package's data flows one way: a module imports only modules of earlier layers.

The layers are those of /work/shared/STYLE.md: DSL -> spec -> graph -> engine (scheduler pure
state) -> events -> observers (state reducer, then store, widgets, timeline); ``errors`` and
``lifecycle`` may be imported from anywhere; one composition root, ``flow``, wires them; what
is built on a Flow (chaining, schedules, flows as data, the public package) comes last.

Every module of the package is checked (subpackages too), and every import form counts:
``import nbflow.x``, ``from nbflow import x``, ``from nbflow.x import y``, relative imports
of any level, and imports inside functions or ``if TYPE_CHECKING:`` blocks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nbflow"

#: Importable from anywhere; they import no other module of the package.
ANYWHERE = {"errors", "lifecycle"}
#: The composition root: it wires every layer, so it may import any module.
ROOT = "flow"
#: Earliest first. A subpackage (store, widgets, render, middleware, data) is one unit; the
#: package's own ``__init__`` is ``"__init__"``.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "definition values",
        {
            "evaluator",
            "checks",
            "retry",
            "conditions",
            "identity",
            "collector",
            "joins",
            "locks",
            "mapping",
            "element_keys",
            "signals",
            "loops",
        },
    ),
    ("spec", {"spec", "spec_hash"}),
    ("DSL", {"dsl", "tasks", "switch", "subflows"}),
    ("graph", {"graph", "variables"}),
    (
        "the engine's parts",
        {
            "scheduler",
            "strategies",
            "pool",
            "executors",
            "dask",
            "fanout",
            "middleware",
            "clock",
            "runtime",
            "gates",
            "limits",
            "lazy",
            "overhead",
            "context",
            "capture",
            "lines",
            "progress",
            "remote_logs",
            "dask_locks",
            "streams",
            "elements",
        },
    ),
    # What the engine emits and observers read: the engine imports it to emit.
    ("events", {"events"}),
    (
        "engine",
        {
            "engine",
            "attempts",
            "logs",
            "completion",
            "termination",
            "waits",
            "iterations",
            "children",
            "runners",
            "mapped",
        },
    ),
    ("run state reducer", {"state"}),
    (
        "observers",
        {
            "run",
            "explain",
            "summary",
            "store",
            "widgets",
            "render",
            "cache",
            "element_cache",
            "health",
            "handle",
            "reuse",
            "replay",
        },
    ),
    ("composition root", {ROOT}),
    (
        "built on a Flow",
        {"chaining", "schedule", "versions", "data", "demo", "__init__", "__main__"},
    ),
]
#: (importing module, imported unit) -> why this import against the layers is allowed for now.
ALLOWED = {
    ("overhead", "state"): (
        "type hints only (TYPE_CHECKING): the warning reads the RunState the engine hands it "
        "at the run's end"
    ),
    ("context", "engine"): (
        "type hints only (TYPE_CHECKING): a TaskContext reads the engine of its attempt, which "
        "the engine itself hands it"
    ),
    ("engine", "state"): (
        "the engine folds each event into the run's RunState itself, through state.HANDLERS "
        "on its hot path, instead of feeding the reducer as an observer; engine.py is being "
        "rewritten (issue #24 report)"
    ),
    ("widgets.tracebacks", "__init__"): (
        "`import nbflow` only to read nbflow.__file__, to leave the package's own frames out "
        "of a traceback (issue #24 report)"
    ),
}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name relative to it (``""``: nbflow itself)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def imported_modules(source: str, name: str, is_package: bool = False) -> set[str]:
    """The modules of the package that ``source`` (module ``name``) imports, in any form."""
    here = name.split(".") if name else []
    package = here if is_package else here[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top, _, rest = alias.name.partition(".")
                if top == "nbflow":
                    found.add(rest)
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            assert node.level - 1 <= len(package), f"{name}: relative import beyond nbflow"
            base = package[: len(package) - (node.level - 1)]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
        elif node.module == "nbflow" or (node.module or "").startswith("nbflow."):
            target = (node.module or "").partition(".")[2]
        else:
            continue
        for alias in node.names:
            # `from nbflow import x` imports module x when there is one, else a name of nbflow
            submodule = f"{target}.{alias.name}" if target else alias.name
            found.add(submodule if submodule in MODULES else target)
    return found


def unit_of(module: str) -> str:
    """The layer unit of a dotted module: its top-level name (``"__init__"`` for nbflow)."""
    return module.split(".")[0] if module else "__init__"


#: Each unit's layer, by its index in LAYERS.
LAYER_OF = {unit: index for index, (_, members) in enumerate(LAYERS) for unit in members}


def violations(module: str, imported: set[str]) -> list[str]:
    """Each import of ``module`` that goes against the layers (allowed ones included)."""
    own = unit_of(module)
    problems = []
    for unit in sorted({unit_of(m) for m in imported} - {own}):
        if own in ANYWHERE:
            problems.append(f"{module!r} may import no module of nbflow, but imports {unit!r}")
        elif unit in ANYWHERE or own == ROOT:
            continue
        elif LAYER_OF[unit] > LAYER_OF[own]:
            problems.append(
                f"{module!r} ({LAYERS[LAYER_OF[own]][0]}) imports {unit!r} "
                f"({LAYERS[LAYER_OF[unit]][0]}), a later layer"
            )
    return problems


def _imports_of(module: str) -> set[str]:
    path = MODULES[module]
    return imported_modules(path.read_text(), module, path.name == "__init__.py")


def test_every_module_of_the_package_has_a_layer():
    units = {unit_of(m) for m in MODULES}
    listed = ANYWHERE.union(*(members for _, members in LAYERS))
    assert sorted(units - listed) == []  # a new module: put it in its layer
    assert sorted(listed - units) == []  # a module that no longer exists


def test_modules_import_only_earlier_layers():
    problems = []
    for module in MODULES:
        for problem in violations(module, _imports_of(module)):
            allowed = any(module == mod and f"imports {unit!r}" in problem for mod, unit in ALLOWED)
            if not allowed:
                problems.append(problem)
    assert problems == []


def test_every_allowed_violation_is_still_there():
    # An entry whose import is gone would allow it again silently: remove it instead.
    for module, unit in ALLOWED:
        assert unit in {unit_of(m) for m in _imports_of(module)}, (module, unit)
        assert violations(module, _imports_of(module)), (module, unit)


def test_the_parser_sees_every_import_form():
    source = """
import nbflow.widgets
import nbflow.render.svg as svg
from nbflow import events
from nbflow import Flow
from nbflow.cache import attach_store
from . import keys
from .sqlite import SQLiteStore
from ..run import Run
from .. import handle

def later():
    from ..state import RunState
    import nbflow.explain

if TYPE_CHECKING:
    from ..dsl import Definition
"""
    assert imported_modules(source, "store.rows") == {
        "widgets",
        "render.svg",
        "events",
        "",  # `from nbflow import Flow`: a name of the package itself
        "cache",
        "store.keys",
        "store.sqlite",
        "run",
        "handle",
        "state",
        "explain",
        "dsl",
    }
    assert imported_modules("from . import events, Flow", "store", is_package=True) == {
        "store"  # neither is a module of nbflow.store: the subpackage itself
    }


def test_a_core_module_importing_later_layers_is_caught():
    # The case the old test missed: absolute and function-level imports of later layers.
    source = """
import nbflow.widgets
from nbflow import run

def f():
    from .cache import attach_store
"""
    problems = violations("scheduler", imported_modules(source, "scheduler"))
    assert [p.split(" imports ")[1].split(" ")[0] for p in problems] == [
        "'cache'",
        "'run'",
        "'widgets'",
    ]
    assert violations("errors", {"graph"}) == [
        "'errors' may import no module of nbflow, but imports 'graph'"
    ]
    assert violations("flow", {"widgets", "chaining"}) == []  # the composition root
    assert violations("graph", {"errors", "lifecycle", "spec"}) == []


def test_import_nbflow_stays_light():
    code = (
        "import sys, nbflow; heavy = [m for m in ('pandas', 'ipywidgets', 'dask', 'distributed', "
        "'networkx', 'graphviz') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
