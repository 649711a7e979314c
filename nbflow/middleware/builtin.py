"""Built-in middleware: logging, validation against type hints, and metrics.

Use them as ``flow.use(nf.middleware.logging())``, ``flow.use(nf.middleware.validation())``,
``metrics = flow.use(nf.middleware.Metrics())`` then ``metrics.frame()``.
"""

from __future__ import annotations

import logging as _logging
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NbflowError
from .chain import Context, Next

if TYPE_CHECKING:
    import pandas as pd


class Logging:
    """Logs each run and task attempt with stdlib :mod:`logging` (logger ``nbflow.tasks``)."""

    def __init__(self, logger: _logging.Logger | None = None, level: int = _logging.INFO) -> None:
        self.logger = logger or _logging.getLogger("nbflow.tasks")
        self.level = level

    async def run(self, ctx: Context, call_next: Next) -> Any:
        """Log the start and end of a run."""
        self.logger.log(self.level, "run %s of %r started", ctx.run_id, ctx.flow)
        result = await call_next()
        self.logger.log(self.level, "run %s of %r finished", ctx.run_id, ctx.flow)
        return result

    async def task(self, ctx: Context, call_next: Next) -> Any:
        """Log each attempt's start, success (with its duration) or failure."""
        label = ctx.task if ctx.element is None else f"{ctx.task}[{ctx.element}]"
        self.logger.log(self.level, "%s attempt %d started on %s", label, ctx.attempt, ctx.worker)
        started = time.perf_counter()
        try:
            result = await call_next()
        except Exception as error:
            self.logger.warning(
                "%s attempt %d failed: %s: %s", label, ctx.attempt, type(error).__name__, error
            )
            raise
        self.logger.log(
            self.level,
            "%s attempt %d succeeded in %.3fs",
            label,
            ctx.attempt,
            time.perf_counter() - started,
        )
        return result


def logging(logger: _logging.Logger | None = None, level: int = _logging.INFO) -> Logging:
    """A :class:`Logging` middleware."""
    return Logging(logger, level)


class TaskValidationError(NbflowError, TypeError):
    """A task's input or return value does not match the function's type hints."""

    def __init__(self, task: str, parameter: str, expected: Any, value: Any, detail: str) -> None:
        self.task, self.parameter, self.expected = task, parameter, expected
        # `list[float].__name__` is just "list": show generics in full.
        plain = isinstance(expected, type) and not typing.get_args(expected)
        name = expected.__name__ if plain else str(expected).replace("typing.", "")
        where = "return value" if parameter == "return" else f"parameter {parameter!r}"
        super().__init__(
            f"task {task!r} {where}: expected {name}, got {type(value).__name__} {value!r:.80}"
            f" ({detail})"
        )


class Validation:
    """Checks inputs and return values against type hints with pydantic (lax mode).

    A mismatch fails the attempt with :class:`TaskValidationError` naming the task, the
    parameter and the expected type. Values are checked, never replaced.
    """

    def __init__(self, check_return: bool = True) -> None:
        self.check_return = check_return
        self._adapters: dict[Any, dict[str, Any]] = {}

    def _for(self, fn: Callable[..., Any]) -> dict[str, Any]:
        key = getattr(fn, "__code__", fn)
        adapters = self._adapters.get(key)
        if adapters is None:
            from pydantic import TypeAdapter

            try:
                hints = typing.get_type_hints(fn)
            except Exception:  # unresolvable forward references: check nothing
                hints = {}
            adapters = {name: (hint, TypeAdapter(hint)) for name, hint in hints.items()}
            self._adapters[key] = adapters
        return adapters

    def _check(self, task: str, name: str, value: Any, entry: tuple[Any, Any]) -> None:
        from pydantic import ValidationError

        hint, adapter = entry
        try:
            adapter.validate_python(value)
        except ValidationError as error:
            detail = error.errors()[0].get("msg", "invalid") if error.errors() else "invalid"
            raise TaskValidationError(task, name, hint, value, detail) from None

    async def task(self, ctx: Context, call_next: Next) -> Any:
        """Validate inputs, call the task, validate its return value."""
        if ctx.function is None or ctx.task is None:
            return await call_next()
        adapters = self._for(ctx.function)
        for name, value in ctx.inputs.items():
            if name in adapters:
                self._check(ctx.task, name, value, adapters[name])
        result = await call_next()
        if self.check_return and "return" in adapters:
            self._check(ctx.task, "return", result, adapters["return"])
        return result


def validation(check_return: bool = True) -> Validation:
    """A :class:`Validation` middleware."""
    return Validation(check_return)


@dataclass
class _TaskFigures:
    attempts: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0
    durations: list[float] = field(default_factory=list)


class Metrics:
    """Counts attempts, successes, failures and retries per task, and their durations."""

    def __init__(self) -> None:
        self.tasks: dict[str, _TaskFigures] = {}

    async def task(self, ctx: Context, call_next: Next) -> Any:
        """Time one attempt and count its outcome."""
        figures = self.tasks.setdefault(ctx.task or "?", _TaskFigures())
        figures.attempts += 1
        figures.retries += ctx.attempt > 1  # every attempt after the first is a retry
        started = time.perf_counter()
        try:
            result = await call_next()
        except BaseException:
            figures.failed += 1
            figures.durations.append(time.perf_counter() - started)
            raise
        figures.succeeded += 1
        figures.durations.append(time.perf_counter() - started)
        return result

    def frame(self) -> pd.DataFrame:
        """A DataFrame indexed by task: attempts, succeeded, failed, retries, total/mean s."""
        import pandas as pd

        rows = [
            {
                "task": name,
                "attempts": f.attempts,
                "succeeded": f.succeeded,
                "failed": f.failed,
                "retries": f.retries,
                "total_s": sum(f.durations),
                "mean_s": sum(f.durations) / len(f.durations) if f.durations else 0.0,
            }
            for name, f in self.tasks.items()
        ]
        columns = ["task", "attempts", "succeeded", "failed", "retries", "total_s", "mean_s"]
        return pd.DataFrame(rows, columns=columns).set_index("task")
