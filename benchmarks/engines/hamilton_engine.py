"""Apache Hamilton's synchronous driver (peer; runs in ``benchmarks/.venv-peers``).

Hamilton builds its DAG from the functions of a module, edges from parameter names — the same
idea as nbflow's DSL. The benchmark makes a module whose functions are created in a loop: each
shares one body (``**kwargs``) and gets its name, ``__signature__`` and ``__annotations__`` set,
which is what Hamilton introspects. ``prepare`` (timed as "build") is ``driver.Builder()
.with_modules(module).build()``; ``execute`` is ``driver.execute(sinks)``. The sync driver runs
nodes one after another, inline; Hamilton has no retries, so W5 is "n/a". Its executor
walks dependencies recursively, so a 1,000-task chain exceeds Python's default recursion limit:
the limit is raised in proportion to the graph's depth, as a Hamilton user would have to.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.engines.base import Engine, NotRunnable, sync_node_fns
from benchmarks.workloads import Workload, topological_layers

_MODULE = "nbflow_bench_hamilton_dag"


def _node_fn(name: str, op: Callable[..., int], params: tuple[str, ...]) -> Callable[..., int]:
    def node(**kwargs: int) -> int:
        return op(*kwargs.values())

    node.__name__ = node.__qualname__ = name
    node.__module__ = _MODULE
    node.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=int)
         for p in params],
        return_annotation=int,
    )
    node.__annotations__ = {**dict.fromkeys(params, int), "return": int}
    return node


def dag_module(workload: Workload) -> types.ModuleType:
    """A module holding one Hamilton function per node (registered in ``sys.modules``)."""
    module = types.ModuleType(_MODULE)
    for i, op in enumerate(sync_node_fns(workload)):
        name = workload.names[i]
        params = tuple(workload.names[d] for d in workload.deps[i])
        setattr(module, name, _node_fn(name, op, params))
    sys.modules[_MODULE] = module
    return module


@dataclass
class Prepared:
    """A built Hamilton driver and the nodes to request."""

    driver: Any
    outputs: list[str]


class HamiltonEngine(Engine):
    """``driver.Builder().with_modules(m).build().execute(sinks)``."""

    name = "hamilton"
    label = "Hamilton sync driver"
    reports_build = True

    def unsupported(self, workload: Workload) -> str | None:
        """Hamilton has no task retries (W5)."""
        return "no retries" if workload.retries else None

    def setup(self, workload: Workload) -> None:
        """Import Hamilton with its telemetry off. Raises :class:`NotRunnable`."""
        os.environ["HAMILTON_TELEMETRY_ENABLED"] = "false"
        try:
            from hamilton import driver  # noqa: F401
        except ImportError as exc:
            raise NotRunnable(f"hamilton import failed: {exc}") from exc

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Create the module and build the driver (Hamilton's define/validate cost)."""
        from hamilton import driver

        depth = len(topological_layers(workload))
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * depth + 1_000))
        dr = driver.Builder().with_modules(dag_module(workload)).build()
        return Prepared(dr, [workload.names[i] for i in workload.sinks])

    def execute(self, prepared: Prepared) -> Mapping[str, int]:
        """Compute the sink nodes."""
        result = prepared.driver.execute(prepared.outputs)
        return {k: int(result[k]) for k in prepared.outputs}

    def versions(self) -> dict[str, str]:
        """Hamilton's version."""
        from importlib.metadata import version

        return {"apache-hamilton": version("apache-hamilton")}
