"""A fan-out task's run: its elements, made from its sources as they arrive, each in a slot
of its own.

::

    sources (lists, or streams of producers still producing: nbflow.streams)
      -> elements (one source, zip or product: nbflow.elements), each named by key= if any
      -> the sliding window (nbflow.fanout): per element, the cache (cache=True: its own
         input), else a slot, then its attempts; a success is streamed on to the task's
         own consumers
    -> TaskSucceeded with the list of results | TaskFailed | TaskSkipped (a source that
       did not succeed while streaming: the trigger rule's verdict)

``complete_when`` (:mod:`nbflow.completion`) may end the task before its last elements;
with ``cancel_rest=True`` it also cancels the streaming producers that nothing else needs
(so a fan-out over an endless generator can end). A bad element (a ``key=`` that is not
unique, a zip of unequal lengths) fails the task at once, cancelling the elements in
flight.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import events as ev
from . import mapping
from .attempts import run_attempts
from .completion import Completion, kept
from .element_keys import Keys
from .elements import Elements
from .errors import format_exception as format_error
from .fanout import Withdrawn, window
from .joins import rest_of
from .lifecycle import FAILED_LIKE, TaskState
from .streams import Stream
from .variables import task_variables

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from .engine import Engine

S = TaskState


async def run_fan_out(engine: Engine, name: str, kwargs: dict[str, Any]) -> S | None:
    """Run the elements of fan-out task ``name`` (see the module docstring); its outcome
    (None: it completed early, see :mod:`nbflow.completion`).

    Raises:
        FanOutError: a source is not iterable, a zip of unequal lengths, a duplicate key
            (the engine fails the task with it).
    """
    plan = engine.plan
    spec = plan.specs[name]
    fan_out = spec.fan_out
    assert fan_out is not None
    pairs = mapping.pairs(fan_out)
    params = tuple(p for p, _ in pairs)
    sources = [_source(engine, name, kwargs, source) for _, source in pairs]
    own = {p.name for p in spec.params}
    for param, source in pairs:  # the element parameters are the elements'
        kwargs.pop(param, None)
        if source not in own:  # a renamed source: no parameter of the function
            kwargs.pop(source, None)
    elements = Elements(name, fan_out, sources)
    engine._emit(ev.TaskStarted, name, 1, None, None, elements.size)
    completion = Completion(engine, name, elements.size) if spec.complete_when else None
    if completion is not None:
        elements.on_size = completion.sized
    keys = Keys(name, spec.key, spec.key_fn, params) if spec.key or spec.key_fn else None
    hooks = engine.hooks
    cache = hooks.element_cache(name, kwargs) if hooks is not None else None
    out = engine.open_stream(name)  # this task's own streaming consumers
    wants_worker = name in engine._wants_worker
    record = engine.state.tasks[name]
    running = engine._lanes[name] = {}  # element -> its lane (see Engine._lanes)
    asked = engine._asked_lanes[name] = set()  # lanes the window cancels (see fanout.window)
    one = params[0] if len(params) == 1 else None  # (the usual case, made cheaper)
    remote_values = engine._remote and (keys is not None or cache is not None)
    fetched: dict[int, tuple[Any, ...]] = {}  # remote_values: each element's, fetched

    def named(index: int, values: tuple[Any, ...]) -> tuple[Any, ...]:
        if keys is not None:
            engine._emit(ev.ElementKeyed, name, index, keys.key(index, values))
        return values

    def listed() -> Iterator[tuple[int, tuple[Any, ...]]]:
        if keys is None:  # (an attempt starts no element once the run is stopping)
            return elements.listed()
        return ((index, named(index, values)) for index, values in elements.listed())

    async def streamed() -> AsyncIterator[tuple[int, tuple[Any, ...]]]:
        async for index, values in elements:
            if engine._stopping:
                return
            if remote_values:
                # Keys and the cache read values: the futures' (the call still gets futures).
                fetched[index] = tuple(await engine.executor.amaterialize(list(values)))
                named(index, fetched[index])
                yield index, values
            else:
                yield index, named(index, values)

    async def run_one(index: int, values: tuple[Any, ...]) -> Any:
        running[index] = asyncio.current_task()  # type: ignore[assignment]
        try:
            if one is not None:
                inputs = {**kwargs, one: values[0]}
            else:
                inputs = {**kwargs, **dict(zip(params, values, strict=True))}
            if cache is not None:
                plain = fetched.pop(index, values)
                hit, value = await cache.lookup(index, record.element_label(index), plain,
                                                inputs)  # fmt: skip
                if hit:
                    engine._emit(ev.TaskSucceeded, name, 0, value, index, True, None, None,
                                 cache.reused(index))  # fmt: skip
                    if out is not None:
                        out.put(index, value)
                    return value
            worker = await engine.slots.wait(name, spec.worker)
            if completion is not None and completion.stopped:  # complete before it started
                engine.slots.release(worker)
                raise Withdrawn
            try:
                if wants_worker:
                    inputs["worker"] = worker
                ok, value = await run_attempts(engine, name, inputs, worker, index)
            finally:
                engine.slots.release(worker)
                engine._dispatch_soon()  # a freed slot may let a ready task start
            if not ok:
                raise value
            if cache is not None:
                await cache.keep(index, record.element_label(index), value)
            if out is not None:
                out.put(index, value)
            return value
        finally:
            del running[index]

    lanes = [n for n in (spec.concurrency, engine.slots.limit) if n]
    try:
        outcomes = await window(
            listed() if elements.size is not None and not remote_values else streamed(),
            run_one, concurrency=min(lanes) if lanes else None, rate=spec.rate,
            until=completion, size=elements.size, asked=asked,
        )  # fmt: skip
    finally:
        del engine._lanes[name]
        del engine._asked_lanes[name]
        if cache is not None:
            cache.decide()
    if completion is not None and completion.stopped:
        if spec.cancel_rest:
            _cancel_producers(engine, name, sources)
        return None if completion.settled else await completion.finish()
    broken = elements.broken
    if broken is not None:
        outcome = broken.outcome
        assert outcome is not None
        state = S.UPSTREAM_FAILED if outcome in FAILED_LIKE else S.SKIPPED
        why = f"upstream {broken.producer!r} ended {outcome.value} while streaming"
        engine._emit(ev.TaskSkipped, name, state.value, why)
        return state
    failures = [o for o in outcomes if not o.ok]
    size = len(outcomes) if elements.size is None else elements.size
    if failures and not spec.allow_partial:
        first = failures[0].error
        error = RuntimeError(
            f"task {name!r}: {len(failures)} of {size} fan-out elements failed; first "
            f"(element {_shown(record, failures[0].index)}): {type(first).__name__}: {first}"
        )
        error.__cause__ = first
        engine._emit(ev.TaskFailed, name, 1, error, format_error(first))
        return S.FAILED
    done = [o for o in outcomes if o.ok]  # by index; a streamed product's by its order
    if elements.orders:
        done.sort(key=lambda o: elements.orders[o.index])
    results = await kept(engine, name, [o.value for o in done])
    if cache is not None and done and cache.ran == 0:  # every element came from the cache
        engine._emit(ev.TaskSucceeded, name, 1, results, None, True, None, None,
                     hooks.decisions[name].summary() if hooks is not None else None)  # fmt: skip
        return S.CACHED
    engine._emit(ev.TaskSucceeded, name, 1, results)
    return S.SUCCEEDED


def _shown(record: Any, index: int) -> str:
    """An element in a message: its index, or ``task[key]`` when it has a key."""
    return record.element_label(index) if record.element_keys else str(index)


def _source(engine: Engine, name: str, kwargs: dict[str, Any], source: str) -> Any:
    """What fan-out task ``name`` reads from ``source``: the producer's stream when it
    streams in this run, else the values as a list (checked)."""
    stream = engine._streams.get(source)
    if stream is not None:
        return stream
    plan = engine.plan
    spec = plan.specs[name]
    assert spec.fan_out is not None
    # Run variables are in kwargs; a parameter's default is not.
    value: Any = kwargs[source] if source in kwargs else task_variables(plan, name, {}).get(source)
    where = "upstream result" if source in plan.specs else "run variable"
    mapping.check_source(name, spec.fan_out, source, value, where)
    return value if isinstance(value, list) else list(value)  # (checked: iterable)


def _cancel_producers(engine: Engine, name: str, sources: list[Any]) -> None:
    """``name`` completed early with ``cancel_rest``: cancel the producers it streams from
    that are still producing and that nothing else needs (nor their own upstream work)."""
    if not any(isinstance(s, Stream) and not s.ended for s in sources):
        return
    plan, finished = engine.plan, engine.sched.outcome.__contains__
    # A task still waits for an unfinished producer unless it has finished itself: a
    # consumer that started still reads its stream.
    rest = rest_of(name, plan.upstream, plan.downstream, finished, finished)
    if rest:
        reason = (
            f"cancel_rest: {name!r} completed (complete_when="
            f"{plan.specs[name].complete_when!r}) and no other task needs it"
        )
        engine.scope.request(engine, rest, reason)
