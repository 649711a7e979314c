"""DAG structures and layouts, computed once per flow definition and kept in small LRU caches.

A layout depends only on the drawn graph's shape (:attr:`Structure.key`), never on states,
so a re-run of the same flow (re-running a notebook cell) reuses it: the built-in layout
costs ~50 ms at 300 nodes, a Graphviz ``dot`` run ~300 ms. The structure itself (grouping a
big flow needs its topological levels: ~6 ms at 2,000 tasks) is cached per flow version,
and so is the all-pending drawing a dashboard starts with.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, TypeVar

from nbflow.render import DagTemplate, DotTemplate
from nbflow.widgets.views import MAX_NODES, Structure

if TYPE_CHECKING:
    from nbflow.graph import Plan

CACHE_SIZE = 16
_TEMPLATES: OrderedDict[tuple[Any, ...], DagTemplate] = OrderedDict()
_STRUCTURES: OrderedDict[tuple[Any, ...], Structure] = OrderedDict()
_PENDING: OrderedDict[tuple[int, int], tuple[DagTemplate, Structure, str]] = OrderedDict()
_JOBS: dict[tuple[Any, ...], asyncio.Future[DagTemplate]] = {}  # dot layouts in progress
V = TypeVar("V")


def _put(cache: OrderedDict[Any, V], key: Any, value: V) -> V:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return value


def structure_for(plan: Plan, max_nodes: int = MAX_NODES) -> Structure:
    """The :class:`Structure` of ``plan``, shared by every run of the same flow version.

    ``spec_version`` hashes the whole definition (names, dependencies, options), so equal
    versions have equal structures.
    """
    key = (plan.flow_name, plan.spec_version, len(plan.names), max_nodes)
    found = _STRUCTURES.get(key)
    if found is not None:
        _STRUCTURES.move_to_end(key)
        return found
    return _put(_STRUCTURES, key, Structure.from_plan(plan, max_nodes))


def pending_svg(template: DagTemplate, structure: Structure) -> str:
    """The drawing before a run starts (every node of ``structure`` pending), memoised.

    Drawn from the structure's own nodes, not the template's: a layout is shared by every
    flow of the same shape, whose priorities may differ.
    """
    key = (id(template), id(structure))
    found = _PENDING.get(key)
    if found is not None and found[0] is template and found[1] is structure:
        return found[2]
    drawing = template.svg(structure.view.by_name())
    return _put(_PENDING, key, (template, structure, drawing))[2]


def cached(renderer: str, structure: Structure) -> DagTemplate | None:
    """The cached template of ``structure`` made by ``renderer`` (``"dot"``/``"python"``)."""
    key = (renderer, structure.key)
    template = _TEMPLATES.get(key)
    if template is not None:
        _TEMPLATES.move_to_end(key)
    return template


def remember(renderer: str, structure: Structure, template: DagTemplate) -> DagTemplate:
    """Cache ``template`` for ``structure`` (evicting the least recently used) and return it."""
    return _put(_TEMPLATES, (renderer, structure.key), template)


def best_cached(structure: Structure) -> DagTemplate | None:
    """The dot template of ``structure`` if cached, else the built-in one if cached."""
    return cached("dot", structure) or cached("python", structure)


def python_template(structure: Structure) -> tuple[DagTemplate, bool]:
    """The built-in layout of ``structure`` (from the cache when possible), and whether it
    had to be computed."""
    template = cached("python", structure)
    if template is not None:
        return template, False
    return remember("python", structure, DagTemplate(structure.view)), True


async def dot_template(structure: Structure) -> DagTemplate:
    """Lay ``structure`` out with Graphviz ``dot`` off the event loop, and cache the result.

    Raises:
        FileNotFoundError, TimeoutError, RuntimeError: as
        :meth:`~nbflow.render.DotTemplate.create`.
    """
    template = await DotTemplate.create(structure.view)
    return remember("dot", structure, template)


def dot_layout(structure: Structure, in_thread: bool = False) -> asyncio.Future[DagTemplate]:
    """The running loop's job that lays ``structure`` out with ``dot``: one per shape.

    Dashboards of one shape made while ``dot`` works (a cell re-run at once, two runs of a
    flow) share the job instead of each starting a process, and a dashboard that is closed
    leaves the job running, so the layout lands in the cache for the next one (closing
    right after each run would otherwise start ``dot`` again every run). ``in_thread``:
    run ``dot`` in a worker thread instead of an async subprocess (see the dashboard).
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), structure.key)
    job = _JOBS.get(key)
    if job is None or job.get_loop() is not loop:
        made = (
            asyncio.to_thread(dot_template_blocking, structure)
            if in_thread
            else dot_template(structure)
        )
        job = _JOBS[key] = asyncio.ensure_future(made)
        job.add_done_callback(lambda done: _forget(key, done))
    return job


def _forget(key: tuple[Any, ...], job: asyncio.Future[DagTemplate]) -> None:
    _JOBS.pop(key, None)
    if not job.cancelled():
        job.exception()  # retrieved: a failure is the dashboards' to report, if any is left


def dot_template_blocking(structure: Structure) -> DagTemplate:
    """Like :func:`dot_template`, blocking: for worker threads, never on an event loop.

    Raises:
        FileNotFoundError, TimeoutError, RuntimeError: as :func:`dot_template`.
    """
    return remember("dot", structure, DagTemplate(structure.view, renderer="dot"))


def clear() -> None:
    """Forget every cached structure and layout (tests use it to count layouts)."""
    _TEMPLATES.clear()
    _STRUCTURES.clear()
    _PENDING.clear()
