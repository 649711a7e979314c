"""The notebook loop, as a user meets it: edit a cell, run again, get the right answer (#18).

Every cell runs the way IPython runs it (``ipython_cells.Cells``). A cached task must never
be served when anything its result depends on changed, and must still be served when
nothing did; ``run.why()`` says which.
"""

from __future__ import annotations

import pytest
from ipython_cells import Cells

import nbflow as nf

FLOW = """
import nbflow as nf
RATE = 0.10
CONFIG = {"round": 2}
def helper(x):
    return x * (1 + RATE)
flow = nf.Flow("prices")
@flow.task
def base():
    return [100.0, 200.0]
@flow.task(cache=True)
def taxed(base, digits=2):
    return [round(helper(b), digits) for b in base]
@flow.task(cache=True)
def total(taxed):
    return round(sum(taxed), CONFIG["round"])
"""


@pytest.fixture
def cells() -> Cells:
    cells = Cells()
    cells.run(FLOW)
    return cells


def run(cells: Cells, **options):
    return cells["flow"].run(**options)


# -- never a stale result -------------------------------------------------------------------------


EDITS = {
    "a global the task reads": ("RATE = 0.25\n", 375.0, "global `RATE` changed (0.1 -> 0.25)"),
    "a helper it calls": (
        "def helper(x):\n    return x * 2\n",
        600.0,
        "helper `helper` changed",
    ),
    "a parameter default": (
        "@flow.task(cache=True)\ndef taxed(base, digits=0):\n"
        "    return [round(helper(b), digits) for b in base]\n",
        330.0,
        "default `digits` changed (2 -> 0)",
    ),
    "a global container mutated in place": (
        "CONFIG['round'] = 0\n",
        330.0,
        "global `CONFIG` changed",
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edit_is_never_served_from_the_cache_and_why_says_what_changed(cells, edit):
    source, expected, words = EDITS[edit]
    first = run(cells)
    assert first.results["total"] == 330.0
    assert set(run(cells).states.values()) == {"succeeded", "cached"}  # unchanged: reused
    cells.run(source)
    again = run(cells)
    assert again.results["total"] == expected  # never the stale 330.0
    changed = "total" if edit == "a global container mutated in place" else "taxed"
    assert again.states[changed] == "succeeded"
    assert words in again.why(changed)
    assert again.why(changed).startswith("ran: ")


def test_an_unchanged_flow_is_all_reused_and_why_says_from_which_run(cells):
    first = run(cells)
    second = run(cells)
    assert second.states == {"base": "succeeded", "taxed": "cached", "total": "cached"}
    assert second.why("taxed") == (
        f"cached: same source, 1 default and 1 global and inputs as run {first.run_id[:8]}"
    )
    assert "nothing asked for reuse" in second.why("base")  # no cache=True: it ran
    resumed = run(cells, resume="last")
    assert set(resumed.states.values()) == {"cached"}
    assert resumed.why("base") == f"resumed from run {second.run_id[:8]}: same source and inputs"


def test_the_dashboards_tooltip_says_where_a_reused_result_came_from(cells):
    from nbflow.widgets.views import Structure

    first = run(cells)
    second = run(cells)
    resumed = run(cells, resume="last")
    structure = Structure(["base", "taxed", "total"], [("base", "taxed"), ("taxed", "total")])
    nodes = structure.nodes(second.state)
    assert nodes["taxed"].note == f"cached from run {first.run_id[:8]}"
    assert nodes["base"].note is None  # it ran
    assert structure.nodes(resumed.state)["base"].note == f"resumed from run {second.run_id[:8]}"
    html = nf.Dashboard(resumed)._repr_mimebundle_()["text/html"]
    assert f"resumed from run {second.run_id[:8]}" in html  # the node's <title>


def test_why_says_which_input_changed():
    cells = Cells()
    cells.run(FLOW)
    run(cells)
    cells.run("@flow.task\ndef base():\n    return [100.0, 300.0]\n")
    again = run(cells)
    assert again.why("taxed").startswith("ran: input `base` changed since run")


def test_why_works_for_any_recorded_run_by_its_id(cells):
    run(cells)
    cells.run("RATE = 0.5\n")
    second = run(cells)
    assert nf.why(second.run_id, "taxed").startswith(
        "ran: helper `helper`: global `RATE` changed (0.1 -> 0.5) since run"
    )
    third = run(cells)
    assert nf.why(third.run_id, "taxed").startswith("reused: same source")


def test_the_first_run_says_there_was_nothing_to_reuse(cells):
    assert run(cells).why("taxed") == "ran: no earlier result of this task in the store"


def test_why_says_a_result_that_could_not_be_stored_was_not_there_to_reuse():
    cells = Cells()
    cells.run(
        "import threading\n"
        "import nbflow as nf\n"
        "flow = nf.Flow('locks')\n"
        "@flow.task(cache=True)\n"
        "def guard():\n"
        "    return threading.Lock()\n"
    )
    with pytest.warns(nf.StoreWarning, match="cannot be pickled"):
        first = run(cells)
    with pytest.warns(nf.StoreWarning):
        second = run(cells)
    said = f"ran: run {first.run_id[:8]} could not store its result (a StoreWarning said why)"
    assert second.states["guard"] == "succeeded"
    assert second.why("guard").startswith(said)
    assert nf.why(second.run_id, "guard").startswith(said)  # the same, read from the store


def test_without_a_store_why_says_so():
    flow = nf.Flow("nostore", store=None)
    flow.task(name="a")(lambda: 1)
    assert flow.run().why("a").startswith("ran: the flow has no store")


# -- what is stored is what the task returned ----------------------------------------------------


def test_a_downstream_task_mutating_its_input_changes_nothing_stored():
    cells = Cells()
    cells.run(
        """
        import nbflow as nf
        flow = nf.Flow("mutating")
        @flow.task(cache=True)
        def rows():
            return [{"id": 1}]
        @flow.task(when="vars['mutate']")
        def enrich(rows):
            rows[0]["extra"] = "added downstream"   # mutates what it received
            rows.append({"id": 2})
            return len(rows)
        """
    )
    first = cells["flow"].run(variables={"mutate": True})
    assert first.results["enrich"] == 2 and len(first.results["rows"]) == 2  # the object...
    cached = cells["flow"].run(variables={"mutate": False})
    assert cached.states["rows"] == "cached"
    assert cached.results["rows"] == [{"id": 1}]  # ...but stored: what rows() returned
    resumed = cells["flow"].run(variables={"mutate": False}, resume=first.run_id)
    assert resumed.results["rows"] == [{"id": 1}]


# -- versions ------------------------------------------------------------------------------------


def test_a_redefined_helper_is_a_new_flow_version(cells):
    first = run(cells)
    cells.run("def helper(x):\n    return x + 1\n")
    second = run(cells)
    assert second.flow_version != first.flow_version
    versions = cells["flow"].versions()
    assert versions.version.tolist() == [first.flow_version, second.flow_version]
    diff = nf.diff_versions(first.flow_version, second.flow_version)
    assert [c.kind for c in diff.changed["taxed"]] == ["code"]
    assert "helper helper() changed" in str(diff)


# -- re-running cells, many times -----------------------------------------------------------------


def test_hundreds_of_define_run_redefine_cycles_never_run_old_code():
    cells = Cells()
    cells.run("import nbflow as nf\nflow = nf.Flow('cycles', store=None)\n")
    for i in range(300):
        cells.run(f"@flow.task\ndef value():\n    return {i}\n")
        cells.run(f"@flow.task\ndef plus(value):\n    return value + {i}\n")
        result = cells["flow"].run().results
        assert result == {"value": i, "plus": 2 * i}, i


def test_hundreds_of_cached_cycles_never_serve_an_old_result(tmp_path):
    cells = Cells()
    cells.run(
        f"import nbflow as nf\nflow = nf.Flow('cached-cycles', store={str(tmp_path / 'c.db')!r})\n"
    )
    for i in range(150):
        cells.run(f"N = {i % 7}\n")  # values come back: a cached entry may be right again
        cells.run("@flow.task(cache=True)\ndef value():\n    return N * 10\n")
        run_ = cells["flow"].run()
        assert run_.results["value"] == (i % 7) * 10, i
        assert run_.states["value"] == ("cached" if i >= 7 else "succeeded"), i
