"""One task of a run, from placed to ended: the half of the engine that runs a task.

::

    placed (a slot held; none for a fan-out task) -> async gates -> reuse (resume, cache)
        -> inputs (stored ones read now) -> attempts: middleware(executor.call) in a timeout,
           retried by the policy (an iterator result read out, streamed: nbflow.streams)
        or -> fan-out: nbflow.mapped (each element takes its own slot, then its attempts)
    -> TaskSucceeded | TaskFailed | TaskCancelled | TaskSkipped

The functions here take the :class:`~nbflow.engine.Engine` whose state they read and
whose events they emit. A task's attempt runs with ``nf.context()`` set (:mod:`nbflow.context`). A
``CancelledError`` is the task's own failure when nobody cancelled it (the runner's task has
no cancellation pending); otherwise the task ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from . import events as ev
from .context import current
from .errors import RetryIfError, TaskTimeoutError
from .errors import format_exception as format_error
from .executors import LocalExecutor
from .fanout import SELF_CANCELLED
from .gates import GateContext, condition_error, evaluate, is_async
from .lazy import loaded
from .lifecycle import SUCCESSFUL, TaskState
from .middleware import Context, call_with
from .retry import RetryState
from .streams import drain, is_stream_value, streamers
from .variables import task_variables

if TYPE_CHECKING:
    from .engine import Engine

S = TaskState
_NOWHERE: tuple[str | None, float | None] = (None, None)
#: An attempt loop yields to the event loop this often (seconds), should an instant task fail
#: and be retried at once many times over.
TIME_SLICE = 0.005


async def run_task(engine: Engine, name: str, worker: str | None) -> S | None:
    """Run one placed task to its end; emit its events; return its outcome (None: it
    completed early, see :mod:`nbflow.completion`, and its dependants were decided then).

    What it raises besides an attempt (an attempt's own errors end in
    :func:`run_attempts`) ends the task in :func:`task_raised`, called by the runner
    (:meth:`Engine._runner <nbflow.engine.Engine._runner>`), which also gives back the
    task's slot. A plain task takes :func:`run_plain` instead."""
    if engine.locks is not None:  # a lock on the executor's side (nbflow.dask_locks)
        await engine.locks.hold_remote(name)
    if name in engine._async_gated and (engine.waits is None or name not in engine.waits.gated):
        closed = await async_gates(engine, name)
        if closed is not None:
            return closed
    kwargs = inputs_of(engine, name, worker)
    waits = engine.waits
    if waits is not None and name in waits.released:  # the signals it waited for
        kwargs.update(waits.released[name])
    hooks = engine.hooks
    if hooks is not None and not engine.streams_into(name):
        cached = await hooks.lookup(name, kwargs)
        if cached is not None:
            why = hooks.decisions[name].summary()
            engine._emit(ev.TaskSucceeded, name, 0, cached, None, True, None, None, why)
            return S.CACHED
    if hooks is not None:
        kwargs = await loaded(kwargs)  # stored upstream results, read only now
    special = engine._special.get(name)  # a fan-out, a loop (see Engine._special)
    if special is not None:
        return await special(engine, name, kwargs, worker)
    ok, _ = await run_attempts(engine, name, kwargs, worker, None)
    return S.SUCCEEDED if ok else S.FAILED


def task_raised(engine: Engine, name: str, error: BaseException) -> S | None:
    """End a task whose run raised ``error``: ``cancelled`` when the run cancelled it,
    else ``failed`` (an engine-side error: a bad fan-out input, a store hook's error; or a
    ``CancelledError`` the task raised itself). None: it had completed early (see
    :func:`run_task`) and what was left of it was cut short."""
    count = engine.state.tasks[name].attempts
    if isinstance(error, asyncio.CancelledError):
        if name in engine.sched.outcome:  # completed early: what was left of it is cut short
            return None
        if not cancelled_from_outside():
            error = asyncio.CancelledError("the task raised CancelledError itself")
        elif cancel_asked(engine, name):
            engine._emit(ev.TaskCancelled, name, count, None, engine.cancel_reason(name))
            return S.CANCELLED
        else:
            # Nothing of the run's asked for it: the task cancelled the asyncio task it runs
            # in, a runner it shares with other tasks (the runner then leaves: see _runner).
            error = asyncio.CancelledError(
                "the task cancelled the asyncio task it runs in "
                "(asyncio.current_task().cancel()), which nbflow shares between tasks; to "
                "end the task, raise an exception (or ctx.cancel() for a task of the run)"
            )
    engine._emit(ev.TaskFailed, name, count, error, format_error(error))
    return S.FAILED


def inputs_of(engine: Engine, name: str, worker: str | None) -> dict[str, Any]:
    tasks = engine.state.tasks
    kwargs: dict[str, Any] = {}
    for param, dep in engine.plan.data_params[name]:
        record = tasks[dep]
        kwargs[param] = record.result if record.state in SUCCESSFUL else None
    variables = engine.variables
    for param in engine._var_params.get(name, ()):
        kwargs[param] = variables[param]
    if name in engine._wants_worker and "worker" not in kwargs:
        kwargs["worker"] = worker
    return kwargs


# -- gates ------------------------------------------------------------------------------


def upstream_results(engine: Engine, name: str) -> dict[str, Any]:
    tasks = engine.state.tasks
    return {d: tasks[d].result for d in engine.plan.upstream[name] if tasks[d].state in SUCCESSFUL}


def gate_verdict(
    engine: Engine, name: str, results: dict[str, Any], awaited: dict[int, Any] | None
) -> tuple[S, BaseException | None, str] | None:
    """None when every gate of ``name`` passes, else ``(skipped or failed, error,
    reason)``. ``awaited``: what async callables gave (by gate position), when known."""
    variables = task_variables(engine.plan, name, engine.variables)
    for position, gate in enumerate(engine.plan.gates[name]):
        try:
            if awaited is not None and position in awaited:
                passed = not awaited[position] if gate.negate else bool(awaited[position])
            else:
                passed = evaluate(gate, name, results, variables)
        except Exception as error:
            return S.FAILED, error, ""
        if not passed:
            reason = f"branch {gate.branch!r}" if gate.branch else "condition is false"
            return S.SKIPPED, None, reason
    return None


async def async_gates(engine: Engine, name: str) -> S | None:
    """Decide the gates of a placed task that needs awaiting (an async ``when=``, or
    stored upstream results to read); its outcome when a gate closed, else None."""
    try:
        results = await loaded(upstream_results(engine, name))
    except Exception as error:  # a stored upstream result that cannot be read
        engine._emit(ev.TaskFailed, name, 0, error, format_error(error))
        return S.FAILED
    variables = task_variables(engine.plan, name, engine.variables)
    awaited: dict[int, Any] = {}
    verdict: tuple[S, BaseException | None, str] | None = None
    for position, gate in enumerate(engine.plan.gates[name]):
        if gate.callable is None or not is_async(gate.callable):
            continue
        try:
            awaited[position] = await gate.callable(GateContext(name, results, variables))
        except Exception as raised:
            verdict = S.FAILED, condition_error(name, gate.callable, raised), ""
            break
    if verdict is None:
        verdict = gate_verdict(engine, name, results, awaited)
    if verdict is None:
        return None
    outcome, failure, reason = verdict
    if outcome is S.SKIPPED:
        engine._emit(ev.TaskSkipped, name, outcome.value, reason)
    else:
        engine._emit(ev.TaskFailed, name, 0, failure, format_error(failure))
    return outcome


# -- attempts ---------------------------------------------------------------------------


def plain_tasks(plan: Any) -> frozenset[str]:
    """The tasks of ``plan`` whose run is one await of their async function: no gate, no
    fan-out, no retry, no timeout, no iterator to read out (what the run adds, middleware,
    an executor other than the local one, the store's reuse, is checked by the engine)."""
    streaming = streamers(plan)  # their result may be an iterator to read out
    return frozenset(
        name
        for name in plan.names
        if not plan.gates[name]
        and (spec := plan.specs[name]).is_async
        and not spec.fan_out
        and spec.retry is None
        and spec.timeout is None
        and spec.wait_for is None
        and spec.max_iterations is None
        and name not in streaming
    )


async def run_plain(engine: Engine, name: str, worker: str | None) -> S:
    """:func:`run_task` for a plain task (see :func:`plain_tasks`): one attempt, awaited
    here. Most tasks of a large flow are plain, and four frames less each is a quarter of
    the engine's own cost on the benchmark's W1 (measured: see docs/performance.md)."""
    kwargs = inputs_of(engine, name, worker)
    if engine._stopping:
        await _cancel_this_task(engine, name)
    engine._emit(ev.TaskStarted, name, 1, worker)  # (element None: one item less to store)
    here = (engine, name, 1, None, worker, 0)
    token = current.set(here)
    try:
        result = await engine._funcs[name](**kwargs)
        if engine._keep is not None:
            pending = engine._keep(name, 1, result)  # the store's snapshot
            if pending is not None:
                await pending
    except asyncio.CancelledError as cancelled:
        if cancelled_from_outside():
            raise
        error: BaseException = cancelled  # raised by the task: its own failure
    except Exception as raised:
        error = raised
    else:
        engine._emit(ev.TaskSucceeded, name, 1, result)
        return S.SUCCEEDED
    finally:
        current.reset(token)
        output = engine.output  # per-task logs and progress (nbflow.logs)
        if output is not None and output.open:  # only if the attempt wrote something
            output.end(here)
    engine._emit(ev.TaskFailed, name, 1, error, format_error(error))
    return S.FAILED


async def run_attempts(
    engine: Engine,
    name: str,
    kwargs: dict[str, Any],
    worker: str | None,
    element: int | None,
    iteration: int = 0,
) -> tuple[bool, Any]:
    """Run attempts until success or the retry policy gives up: (ok, result or error).

    ``iteration``: of a loop task (:mod:`nbflow.iterations`), 1, 2...: its attempts are that
    iteration's rows, and a success is left to the loop to announce (and to store): its
    result is then ``(result, (worker, began))`` (where a remote executor ran it)."""
    policy = engine.plan.specs[name].retry
    loop = engine.loop
    assert loop is not None
    retry_state = RetryState(policy, loop.time(), name) if policy is not None else None
    yield_at = engine._clock() + TIME_SLICE
    attempt = 0
    while True:
        if engine._stopping:
            await _cancel_this_task(engine, name)
        attempt += 1
        if iteration < 2:
            engine._emit(ev.TaskStarted, name, attempt, worker, element)
        else:
            engine._emit(ev.IterationStarted, name, attempt, worker, element, None, iteration)
        where = _NOWHERE  # a remote executor's (worker, run-clock start) of the attempt
        # A sync call may wait for a thread: when its body began (run clock), for its row.
        began: list[float] | None = [] if name in engine._threaded else None
        here = (engine, name, attempt, element, worker, iteration)
        token = current.set(here)
        try:
            result = await call(engine, name, kwargs, attempt, worker, element, began)
            if began:
                where = (None, began[0] - engine._t0)
            elif engine._remote:
                where = placement(engine, result)
                if element is None and name in engine._fetch:
                    result = await engine.executor.amaterialize(result)
            if iteration:  # the loop announces it (nbflow.iterations), where it ran too
                return True, (result, where)
            if element is None and engine._keep is not None:
                pending = engine._keep(name, attempt, result)  # the store's snapshot
                if pending is not None:
                    await pending
        except asyncio.CancelledError as cancelled:
            error: BaseException = cancelled  # raised by the task: its own failure
            if cancelled_from_outside():
                if element is None:
                    raise  # the runner decides (task_raised)
                if cancel_asked(engine, name):
                    engine._emit(ev.TaskCancelled, name, attempt, element)
                    raise
                # No one of the run's asked: the element cancelled the lane it runs in. Its
                # failure (see fanout.window); the lane goes on with the next element.
                lane = asyncio.current_task()
                assert lane is not None
                lane.uncancel()
                error = asyncio.CancelledError(SELF_CANCELLED)
        except Exception as raised:
            error = raised
        else:
            engine._emit(ev.TaskSucceeded, name, attempt, result, element, False, *where)
            return True, result
        finally:
            current.reset(token)
            output = engine.output  # per-task logs and progress (nbflow.logs)
            if output is not None and output.open:  # only if the attempt wrote something
                output.end(here)
        if began:
            where = (None, began[0] - engine._t0)
        elif engine._remote and where is _NOWHERE:
            where = placement(engine, error)
        delay = None
        if retry_state is not None:
            retry_state.attempt = attempt
            try:
                delay = retry_state.next_delay(error, loop.time())
            except RetryIfError as failure:  # it holds the task's own error
                error = failure
        if delay is not None and engine._stopping and engine.scope.finisher == (name, element):
            delay = None  # it called ctx.finish(): the run is ending, no retry starts
        if delay is None:
            engine._emit(ev.TaskFailed, name, attempt, error, format_error(error), element,
                       *where)  # fmt: skip
            return False, error
        engine._emit(ev.TaskRetrying, name, attempt, error, delay, element, *where)
        if delay or engine._clock() >= yield_at:
            await asyncio.sleep(delay)
            yield_at = engine._clock() + TIME_SLICE


def placement(engine: Engine, outcome: Any) -> tuple[str | None, float | None]:
    """Where and when (run clock) a remote executor ran the attempt behind ``outcome``."""
    found = engine.executor.placement(outcome)
    if found is None:
        return _NOWHERE
    worker, began = found
    return worker, (None if began is None else began - engine.state.wall_start)


async def call(
    engine: Engine,
    name: str,
    kwargs: dict[str, Any],
    attempt: int,
    worker: str | None,
    element: int | None,
    began: list[float] | None = None,
) -> Any:
    """One call of the task's function, through the task middleware, within its timeout.

    The timeout measures the attempt's own body: a sync call waiting for a free thread
    starts its clock when the thread takes it (and appends its ``time.monotonic()`` to
    ``began``, if given). A task that may stream has its iterator read out within it
    (:func:`produced`).
    """
    spec = engine.plan.specs[name]
    timeout = spec.timeout
    if timeout is None:
        result = await invoke(engine, name, kwargs, attempt, worker, element, None, began)
        if name in engine._streamers:
            return await produced(engine, name, result)
        return result
    loop = engine.loop
    assert loop is not None
    live = True  # the thread may say the body started after the attempt was cancelled

    def started() -> None:
        if live:
            scope.reschedule(loop.time() + timeout)

    try:
        async with asyncio.timeout(None) as scope:
            try:
                result = await invoke(
                    engine, name, kwargs, attempt, worker, element, started, began
                )
            finally:
                live = False
            if name in engine._streamers:  # reading the iterator out is the attempt's work
                result = await produced(engine, name, result)
            return result
    except TimeoutError:
        if scope.expired():
            raise TaskTimeoutError(name, timeout) from None
        raise


def invoke(
    engine: Engine,
    name: str,
    kwargs: dict[str, Any],
    attempt: int,
    worker: str | None,
    element: int | None,
    started: Any,
    began: list[float] | None = None,
) -> Any:
    """The awaitable of one call; ``started()`` (if given) is called as its body starts,
    and a call in a thread appends that moment to ``began`` (if given)."""
    spec = engine.plan.specs[name]
    fn = engine._funcs[name]
    executor = engine.executor
    threads = not spec.is_async and type(executor) is LocalExecutor
    if started is not None and not threads:
        started()  # the body starts now (a coroutine, another executor)
    if engine.task_mw:
        ctx = Context("task", engine.run_id, engine.plan.flow_name, engine.variables, name,
                      attempt, element, worker, dict(kwargs), spec, fn)  # fmt: skip

        async def innermost() -> Any:
            if name in engine._in_kernel:  # a subflow: its child run's tasks go out
                return await fn(**ctx.inputs)
            return await executor_call(engine, name, fn, ctx.inputs, spec, started, threads, began)

        return call_with(engine.task_mw, ctx, innermost)
    if spec.is_async and (engine._inline_async or name in engine._in_kernel):
        return fn(**kwargs)  # what LocalExecutor.call does, minus a frame
    return executor_call(engine, name, fn, kwargs, spec, started, threads, began)


def executor_call(
    engine: Engine,
    name: str,
    fn: Any,
    kwargs: dict[str, Any],
    spec: Any,
    started: Any,
    threads: bool,
    began: list[float] | None = None,
) -> Any:
    if threads:
        return engine.executor.call(name, fn, kwargs, is_async=False, priority=spec.priority,
                                  started=started, began=began)  # fmt: skip
    return engine.executor.call(name, fn, kwargs, is_async=spec.is_async,
                              priority=spec.priority)  # fmt: skip


# -- a streaming producer ----------------------------------------------------------------


async def produced(engine: Engine, name: str, value: Any) -> Any:
    """The result of an attempt of task ``name`` that may stream (see
    :func:`nbflow.streams.streamers`): an iterator it returned (or a generator it is) is
    read to its end here, each item streamed to the fan-out tasks that map over it as it
    arrives; its result is then the list of items. Any other value is the result as it is.
    """
    if not is_stream_value(value):
        return value
    stream = engine.open_stream(name)
    executor = engine.executor

    def call(step: Any) -> Any:
        return executor.call(name, step, {}, is_async=False)

    return await drain(value, stream.put if stream is not None else _nowhere, call)


def _nowhere(index: int, value: Any) -> None:
    """Where the items of a producer nobody streams from go (its list keeps them)."""


def attempt_over(engine: Engine, task: str, element: int | None, attempt: int) -> bool:
    """Whether that attempt should stop (see ``TaskContext.cancelled``): the run is
    stopping, or the attempt is not the one going on any more (it timed out, or its task
    ended)."""
    if engine._stopping:  # but for the attempt that called ctx.finish()
        return engine.scope.finisher != (task, element)
    row = engine.state.open_rows.get(task if element is None else (task, element))
    return row is None or row.attempt != attempt


async def _cancel_this_task(engine: Engine, name: str) -> None:
    """End the running asyncio task as cancelled, as the stopping run would a moment later.

    A fan-out element's lane that the loop runs before its task's group is cancelled (the
    run was cancelled in between) gets here: no attempt starts once the run is stopping.
    """
    task = asyncio.current_task()
    assert task is not None
    asked = engine._asked_lanes.get(name)
    if asked is not None:  # a lane of the run's own cancelling (see fanout.window)
        asked.add(task)
    task.cancel()
    await asyncio.sleep(0)


def cancel_asked(engine: Engine, name: str) -> bool:
    """Whether the run asked for the cancel of the asyncio task running ``name`` (a runner,
    or a fan-out element's lane): the run is stopping, ``name`` was cancelled on its own, or
    its window or ``ctx.finish()`` cancelled that lane. Else the task's own code cancelled
    the asyncio task it runs in: its failure, not the run's cancel."""
    return (
        engine._stopping
        or name in engine.scope.targeted
        or asyncio.current_task() in engine._asked_lanes.get(name, ())
    )


def cancelled_from_outside() -> bool:
    """Whether the running asyncio task is being cancelled (rather than some code in it
    raising ``CancelledError`` of its own accord)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
