"""nbflow through its public API (``shared/API.md``), on one long-lived event loop.

Tasks are defined programmatically, in a loop, as a notebook user with many similar tasks
would: ``flow.task(name=f"t{i}")(fn)``. nbflow infers data dependencies from parameter NAMES,
so each node function is made by a small factory: one shared ``async def node(**kwargs)`` body
whose ``__signature__`` lists its upstream task names (``inspect.signature`` honours it; nbflow
calls tasks with keyword arguments). No ``exec``, and one code object for every node, so the
flow's source hashing sees one function.

``prepare`` (timed as "build") is the define-time cost: decorating every task, then
``flow.validate()`` — spec, graph and checks — split into the ``define`` and ``validate``
phases. ``aexecute`` is ``await flow.arun()``. Variants: W1, W2, W3 and W7 also run with the
SQLite store on (one file per workload, shared by the repeats), W7 with the dashboard open too;
a feature that does not exist yet is reported as "n/a: feature missing". ``flow.arun()``
returns once the store has committed the run's records, so the commit is inside the timing;
``settle``, outside it, only checks that the run was recorded.
"""

from __future__ import annotations

import importlib.util
import inspect
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.engines.base import AsyncNodeFn, Engine, NotRunnable, async_node_fns
from benchmarks.workloads import FlakyCounter, Workload

STORE = "+sqlite-store"
DASHBOARD = "+dashboard-open"
#: Workload families that also run with the SQLite store on: its cost per task (issue #23).
STORE_GROUPS = frozenset({"W1", "W2", "W3", "W7"})


def node_fn(name: str, op: AsyncNodeFn, params: tuple[str, ...]) -> AsyncNodeFn:
    """An async function named ``name`` whose parameters are ``params`` (upstream task names).

    It calls ``op`` with the upstream values; the order does not matter for ``max``/``sum``.
    """

    async def node(**kwargs: int) -> int:
        return await op(*kwargs.values())

    node.__name__ = node.__qualname__ = name
    node.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY) for p in params]
    )
    return node


@dataclass
class Prepared:
    """A defined, validated flow, plus what the variant needs at run time."""

    flow: Any
    workload: Workload
    show: bool = False
    store_path: Path | None = None
    run_id: str | None = None  # set by the run, for settle() to find it in the store
    store_error: Exception | None = None  # set by the run: what the store could not record


class NbflowEngine(Engine):
    """``nf.Flow(..., store=None)`` + ``flow.task(name=...)(fn)`` + ``await flow.arun()``."""

    name = "nbflow"
    label = "nbflow"
    is_async = True
    reports_build = True

    def __init__(self) -> None:
        self.nf: Any = None
        self.phases: dict[str, float] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def setup(self, workload: Workload) -> None:
        """Import nbflow. Raises :class:`NotRunnable` with the import error."""
        try:
            import nbflow
        except Exception as exc:
            raise NotRunnable(f"nbflow import failed: {exc!r}") from exc
        self.nf = nbflow
        self._tmp = tempfile.TemporaryDirectory(prefix="nbflow-bench-")

    def teardown(self) -> None:
        """Remove the temporary store folder."""
        if self._tmp is not None:
            self._tmp.cleanup()

    def variants(self, workload: Workload) -> tuple[str, ...]:
        """Plain (store=None, no dashboard) always; SQLite store on for W1, W2, W3 and W7;
        dashboard open for W7."""
        if workload.group == "W7":
            return ("", STORE, DASHBOARD)
        return ("", STORE) if workload.group in STORE_GROUPS else ("",)

    def _store_for(self, variant: str, workload: Workload) -> Path | None:
        if variant != STORE:
            return None
        if importlib.util.find_spec("nbflow.store") is None:
            raise NotRunnable("feature missing: nbflow.store (the SQLite store)")
        assert self._tmp is not None
        # One file per workload, reused by every repeat (the warm-up run creates it and records
        # the flow's version): the steady state of re-running a flow in a notebook. A new file
        # or a new flow version costs more once (schema, the version's spec and sources);
        # benchmarks/store_overhead.py measures the same way.
        return Path(self._tmp.name) / f"{workload.key}.db"

    def _check_dashboard(self, variant: str) -> bool:
        if variant != DASHBOARD:
            return False
        try:
            self.nf.Dashboard  # noqa: B018 - lazy attribute: imports nbflow.widgets
        except Exception as exc:
            raise NotRunnable(
                f"feature missing: nf.Dashboard ({type(exc).__name__}: {exc})"
            ) from exc
        return True

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Define every task, then validate (the ``define`` and ``validate`` phases)."""
        nf, w = self.nf, workload
        store_path = self._store_for(variant, w)
        show = self._check_dashboard(variant)
        t0 = time.perf_counter()
        flow = nf.Flow(
            f"bench-{w.key}",
            max_workers=w.max_in_flight,
            store=str(store_path) if store_path else None,
        )
        options: dict[str, Any] = {}
        if w.retries:
            options["retry"] = nf.Retry(max_retries=w.retries, delay=0)
        ops = async_node_fns(w, FlakyCounter(w.n_tasks))
        names = w.names
        for i, deps in enumerate(w.deps):
            params = tuple(names[d] for d in deps)
            flow.task(name=names[i], **options)(node_fn(names[i], ops[i], params))
        t1 = time.perf_counter()
        validate = getattr(flow, "validate", None)
        if callable(validate):
            validate()
        self.phases = {"define": t1 - t0, "validate": time.perf_counter() - t1}
        return Prepared(flow, w, show=show, store_path=store_path)

    async def aexecute(self, prepared: Prepared) -> Mapping[str, int]:
        """``await flow.arun()`` (``show=True`` for the dashboard variant); check the store."""
        kwargs = {"show": True} if prepared.show else {}
        run = await prepared.flow.arun(**kwargs)
        if run.status != "succeeded":
            name, error = next(iter(run.errors.items()), ("?", "no error recorded"))
            raise RuntimeError(f"run {run.status}: task {name!r}: {error!r}")
        prepared.run_id = run.run_id
        prepared.store_error = run.store_error
        w = prepared.workload
        results = run.results  # a property that builds a dict: read it once
        return {w.names[i]: results[w.names[i]] for i in w.sinks}

    def settle(self, prepared: Prepared) -> None:
        """The store variant, outside the timing: check that the file holds the run.

        ``flow.arun()`` returned after the store committed the run (the commit is part of
        the timed run: it is what a user waits for), so nothing is left to wait for here.

        Raises:
            RuntimeError: the store could not record the run (its own error), or the file
                does not hold it as succeeded.
        """
        if prepared.store_path is None:
            return
        name = prepared.store_path.name
        if prepared.store_error is not None:
            raise RuntimeError(f"store={name!r} could not record the run: {prepared.store_error}")
        store = prepared.flow.state_store
        record = store.run(prepared.run_id) if _written(prepared.store_path) else None
        if record is None or record["status"] != "succeeded":
            status = "nothing" if record is None else f"status {record['status']!r}"
            raise RuntimeError(
                f"store={name!r} holds {status} for run {prepared.run_id}, "
                "after flow.arun() returned"
            )

    def versions(self) -> dict[str, str]:
        """nbflow's version (from the working tree)."""
        return {"nbflow": str(getattr(self.nf, "__version__", "?"))}


def _written(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0
