"""Pure rendering: a flow's DAG and a Gantt chart of attempts, as SVG strings.

No engine knowledge: callers pass :class:`GraphView`/:class:`NodeView` values or attempt rows.
For live updates, lay out once (:class:`DagTemplate`, or ``await DotTemplate.create(view)``
when :func:`choose_renderer` says Graphviz is there) and call ``.svg(states)`` per update.
"""

from __future__ import annotations

from nbflow.render.dot import (
    DotTemplate,
    choose_renderer,
    find_dot,
    render_dot_svg,
    run_dot,
    to_dot_source,
)
from nbflow.render.gantt import gantt_svg
from nbflow.render.layout import Layout, count_crossings, layered_layout, topological_layers
from nbflow.render.model import GraphView, NodeView
from nbflow.render.palette import STATE_STYLE, STATES, StateStyle, legend_html, legend_svg
from nbflow.render.svg import DagTemplate, grouped_view, render_dag_svg

__all__ = [
    "STATES",
    "STATE_STYLE",
    "DagTemplate",
    "DotTemplate",
    "GraphView",
    "Layout",
    "NodeView",
    "StateStyle",
    "choose_renderer",
    "count_crossings",
    "find_dot",
    "gantt_svg",
    "grouped_view",
    "layered_layout",
    "legend_html",
    "legend_svg",
    "render_dag_svg",
    "render_dot_svg",
    "run_dot",
    "to_dot_source",
    "topological_layers",
]
