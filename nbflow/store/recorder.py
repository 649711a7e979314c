"""The per-run event subscriber that feeds a store, and what the store knows about the run.

:class:`Recorder` is the engine's journal for one run (``Engine(journal=...)``): it gets every
event before subscribers do. Its cost on the event loop is one queue append per event;
everything else (JSON, pickling, SQL) happens in the store's writer thread.
When the run finishes it waits until the writer has checked the run's last records (results
pickled, rows made), then re-issues the writer's warnings (a result that cannot be pickled...)
in the caller's thread, where a notebook shows them. The last commit itself goes on in the
writer thread after ``flow.run()`` returns (write-behind, a few milliseconds): every read of
the store waits for it, and so does interpreter exit.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..errors import StoreError
from .keys import StoreWarning

if TYPE_CHECKING:
    from ..graph import Plan
    from ..identity import FlowIdentity
    from ..spec import FlowSpec
    from . import StateStore


@dataclass(slots=True)
class RunContext:
    """What the store needs to know about a run beyond its events.

    ``identity`` is the flow's version and each task's identity as the run started (see
    :mod:`nbflow.identity`). ``spec`` is set only when the store has not recorded this flow
    version yet (building it costs a little). ``local`` lists, with a remote executor, the
    tasks whose results reach the kernel (others are handles on a cluster and are not
    persisted); None means all. ``hot``, when the store takes them (``takes_run_queues``),
    holds the run's own queues of the events of :data:`HOT_EVENTS`, one per class, which the
    engine appends to directly.
    """

    run_id: str
    plan: Plan
    identity: FlowIdentity
    variables: dict[str, Any]
    spec: FlowSpec | None = None
    resumed_from: str | None = None
    local: frozenset[str] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    hot: tuple[deque[Any], ...] | None = None

    @property
    def flow_version(self) -> str:
        """The flow's version for this run."""
        return self.identity.version

    def task_version(self, name: str) -> str:
        """The version of task ``name`` for this run: its identity's digest.

        A task whose identity cannot be hashed gets a version of this run alone, which no
        other run's result can match: it is never resumed nor served from the cache.
        """
        found = self.versions.get(name)
        return found if found is not None else self.all_versions()[name]

    def all_versions(self) -> dict[str, str]:
        """Task -> version, for every task of the run (see :meth:`task_version`)."""
        versions = self.versions
        if len(versions) < len(self.plan.names):
            unique = f"unhashable:{self.run_id}"
            versions.update(
                (name, identity.digest or unique) for name, identity in self.identity.tasks.items()
            )
        return versions


#: The three events of every task (queued, started, succeeded), in the order of
#: :attr:`RunContext.hot`: the bulk of a run's events.
HOT_EVENTS: tuple[type[ev.Event], ...] = (ev.TaskQueued, ev.TaskStarted, ev.TaskSucceeded)


class Recorder:
    """The engine's journal for one run: ``put(event)`` hands each event to ``store.submit``
    (an O(1) queue append, in C), ``finish()`` waits until the run is checked.

    ``routes`` gives the engine a ``put`` per event class: with a store that takes run queues
    (``takes_run_queues``), the events of :data:`HOT_EVENTS` go straight to the run's own
    queue of their class (``context.hot``), so the writer need not sort them one by one.
    """

    __slots__ = ("put", "routes", "run_id", "store")

    def __init__(self, store: StateStore, context: RunContext) -> None:
        self.store = store
        self.run_id = context.run_id
        self.put = store.submit
        self.routes: dict[type, Callable[[Any], None]] = {}
        if getattr(store, "takes_run_queues", False):
            context.hot = tuple(deque() for _ in HOT_EVENTS)
            self.routes = {cls: q.append for cls, q in zip(HOT_EVENTS, context.hot, strict=True)}
        store.submit(context)
        wake = getattr(store, "wake", None)
        if wake is not None:
            wake()  # the writer looks at the queue now, then every interval during the run

    def finish(self) -> None:
        """Wait until the store has checked the run; warn about what it could not store."""
        settle = getattr(self.store, "settle", None)  # optional in the protocol
        try:
            (settle or self.store.flush)()
        except StoreError as error:
            warnings.warn(f"run {self.run_id}: {error}", StoreWarning, stacklevel=2)
        for message in self.store.take_warnings(self.run_id):
            warnings.warn(message, StoreWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"<Recorder run={self.run_id} store={self.store.location!r}>"
