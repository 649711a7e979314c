"""DAG layouts, computed once per graph shape and kept in a small LRU cache.

A layout depends only on the drawn graph's shape (:attr:`Structure.key`), never on states,
so a re-run of the same flow (re-running a notebook cell) reuses it: the built-in layout
costs ~50 ms at 300 nodes, a Graphviz ``dot`` run ~300 ms.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from nbflow.render import DagTemplate, DotTemplate
from nbflow.widgets.views import Structure

CACHE_SIZE = 16
_TEMPLATES: OrderedDict[tuple[Any, ...], DagTemplate] = OrderedDict()


def cached(renderer: str, structure: Structure) -> DagTemplate | None:
    """The cached template of ``structure`` made by ``renderer`` (``"dot"``/``"python"``)."""
    key = (renderer, structure.key)
    template = _TEMPLATES.get(key)
    if template is not None:
        _TEMPLATES.move_to_end(key)
    return template


def remember(renderer: str, structure: Structure, template: DagTemplate) -> DagTemplate:
    """Cache ``template`` for ``structure`` (evicting the least recently used) and return it."""
    key = (renderer, structure.key)
    _TEMPLATES[key] = template
    _TEMPLATES.move_to_end(key)
    while len(_TEMPLATES) > CACHE_SIZE:
        _TEMPLATES.popitem(last=False)
    return template


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


def dot_template_blocking(structure: Structure) -> DagTemplate:
    """Like :func:`dot_template`, blocking: for worker threads, never on an event loop.

    Raises:
        FileNotFoundError, TimeoutError, RuntimeError: as :func:`dot_template`.
    """
    return remember("dot", structure, DagTemplate(structure.view, renderer="dot"))


def clear() -> None:
    """Forget every cached layout (tests use it to count layouts)."""
    _TEMPLATES.clear()
