"""The small protocol every benchmarked engine implements, and the node callables they share.

The child runner (``benchmarks/runner.py``) drives an engine like this, once per repeat::

    engine.setup(workload)                 # once: start a cluster, a server, import the engine
    prepared = engine.prepare(workload)    # timed as "build": definition / graph construction
    sinks = engine.execute(prepared)       # timed as "run" (``aexecute`` for asyncio engines)
    engine.teardown()

``prepare`` is called again for every repeat so that W5's attempt counters start fresh and so
that define-time costs (nbflow's decorators, Hamilton's driver build) get a median of their own.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ClassVar

from benchmarks.workloads import SLEEP_S, FlakyCounter, Workload, compute


class NotRunnable(Exception):
    """Raised by :meth:`Engine.setup` when the engine cannot run here; the message says why."""


class Engine:
    """Base class: one way of running a :class:`Workload`.

    Subclasses set ``name`` and ``label``, and implement :meth:`prepare` plus :meth:`execute`
    (sync engines) or :meth:`aexecute` (``is_async = True``: run on one long-lived event loop,
    as in a Jupyter kernel).
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    is_async: ClassVar[bool] = False
    #: True when :meth:`prepare` is a real definition step worth reporting (nbflow, Hamilton).
    reports_build: ClassVar[bool] = False

    def unsupported(self, workload: Workload) -> str | None:
        """Why this engine cannot run ``workload`` (e.g. ``"no retries"``), or None."""
        return None

    def variants(self, workload: Workload) -> tuple[str, ...]:
        """Row variants of one workload (W7's store/dashboard settings); ``("",)`` by default."""
        return ("",)

    def setup(self, workload: Workload) -> None:
        """Import the engine and start what it needs. Raises :class:`NotRunnable`."""

    def teardown(self) -> None:
        """Stop what :meth:`setup` started."""

    def prepare(self, workload: Workload, variant: str = "") -> Any:
        """Build what :meth:`execute` runs; returns an engine-specific object."""
        return workload

    def execute(self, prepared: Any) -> Mapping[str, int]:
        """Run once; return the value of every sink node by name."""
        raise NotImplementedError

    async def aexecute(self, prepared: Any) -> Mapping[str, int]:
        """Run once on the current event loop; return the value of every sink node by name."""
        raise NotImplementedError

    def settle(self, prepared: Any) -> None:
        """After the timing: wait for, or check, what the run left behind (nbflow's store
        variant checks that the store holds the run), so that nothing lands in the timing of
        whatever runs next (the interleaved variants). Nothing by default."""

    def versions(self) -> dict[str, str]:
        """Package versions worth printing next to the results."""
        return {}


def thread_pool_size(workload: Workload) -> int | None:
    """Threads for thread-based engines: the W4 limit, else None (the engine's own default)."""
    return workload.max_in_flight if workload.ideal_s is not None else None


# -- node callables --------------------------------------------------------------------------
# Shared function objects where possible: per-node closures would measure Python, not engines.


async def _adepth(*inputs: int) -> int:
    return compute("depth", inputs)


async def _asum(*inputs: int) -> int:
    return compute("sum", inputs)


async def _asleep(*_inputs: int) -> int:
    await asyncio.sleep(SLEEP_S)
    return 1


def depth_node(*inputs: int) -> int:
    return compute("depth", inputs)


def sum_node(*inputs: int) -> int:
    return compute("sum", inputs)


def sleep_node(*_inputs: int) -> int:
    time.sleep(SLEEP_S)
    return 1


async def _aflaky(counter: FlakyCounter, index: int, *_inputs: int) -> int:
    return counter.attempt(index)


def _flaky(counter: FlakyCounter, index: int, *_inputs: int) -> int:
    return counter.attempt(index)


AsyncNodeFn = Callable[..., Coroutine[Any, Any, int]]


def async_node_fns(workload: Workload, counter: FlakyCounter | None = None) -> list[AsyncNodeFn]:
    """One coroutine function per node, called with the upstream values positionally."""
    table = {"depth": _adepth, "sum": _asum, "sleep": _asleep}
    return _node_fns(workload, counter, table, _aflaky)


def sync_node_fns(
    workload: Workload, counter: FlakyCounter | None = None
) -> list[Callable[..., int]]:
    """One plain function per node, called with the upstream values positionally."""
    table = {"depth": depth_node, "sum": sum_node, "sleep": sleep_node}
    return _node_fns(workload, counter, table, _flaky)


def _node_fns(
    workload: Workload,
    counter: FlakyCounter | None,
    table: dict[str, Callable[..., Any]],
    flaky: Callable[..., Any],
) -> list[Any]:
    fns: list[Any] = []
    for i, op in enumerate(workload.ops):
        if op == "flaky":
            assert counter is not None, "flaky workloads need a FlakyCounter"
            fns.append(functools.partial(flaky, counter, i))
        else:
            fns.append(table[op])
    return fns


def sinks_of(workload: Workload, values: list[Any]) -> dict[str, int]:
    """Pick the sink values out of a per-node value list."""
    return {workload.names[i]: values[i] for i in workload.sinks}
