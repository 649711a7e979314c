"""Caching a fan-out task element by element: :class:`ElementCache`.

``cache=True`` (or ``cache_key=``) on a fan-out task caches each element by its own input,
so a source that gained one element runs that one element (see ``docs/reuse.md``). The
run's :class:`~nbflow.cache.ReuseHooks` make one per such task and run
(``hooks.element_cache(name, kwargs)``); it keys each element as the hooks key a task call,
and stores what an element returned through the run's recorder.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import mapping
from .errors import StoreError
from .identity import Identities, Unhashable
from .store.keys import StoreWarning
from .store.results import DamagedResultError, ResultRow, StoredResult

if TYPE_CHECKING:
    from .cache import ReuseHooks


def unusable(what: str, row: ResultRow, error: Exception, again: str) -> None:
    """Warn that the stored result of ``row`` cannot be used, so ``again`` runs again (a
    damaged result is never served: it is a miss)."""
    warnings.warn(
        f"{what}: its stored result (run {row.run_id}) cannot be used ({error}); running "
        f"{again} again",
        StoreWarning,
        stacklevel=3,
    )


class ElementCache:
    """``cache=True`` (or ``cache_key=``) on a fan-out task, in one run: each element is
    cached by its own input, so a source that gained one element runs that one element.

    An element's cache key is that of a task call whose inputs are the task's other inputs
    (upstream results, run variables) and the element's own values, each by its content
    digest (or ``cache_key(**inputs)``). An element that ran and succeeded is stored under
    its key, as ``task[key]`` (``task[index]`` without ``key=``), as it ends, whatever the
    task's outcome: a run that failed at one element reruns only what did not succeed.
    """

    def __init__(self, hooks: ReuseHooks, name: str, kwargs: Mapping[str, Any]) -> None:
        self.hooks, self.name = hooks, name
        context = hooks.context
        self.spec = spec = context.plan.specs[name]
        assert spec.fan_out is not None
        self.identity = context.identity.tasks[name].digest
        self.params = tuple(p for p, _ in mapping.pairs(spec.fan_out))
        digests = hooks._input_digests(name)
        for param, source in mapping.pairs(spec.fan_out):  # the whole source is not an input
            digests.pop(param, None)
            digests.pop(source, None)
        self.base = digests
        self.hasher = Identities()
        self.since = time.time() - spec.cache_ttl if spec.cache_ttl is not None else None
        self.keys: dict[int, str] = {}
        self.sources: dict[int, str] = {}  # element -> run its result came from
        self.ran = 0

    async def lookup(
        self, index: int, label: str, values: tuple[Any, ...], inputs: Mapping[str, Any]
    ) -> tuple[bool, Any]:
        """``(True, value)`` when element ``index`` (``values``; ``inputs``: the call's
        keyword arguments) has a stored result, else ``(False, None)``.

        Raises:
            RuntimeError: the task's ``cache_key`` callable raised (the element fails).
        """
        key = self._key(values, inputs)
        if key is None:
            self.ran += 1
            return False, None
        store = self.hooks.store
        row = await self.hooks.read(self.name, store.find_cached, key, self.since)
        if row is not None:
            try:  # its bytes are checked against their checksum as they are read
                value = await asyncio.to_thread(StoredResult(store, row).load)
            except (DamagedResultError, StoreError) as error:
                unusable(f"element {label}", row, error, "the element")
            else:
                self.sources[index] = row.run_id
                return True, value
        self.keys[index] = key
        self.ran += 1
        return False, None

    def _key(self, values: tuple[Any, ...], inputs: Mapping[str, Any]) -> str | None:
        if self.identity is None:
            return None
        digests = dict(self.base)
        for param, value in zip(self.params, values, strict=True):
            try:
                digests[param] = self.hasher.value_digest(value)
            except Unhashable:
                return None  # this element cannot be cached: it runs
        return self.hooks._cache_key(self.name, self.spec, self.identity, digests, inputs)

    def reused(self, index: int) -> str:
        """Where element ``index``'s result came from, in words."""
        return f"cached from run {self.sources[index][:8]}"

    async def keep(self, index: int, label: str, value: Any) -> None:
        """Store element ``index``'s result under its cache key (when it has one)."""
        key = self.keys.pop(index, None)
        if key is None:
            return
        pending = self.hooks.recorder.keep_element(self.name, label, value, key)
        if pending is not None:
            await pending

    def decide(self) -> None:
        """Record, for ``run.why()``, how many elements were served and how many ran."""
        self.hooks.elements_decided(self.name, len(self.sources), self.ran)
