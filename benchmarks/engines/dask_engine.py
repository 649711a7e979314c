"""Dask, four ways (peer; runs in ``benchmarks/.venv-peers``).

* ``dask-sync`` / ``dask-threads`` — ``dask.delayed`` as people write it: one ``delayed(f)(*up)``
  per node, then ``dask.compute(*sinks, scheduler=...)``. Building the delayed objects is part of
  the timed run, because that is what a user does every time.
* ``dask-graph`` — a raw task-graph dict ``{name: (f, *upstream_names)}`` on the threaded
  scheduler: Dask's scheduler with no ``delayed`` layer.
* ``dask-distributed`` — the same graph through ``Client.get`` on an in-process
  ``LocalCluster(processes=False)``; it supports retries (W5).

Sync functions throughout; W4's nodes ``time.sleep(0.01)`` with 20 worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from benchmarks.engines.base import (
    Engine,
    NotRunnable,
    sync_node_fns,
    thread_pool_size,
)
from benchmarks.workloads import FlakyCounter, Workload


@dataclass
class Prepared:
    """A workload with its node functions (fresh W5 counters per repeat)."""

    workload: Workload
    fns: list[Any]


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"dask": version("dask"), "distributed": version("distributed")}


def raw_graph(prepared: Prepared) -> dict[str, tuple[Any, ...]]:
    """``{name: (fn, *upstream names)}``: Dask's native graph format."""
    w = prepared.workload
    return {w.names[i]: (prepared.fns[i], *(w.names[d] for d in w.deps[i]))
            for i in range(w.n_tasks)}


class _DaskBase(Engine):
    scheduler: ClassVar[str] = "threads"

    def setup(self, workload: Workload) -> None:
        """Import dask. Raises :class:`NotRunnable`."""
        try:
            import dask  # noqa: F401
        except ImportError as exc:
            raise NotRunnable(f"dask import failed: {exc}") from exc

    def unsupported(self, workload: Workload) -> str | None:
        """Dask's local schedulers have no task retries (W5)."""
        return "no retries" if workload.retries else None

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Plain node functions (with a fresh flaky counter)."""
        return Prepared(workload, list(sync_node_fns(workload, FlakyCounter(workload.n_tasks))))

    def versions(self) -> dict[str, str]:
        """dask and distributed versions."""
        return _versions()


class DaskDelayedSync(_DaskBase):
    """``dask.delayed`` graph, computed with the single-threaded sync scheduler."""

    name = "dask-sync"
    label = "Dask delayed, sync"
    scheduler = "sync"

    def execute(self, prepared: Prepared) -> Mapping[str, int]:
        """Build the delayed objects, then ``dask.compute`` the sinks."""
        import dask

        w = prepared.workload
        nodes: list[Any] = []
        for i in range(w.n_tasks):
            nodes.append(dask.delayed(prepared.fns[i])(*(nodes[d] for d in w.deps[i])))
        kwargs: dict[str, Any] = {"scheduler": self.scheduler}
        if self.scheduler == "threads" and (threads := thread_pool_size(w)):
            kwargs["num_workers"] = threads
        values = dask.compute(*(nodes[i] for i in w.sinks), **kwargs)
        return dict(zip((w.names[i] for i in w.sinks), values, strict=True))


class DaskDelayedThreads(DaskDelayedSync):
    """``dask.delayed`` graph on the threaded scheduler."""

    name = "dask-threads"
    label = "Dask delayed, threaded"
    scheduler = "threads"


class DaskGraphThreads(_DaskBase):
    """A raw graph dict on ``dask.threaded.get``."""

    name = "dask-graph"
    label = "Dask raw graph, threaded"

    def execute(self, prepared: Prepared) -> Mapping[str, int]:
        """Build the dict and get the sinks."""
        import dask.threaded

        w = prepared.workload
        keys = [w.names[i] for i in w.sinks]
        values = dask.threaded.get(raw_graph(prepared), keys, num_workers=thread_pool_size(w))
        return dict(zip(keys, values, strict=True))


class DaskDistributed(_DaskBase):
    """``Client.get`` on an in-process ``LocalCluster`` (one worker, threads; retries on)."""

    name = "dask-distributed"
    label = "dask.distributed in-process"

    client: Any = None
    cluster: Any = None

    def unsupported(self, workload: Workload) -> str | None:
        """dask.distributed retries tasks, so every workload runs."""
        return None

    def setup(self, workload: Workload) -> None:
        """Start ``LocalCluster(processes=False)`` and a client. Raises :class:`NotRunnable`."""
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise NotRunnable(f"distributed import failed: {exc}") from exc
        logging.getLogger("distributed").setLevel(logging.ERROR)
        threads = thread_pool_size(workload) or 2
        self.cluster = LocalCluster(processes=False, n_workers=1, threads_per_worker=threads,
                                    dashboard_address=None)
        self.client = Client(self.cluster)

    def teardown(self) -> None:
        """Close the client and the cluster."""
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def execute(self, prepared: Prepared) -> Mapping[str, int]:
        """Submit the raw graph through the client and gather the sinks."""
        w = prepared.workload
        keys = [w.names[i] for i in w.sinks]
        values = self.client.get(raw_graph(prepared), keys, retries=w.retries or None)
        return dict(zip(keys, values, strict=True))
