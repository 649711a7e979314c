"""Static HTML summary of a run, for frontends where widgets do not render (nbviewer, GitHub).

``Run._repr_html_`` returns :func:`run_summary_html`: the dashboard's status header (with its
``data-nbflow-status`` marker), the DAG as inline SVG, the Gantt chart of every attempt and
the task table, whose failed rows open to their tracebacks. No JavaScript and no widgets,
only inline styles, so it survives sanitising renderers and saved notebooks. The DAG uses a
layout the dashboard already made for this flow when there is one (Graphviz's, if it ran),
else the built-in layout, so no subprocess runs while a cell's output is being formatted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import Run
    from .widgets.views import Structure

#: Runs with more attempts than this get no Gantt chart in the summary (it would be huge).
SUMMARY_GANTT_ROWS = 1000


def run_summary_html(
    run: Run, structure: Structure | None = None, max_rows: int = 200, dag: str | None = None
) -> str:
    """Return the summary of ``run`` as one self-contained HTML ``<div>``.

    ``structure`` is the drawn graph (default: from the run's plan, grouped above 300
    tasks); ``max_rows`` caps the task table (the most urgent tasks are listed first);
    ``dag`` is the Graph panel when the caller has just drawn it for the same state.
    """
    from .widgets import layouts, panels
    from .widgets.views import Structure

    state = run.state
    plan = getattr(run, "_plan", None)
    if structure is None:
        structure = layouts.structure_for(plan) if plan is not None else Structure.from_state(state)
    template = layouts.best_cached(structure) or layouts.python_template(structure)[0]
    title = state.flow or (plan.flow_name if plan is not None else "")
    scope = panels.scope_of(state)
    parts = [
        panels.header_html(state, title, len(structure.names)),
        dag if dag is not None else panels.dag_html(template, structure, state, scope),
    ]
    if state.rows and len(state.rows) <= SUMMARY_GANTT_ROWS:
        timeline = panels.timeline_html(state, structure, "task", scope)
        parts.append(_section("Timeline", timeline, True))
    elif state.rows:
        parts.append(panels.empty(f"Timeline: {len(state.rows):,} attempts; see run.timeline()."))
    if state.tasks:
        table = panels.table_html(state, max_rows, structure.priorities, expanded=None)
        parts.append(_section(f"Tasks ({len(state.tasks)})", table, run.status == "failed"))
    return (
        '<div class="nbflow-summary" style="border:1px solid rgba(127,127,127,.28);'
        f'border-radius:6px;padding:0 6px 6px;margin:4px 0">{"".join(parts)}</div>'
    )


def _section(title: str, body: str, open_: bool) -> str:
    from .widgets.panels import esc

    return (
        f'<details{" open" if open_ else ""} style="margin:6px 4px 0">'
        '<summary style="cursor:pointer;font-weight:600;font-size:13px;padding:4px 2px">'
        f"{esc(title)}</summary>{body}</details>"
    )
