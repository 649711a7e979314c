"""HTML fragments of the dashboard and the static summary: header, task table, panel frames.

Pure string functions of a :class:`~nbflow.state.RunState`. Styles are inline (no ``<style>``
blocks), so a fragment looks the same inside an ipywidgets ``HTML``, in a sanitised notebook
output and on nbviewer; colours come from the one state palette, text colours are inherited,
so light and dark themes both work.

The header's root element is the run's stable status marker that tests and tools can wait
for: ``<div class="nbflow-status" data-nbflow-status="running|succeeded|failed|cancelled"
data-done=.. data-total=..>``. A run the store could not record carries, inside it,
``<div class="nbflow-unrecorded">`` with the store's error.
"""

from __future__ import annotations

import functools
import html
import re
from collections import Counter
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from nbflow.render import DagTemplate, gantt_svg
from nbflow.render.palette import FONT_FAMILY, STATES, TERMINAL, URGENCY, style_for
from nbflow.render.svg import fmt_duration
from nbflow.widgets import logview
from nbflow.widgets.tracebacks import user_traceback
from nbflow.widgets.views import (
    Structure,
    counter,
    counts_of,
    element_errors_text,
    error_text,
    gantt_rows,
    now_t,
    partial,
    progress_of,
    shown_state,
)

if TYPE_CHECKING:
    from nbflow.state import RunState, TaskRecord

#: Tables of bigger runs list this many tasks, the most urgent first.
MAX_ROWS = 200

#: Order of the progress bar's segments, left to right (finished work first).
_SEGMENTS = (
    "succeeded",
    "partial",
    "cached",
    "skipped",
    "failed",
    "upstream_failed",
    "cancelled",
    "running",
    "retrying",
    "queued",
    "waiting",
)
_FAINT = "rgba(127,127,127,.16)"
# JupyterLab's error colour (right for its light and dark themes), else a dark vermillion.
_ERROR = "var(--jp-error-color1, #B3470B)"
_RULE = "rgba(127,127,127,.22)"
_RUN_STYLE = {"pending": "pending", "running": "running", "succeeded": "succeeded"}


def esc(text: object) -> str:
    """Escape for HTML text and quoted attributes."""
    return html.escape(str(text), quote=True)


def counts(state: RunState) -> Counter[str]:
    """Number of tasks per state name (missing states count 0).

    Counts the ``TaskState`` members themselves: they are ``str`` subclasses that hash and
    compare like their names, and reading ``.value`` on 2,000 records costs more than the
    count.
    """
    return Counter(counts_of(state))  # a copy: callers may change theirs


def chip(state: str, text: str, title: str = "") -> str:
    """A small rounded label in a state's colours, e.g. ``✓ 5 succeeded``."""
    s = style_for(state)
    border = "dashed" if s.dash else "solid"
    tip = f' title="{esc(title)}"' if title else ""
    return (
        f'<span class="nbflow-chip" data-chip="{esc(state)}"{tip} style="display:inline-flex;'
        f"align-items:center;gap:4px;background:{s.fill};color:{s.text};border:1px {border} "
        f"{s.stroke};border-radius:6px;padding:0 7px;font-size:11.5px;line-height:19px;"
        f'white-space:nowrap"><span style="color:{s.stroke}">{s.glyph}</span>{esc(text)}</span>'
    )


def header_html(state: RunState, title: str | None = None, total: int | None = None) -> str:
    """The status header: flow name, status pill, elapsed time, segmented progress, counts.

    Its root carries the status marker (see the module docstring). ``total`` defaults to the
    number of tasks in the state (which is 0 until the run has started).
    """
    status = state.status.value
    n = counts(state)
    if state.waiting:  # queued tasks that wait for signals are counted apart
        waiting = sum(1 for t in list(state.waiting) if state.tasks[t].state == "queued")
        n["queued"] -= waiting
        n["waiting"] += waiting
    total = len(state.tasks) if total is None else total
    done = sum(n[k] for k in TERMINAL)
    pill = style_for("cancelled" if status == "cancelled" else _RUN_STYLE.get(status, status))
    name = title or state.flow or "flow"
    run_id = state.run_id[:8] or "not started"
    elapsed = fmt_duration(max(0.0, now_t(state) - (state.started_t or 0.0)))
    segments = "".join(
        f'<div data-segment="{k}" title="{n[k]} {esc(style_for(k).label)}" '
        f'style="flex:{n[k]} 0 0;background:{style_for(k).stroke}"></div>'
        for k in _SEGMENTS
        if n[k]
    )
    rest = max(total - sum(n[k] for k in _SEGMENTS), 0)
    if rest or not segments:
        segments += f'<div data-segment="pending" style="flex:{rest or 1} 0 0"></div>'
    chips = " ".join(chip(k, f"{n[k]} {style_for(k).label}") for k in STATES if n[k])
    return (
        f'<div class="nbflow-status" data-nbflow-status="{esc(status)}" '
        f'data-flow="{esc(state.flow)}" data-run-id="{esc(state.run_id)}" data-done="{done}" '
        f'data-total="{total}" style="font-family:{esc(FONT_FAMILY)};line-height:1.45;'
        f'padding:10px 12px 8px;color:inherit">'
        '<div style="display:flex;align-items:center;gap:10px;flex-wrap:wrap">'
        f'<span style="font-weight:650;font-size:15px">{esc(name)}</span>'
        f'<span class="nbflow-pill" style="background:{pill.fill};color:{pill.text};'
        f"border:1px solid {pill.stroke};border-radius:999px;padding:0 10px;font-size:11px;"
        f'font-weight:650;letter-spacing:.04em;text-transform:uppercase;line-height:20px">'
        f'<span style="color:{pill.stroke}">{pill.glyph}</span> {esc(status)}</span>'
        f'<span style="opacity:.62;font-size:12px">run <code style="font-size:11.5px">'
        f"{esc(run_id)}</code> · {elapsed}</span>"
        f'<span style="margin-left:auto;font-size:12.5px"><b>{done}</b>'
        f'<span style="opacity:.62"> / {total} tasks done</span></span></div>'
        f'<div class="nbflow-runbar" role="progressbar" aria-valuemin="0" '
        f'aria-valuemax="{total}" aria-valuenow="{done}" style="display:flex;gap:1px;'
        f'height:8px;border-radius:4px;overflow:hidden;background:{_FAINT};margin:8px 0 7px">'
        f"{segments}</div>"
        f'<div style="display:flex;gap:6px;flex-wrap:wrap">{chips}</div>'
        + (
            f'<div style="margin-top:6px;font-size:12px;color:{_ERROR}">{esc(state.error)}</div>'
            if state.error
            else ""
        )
        + (
            f'<div class="nbflow-unrecorded" style="margin-top:6px;font-size:12px;'
            f'color:{_ERROR}">⚠ NOT recorded in the store: {esc(state.store_error)}. Its '
            "results are in this Run; resume and the cache cannot use what was lost.</div>"
            if state.store_error
            else ""
        )
        + "</div>"
    )


def _rows(state: RunState, max_rows: int) -> tuple[list[TaskRecord], dict[str, int]]:
    """The records to list, in definition order, and the counts per state of the rest.

    Up to ``max_rows`` tasks: all of them. A bigger run lists only its tasks that are not
    plainly done (anything but succeeded, cached or skipped), the most urgent first when even
    those are too many: a long list of green rows helps nobody, the failures do.
    """
    records = list(state.tasks.values())
    if len(records) <= max_rows:
        return records, {}
    n = counts(state)
    # A partial fan-out task (failed elements allowed) is not plainly done: it is listed
    # (it counts as "partial", not in _QUIET).
    if all(k in _QUIET for k in n):
        return [], {str(k): v for k, v in n.items()}  # a big run's usual end: count only
    shown = [r for r in records if r.state not in _QUIET or partial(r)]
    if len(shown) > max_rows:
        shown = sorted(shown, key=lambda r: _URGENT[shown_state(r)])[:max_rows]  # stable
    keep = {id(r) for r in shown}
    hidden = Counter(r.state for r in records if id(r) not in keep)
    return [r for r in records if id(r) in keep], {str(k): v for k, v in hidden.items()}


_QUIET = frozenset({"succeeded", "cached", "skipped"})
_URGENT = {state: i for i, state in enumerate(URGENCY)}


def _error_cell(record: TaskRecord) -> str:
    text = error_text(record.error)
    if record.state == "failed" and text:
        return f'<span style="color:{_ERROR}">{esc(text)}</span>'
    elements = element_errors_text(record)
    if elements:  # a fan-out task whose failed elements were allowed (or are being retried)
        return f'<span class="nbflow-element-errors" style="color:{_ERROR}">{esc(elements)}</span>'
    if record.reason:
        return f'<span style="opacity:.7">{esc(record.reason)}</span>'
    if text:  # a retrying task's last error
        return f'<span style="opacity:.8">{esc(text)}</span>'
    return ""


#: A partial fan-out task's row opens to the tracebacks of this many failed elements.
MAX_ELEMENT_TRACEBACKS = 3


def _traceback_row(record: TaskRecord) -> str | None:
    """The row under a task's that opens to its traceback: a failed task's own, or those of
    the first failed elements of a fan-out task (one with ``allow_partial`` succeeds with
    them); None when there is none."""
    if record.state == "failed" and record.traceback:
        summary, body = f"Traceback of {esc(record.name)}", esc(user_traceback(record.traceback))
    elif record.element_tracebacks:
        shown = sorted(record.element_tracebacks)[:MAX_ELEMENT_TRACEBACKS]
        n = record.elements_failed
        summary = f"Traceback{'s' if len(shown) > 1 else ''} of " + ", ".join(
            f"{esc(record.name)}[{i}]" for i in shown
        )
        if n > len(shown):
            summary += f" ({n} elements failed; <code>run.element_errors</code> has them all)"
        body = esc(
            "\n\n".join(
                f"{record.element_label(i)}\n{user_traceback(record.element_tracebacks[i])}"
                for i in shown
            )
        )
    else:
        return None
    return (
        f'<tr class="nbflow-traceback-row" data-row-task="{esc(record.name)}">'
        '<td colspan="6" style="padding:0 10px 6px"><details class="nbflow-traceback">'
        f'<summary style="cursor:pointer;font-size:12px;opacity:.75">{summary}</summary>'
        '<pre style="margin:6px 0 2px;max-height:340px;'
        "overflow:auto;font-size:11.5px;line-height:1.45;padding:8px 10px;border-radius:6px;"
        f'background:{_FAINT};white-space:pre">{body}</pre></details></td></tr>'
    )


def table_html(
    state: RunState,
    max_rows: int = MAX_ROWS,
    priorities: dict[str, int] | None = None,
    expanded: Collection[str] | None = (),
    depth: int = 0,
) -> str:
    """The task table: state, tries, worker, duration and error per task.

    A running task that reports its progress has a bar in its State cell. A task that
    printed or logged something gets a full-width ``<details>`` under its row that opens to
    its log (drawn for the ``expanded`` tasks only; None: a static page, where the row only
    counts the lines; see :mod:`nbflow.widgets.logview`), and a failed task one that opens
    to its traceback (frames of nbflow itself left out), a fan-out task with failed
    elements one that opens to theirs; a subflow task's, one ``<details>`` per child run it
    started, which opens to that run's header and table (nested up to :data:`MAX_NESTING`
    deep; ``depth``: how deep this table is). A task waiting for signals shows as
    *waiting*, a loop its iteration. Runs with more than ``max_rows`` tasks list the most
    urgent ``max_rows`` and count the rest by state.
    """
    now = now_t(state)
    records, hidden = _rows(state, max_rows)
    if not records and hidden:
        more = ", ".join(f"{n:,} {style_for(k).label}" for k, n in sorted(hidden.items()))
        return (
            f'<div style="padding:10px;font-size:12.5px;font-family:{esc(FONT_FAMILY)}">'
            f"{sum(hidden.values()):,} tasks: {esc(more)}. Nothing failed or is still going; "
            "<code>run.states</code> lists every task.</div>"
        )
    th = 'style="text-align:left;padding:5px 10px;font-weight:600;opacity:.7;white-space:nowrap"'
    out = [
        f'<table class="nbflow-table" style="border-collapse:collapse;width:100%;'
        f'font-size:12.5px;font-family:{esc(FONT_FAMILY)}"><thead>'
        f'<tr style="border-bottom:1px solid {_RULE}">'
        + "".join(f"<th {th}>{h}</th>" for h in ("Task", "State", "Tries", "Worker", "Duration"))
        + f'<th {th} width="40%">Error</th></tr></thead><tbody>'
    ]
    td = 'style="padding:5px 10px;vertical-align:top;white-space:nowrap"'
    for r in records:
        value = str(r.state)
        shown = shown_state(r)  # "partial" for a fan-out task with failed elements allowed
        if value == "queued" and r.name in state.waiting:
            shown = "waiting"  # for its signals (nbflow.waits)
        duration = r.duration
        if duration is None and r.started_t is not None:
            duration = max(0.0, now - r.started_t)
        extra = counter(r)
        if r.name in state.iterations:
            extra = f"iteration {state.iterations[r.name]}"
        priority = (priorities or {}).get(r.name, 0)
        name = esc(r.name) + (
            f' <span style="opacity:.55;font-size:11px;font-weight:400">p={priority}</span>'
            if priority
            else ""
        )
        out.append(
            f'<tr class="nbflow-row" data-row-task="{esc(r.name)}" data-row-state="{value}" '
            f'style="border-top:1px solid {_RULE}"><td {td}><span style="font-weight:600">'
            f"{name}</span></td><td {td}>{chip(shown, style_for(shown).label)}"
            + (f' <span style="opacity:.7">{esc(extra)}</span>' if extra else "")
            + (logview.progress_cell(*progress) if (progress := progress_of(state, r)) else "")
            + f"</td><td {td}>{r.attempts or ''}</td><td {td}>{esc(r.worker or '')}</td>"
            f"<td {td}>{fmt_duration(duration) if duration is not None else ''}</td>"
            f'<td style="padding:5px 10px;vertical-align:top">{_error_cell(r)}</td></tr>'
        )
        if state.logs and r.name in state.logs:
            out.append(logview.log_row(state, r, None if expanded is None else r.name in expanded))
        if (tb := _traceback_row(r)) is not None:
            out.append(tb)
        if r.name in state.children and depth < MAX_NESTING:
            out.append(_subflow_row(r.name, state.children[r.name], max_rows, depth))
    out.append("</tbody></table>")
    if hidden:
        more = ", ".join(f"{n} {style_for(k).label}" for k, n in sorted(hidden.items()))
        out.append(
            f'<div style="padding:6px 10px;font-size:12px;opacity:.7">{sum(hidden.values())} '
            f"more tasks not listed ({esc(more)}); <code>run.states</code> has them all.</div>"
        )
    return "".join(out)


#: Subflow tables nest this deep at most (a recursion goes deeper: its runs are counted).
MAX_NESTING = 4


def _subflow_row(task: str, runs: list[RunState | None], max_rows: int, depth: int) -> str:
    """The row under a subflow task: each child run it started, collapsed to one line (its
    flow, id, status and done/total) that opens to its header and task table."""
    parts = []
    for i, child in enumerate(runs, 1):
        if child is None:  # read back from the store: the child run is its own run there
            continue
        n = counts(child)
        done = sum(n[k] for k in TERMINAL)
        label = f" {i} of {len(runs)}" if len(runs) > 1 else ""
        s = style_for(child.status.value if child.status.value in _RUN_STYLE else "cancelled")
        summary = (
            f'<summary style="cursor:pointer;font-size:12px"><span style="color:{s.stroke}">'
            f"{s.glyph}</span> subflow <b>{esc(child.flow)}</b>{label} · run "
            f"<code>{esc(child.run_id[:8])}</code> · {esc(child.status.value)} · {done}/"
            f"{len(child.tasks)} done</summary>"
        )
        inner = (
            table_html(child, max_rows, None, None, depth=depth + 1)
            if child.tasks
            else empty("The child run has not started yet.")
        )
        parts.append(
            f'<div data-row-task="{esc(task)}/subflow/{i}"><details class="nbflow-subflow" '
            f'data-subflow="{esc(child.flow)}" data-child-run="{esc(child.run_id)}" '
            f'data-depth="{depth + 1}">{summary}<div style="margin:4px 0 6px 14px;'
            f'padding-left:8px;border-left:2px solid {_RULE}">{inner}</div></details></div>'
        )
    return (
        f'<tr class="nbflow-subflow-row" data-row-task="{esc(task)}/subflow">'
        f'<td colspan="6" style="padding:0 10px 6px 22px">{"".join(parts)}</td></tr>'
    )


@functools.cache
def legend(states: Iterable[str] = STATES) -> str:
    """A one-line legend: a small chip (glyph and colours) per state."""
    items = "".join(
        chip(s, style_for(s).label)
        .replace("font-size:11.5px", "font-size:10.5px")
        .replace("padding:0 7px", "padding:0 5px")
        for s in states
    )
    return f'<div class="nbflow-legend" style="display:flex;flex-wrap:wrap;gap:4px">{items}</div>'


def frame(body: str, max_height: int = 560, note: str = "") -> str:
    """A scrollable panel around an SVG or table, with an optional muted note above it."""
    top = (
        f'<div style="font-size:12px;opacity:.65;padding:2px 4px 6px;font-family:'
        f'{esc(FONT_FAMILY)}">{note}</div>'
        if note
        else ""
    )
    return (
        f'{top}<div class="nbflow-frame" style="overflow:auto;max-height:{max_height}px;'
        f'padding:4px 2px">{body}</div>'
    )


def empty(text: str) -> str:
    """A quiet placeholder for a panel with nothing to show yet."""
    return (
        f'<div style="padding:18px 12px;opacity:.6;font-size:12.5px;font-family:'
        f'{esc(FONT_FAMILY)}">{esc(text)}</div>'
    )


#: Beyond this many attempts the timeline is not drawn (``run.timeline()`` has them all).
MAX_GANTT_ROWS = 5000


def scope_of(state: RunState | None) -> str:
    """A suffix that makes SVG ids unique to one run's drawings on a page (see below)."""
    return f"-{state.run_id[:8]}" if state is not None and state.run_id else ""


# SVG ids (arrow markers, hatch patterns) live in one namespace per HTML page, and
# ``url(#id)`` resolves to the first element with that id, even inside a hidden tab or a
# closed <details>, where Chrome draws nothing: arrowheads and hatching then vanish from
# another drawing. The renderers derive ids from the graph's shape (the DAG) or use a fixed
# one (the Gantt), so two dashboards of one flow on a page share them; we add the run's id.
_DAG_ID = re.compile(r'id="(nbf[0-9a-f]+)-arrow"')


def dag_html(
    template: DagTemplate, structure: Structure, state: RunState | None, scope: str = ""
) -> str:
    """The Graph panel: the DAG (restyled from ``state``), a note when grouped, the legend.

    ``scope`` is appended to the SVG's ids (default: none; see :func:`scope_of`).
    """
    if state is None or not state.tasks:  # not started: every node as laid out, pending
        from nbflow.widgets.layouts import pending_svg

        svg = pending_svg(template, structure)
    else:
        svg = template.svg(structure.nodes(state))
    found = _DAG_ID.search(svg, 0, 2000) if scope else None  # the <defs> come first
    if found:
        svg = svg.replace(f"{found[1]}-", f"{found[1]}{scope}-")
    note = ""
    if structure.grouped:
        note = (
            f"{len(structure.names):,} tasks drawn as {len(structure.groups)} groups; "
            "each shows its most urgent state and done/total."
        )
    # Shrink a wide graph to the output's width, but not below 60 % (text stays readable);
    # wider still, the frame scrolls.
    width = template.geometry.width
    svg = svg.replace(
        "<svg ", f'<svg style="max-width:100%;height:auto;min-width:{0.6 * width:.0f}px" ', 1
    )
    return frame(svg, 560, note) + f'<div style="padding:6px 4px 2px">{legend()}</div>'


def timeline_html(
    state: RunState, structure: Structure, lane_by: str = "task", scope: str = ""
) -> str:
    """The Timeline panel: a Gantt chart of every attempt, one lane per task or per worker.

    ``scope`` is appended to the SVG's ids (see :func:`scope_of`).

    When the flow is drawn grouped, ``lane_by="task"`` gives one lane per group instead
    (its tasks' bars packed onto the lane's sub-tracks).
    """
    rows = gantt_rows(state)
    if not rows:
        return empty("No attempts yet: bars appear as tasks start.")
    if len(rows) > MAX_GANTT_ROWS:
        return empty(f"{len(rows):,} attempts are too many to draw; use run.timeline() instead.")
    if lane_by == "task" and structure.grouped:
        group = {n: g for g, members in structure.groups.items() for n in members}
        for row, attempt in zip(rows, state.rows, strict=False):
            row["worker"] = group.get(attempt.base or attempt.task, "other")
        lane_by = "worker"
    now = now_t(state) if state.finished_t is None else None
    svg = gantt_svg(rows, lane_by=lane_by, width=920, now=now)
    # Shrink to the output's width rather than hide the end of the run behind a scrollbar.
    svg = svg.replace("<svg ", '<svg style="max-width:100%;height:auto" ', 1)
    if scope:
        svg = svg.replace("nbflow-gantt-hatch", f"nbflow-gantt-hatch{scope}")
    return frame(svg, 520)
