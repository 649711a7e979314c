"""A task's identity: one digest of everything its result depends on, with named parts.

Everything in nbflow that asks "is this the same task?" asks this module: the cache key, resume,
the flow version (``run.flow_version``, ``flow.versions()``, :func:`nbflow.diff_versions`) and
``run.why()``. The identity of a task covers:

- ``source``: the function's code, as the syntax tree of its source (comments, blank lines and
  decorators do not count), or its bytecode and constants when there is no source;
- ``default x``: each default and keyword-only default, by value;
- ``closure x``: each closure variable, by value;
- ``global x``: each global name the code loads (nested functions and comprehensions included),
  as it is bound *now*, by value. A module counts by its name and version (a local module by
  the content of its file); a function or class defined in user code (a notebook, a local
  file) by its own identity, recursively, so editing a helper changes every task that calls
  it; a library function or class by its qualified name and its package's version;
- ``functools.partial`` objects by their function and arguments, bound methods by their
  function and instance, callable objects by their class and state;
- the options that shape a result (``fan_out``, ``allow_partial``) and the user code in the
  options (``when=``, ``cache_key=``, ``retry_if``).

Values are hashed by content: scalars and builtin containers canonically, numpy arrays by
dtype, shape and bytes, pandas objects by ``hash_pandas_object``, anything else by the SHA-256
of its pickle. A value that cannot be hashed leaves the identity without a digest: no cached
or resumed result can match it (a :class:`CacheWarning` says which variable, once).

Values are read when the identity is computed, at the start of each run: a global changed by
a later cell is seen by the next run. :class:`Identities` remembers, per flow, what cannot
have changed since the last run (the facts of a code object; a function whose code,
defaults, closure and globals are the very same immutable objects), so an unchanged flow
costs about a microsecond per task. Memos hold the objects they describe (never their
``id()``), and entries not used by the latest run are dropped.
"""

from __future__ import annotations

import ast
import dis
import enum
import functools
import hashlib
import inspect
import json
import os
import pickle
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from .errors import describe

#: Hex characters kept of each SHA-256 digest.
DIGEST_SIZE = 16
#: Helpers' own parts are listed under the task down to this depth (deeper: one digest).
PART_DEPTH = 2
#: The option naming what a task's identity leaves out (``cache_ignore=``).
IGNORE = "cache_ignore"
#: A generated task function names, under this attribute, the callable it stands for.
IDENTITY_OF = "__nbflow_identity__"
#: Between a helper's path and the path of one of its own parts: ``helper clean / global K``.
SEP = " / "
#: Nested containers deeper than this are hashed through their pickle.
_MAX_DEPTH = 40


class CacheWarning(UserWarning):
    """A task's result cannot be reused: something it depends on cannot be hashed.

    The task runs every time (never a stale result); the message names the task and the
    variable, and how to make it cacheable.
    """


def sha(*chunks: str | bytes | memoryview) -> str:
    """Hex SHA-256 of the chunks, cut to :data:`DIGEST_SIZE` characters."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk.encode("utf-8", "surrogatepass") if isinstance(chunk, str) else chunk)
    return digest.hexdigest()[:DIGEST_SIZE]


@dataclass(frozen=True, slots=True)
class Part:
    """One thing a task's result depends on: ``path`` names it (``global RATE``), ``digest``
    is its content hash, ``shown`` a short human rendering of its value (``0.25``)."""

    path: str
    digest: str
    shown: str = ""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a task's result depends on: a digest and its named parts.

    ``digest`` is None when some part cannot be hashed (``unhashable`` lists ``(path,
    reason)``): such a task is never served from the cache or a resumed run.
    """

    digest: str | None
    parts: tuple[Part, ...] = ()
    unhashable: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> str:
        """The parts as JSON (what the store keeps next to each result)."""
        return json.dumps([[p.path, p.digest, p.shown] for p in self.parts])

    @classmethod
    def from_json(cls, digest: str | None, text: str | None) -> Identity:
        """The identity stored as :meth:`to_json` (``text`` None: no parts known)."""
        parts = tuple(Part(*row) for row in json.loads(text)) if text else ()
        return cls(digest, parts)

    def differences(self, before: Identity) -> list[tuple[str, Part | None, Part | None]]:
        """``(path, part before, part now)`` of each part that changed, appeared (before
        None) or went (now None), in this identity's order, then the gone ones."""
        old = {p.path: p for p in before.parts}
        new = {p.path: p for p in self.parts}
        found: list[tuple[str, Part | None, Part | None]] = [
            (path, old.get(path), part)
            for path, part in new.items()
            if path not in old or old[path].digest != part.digest
        ]
        found += [(path, part, None) for path, part in old.items() if path not in new]
        return found

    def changes_since(
        self, before: Identity, *, skip: Callable[[str], bool] | None = None
    ) -> list[str]:
        """What changed from ``before`` to this identity, in plain words, parts in order.

        ``skip(path)``: leave out the parts it is true for (a diff that reports code apart).
        """
        words: list[str] = []
        found = self.differences(before)
        # A part whose own parts changed is told by those ("helper `f`: global `K` changed"),
        # not once more as a whole.
        inner = {path.rsplit(SEP, 1)[0] for path, _, _ in found if SEP in path}
        for path, old, new in found:
            if path in inner or (skip is not None and skip(path)):
                continue
            if old is None:
                words.append(f"{_label(path)} is new")
            elif new is None:
                words.append(f"{_label(path)} is gone")
            else:
                words.append(_changed(path, old.shown, new.shown))
        return words

    def summary(self) -> str:
        """A few words on what it covers: ``source, 2 defaults and 3 globals``."""
        kinds: dict[str, int] = {}
        for part in self.parts:
            if SEP in part.path or part.shown in ("None", "False", "()"):
                continue  # a helper's own parts count with it; unset options do not count
            kind = part.path.split(" ", 1)[0]
            kind = "global" if kind in ("helper", "module", "class") else kind
            kinds[kind] = kinds.get(kind, 0) + 1
        words = []
        for kind in ("source", "default", "closure", "global", "option"):
            count = kinds.get(kind)
            if count:
                words.append(kind if kind == "source" else _plural(count, kind))
        if not words:
            return "nothing"
        return ", ".join(words[:-1]) + (" and " if len(words) > 1 else "") + words[-1]


def is_code_path(path: str) -> bool:
    """Whether a part's path is code (a source, or a helper as a whole), not a value."""
    last = path.rsplit(SEP, 1)[-1]
    return last == "source" or (SEP not in path and path.startswith(("helper ", "class ")))


def _plural(count: int, kind: str) -> str:
    name = {"closure": "closure variable", "option": "option"}.get(kind, kind)
    return f"{count} {name}{'s' if count != 1 else ''}"


def _label(path: str) -> str:
    """``global RATE`` -> ``global `RATE```; nested parts: ``helper `f`: global `K```."""
    pieces = path.split(SEP)
    labels = []
    for piece in pieces:
        kind, _, name = piece.partition(" ")
        labels.append(f"{kind} `{name}`" if name else kind)
    return ": ".join(labels)


def _changed(path: str, old: str, new: str) -> str:
    if path.endswith(SEP + "source"):  # a helper's or a method's code: "helper `f` changed"
        path = path[: -len(SEP + "source")]
    label = _label(path)
    if old and new and old != new and len(old) + len(new) < 80:
        return f"{label} changed ({old} -> {new})"
    return f"{label} changed"


@dataclass(frozen=True, slots=True)
class FlowIdentity:
    """A flow's version as of one moment (a run's start) and each task's identity."""

    version: str
    tasks: Mapping[str, Identity]

    def task_version(self, name: str) -> str | None:
        """The digest of task ``name`` (None: it has no stable identity, see
        :class:`Identity`)."""
        return self.tasks[name].digest


def flow_version(spec_version: str, tasks: Mapping[str, Identity]) -> str:
    """A flow's version: its definition's hash (``spec_version``: names, options,
    dependencies) and the identity of every task. A task that cannot be hashed counts by
    what could not be hashed (its variable's path), so the version stays stable."""
    lines = [spec_version]
    for name, identity in tasks.items():
        digest = identity.digest or "unhashable:" + ",".join(p for p, _ in identity.unhashable)
        lines.append(f"{name}={digest}")
    return sha("\n".join(lines))


def identity_options(spec: Any) -> tuple[tuple[str, Any], ...]:
    """What a task's identity takes from its options (``spec``: a TaskSpec): the options
    that shape its result and the user code they hold. Priority, retries, timeouts, tags
    and the like decide when and how often a task runs, not what it returns."""
    retry_if = spec.retry.retry_if if spec.retry is not None else None
    found = [("fan_out", spec.fan_out), ("allow_partial", spec.allow_partial)]
    callables = (("when", spec.when_fn), ("cache_key", spec.cache_key), ("retry_if", retry_if))
    found += [(name, value) for name, value in callables if value is not None]
    if spec.cache_ignore:
        found.append((IGNORE, tuple(sorted(spec.cache_ignore))))
    if spec.complete_when is not None:  # which elements' results the list holds
        found.append(("complete_when", (spec.complete_when, spec.cancel_rest)))
    return tuple(found)


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
    except (OSError, TypeError, IndentationError, SyntaxError):
        return None


def code_facts(code: types.CodeType) -> CodeFacts:
    """Facts of ``code``: see :class:`CodeFacts`."""
    text = source_text(code)
    tree = _function_tree(text, code.co_name) if text is not None else None
    if tree is None:
        canonical = _canonical_source(text, code.co_name) if text is not None else None
        write_only: frozenset[str] = frozenset()
    else:
        write_only = write_only_names(tree)
        canonical = _dump_without_decorations(tree)
    if canonical is None:
        canonical = _bytecode_text(code)
    names = sorted(set(_global_names(code)) - write_only)
    return CodeFacts(sha(canonical), text or canonical, tuple(names), write_only)


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
    consts = tuple(
        _bytecode_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
    )
    return repr((code.co_code.hex(), consts, code.co_names, code.co_varnames))


# -- libraries and modules ----------------------------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    roots.update(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


_ROOTS = _library_roots()


def is_library(module_name: str | None) -> bool:
    """Whether ``module_name`` is installed code (the standard library or site-packages),
    which is identified by its version, rather than user code (``__main__``, a local file),
    which is identified by its content."""
    if not module_name:
        return True
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return True
    module = sys.modules.get(module_name) or sys.modules.get(top)
    if top == "__main__" or module is None:
        return False
    path = getattr(module, "__file__", None)
    if path is None:
        return True  # built into the interpreter
    return os.path.realpath(path).startswith(_ROOTS)


def _distribution_version(top: str) -> str:
    import importlib.metadata

    try:
        for dist in importlib.metadata.packages_distributions().get(top, ()):
            return importlib.metadata.version(dist)
    except Exception:
        pass
    return ""


# -- values -------------------------------------------------------------------------------------


class Unhashable(Exception):
    """A value that has no stable content hash (it does not pickle, or raises)."""


_SCALARS = (type(None), bool, int, float, complex, str, bytes, range)


def show(value: Any) -> str:
    """A short rendering of ``value`` for messages (``0.25``, ``<DataFrame 10x3>``)."""
    try:
        if isinstance(value, _SCALARS) and not isinstance(value, bytes):
            text = repr(value)
            return text if len(text) <= 40 else text[:37] + "..."
        if isinstance(value, types.ModuleType):
            return f"module {value.__name__}"
        if isinstance(value, types.FunctionType | type):
            return value.__qualname__
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple):
            return f"<{type(value).__name__} {'x'.join(map(str, shape))}>"
        if isinstance(value, list | tuple | dict | set | frozenset):
            text = repr(value)
            return text if len(text) <= 40 else f"<{type(value).__name__} of {len(value)}>"
        return f"<{type(value).__qualname__}>"
    except Exception:
        return "<?>"


def _immutable(value: Any) -> bool:
    """Whether ``value``'s content can never change (so an identical object hashes alike)."""
    if isinstance(value, (*_SCALARS, enum.Enum)):
        return True
    if type(value) in (tuple, frozenset):
        return all(map(_immutable, value))
    return False


# -- the computation ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Node:
    """A computed function's or class's digest and parts (compared by identity)."""

    digest: str
    parts: tuple[Part, ...]
    unhashable: tuple[tuple[str, str], ...]
    #: The functions, classes and modules it refers to, with their digests then.
    children: tuple[tuple[Any, str], ...] = ()
    #: Whether everything else it was made from is immutable (else: made again every pass).
    reusable: bool = False
    #: The objects it was made from: held, so that the ``id()``s in its key stay theirs.
    pins: tuple[Any, ...] = ()
    #: The last pass that used it / that checked its children.
    used: int = 0
    checked: int = 0
    #: Identities of tasks calling it, by the digest of their options.
    tasks: dict[str, Identity] | None = None


class Identities:
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
    digests they had, and all the others are immutable. Closures made by one factory from
    the same values share one node.
    """

    def __init__(self) -> None:
        self._code: dict[types.CodeType, tuple[CodeFacts, list[int]]] = {}
        self._nodes: dict[tuple[int, ...], _Node] = {}
        self._files: dict[str, tuple[int, int, str]] = {}  # path -> (mtime_ns, size, digest)
        self._versions: dict[str, str] = {}  # top-level module -> its distribution's version
        self._library: dict[str, bool] = {}
        # The current pass: id -> (the object, its node or digest); the object is held.
        self._seen: dict[int, tuple[Any, Any]] = {}
        self._pass = 0
        self._active = 0

    # -- passes ---------------------------------------------------------------------------------

    def begin(self) -> None:
        """Start a pass: values are read from now on as they are at this moment."""
        if self._active == 0:
            self._seen = {}
            self._pass += 1
        self._active += 1

    def end(self) -> None:
        """End a pass; forget what it did not use."""
        self._active -= 1
        if self._active == 0:
            now = self._pass
            self._nodes = {k: n for k, n in self._nodes.items() if n.used == now}
            self._code = {c: f for c, f in self._code.items() if f[1][0] == now}
            self._seen = {}

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
            for fn, options in calls:
                identity = self._known(fn, options) if type(fn) is types.FunctionType else None
                found.append(identity if identity is not None else self._task(fn, options))
            return found
        finally:
            self.end()

    def _known(
        self, fn: types.FunctionType, options: tuple[tuple[str, Any], ...]
    ) -> Identity | None:
        """The identity of a task whose node this pass has checked already, else None.

        What :meth:`_function` and :meth:`_task` do for such a task, in one step: the tasks
        of a flow defined in a loop share their code and usually their node, and come here
        once per run each.
        """
        facts = self._code.get(fn.__code__)
        if facts is None or IDENTITY_OF in fn.__dict__:
            return None
        pins: tuple[Any, ...] = (fn.__code__, fn.__defaults__)
        if fn.__kwdefaults__:
            pins += _kwdefaults(fn)
        if fn.__closure__:
            pins += _cells(fn)
        names = facts[0].global_names
        if names:
            pins += tuple(map(fn.__globals__.get, names, repeat(_UNDEFINED)))
        node = self._nodes.get(tuple(map(id, pins)))
        if node is None or node.checked != self._pass or not node.tasks or not node.reusable:
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
            summary = "\n".join(f"{p.path}={p.digest}" for p in option_parts)
            seen = self._seen[id(options)] = (options, (sha(summary), option_parts, option_bad))
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
        digest = None if bad else sha("\n".join(f"{p.path}={p.digest}" for p in parts))
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
            self._node_parts("", node, parts, 0, own=True)
        elif isinstance(fn, functools.partial):
            self._callable_parts(fn.func, parts, bad)
            for i, arg in enumerate(fn.args):
                self._value_parts(f"argument {i}", arg, parts, bad, 0)
            for key in sorted(fn.keywords):
                self._value_parts(f"argument {key}", fn.keywords[key], parts, bad, 0)
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
            self._value_parts("instance", _state(fn), parts, bad, 0)

    # -- functions and classes --------------------------------------------------------------------

    def facts(self, code: types.CodeType) -> CodeFacts:
        """:func:`code_facts`, remembered."""
        found = self._code.get(code)
        if found is None:
            found = self._code[code] = (code_facts(code), [self._pass])
        else:
            found[1][0] = self._pass
        return found[0]

    def _function(self, fn: types.FunctionType) -> _Node:
        seen = self._seen.get(id(fn))
        if seen is not None:
            return seen[1]
        code = fn.__code__
        found = self._code.get(code)
        if found is None:
            facts = self.facts(code)
        else:
            facts = found[0]
            found[1][0] = self._pass
        # What the node is made from (see the class docstring), read in as few steps as
        # possible: tasks made in a loop pass here once each, every run.
        pins: tuple[Any, ...] = (code, fn.__defaults__)
        if fn.__kwdefaults__:
            pins += _kwdefaults(fn)
        if fn.__closure__:
            pins += _cells(fn)
        if facts.global_names:
            pins += tuple(map(fn.__globals__.get, facts.global_names, repeat(_UNDEFINED)))
        key = tuple(map(id, pins))
        node = self._nodes.get(key)
        if node is None or not self._still_valid(node):
            self._seen[id(fn)] = (fn, _Node(f"recursive:{fn.__qualname__}", (), ()))
            node = self._nodes[key] = self._make_function(fn, facts)
            node.pins, node.checked = pins, self._pass
        node.used = self._pass
        self._seen[id(fn)] = (fn, node)
        return node

    def _still_valid(self, node: _Node) -> bool:
        """Whether a remembered node holds: reusable, and its children unchanged."""
        if not node.reusable:
            return False
        if node.checked != self._pass:
            for child, digest in node.children:
                if self._digest_of(child) != digest:
                    return False
            node.checked = self._pass
        return True

    def _digest_of(self, value: Any) -> str:
        if isinstance(value, types.FunctionType):
            return self._function(value).digest
        if isinstance(value, type):
            return self._class(value).digest
        return self._module(value)[0]

    def _make_function(self, fn: types.FunctionType, facts: CodeFacts) -> _Node:
        code = fn.__code__
        cells = _cells(fn)
        refs = tuple(map(fn.__globals__.get, facts.global_names, repeat(_UNDEFINED)))
        parts: list[Part] = [Part("source", facts.digest, "")]
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
        for name, value in zip(facts.global_names, refs, strict=True):
            if value is _UNDEFINED:
                if not hasattr(_builtins(fn), name):
                    parts.append(Part(f"global {name}", "undefined", "undefined"))
                continue
            self._value_parts(f"global {name}", value, parts, bad, 1, leaves)
        return self._node(parts, bad, leaves)

    def _node(self, parts: list[Part], bad: list[tuple[str, str]], leaves: list[Any]) -> _Node:
        children = tuple(
            (v, self._digest_of(v))
            for v in leaves
            if isinstance(v, types.FunctionType | type | types.ModuleType)
        )
        others = [
            v for v in leaves if not isinstance(v, types.FunctionType | type | types.ModuleType)
        ]
        digest = sha("\n".join(f"{p.path}={p.digest}" for p in parts)) if not bad else "unhashable"
        reusable = not bad and all(map(_immutable, others))
        return _Node(digest, tuple(parts), tuple(bad), children, reusable)

    def _class(self, cls: type) -> _Node:
        seen = self._seen.get(id(cls))
        if seen is not None:
            return seen[1]
        self._seen[id(cls)] = (cls, _Node(f"recursive:{cls.__qualname__}", (), ()))
        if self._is_library(cls.__module__):
            version = self._module_version(cls.__module__)
            node = _Node(sha("class", cls.__module__, cls.__qualname__, version), (), ())
        else:
            items = tuple((k, v) for k, v in sorted(vars(cls).items()) if _counts(k, v))
            bases = tuple(b for b in cls.__bases__ if b is not object)
            pins = (cls, *bases, *(v for _, v in items))
            key = tuple(map(id, pins))
            reused = self._nodes.get(key)
            if reused is None or not self._still_valid(reused):
                reused = self._nodes[key] = self._make_class(cls, items, bases)
                reused.pins, reused.checked = pins, self._pass
            reused.used = self._pass
            node = reused
        self._seen[id(cls)] = (cls, node)
        return node

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
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            elif isinstance(value, property):
                value = (value.fget, value.fset, value.fdel)
            kind = "method" if isinstance(value, types.FunctionType | tuple) else "attribute"
            self._value_parts(f"{kind} {name}", value, parts, bad, 1, leaves)
        return self._node(parts, bad, leaves)

    def _module(self, module: types.ModuleType) -> tuple[str, str]:
        """``(digest, shown)``: a library by version, user code by its file's content."""
        name = module.__name__
        seen = self._seen.get(id(module))
        if seen is not None:
            return seen[1]
        if self._is_library(name):
            version = self._module_version(name)
            found = (sha("module", name, version), f"{name} {version}".strip())
        else:
            path = getattr(module, "__file__", None)
            digest = self._file_digest(path) if path else sha("module", name)
            found = (sha("module", name, digest), f"{name} (file {digest[:8]})")
        self._seen[id(module)] = (module, found)
        return found

    def _is_library(self, module_name: str) -> bool:
        found = self._library.get(module_name)
        if found is None:
            found = self._library[module_name] = is_library(module_name)
        return found

    def _module_version(self, module_name: str) -> str:
        top = module_name.partition(".")[0]
        if top in sys.stdlib_module_names or top == "builtins":
            return sys.version.split()[0]
        found = self._versions.get(top)
        if found is None:
            # The version of the code loaded, when the package says (a newer install that
            # is not imported yet does not count), else its distribution's.
            module = sys.modules.get(top)
            found = str(getattr(module, "__version__", "") or "") or _distribution_version(top)
            self._versions[top] = found
        return found

    def _file_digest(self, path: str) -> str:
        try:
            stat = os.stat(path)
        except OSError:
            return "missing"
        known = self._files.get(path)
        if known is not None and known[:2] == (stat.st_mtime_ns, stat.st_size):
            return known[2]
        with open(path, "rb") as file:
            digest = sha(file.read())
        self._files[path] = (stat.st_mtime_ns, stat.st_size, digest)
        return digest

    # -- values ---------------------------------------------------------------------------------

    def _node_parts(
        self, path: str, node: _Node, parts: list[Part], depth: int, *, own: bool = False
    ) -> None:
        """A function's or class's parts: its own (the task's function), or one part for it
        and, down to :data:`PART_DEPTH`, its parts under ``path``."""
        if own:
            parts.extend(node.parts)
            return
        parts.append(Part(path, node.digest, ""))
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
            digest, shown = self._module(value)
            parts.append(Part(f"module {name}" if kind == "global" else path, digest, shown))
            return
        if isinstance(value, types.BuiltinFunctionType) and isinstance(
            getattr(value, "__self__", None), types.ModuleType | type(None)
        ):
            parts.append(self._builtin_part(path, value))
            return
        if callable(value) and not isinstance(value, _SCALARS) and _is_code_like(value):
            sub: list[Part] = []
            self._callable_parts(value, sub, bad)
            parts.append(Part(path, sha("\n".join(f"{p.path}={p.digest}" for p in sub)),
                              show(value)))  # fmt: skip
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
            if kind is str:
                return sha("str:", value)
            if kind is bytes:
                return sha("bytes:", value)
            return sha(f"{kind.__name__}:{value!r}")
        if depth > _MAX_DEPTH:
            return _pickled(value)
        if kind in (tuple, list):
            return sha(kind.__name__, *[self.value_digest(v, depth + 1) + "," for v in value])
        if kind is dict or (isinstance(value, Mapping) and kind.__module__ == "collections"):
            pairs = sorted(
                (self.value_digest(k, depth + 1), self.value_digest(v, depth + 1))
                for k, v in value.items()
            )
            return sha("dict", *[f"{k}:{v}," for k, v in pairs])
        if kind in (set, frozenset):
            return sha(kind.__name__, *sorted(self.value_digest(v, depth + 1) for v in value))
        if isinstance(value, enum.Enum):
            return sha("enum", self._class(kind).digest, value.name)
        if isinstance(value, types.FunctionType | type | types.ModuleType):
            return self._digest_of(value)
        module = kind.__module__.partition(".")[0]
        if module == "numpy":
            return _numpy_digest(value)
        if module == "pandas":
            return _pandas_digest(value)
        return _pickled(value)


_SCALAR_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes, range})
#: Class attributes that Python and libraries keep for themselves (caches: pickling an
#: instance adds ``__slotnames__``, ``isinstance`` against an ABC changes ``_abc_impl``).
_CLASS_NOISE = frozenset({"_abc_impl"})


def _counts(name: str, value: Any) -> bool:
    """Whether a class attribute is part of the class's identity: its methods (dunder ones
    included) and its own data attributes, not the bookkeeping of Python or a library."""
    if name in _CLASS_NOISE:
        return False
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


def _ignored(path: str, names: tuple[str, ...]) -> bool:
    """Whether a part is one of the task's own globals, closure variables or defaults
    named in ``cache_ignore`` (with what is listed under it)."""
    head = path.split(SEP, 1)[0]
    kind, _, name = head.partition(" ")
    return kind in ("global", "helper", "module", "class", "closure", "default") and name in names


def _is_child(value: Any) -> bool:
    return isinstance(value, types.FunctionType | type | types.ModuleType)


def _cells(fn: types.FunctionType) -> tuple[Any, ...]:
    closure = fn.__closure__
    if not closure:
        return ()
    try:
        return tuple([cell.cell_contents for cell in closure])
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


def _state(obj: Any) -> Any:
    """An object's state as plain data (its ``__dict__`` and slots)."""
    state: dict[str, Any] = dict(getattr(obj, "__dict__", {}) or {})
    for cls in type(obj).__mro__:
        for slot in getattr(cls, "__slots__", ()) or ():
            if isinstance(slot, str) and hasattr(obj, slot) and slot not in state:
                state[slot] = getattr(obj, slot)
    return state


def _pickled(value: Any) -> str:
    try:
        return sha("pickle:", pickle.dumps(value, protocol=5))
    except Exception as error:
        raise Unhashable(
            f"{type(value).__qualname__} cannot be pickled ({describe(error)})"
        ) from None


def _numpy_digest(value: Any) -> str:
    import numpy as np

    if isinstance(value, np.ndarray) and value.dtype != object:
        data = np.ascontiguousarray(value)
        return sha("ndarray", value.dtype.str, repr(value.shape), data.data.cast("B"))
    if isinstance(value, np.generic):
        return sha("numpy", value.dtype.str, value.tobytes())
    return _pickled(value)


def _pandas_digest(value: Any) -> str:
    import pandas as pd

    try:
        if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
            hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
            meta = repr((type(value).__name__, getattr(value, "name", None),
                         list(map(str, getattr(value, "columns", ()))),
                         list(map(str, value.dtypes if hasattr(value, "dtypes")
                                  else [value.dtype]))))  # fmt: skip
            return sha("pandas", meta, hashed.to_numpy().tobytes())
    except TypeError:
        pass  # cells that pandas cannot hash (lists, dicts): the pickle decides
    return _pickled(value)
