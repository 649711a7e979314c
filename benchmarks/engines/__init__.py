"""Registry of benchmarked engines: name -> where it lives and what it needs.

Engines are imported by name inside the child process only (``benchmarks/runner.py``), so the
parent never imports dask, Prefect, Hamilton or nbflow. ``peer`` names the group of
``benchmarks/peers-requirements.txt`` the engine needs; such engines run with the interpreter of
``benchmarks/.venv-peers``, all others with the current interpreter.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from benchmarks.engines.base import Engine


@dataclass(frozen=True)
class EngineInfo:
    """Where an engine class lives, its display label, and what it needs."""

    name: str
    label: str
    target: str  # "module:Class"
    peer: str | None = None
    groups: tuple[str, ...] | None = None  # workload families it runs; None: all but W7/E

    def runs(self, group: str) -> bool:
        """Whether this engine takes part in a workload family (``W1`` ... ``W7``, ``E``)."""
        if self.groups is not None:
            return group in self.groups
        return group not in ("W7", "E")

    def load(self) -> Engine:
        """Import and instantiate the engine (in the child)."""
        module, _, cls = self.target.partition(":")
        engine: Engine = getattr(importlib.import_module(module), cls)()
        return engine


_B = "benchmarks.engines."
ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo("nbflow", "nbflow", _B + "nbflow_engine:NbflowEngine",
               groups=("W1", "W2", "W3", "W4", "W5", "W6", "W7", "E")),
    EngineInfo("asyncio", "plain asyncio (idiomatic)", _B + "asyncio_baselines:AsyncioIdiomatic"),
    EngineInfo("asyncio-rq", "asyncio ready-queue", _B + "asyncio_baselines:AsyncioReadyQueue",
               groups=("W1", "W2", "W3", "W4", "W5", "W6", "W7", "E")),
    EngineInfo("graphlib-threads", "graphlib + threads",
               _B + "asyncio_baselines:GraphlibThreads"),
    EngineInfo("hamilton", "Hamilton sync driver", _B + "hamilton_engine:HamiltonEngine",
               peer="hamilton"),
    EngineInfo("dask-sync", "Dask delayed, sync", _B + "dask_engine:DaskDelayedSync",
               peer="dask"),
    EngineInfo("dask-threads", "Dask delayed, threaded", _B + "dask_engine:DaskDelayedThreads",
               peer="dask"),
    EngineInfo("dask-graph", "Dask raw graph, threaded", _B + "dask_engine:DaskGraphThreads",
               peer="dask"),
    EngineInfo("dask-distributed", "dask.distributed in-process",
               _B + "dask_engine:DaskDistributed", peer="dask"),
    EngineInfo("prefect", "Prefect 3", _B + "prefect_engine:PrefectEngine", peer="prefect"),
)

BY_NAME = {e.name: e for e in ENGINES}
BASELINE = "asyncio-rq"
NON_PEER = tuple(e.name for e in ENGINES if e.peer is None)


def select(names: list[str] | None, with_peers: bool = True) -> list[EngineInfo]:
    """Engines named by ``--engines`` (all by default), without peers when ``with_peers`` is off.

    Raises:
        ValueError: an unknown engine name.
    """
    if names:
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown engine {unknown[0]!r}; known: {', '.join(BY_NAME)}")
        chosen = [e for e in ENGINES if e.name in names]
    else:
        chosen = list(ENGINES)
    return [e for e in chosen if with_peers or e.peer is None]
