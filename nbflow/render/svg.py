"""The flow's DAG as SVG: lay out once (:class:`DagTemplate`), restyle per update as string work.

Every node is ``<g class="nbflow-node nbflow-state-S" data-task=.. data-state=..>`` with a
rect, its name, a detail line and a ``<title>`` tooltip. Colours are presentation attributes
from :data:`~nbflow.render.palette.STATE_STYLE`, so the SVG looks right without CSS, and CSS
(which wins over presentation attributes) can still restyle by class or ``data-state``.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nbflow.render.layout import Layout, layered_layout, topological_layers
from nbflow.render.model import GraphView, NodeView
from nbflow.render.palette import EDGE_COLOUR, FONT_FAMILY, TERMINAL, URGENCY, hatch_pattern
from nbflow.render.palette import style_for as _style

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # not allowed in XML 1.0
_COUNTER = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def esc(text: object) -> str:
    """Escape any value for SVG/XML text or a quoted attribute (control characters dropped)."""
    return html.escape(_CONTROL.sub("", str(text)), quote=True)


def clip(text: str, max_chars: int) -> str:
    """Shorten ``text`` to ``max_chars`` with an ellipsis (unescaped in, unescaped out)."""
    return text if len(text) <= max_chars else text[: max(max_chars - 1, 1)] + "…"


def fmt_duration(seconds: float) -> str:
    """Format seconds compactly: ``0.42s``, ``12.3s``, ``2m05s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def detail_parts(node: NodeView) -> list[str]:
    """What the node's second line says: priority, tries and duration, as far as known;
    for a task waiting for signals, what it waits for (its note)."""
    if node.state == "waiting" and node.note:
        return [node.note]
    parts = []
    if node.priority:
        parts.append(f"p={node.priority}")
    if node.attempts > 1:
        parts.append(f"{node.attempts} tries")
    if node.duration_s is not None:
        parts.append(fmt_duration(node.duration_s))
    return parts


def detail_line(node: NodeView) -> str:
    """The node's second line, e.g. ``p=2 · 3 tries · 1.3s``; the state label when nothing else."""
    return " · ".join(detail_parts(node)) or _style(node.state).label


def fit_detail(node: NodeView, max_chars: int) -> str:
    """The detail line in at most ``max_chars``: whole facts dropped first (the priority, which
    never changes and is in the tooltip), an ellipsis only when one fact alone is too long."""
    parts = detail_parts(node)
    while len(parts) > 1 and len(" · ".join(parts)) > max_chars:
        parts.pop(0)
    return clip(" · ".join(parts) or _style(node.state).label, max_chars)


# Text widths, estimated (no font metrics here): px per character of a node's bold 12.5 px
# name and of its 11 px detail line, and the box's padding around them (glyph column, ends).
_NAME_PX, _DETAIL_PX, _PAD = 7.2, 6.2, 40.0
MIN_NODE_W, MAX_NODE_W = 140.0, 240.0


def fit_node_w(view: GraphView) -> float:
    """One node width for ``view`` that fits every name and a typical detail line.

    The detail line reserved is the longest of ``p=<priority> · 2 tries · 0.00s``: a retried
    task of the highest priority, and of a pending node's note (what a task waiting for
    signals will say: ``waiting for 'approved'``). Clamped to 140..240 px; longer text is
    shortened (names with an ellipsis, detail lines by :func:`fit_detail`).
    """
    widest = 0.0
    for node in view.nodes:
        detail = (f"p={node.priority} · " if node.priority else "") + "2 tries · 0.00s"
        if node.state == "pending" and node.note and len(node.note) >= len(detail):
            detail = node.note + " "  # a character to spare: the fit is floored
        widest = max(widest, _NAME_PX * len(node.name) + 8, _DETAIL_PX * len(detail))
    return min(max(widest + _PAD, MIN_NODE_W), MAX_NODE_W)


@dataclass(frozen=True, slots=True)
class Geometry:
    """A laid-out canvas: node boxes (centre x, centre y, w, h), edge markup, size, transform."""

    width: float
    height: float
    boxes: dict[str, tuple[float, float, float, float]]
    edges_svg: str
    transform: str = ""


def _edge_path(
    start: tuple[float, float],
    end: tuple[float, float],
    bends: Sequence[tuple[float, float]],
    half_w: float,
) -> str:
    # Horizontal tangents everywhere; a bend point becomes a straight run through its layer.
    pts = [start]
    for x, y in bends:
        pts += [(x - half_w, y), (x + half_w, y)]
    pts.append(end)
    d = [f"M{start[0]:.1f},{start[1]:.1f}"]
    for i in range(1, len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        if i % 2 == 0 and i < len(pts) - 1:
            d.append(f"L{x1:.1f},{y1:.1f}")
        else:
            mx = (x0 + x1) / 2
            d.append(f"C{mx:.1f},{y0:.1f} {mx:.1f},{y1:.1f} {x1:.1f},{y1:.1f}")
    return "".join(d)


def python_geometry(view: GraphView, layout: Layout | None = None) -> Geometry:
    """Geometry from the built-in layered layout (computed here when ``layout`` is None).

    Raises:
        ValueError: ``layout`` lacks a node of ``view`` (it was made for another graph).
    """
    lay = layout or layered_layout(view.names, view.edges, node_w=fit_node_w(view))
    missing = next((n for n in view.names if n not in lay.positions), None)
    if missing is not None:
        raise ValueError(f"the layout has no position for task {missing!r}; lay out this view")
    w, h = lay.node_w, lay.node_h
    boxes = {name: (x, y, w, h) for name, (x, y) in lay.positions.items()}
    paths = []
    for u, v in dict.fromkeys(view.edges):
        (xu, yu), (xv, yv) = lay.positions[u], lay.positions[v]
        d = _edge_path((xu + w / 2, yu), (xv - w / 2 - 1.5, yv), lay.routes.get((u, v), ()), w / 2)
        paths.append(f'<path class="nbflow-edge" data-from="{esc(u)}" data-to="{esc(v)}" d="{d}"/>')
    return Geometry(lay.width, lay.height, boxes, "".join(paths))


def _id_prefix(view: GraphView) -> str:
    # Inline SVGs share one id namespace per HTML page; derive ids from the structure so two
    # different flows never collide and the same flow always renders identically.
    h = hashlib.blake2s(repr((view.names, view.edges)).encode(), digest_size=4).hexdigest()
    return f"nbf{h}"


class DagTemplate:
    """A DAG laid out once and restyled many times.

    ``renderer="python"`` uses :func:`layered_layout` (or ``layout`` if given);
    ``renderer="dot"`` runs Graphviz synchronously, which blocks; inside a running event loop
    use ``await DotTemplate.create(view)`` instead. :meth:`svg` only formats strings.

    Raises:
        ValueError: unknown ``renderer``.
        FileNotFoundError: ``renderer="dot"`` and no ``dot`` executable is found.
    """

    def __init__(self, view: GraphView, layout: Layout | None = None, renderer: str = "python"):
        if renderer == "python":
            geometry = python_geometry(view, layout)
        elif renderer == "dot":
            from nbflow.render.dot import dot_geometry_sync

            geometry = dot_geometry_sync(view)
        else:
            raise ValueError(f"unknown renderer {renderer!r}; expected 'python' or 'dot'")
        self._setup(view, geometry)

    def _setup(self, view: GraphView, geometry: Geometry) -> None:
        self.view = view
        self.geometry = geometry
        self._nodes = view.by_name()
        p = _id_prefix(view)
        self._hatch = f"url(#{p}-hatch)"
        g = geometry
        self._head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="nbflow-dag" width="{g.width:.0f}" '
            f'height="{g.height:.0f}" viewBox="0 0 {g.width:.1f} {g.height:.1f}" '
            f'font-family="{esc(FONT_FAMILY)}" role="img" '
            f'aria-label="flow graph with {len(view.nodes)} tasks">'
            f'<defs><marker id="{p}-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerWidth="7" markerHeight="7" orient="auto-start-reverse" '
            f'markerUnits="userSpaceOnUse"><path d="M0,1 L10,5 L0,9 z" fill="{EDGE_COLOUR}"/>'
            f"</marker>{hatch_pattern(f'{p}-hatch')}</defs>"
            "<style>.nbflow-node{cursor:default}.nbflow-node:hover .nbflow-box"
            "{filter:brightness(0.96)}.nbflow-edge{stroke-linecap:round}</style>"
            + (f'<g transform="{g.transform}">' if g.transform else "")
            + f'<g class="nbflow-edges" fill="none" stroke="{EDGE_COLOUR}" stroke-width="1.4" '
            f'marker-end="url(#{p}-arrow)">{g.edges_svg}</g><g class="nbflow-nodes">'
        )
        self._tail = "</g>" + ("</g>" if g.transform else "") + "</svg>"
        # Everything that does not depend on state, per node, formatted once.
        self._static = {}
        for name, (cx, cy, w, h) in geometry.boxes.items():
            x0, y0 = cx - w / 2, cy - h / 2
            label = esc(clip(name, int((w - _PAD) / _NAME_PX)))
            self._static[name] = (x0, y0, w, h, f' data-task="{esc(name)}"', label)
        # Drawn nodes by view: a node whose view did not change since the last drawing (a
        # finished task, a group whose counts stayed) is not formatted again.
        self._drawn: dict[NodeView, str] = {}

    def svg(self, states: Mapping[str, NodeView] | None = None) -> str:
        """Return the SVG with each node drawn from ``states[name]`` (else the template's view).

        Names in ``states`` that are not nodes of the template are ignored (a dashboard may
        track more tasks than are drawn); a changed structure needs a new template.
        """
        states = states or {}
        drawn = self._drawn
        if len(drawn) > 4 * len(self._nodes) + 64:  # bounded: durations of live runs vary
            drawn.clear()
        parts = [self._head]
        for name, base in self._nodes.items():
            node = states.get(name, base)
            markup = drawn.get(node)
            if markup is None:
                markup = drawn[node] = self._node(name, node)
            parts.append(markup)
        parts.append(self._tail)
        return "".join(parts)

    def _node(self, name: str, node: NodeView) -> str:
        x0, y0, w, h, data_task, label = self._static[name]
        s = _style(node.state)
        fill = self._hatch if s.hatch else s.fill
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        detail = detail_line(node)
        # detail_line falls back to the state label: say it once ("succeeded", not twice).
        facts = [s.label] + [part for part in (detail, node.counter) if part and part != s.label]
        tip = f"{name}\n{' · '.join(facts)}" + (f"\n{node.error}" if node.error else "")
        if node.note:
            tip += f"\n{node.note}"
        counter, bar, room = "", "", w - _PAD
        if node.counter:
            counter = (
                f'<text class="nbflow-counter" x="{x0 + w - 10:.1f}" y="{y0 + 33:.1f}" '
                f'text-anchor="end" font-size="11" font-weight="600" fill="{s.text}">'
                f"{esc(node.counter)}</text>"
            )
            room -= 6.5 * len(node.counter) + 6
            m = _COUNTER.match(node.counter) if node.progress is None else None
            frac = min(int(m[1]) / int(m[2]), 1.0) if m and int(m[2]) > 0 else node.progress
            if frac is not None:
                bw = w - 20
                bar = (
                    f'<rect class="nbflow-track" x="{x0 + 10:.1f}" y="{y0 + h - 7:.1f}" '
                    f'width="{bw:.1f}" height="3" rx="1.5" fill="{s.stroke}" fill-opacity="0.18"/>'
                    f'<rect class="nbflow-progress" x="{x0 + 10:.1f}" y="{y0 + h - 7:.1f}" '
                    f'width="{bw * frac:.1f}" height="3" rx="1.5" fill="{s.stroke}"/>'
                )
        progress = f' data-progress="{node.progress:.3f}"' if node.progress is not None else ""
        return (
            f'<g class="nbflow-node nbflow-state-{node.state}"{data_task} '
            f'data-state="{node.state}"{progress}><title>{esc(tip)}</title>'
            f'<rect class="nbflow-box" x="{x0:.1f}" y="{y0:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'rx="8" fill="{fill}" stroke="{s.stroke}" stroke-width="{s.stroke_width}"{dash}/>'
            f'<text class="nbflow-glyph" x="{x0 + 16:.1f}" y="{y0 + 19:.1f}" text-anchor="middle" '
            f'font-size="12" fill="{s.stroke}">{s.glyph}</text>'
            f'<text class="nbflow-name" x="{x0 + 28:.1f}" y="{y0 + 19:.1f}" font-size="12.5" '
            f'font-weight="600" fill="{s.text}">{label}</text>'
            f'<text class="nbflow-detail" x="{x0 + 28:.1f}" y="{y0 + 33:.1f}" font-size="11" '
            f'fill="{s.text}" fill-opacity="0.78">{esc(fit_detail(node, int(room / _DETAIL_PX)))}'
            "</text>"
            f"{counter}{bar}</g>"
        )


def render_dag_svg(view: GraphView, layout: Layout | None = None) -> str:
    """Lay out ``view`` (unless ``layout`` is given) with the built-in layout and draw it.

    Raises:
        CycleError: the edges form a cycle.
    """
    return DagTemplate(view, layout).svg()


def grouped_view(view: GraphView, max_nodes: int = 300, by: str = "auto") -> GraphView:
    """Collapse a big graph into at most ``max_nodes`` group nodes; small graphs come back as is.

    ``by``: ``"group"`` (``NodeView.group``), ``"tag"`` (first tag), ``"level"`` (topological
    level, consecutive levels merged as needed) or ``"auto"`` (group, else tag, else level).
    When keys give more than ``max_nodes`` groups, levels are used. A group shows its most
    urgent member state (:data:`~nbflow.render.palette.URGENCY`) and ``counter="done/total"``.
    Edges between groups are deduplicated, never self-edges; an edge against the groups' order
    (possible with tags) is dropped, so the result stays acyclic.

    Raises:
        ValueError: unknown ``by`` or ``max_nodes < 1``.
    """
    if by not in ("auto", "group", "tag", "level") or max_nodes < 1:
        raise ValueError(f"grouped_view(by={by!r}, max_nodes={max_nodes!r}) is not supported")
    if len(view.nodes) <= max_nodes:
        return view
    layers = topological_layers(view.names, view.edges)
    level = {name: k for k, names in enumerate(layers) for name in names}
    if by == "auto":
        by = "group" if any(n.group for n in view.nodes) else "tag"
        by = "level" if by == "tag" and not any(n.tags for n in view.nodes) else by
    keys = {n.name: n.group or "ungrouped" for n in view.nodes}
    if by == "tag":
        keys = {n.name: n.tags[0] if n.tags else "untagged" for n in view.nodes}
    if by == "level" or len(set(keys.values())) > max_nodes:
        chunk = math.ceil(len(layers) / max_nodes)  # consecutive levels share a group
        span = {k: (k - k % chunk, k - k % chunk + chunk - 1) for k in range(len(layers))}
        name = {k: f"level {a}" if chunk == 1 else f"levels {a}-{b}" for k, (a, b) in span.items()}
        keys = {n: name[k] for n, k in level.items()}
    members: dict[str, list[NodeView]] = {}
    for node in view.nodes:
        members.setdefault(keys[node.name], []).append(node)
    order = sorted(members, key=lambda g: min(level[n.name] for n in members[g]))  # stable
    rank = {g: i for i, g in enumerate(order)}
    nodes = tuple(_group_node(g, members[g]) for g in order)
    edges = {(keys[u], keys[v]): None for u, v in view.edges if rank[keys[u]] < rank[keys[v]]}
    return GraphView(nodes, tuple(edges))


def _group_node(name: str, members: list[NodeView]) -> NodeView:
    state = min((m.state for m in members), key=URGENCY.index)
    failed = [m for m in members if m.state == "failed"]
    error = None
    if failed:
        shown = "; ".join(f"{m.name}: {m.error or 'failed'}" for m in failed[:3])
        error = f"{len(failed)} failed: {shown}" + ("; …" if len(failed) > 3 else "")
    done = sum(m.state in TERMINAL for m in members)
    return NodeView(
        name=name,
        state=state,
        priority=max(m.priority for m in members),
        error=error,
        counter=f"{done}/{len(members)}",
    )
