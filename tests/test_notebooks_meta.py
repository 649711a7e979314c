"""The teaching notebooks keep their shape: intro, live demo, exercise, solution, stored outputs.

nbval (``pytest --nbval notebooks/``) checks that every stored output is still what the code
produces; this module checks what nbval cannot: that each notebook teaches in the agreed shape,
runs on the standard kernel, was executed top to bottom before it was saved, and never writes a
run history into the repository.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

EXPECTED = [
    "01-quickstart",
    "02-priorities-and-strategies",
    "03-retry-timeouts",
    "04-fan-out-fan-in",
    "05-conditions-branches-triggers",
    "06-middleware",
    "07-workers-and-scheduling",
    "08-state-resume-caching",
    "09-flows-as-data-and-chaining",
    "10-distributed-dask",
    "11-extending-nbflow",
    "12-workflow-patterns",
    "13-signals-loops-subflows",
    "14-streaming-fan-out",
]

#: Notebooks that teach the store may open one; all others must pass ``store=``.
STORE_NOTEBOOKS = {"08-state-resume-caching"}


def load(name: str) -> dict[str, Any]:
    path = NOTEBOOKS / f"{name}.ipynb"
    if not path.exists():
        pytest.skip(f"notebooks/{name}.ipynb is not written yet")
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict[str, Any]) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


def test_no_unexpected_notebooks() -> None:
    found = {p.stem for p in NOTEBOOKS.glob("*.ipynb")}
    assert found <= set(EXPECTED), f"unexpected notebooks: {sorted(found - set(EXPECTED))}"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_valid_and_uses_the_standard_kernel(name: str) -> None:
    nbformat = pytest.importorskip("nbformat")
    notebook = load(name)
    nbformat.validate(nbformat.from_dict(notebook))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook["metadata"]["kernelspec"]["language"] == "python"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_opens_with_a_numbered_title_and_an_explanation(name: str) -> None:
    cells = load(name)["cells"]
    first = cells[0]
    assert first["cell_type"] == "markdown"
    number = int(name[:2])
    title = source(first).splitlines()[0]
    assert re.match(rf"# {number} · \S", title), f"{name}: title should be '# {number} · ...'"
    assert len(source(first).split()) >= 60, f"{name}: the intro should explain, not just title"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_has_an_exercise_then_its_solution(name: str) -> None:
    cells = load(name)["cells"]
    headings = [
        (i, line)
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "markdown"
        for line in source(cell).splitlines()
        if line.startswith("## ")
    ]
    exercise = [i for i, line in headings if line.startswith("## Exercise")]
    solution = [i for i, line in headings if line.startswith("## Solution")]
    assert exercise, f"{name}: no '## Exercise' section"
    assert solution, f"{name}: no '## Solution' section"
    assert exercise[0] < solution[0], f"{name}: the solution comes before the exercise"
    after = cells[solution[0] + 1 :]
    assert any(c["cell_type"] == "code" and source(c).strip() for c in after), (
        f"{name}: the solution has no code"
    )


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_demo_uses_the_live_dashboard(name: str) -> None:
    notebook = load(name)
    code = "\n".join(source(c) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "show=True" in code or "nf.Dashboard(" in code, f"{name}: no dashboard demo"
    # nbclient saved the dashboards' widget state, so they render when the notebook is opened.
    assert "widgets" in notebook["metadata"], f"{name}: saved without widget state"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_was_executed_top_to_bottom_with_outputs_stored(name: str) -> None:
    code = [c for c in load(name)["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{name}: execution counts {counts}; re-run it with "
        f"`jupyter execute --inplace notebooks/{name}.ipynb`"
    )
    for cell in code:
        text = source(cell)
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{name}: stored error in {text[:60]!r}"
            if output["output_type"] == "stream":
                assert output["name"] == "stdout", f"{name}: stderr output in {text[:60]!r}"
        if "print(" in text or "show=True" in text:
            assert cell.get("outputs"), f"{name}: no stored output for {text[:60]!r}"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_flows_do_not_write_a_store_into_the_repository(name: str) -> None:
    if name in STORE_NOTEBOOKS:
        pytest.skip("this notebook teaches the store (it uses a temporary directory)")
    for cell in load(name)["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse(source(cell).replace("await ", ""))  # top-level await is cell syntax
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "Flow"
            ):
                keywords = {k.arg for k in node.keywords}
                assert "store" in keywords, (
                    f"{name}: nf.Flow(...) without store= in {source(cell)!r}"
                )
