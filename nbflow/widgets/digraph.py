"""The ``graphviz.Digraph`` that ``flow.graph()`` returns, drawn from a ``Structure``.

The same structure and node views as the dashboard's graph (:mod:`nbflow.widgets.views`),
written as Graphviz nodes and edges instead of SVG, so both say the same states.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbflow.render.palette import EDGE_COLOUR, style_for
from nbflow.render.svg import detail_line

if TYPE_CHECKING:
    import graphviz

    from nbflow.state import RunState
    from nbflow.widgets.views import Structure


def to_digraph(structure: Structure, state: RunState | None = None) -> graphviz.Digraph:
    """A ``graphviz.Digraph`` of the structure, nodes styled by ``state`` when given.

    Nodes are rounded boxes, left to right, tasks without upstream in the first column.
    Without ``state`` they show the plain structure: neutral boxes with the name and the
    priority (a group: its number of tasks), no state. With ``state`` each is labelled with
    a state glyph, the name and a detail line (priority, tries, duration, fan-out counter);
    a failed node's tooltip holds its error. Styles come from
    :data:`~nbflow.render.STATE_STYLE`, as in the dashboard.
    """
    import graphviz  # lazily: keeps `import nbflow` fast

    from nbflow.render.dot import sources_first

    g = graphviz.Digraph(
        "nbflow",
        graph_attr={"rankdir": "LR", "nodesep": "0.25", "ranksep": "0.6", "bgcolor": "transparent"},
        node_attr={
            "shape": "box",
            "fontname": "Helvetica",
            "fontsize": "11",
            "margin": "0.15,0.06",
        },
        edge_attr={"color": EDGE_COLOUR, "arrowsize": "0.6", "penwidth": "1.2"},
    )
    ids = {}
    if state is None:
        for i, node in enumerate(structure.view.nodes):
            ids[node.name] = f"n{i}"
            size = structure.groups.get(node.name)
            facts = [f"{len(size):,} tasks"] if size else []
            facts += [f"p={node.priority}"] if node.priority else []
            g.node(
                f"n{i}",
                label="\\n".join([graphviz.escape(node.name), *facts]),
                tooltip=graphviz.escape(node.name),
                **_PLAIN,
            )
    else:
        for i, node in enumerate(structure.nodes(state).values()):
            s = style_for(node.state)
            ids[node.name] = f"n{i}"
            detail = detail_line(node) + (f" · {node.counter}" if node.counter else "")
            g.node(
                f"n{i}",
                label=f"{s.glyph} {graphviz.escape(node.name)}\\n{graphviz.escape(detail)}",
                tooltip=graphviz.escape(f"{node.name}: {node.error or s.label}"),
                **s.dot_attrs(),
                **{"class": f"nbflow-state-{node.state}"},
            )
    for u, v in structure.view.edges:
        g.edge(ids[u], ids[v])
    g.body.append(sources_first(structure.view.names, structure.view.edges, ids))
    return g


#: How ``flow.graph()`` draws a task when no run is given: the structure only, no state.
_PLAIN = {
    "style": "rounded",
    "color": "#6B7280",
    "fontcolor": "#1F2937",
    "penwidth": "1.2",
    "class": "nbflow-task",
}
