"""Signals a task waits for: ``wait_for="approved"``, ``nf.any_of(...)``, and their checks.

A *signal* is a named value sent into a running run from outside (``handle.send("approved",
True)`` from another cell) or from one of its tasks (``nf.context().send(...)``). A task with
``wait_for=`` starts only once its signals came, and receives each as the parameter of the
same name::

    @flow.task(wait_for="approved")                 # waits for one signal
    @flow.task(wait_for=["approved", "paid"])       # waits for all of them
    @flow.task(wait_for=nf.any_of("approve", "reject"))   # the first of them (the others: None)

    review = nf.any_of("approve", "reject")         # a deferred choice between two branches:
    @flow.task(wait_for=review.on("approve"))       # runs if 'approve' comes first,
    @flow.task(wait_for=review.on("reject"))        # runs if 'reject' does; the loser is skipped

This module holds what is definition-time data: :class:`WaitFor` (the value ``wait_for=``
becomes), :func:`any_of`, and the checks that refuse a bad ``wait_for=`` before any task runs.
What happens at run time (who waits, who is woken, who loses a choice) is
:mod:`nbflow.waits`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict

from .errors import DefinitionError, NbflowError, closest

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SignalError(NbflowError, ValueError):
    """A signal sent to a run names no signal that anything in the run waits for, or the
    run is over (``handle.send``, ``nf.context().send``)."""


class WaitFor(BaseModel):
    """What a task waits for before it starts (the value of ``wait_for=``).

    Attributes:
        signals: the signals the task receives, as parameters of the same names.
        first: start at the first of ``signals`` to come (``nf.any_of``), not once all came.
        choice: the signals of the deferred choice this task is a branch of (``any_of(...)``
            or ``any_of(...).on(name)``): the first of them to come decides the choice, and a
            task waiting on another branch of it is skipped. Empty: no choice.
    """

    model_config = ConfigDict(frozen=True)

    signals: tuple[str, ...]
    first: bool = False
    choice: tuple[str, ...] = ()

    def on(self, signal: str) -> WaitFor:
        """The branch of this deferred choice that runs when ``signal`` comes first.

        ``review = nf.any_of("approve", "reject")``; ``wait_for=review.on("approve")``: the
        task waits for ``approve``, and is skipped as soon as another signal of the choice
        comes first.

        Raises:
            SignalError: ``signal`` is not one of the choice's signals (with a close match),
                or this is no ``any_of``.
        """
        if not self.choice:
            raise SignalError(f"wait_for={self.signals!r} is no choice: use nf.any_of(...).on()")
        if signal not in self.choice:
            hint = closest(str(signal), self.choice)
            raise SignalError(
                f"any_of{self.choice!r}.on({signal!r}): {signal!r} is not a signal of this "
                "choice" + (f"; did you mean {hint!r}?" if hint else "")
            )
        return WaitFor(signals=(signal,), first=False, choice=self.choice)

    def describe(self) -> str:
        """How the dashboard says what the task waits for: ``'approved'``, ``'a' or 'b'``."""
        joiner = " or " if self.first else " and "
        return joiner.join(map(repr, self.signals))

    def __repr__(self) -> str:
        if self.first:
            return f"any_of({', '.join(map(repr, self.signals))})"
        if self.choice:
            return f"any_of({', '.join(map(repr, self.choice))}).on({self.signals[0]!r})"
        return repr(self.signals[0] if len(self.signals) == 1 else list(self.signals))

    __str__ = __repr__


def any_of(*signals: str) -> WaitFor:
    """Wait for the first of ``signals`` (a deferred choice): ``wait_for=nf.any_of("approve",
    "reject")``. The task starts when one comes and receives it; the others are ``None``.
    ``any_of(...).on(name)`` is the branch of the choice that runs when ``name`` comes first.

    Raises:
        SignalError: fewer than two signals, a name that is not an identifier, or one given
            twice.
    """
    names = _checked(signals, "any_of")
    if len(names) < 2:
        raise SignalError(
            f"any_of{tuple(signals)!r} needs at least two signals to choose between; for one "
            "signal write wait_for='name'"
        )
    return WaitFor(signals=names, first=True, choice=names)


def _checked(signals: Iterable[Any], where: str) -> tuple[str, ...]:
    names = tuple(signals)
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise SignalError(
                f"{where}: signal {name!r} must be a name (a Python identifier): the task "
                "receives it as the parameter of that name"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SignalError(f"{where}: signal {twice[0]!r} is given twice")
    return names


def coerce_wait_for(value: Any) -> WaitFor | None:
    """``wait_for=``'s value as a :class:`WaitFor`: a name, a list of names (all of them),
    ``nf.any_of(...)``, or None.

    Raises:
        ValueError: anything else (pydantic names the field, the DSL the task).
    """
    if value is None or isinstance(value, WaitFor):
        return value
    if isinstance(value, dict):  # a spec read back from JSON
        return WaitFor(**value)
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(
            f"wait_for must be a signal name, a list of names or nf.any_of(...), got {value!r}"
        )
    try:
        return WaitFor(signals=_checked(value, "wait_for"))
    except SignalError as error:
        raise ValueError(str(error)) from None


def check_wait_for(
    task: str, wait: WaitFor, params: Iterable[str] | None, tasks: Iterable[str]
) -> None:
    """The rules between a task's ``wait_for`` and its function (``params``: its parameter
    names; None: not checked) and the flow (``tasks``: its task names).

    Raises:
        DefinitionError: a signal that is not a parameter of the function (with a close
            match: a misspelt signal would otherwise never be passed), or named like a task
            (its parameter would receive the task's result).
    """
    names = list(params) if params is not None else None
    for signal in wait.signals:
        if signal in tasks:
            raise DefinitionError(
                f"task {task!r} wait_for={wait!r}: signal {signal!r} is named like a task of "
                "the flow, whose result a parameter of that name receives; rename the signal"
            )
        if names is not None and signal not in names:
            hint = closest(signal, names)
            raise DefinitionError(
                f"task {task!r} wait_for={wait!r}: the task receives signal {signal!r} as its "
                f"parameter {signal!r}, which its function does not have"
                + (f"; did you mean {hint!r}?" if hint else f"; its parameters are {names}")
                + f" (add `{signal}=None` to its parameters)"
            )


def signals_of(specs: Iterable[Any]) -> frozenset[str]:
    """Every signal the tasks of ``specs`` wait for (in choices too)."""
    found: set[str] = set()
    for spec in specs:
        wait = spec.wait_for
        if wait is not None:
            found.update(wait.signals, wait.choice)
    return frozenset(found)


def check_choices(specs: Iterable[Any]) -> None:
    """Every task of one deferred choice must treat an early signal alike.

    Raises:
        DefinitionError: two tasks of one choice, one ``transient`` and one not: the first
            signal of the choice would count for one branch and not for the other.
    """
    seen: dict[frozenset[str], tuple[str, bool]] = {}
    for spec in specs:
        wait = spec.wait_for
        if wait is None or not wait.choice:
            continue
        key = frozenset(wait.choice)
        other = seen.setdefault(key, (spec.name, spec.transient))
        if other[1] != spec.transient:
            raise DefinitionError(
                f"tasks {other[0]!r} and {spec.name!r} are branches of one choice "
                f"any_of{tuple(sorted(key))!r}, but only one of them is transient=True; give "
                "both the same transient= (the choice is decided by one rule)"
            )
