"""Tests of nbflow.render: model, palette, layout, DAG SVG and grouping."""

from __future__ import annotations

import ast
import itertools
import random
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from nbflow.errors import CycleError, DefinitionError
from nbflow.render import (
    STATE_STYLE,
    STATES,
    DagTemplate,
    GraphView,
    NodeView,
    count_crossings,
    grouped_view,
    layered_layout,
    legend_html,
    legend_svg,
    render_dag_svg,
    topological_layers,
)

NS = "{http://www.w3.org/2000/svg}"
RENDER = Path(__file__).parent.parent / "nbflow" / "render"


def random_dag(n: int, layers: int = 40, fan_in: int = 2, seed: int = 1):
    rnd = random.Random(seed)
    names = [f"t{i}" for i in range(n)]
    per = max(n // layers, 1)
    edges = []
    for i in range(per, n):
        k = i // per
        for _ in range(fan_in):
            edges.append((names[rnd.randrange(max(0, (k - 3) * per), k * per)], names[i]))
    return names, edges


def view_of(names, edges, state="pending") -> GraphView:
    return GraphView(tuple(NodeView(n, state) for n in names), tuple(edges))


def nodes_of(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {
        g.get("data-task"): g
        for g in root.iter(f"{NS}g")
        if "nbflow-node" in (g.get("class") or "").split()
    }


def box(g: ET.Element) -> tuple[str, str, str, str]:
    r = g.find(f"{NS}rect")
    return r.get("x"), r.get("y"), r.get("width"), r.get("height")


# --- model and palette -------------------------------------------------------------------


def test_nodeview_rejects_unknown_state():
    with pytest.raises(ValueError, match="unknown state 'done'"):
        NodeView("a", "done")


def test_nodeview_stores_enum_state_as_plain_string():
    from enum import StrEnum

    class S(StrEnum):
        RUNNING = "running"

    node = NodeView("a", S.RUNNING)
    assert type(node.state) is str and node.state == "running"


def test_graphview_rejects_duplicates_and_dangling_edges():
    with pytest.raises(DefinitionError, match="two nodes are named 'a'"):
        GraphView((NodeView("a", "pending"), NodeView("a", "pending")), ())
    with pytest.raises(DefinitionError, match="names 'zz'"):
        GraphView((NodeView("a", "pending"),), (("a", "zz"),))


def test_palette_covers_every_state_and_not_by_colour_alone():
    assert set(STATE_STYLE) == set(STATES)
    ok, bad = STATE_STYLE["succeeded"], STATE_STYLE["failed"]
    assert ok.glyph != bad.glyph and (ok.hatch, ok.stroke_width) != (bad.hatch, bad.stroke_width)
    assert STATE_STYLE["running"].stroke_width > STATE_STYLE["pending"].stroke_width
    assert len({s.glyph for s in STATE_STYLE.values()}) == len(STATES)


def test_legends_show_every_state():
    root = ET.fromstring(legend_svg())
    items = [g for g in root.iter(f"{NS}g") if g.get("class") == "nbflow-legend-item"]
    assert [g.get("data-state") for g in items] == list(STATES)
    html = legend_html()
    assert all(f'data-state="{s}"' in html for s in STATES)


def test_render_imports_nothing_outside_render_but_errors():
    for path in RENDER.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only: lazy imports inside functions are fine
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for mod in mods:
                assert not mod.startswith(("ipywidgets", "pandas", "networkx", "graphviz")), path
                if mod.startswith("nbflow"):
                    assert mod.startswith("nbflow.render") or mod == "nbflow.errors", (path, mod)


# --- layout ---------------------------------------------------------------------------------


def test_layout_edges_go_to_higher_layers():
    names, edges = random_dag(300)
    lay = layered_layout(names, edges)
    where = {n: k for k, layer in enumerate(lay.layers) for n in layer}
    assert sorted(where) == sorted(names)
    assert all(where[u] < where[v] for u, v in edges)
    assert all(lay.positions[u][0] < lay.positions[v][0] for u, v in edges)


def test_layout_is_deterministic():
    names, edges = random_dag(200, seed=7)
    a, b = layered_layout(names, edges), layered_layout(list(names), list(edges))
    assert a.positions == b.positions and a.layers == b.layers and a.routes == b.routes


def test_layout_reduces_crossings_on_crafted_example():
    names = ["a", "b", "c", "x", "y", "z"]
    edges = [("a", "z"), ("b", "y"), ("c", "x"), ("a", "y")]
    before = count_crossings(layered_layout(names, edges, sweeps=0).layers, edges)
    after = count_crossings(layered_layout(names, edges).layers, edges)
    assert before >= 3 and after < before and after == 0


def test_layout_never_worse_than_input_order():
    names, edges = random_dag(300, seed=3)
    before = count_crossings(layered_layout(names, edges, sweeps=0).layers, edges)
    assert count_crossings(layered_layout(names, edges).layers, edges) <= before


def test_layout_nodes_do_not_overlap():
    names, edges = random_dag(150, seed=5)
    lay = layered_layout(names, edges)
    for layer in lay.layers:
        ys = [lay.positions[n][1] for n in layer]
        assert all(b - a >= lay.node_h for a, b in itertools.pairwise(ys))


@pytest.mark.parametrize(
    ("names", "edges"),
    [([], []), (["solo"], []), (["a", "b", "lonely"], [("a", "b")])],
    ids=["empty", "single", "disconnected"],
)
def test_layout_small_and_disconnected(names, edges):
    lay = layered_layout(names, edges)
    assert sorted(lay.positions) == sorted(names)
    assert lay.width > 0 and lay.height > 0
    assert ET.fromstring(render_dag_svg(view_of(names, edges))) is not None


def test_layout_long_edges_get_bend_points():
    lay = layered_layout(["a", "b", "c", "d"], [("a", "b"), ("b", "c"), ("c", "d"), ("a", "d")])
    assert len(lay.routes[("a", "d")]) == 2


def test_layout_cycle_raises_with_the_cycle():
    with pytest.raises(CycleError) as err:
        layered_layout(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])
    assert err.value.cycle in (["b", "c", "b"], ["c", "b", "c"])


def test_topological_layers_keeps_input_order():
    assert topological_layers(["c", "a", "b"], [("a", "b")]) == [["c", "a"], ["b"]]


def test_layout_5000_nodes_runs():
    names, edges = random_dag(5000, layers=50)
    lay = layered_layout(names, edges)
    assert len(lay.positions) == 5000


# --- DAG SVG and templates ----------------------------------------------------------------


def mixed_view() -> GraphView:
    nodes = (
        NodeView("load", "succeeded", duration_s=1.25),
        NodeView("a<b & \"c'", "running", priority=3, attempts=2),
        NodeView("fan", "running", counter="37/100"),
        NodeView("boom", "failed", error="ValueError: <bad> & worse"),
        NodeView("end", "pending"),
    )
    edges = (("load", "a<b & \"c'"), ("load", "fan"), ("fan", "boom"), ("boom", "end"))
    return GraphView(nodes, (*edges, ("a<b & \"c'", "end")))


def test_dag_svg_one_group_per_node_with_state():
    view = mixed_view()
    svg = render_dag_svg(view)
    nodes = nodes_of(svg)  # parsing proves the escaping kept it well-formed XML
    assert {n: g.get("data-state") for n, g in nodes.items()} == {
        n.name: n.state for n in view.nodes
    }
    assert len(ET.fromstring(svg).findall(f".//{NS}path[@class='nbflow-edge']")) == 5


def test_dag_svg_escapes_text():
    svg = render_dag_svg(mixed_view())
    assert "a<b & \"c'" in nodes_of(svg)
    assert "a&lt;b &amp; &quot;c&#x27;" in svg and '<b & "' not in svg


def test_dag_svg_counter_progress_and_tooltip():
    nodes = nodes_of(render_dag_svg(mixed_view()))
    fan = nodes["fan"]
    assert "37/100" in "".join(fan.itertext())
    track = fan.find(f"{NS}rect[@class='nbflow-track']")
    bar = fan.find(f"{NS}rect[@class='nbflow-progress']")
    assert float(bar.get("width")) == pytest.approx(0.37 * float(track.get("width")), abs=0.2)
    assert "ValueError: <bad> & worse" in nodes["boom"].find(f"{NS}title").text
    assert "2 tries" in "".join(nodes["a<b & \"c'"].itertext())


def test_dag_svg_tooltip_says_each_fact_once():
    nodes = nodes_of(render_dag_svg(mixed_view()))
    tips = {name: g.find(f"{NS}title").text for name, g in nodes.items()}
    assert tips["end"] == "end\npending"  # no detail: the state once, not "pending · pending"
    assert tips["load"] == "load\nsucceeded · 1.2s"
    assert tips["fan"] == "fan\nrunning · 37/100"
    assert tips["boom"] == "boom\nfailed\nValueError: <bad> & worse"


def test_template_restyle_keeps_geometry():
    view = mixed_view()
    tpl = DagTemplate(view)
    before = nodes_of(tpl.svg({}))
    after = nodes_of(
        tpl.svg(
            {
                "end": replace(view.by_name()["end"], state="failed", error="late"),
                "not-drawn": NodeView("not-drawn", "running"),  # ignored
            }
        )
    )
    assert after["end"].get("data-state") == "failed" and "late" in after["end"][0].text
    assert before["end"].get("data-state") == "pending"
    assert {n: box(g) for n, g in before.items()} == {n: box(g) for n, g in after.items()}


def test_template_rejects_layout_of_another_graph():
    other = layered_layout(["load"], [])
    with pytest.raises(ValueError, match="the layout has no position for task"):
        render_dag_svg(mixed_view(), other)


def test_template_rejects_unknown_renderer():
    with pytest.raises(ValueError, match="unknown renderer 'svgwrite'"):
        DagTemplate(mixed_view(), renderer="svgwrite")


# --- grouped_view --------------------------------------------------------------------------


def test_grouped_view_small_graph_unchanged():
    view = mixed_view()
    assert grouped_view(view) is view


def test_grouped_view_by_level_bounds_groups_and_counts():
    names, edges = random_dag(1000, layers=500, fan_in=1)
    rnd = random.Random(2)
    states = [rnd.choice(STATES) for _ in names]
    view = GraphView(
        tuple(NodeView(n, s) for n, s in zip(names, states, strict=True)), tuple(edges)
    )
    g = grouped_view(view, max_nodes=300)
    assert 1 < len(g.nodes) <= 300
    totals = [tuple(map(int, n.counter.split("/"))) for n in g.nodes]
    assert sum(t for _, t in totals) == 1000
    done = sum(
        s in {"succeeded", "partial", "cached", "failed", "skipped", "upstream_failed", "cancelled"}
        for s in states
    )
    assert sum(d for d, _ in totals) == done
    assert all(u != v for u, v in g.edges) and len(set(g.edges)) == len(g.edges)
    layered_layout(g.names, g.edges)  # acyclic


def test_grouped_view_by_tag_state_and_counter():
    nodes = [NodeView(f"n{i}", "succeeded", tags=(f"tag{i % 4}",)) for i in range(1000)]
    nodes[5] = NodeView("n5", "failed", tags=("tag1",), error="boom")
    nodes[9] = NodeView("n9", "running", tags=("tag1",))
    nodes[2] = NodeView("n2", "pending", tags=("tag2",))
    edges = [(f"n{i}", f"n{i + 1}") for i in range(999)]  # tags alternate: cycles between tags
    g = grouped_view(GraphView(tuple(nodes), tuple(edges)), max_nodes=300)
    by = g.by_name()
    assert sorted(by) == ["tag0", "tag1", "tag2", "tag3"]
    assert by["tag1"].state == "failed" and "n5: boom" in by["tag1"].error
    assert by["tag1"].counter == "249/250" and by["tag2"].counter == "249/250"
    assert by["tag0"].state == "succeeded" and by["tag0"].counter == "250/250"
    assert all(u != v for u, v in g.edges)
    layered_layout(g.names, g.edges)  # back edges between tags were dropped: still a DAG


def test_grouped_view_too_many_tags_falls_back_to_levels():
    nodes = tuple(NodeView(f"n{i}", "pending", tags=(f"t{i}",)) for i in range(500))
    g = grouped_view(GraphView(nodes, ()), max_nodes=100)
    assert [n.name for n in g.nodes] == ["level 0"] and g.nodes[0].counter == "0/500"


def test_grouped_view_rejects_bad_arguments():
    with pytest.raises(ValueError, match="by='colour'"):
        grouped_view(mixed_view(), by="colour")


def test_source_tasks_are_in_the_first_column_of_the_builtin_layout():
    # `users` was drawn in the second column, as if it had an upstream (issue #22).
    names = ["users", "orders", "prices", "revenue", "report"]
    edges = [
        ("orders", "revenue"),
        ("prices", "revenue"),
        ("users", "report"),
        ("revenue", "report"),
    ]
    layout = layered_layout(names, edges)
    assert layout.layers[0] == ["users", "orders", "prices"]
    xs = {name: x for name, (x, _) in layout.positions.items()}
    assert xs["users"] == xs["orders"] == xs["prices"] < xs["revenue"] < xs["report"]
    assert ("users", "report") in layout.routes  # the long edge bends between the nodes


def _details(svg: str) -> dict[str, str]:
    root = ET.fromstring(svg)
    return {
        g.get("data-task"): next(t.text for t in g if t.get("class") == "nbflow-detail")
        for g in root.iter(f"{NS}g")
        if g.get("data-task")
    }


def test_node_labels_fit_a_retried_high_priority_task():
    # The README's dashboard cut "orders / p=10 · 2 tries …" (issue #22): nodes are wide
    # enough for the priority, two tries and a duration, fan-out counter included.
    view = GraphView(
        (
            NodeView("orders", "succeeded", priority=10, attempts=2, duration_s=0.5),
            NodeView("enrich", "succeeded", attempts=2, duration_s=0.9, counter="6/6"),
            NodeView("revenue", "succeeded", priority=5, duration_s=0.5),
        ),
        (("orders", "revenue"), ("enrich", "revenue")),
    )
    details = _details(DagTemplate(view).svg())
    assert details == {
        "orders": "p=10 · 2 tries · 0.50s",
        "enrich": "2 tries · 0.90s",
        "revenue": "p=5 · 0.50s",
    }
    # A node narrower than that (a layout made for other priorities) drops the priority,
    # which never changes and is in the tooltip, rather than cut a fact in half.
    narrow = layered_layout(view.names, view.edges, node_w=140)
    assert _details(DagTemplate(view, narrow).svg())["orders"] == "2 tries · 0.50s"
