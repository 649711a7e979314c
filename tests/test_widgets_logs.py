"""Logs and progress in the dashboard: a task's row opens to its log, a running task's node
and row carry its progress bar, and a log is drawn only while the reader has it open."""

from __future__ import annotations

import asyncio
import re

import nbflow as nf
from nbflow import events as ev
from nbflow.logs import LogCapture
from nbflow.state import RunState
from nbflow.widgets import Dashboard, logview, panels
from nbflow.widgets.views import Structure, progress_text


def running_state(**progress: tuple[int, float, float | None]) -> RunState:
    """A run with tasks a (running), b (running); progress as given."""
    state = RunState()
    state.apply(ev.RunStarted("r1", 0, 0.0, "f", "v", ("a", "b"), {}, 100.0))
    for seq, name in enumerate(("a", "b"), 1):
        state.apply(ev.TaskStarted("r1", seq, 0.1, name, 1))
    for seq, (name, (attempt, done, total)) in enumerate(progress.items(), 10):
        state.apply(ev.TaskProgress("r1", seq, 0.2, name, attempt, None, done, total))
    return state


def log_event(seq: int, task: str, *messages: str, attempt: int = 1) -> ev.TaskLog:
    lines = tuple((0.5 + i, "stdout", m, None) for i, m in enumerate(messages))
    return ev.TaskLog("r1", seq, 0.5, task, attempt, None, lines)


def test_a_running_tasks_progress_is_a_bar_on_its_node_and_in_its_row():
    state = running_state(a=(1, 37, 100), b=(1, 5, None))
    structure = Structure(["a", "b"], [("a", "b")])
    nodes = structure.nodes(state)
    assert (nodes["a"].counter, nodes["a"].progress) == ("37/100", 0.37)
    assert (nodes["b"].counter, nodes["b"].progress) == ("5", None)  # no total: a count
    svg = panels.dag_html(nf.render.DagTemplate(structure.view), structure, state)
    assert re.search(r'data-task="a" data-state="running" data-progress="0.370"', svg)
    a = svg[svg.index('data-task="a"') : svg.index('data-task="b"')]
    bar = re.search(r'class="nbflow-progress"[^>]*width="([\d.]+)"', a)
    track = re.search(r'class="nbflow-track"[^>]*width="([\d.]+)"', a)
    assert bar and track and abs(float(bar[1]) / float(track[1]) - 0.37) < 0.01
    table = panels.table_html(state)
    row_a = re.search(r'data-row-task="a".*?</tr>', table)
    assert row_a and 'data-progress="0.370"' in row_a[0] and "37/100" in row_a[0]


def test_progress_of_an_earlier_attempt_or_a_finished_task_is_not_shown():
    state = running_state(a=(1, 3, 4))
    state.apply(ev.TaskRetrying("r1", 20, 0.3, "a", 1, ValueError("x"), 0.0))
    state.apply(ev.TaskStarted("r1", 21, 0.3, "a", 2))
    assert Structure(["a", "b"], []).nodes(state)["a"].progress is None  # attempt 2: none yet
    state.apply(ev.TaskProgress("r1", 22, 0.4, "a", 2, None, 1, 4))
    assert Structure(["a", "b"], []).nodes(state)["a"].progress == 0.25
    state.apply(ev.TaskSucceeded("r1", 23, 0.5, "a", 2))
    assert Structure(["a", "b"], []).nodes(state)["a"].progress is None


def test_progress_words():
    assert progress_text(3, 4) == ("3/4", 0.75)
    assert progress_text(0.5, 2.0) == ("25%", 0.25)
    assert progress_text(7, 0) == ("7/0", 1.0)
    assert progress_text(12, None) == ("12", None)


def test_a_tasks_row_opens_to_its_log_drawn_only_while_open():
    state = running_state()
    state.apply(log_event(30, "a", "hello", "<b>not bold</b>"))
    closed = panels.table_html(state)
    row = re.search(r'<tr class="nbflow-log-row" data-row-task="a">.*?</tr>', closed)
    assert row and "Log · 2 lines" in row[0]
    assert "hello" not in closed and " open>" not in row[0]  # closed: no lines sent
    assert 'data-row-task="b"' in closed and 'nbflow-log-row" data-row-task="b"' not in closed
    opened = panels.table_html(state, expanded=["a"])
    lines = re.findall(r'<div class="nbflow-log-line" data-level="stdout">(.*?)</div>', opened)
    assert [re.sub(r"<span[^>]*>.*?</span> ", "", line) for line in lines] == [
        "hello",
        "&lt;b&gt;not bold&lt;/b&gt;",
    ]


def test_an_open_log_lists_its_newest_lines_attempt_by_attempt():
    state = running_state()
    state.apply(log_event(30, "a", *[f"old {i}" for i in range(10)]))
    state.apply(log_event(31, "a", *[f"new {i}" for i in range(logview.MAX_LINES)], attempt=2))
    html = logview.lines_html(state, "a")
    assert "… 10 earlier lines: run.logs(&#x27;a&#x27;)" in html
    assert "old 9" not in html and "new 0" in html and f"new {logview.MAX_LINES - 1}" in html
    both = logview.lines_html(state, "a", limit=logview.MAX_LINES + 10)
    assert re.findall(r"— (a · attempt \d) —", both) == ["a · attempt 1", "a · attempt 2"]


def test_the_summary_counts_what_the_cap_left_out():
    state = running_state()
    event = log_event(30, "a", "first")
    event.dropped, event.latest = 1234, "line 99999"
    state.apply(event)
    assert logview.summary(state.logs["a"]) == (
        "Log · 1 line (1,234 more not kept) · latest: line 99999"
    )


def test_the_dashboard_draws_a_log_when_it_is_expanded():
    flow = nf.Flow("dash-logs", store=None, logs=LogCapture(echo=False))

    @flow.task
    def talk():
        print("visible when open")

    run = flow.run()
    dash = Dashboard(run)
    dash._draw({"table"})
    assert "Log · 1 line" in dash._table and "visible when open" not in dash._table
    dash.expanded = ["talk"]  # what the page sets when the reader opens it
    assert "visible when open" in dash._table
    dash.expanded = []
    assert "visible when open" not in dash._table
    dash.close()


def test_a_live_dashboard_shows_the_log_while_the_task_runs():
    flow = nf.Flow("live-logs", store=None, logs=LogCapture(echo=False, interval=0.02))
    gate = asyncio.Event()

    @flow.task
    async def talk():
        print("first line")
        await gate.wait()

    async def main() -> str:
        handle = flow.start()
        dash = Dashboard(handle, interval=0.02)
        dash.tab, dash.expanded = "table", ["talk"]
        for _ in range(500):
            if "first line" in dash._table:
                break
            await asyncio.sleep(0.01)
        seen = dash._table
        gate.set()
        await handle
        dash.close()
        return seen

    seen = asyncio.run(main())
    assert "first line" in seen and 'data-row-state="running"' in seen


def test_the_static_summary_counts_a_tasks_lines_and_says_where_they_are():
    flow = nf.Flow("static-logs", store=None, logs=LogCapture(echo=False))
    flow.task(name="talk")(lambda: print("a line"))
    html = flow.run()._repr_html_()
    row = re.search(r'<tr class="nbflow-log-row" data-row-task="talk">.*?</tr>', html)
    assert row and "Log · 1 line: <code>run.logs(&#x27;talk&#x27;)</code>" in row[0]
    assert "<details" not in row[0]  # nothing to open where no dashboard draws it
