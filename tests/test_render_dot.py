"""Tests of nbflow.render.dot: finding dot, running it off the loop, DotTemplate."""

from __future__ import annotations

import asyncio
import shutil
import stat
import sys
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nbflow.render import (
    DagTemplate,
    DotTemplate,
    GraphView,
    NodeView,
    choose_renderer,
    find_dot,
    render_dot_svg,
    run_dot,
    to_dot_source,
)
from nbflow.render import dot as dot_mod
from nbflow.render.dot import dot_geometry_sync

NS = "{http://www.w3.org/2000/svg}"
FAKE_SVG = '<svg xmlns="http://www.w3.org/2000/svg"><g class="node"/></svg>'
REAL_DOT = shutil.which("dot")
needs_dot = pytest.mark.skipif(REAL_DOT is None, reason="graphviz `dot` is not installed")


def fake_dot(folder: Path, body: str = f"cat >/dev/null\necho '{FAKE_SVG}'") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "dot"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def hide_path(monkeypatch, tmp_path: Path, scripts: Path | None = None) -> None:
    """No dot on PATH, in the scripts dir (unless given) or next to the interpreter."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    real = sysconfig.get_path
    target = str(scripts or tmp_path / "no-scripts")
    monkeypatch.setattr(
        sysconfig, "get_path", lambda name, *a, **k: target if name == "scripts" else real(name)
    )
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python" / "python"))


def view(n: int = 6) -> GraphView:
    names = [f"step:{i}" for i in range(n)]  # ':' would be a port in DOT without safe ids
    nodes = tuple(NodeView(name, "pending") for name in names)
    return GraphView(nodes, tuple((names[i], names[i + 1]) for i in range(n - 1)))


# --- find_dot / choose_renderer --------------------------------------------------------------


def test_find_dot_looks_in_scripts_dir_when_path_lacks_it(tmp_path, monkeypatch):
    exe = fake_dot(tmp_path / "venv" / "bin")
    hide_path(monkeypatch, tmp_path, scripts=exe.parent)
    assert find_dot() == str(exe)


def test_find_dot_looks_next_to_the_interpreter(tmp_path, monkeypatch):
    hide_path(monkeypatch, tmp_path)
    exe = fake_dot(tmp_path / "env" / "bin")
    monkeypatch.setattr(sys, "executable", str(exe.parent / "python"))
    assert find_dot() == str(exe)


def test_find_dot_none_when_nowhere(tmp_path, monkeypatch):
    hide_path(monkeypatch, tmp_path)
    assert find_dot() is None
    assert choose_renderer() == "python" and choose_renderer("dot") == "python"


def test_choose_renderer_order(tmp_path, monkeypatch):
    monkeypatch.setattr(dot_mod, "find_dot", lambda: "/opt/dot")
    assert choose_renderer() == "dot" and choose_renderer("dot") == "dot"
    assert choose_renderer("python") == "python"
    with pytest.raises(ValueError, match="unknown renderer 'neato'"):
        choose_renderer("neato")


# --- render_dot_svg with a fake dot -------------------------------------------------------------


def test_render_dot_svg_uses_found_fake_dot(tmp_path, monkeypatch):
    hide_path(monkeypatch, tmp_path, scripts=fake_dot(tmp_path / "s").parent)
    assert asyncio.run(render_dot_svg("digraph {}")) == FAKE_SVG + "\n"


def test_render_dot_svg_missing_dot_raises(tmp_path, monkeypatch):
    hide_path(monkeypatch, tmp_path)
    with pytest.raises(FileNotFoundError, match="renderer='python'"):
        asyncio.run(render_dot_svg("digraph {}"))


def test_render_dot_svg_reports_dot_errors(tmp_path):
    exe = fake_dot(tmp_path, "cat >/dev/null\necho 'syntax error in line 1' >&2\nexit 3")
    with pytest.raises(RuntimeError, match="exited with status 3: syntax error in line 1"):
        asyncio.run(render_dot_svg("digraph {", dot=str(exe)))


def test_render_dot_svg_timeout_kills_the_process(tmp_path):
    exe = fake_dot(tmp_path, f"echo $$ > {tmp_path}/pid\nexec sleep 30")
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.3 s"):
        asyncio.run(render_dot_svg("digraph {}", dot=str(exe), timeout=0.3))
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_render_dot_svg_does_not_block_the_loop(tmp_path):
    exe = fake_dot(tmp_path, f"cat >/dev/null\nsleep 0.3\necho '{FAKE_SVG}'")
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def main():
        tick = asyncio.create_task(ticker())
        try:
            return await render_dot_svg("digraph {}", dot=str(exe))
        finally:
            tick.cancel()

    assert asyncio.run(main()).startswith("<svg")
    assert ticks >= 1


def test_render_dot_svg_falls_back_to_a_thread_without_loop_subprocesses(tmp_path, monkeypatch):
    exe = fake_dot(tmp_path)

    async def unsupported(*args, **kwargs):
        raise NotImplementedError  # what a selector event loop on Windows does

    monkeypatch.setattr(asyncio, "create_subprocess_exec", unsupported)
    assert asyncio.run(render_dot_svg("digraph {}", dot=str(exe))) == FAKE_SVG + "\n"


def test_run_dot_blocking_variant(tmp_path):
    assert run_dot("digraph {}", dot=str(fake_dot(tmp_path))) == FAKE_SVG + "\n"


# --- with the real Graphviz ----------------------------------------------------------------------


def test_to_dot_source_uses_safe_ids_and_escapes():
    v = GraphView((NodeView('a:b "q" \\x', "failed"), NodeView("c", "running")), ())
    src = to_dot_source(v)
    assert 'n0 [label="a:b \\"q\\" \\\\x"' in src and 'id="nbflow-n1"' in src


@needs_dot
def test_render_dot_svg_real_dot_draws_every_node():
    v = view(8)
    svg = asyncio.run(render_dot_svg(to_dot_source(v)))
    root = ET.fromstring(svg)
    assert len([g for g in root.iter(f"{NS}g") if g.get("class") == "node"]) == 8


@needs_dot
def test_real_dot_on_300_nodes_leaves_the_loop_running():
    v = view(300)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async def main():
        tick = asyncio.create_task(ticker())
        try:
            return await DotTemplate.create(v)
        finally:
            tick.cancel()

    assert len(asyncio.run(main()).geometry.boxes) == 300
    assert ticks >= 1


@needs_dot
def test_dot_template_injects_state_and_restyles():
    v = view(5)
    tpl = asyncio.run(DotTemplate.create(v))
    svg = tpl.svg({"step:2": NodeView("step:2", "failed", error="boom <x>")})
    root = ET.fromstring(svg)
    groups = {
        g.get("data-task"): g
        for g in root.iter(f"{NS}g")
        if "nbflow-node" in g.get("class", "").split()
    }
    assert set(groups) == set(v.names)
    assert groups["step:2"].get("data-state") == "failed"
    assert groups["step:0"].get("data-state") == "pending"
    assert "boom <x>" in groups["step:2"].find(f"{NS}title").text
    xs = [float(groups[n].find(f"{NS}rect").get("x")) for n in v.names]
    assert xs == sorted(xs)  # left to right, as dot laid it out
    assert len(root.findall(f".//{NS}path[@class='nbflow-edge']")) == 4


@needs_dot
def test_dag_template_dot_renderer_matches_async():
    v = view(4)
    assert DagTemplate(v, renderer="dot").svg() == asyncio.run(DotTemplate.create(v)).svg()


def _quickstart_view() -> GraphView:
    # notebooks/01-quickstart: `users` feeds only `report`, two layers further right.
    names = ["users", "orders", "prices", "revenue", "report"]
    edges = [
        ("orders", "revenue"),
        ("prices", "revenue"),
        ("users", "report"),
        ("revenue", "report"),
    ]
    return GraphView(tuple(NodeView(n, "pending") for n in names), tuple(edges))


def test_source_tasks_are_in_the_first_column_of_the_dot_layout():
    view = _quickstart_view()
    assert "{rank=min; n0 n1 n2}" in to_dot_source(view)
    if REAL_DOT is None:
        pytest.skip("graphviz `dot` is not installed")
    geometry = dot_geometry_sync(view)
    xs = {name: box[0] for name, box in geometry.boxes.items()}
    assert xs["users"] == xs["orders"] == xs["prices"] < xs["revenue"] < xs["report"]
