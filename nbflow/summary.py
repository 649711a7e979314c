"""Static HTML summary of a run, for frontends where widgets do not render (nbviewer, GitHub)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import Run

_COLOURS = {
    "succeeded": "#009E73",
    "cached": "#56B4E9",
    "failed": "#D55E00",
    "running": "#E69F00",
    "retrying": "#F0E442",
    "skipped": "#999999",
    "upstream_failed": "#CC79A7",
    "cancelled": "#666666",
    "pending": "#DDDDDD",
    "queued": "#BBBBBB",
}


def run_summary_html(run: Run) -> str:
    """A compact HTML table: status line, counts per state, and one row per task."""
    state = run.state
    counts = state.counts()
    badges = " ".join(
        f'<span style="background:{_COLOURS.get(k, "#ccc")};color:#000;padding:1px 6px;'
        f'border-radius:8px;margin-right:4px">{html.escape(k)}: {v}</span>'
        for k, v in sorted(counts.items())
    )
    rows = []
    for name, record in state.tasks.items():
        duration = f"{record.duration:.3f}s" if record.duration is not None else ""
        error = (
            html.escape(f"{type(record.error).__name__}: {record.error}") if record.error else ""
        )
        rows.append(
            f"<tr><td>{html.escape(name)}</td>"
            f'<td><span style="color:{_COLOURS.get(record.state.value, "#000")}">&#9679;</span> '
            f"{record.state.value}</td><td>{record.attempts}</td>"
            f"<td>{html.escape(record.worker or '')}</td>"
            f"<td>{duration}</td><td>{error}</td></tr>"
        )
    return (
        f'<div class="nbflow-summary" data-nbflow-status="{state.status.value}">'
        f"<b>{html.escape(state.flow)}</b> run <code>{html.escape(state.run_id)}</code>: "
        f"<b>{state.status.value}</b> in {state.duration:.2f}s<br>{badges}"
        "<table><thead><tr><th>task</th><th>state</th><th>attempts</th><th>worker</th>"
        f"<th>duration</th><th>error</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
