"""What a task's code is, for its identity: the canonical source of a function, the global
names it reads (and those it only writes to), and whether a module is a library's."""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import linecache
import os
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .model import sha
from .reads import Import, Read, scan

# -- code facts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeFacts:
    """What a code object alone says: its source's digest and text, the globals it loads
    (those only written to left out: see :func:`write_only_names`), and the names it only
    writes to."""

    digest: str
    text: str
    global_names: tuple[str, ...]
    write_only: frozenset[str] = frozenset()
    #: What it reads besides its global names, from its bytecode (:mod:`.reads`).
    reads: tuple[Read, ...] = ()
    imports: tuple[Import, ...] = ()
    #: The attribute names read from each global, as ``(name, (attribute, ...))``, and
    #: the globals also used as a whole (passed on, called, indexed).
    attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    whole: frozenset[str] = frozenset()


_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


def _global_names(code: types.CodeType) -> list[str]:
    names = [i.argval for i in dis.get_instructions(code) if i.opname in _LOADS]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return names


def source_text(code: types.CodeType) -> str | None:
    """The dedented source of ``code`` (linecache: notebook cells too), or None."""
    try:
        return textwrap.dedent(inspect.getsource(code))
    except Exception:  # no source, or a file that is not Python at that line (3.12's
        return None  # tokenize raises TokenError there): the bytecode stands in


def code_facts(code: types.CodeType) -> CodeFacts:
    """Facts of ``code``: see :class:`CodeFacts`.

    The source counts when it is the text the code was compiled from: a notebook cell's,
    which IPython keeps in memory. A file's lines are read from the disk now, and the file
    may have been edited since the code was loaded (a module not reloaded yet): code from a
    file counts by its bytecode, constants and names, the code that runs.
    """
    text = source_text(code)
    tree = _function_tree(text, code.co_name) if text is not None else None
    if tree is None:
        canonical = _canonical_source(text, code.co_name) if text is not None else None
        write_only: frozenset[str] = frozenset()
    else:
        write_only = write_only_names(tree)
        canonical = _dump_without_decorations(tree)
    if canonical is None or not _in_memory(code.co_filename):
        canonical = _bytecode_text(code)
        # The tree may be of an edited file: a name it only adds to counts as one only
        # where the loaded code does nothing else with it either.
        write_only = write_only & _only_added_to(code)
    names = sorted(set(_global_names(code)) - write_only)
    reads, imports = scan(code)
    chains: dict[str, set[tuple[str, ...]]] = {}
    whole: set[str] = set()
    for (kind, name), attrs, _ in reads:
        if kind == "global":
            if attrs:
                chains.setdefault(name, set()).add(attrs)
            else:
                whole.add(name)
    attributes = tuple((n, a) for n in sorted(chains) for a in sorted(chains[n]))
    return CodeFacts(
        sha(canonical), text or canonical, tuple(names), write_only, reads, imports,
        attributes, frozenset(whole),
    )  # fmt: skip


def _in_memory(filename: str) -> bool:
    """Whether linecache holds ``filename``'s lines as given (a notebook cell's, which
    IPython registers with no modification time), not as read from a file."""
    entry = linecache.cache.get(filename)
    return entry is not None and len(entry) == 4 and entry[1] is None


def _only_added_to(code: types.CodeType) -> frozenset[str]:
    """Names every load of which, in ``code`` and the code nested in it, is followed by
    reading one of :data:`_ADDERS` from it."""
    found: dict[str, bool] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        stack += [c for c in current.co_consts if isinstance(c, types.CodeType)]
        ops = [i for i in dis.get_instructions(current) if i.opname not in _NOISE]
        for i, op in enumerate(ops):
            if op.opname.startswith("LOAD_") and isinstance(op.argval, str):
                nxt = ops[i + 1] if i + 1 < len(ops) else None
                adds = nxt is not None and nxt.opname in _ATTRS and nxt.argval in _ADDERS
                found[op.argval] = found.get(op.argval, True) and adds
    return frozenset(n for n, only in found.items() if only)


_NOISE = frozenset({"EXTENDED_ARG", "CACHE", "NOP", "PRECALL", "KW_NAMES", "PUSH_NULL"})
_ATTRS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})


#: Methods that put something into a container, a file or a queue and return nothing worth
#: reading: a name the code only calls these on (as statements) cannot change what the code
#: computes.
_ADDERS = frozenset(
    {"append", "extend", "add", "update", "insert", "appendleft", "extendleft", "write",
     "writelines", "put", "put_nowait"}
)  # fmt: skip


def write_only_names(tree: ast.AST) -> frozenset[str]:
    """Names that ``tree`` only adds to: every use is a statement ``name.append(...)`` (or
    another of :data:`_ADDERS`). A list of calls a task keeps for a test, a log file it
    writes to: their contents cannot change its result, so they are not part of its
    identity."""
    adds: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in _ADDERS
            and isinstance(node.value.func.value, ast.Name)
        ):
            adds.add(id(node.value.func.value))
    used: dict[str, bool] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used[node.id] = used.get(node.id, True) and id(node) in adds
    return frozenset(name for name, only in used.items() if only)


def _function_tree(text: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The definition of function ``name`` in ``text`` (None: not found, or a lambda)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    return None


def _dump_without_decorations(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The dump of a definition without its decorators and defaults: decorators are not the
    function, and defaults count by value (their own parts)."""
    node.decorator_list = []
    node.args.defaults = []
    node.args.kw_defaults = []
    return ast.dump(node)


def source_digest(fn: Callable[..., Any]) -> str:
    """The digest of the code ``fn`` runs, as written (no values): what a task's spec
    records at definition. Partials and bound methods by their function, wrappers by what
    they wrap, callable objects by their class's ``__call__``."""
    target = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    if isinstance(target, functools.partial):
        return source_digest(target.func)
    if isinstance(target, types.MethodType):
        return source_digest(target.__func__)
    if isinstance(target, types.FunctionType):
        return code_facts(target.__code__).digest
    call = inspect.getattr_static(type(target), "__call__", None)
    if isinstance(target, type) or not isinstance(call, types.FunctionType):
        return sha("callable", getattr(target, "__qualname__", type(target).__qualname__))
    return sha(type(target).__qualname__, code_facts(call.__code__).digest)


def user_sources(fn: Callable[..., Any]) -> dict[str, str]:
    """The source text of ``fn`` (key ``""``) and of every user-code function it calls
    through a global name, recursively (key: that name), for diffs of two versions."""
    target = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    target = getattr(target, "func", None) or getattr(target, "__func__", None) or target
    if not isinstance(target, types.FunctionType):
        return {"": f"<{type(target).__qualname__}>"}
    found = {"": code_facts(target.__code__).text}
    seen = {target.__code__}
    stack = [target]
    while stack:
        current = stack.pop()
        for name in code_facts(current.__code__).global_names:
            value = current.__globals__.get(name)
            if callable(value) and hasattr(value, "__wrapped__"):
                value = inspect.unwrap(value)
            if (
                isinstance(value, types.FunctionType)
                and value.__code__ not in seen
                and not is_library(value.__module__)
            ):
                seen.add(value.__code__)
                found.setdefault(name, code_facts(value.__code__).text)
                stack.append(value)
    return found


def _canonical_source(text: str, name: str) -> str | None:
    """The dumped syntax tree of a lambda or module-level code in ``text`` (None: it does
    not parse alone, like a lambda cut out of a longer expression)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
    if name == "<lambda>" and len(lambdas) == 1:
        return ast.dump(lambdas[0])
    return ast.dump(tree)


def _bytecode_text(code: types.CodeType) -> str:
    """What the code does, with no line numbers: its instructions, constants (nested code
    too), names and signature."""
    consts = tuple(_const_text(c) for c in code.co_consts)
    return repr(
        (
            code.co_code.hex(), consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount, code.co_flags, code.co_exceptiontable.hex(),
        )
    )  # fmt: skip


def _const_text(const: Any) -> str:
    if isinstance(const, types.CodeType):
        return _bytecode_text(const)
    if isinstance(const, frozenset):  # its order follows string hashing, which varies
        return "frozenset(" + repr(sorted(map(_const_text, const))) + ")"
    if isinstance(const, tuple):
        return "(" + ",".join(map(_const_text, const)) + ")"
    return f"{type(const).__name__}:{const!r}"


# -- libraries and modules ----------------------------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.update(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


_ROOTS = _library_roots()


def is_library(module_name: str | None) -> bool:
    """Whether ``module_name`` is installed code (the standard library, site-packages, or
    nbflow itself),
    which is identified by its version, rather than user code (``__main__``, a local file),
    which is identified by its content. No name (a function made by ``exec`` in a dict of
    its own has ``__module__`` None): user code, read by content, which is never stale."""
    if not module_name:
        return False
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top == _OWN:  # ("builtins" is one)
        return True
    module = sys.modules.get(module_name) or sys.modules.get(top)
    if top == "__main__":
        return False
    if module is None:  # not imported yet (a task imports it): where it would come from
        return _installed(top)
    path = getattr(module, "__file__", None)
    if path is None:
        return True  # built into the interpreter
    return os.path.realpath(path).startswith(_ROOTS)


#: nbflow itself: the tool, not the notebook's code, wherever it is installed from (a
#: development checkout too), counted by its version as any library.
_OWN = __name__.partition(".")[0]


def _installed(top: str) -> bool:
    """Whether top-level module ``top``, not imported, would be imported from a library's
    folder (finding a top-level module imports nothing)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = spec.origin
    if origin in ("built-in", "frozen"):
        return True
    if origin is None and spec.submodule_search_locations:
        origin = next(iter(spec.submodule_search_locations), None)
    return origin is not None and os.path.realpath(origin).startswith(_ROOTS)


def _distribution_version(top: str) -> str:
    import importlib.metadata

    try:
        for dist in importlib.metadata.packages_distributions().get(top, ()):
            return importlib.metadata.version(dist)
    except Exception:
        pass
    return ""
