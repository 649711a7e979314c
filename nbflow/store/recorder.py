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

import operator
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FunctionType
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..errors import StoreError
from .keys import StoreWarning, task_version

if TYPE_CHECKING:
    from ..graph import Plan
    from ..spec import FlowSpec
    from . import StateStore


@dataclass(slots=True)
class RunContext:
    """What the store needs to know about a run beyond its events.

    ``spec`` is set only when the store has not recorded this flow version yet (building it
    costs a little). ``local`` lists, with a remote executor, the tasks whose results reach
    the kernel (others are handles on a cluster and are not persisted); None means all.
    ``hot``, when the store takes them (``takes_run_queues``), holds the run's own queues of
    the events of :data:`HOT_EVENTS`, one per class, which the engine appends to directly.
    """

    run_id: str
    plan: Plan
    variables: dict[str, Any]
    spec: FlowSpec | None = None
    resumed_from: str | None = None
    local: frozenset[str] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    hot: tuple[deque[Any], ...] | None = None

    def task_version(self, name: str) -> str:
        """The version of task ``name`` for this run (see :func:`keys.task_version`)."""
        found = self.versions.get(name)
        return found if found is not None else self.all_versions()[name]

    def all_versions(self) -> dict[str, str]:
        """Task -> version, for every task of the run, computed once per run.

        Tasks made by one factory share their code, and a plain function's version depends
        only on its code, its module's globals (the helpers it calls, as they are now) and
        its spec, so each distinct one is hashed once; the map itself is built in C.
        """
        versions = self.versions
        plan = self.plan
        if len(versions) < len(plan.names):
            names, keys, first = _code_keys(plan)
            by_key = {key: task_version(plan.specs[task], plan.funcs[task]) for key, task in first}
            versions.update(zip(names, map(by_key.__getitem__, keys), strict=True))
        return versions


_CODE = operator.attrgetter("__code__")
_GLOBALS = operator.attrgetter("__globals__")
_DICT = operator.attrgetter("__dict__")
_HAS_WRAPPED = operator.methodcaller("__contains__", "__wrapped__")
_SOURCE_HASH = operator.attrgetter("source_hash")
_FAN_OUT = operator.attrgetter("fan_out")
_ALLOW_PARTIAL = operator.attrgetter("allow_partial")


def _code_keys(plan: Plan) -> tuple[list[str], list[Any], list[tuple[Any, str]]]:
    """``(names, keys, firsts)``: the tasks, what each one's version depends on besides the
    helpers' current code (a task of its own when unknown), and ``(key, first task)`` per
    distinct key.

    Kept in ``plan.memo``: a flow's plan is reused by its runs until the flow changes.
    """
    return plan.table("code_keys", lambda: _make_code_keys(plan))


def _make_code_keys(plan: Plan) -> tuple[list[str], list[Any], list[tuple[Any, str]]]:
    names = list(plan.names)
    funcs = list(map(plan.funcs.__getitem__, names))
    specs = list(map(plan.specs.__getitem__, names))
    keys: list[Any]
    if set(map(type, funcs)) == {FunctionType} and not any(
        map(_HAS_WRAPPED, map(_DICT, funcs))
    ):  # plain functions only (the common case): the keys are made in C
        keys = list(
            zip(
                map(_CODE, funcs), map(id, map(_GLOBALS, funcs)), map(_SOURCE_HASH, specs),
                map(str, map(_FAN_OUT, specs)), map(_ALLOW_PARTIAL, specs), strict=True,
            )
        )  # fmt: skip
    else:
        keys = [
            (fn.__code__, id(fn.__globals__), spec.source_hash, str(spec.fan_out),
             spec.allow_partial)
            if type(fn) is FunctionType and "__wrapped__" not in fn.__dict__
            else ("task", name)
            for name, fn, spec in zip(names, funcs, specs, strict=True)
        ]  # fmt: skip
    firsts = dict(zip(reversed(keys), reversed(names), strict=True))  # first task per key
    return names, keys, list(firsts.items())


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
