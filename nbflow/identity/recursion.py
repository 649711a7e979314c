"""Functions and classes that reach themselves: a recursive helper, helpers that call each
other, a class whose method makes an instance of it, an enum (its members are its
attributes). Their identity is that of their group (see :mod:`nbflow.identity`).

:class:`~nbflow.identity.walk.Identities` walks what a task's function refers to depth first,
making the node (digest and parts) of each function and class from the nodes of what it
refers to. One that is reached again while its node is being made (it is *open*) stands in
by its name (``recursive:<qualname>``), so a recursion ends. The walk finds the groups of
functions and classes that reach one another as it goes (Tarjan's strongly connected
components: the node being made notes the lowest open one it met), and when the first member
of a group is made:

- every member is made again, each meeting a stand-in for every member, itself included, so
  that what a member is made of does not depend on where the walk came into the group;
- each member's digest is that of the group (every member's own, by name) and its name. An
  edit of any member changes the identity of every task that reaches any of them, whichever
  task was walked first, a task whose function is a member too (its own parts hold the
  other members by name: its identity has the group's digest as a part of its own).

A node made while it met an open one holds only while that one is open: it is never kept
across passes, and a value hashed through it is not remembered in the pass. Members of a
group are made again each pass: their nodes are not kept across passes, so that checking a
kept node's children never goes round a cycle.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any, Protocol

from .model import SEP, sha

#: "Met no open node".
_NONE = sys.maxsize


class _Made(Protocol):
    digest: str
    parts: tuple[Any, ...]
    unhashable: tuple[tuple[str, str], ...]


class Recursion:
    """The open nodes of a walk and the groups it found (a base of ``Identities``).

    ``_seen`` (id -> (object, node)) is the walk's record of the pass; ``_node_of`` makes a
    node from its parts; ``_remake`` makes a member's node again.
    """

    _seen: dict[int, tuple[Any, Any]]
    _node_of: Callable[..., Any]

    def _remake(self, obj: Any) -> Any:  # pragma: no cover - Identities defines it
        raise NotImplementedError

    def _reset_recursion(self) -> None:
        #: How many functions and classes are open (being made), one inside the other.
        self._depth = 0
        #: id -> index (depth when opened) of an open object (of a group made again: the
        #: group's).
        self._open: dict[int, int] = {}
        #: The lowest index of an open object the node being made met (``_NONE``: none).
        self._low = _NONE
        #: index of an open object -> the members of its group made so far.
        self._members: dict[int, list[Any]] = {}
        #: id of a member made -> the index of the open object its node holds while.
        self._within: dict[int, int] = {}

    def _reach(self, key: int) -> None:
        """The node being made met the object of id ``key`` (found in ``_seen``)."""
        index = self._open.get(key, self._within.get(key, _NONE))
        if index < self._low:
            self._low = index

    def _watch(self) -> int:
        """Start noting the open objects met (returns what :meth:`_unwatch` restores)."""
        outer, self._low = self._low, _NONE
        return outer

    def _unwatch(self, outer: int) -> bool:
        """Stop; whether what was made since :meth:`_watch` met no open object (so that it
        may be remembered)."""
        low = self._low
        self._low = min(outer, low)
        return low >= self._depth

    def _make(self, obj: Any, make: Callable[..., Any], *args: Any) -> tuple[Any, bool]:
        """The node of function or class ``obj``, made by ``make(*args)`` with ``obj`` open,
        and whether it may be kept across passes (False: it is in a recursive group)."""
        key = id(obj)
        index = self._depth
        self._depth += 1
        self._open[key] = index
        self._seen[key] = (obj, self._node_of(f"recursive:{_qualname(obj)}", (), ()))
        outer = self._watch()
        try:
            node = make(*args)
        finally:
            self._depth -= 1
            del self._open[key]
            low = self._low
            self._low = min(outer, low) if low != index else outer
        members = self._members.pop(index, [])
        if low < index:  # in the group of an open object: holds while that one is open
            self._members.setdefault(low, []).extend([*members, obj])
            self._within[key] = low
            self._seen[key] = (obj, node)
            return node, False
        if low == index:  # the first member of a group: made again, as a group
            return self._group([obj, *members]), False
        return node, True  # (the caller records it in _seen)

    def _group(self, members: list[Any]) -> Any:
        """Make each member of a group again and give it the group's digest (see the module
        docstring); returns the first member's node."""
        index = self._depth
        self._depth = index + 1  # the group is open: what meets a member is not kept
        for obj in members:
            self._within.pop(id(obj), None)
            self._open[id(obj)] = index
            self._seen[id(obj)] = (obj, self._node_of(f"recursive:{_qualname(obj)}", (), ()))
        outer = self._watch()
        try:
            made: list[_Made] = [self._remake(obj) for obj in members]
        finally:
            self._depth = index
            for obj in members:
                del self._open[id(obj)]
            self._low = outer
        pairs = list(zip(members, made, strict=True))
        named = sorted((_qualname(obj), node.digest) for obj, node in pairs)
        group = sha("group", *[chunk for pair in named for chunk in pair])
        names = ", ".join(sorted(_qualname(obj) for obj in members))
        bad = [(other, path, reason) for other, node in pairs for path, reason in node.unhashable]
        for obj, node in pairs:
            unhashable = node.unhashable + tuple(
                (f"{_kind(other)} {_qualname(other)}{SEP}{path}", reason)
                for other, path, reason in bad
                if other is not obj
            )
            digest = "unhashable" if unhashable else sha("group", group, _qualname(obj))
            # (Never kept across passes: it needs no children to be checked by.)
            self._seen[id(obj)] = (obj, self._node_of(digest, node.parts, unhashable, group=names))
        return self._seen[id(members[0])][1]


def _kind(obj: Any) -> str:
    return "class" if isinstance(obj, type) else "helper"


def _qualname(obj: Any) -> str:
    """A function's or class's qualified name; a module's name (read from its globals: a
    module ``__getattr__`` may raise anything for a name it does not know)."""
    if isinstance(obj, types.ModuleType):
        return str(vars(obj).get("__name__", "?"))
    return getattr(obj, "__qualname__", None) or obj.__name__
