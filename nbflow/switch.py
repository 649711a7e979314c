"""``flow.switch(expr, cases={...}, default=[...])``: an n-way exclusive choice.

``flow.switch("vars['mode']", cases={"full": [a, b], "quick": [c]}, default=[d])`` runs the
tasks of exactly one group: those of the case whose key equals the expression's value, or
the ``default`` group when no key does (none when there is no default). The other groups'
tasks are ``skipped``, and so are their dependants under the default trigger rule (join
after a switch with ``none_failed`` or ``one_success``, as after ``flow.branch``).

The expression is a condition string (see :mod:`nbflow.conditions`): safe, over ``vars``,
``results`` and upstream task names; the tasks it reads become upstream of every member.
Case keys are literals (str, int, float, bool or None), so the switch is plain data: it is
kept as one :class:`~nbflow.spec.BranchSpec` per group, whose expression compares the
switch's with its key (``(vars['mode']) == 'full'``; the default's is ``not in`` all keys).
So a switch needs nothing of its own to run, to hash into the flow's version, or to be
written as a flow document: it is its branches. :class:`Switch` keeps it whole for checks
and messages.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from .conditions import parse_condition
from .errors import DefinitionError, MissingDependencyError, closest
from .spec import BranchSpec

_KEY_TYPES = (str, int, float, bool, type(None))


class UnknownMemberError(MissingDependencyError):
    """A group of a switch names no task of the flow (``task`` is the switch's name)."""

    def __init__(self, switch: str, group: str, missing: str, known: Collection[str]) -> None:
        self.task, self.missing = switch, missing
        self.suggestion = closest(missing, known)
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        DefinitionError.__init__(
            self,
            f"switch {switch!r}: {group} names {missing!r}, which is not a task of this "
            f"flow{hint or '.'} Define that task, or correct the name in the switch",
        )


class Switch(BaseModel):
    """A switch as data: ``cases`` maps each key to its tasks; ``default`` the rest."""

    model_config = ConfigDict(frozen=True)

    name: str
    expression: str
    cases: dict[Any, tuple[str, ...]]
    default: tuple[str, ...] = ()

    def branches(self) -> list[BranchSpec]:
        """One branch per group: what the switch runs as (see the module docstring)."""
        found = [
            BranchSpec(
                name=f"{self.name}[{key!r}]",
                expression=f"({self.expression}) == {key!r}",
                then=members,
            )
            for key, members in self.cases.items()
        ]
        if self.default:
            keys = "".join(f"{key!r}, " for key in self.cases)
            found.append(
                BranchSpec(
                    name=f"{self.name}[default]",
                    expression=f"({self.expression}) not in ({keys})",
                    then=self.default,
                )
            )
        return found

    def check(self, known: Collection[str]) -> None:
        """Raise when a group names no task of the flow, or one the expression reads.

        Raises:
            MissingDependencyError: names the switch, the case and the unknown task, with a
                close match when there is one.
            DefinitionError: a group names a task the expression reads.
        """
        groups = [(f"case {k!r}", members) for k, members in self.cases.items()]
        readers = parse_condition(self.name, self.expression).referenced_tasks(known)
        for group, members in [*groups, ("default", self.default)]:
            for member in members:
                if member not in known:
                    raise UnknownMemberError(self.name, group, member, known)
                if member in readers:
                    raise DefinitionError(
                        f"switch {self.name!r}: {group} names {member!r}, which the switch's "
                        f"expression {self.expression!r} reads: a task cannot be chosen by "
                        "its own result; take it out of the switch, or switch on a task "
                        "upstream of it"
                    )


def make_switch(
    name: str,
    expression: str,
    cases: Mapping[Any, Sequence[str]],
    default: Sequence[str],
) -> Switch:
    """A checked :class:`Switch` (members given as names).

    Raises:
        ConditionError: the expression does not parse or uses a forbidden construct.
        DefinitionError: ``cases`` is empty or not a mapping, a key is not a literal, or a
            task is in two groups.
    """
    parse_condition(name, expression)
    if not isinstance(cases, Mapping) or not cases:
        raise DefinitionError(
            f"switch {name!r}: cases must be a mapping of values to tasks, e.g. "
            f"cases={{'full': [a, b], 'quick': [c]}}, got {cases!r}"
        )
    for key in cases:
        if not isinstance(key, _KEY_TYPES) or (isinstance(key, float) and not math.isfinite(key)):
            raise DefinitionError(
                f"switch {name!r}: case key {key!r} is not a literal; keys are str, int, "
                "float, bool or None values the expression is compared with"
            )
    seen: dict[str, str] = {}
    groups = [(f"case {k!r}", tuple(v)) for k, v in cases.items()]
    for group, members in [*groups, ("default", tuple(default))]:
        for member in members:
            if member in seen:
                raise DefinitionError(
                    f"switch {name!r}: task {member!r} is in {seen[member]} and in {group}; "
                    "a task belongs to one group of a switch"
                )
            seen[member] = group
    return Switch(
        name=name,
        expression=expression,
        cases={k: tuple(v) for k, v in cases.items()},
        default=tuple(default),
    )
