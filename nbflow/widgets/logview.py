"""A task's log and progress as the Tasks view shows them: pure HTML string functions.

A task that printed or logged something gets a row under its own in the task table: a
``<details class="nbflow-log">`` whose summary counts the lines and whose body, drawn only
while the reader has it open (the dashboard's ``expanded`` tasks; a closed one costs a
line of HTML however long the log), lists the newest :data:`MAX_LINES` lines, attempt by
attempt (a loop's labelled by iteration, as its timeline rows are: ``task#2 · attempt 1``).
A running task that reports its progress gets a bar in its State cell.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from nbflow.events import row_label
from nbflow.render.svg import fmt_duration

if TYPE_CHECKING:
    from nbflow.events import TaskLog
    from nbflow.state import RunState, TaskRecord

#: The newest lines of a task's log that its open row lists (``run.logs()`` has them all).
MAX_LINES = 200

_FAINT = "rgba(127,127,127,.16)"
# Level -> the colour of its tag: stderr and warnings amber, errors JupyterLab's error red.
_AMBER = "var(--jp-warn-color1, #B26B00)"
_RED = "var(--jp-error-color1, #B3470B)"
_TAGS = {"stderr": _AMBER, "WARNING": _AMBER, "ERROR": _RED, "CRITICAL": _RED}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def counts(batches: list[TaskLog]) -> tuple[int, int, str | None]:
    """Lines kept, lines left out by the cap, and the newest line left out (live only)."""
    kept, last = 0, {}
    for e in batches:
        kept += len(e.lines)
        # Each attempt's latest batch has its running count (a loop's iterations each
        # count their attempts from 1).
        last[e.iteration, e.attempt, e.element] = e
    latest = next((e.latest for e in reversed(batches) if e.latest is not None), None)
    return kept, sum(e.dropped for e in last.values()), latest


def summary(batches: list[TaskLog]) -> str:
    """``"Log · 12 lines"``, with what the cap left out if it did."""
    kept, dropped, latest = counts(batches)
    text = f"Log · {kept:,} line{'s' if kept != 1 else ''}"
    if dropped:
        text += f" ({dropped:,} more not kept)"
    if latest is not None:
        text += f" · latest: {latest[:120]}"
    return text


def lines_html(state: RunState, task: str, limit: int = MAX_LINES) -> str:
    """The newest ``limit`` lines of ``task``'s log as a ``<pre>``, attempt by attempt."""
    batches = state.logs.get(task, [])
    rows = [((e.iteration, e.attempt, e.element), line) for e in list(batches) for line in e.lines]
    out = []
    if len(rows) > limit:
        out.append(
            f'<div style="opacity:.6">… {len(rows) - limit:,} earlier lines: '
            f"run.logs({esc(repr(task))})</div>"
        )
        rows = rows[-limit:]
    start = state.started_t or 0.0
    shown: tuple[int, int, int | None] | None = None
    several = len({which for which, _ in rows}) > 1
    for which, (t, level, message, _logger) in rows:
        if several and which != shown:
            iteration, attempt, element = which
            label = row_label(task, iteration) if element is None else f"{task}[{element}]"
            out.append(
                f'<div class="nbflow-log-attempt" style="opacity:.6;margin-top:2px">'
                f"— {esc(label)} · attempt {attempt} —</div>"
            )
            shown = which
        colour = _TAGS.get(level)
        tag = (
            f'<span style="color:{colour};font-weight:600">{esc(level)}</span> '
            if colour is not None
            else ""
        )
        style = ' style="opacity:.65;font-style:italic"' if level == "nbflow" else ""
        out.append(
            f'<div class="nbflow-log-line" data-level="{esc(level)}"{style}>'
            f'<span style="opacity:.5">{fmt_duration(max(0.0, t - start)):>6}</span> '
            f"{tag}{esc(message)}</div>"
        )
    return (
        '<pre class="nbflow-log-lines" style="margin:6px 0 2px;max-height:260px;overflow:auto;'
        f"font-size:11.5px;line-height:1.45;padding:8px 10px;border-radius:6px;"
        f'background:{_FAINT};white-space:pre-wrap;word-break:break-all">{"".join(out)}</pre>'
    )


def log_row(state: RunState, record: TaskRecord, expanded: bool | None, columns: int = 6) -> str:
    """The row under a task's own that opens to its log ("" when it wrote nothing).

    ``expanded`` None: a static page (no dashboard to draw a log when it is opened): the row
    only counts the lines and says where they are.
    """
    batches = state.logs.get(record.name)
    if not batches:
        return ""
    if expanded is None:
        return (
            f'<tr class="nbflow-log-row" data-row-task="{esc(record.name)}">'
            f'<td colspan="{columns}" style="padding:0 10px 6px;font-size:12px;opacity:.75">'
            f"{esc(summary(batches))}: <code>run.logs({esc(repr(record.name))})</code>"
            "</td></tr>"
        )
    body = lines_html(state, record.name) if expanded else ""
    return (
        f'<tr class="nbflow-log-row" data-row-task="{esc(record.name)}">'
        f'<td colspan="{columns}" style="padding:0 10px 6px">'
        f'<details class="nbflow-log" data-task="{esc(record.name)}"'
        f'{" open" if expanded else ""}><summary style="cursor:pointer;font-size:12px;'
        f'opacity:.75">{esc(summary(batches))}</summary>{body}</details></td></tr>'
    )


def progress_cell(text: str, fraction: float | None) -> str:
    """A small bar and its words (``37/100``) for a running task's State cell."""
    bar = ""
    if fraction is not None:
        bar = (
            f'<span class="nbflow-row-progress" data-progress="{fraction:.3f}" '
            f'style="display:inline-block;vertical-align:middle;width:64px;height:5px;'
            f'border-radius:3px;background:{_FAINT};margin:0 4px 0 6px;overflow:hidden">'
            f'<span style="display:block;height:100%;width:{fraction * 100:.1f}%;'
            f'background:#0072B2"></span></span>'
        )
    return f'{bar}<span style="opacity:.7">{esc(text)}</span>'
