"""Middleware: the chain the engine runs (``chain``) and the built-ins (``builtin``).

``flow.use(nf.middleware.logging())``, ``flow.use(nf.middleware.validation())``,
``metrics = flow.use(nf.middleware.Metrics())``; write your own as
``async def mw(ctx, call_next)`` (see :mod:`nbflow.middleware.chain`).
"""

from __future__ import annotations

from .builtin import Logging, Metrics, TaskValidationError, Validation, logging, validation
from .chain import Context, Middleware, MiddlewareError, Next, call_with, handlers_for

__all__ = [
    "Context",
    "Logging",
    "Metrics",
    "Middleware",
    "MiddlewareError",
    "Next",
    "TaskValidationError",
    "Validation",
    "call_with",
    "handlers_for",
    "logging",
    "validation",
]
