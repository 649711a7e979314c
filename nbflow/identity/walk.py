"""The computation of identities: :class:`Identities` walks a task's function, its helpers,
classes and values, and remembers what cannot have changed (see :mod:`nbflow.identity`).

Longer than the others: it is one recursive walk whose memo rules (what a node is keyed by,
when it may be reused) must be read together to be trusted; split, they would be harder to
check, not easier.
"""

from __future__ import annotations

import collections
import enum
import functools
import operator
import os
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from .code import CodeFacts, _distribution_version, code_facts, is_library
from .model import (
    _MAX_DEPTH,
    IDENTITY_OF,
    IGNORE,
    PART_DEPTH,
    SEP,
    Identity,
    Part,
    parts_digest,
    sha,
)
from .reads import imported, resolve
from .recursion import Recursion
from .values import (
    _SCALAR_TYPES,
    _SCALARS,
    Unhashable,
    _immutable,
    _numpy_digest,
    _pandas_digest,
    _pickled,
    _state,
    _text,
    show,
)

# -- the computation ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Node:
    """A computed function's or class's digest and parts (compared by identity)."""

    digest: str
    parts: tuple[Part, ...]
    unhashable: tuple[tuple[str, str], ...]
    #: The functions, classes and modules it refers to, with their digests then.
    children: tuple[tuple[Any, str], ...] = ()
    #: Whether the next pass can check everything else it was made from (else: it is made
    #: again every pass): immutable values, and the two kinds below.
    reusable: bool = False
    #: Mutable values it was made from (a list, a dict, an object hashed by its pickle),
    #: with their content digests then: hashed again each pass (once, however many nodes
    #: read them), the node holds while each hashes alike.
    values: tuple[tuple[Any, str], ...] = ()
    #: ``functools.partial`` objects among them, with the function and arguments they held
    #: (a partial can be given others in place, with ``__setstate__``).
    partials: tuple[tuple[Any, Any, tuple[Any, ...]], ...] = ()
    #: The objects it was made from: held, so that the ``id()``s in its key stay theirs.
    pins: tuple[Any, ...] = ()
    #: The last pass that used it / that checked its children.
    used: int = 0
    checked: int = 0
    #: Identities of tasks calling it, by the digest of their options.
    tasks: dict[str, Identity] | None = None
    #: The members of its recursive group, by name ("": in none; see recursion.py).
    group: str = ""
    #: The environment variables it read, with their values then (None: unset).
    environ: tuple[tuple[str, str | None], ...] = ()
    #: A short rendering (a module's: its name and digest).
    shown: str = ""


class Identities(Recursion):
    """Computes task identities for one flow; remembers what cannot have changed.

    One instance per flow (no process-wide state). Call :meth:`begin` before a set of
    computations that should see one moment (a run's start) and :meth:`end` after it: what the
    pass did not use is dropped then, so redefined functions do not accumulate.

    A function's node is remembered under the identities (``id()``) of what it is made from:
    its code, defaults, closure contents and the objects its global names are bound to. The
    node holds those objects (``pins``), so none of the ids can be reused by another object
    while the entry exists: the key means "these very objects", which equality could not
    say (``1 == True``, an equal but distinct list). The next pass reuses the node when the
    same objects are found, the functions, classes and modules among them still have the
    digests they had, the partials among them hold the function and arguments they held,
    and the mutable values among them (lists, dicts, objects hashed by their pickle) hash
    as they did, hashed again for it (once a pass, however many nodes read one). Any other
    value (a bound method, a wrapper) has the node made again each pass. Closures made by
    one factory from the same values share one node. Functions and classes that reach
    themselves are identified as a group (:mod:`nbflow.identity.recursion`), and a node is
    checked as it is made: with its function or class open, so that a check that comes
    round to it meets its stand-in and the group is found.
    """

    _node_of = _Node

    def __init__(self) -> None:
        # Code facts by the code object's id (the object held): two code objects that
        # compare equal (the same bytecode) may come from sources that differ, as by a
        # parameter's annotation, which the facts see.
        self._code: dict[int, tuple[CodeFacts, list[int], types.CodeType]] = {}
        self._nodes: dict[tuple[int, ...], _Node] = {}
        self._versions: dict[str, str] = {}  # top-level module -> its distribution's version
        self._library: dict[str, bool] = {}
        # The current pass: id -> (the object, its node or digest); the object is held.
        self._seen: dict[int, tuple[Any, Any]] = {}
        # Digests of the values this pass read, by id (the value pinned): an object several
        # tasks close over (a config, a shared counter) is hashed once per pass, not per task.
        self._values: dict[int, tuple[Any, str]] = {}
        self._scalars: dict[tuple[type, Any], str] = {}  # elements' digests (value_digest)
        self._pass = 0
        self._active = 0
        self._reading = False  # value_digest() is reading one value, outside a pass
        self._walking: set[int] = set()  # ids of the values being hashed (to see cycles)
        self._reset_recursion()

    # -- passes ---------------------------------------------------------------------------------

    def begin(self) -> None:
        """Start a pass: values are read from now on as they are at this moment."""
        if self._active == 0:
            self._seen, self._values, self._scalars = {}, {}, {}
            self._reset_recursion()
            self._pass += 1
        self._active += 1

    def end(self) -> None:
        """End a pass; forget what it did not use."""
        self._active -= 1
        if self._active == 0:
            now = self._pass
            self._nodes = {k: n for k, n in self._nodes.items() if n.used == now}
            self._code = {c: f for c, f in self._code.items() if f[1][0] == now}
            self._seen, self._values, self._scalars = {}, {}, {}
            self._reset_recursion()

    # -- tasks ------------------------------------------------------------------------------------

    def task(self, fn: Callable[..., Any], options: tuple[tuple[str, Any], ...] = ()) -> Identity:
        """The identity of a task calling ``fn``, with ``options`` as ``(name, value)`` parts."""
        return self.tasks([(fn, options)])[0]

    def tasks(
        self, calls: Iterable[tuple[Callable[..., Any], tuple[tuple[str, Any], ...]]]
    ) -> list[Identity]:
        """The identities of tasks, each ``(function, options)``, all as of one moment.

        Tasks of one flow share options objects: pass the same tuple for tasks with the same
        options, and it is hashed once.
        """
        self.begin()
        try:
            found: list[Identity] = []
            # Tasks defined in a loop follow each other with the same code, globals and
            # options, and often the same defaults and closure contents: such a task has the
            # identity of the one before it (within a pass, the same objects are the same
            # values; the same globals dict binds the same names to the same objects). Seen
            # in a few attribute reads, where finding the node of its function takes ~1 µs.
            last: Identity | None = None
            code = scope = defaults = options_before = None
            cells: tuple[Any, ...] = ()
            for fn, options in calls:
                if type(fn) is not types.FunctionType or IDENTITY_OF in fn.__dict__:
                    last = None
                    found.append(self._task(fn, options))
                    continue
                try:
                    if (
                        last is not None
                        and fn.__code__ is code  # so as many closure cells as before
                        and fn.__globals__ is scope
                        and fn.__defaults__ is defaults
                        and options is options_before
                        and not fn.__kwdefaults__
                        and all(map(operator.is_, map(_CONTENTS, fn.__closure__ or ()), cells))
                    ):
                        found.append(last)
                        continue
                except ValueError:  # a closure cell not bound yet: the long way
                    pass
                last = self._known(fn, options) or self._task(fn, options)
                found.append(last)
                if fn.__kwdefaults__:  # a dict, changed in place: not compared
                    last = None
                code, scope, defaults = fn.__code__, fn.__globals__, fn.__defaults__
                options_before, cells = options, _cells(fn)
            return found
        finally:
            self.end()

    def _known(
        self, fn: types.FunctionType, options: tuple[tuple[str, Any], ...]
    ) -> Identity | None:
        """The identity of a task whose node holds (checked now if this pass has not yet)
        and knows the task's options, else None.

        What :meth:`_function` and :meth:`_task` do for such a task, in one step: each task
        comes here once per run.
        """
        facts = self._code.get(id(fn.__code__))
        if facts is None:
            return None
        node = self._nodes.get(tuple(map(id, self._pins(fn, facts[0]))))
        if node is None or not node.tasks or not self._still_valid(node):
            return None
        seen = self._seen.get(id(options))
        identity = node.tasks.get(seen[1][0]) if seen is not None else None
        if identity is not None:
            node.used = facts[1][0] = self._pass
        return identity

    def _task(self, fn: Callable[..., Any], options: tuple[tuple[str, Any], ...]) -> Identity:
        # A function nbflow generated for a task stands for what it calls (the rest of what it
        # does is in the task's spec): a data flow's task is identified by its action.
        fn = getattr(fn, IDENTITY_OF, fn)
        seen = self._seen.get(id(options))
        if seen is None:
            option_parts: list[Part] = []
            option_bad: list[tuple[str, str]] = []
            for name, value in options:
                self._value_parts(f"option {name}", value, option_parts, option_bad, 0)
            summary = parts_digest(option_parts)
            seen = self._seen[id(options)] = (options, (summary, option_parts, option_bad))
        options_digest, option_parts, option_bad = seen[1]
        node = self._function(fn) if type(fn) is types.FunctionType else None
        if node is not None and node.tasks is not None:
            found = node.tasks.get(options_digest)
            if found is not None:
                return found
        parts: list[Part] = []
        bad: list[tuple[str, str]] = []
        self._callable_parts(fn, parts, bad)
        ignored = dict(options).get(IGNORE)
        if ignored:
            parts = [p for p in parts if not _ignored(p.path, ignored)]
            bad = [b for b in bad if not _ignored(b[0], ignored)]
        parts += option_parts
        bad += option_bad
        digest = None if bad else parts_digest(parts)
        identity = Identity(digest, tuple(parts), tuple(bad))
        if node is not None and node.reusable and not option_bad:
            if node.tasks is None:
                node.tasks = {}
            node.tasks[options_digest] = identity
        return identity

    def _callable_parts(self, fn: Any, parts: list[Part], bad: list[tuple[str, str]]) -> None:
        if isinstance(fn, types.FunctionType):
            node = self._function(fn)
            bad.extend(node.unhashable)
            parts.extend(node.parts)  # its own parts: the task is this function
            if node.group:  # they hold the other members by name: the group's digest counts
                parts.append(Part(f"group {node.group}", node.digest))
        elif isinstance(fn, functools.partial):
            self._callable_parts(fn.func, parts, bad)
            for i, arg in enumerate(fn.args):
                self._value_parts(f"argument {i}", arg, parts, bad, 0)
            for key in sorted(fn.keywords):
                self._value_parts(f"argument {key}", fn.keywords[key], parts, bad, 0)
            if len(fn.keywords) > 1:  # a function taking **kwargs sees them in this order
                order = ", ".join(fn.keywords)
                parts.append(Part("keywords", sha("keywords", *fn.keywords), order))
        elif isinstance(fn, types.MethodType):
            self._callable_parts(fn.__func__, parts, bad)
            self._value_parts("instance", fn.__self__, parts, bad, 0)
        elif hasattr(fn, "__wrapped__") and is_library(type(fn).__module__):
            self._callable_parts(fn.__wrapped__, parts, bad)
        elif isinstance(fn, types.BuiltinFunctionType):
            parts.append(self._builtin_part("source", fn))
            owner = getattr(fn, "__self__", None)
            if not isinstance(owner, types.ModuleType | type(None)):
                self._value_parts("instance", owner, parts, bad, 0)
        elif isinstance(fn, type):
            self._value_parts("source", fn, parts, bad, 0)
        else:  # a callable object: its class, and its own state
            self._value_parts(f"class {type(fn).__qualname__}", type(fn), parts, bad, 0)
            # (One of a library's, like operator.itemgetter(1), keeps it where only its
            # pickle sees it.)
            state = _state(fn) if self._plain_object(type(fn)) else fn
            self._value_parts("instance", state, parts, bad, 0)

    # -- functions and classes --------------------------------------------------------------------

    def facts(self, code: types.CodeType) -> CodeFacts:
        """:func:`code_facts`, remembered."""
        found = self._code.get(id(code))
        if found is None:
            found = self._code[id(code)] = (code_facts(code), [self._pass], code)
        else:
            found[1][0] = self._pass
        return found[0]

    def _function(self, fn: types.FunctionType) -> _Node:
        seen = self._seen.get(id(fn))
        if seen is not None:
            if self._depth:  # (at the top, nothing is open: nothing to note)
                self._reach(id(fn))
            return seen[1]
        facts = self.facts(fn.__code__)
        pins = self._pins(fn, facts)
        return self._kept(fn, pins, self._make_function, fn, facts)

    def _pins(self, fn: types.FunctionType, facts: CodeFacts) -> tuple[Any, ...]:
        """What the node of ``fn`` is made from, as bound now (see :class:`Identities`):
        its code, defaults, closure contents, the objects its global names are bound to,
        the attributes it reads from user modules among them (a module reloaded is the
        same object, its functions new ones) and the modules its body imports."""
        pins = _pins(fn, facts.global_names)
        if facts.attributes:
            scope = fn.__globals__
            for name, attrs in facts.attributes:
                root = scope.get(name)
                if isinstance(root, types.ModuleType) and not self._is_library(root.__name__):
                    pins += (_attribute(root, attrs)[0],)
        if facts.imports:
            pins += tuple(m for _, m in imported(facts.imports, fn.__globals__)[0])
        return pins

    def _kept(
        self, obj: Any, pins: tuple[Any, ...], make: Callable[..., _Node], *args: Any
    ) -> _Node:
        """The node of function or class ``obj``, made from ``pins`` (see the class
        docstring): the one kept from an earlier pass if it still holds, else
        ``make(*args)``. A kept node is checked as it would be made, with ``obj`` open: a
        check that comes round to ``obj`` (through a value changed in place to hold it)
        meets its stand-in, so the check fails and the group is found, where it would
        recurse without end."""
        key = tuple(map(id, pins))
        node = self._nodes.get(key)
        if node is None or node.checked != self._pass or not node.reusable:
            node, lasting = self._make(obj, self._check_or_make, node, pins, make, args)
            if not lasting:  # in a recursive group: made again next pass
                return node
            self._nodes[key] = node
        node.used = self._pass
        self._seen[id(obj)] = (obj, node)
        return node

    def _check_or_make(
        self, node: _Node | None, pins: tuple[Any, ...], make: Callable[..., _Node], args: Any
    ) -> _Node:
        if node is not None and self._still_valid(node):
            return node
        node = make(*args)
        node.pins, node.checked = pins, self._pass
        return node

    def _still_valid(self, node: _Node) -> bool:
        """Whether a remembered node holds: reusable, its children unchanged, its partials
        holding what they held, and its mutable values hashing as they did."""
        if not node.reusable:
            return False
        if node.checked != self._pass:
            for partial, func, args in node.partials:
                if partial.func is not func or partial.args is not args or partial.keywords:
                    return False
            for child, digest in node.children:
                if self._digest_of(child) != digest:
                    return False
            for value, digest in node.values:
                try:
                    if self.value_digest(value) != digest:
                        return False
                except Unhashable:
                    return False
            for key, value in node.environ:
                if os.environ.get(key) != value:
                    return False
            node.checked = self._pass
        return True

    def _digest_of(self, value: Any) -> str:
        if isinstance(value, types.FunctionType):
            return self._function(value).digest
        if isinstance(value, type):
            return self._class(value).digest
        return self._module(value).digest

    def _make_function(self, fn: types.FunctionType, facts: CodeFacts) -> _Node:
        code = fn.__code__
        cells = _cells(fn)
        refs = tuple(map(fn.__globals__.get, facts.global_names, repeat(_UNDEFINED)))
        parts: list[Part] = [Part("source", facts.digest)]
        bad: list[tuple[str, str]] = []
        leaves: list[Any] = []
        defaults = fn.__defaults__ or ()
        positional = code.co_varnames[: code.co_argcount]
        for name, value in zip(
            positional[len(positional) - len(defaults) :], defaults, strict=True
        ):
            self._value_parts(f"default {name}", value, parts, bad, 1, leaves)
        for name, value in sorted((fn.__kwdefaults__ or {}).items()):
            self._value_parts(f"default {name}", value, parts, bad, 1, leaves)
        for name, value in zip(code.co_freevars, cells, strict=True):
            if value is not _EMPTY and name not in facts.write_only:
                self._value_parts(f"closure {name}", value, parts, bad, 1, leaves)
        attributes: dict[str, list[tuple[str, ...]]] = {}
        for name, attrs in facts.attributes:
            attributes.setdefault(name, []).append(attrs)
        for name, value in zip(facts.global_names, refs, strict=True):
            if value is _UNDEFINED:
                if not hasattr(_builtins(fn), name):
                    parts.append(Part(f"global {name}", "undefined", "undefined"))
                continue
            if value is os.environ:  # the variables read count (or it cannot be seen)
                continue
            if (
                isinstance(value, types.ModuleType)
                and name not in facts.whole
                and name in attributes
                and not self._is_library(value.__name__)
            ):
                # A user module read only through its globals: what is read counts (a
                # reloaded module's new functions), not the whole module.
                reads = [_attribute(value, attrs) for attrs in attributes[name]]
                if all(found is not _NOT_GLOBAL for found, _ in reads):
                    for found, used in reads:
                        path = ".".join((name, *used))
                        if found is _UNDEFINED:
                            parts.append(Part(f"global {path}", "undefined", "undefined"))
                        else:
                            self._value_parts(f"global {path}", found, parts, bad, 1, leaves)
                    continue
            self._value_parts(f"global {name}", value, parts, bad, 1, leaves)
        environ: tuple[tuple[str, str | None], ...] = ()
        if facts.imports or facts.reads:
            modules, local = imported(facts.imports, fn.__globals__)
            for module_name, module in modules:
                if module is not None:
                    self._value_parts(f"import {module_name}", module, parts, bad, 1, leaves)
                elif self._is_library(module_name):
                    version = self._module_version(module_name)
                    parts.append(Part(f"import {module_name}", sha("module", module_name,
                                      version), f"{module_name} {version}".strip()))  # fmt: skip
                else:
                    bad.append((f"imports {module_name}", _NOT_LOADED))
            keys, blind = resolve(facts.reads, fn.__globals__, local)
            environ = tuple((key, os.environ.get(key)) for key in keys)
            for key, value in environ:
                parts.append(Part(f"environment {key}", sha("environ", repr(value)), repr(value)))
            bad += blind
        node = self._node(parts, bad, leaves)
        node.environ = environ
        return node

    def _node(self, parts: list[Part], bad: list[tuple[str, str]], leaves: list[Any]) -> _Node:
        found: list[Any] = []
        values: list[tuple[Any, str]] = []
        partials: list[tuple[Any, Any, tuple[Any, ...]]] = []
        reusable = not bad and all([self._checkable(v, found, values, partials) for v in leaves])
        # (A node that is not reusable is never checked: it needs no children.)
        children = tuple((v, self._digest_of(v)) for v in found) if reusable else ()
        digest = parts_digest(parts) if not bad else "unhashable"
        return _Node(
            digest, tuple(parts), tuple(bad), children, reusable, tuple(values), tuple(partials)
        )

    def _checkable(
        self,
        value: Any,
        children: list[Any],
        values: list[tuple[Any, str]],
        partials: list[tuple[Any, Any, tuple[Any, ...]]],
    ) -> bool:
        """Sort ``value``, something a node was made from, by how the next pass checks it
        (a child's digest, a partial's contents, a mutable value's content digest); False:
        it cannot be checked. It follows :meth:`_value_parts`, so that what is checked is
        what the node's part of ``value`` was made from."""
        if _is_child(value):
            children.append(value)
            return True
        if _immutable(value) or _builtin_by_name(value):
            return True
        if type(value) is functools.partial:  # its function and arguments: _callable_parts
            if value.keywords:
                return False
            partials.append((value, value.func, value.args))
            inside = (value.func, *value.args)
            return all([self._checkable(v, children, values, partials) for v in inside])
        if callable(value) and _is_code_like(value):  # bound methods, wrappers...
            return False
        known = self._values.get(id(value))  # hashed by content this pass: value_digest
        if known is None or known[0] is not value:
            return False
        values.append(known)
        return True

    def _class(self, cls: type) -> _Node:
        seen = self._seen.get(id(cls))
        if seen is not None:
            if self._depth:
                self._reach(id(cls))
            return seen[1]
        if not self._is_library(cls.__module__):
            items, bases = _class_items(cls)
            pins = (cls, *bases, *(v for _, v in items))
            return self._kept(cls, pins, self._make_class, cls, items, bases)
        version = self._module_version(cls.__module__)
        node = _Node(sha("class", cls.__module__, cls.__qualname__, version), (), ())
        self._seen[id(cls)] = (cls, node)
        return node

    def _remake(self, obj: Any) -> _Node:
        """The node of a function, class or module made again (a member of a recursive
        group)."""
        if isinstance(obj, type):
            return self._make_class(obj, *_class_items(obj))
        if isinstance(obj, types.ModuleType):
            return self._make_module(obj, _module_items(obj))
        return self._make_function(obj, self.facts(obj.__code__))

    def _make_class(
        self,
        cls: type,
        items: tuple[tuple[str, Any], ...],
        bases: tuple[type, ...],
    ) -> _Node:
        parts: list[Part] = [Part("name", sha(cls.__qualname__), cls.__qualname__)]
        bad: list[tuple[str, str]] = []
        leaves: list[Any] = []
        for base in bases:
            self._value_parts(f"base {base.__qualname__}", base, parts, bad, 1, leaves)
        for name, value in items:
            method = isinstance(value, types.FunctionType | staticmethod | classmethod | property)
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            elif isinstance(value, property):
                value = (value.fget, value.fset, value.fdel)
            kind = "method" if method else "attribute"  # (a tuple is an attribute)
            self._value_parts(f"{kind} {name}", value, parts, bad, 1, leaves)
        return self._node(parts, bad, leaves)

    def _module(self, module: types.ModuleType) -> _Node:
        """A library module by its name and version; a module of user code by the code and
        values it holds now (loaded, whatever its file says now: see :meth:`_make_module`)."""
        name = module.__name__
        seen = self._seen.get(id(module))
        if seen is not None:
            if self._depth:
                self._reach(id(module))
            return seen[1]
        if self._is_library(name):
            version = self._module_version(name)
            node = _Node(sha("module", name, version), (), (), shown=f"{name} {version}".strip())
        elif name == "__main__":  # the notebook's namespace: any of its globals
            node = _Node("unhashable", (), (("", _MAIN),), shown=name)
        else:
            items = _module_items(module)
            pins = (module, *(x for item in items for x in item))
            node = self._kept(module, pins, self._make_module, module, items)
            node.shown = f"{name} (code {node.digest[:8]})"
            return node
        self._seen[id(module)] = (module, node)
        return node

    def _make_module(self, module: types.ModuleType, items: tuple[tuple[str, Any], ...]) -> _Node:
        """The node of a module of user code: its globals as bound now, each as a task's
        global counts (functions and classes by their code, as loaded; the user modules it
        imports by theirs, recursively; values by content)."""
        parts: list[Part] = [Part("name", sha(module.__name__), module.__name__)]
        bad: list[tuple[str, str]] = []
        leaves: list[Any] = []
        for name, value in items:
            self._value_parts(f"global {name}", value, parts, bad, 1, leaves)
        return self._node(parts, bad, leaves)

    def _is_library(self, module_name: str) -> bool:
        found = self._library.get(module_name)
        if found is None:
            found = self._library[module_name] = is_library(module_name)
        return found

    def _module_version(self, module_name: str) -> str:
        top = module_name.partition(".")[0]
        if top in sys.stdlib_module_names:
            return sys.version.split()[0]
        found = self._versions.get(top)
        if found is None:
            # The version of the code loaded, when the package says (a newer install that
            # is not imported yet does not count), else its distribution's.
            module = sys.modules.get(top)
            found = str(getattr(module, "__version__", "") or "") or _distribution_version(top)
            self._versions[top] = found
        return found

    # -- values ---------------------------------------------------------------------------------

    def _node_parts(
        self, path: str, node: _Node, parts: list[Part], depth: int, shown: str = ""
    ) -> None:
        """One part for a function, class or module, and its parts under ``path`` down to
        :data:`PART_DEPTH` (so that a change in them can be told: ``helper `f`: global `K```)."""
        parts.append(Part(path, node.digest, shown))
        parts.extend(
            Part(f"{path}{SEP}{p.path}", p.digest, p.shown)
            for p in node.parts
            if p.path.count(SEP) + 1 + depth <= PART_DEPTH
        )

    def _value_parts(
        self,
        path: str,
        value: Any,
        parts: list[Part],
        bad: list[tuple[str, str]],
        depth: int,
        leaves: list[Any] | None = None,
    ) -> None:
        """Append the part(s) of ``value`` at ``path``; note an unhashable one in ``bad``."""
        if leaves is not None:
            leaves.append(value)
        kind, _, name = path.partition(" ")
        if isinstance(value, types.FunctionType):
            if self._is_library(value.__module__):
                version = self._module_version(value.__module__)
                parts.append(Part(path, sha("function", value.__module__, value.__qualname__,
                                            version), value.__qualname__))  # fmt: skip
            else:
                node = self._function(value)
                bad.extend((f"{path}{SEP}{p}", r) for p, r in node.unhashable)
                self._node_parts(f"helper {name}" if kind == "global" else path, node, parts, depth)
            return
        if isinstance(value, type):
            node = self._class(value)
            bad.extend((f"{path}{SEP}{p}", r) for p, r in node.unhashable)
            if node.parts:
                self._node_parts(f"class {name}" if kind == "global" else path, node, parts, depth)
            else:
                parts.append(Part(path, node.digest, value.__qualname__))
            return
        if isinstance(value, types.ModuleType):
            node = self._module(value)
            bad.extend((f"{path}{SEP}{p}" if p else path, r) for p, r in node.unhashable)
            where = f"module {name}" if kind == "global" else path
            self._node_parts(where, node, parts, depth, node.shown)
            return
        if _builtin_by_name(value):
            parts.append(self._builtin_part(path, value))
            return
        if callable(value) and not isinstance(value, _SCALARS) and _is_code_like(value):
            sub: list[Part] = []
            self._callable_parts(value, sub, bad)
            parts.append(Part(path, parts_digest(sub), show(value)))
            return
        try:
            digest = self.value_digest(value)
        except Unhashable as error:
            bad.append((path, str(error)))
            parts.append(Part(path, "unhashable", show(value)))
            return
        parts.append(Part(path, digest, show(value)))

    def _builtin_part(self, path: str, fn: Any) -> Part:
        module = getattr(fn, "__module__", None) or type(getattr(fn, "__self__", None)).__module__
        qualname = getattr(fn, "__qualname__", None) or fn.__name__
        version = self._module_version(module or "builtins")
        return Part(path, sha("builtin", str(module), qualname, version), qualname)

    def value_digest(self, value: Any, depth: int = 0) -> str:
        """A stable content hash of ``value`` (see the module docstring).

        Raises:
            Unhashable: ``value`` cannot be hashed (say why).
        """
        kind = type(value)
        if kind in _SCALAR_TYPES:
            if depth and kind in _ALIKE:
                # An element, remembered for the pass by type and value where equal values
                # of a type are alike (not floats: 0.0 == -0.0): a list of counters hashes
                # each number once.
                found = self._scalars.get((kind, value))
                if found is None:
                    found = self._scalars[kind, value] = _scalar_digest(value, kind)
                return found
            return _scalar_digest(value, kind)
        if depth > _MAX_DEPTH:
            named: list[Any] = []
            return self._with_code(_pickled(value, named), named)
        known = self._values.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        if not self._active and not self._reading:
            # Outside a pass (a run's variables): the memo of values lasts for this value,
            # so that a part it holds several times is hashed once (else: 2^n for n levels).
            self._reading = True
            try:
                return self.value_digest(value, depth)
            finally:
                self._reading, self._values, self._scalars = False, {}, {}
        # The values being walked, from this value down (a value of a class or a function
        # met on the way starts its own walk: those end with the memo of the pass).
        outer = self._walking
        if not depth:
            self._walking = set()
        if id(value) in self._walking:
            raise _Cycle  # a value that holds itself: see below
        self._walking.add(id(value))
        outer_low = self._watch()
        try:
            digest = self._content_digest(value, kind, depth)
        except _Cycle:
            if depth:
                raise
            # A cycle (a tree whose nodes know their parent): by the pickle of the whole,
            # which follows each object once, where a walk would follow every path.
            names: list[Any] = []
            digest = self._with_code(_pickled(value, names), names)
        finally:
            self._walking.discard(id(value))
            self._walking = outer
            lasting = self._unwatch(outer_low)
        # Within a pass (or one value's reading), a value cannot change between two reads;
        # one hashed through a function or class being made holds only while it is.
        if lasting:
            self._values[id(value)] = (value, digest)
        return digest

    def _content_digest(self, value: Any, kind: type, depth: int) -> str:
        if kind in _CONTAINERS:
            return self._container_digest(value, kind, depth)
        if isinstance(value, _CONTAINER_BASES):
            # A subclass (OrderedDict, defaultdict, Counter, a namedtuple, one of yours):
            # its class, its contents as its builtin base's, and its own state (a
            # defaultdict's default_factory, attributes of yours).
            base = next(b for b in kind.__mro__ if b in _CONTAINERS)
            kept: list[Any] = [_state(value), None, None]
            if isinstance(value, collections.defaultdict):
                kept[1] = value.default_factory
            if isinstance(value, collections.OrderedDict):  # (its order is not the dict's)
                kept[2] = list(collections.OrderedDict.keys(value))
            return sha(
                "subclass",
                self.value_digest(kind, depth + 1),
                self._container_digest(value, base, depth),
                self.value_digest(kept, depth + 1),
            )
        if kind is collections.ChainMap:  # its mappings, in their order
            return sha("ChainMap", self.value_digest(value.maps, depth + 1))
        if isinstance(value, enum.Enum):
            return sha("enum", self._code_digest(kind), value.name)
        if isinstance(value, types.ModuleType):
            return self._code_digest(value)
        if isinstance(value, types.FunctionType | type):
            if self._is_library(value.__module__):  # as _value_parts: by name and version
                version = self._module_version(value.__module__)
                return sha("code", value.__module__, value.__qualname__, version)
            return self._code_digest(value)
        if kind is types.MethodType:
            # By its function and its instance (its pickle, getattr(instance, name), holds
            # neither a function foreign to the class nor that function's code).
            return sha(
                "method",
                self.value_digest(value.__func__, depth + 1),
                self.value_digest(value.__self__, depth + 1),
            )
        if kind is staticmethod or kind is classmethod:  # (they do not pickle)
            return sha(kind.__name__, self.value_digest(value.__func__, depth + 1))
        if kind is functools.partial:  # as _callable_parts: its function and arguments
            return sha(
                "partial",
                self.value_digest(value.func, depth + 1),
                self.value_digest(value.args, depth + 1),
                self.value_digest(value.keywords, depth + 1),
                self.value_digest(vars(value), depth + 1),
            )
        if self._plain_object(kind):
            # An instance of a class of user code, pickled the default way: by its class's
            # identity (its code) and its state, walked like any value (so that a set or a
            # dict in it counts by content, not by the order a pickle would list it in).
            node_digest = self._code_digest(kind)
            return sha("object", node_digest, self.value_digest(_state(value), depth + 1))
        named: list[Any] = []
        module = kind.__module__.partition(".")[0]
        if module == "numpy":
            digest = _numpy_digest(value, named)
        elif module == "pandas":
            element = functools.partial(self.value_digest, depth=depth + 1)
            digest = _pandas_digest(value, named, element)
        else:
            digest = _pickled(value, named)
        return self._with_code(digest, named)

    def _container_digest(self, value: Any, kind: type, depth: int) -> str:
        """The digest of a list, tuple, dict, set or frozenset's contents (``kind``). A dict
        counts in its order, as a list or a tuple does: code can see it (``list(d)``,
        ``next(iter(d))``), so ``{"b": 2, "a": 1}`` is not ``{"a": 1, "b": 2}``. A set
        counts in no order: its order is its elements' hashes', which for strings changes
        with each process (``PYTHONHASHSEED``), not something code means to read."""
        # (Read through the builtin's own methods: a subclass's may say otherwise.)
        if kind is dict:
            pairs = dict.items(value)
            return sha("dict", *[self.value_digest(x, depth + 1) for pair in pairs for x in pair])
        builtin: Any = kind
        elements = [self.value_digest(v, depth + 1) for v in builtin.__iter__(value)]
        if kind is set or kind is frozenset:
            elements.sort()
        return sha(kind.__name__, *elements)

    def _plain_object(self, kind: type) -> bool:
        """Whether instances of ``kind`` are user code's plain objects: every class of its
        MRO is user code, and none changes how an instance pickles (its state is then its
        ``__dict__`` and slots)."""
        return (
            kind.__reduce_ex__ is object.__reduce_ex__
            and kind.__reduce__ is object.__reduce__
            and kind.__getstate__ is object.__getstate__
            and all(c is object or not self._is_library(c.__module__) for c in kind.__mro__)
        )

    def _with_code(self, digest: str, named: list[Any]) -> str:
        """``digest`` of a pickle, with the identity of the user code it names: a pickle
        names a class or a function and does not hold its code, so an instance of a class
        whose method was edited would pickle as before (a stale result)."""
        found = [self._code_digest(c) for c in named if not self._is_library(c.__module__)]
        return sha(digest, *found) if found else digest

    def _code_digest(self, code: Any) -> str:
        """The digest of a user function or class that a value holds or names.

        Raises:
            Unhashable: it has none (a part of it cannot be hashed: its node's digest, a
                mark, would not follow what it is made from).
        """
        is_class = isinstance(code, type)
        if isinstance(code, types.ModuleType):
            node, kind, name = self._module(code), "module", code.__name__
        else:
            node = self._class(code) if is_class else self._function(code)
            kind, name = ("class" if is_class else "function"), code.__qualname__
        if node.unhashable:
            path, reason = node.unhashable[0]
            raise Unhashable(f"its {kind} {name} cannot be hashed ({path}: {reason})")
        return node.digest


#: Class attributes that Python and libraries keep for themselves (caches: pickling an
#: instance adds ``__slotnames__``, ``isinstance`` against an ABC changes ``_abc_impl``).
_CLASS_NOISE = frozenset({"_abc_impl"})

#: Builtin containers, hashed by their contents (see Identities._container_digest).
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_CONTAINER_BASES = (list, tuple, dict, set, frozenset)

#: Scalar types whose equal values are alike (one digest): see value_digest.
_ALIKE = frozenset({int, str, bytes, bool, type(None)})


class _Cycle(Exception):
    """A value holds itself (see :meth:`Identities.value_digest`)."""


def _class_items(cls: type) -> tuple[tuple[tuple[str, Any], ...], tuple[type, ...]]:
    """What a user class's node is made from: its attributes that count, and its bases."""
    items = tuple((k, v) for k, v in sorted(vars(cls).items()) if _counts(k, v))
    return items, tuple(b for b in cls.__bases__ if b is not object)


def _scalar_digest(value: Any, kind: type) -> str:
    return sha(kind.__name__, value if kind is str or kind is bytes else _text(value))


def _counts(name: str, value: Any) -> bool:
    """Whether a class attribute is part of the class's identity: its methods (dunder ones
    included) and its own data attributes, not the bookkeeping of Python or a library (nor
    the descriptors of ``__slots__``, which do not pickle)."""
    if name in _CLASS_NOISE or isinstance(value, types.MemberDescriptorType):
        return False  # a slot's descriptor: its values are the instances' state
    if name.startswith("__") and name.endswith("__"):
        return isinstance(value, types.FunctionType | staticmethod | classmethod | property)
    return True


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_UNDEFINED = _Marker("<undefined>")
_EMPTY = _Marker("<empty cell>")


def _module_items(module: types.ModuleType) -> tuple[tuple[str, Any], ...]:
    """What a user module's node is made from: its globals that count (as a class's)."""
    return tuple((k, v) for k, v in sorted(vars(module).items()) if _counts(k, v))


def _attribute(module: types.ModuleType, attrs: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """``(value, attributes followed)``: ``attrs`` read from ``module`` through modules
    only (an attribute of another object could run code to be read: that object counts).
    The value is :data:`_NOT_GLOBAL` when a module on the way may make it up rather than
    hold it as a global: a dunder (``__dict__`` is every global), a module ``__getattr__``
    (PEP 562: it computes values from what it reads). Such a module counts whole."""
    value: Any = module
    used: list[str] = []
    for attr in attrs:
        if not isinstance(value, types.ModuleType):
            break
        table = vars(value)
        if attr.startswith("__") or "__getattr__" in table:
            return _NOT_GLOBAL, tuple(used)
        value = table.get(attr, _UNDEFINED)
        used.append(attr)
    return value, tuple(used)


_NOT_GLOBAL = object()  # see _attribute


_MAIN = (
    "the notebook's namespace as a module: nbflow cannot see which globals are read from "
    "it; read the global by name, or pass it as a parameter"
)
_NOT_LOADED = (
    "a module of user code imported inside the task and not imported yet: nbflow cannot "
    "see its code until it is; import it in a cell before the run"
)


def _ignored(path: str, names: tuple[str, ...]) -> bool:
    """Whether a part is one of the task's own globals, closure variables or defaults
    named in ``cache_ignore`` (with what is listed under it)."""
    head = path.split(SEP, 1)[0]
    kind, _, name = head.partition(" ")
    return (
        kind in ("global", "helper", "module", "class", "closure", "default", "environment")
        and name in names
    )


def _is_child(value: Any) -> bool:
    return isinstance(value, types.FunctionType | type | types.ModuleType)


def _builtin_by_name(value: Any) -> bool:
    """A builtin function of a module (``len``, ``math.sqrt``): identified by its name."""
    return isinstance(value, types.BuiltinFunctionType) and isinstance(
        getattr(value, "__self__", None), types.ModuleType | type(None)
    )


def _pins(fn: types.FunctionType, global_names: tuple[str, ...]) -> tuple[Any, ...]:
    """What the node of ``fn`` is made from, as bound now (see :class:`Identities`): its
    code, defaults, closure contents and the objects its global names are bound to."""
    pins: tuple[Any, ...] = (fn.__code__, fn.__defaults__)
    if fn.__kwdefaults__:
        pins += _kwdefaults(fn)
    if fn.__closure__:
        pins += _cells(fn)
    if global_names:
        pins += tuple(map(fn.__globals__.get, global_names, repeat(_UNDEFINED)))
    return pins


_CONTENTS = operator.attrgetter("cell_contents")


def _cells(fn: types.FunctionType) -> tuple[Any, ...]:
    closure = fn.__closure__
    if not closure:
        return ()
    try:
        return tuple(map(_CONTENTS, closure))
    except ValueError:  # some cell is not bound yet
        pass
    values = []
    for cell in closure:
        try:
            values.append(cell.cell_contents)
        except ValueError:  # a cell not bound yet
            values.append(_EMPTY)
    return tuple(values)


def _kwdefaults(fn: types.FunctionType) -> tuple[Any, ...]:
    """The keyword-only defaults, flat: name, value, name, value..."""
    found = fn.__kwdefaults__
    return tuple(x for item in sorted(found.items()) for x in item) if found else ()


def _builtins(fn: types.FunctionType) -> Any:
    found = fn.__globals__.get("__builtins__", __builtins__)
    return types.SimpleNamespace(**found) if isinstance(found, dict) else found


def _is_code_like(value: Any) -> bool:
    """Callables identified by their code: partials, bound methods, wrappers, builtins."""
    return isinstance(
        value, functools.partial | types.MethodType | types.BuiltinFunctionType
    ) or hasattr(value, "__wrapped__")
