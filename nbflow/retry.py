"""Retry policies as values: :class:`Retry`, :func:`retry` and ``@policy`` decorators.

A :class:`Retry` is a frozen, comparable, printable pydantic model, so the same object describes
a task's retries, serialises into the flow spec, and retries any function on its own::

    policy = nf.Retry(max_retries=3, delay=0.05, backoff=2.0, on=(IOError,))
    page = await nf.retry(fetch_page, policy)

    @policy
    def flaky(): ...

Delays grow ``delay * backoff ** (attempt - 1)``, capped by ``max_delay``, plus a uniform random
``[0, jitter]`` seconds drawn from ``random.Random(seed)`` so a seeded policy is reproducible.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from .errors import RetryIfError

T = TypeVar("T")

ExceptionTypes = tuple[type[BaseException], ...]


def _resolve_exception(value: Any) -> type[BaseException]:
    """Accept an exception class or its name (``"ConnectionError"``, ``"mod.Error"``)."""
    if isinstance(value, type) and issubclass(value, BaseException):
        return value
    if isinstance(value, str):
        found = getattr(builtins, value, None)
        if found is None and "." in value:
            import importlib

            module, _, attr = value.rpartition(".")
            try:
                found = getattr(importlib.import_module(module), attr, None)
            except Exception:  # ImportError, or a relative name ("..x") or a module's own error
                found = None
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
        raise ValueError(f"{value!r} is not an exception class (use e.g. 'ConnectionError')")
    raise ValueError(f"{value!r} is not an exception class")


def _exception_name(cls: type[BaseException]) -> str:
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class Retry(BaseModel):
    """How often and how patiently to retry a failing call.

    ``max_retries`` counts retries, so a call runs at most ``max_retries + 1`` times.
    An error is retried when it is an instance of ``on``, not of ``not_on``, and
    ``retry_if(exc)`` (when given) returns true. ``deadline`` bounds the total seconds spent
    across attempts and delays: no new attempt starts after it.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, extra="forbid")

    max_retries: int = Field(default=3, ge=0)
    delay: float = Field(default=0.1, ge=0)
    backoff: float = Field(default=2.0, ge=1.0)
    max_delay: float = Field(default=60.0, ge=0)
    jitter: float = Field(default=0.0, ge=0)
    on: ExceptionTypes = (Exception,)
    not_on: ExceptionTypes = ()
    retry_if: Callable[[BaseException], bool] | None = Field(default=None, exclude=True)
    deadline: float | None = Field(default=None, gt=0)
    seed: int | None = None

    @field_validator("on", "not_on", mode="before")
    @classmethod
    def _coerce_exceptions(cls, value: Any) -> ExceptionTypes:
        if isinstance(value, type | str):
            value = (value,)
        if not isinstance(value, list | tuple | set | frozenset):
            # pydantic reports a ValueError with the field's path; a TypeError would escape.
            raise ValueError(
                f"{value!r} is not an exception class, a name or a list of them "
                "(use e.g. ConnectionError or ['ConnectionError', 'TimeoutError'])"
            )
        return tuple(_resolve_exception(v) for v in value)

    @field_serializer("on", "not_on")
    def _serialise_exceptions(self, value: ExceptionTypes) -> list[str]:
        return [_exception_name(v) for v in value]

    def should_retry(self, error: BaseException, task: str = "") -> bool:
        """Whether ``error`` is retryable under this policy (ignoring attempts left).

        Raises:
            RetryIfError: ``retry_if`` raised; it holds ``error`` and what ``retry_if``
                raised, and names ``task`` (the task whose error this is, if any).
        """
        if isinstance(error, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
            return False
        if self.not_on and isinstance(error, self.not_on):
            return False
        if not isinstance(error, self.on):
            return False
        if self.retry_if is None:
            return True
        try:
            return bool(self.retry_if(error))
        except Exception as failure:
            # Raised bare, the failure would replace the task's own error without a word.
            raise RetryIfError(task, error, failure) from failure

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_delay, self.delay * self.backoff ** max(0, attempt - 1))
        if self.jitter:
            base += (rng or random.Random(self.seed)).uniform(0.0, self.jitter)
        return base

    def rng(self) -> random.Random:
        """A random source for jitter: seeded when ``seed`` is set, for reproducible runs."""
        return random.Random(self.seed)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a sync or async function so each call retries under this policy."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await retry(functools.partial(fn, *args, **kwargs), self)

            return async_wrapper

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            return retry_sync(functools.partial(fn, *args, **kwargs), self)

        return sync_wrapper


def coerce_retry(value: Retry | int | dict[str, Any] | None) -> Retry | None:
    """Normalise the ``retry=`` option: an int means ``Retry(max_retries=n)``."""
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, bool):
        raise ValueError("retry must be a Retry, an int (max_retries) or None, not a bool")
    if isinstance(value, int):
        return Retry(max_retries=value)
    if isinstance(value, dict):
        return Retry(**value)
    raise ValueError(f"retry must be a Retry, an int (max_retries) or None, not {value!r}")


class RetryState:
    """Book-keeping of one retried call: attempts made and when the deadline falls.

    ``task`` names the task in a :class:`~nbflow.errors.RetryIfError` ("" outside a flow).
    """

    __slots__ = ("attempt", "deadline_at", "policy", "rng", "task")

    def __init__(self, policy: Retry, now: float, task: str = "") -> None:
        self.policy = policy
        self.task = task
        self.attempt = 0
        # Seeding a Random costs more than a retry without jitter: only when it is needed.
        self.rng = policy.rng() if policy.jitter else None
        self.deadline_at = now + policy.deadline if policy.deadline else None

    def next_delay(self, error: BaseException, now: float) -> float | None:
        """The delay before the next attempt, or None when ``error`` must not be retried.

        Raises:
            RetryIfError: the policy's ``retry_if`` raised (see :meth:`Retry.should_retry`).
        """
        policy = self.policy
        if self.attempt > policy.max_retries or not policy.should_retry(error, self.task):
            return None
        delay = policy.delay_for(self.attempt, self.rng)
        if self.deadline_at is not None and now + delay >= self.deadline_at:
            return None
        return delay


async def retry(
    fn: Callable[[], Awaitable[T]] | Callable[[], T],
    policy: Retry | int | None = None,
    *,
    on_retry: Callable[[int, BaseException, float], Any] | None = None,
) -> T:
    """Call ``fn()`` (sync or async) until it succeeds or the policy gives up.

    ``on_retry(attempt, error, delay)`` is called before each wait. The last error is raised
    unchanged when the policy gives up, so callers see the real exception.
    """
    resolved = coerce_retry(policy) or Retry()
    loop = asyncio.get_running_loop()
    state = RetryState(resolved, loop.time())
    while True:
        state.attempt += 1
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception as error:
            delay = state.next_delay(error, loop.time())
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(state.attempt, error, delay)
            await asyncio.sleep(delay)


def retry_sync(fn: Callable[[], T], policy: Retry | int | None = None) -> T:
    """Blocking twin of :func:`retry` for plain functions (used by ``@policy`` on sync code)."""
    resolved = coerce_retry(policy) or Retry()
    state = RetryState(resolved, time.monotonic())
    while True:
        state.attempt += 1
        try:
            return fn()
        except Exception as error:
            delay = state.next_delay(error, time.monotonic())
            if delay is None:
                raise
            time.sleep(delay)
