"""Graphviz ``dot`` as an optional layout engine, run as an async subprocess.

``dot`` lays out big graphs a little better than the built-in layout, but it is an external
binary that may be missing, and a layout takes ~0.3 s at 300 nodes. So we look for it in
the places a notebook kernel can see (:func:`find_dot`), run it without blocking the event
loop (:func:`render_dot_svg`), and use it once per structure: :class:`DotTemplate` keeps dot's
geometry and restyles nodes with the same string work as :class:`~nbflow.render.svg.DagTemplate`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

from nbflow.render.model import GraphView
from nbflow.render.palette import EDGE_COLOUR, style_for
from nbflow.render.svg import DagTemplate, Geometry, clip, detail_line, esc, fit_node_w

_NS = "{http://www.w3.org/2000/svg}"
_NUM = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")
_NODE_H = 46.0
_INSTALL_HINT = (
    "Graphviz 'dot' was not found on PATH, in this Python's scripts directory or next to "
    "the interpreter; install Graphviz (apt install graphviz / conda install graphviz / "
    "brew install graphviz) or use the built-in renderer (renderer='python')"
)


def find_dot() -> str | None:
    """Return the path of a ``dot`` executable, or None.

    Looks on ``PATH``, then in ``sysconfig.get_path("scripts")``, then next to
    ``sys.executable``: a kernel started from a venv that was never activated does not have
    the venv's ``bin/`` on PATH, yet a conda or pip-provided ``dot`` lives there.
    """
    found = shutil.which("dot")
    if found:
        return found
    exe = "dot.exe" if os.name == "nt" else "dot"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def choose_renderer(prefer: str | None = None) -> str:
    """Return ``"dot"`` or ``"python"``.

    Order: ``prefer="python"`` always gives ``"python"``; otherwise ``"dot"`` when
    :func:`find_dot` finds one, else ``"python"`` (so ``prefer="dot"`` degrades instead of
    failing, and a widget is never left empty).

    Raises:
        ValueError: ``prefer`` is not None, ``"dot"`` or ``"python"``.
    """
    if prefer not in (None, "dot", "python"):
        raise ValueError(f"unknown renderer {prefer!r}; expected 'dot', 'python' or None")
    if prefer == "python":
        return "python"
    return "dot" if find_dot() else "python"


def to_dot_source(view: GraphView, node_w: float | None = None, node_h: float = _NODE_H) -> str:
    """Return Graphviz DOT text for ``view``: left to right, nodes coloured by state.

    Nodes get safe ids ``n0, n1, ...`` (names may contain ``:``, quotes or ``<``, which DOT
    would read as ports or markup); the name is the escaped label, and the SVG element id is
    ``nbflow-n<i>`` so the output can be mapped back to tasks.
    """
    import graphviz  # lazily: keeps `import nbflow` fast

    w = fit_node_w(view) if node_w is None else node_w
    g = graphviz.Digraph(
        "nbflow",
        graph_attr={"rankdir": "LR", "nodesep": "0.22", "ranksep": "0.7", "bgcolor": "transparent"},
        node_attr={
            "shape": "box",
            "fixedsize": "true",
            "width": f"{w / 72:.3f}",
            "height": f"{node_h / 72:.3f}",
            "fontname": "Helvetica",
            "fontsize": "11",
        },
        edge_attr={"color": EDGE_COLOUR, "arrowsize": "0.6", "penwidth": "1.2"},
    )
    ids = {}
    for i, node in enumerate(view.nodes):
        s = style_for(node.state)
        ids[node.name] = f"n{i}"
        g.node(
            f"n{i}",
            label=graphviz.escape(clip(node.name, int((w - 16) / 6.5))),
            id=f"nbflow-n{i}",
            tooltip=graphviz.escape(f"{node.name}: {node.error or detail_line(node)}"),
            **s.dot_attrs(),
        )
    for k, (u, v) in enumerate(dict.fromkeys(view.edges)):
        g.edge(ids[u], ids[v], id=f"nbflow-e{k}")
    g.body.append(sources_first(view.names, view.edges, ids))
    return g.source


def sources_first(
    names: Iterable[str], edges: Iterable[tuple[str, str]], ids: Mapping[str, str]
) -> str:
    """A DOT statement that puts every task without upstream in the first column.

    Left alone, ``dot`` moves a source next to its first consumer (shorter edges), where it
    reads as if it had an upstream.
    """
    has_upstream = {v for _, v in edges}
    roots = " ".join(ids[n] for n in names if n not in has_upstream)
    return f"\t{{rank=min; {roots}}}\n" if roots else ""


async def render_dot_svg(source: str, dot: str | None = None, timeout: float = 30) -> str:
    """Run ``dot -Tsvg`` on ``source`` in a subprocess without blocking the event loop.

    The process is killed if it outlives ``timeout`` seconds or the awaiting task is cancelled.

    Raises:
        FileNotFoundError: no ``dot`` given or found.
        TimeoutError: dot took longer than ``timeout``.
        RuntimeError: dot exited with a non-zero status (its stderr is in the message).
    """
    exe = dot or find_dot()
    if exe is None:
        raise FileNotFoundError(_INSTALL_HINT)
    try:
        proc = await asyncio.create_subprocess_exec(
            exe,
            "-Tsvg",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except NotImplementedError:
        # A selector loop on Windows (what ipykernel uses there) has no subprocess support;
        # a worker thread keeps the loop free all the same.
        return await asyncio.to_thread(run_dot, source, exe, timeout)
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(source.encode())
    except TimeoutError:
        raise TimeoutError(f"{exe!r} -Tsvg did not finish within {timeout} s") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: leave no orphan process behind
            proc.kill()
            await proc.wait()
    return _checked(exe, proc.returncode, out, err)


def run_dot(source: str, dot: str | None = None, timeout: float = 30) -> str:
    """Blocking ``dot -Tsvg``: for scripts and threads, never on a running event loop.

    Raises:
        FileNotFoundError, TimeoutError, RuntimeError: as :func:`render_dot_svg`.
    """
    exe = dot or find_dot()
    if exe is None:
        raise FileNotFoundError(_INSTALL_HINT)
    try:
        done = subprocess.run(
            [exe, "-Tsvg"], input=source.encode(), capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{exe!r} -Tsvg did not finish within {timeout} s") from None
    return _checked(exe, done.returncode, done.stdout, done.stderr)


def _checked(exe: str, code: int | None, out: bytes, err: bytes) -> str:
    if code != 0:
        raise RuntimeError(
            f"{exe!r} -Tsvg exited with status {code}: {err.decode(errors='replace').strip()}"
        )
    return out.decode("utf-8", errors="replace")


def geometry_from_dot_svg(view: GraphView, svg: str) -> Geometry:
    """Read node boxes, edges and the canvas from dot's SVG for a :func:`to_dot_source` graph.

    Raises:
        ValueError: the SVG is not dot output for ``view`` (a node is missing).
    """
    root = ET.fromstring(svg)
    _, _, width, height = (float(x) for x in root.attrib["viewBox"].split())
    graph = next(g for g in root.iter(f"{_NS}g") if g.get("class") == "graph")
    names, edges = view.names, list(dict.fromkeys(view.edges))
    boxes: dict[str, tuple[float, float, float, float]] = {}
    paths: list[str] = []
    for g in graph.iter(f"{_NS}g"):
        gid, cls = g.get("id", ""), g.get("class")
        if cls == "node" and gid.startswith("nbflow-n"):
            shape = _first(g, "path")  # searched in depth: a tooltip wraps it in <a>
            shape = _first(g, "polygon") if shape is None else shape
            if shape is None:
                continue
            nums = [float(x) for x in _NUM.findall(shape.get("d") or shape.get("points") or "")]
            xs, ys = nums[0::2], nums[1::2]
            boxes[names[int(gid[8:])]] = (
                (min(xs) + max(xs)) / 2,
                (min(ys) + max(ys)) / 2,
                max(xs) - min(xs),
                max(ys) - min(ys),
            )
        elif cls == "edge" and gid.startswith("nbflow-e"):
            u, v = edges[int(gid[8:])]
            path, head = _first(g, "path"), _first(g, "polygon")
            tip = ""
            if head is not None:
                points = head.get("points")
                tip = f'<polygon class="nbflow-arrow" points="{points}" fill="{EDGE_COLOUR}"/>'
            paths.append(
                f'<path class="nbflow-edge" data-from="{esc(u)}" data-to="{esc(v)}" '
                f'marker-end="none" d="{path.get("d") if path is not None else ""}"/>{tip}'
            )
    if len(boxes) != len(names):
        missing = next(n for n in names if n not in boxes)
        raise ValueError(f"dot output has no node for task {missing!r}")
    return Geometry(width, height, boxes, "".join(paths), graph.get("transform", ""))


def _first(g: ET.Element, tag: str) -> ET.Element | None:
    return next(g.iter(f"{_NS}{tag}"), None)


def dot_geometry_sync(view: GraphView, dot: str | None = None, timeout: float = 30) -> Geometry:
    """Blocking variant for :class:`DagTemplate` ``renderer="dot"`` (outside an event loop).

    Raises:
        FileNotFoundError, TimeoutError, RuntimeError: as :func:`render_dot_svg`.
    """
    return geometry_from_dot_svg(view, run_dot(to_dot_source(view), dot, timeout))


class DotTemplate(DagTemplate):
    """A :class:`DagTemplate` whose geometry comes from Graphviz ``dot``.

    Build it with ``await DotTemplate.create(view)`` (one async dot run); then
    :meth:`svg` restyles by string work only. Nodes are drawn by nbflow at dot's positions,
    so they carry ``data-task``/``data-state`` and look the same as with the built-in layout.
    """

    def __init__(self, view: GraphView, geometry: Geometry) -> None:
        self._setup(view, geometry)

    @classmethod
    async def create(
        cls, view: GraphView, dot: str | None = None, timeout: float = 30
    ) -> DotTemplate:
        """Lay ``view`` out with dot, off the event loop, and return the template.

        Raises:
            FileNotFoundError, TimeoutError, RuntimeError: as :func:`render_dot_svg`.
        """
        svg = await render_dot_svg(to_dot_source(view), dot=dot, timeout=timeout)
        return cls(view, geometry_from_dot_svg(view, svg))
