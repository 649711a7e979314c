"""Middleware: functions wrapped around a whole run and around each task attempt.

A middleware is ``async def mw(ctx, call_next)``; it may inspect or change ``ctx``, call
``await call_next()`` (or not), and return (or replace) the result. ``ctx.kind`` is ``"run"``
or ``"task"``. Middleware registered first is outermost (onion order)::

    flow.use(a); flow.use(b)
    a before -> b before -> task -> b after -> a after

An object with ``async def run(ctx, call_next)`` and/or ``async def task(ctx, call_next)``
methods is wrapped only around what it defines. An exception raised by a middleware fails
that task attempt (``kind == "task"``, retried like any failure) or the run.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import NbflowError

Next = Callable[[], Awaitable[Any]]


class MiddlewareError(NbflowError, RuntimeError):
    """A run middleware failed (the original error is its ``__cause__``), or returned without
    calling ``call_next``, so the run could not go on."""


Middleware = Callable[["Context", Next], Awaitable[Any]]


@dataclass(slots=True)
class Context:
    """What a middleware sees. Changing ``inputs`` changes the call's arguments."""

    kind: str
    run_id: str
    flow: str
    variables: dict[str, Any]
    task: str | None = None
    attempt: int = 0
    element: int | None = None
    worker: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    spec: Any = None
    function: Callable[..., Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def handlers_for(middleware: list[Any], kind: str) -> list[Middleware]:
    """The callables of ``middleware`` that apply to ``kind`` (``"run"`` or ``"task"``)."""
    result: list[Middleware] = []
    for mw in middleware:
        if inspect.isfunction(mw) or inspect.ismethod(mw):
            result.append(mw)  # a plain function wraps both runs and tasks
            continue
        method = getattr(mw, kind, None)
        if callable(method):
            result.append(method)
        elif callable(mw) and not hasattr(mw, "run") and not hasattr(mw, "task"):
            result.append(mw)
    return result


async def call_with(handlers: list[Middleware], ctx: Context, innermost: Next) -> Any:
    """Run ``innermost`` wrapped by ``handlers``, the first one outermost."""
    if not handlers:
        return await innermost()

    async def step(position: int) -> Any:
        if position == len(handlers):
            return await innermost()
        return await handlers[position](ctx, lambda: step(position + 1))

    return await step(0)
