"""Prefect 3: tasks submitted from a flow, on a local ephemeral server (peer; ``.venv-peers``).

Prefect needs an API; with ``PREFECT_API_URL`` unset and ephemeral mode allowed it starts a
local server subprocess on first use (in :meth:`PrefectEngine.setup`, billed as ``setup_s``, not
to the runs). ``PREFECT_HOME`` is a fresh temporary folder, so the benchmark neither reads nor
writes the user's Prefect state. Tasks are ``@task`` functions with ``cache_policy=NO_CACHE``
and ``persist_result=False`` (the cheapest settings Prefect offers); one ``@flow`` per run
submits every node to a ``ThreadPoolTaskRunner`` passing upstream futures as arguments, so
Prefect resolves the data dependencies itself. W5 uses ``retries=2, retry_delay_seconds=0``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from benchmarks.engines.base import (
    Engine,
    NotRunnable,
    depth_node,
    sleep_node,
    sum_node,
    thread_pool_size,
)
from benchmarks.workloads import FlakyCounter, Workload

STARTUP_TIMEOUT_S = 90
DEFAULT_THREADS = 8


class _Flaky:
    """The W5 counter, module-global because Prefect tasks need plain named functions."""

    counter = FlakyCounter(0)


def _flaky(index: int) -> int:
    return _Flaky.counter.attempt(index)


@dataclass
class Prepared:
    """A Prefect flow object ready to call, and the sink names it returns in order."""

    flow: Callable[[], list[int]]
    outputs: list[str]


def _environment(home: str) -> None:
    """Settings read when ``prefect`` is imported: ephemeral server, quiet logs, own home."""
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.update({
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_S),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_API_REQUEST_TIMEOUT": "120",
    })


class PrefectEngine(Engine):
    """Prefect 3 tasks + flow with a ``ThreadPoolTaskRunner``."""

    name = "prefect"
    label = "Prefect 3"

    def __init__(self) -> None:
        self._home: tempfile.TemporaryDirectory[str] | None = None
        self._tasks: dict[str, Any] = {}

    def setup(self, workload: Workload) -> None:
        """Import Prefect and start its ephemeral server with a one-task flow.

        Raises:
            NotRunnable: Prefect does not import, or its server does not come up.
        """
        self._home = tempfile.TemporaryDirectory(prefix="nbflow-bench-prefect-")
        _environment(self._home.name)
        try:
            from prefect import flow, task
            from prefect.cache_policies import NO_CACHE
        except Exception as exc:
            raise NotRunnable(f"prefect import failed: {exc!r}") from exc
        logging.getLogger("prefect").setLevel(logging.WARNING)
        opts: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False,
                                "retries": workload.retries, "retry_delay_seconds": 0}
        self._tasks = {
            "depth": task(depth_node, name="depth", **opts),
            "sum": task(sum_node, name="sum", **opts),
            "sleep": task(sleep_node, name="sleep", **opts),
            "flaky": task(_flaky, name="flaky", **opts),
        }

        @flow(name="nbflow-bench-startup", persist_result=False)
        def startup() -> int:
            return int(self._tasks["depth"]())

        try:
            startup()
        except Exception as exc:
            raise NotRunnable(f"prefect server did not start: {exc!r}"[:300]) from exc

    def teardown(self) -> None:
        """Remove the temporary PREFECT_HOME (the server subprocess exits with us)."""
        if self._home is not None:
            self._home.cleanup()

    def prepare(self, workload: Workload, variant: str = "") -> Prepared:
        """Define the flow that submits every node (fresh W5 counters)."""
        from prefect import flow
        from prefect.task_runners import ThreadPoolTaskRunner

        _Flaky.counter = FlakyCounter(workload.n_tasks)
        tasks, w = self._tasks, workload
        outputs = [w.names[i] for i in w.sinks]
        threads = thread_pool_size(w) or DEFAULT_THREADS

        @flow(name=f"nbflow-bench-{w.key}", task_runner=ThreadPoolTaskRunner(max_workers=threads),
              persist_result=False, validate_parameters=False)
        def bench_flow() -> list[int]:
            futures: list[Any] = []
            for i, op in enumerate(w.ops):
                if op == "flaky":
                    futures.append(tasks[op].submit(i))
                else:
                    futures.append(tasks[op].submit(*(futures[d] for d in w.deps[i])))
            return [futures[i].result() for i in w.sinks]

        return Prepared(bench_flow, outputs)

    def execute(self, prepared: Prepared) -> Mapping[str, int]:
        """Run the flow (blocking) and return the sink values."""
        return dict(zip(prepared.outputs, prepared.flow(), strict=True))

    def versions(self) -> dict[str, str]:
        """Prefect's version."""
        from importlib.metadata import version

        return {"prefect": version("prefect")}
