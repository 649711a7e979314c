"""nbflow: Jupyter-native workflow orchestration.

Decorate notebook functions as tasks, run them concurrently on the kernel's event loop, watch
them live, and get back a :class:`Run` with results, states and a timeline::

    import nbflow as nf

    flow = nf.Flow("report", max_workers=4)

    @flow.task
    def users():
        return [1, 2, 3]

    @flow.task(retry=nf.Retry(max_retries=2))
    async def total(users):
        return sum(users)

    run = flow.run()
    run.results["total"]  # 6

Heavy or optional parts (widgets, pandas, dask) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import middleware
from .children import SubflowError
from .context import TaskContext, context
from .dsl import Task
from .errors import (
    CancelError,
    ConditionError,
    CycleError,
    DefinitionError,
    DuplicateKeyError,
    FanOutError,
    MissingDependencyError,
    MissingInputError,
    NbflowError,
    OverheadWarning,
    RetryIfError,
    RunCancelledError,
    SimulationError,
    StoreError,
    TaskFailedError,
    TaskTimeoutError,
)
from .events import (
    ElementKeyed,
    Event,
    IterationEnded,
    IterationStarted,
    RunFinished,
    RunStarted,
    SignalReceived,
    SubflowStarted,
    TaskCancelled,
    TaskFailed,
    TaskLog,
    TaskProgress,
    TaskQueued,
    TaskRetrying,
    TaskSignalled,
    TaskSkipped,
    TaskStarted,
    TaskSucceeded,
    TaskWaiting,
)
from .fanout import fan_out
from .flow import Flow
from .handle import RunHandle
from .health import health
from .joins import at_least
from .lifecycle import RunStatus, TaskState
from .lines import LogCapture
from .locks import Locks
from .locks import locks_of as lock_table
from .loops import LoopContext, LoopError
from .mapping import FanOut, product, zip
from .middleware import Context
from .pool import Pool, WorkerLoad
from .progress import track
from .replay import replay
from .retry import Retry, retry
from .run import Run
from .signals import SignalError, WaitFor, any_of
from .strategies import Strategy
from .subflows import Subflow
from .waits import SignalTimeoutError

__version__ = "0.1.0"

# name -> (module, attribute): imported when first used, to keep `import nbflow` fast.
_LAZY = {
    "Dashboard": ("nbflow.widgets", "Dashboard"),
    "DaskExecutor": ("nbflow.dask", "DaskExecutor"),
    "DaskClusterError": ("nbflow.dask", "DaskClusterError"),
    "LocalExecutor": ("nbflow.executors", "LocalExecutor"),
    "load_flow": ("nbflow.data.loader", "load_flow"),
    "agents": ("nbflow.data.agents", "agents"),
    "agent": ("nbflow.data.agents", "agent"),
    "FlowValidationError": ("nbflow.data.schema", "FlowValidationError"),
    "TemplateError": ("nbflow.data.templates", "TemplateError"),
    "history": ("nbflow.versions", "history"),
    "diff_versions": ("nbflow.versions", "diff_versions"),
    "MemoryStore": ("nbflow.store.memory", "MemoryStore"),
    "SQLiteStore": ("nbflow.store.sqlite", "SQLiteStore"),
    "StateStore": ("nbflow.store", "StateStore"),
    "CacheWarning": ("nbflow.identity", "CacheWarning"),
    "StoreWarning": ("nbflow.store.keys", "StoreWarning"),
    "why": ("nbflow.versions", "why"),
    "prune": ("nbflow.store.retention", "prune_default"),
    "Replay": ("nbflow.widgets.replay", "Replay"),
}

if TYPE_CHECKING:
    from .dask import DaskClusterError, DaskExecutor
    from .data.agents import agent, agents
    from .data.loader import load_flow
    from .data.schema import FlowValidationError
    from .data.templates import TemplateError
    from .executors import LocalExecutor
    from .identity import CacheWarning
    from .store.keys import StoreWarning
    from .widgets import Dashboard
    from .widgets.replay import Replay


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbflow' has no attribute {name!r}")


__all__ = [
    "CacheWarning",
    "CancelError",
    "ConditionError",
    "Context",
    "CycleError",
    "Dashboard",
    "DaskClusterError",
    "DaskExecutor",
    "DefinitionError",
    "DuplicateKeyError",
    "ElementKeyed",
    "Event",
    "FanOut",
    "FanOutError",
    "Flow",
    "FlowValidationError",
    "IterationEnded",
    "IterationStarted",
    "LocalExecutor",
    "Locks",
    "LogCapture",
    "LoopContext",
    "LoopError",
    "MemoryStore",
    "MissingDependencyError",
    "MissingInputError",
    "NbflowError",
    "OverheadWarning",
    "Pool",
    "Replay",
    "Retry",
    "RetryIfError",
    "Run",
    "RunCancelledError",
    "RunFinished",
    "RunHandle",
    "RunStarted",
    "RunStatus",
    "SQLiteStore",
    "SignalError",
    "SignalReceived",
    "SignalTimeoutError",
    "SimulationError",
    "StateStore",
    "StoreError",
    "StoreWarning",
    "Strategy",
    "Subflow",
    "SubflowError",
    "SubflowStarted",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskFailed",
    "TaskFailedError",
    "TaskLog",
    "TaskProgress",
    "TaskQueued",
    "TaskRetrying",
    "TaskSignalled",
    "TaskSkipped",
    "TaskStarted",
    "TaskState",
    "TaskSucceeded",
    "TaskTimeoutError",
    "TaskWaiting",
    "TemplateError",
    "WaitFor",
    "WorkerLoad",
    "agent",
    "agents",
    "any_of",
    "at_least",
    "context",
    "diff_versions",
    "fan_out",
    "health",
    "history",
    "load_flow",
    "lock_table",
    "middleware",
    "product",
    "prune",
    "replay",
    "retry",
    "track",
    "why",
    "zip",
]
