"""The getting-started and concepts pages are true: their examples run, their tables match the code.

Every ```python block of docs/getting-started.md and docs/concepts.md is executed in order, in
one namespace, in a temporary working directory. The state diagram of docs/concepts.md must
list exactly the transitions of ``nbflow.lifecycle``, and its trigger-rule matrix must be what
``nbflow.scheduler.decide`` returns.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from nbflow.lifecycle import FAILED_LIKE, SUCCESSFUL, TRANSITIONS, TaskState
from nbflow.scheduler import FAILED, OK, READY, SKIPPED, column_of, decide

DOCS = Path(__file__).resolve().parents[1] / "docs"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def python_blocks(page: str) -> list[str]:
    return PYTHON_BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", ["getting-started.md", "concepts.md"])
def test_every_python_block_runs_in_order(page: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(page)
    assert len(blocks) >= 5, f"{page} should teach with runnable examples"
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('-', '_')[:-3]}"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"docs/{page} block {number}", "exec"), namespace)  # our own docs


def test_block_extraction_sees_a_failing_block(tmp_path: Path) -> None:
    # Guard against a regex that silently extracts nothing or the wrong thing.
    page = "# t\n\n```python\nraise RuntimeError('from the page')\n```\n"
    (block,) = PYTHON_BLOCK.findall(page)
    with pytest.raises(RuntimeError, match="from the page"):
        exec(compile(block, "page", "exec"), {})


# -- the state diagram --------------------------------------------------------------------


def diagram_edges() -> set[tuple[str, str]]:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    (diagram,) = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    return set(re.findall(r"^\s*([a-z_]+) --> ([a-z_]+)", diagram, re.M))


def test_state_diagram_lists_exactly_the_lifecycle_transitions() -> None:
    expected = {(old.value, new.value) for old, news in TRANSITIONS.items() for new in news}
    assert ("queued", "failed") in expected  # a `when=` that raises fails a queued task
    assert diagram_edges() == expected


def test_state_table_covers_every_state() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| (yes|no) \|", text, re.M)
    assert {name for name, _ in rows} == {s.value for s in TaskState}
    terminal = {name for name, flag in rows if flag == "yes"}
    assert terminal == {s.value for s, nexts in TRANSITIONS.items() if not nexts}


# -- the trigger-rule matrix ----------------------------------------------------------------

#: Each outcome of the matrix, as the state a task ends in.
OUTCOMES = {
    "success": TaskState.SUCCEEDED,
    "failure": TaskState.FAILED,
    "skip": TaskState.SKIPPED,
    "cancelled": TaskState.CANCELLED,  # on its own: a whole run's stop decides nothing more
}


def matrix_rows() -> tuple[list[str], list[tuple[list[str], list[str]]]]:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    header = re.search(r"^\| upstream outcomes \|(.*)\|$", text, re.M)
    assert header is not None, "the trigger-rule matrix is missing from concepts.md"
    rules = [cell.strip().strip("`") for cell in header.group(1).split("|")]
    rows = []
    for line in text[header.end() :].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append(([o.strip() for o in cells[0].split(",")], cells[1:]))
    return rules, rows


def verdict(rule: str, outcomes: list[str]) -> str:
    counts = [len(outcomes), 0, 0, 0]
    for outcome in outcomes:
        counts[column_of(OUTCOMES[outcome])] += 1
    result = decide(rule, len(outcomes), counts)
    return "run" if result is READY else str(result)


def test_trigger_matrix_matches_the_scheduler() -> None:
    rules, rows = matrix_rows()
    assert rules == ["all_success", "all_done", "none_failed", "one_success", "one_failed"]
    combinations = {
        tuple(sorted(pair)) for pair in itertools.combinations_with_replacement(OUTCOMES, 2)
    }
    assert {tuple(sorted(outcomes)) for outcomes, _ in rows} == combinations
    for outcomes, cells in rows:
        assert cells == [verdict(rule, outcomes) for rule in rules], outcomes


def test_outcome_classes_match_the_lifecycle() -> None:
    # The page says cached counts as a success and cancelled (on its own) as a skip.
    assert TaskState.CACHED in SUCCESSFUL and TaskState.UPSTREAM_FAILED in FAILED_LIKE
    assert column_of(TaskState.CANCELLED) == column_of(TaskState.SKIPPED) == SKIPPED
    assert column_of(TaskState.CACHED) == OK and column_of(TaskState.UPSTREAM_FAILED) == FAILED


def test_state_table_says_how_each_state_counts() -> None:
    text = (DOCS / "concepts.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z_]+)` \| yes \| ([a-z]+) \|", text, re.M)
    word = {OK: "success", FAILED: "failure", SKIPPED: "skipped"}
    assert {name: word[column_of(TaskState(name))] for name, _ in rows} == dict(rows)


# -- docs/jupyter.md, in a real kernel -------------------------------------------------------


@pytest.mark.notebook
@pytest.mark.timeout(180)
def test_jupyter_page_runs_as_notebook_cells(tmp_path: Path) -> None:
    """Each python block of docs/jupyter.md is one cell of a notebook run by a real kernel."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    blocks = python_blocks("jupyter.md")
    assert len(blocks) >= 5
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(block) for block in blocks]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError naming the block that failed
    outputs = [
        "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        for cell in notebook.cells
    ]
    background = next(text for text in outputs if "pending" in text)
    assert "succeeded done" in background
    assert "cancelled {'crunch': 'cancelled'}" in background
