"""The package's data flows one way: a module imports only modules earlier in the line."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nbflow"

# Earlier layers may not import later ones (errors/lifecycle/collector are leaves usable anywhere).
LAYERS = [
    {"errors", "lifecycle", "collector"},
    {"evaluator", "checks"},
    {"retry", "conditions"},
    {"spec"},
    {"dsl"},
    {"graph"},
    {"scheduler", "strategies", "pool", "executors", "fanout", "middleware", "clock"},
    {"events"},
    {"state"},
    {"engine"},
]


def _layer_of(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if module in layer:
            return index
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update(alias.name for alias in node.names)
    return found


def test_core_modules_import_only_earlier_layers():
    problems = []
    for path in PACKAGE.glob("*.py"):
        own = _layer_of(path.stem)
        if own is None:
            continue
        for imported in _imports(path):
            layer = _layer_of(imported)
            if layer is not None and layer > own:
                problems.append(f"{path.stem} (layer {own}) imports {imported} (layer {layer})")
    assert problems == []


def test_import_nbflow_stays_light():
    code = (
        "import sys, nbflow; heavy = [m for m in ('pandas', 'ipywidgets', 'dask', 'distributed', "
        "'networkx', 'graphviz') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
