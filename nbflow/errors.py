"""Exceptions raised by nbflow.

Every error subclasses :class:`NbflowError` and the nearest built-in, so ``except ValueError``
keeps working for callers that do not know nbflow. Messages name the task, the field and the
fix; the data behind a message (a cycle, an unknown name) is kept on the exception.
"""

from __future__ import annotations

import difflib
import traceback
from collections.abc import Iterable, Sequence


class NbflowError(Exception):
    """Base class of every error raised by nbflow."""


def describe(error: BaseException | None) -> str:
    """``"ValueError: bad row"``: the type and message of any exception (``""`` for None).

    Never raises. A task may raise anything, including an exception whose ``__str__``
    raises or returns no string; formatting it must not abort the run that records it, so
    such a message reads ``<str() raised RuntimeError>`` instead.
    """
    if error is None:
        return ""
    name = _type_name(error)
    try:
        text = str(error)
        # A str subclass may override __format__ or __add__: take its plain characters.
        text = str.__str__(text)
    except Exception as failure:
        text = f"<str() raised {_type_name(failure)}>"
    return f"{name}: {text}"


def format_exception(error: BaseException | None) -> str:
    """The traceback of ``error`` as text, as Python prints it (``""`` for None).

    Never raises (see :func:`describe`); when even the traceback module fails on it, the
    text is ``describe(error)`` alone.
    """
    if error is None:
        return ""
    try:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__))
    except Exception:
        return describe(error) + "\n"


def _type_name(error: BaseException) -> str:
    try:
        return str.__str__(type(error).__name__)
    except Exception:  # a metaclass can make even the name of a type raise
        return "<exception>"


class DefinitionError(NbflowError, ValueError):
    """A flow or task definition is invalid; raised before any task runs."""


class CycleError(DefinitionError):
    """The dependencies form a cycle.

    ``cycle`` holds the task names in order, first and last the same: ``["a", "b", "a"]``.
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(
            f"tasks are in a cycle: {' -> '.join(self.cycle)}; "
            "remove one of these dependencies (a parameter name or an `after=` entry)"
        )


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate that looks most like ``name``, or None when none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class MissingDependencyError(DefinitionError):
    """A task depends on a name that is not a task of the flow."""

    def __init__(
        self, task: str, missing: str, known: Iterable[str], *, field: str = "after"
    ) -> None:
        self.task = task
        self.missing = missing
        self.suggestion = closest(missing, known)
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(
            f"task {task!r} depends on {missing!r} ({field}), "
            f"which is not a task of this flow{hint}"
        )


class MissingInputError(MissingDependencyError):
    """A required parameter is neither a task, a run variable, nor has a default."""

    def __init__(self, task: str, parameter: str, tasks: Iterable[str]) -> None:
        self.task = task
        self.missing = parameter
        self.suggestion = closest(parameter, tasks)
        hint = (
            f"did you mean task {self.suggestion!r}? Otherwise give" if self.suggestion else "give"
        )
        DefinitionError.__init__(
            self,
            f"task {task!r} parameter {parameter!r} is not a task, has no default and no run "
            f"variable supplies it; {hint} it a default or pass variables={{{parameter!r}: ...}}",
        )


class ConditionError(DefinitionError):
    """A ``when=`` condition (or another expression: ``field`` says which, e.g.
    ``complete_when``) does not parse, uses a forbidden construct or an unknown name."""

    def __init__(self, task: str, expression: str, reason: str, *, field: str = "condition"):
        self.task = task
        self.expression = expression
        self.reason = reason
        self.field = field
        shown = expression if len(expression) <= 200 else expression[:200] + "..."
        super().__init__(f"task {task!r} {field} {shown!r}: {reason}")


class TaskFailedError(NbflowError, RuntimeError):
    """Raised by :meth:`Run.raise_for_status` and by helpers when a task failed for good."""

    def __init__(self, task: str, error: BaseException | None = None, message: str | None = None):
        self.task = task
        self.error = error
        detail = message or (describe(error) if error is not None else "failed")
        super().__init__(f"task {task!r} failed: {detail}")


class RetryIfError(NbflowError, RuntimeError):
    """A retry policy's ``retry_if`` raised while judging an error, so nothing is retried.

    ``error`` is the error it was judging (the task's own, kept unchanged), ``failure`` what
    ``retry_if`` raised (also the ``__cause__``), ``task`` the task ("" outside a flow).
    """

    def __init__(self, task: str, error: BaseException, failure: BaseException) -> None:
        self.task, self.error, self.failure = task, error, failure
        who = f"task {task!r}" if task else "the call"
        super().__init__(
            f"{who} failed with {describe(error)}, and its retry_if raised {describe(failure)} "
            "deciding whether to retry it, so it was not retried; fix retry_if (the task's "
            "own error is this error's .error)"
        )


class TaskTimeoutError(NbflowError, TimeoutError):
    """One attempt of a task ran longer than its ``timeout``."""

    def __init__(self, task: str, timeout: float) -> None:
        self.task = task
        self.timeout = timeout
        super().__init__(f"task {task!r} attempt timed out after {timeout:g}s")


class CancelError(NbflowError, ValueError):
    """A request to cancel part of a run names no task or tag of it, or the task asking
    names itself (``handle.cancel("x")``, ``nf.context().cancel(tag="y")``)."""


class RunCancelledError(NbflowError, RuntimeError):
    """A run was cancelled before it finished."""


class SimulationError(NbflowError, RuntimeError):
    """A simulated run cannot go on: virtual time would have to pass infinity."""


class OverheadWarning(UserWarning):
    """A run's tasks were so short that nbflow's own per-task cost dominated its time."""


class StoreError(NbflowError, RuntimeError):
    """The state store cannot be used (corrupted, locked, from a newer schema...)."""


class UnknownVariableError(DefinitionError):
    """A run variable that nothing reads looks like a misspelling of one that something does."""

    def __init__(self, variable: str, suggestion: str) -> None:
        self.variable = variable
        self.suggestion = suggestion
        super().__init__(
            f"unknown variable {variable!r}; did you mean {suggestion!r}? No task parameter, "
            f"condition or template reads {variable!r}"
        )


class FanOutError(NbflowError, ValueError):
    """What a fan-out maps over is unusable: a source that is not iterable, sources of a
    ``nf.zip`` of unequal lengths, a ``key=`` that names two elements alike
    (:class:`DuplicateKeyError`). Raised before any task runs when the sources are run
    variables; otherwise the fan-out task fails with it."""


class DuplicateKeyError(FanOutError):
    """Two elements of a fan-out task got the same ``key=``.

    ``key`` is the duplicate, ``first`` and ``second`` the two elements' indices.
    """

    def __init__(self, task: str, key: str, first: int, second: int, expression: str) -> None:
        self.task, self.key, self.first, self.second = task, key, first, second
        super().__init__(
            f"task {task!r} key={expression}: key {key!r} is not unique: elements {first} "
            f"and {second} both have it; a key names one element (the timeline, errors and "
            "the cache use it), so make it unique, e.g. include more of the element in it"
        )
