"""What a function reads that its global names do not show: the modules it imports inside
its body, the environment variables it reads, and the calls through which it could read
any global or module (``globals()``, ``eval``, ``sys.modules``...), which nbflow cannot see.

:func:`scan` reads them from the bytecode (the code that is loaded, whatever its file says
now), once per code object; :func:`resolve` tells, for a function as bound now, what each
read is: an environment variable by its literal name, or a read nbflow cannot follow.
"""

from __future__ import annotations

import builtins
import dis
import importlib
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

#: Instructions that do not change what a sequence of loads means.
_SKIP = frozenset({"EXTENDED_ARG", "CACHE", "NOP", "PRECALL", "KW_NAMES", "PUSH_NULL"})
_ROOTS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE"})
_ATTRS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_STORES = frozenset({"STORE_FAST", "STORE_DEREF", "STORE_NAME", "STORE_GLOBAL"})
_SUBSCRIPT_WRITES = frozenset({"STORE_SUBSCR", "DELETE_SUBSCR"})

#: ``(root, attributes, follow)``: a name loaded (``("global", name)`` or ``("local",
#: name)``), the attributes read from it in a row, and what is done with the result:
#: ``("index", key)``, ``("write", key)``, ``("in", key)`` with a literal string key,
#: ``("call", key, arguments)`` (key: a literal string first argument, or None), or
#: ``("other",)``.
Read = tuple[tuple[str, str], tuple[str, ...], tuple[Any, ...]]
#: ``(level, module, whole, bound)``: ``import module`` in the body (``level`` dots: a
#: relative import), whether the import returns the module itself (``from m import x``,
#: else the top-level package: ``import a.b`` binds ``a``), and the local names it binds,
#: each with the attribute of what it returns that it is bound to (``""``: that itself).
Import = tuple[int, str, bool, tuple[tuple[str, str], ...]]


def scan(code: types.CodeType) -> tuple[tuple[Read, ...], tuple[Import, ...]]:
    """The reads and imports of ``code`` and the code nested in it (see :data:`Read`)."""
    reads: set[Read] = set()
    imports: list[Import] = []
    for each in _codes(code):
        _scan_one(each, reads, imports)
    # Names bound by an import inside the body are roots too (``import os`` in a task).
    local = {name for *_, bound in imports for name, _ in bound}
    found = {r for r in reads if r[0][0] == "global" or r[0][1] in local}
    return tuple(sorted(found, key=repr)), tuple(dict.fromkeys(imports))


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _scan_one(code: types.CodeType, reads: set[Read], imports: list[Import]) -> None:
    ops = [i for i in dis.get_instructions(code) if i.opname not in _SKIP]
    for i, op in enumerate(ops):
        if op.opname == "IMPORT_NAME":
            imports.append(_import(ops, i))
            continue
        if op.opname not in _ROOTS:
            continue
        kind = "global" if op.opname in ("LOAD_GLOBAL", "LOAD_NAME") else "local"
        j = i + 1
        attrs: list[str] = []
        while j < len(ops) and ops[j].opname in _ATTRS:
            attrs.append(ops[j].argval)
            j += 1
        before = ops[i - 1] if i else None
        reads.add(((kind, op.argval), tuple(attrs), _follow(ops, j, before)))


def _follow(ops: list[dis.Instruction], j: int, before: dis.Instruction | None) -> tuple[Any, ...]:
    """What is done with a value loaded just before ``ops[j]`` (see :data:`Read`)."""
    here = ops[j] if j < len(ops) else None
    after = ops[j + 1] if j + 1 < len(ops) else None
    if here is None:
        return ("other",)
    if here.opname == "CONTAINS_OP" and _literal(before):
        return ("in", before.argval)  # type: ignore[union-attr]
    if here.opname == "CALL":
        return ("call", None, here.argval)
    if _literal(here) and after is not None:
        if after.opname == "BINARY_SUBSCR":
            return ("index", here.argval)
        if after.opname in _SUBSCRIPT_WRITES:
            return ("write", here.argval)
        if after.opname == "CALL" and after.argval == 1:
            return ("call", here.argval, 1)
        last = ops[j + 2] if j + 2 < len(ops) else None
        if (
            after.opname == "LOAD_CONST"
            and last is not None
            and last.opname == "CALL"
            and last.argval == 2
        ):
            return ("call", here.argval, 2)  # a literal default: os.getenv("X", "1")
    return ("other",)


def _literal(op: dis.Instruction | None) -> bool:
    return op is not None and op.opname == "LOAD_CONST" and type(op.argval) is str


def _import(ops: list[dis.Instruction], i: int) -> Import:
    """``IMPORT_NAME`` at ``ops[i]``: ``(level, module, bound names)``."""
    level = ops[i - 2].argval if i >= 2 and ops[i - 2].opname == "LOAD_CONST" else 0
    fromlist = ops[i - 1].argval if i >= 1 and ops[i - 1].opname == "LOAD_CONST" else None
    name = ops[i].argval
    bound: list[tuple[str, str]] = []
    j = i + 1
    if j < len(ops) and ops[j].opname in _STORES:  # import a.b: binds a
        bound.append((ops[j].argval, ""))
    while j < len(ops) and ops[j].opname == "IMPORT_FROM":
        if j + 1 < len(ops) and ops[j + 1].opname in _STORES:
            bound.append((ops[j + 1].argval, ops[j].argval))
        j += 2
        while j < len(ops) and ops[j].opname in ("POP_TOP", "SWAP"):
            j += 1
    if fromlist is None and bound and bound[-1][1]:
        # import a.b.c as d: its IMPORT_FROMs walk down to a.b.c, which d is bound to (not
        # to attribute c of the top package a, which is only right for a.b as d).
        return (0, name, True, ((bound[-1][0], ""),))
    return (int(level or 0), name, fromlist is not None, tuple(bound))


# -- what the reads are, for a function as bound now ----------------------------------------------

#: Calls through which code can read any global or module by a name computed at run time,
#: and what to say about each. ``locals()`` and ``vars()`` are none (in a function they
#: show its own variables), nor ``vars(x)`` (``x.__dict__``, as ``getattr`` reads it).
_GLOBALS = "nbflow cannot see which globals it reads"
_MODULE = "nbflow cannot see which module it reads"
_FRAME = "nbflow cannot see what it reads through a frame"
_ENVIRONMENT = "it reads environment variables nbflow cannot name (HOME, $VARS in a string)"
_BLIND: dict[int, tuple[Any, str, str]] = {
    id(obj): (obj, shown, why)
    for obj, shown, why in (
        (builtins.globals, "globals()", _GLOBALS),
        (builtins.eval, "eval()", _GLOBALS),
        (builtins.exec, "exec()", _GLOBALS),
        (builtins.__import__, "__import__()", _MODULE),
        (importlib.import_module, "importlib.import_module()", _MODULE),
        (sys.modules, "sys.modules", _MODULE),
        (sys._getframe, "sys._getframe()", _FRAME),
        (inspect.currentframe, "inspect.currentframe()", _FRAME),
        (inspect.stack, "inspect.stack()", _FRAME),
        (os.environb, "os.environb", "nbflow cannot see which variables it reads"),
        # Library functions that read the environment themselves: which variables, the
        # string decides at run time.
        (os.path.expandvars, "os.path.expandvars()", _ENVIRONMENT),
        (os.path.expanduser, "os.path.expanduser()", _ENVIRONMENT),
    )
}


#: Methods of ``os.environ`` that read the variable named by their first argument.
_ENV_METHODS = frozenset({"get", "setdefault", "pop", "__getitem__", "__contains__"})

_FIX = "read the global by name, or pass it as a parameter"
_ENV_FIX = 'read each variable by a literal name (os.environ["X"], os.getenv("X"))'


def resolve(
    reads: tuple[Read, ...],
    scope: dict[str, Any],
    local: dict[str, Any],
) -> tuple[list[str], list[tuple[str, str]]]:
    """``(environment variables read, (path, reason) of each read nbflow cannot follow)``.

    ``scope``: the function's globals; ``local``: the names its body imports, bound to what
    they import now. Only modules are looked into (an attribute of another object could run
    code to be read).
    """
    env: list[str] = []
    blind: list[tuple[str, str]] = []
    known = _BLIND
    fallback = vars(builtins)
    for (kind, name), attrs, follow in reads:
        if kind == "global":
            value = scope.get(name, _MISSING)
            if value is _MISSING:
                value = fallback.get(name, _MISSING)
        else:
            value = local.get(name, _MISSING)
        rest = attrs
        while rest and isinstance(value, types.ModuleType):
            value, rest = vars(value).get(rest[0], _MISSING), rest[1:]
        if value is _MISSING:
            continue
        found = known.get(id(value))
        if found is not None and found[0] is value and not rest:
            blind.append((f"reads {found[1]}", f"{found[2]}; {_FIX}"))
            continue
        if value is os.environ:
            key = _environ_key(rest, follow)
            if key is None:
                blind.append(
                    ("reads os.environ", f"nbflow cannot see which variables it reads; {_ENV_FIX}")
                )
            elif key:
                env.append(key)
        elif value is os.getenv and not rest:
            if follow[0] == "call" and follow[1] is not None:
                env.append(follow[1])
            else:
                blind.append(
                    ("reads os.getenv()", f"nbflow cannot see which variable it reads; {_ENV_FIX}")
                )
    return sorted(set(env)), sorted(set(blind))


def _environ_key(rest: tuple[str, ...], follow: tuple[Any, ...]) -> str | None:
    """The variable a use of ``os.environ`` reads ("": none, a write), None: not known."""
    if not rest:
        if follow[0] in ("index", "in"):
            return str(follow[1])
        if follow[0] == "write":
            return ""
        return None
    if len(rest) == 1 and rest[0] in _ENV_METHODS and follow[0] == "call" and follow[1]:
        return str(follow[1])
    return None


def imported(
    imports: tuple[Import, ...], scope: dict[str, Any]
) -> tuple[list[tuple[str, Any]], dict[str, Any]]:
    """``(modules, local)``: each module the body imports, by its full name, as loaded now
    (None: not imported yet), and the local names the imports bind, bound to what they
    would bind now."""
    modules: list[tuple[str, Any]] = []
    local: dict[str, Any] = {}
    for level, name, whole, bound in imports:
        full = name
        if level:
            try:
                full = importlib.util.resolve_name(
                    "." * level + name, scope.get("__package__") or ""
                )
            except (ImportError, ValueError):
                modules.append(("." * level + name, None))
                continue
        module = sys.modules.get(full)
        modules.append((full, module))
        returned = module if whole else sys.modules.get(full.partition(".")[0])
        for local_name, attr in bound:
            value: Any = returned
            if attr:
                value = _MISSING
                if isinstance(returned, types.ModuleType):
                    value = vars(returned).get(attr, sys.modules.get(f"{returned.__name__}.{attr}"))
            local[local_name] = _MISSING if value is None else value
    return modules, local


class _Missing:
    pass


_MISSING = _Missing()
