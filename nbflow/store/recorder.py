"""The per-run event subscriber that feeds a store, and what the store knows about the run.

:class:`Recorder` is the engine's journal for one run (``Engine(journal=...)``): it gets every
event before subscribers do. Its cost on the event loop is one queue append per event;
everything else (JSON, pickling, SQL) happens in the store's writer thread.
When the run finishes it waits for the writer to catch up, so a finished ``flow.run()`` is
on disk, and re-issues the writer's warnings (a result that cannot be pickled...) in the
caller's thread, where a notebook shows them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from types import FunctionType
from typing import TYPE_CHECKING, Any

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
    """

    run_id: str
    plan: Plan
    variables: dict[str, Any]
    spec: FlowSpec | None = None
    resumed_from: str | None = None
    local: frozenset[str] | None = None
    versions: dict[str, str] = field(default_factory=dict)

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


def _code_keys(plan: Plan) -> tuple[list[str], list[Any], list[tuple[Any, str]]]:
    """``(names, keys, firsts)``: the tasks, what each one's version depends on besides the
    helpers' current code (a task of its own when unknown), and ``(key, first task)`` per
    distinct key.

    Kept in ``plan.memo``: a flow's plan is reused by its runs until the flow changes.
    """
    found = plan.memo.get("code_keys")
    if found is not None:
        return found
    names = list(plan.names)
    keys: list[Any] = []
    firsts: dict[Any, str] = {}
    for name in names:
        spec, fn = plan.specs[name], plan.funcs[name]
        if type(fn) is FunctionType and "__wrapped__" not in fn.__dict__:
            key: Any = (fn.__code__, id(fn.__globals__), spec.source_hash, str(spec.fan_out),
                        spec.allow_partial)  # fmt: skip
        else:
            key = ("task", name)
        keys.append(key)
        firsts.setdefault(key, name)
    result = (names, keys, list(firsts.items()))
    plan.memo["code_keys"] = result
    return result


class Recorder:
    """The engine's journal for one run: ``put(event)`` hands each event to ``store.submit``
    (an O(1) queue append, in C), ``finish()`` waits until the run is written.
    """

    __slots__ = ("put", "run_id", "store")

    def __init__(self, store: StateStore, context: RunContext) -> None:
        self.store = store
        self.run_id = context.run_id
        self.put = store.submit
        store.submit(context)
        wake = getattr(store, "wake", None)
        if wake is not None:
            wake()  # the writer looks at the queue now, then every interval during the run

    def finish(self) -> None:
        """Wait until the store has written the run; warn about what it could not store."""
        try:
            self.store.flush()
        except StoreError as error:
            warnings.warn(f"run {self.run_id}: {error}", StoreWarning, stacklevel=2)
        for message in self.store.take_warnings(self.run_id):
            warnings.warn(message, StoreWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"<Recorder run={self.run_id} store={self.store.location!r}>"
