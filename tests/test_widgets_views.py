"""The pure parts behind the dashboard: views, HTML panels, the static summary, flow.graph(),
and the coalescer. No widgets here."""

from __future__ import annotations

import asyncio
import math
import re
import xml.etree.ElementTree as ET

import graphviz
import pytest

import nbflow as nf
from nbflow.lifecycle import TaskState
from nbflow.render import STATE_STYLE, DagTemplate
from nbflow.state import RunState, TaskRecord
from nbflow.summary import run_summary_html
from nbflow.widgets import panels
from nbflow.widgets.throttle import Ticker
from nbflow.widgets.views import Structure, TaskFacts, element_errors_text, group_keys, node_view


def failing_flow() -> nf.Flow:
    flow = nf.Flow("report", on_error="continue")

    @flow.task(priority=7)
    def load():
        return [1, 2, 3]

    @flow.task(fan_out="load")
    def square(load):
        return load * load

    @flow.task
    def broken(square):
        raise KeyError("amount")

    @flow.task
    def publish(broken):
        return broken

    return flow


# -- flow.graph ----------------------------------------------------------------------------


def test_flow_graph_without_a_run_is_the_plain_structure():
    # No run, no states: neutral boxes, not four "pending" nodes (issue #22).
    g = failing_flow().graph()
    assert isinstance(g, graphviz.Digraph)
    assert g.source.count('class="nbflow-task"') == 4
    assert "fillcolor" not in g.source and "nbflow-state-" not in g.source
    for style in STATE_STYLE.values():
        assert style.glyph not in g.source and f"\\n{style.label}" not in g.source
    assert g.source.count("->") == 3
    assert 'label="load\\np=7"' in g.source
    assert "{rank=min; n0}" in g.source  # the source task in the first column


def test_flow_graph_of_a_run_is_coloured_by_state():
    flow = failing_flow()
    run = flow.run()
    source = flow.graph(run).source
    node = {
        name: line
        for line in source.splitlines()
        for name in ("load", "square", "broken", "publish")
        if f" {name}\\n" in line
    }
    assert STATE_STYLE["succeeded"].fill in node["load"]
    assert STATE_STYLE["failed"].fill in node["broken"]
    assert "KeyError" in node["broken"]  # the error is the tooltip
    assert STATE_STYLE["upstream_failed"].fill in node["publish"]
    assert "3/3" in node["square"]  # fan-out counter


def partial_flow() -> nf.Flow:
    flow = nf.Flow("partial", store=None)

    @flow.task
    def items():
        return list(range(10))

    @flow.task(fan_out="items", allow_partial=True)
    def work(items):
        if items in (3, 5, 8):
            raise ValueError(f"bad item {items}")
        return items

    return flow


def test_partial_fan_out_is_drawn_partial_in_the_graph_and_the_tasks_table():
    # allow_partial: the task succeeds with 7 of 10 elements; the views must not say "all
    # green" (issue #22): a "partial" node and chip, the count and first error in the table.
    flow = partial_flow()
    run = flow.run()
    assert run.states["work"] == "succeeded"  # the task's own state is unchanged
    structure = Structure.from_plan(flow.plan())
    node = structure.nodes(run.state)["work"]
    assert (node.state, node.counter) == ("partial", "7/10")
    assert node.error == "3 of 10 elements failed; first: work[3] ValueError: bad item 3"
    assert structure.nodes(run.state)["items"].state == "succeeded"

    template = DagTemplate(structure.view)
    svg = panels.dag_html(template, structure, run.state)
    assert re.search(r'data-task="work" data-state="partial"><title>[^<]*3 of 10 elements', svg)
    assert 'data-task="items" data-state="succeeded"' in svg

    table = panels.table_html(run.state)
    row = re.search(r'<tr class="nbflow-row" data-row-task="work".*?</tr>', table)
    assert row is not None
    assert 'data-chip="partial"' in row[0] and "7/10" in row[0]
    assert "3 of 10 elements failed; first: work[3] ValueError: bad item 3" in row[0]
    # A big run lists only what is not plainly done: the partial task is listed.
    assert 'data-row-task="work"' in panels.table_html(run.state, max_rows=1)

    digraph = flow.graph(run).source
    assert STATE_STYLE["partial"].fill in next(
        line for line in digraph.splitlines() if " work\\n" in line
    )


def test_a_partial_tasks_row_opens_to_its_failed_elements_tracebacks():
    # The Error column names the first failure; the row under it opens to the tracebacks of
    # the first three failed elements (the user's frames), like a failed task's.
    run = partial_flow().run()
    table = panels.table_html(run.state)
    row = re.search(r'<tr class="nbflow-traceback-row" data-row-task="work">.*?</tr>', table, re.S)
    assert row is not None
    assert "Tracebacks of work[3], work[5], work[8]</summary>" in row[0]
    for i in (3, 5, 8):
        assert f"work[{i}]\nTraceback (most recent call last)" in row[0]
        assert f"ValueError: bad item {i}" in row[0]
    assert "nbflow/attempts.py" not in row[0]  # nbflow's own frames are left out
    # More failed elements than shown: the summary counts them and says where they all are.
    state = run.state
    state.tasks["work"].elements_failed = 5
    for i in (1, 2):
        tracebacks = state.tasks["work"].element_tracebacks
        assert tracebacks is not None
        tracebacks[i] = f"Traceback (most recent call last):\nE{i}"
    table = panels.table_html(state)
    summary = re.search(r"<summary[^>]*>(Tracebacks of work.*?)</summary>", table)
    assert summary is not None and summary[1] == (
        "Tracebacks of work[1], work[2], work[3] (5 elements failed; "
        "<code>run.element_errors</code> has them all)"
    )
    # Only a failed task or one with failed elements has such a row (square's all succeeded).
    table = panels.table_html(failing_flow().run().state)
    assert re.findall(r'nbflow-traceback-row" data-row-task="([^"]+)"', table) == ["broken"]


# -- views ---------------------------------------------------------------------------------


def test_node_view_counts_elements_and_elapsed_time():
    record = TaskRecord("t", TaskState.RUNNING, attempts=2, started_t=1.0, size=10)
    record.elements_done = 4
    node = node_view("t", record, TaskFacts(priority=3, tags=("io",)), now=3.5)
    assert (node.state, node.counter, node.duration_s, node.priority) == ("running", "4/10", 2.5, 3)
    assert node_view("t", None, TaskFacts(), 0.0).state == "pending"


def test_group_keys_use_tags_else_levels_merged_to_fit():
    names = [f"t{i}" for i in range(10)]
    level = {n: i for i, n in enumerate(names)}
    untagged = dict.fromkeys(names, TaskFacts())
    assert set(group_keys(names, level, untagged, max_nodes=10).values()) == {
        f"level {i}" for i in range(10)
    }
    merged = group_keys(names, level, untagged, max_nodes=4)
    assert len(set(merged.values())) <= 4
    assert merged["t0"] == merged["t2"] == "levels 0-2"
    tagged = {n: TaskFacts(tags=("a" if i < 5 else "b",)) for i, n in enumerate(names)}
    assert set(group_keys(names, level, tagged, 4).values()) == {"a", "b"}
    with pytest.raises(ValueError, match="max_nodes must be at least 1"):
        group_keys(names, level, untagged, 0)


def test_grouped_structure_aggregates_member_states():
    names = [f"t{i}" for i in range(6)]
    edges = [("t0", "t2"), ("t1", "t3"), ("t2", "t4"), ("t3", "t5")]
    s = Structure(names, edges, max_nodes=3)
    assert s.grouped and list(s.groups) == ["level 0", "level 1", "level 2"]
    assert s.view.edges == (("level 0", "level 1"), ("level 1", "level 2"))
    state = RunState()
    state.tasks = {n: TaskRecord(n) for n in names}
    state.tasks["t0"].state = TaskState.SUCCEEDED
    state.tasks["t1"].state = TaskState.FAILED
    state.tasks["t1"].error = ValueError("bad")
    nodes = s.nodes(state)
    assert nodes["level 0"].state == "failed"
    assert nodes["level 0"].counter == "2/2"
    assert "t1: ValueError: bad" in (nodes["level 0"].error or "")
    assert nodes["level 2"].state == "pending"


def grouped_run(run_id: str, state_of_all: TaskState, finished: bool):
    """A 12-task chain of 3 levels drawn in groups, and a run state with every task in one
    state."""
    names = [f"t{i}" for i in range(12)]
    edges = [(f"t{i}", f"t{i + 3}") for i in range(9)]
    state = RunState(run_id=run_id)
    state.finished_t = 1.0 if finished else None
    state.tasks = {n: TaskRecord(n, state_of_all) for n in names}
    return Structure(names, edges, max_nodes=3), state


@pytest.mark.parametrize("finished", [False, True])
@pytest.mark.parametrize(
    "state_of_all",
    [TaskState.SUCCEEDED, TaskState.RUNNING, TaskState.SKIPPED, TaskState.FAILED, TaskState.QUEUED],
)
def test_grouped_nodes_of_a_run_in_one_state_match_the_general_count(state_of_all, finished):
    # All tasks in one state takes a shortcut (no counting per group; a finished run's shared
    # counts, without looking at its records): the same nodes as counting.
    from nbflow.widgets.views import group_node

    s, state = grouped_run(f"{state_of_all}-{finished}", state_of_all, finished)
    state.tasks["t4"].error = ValueError("bad") if state_of_all == TaskState.FAILED else None
    members = {g: [state.tasks[n] for n in group] for g, group in s.groups.items()}
    expected = {g: group_node(g, members[g], 0) for g in s.groups}
    assert s.nodes(state) == expected
    done = state_of_all in (TaskState.SUCCEEDED, TaskState.SKIPPED, TaskState.FAILED)
    sizes = {g: len(group) for g, group in s.groups.items()}
    assert {g: n.counter for g, n in expected.items()} == {
        g: f"{k if done else 0}/{k}" for g, k in sizes.items()
    }


@pytest.mark.parametrize("finished", [False, True])
@pytest.mark.parametrize("partial_at", ["t0", "t5"])
def test_a_group_with_a_partial_member_is_drawn_partial(finished, partial_at):
    # Every member succeeded, one of them with failed elements allowed: the group is not a
    # plain success (the uniform shortcut of an all-succeeded run must not hide it).
    s, state = grouped_run(f"partial-{finished}-{partial_at}", TaskState.SUCCEEDED, finished)
    state.tasks[partial_at].size, state.tasks[partial_at].elements_failed = 4, 1
    state.fan_out = frozenset({partial_at, "t1"})  # t1 fans out too, all its elements fine
    state.tasks["t1"].size = 3
    nodes = s.nodes(state)
    group = next(g for g, members in s.groups.items() if partial_at in members)
    assert {g: n.state for g, n in nodes.items()} == {
        g: "partial" if g == group else "succeeded" for g in s.groups
    }
    assert nodes[group].counter == f"{len(s.groups[group])}/{len(s.groups[group])}"
    # ...and a member not yet started (None) takes the general count, which sees it too.
    del state.tasks["t11"]
    assert s.nodes(state)[group].state == "partial"


# -- panels --------------------------------------------------------------------------------


def test_header_counts_a_partial_fan_out_task_as_partial():
    # The header's chips and bar said "2 succeeded" for a run whose fan-out task lost 3 of
    # its 10 elements (allowed): the count agrees with the Graph and the Tasks view.
    run = partial_flow().run()
    html = panels.header_html(run.state, "partial", 2)
    chips = re.findall(r'data-chip="([a-z_]+)"[^>]*>.*?</span>([^<]*)</span>', html)
    assert chips == [("succeeded", "1 succeeded"), ("partial", "1 partial")]
    assert re.findall(r'data-segment="([a-z_]+)"', html) == ["succeeded", "partial"]
    assert 'aria-valuenow="2"' in html  # both are done


def test_header_marker_and_progress_before_and_after_the_run():
    flow = failing_flow()
    run = flow.run()
    html = panels.header_html(run.state, "report", 4)
    assert 'data-nbflow-status="failed"' in html
    assert 'aria-valuenow="4"' in html and 'aria-valuemax="4"' in html
    assert "2 succeeded" in html and "1 failed" in html and "1 upstream failed" in html
    empty = panels.header_html(RunState(), "report", 4)
    assert 'data-nbflow-status="pending"' in empty and 'aria-valuenow="0"' in empty


def test_big_table_lists_only_unfinished_or_failed_tasks_most_urgent_first():
    state = RunState()
    state.tasks = {f"t{i}": TaskRecord(f"t{i}", TaskState.SUCCEEDED) for i in range(10)}
    state.tasks["t7"].state = TaskState.FAILED
    state.tasks["t2"].state = TaskState.RUNNING
    html = panels.table_html(state, max_rows=3)
    listed = re.findall(r'data-row-task="(t\d+)" data-row-state', html)
    assert listed == ["t2", "t7"]  # in definition order
    assert "8 more tasks not listed (8 succeeded)" in html
    for i in (3, 4, 5):
        state.tasks[f"t{i}"].state = TaskState.PENDING
    listed = re.findall(r'data-row-task="(t\d+)" data-row-state', panels.table_html(state, 3))
    assert listed == ["t2", "t3", "t7"]  # failed, running, then the first pending
    assert panels.table_html(state, max_rows=20).count('class="nbflow-row"') == 10


def test_big_table_of_a_clean_run_is_one_line():
    state = RunState()
    state.tasks = {f"t{i}": TaskRecord(f"t{i}", TaskState.SUCCEEDED) for i in range(300)}
    html = panels.table_html(state, max_rows=200)
    assert "<table" not in html and "300 tasks: 300 succeeded" in html


def test_user_traceback_drops_nbflow_and_asyncio_frames():
    run = failing_flow().run()
    full = run.state.tasks["broken"].traceback
    assert "nbflow/attempts.py" in full  # where nbflow calls the task
    short = panels.user_traceback(full)
    assert "nbflow/" not in short and "asyncio" not in short
    assert "in broken" in short and short.rstrip().endswith("KeyError: 'amount'")
    assert panels.user_traceback("not a traceback") == "not a traceback"


# -- static summary ------------------------------------------------------------------------


def test_run_repr_html_is_a_static_summary_with_dag_gantt_and_table():
    run = failing_flow().run()
    html = run._repr_html_()
    assert html == run_summary_html(run)
    assert 'data-nbflow-status="failed"' in html
    assert "<script" not in html
    dag = re.search(r'<svg[^>]*class="nbflow-dag".*?</svg>', html, re.S)
    assert dag is not None
    ET.fromstring(dag[0])  # well-formed
    assert len(re.findall(r'<g class="nbflow-node nbflow-state', dag[0])) == 4
    assert html.count('class="nbflow-bar"') == len(run.timeline())
    assert '<details class="nbflow-traceback">' in html


def test_summary_of_a_huge_run_omits_the_timeline():
    flow = nf.Flow("wide")
    for i in range(1200):
        flow.task(name=f"t{i}")(lambda: None)
    html = run_summary_html(flow.run())
    assert 'class="nbflow-bar"' not in html
    assert "Timeline: 1,200 attempts; see run.timeline()" in html
    assert "1,200 tasks: 1,200 succeeded" in html


# -- ticker --------------------------------------------------------------------------------


def test_ticker_flushes_once_per_tick_only_when_the_version_moved_and_survives_errors():
    async def main() -> tuple[Ticker, list[int]]:
        calls: list[int] = []
        version = [0]
        ticker = Ticker(
            lambda: calls.append(version[0]),
            lambda: version[0],
            asyncio.get_running_loop(),
            interval=0.01,
        )
        ticker.start()
        await asyncio.sleep(0.05)
        assert calls == []  # nothing moved since the owner drew
        version[0] = 10_000  # a burst of changes between two ticks
        await asyncio.sleep(0.05)
        assert calls == [10_000] and ticker.running
        ticker.stop()
        version[0] += 1
        await asyncio.sleep(0.05)
        assert calls == [10_000] and not ticker.running

        def boom() -> None:
            version[0] += 1  # moves every time: every tick flushes, and raises
            raise RuntimeError("no")

        bad = Ticker(boom, lambda: version[0], asyncio.get_running_loop(), 0.01, drawn=False)
        bad.start()
        await asyncio.sleep(0.035)
        bad.stop()
        return bad, calls

    bad, _ = asyncio.run(main())
    assert bad.errors == bad.flushes >= 2  # the ticker went on after each error


def test_ticker_heartbeat_and_a_flush_that_stops_it():
    async def main() -> tuple[int, int]:
        beats: list[int] = []
        steady = Ticker(
            lambda: beats.append(1),
            lambda: 0,
            asyncio.get_running_loop(),
            interval=0.01,
            heartbeat=0.03,
        )
        steady.start()
        stops: list[int] = []
        once = Ticker(
            lambda: (stops.append(1), once.stop()),
            lambda: 0,
            asyncio.get_running_loop(),
            interval=0.01,
            drawn=False,
        )
        once.start(0.0)
        await asyncio.sleep(0.1)
        steady.stop()
        return len(beats), len(stops)

    beats, stops = asyncio.run(main())
    assert 1 <= beats <= 4  # nothing moved: only the heartbeat redraws
    assert stops == 1


def test_ticker_with_infinite_interval_never_ticks_and_bad_intervals_are_rejected():
    async def main() -> None:
        calls: list[int] = []
        ticker = Ticker(
            lambda: calls.append(1),
            lambda: 0,
            asyncio.get_running_loop(),
            interval=math.inf,
            drawn=False,
        )
        ticker.start()
        await asyncio.sleep(0.01)
        assert calls == [] and not ticker.running
        with pytest.raises(ValueError, match="interval must be positive seconds, not 0"):
            Ticker(lambda: None, lambda: 0, asyncio.get_running_loop(), interval=0)

    asyncio.run(main())


def test_flows_of_one_shape_share_a_layout_but_not_their_priorities():
    from nbflow.widgets import layouts

    def flow_with(priority: int) -> nf.Flow:
        flow = nf.Flow(f"shape-p{priority}")
        flow.task(name="a", priority=priority)(lambda: 1)
        flow.task(name="b", after=["a"])(lambda: 2)
        return flow

    drawn = []
    for priority in (3, 9):
        structure = layouts.structure_for(flow_with(priority).plan())
        template, _ = layouts.python_template(structure)
        drawn.append((template, panels.dag_html(template, structure, None)))
    assert drawn[0][0] is drawn[1][0]  # one layout for both
    assert "p=3" in drawn[0][1] and "p=9" not in drawn[0][1]
    assert "p=9" in drawn[1][1] and "p=3" not in drawn[1][1]


def test_element_failures_in_words():
    record = TaskRecord("work", TaskState.SUCCEEDED, size=6, elements_failed=1)
    assert element_errors_text(record) == "1 of 6 elements failed"  # not "1 of 6 element"
    record.element_errors = {4: LookupError("no profile")}
    assert element_errors_text(record) == (
        "1 of 6 elements failed; first: work[4] LookupError: no profile"
    )
    assert element_errors_text(TaskRecord("w", size=None, elements_failed=1)) == "1 element failed"
    assert element_errors_text(TaskRecord("w", size=None, elements_failed=2)) == "2 elements failed"
    assert element_errors_text(TaskRecord("w", size=6)) is None
