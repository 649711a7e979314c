"""The evaluator behind ``when=`` conditions: simpleeval, bounded and read-only.

simpleeval refuses imports, dunder attributes and huge powers, but a condition may still call
any method of the values it reads. Two of those are hostile: methods that change the value
(``data.clear()`` empties the result the downstream task then receives) and methods whose
output is unbounded (``s.zfill(2 * 10**9)`` allocates 2 GB). So a condition here

- is refused when it is written (:func:`static_problem`) if it calls or names a mutating
  method (:data:`MUTATORS`), passes ``inplace=True``, or nests more than :data:`MAX_DEPTH`
  levels (simpleeval evaluates recursively);
- at run time may call only the read-only methods of built-in types (:data:`READ_ONLY`), and
  no method named in :data:`MUTATORS` on other objects (nbflow cannot know what your own
  classes' methods do: those are called as they are);
- has a budget, :data:`MAX_CREATED` characters or items in all, for what it creates: string
  and sequence repetition and concatenation, growing string methods (``zfill``, ``ljust``,
  ``center``, ``expandtabs``, ``replace``, ``join``, ``translate``...), copies (``sorted``,
  ``list``...), ``str()`` and f-strings, each charged *before* it runs; integers may have at
  most :data:`MAX_BITS` bits.

Every refusal is a :class:`simpleeval.InvalidExpression`, which the caller turns into a
:class:`~nbflow.errors.ConditionError`. Nothing here calls :func:`eval` or :func:`exec`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable, Mapping, Sized
from numbers import Number
from types import ModuleType
from typing import Any

import simpleeval

#: What one evaluation may create in all: characters of new strings plus items of new
#: containers (a copy of a 10-million-item result is still allowed, once).
MAX_CREATED = 10_000_000
#: The largest integer a condition may compute, in bits (about 300,000 decimal digits).
MAX_BITS = 1_000_000
#: The largest exponent of ``**`` (simpleeval's default, 4,000,000, is far too slow).
MAX_POWER = 1_000
#: How deeply a condition may nest (simpleeval recurses once per level, or more).
MAX_DEPTH = 100
#: ``str()`` and f-strings print values of at most this many items in a condition.
MAX_PRINTED_ITEMS = 100_000

#: Method names that change their object, refused on any value and when a condition is
#: written: the built-in containers' (list, dict, set, bytearray, deque), generators', files',
#: queues' and numpy's in-place methods.
MUTATORS = frozenset(
    {
        "add",
        "append",
        "appendleft",
        "byteswap",
        "clear",
        "close",
        "difference_update",
        "discard",
        "extend",
        "extendleft",
        "fill",
        "insert",
        "intersection_update",
        "itemset",
        "move_to_end",
        "pop",
        "popitem",
        "popleft",
        "put",
        "put_nowait",
        "remove",
        "resize",
        "reverse",
        "rotate",
        "send",
        "setdefault",
        "setflags",
        "sort",
        "symmetric_difference_update",
        "throw",
        "truncate",
        "update",
        "write",
        "writelines",
    }
)


def _public(cls: type) -> frozenset[str]:
    return frozenset(name for name in dir(cls) if not name.startswith("_"))


_IMMUTABLE = (str, bytes, int, float, complex, bool, tuple, frozenset, range, type(None))
#: The methods a condition may call on each built-in type (exact types only: a subclass,
#: such as a defaultdict or an OrderedDict, is treated like any other object).
READ_ONLY: dict[type, frozenset[str]] = {
    **{cls: _public(cls) for cls in _IMMUTABLE},
    bytearray: _public(bytes) & _public(bytearray),
    list: frozenset({"copy", "count", "index"}),
    dict: frozenset({"copy", "fromkeys", "get", "items", "keys", "values"}),
    set: frozenset(_public(frozenset)),
}
_TEXT = (str, bytes, bytearray)
_SCALARS = frozenset({int, float, str, bool, type(None), bytes, complex})
_WIDTH = re.compile(r"\d+")


def static_problem(tree: ast.AST) -> str | None:
    """What makes a parsed condition unacceptable before it ever runs, or None.

    Its nesting depth, and mutating method names (``data.clear()``, or ``key=data.pop``),
    and ``inplace=`` arguments other than ``False``.
    """
    stack: list[tuple[ast.AST, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return f"it nests more than {MAX_DEPTH} levels deep; split it or compute in a task"
        if isinstance(node, ast.Attribute) and node.attr in MUTATORS:
            return (
                f"method {node.attr!r} changes the value it is called on; a condition only "
                "reads results and variables (compute in a task instead)"
            )
        if (
            isinstance(node, ast.keyword)
            and node.arg == "inplace"
            and not (isinstance(node.value, ast.Constant) and node.value.value is False)
        ):
            return "inplace= changes a result; a condition only reads results and variables"
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


class BoundedEval(simpleeval.EvalWithCompoundTypes):
    """simpleeval with read-only method calls and a budget for what an evaluation creates.

    Make one per evaluation: the budget is spent as the expression runs.
    """

    def __init__(self, names: dict[str, Any], functions: Mapping[str, Callable[..., Any]]):
        self.left = MAX_CREATED
        operators = dict(simpleeval.DEFAULT_OPERATORS)
        operators[ast.Pow] = self._power
        operators[ast.Mult] = self._multiply
        operators[ast.Add] = self._add
        operators[ast.Mod] = self._modulo
        super().__init__(operators=operators, functions=dict(functions), names=names)
        # After super(), which adds list/tuple/dict/set: every function that copies is charged.
        for name in ("sorted", "list", "tuple", "dict", "set"):
            if name in self.functions:
                self.functions[name] = self._copying(self.functions[name])
        if "str" in self.functions:
            self.functions["str"] = self._str
        if "sum" in self.functions:
            self.functions["sum"] = self._sum

    # -- the budget ---------------------------------------------------------------------------

    def _spend(self, amount: int, what: str) -> None:
        if amount > self.left:
            raise simpleeval.IterableTooLong(
                f"{what} would make {amount:,} characters or items; a condition may create "
                f"{MAX_CREATED:,} in all"
            )
        self.left -= amount

    def _text(self, value: Any) -> str:
        self._spend(self._printed(value), "str() of this value")
        return str(value)

    def _printed(self, value: Any) -> int:
        size = _printed_size(value, self.left + 1)
        if size is None:
            raise simpleeval.IterableTooLong(
                f"str() of a value of more than {MAX_PRINTED_ITEMS:,} items is not available "
                "in a condition"
            )
        return size

    # -- operators ----------------------------------------------------------------------------

    def _power(self, base: Any, exponent: Any) -> Any:
        if isinstance(exponent, Number) and abs(exponent) > MAX_POWER:  # type: ignore[arg-type]
            raise simpleeval.NumberTooHigh(f"{base!r} ** {exponent!r} is too large to compute")
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
            _check_bits(abs(base).bit_length() * exponent, "this power")
        return base**exponent

    def _multiply(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            _check_bits(abs(a).bit_length() + abs(b).bit_length(), "this product")
            return a * b
        for sized, count in ((a, b), (b, a)):
            if hasattr(sized, "__len__") and isinstance(count, int):
                self._spend(len(sized) * max(count, 0), "this repetition")
        return simpleeval.safe_mult(a, b)

    def _add(self, a: Any, b: Any) -> Any:
        if hasattr(a, "__len__") and hasattr(b, "__len__"):
            self._spend(len(a) + len(b), "this concatenation")
        return simpleeval.safe_add(a, b)

    @staticmethod
    def _modulo(a: Any, b: Any) -> Any:
        if isinstance(a, _TEXT):
            raise simpleeval.FeatureNotAvailable(
                "%-formatting of strings is not available in a condition; compare the values"
            )
        return a % b

    # -- functions ----------------------------------------------------------------------------

    def _copying(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def charged(*args: Any, **kwargs: Any) -> Any:
            if args and hasattr(args[0], "__len__"):
                self._spend(len(args[0]), f"{fn.__name__}()")
            result = fn(*args, **kwargs)
            if not (args and hasattr(args[0], "__len__")) and hasattr(result, "__len__"):
                self._spend(len(result), f"{fn.__name__}()")  # from an iterator: after
            return result

        return charged

    def _str(self, value: Any = "", *args: Any) -> str:
        return self._text(value) if not args else str(value, *args)

    @staticmethod
    def _sum(values: Iterable[Any], start: Any = 0) -> Any:
        # sum(lists, []) is quadratic: a list of 10,000 lists of 10,000 makes 10**8 copies.
        if not isinstance(start, Number):
            raise simpleeval.FeatureNotAvailable(
                "sum() in a condition adds numbers; its start must be a number"
            )
        return sum(values, start)  # type: ignore[call-overload]

    # -- what simpleeval checks of every value ------------------------------------------------

    def _check_disallowed_items(self, item: Any) -> None:
        """simpleeval's check that no module or forbidden function hides in a value, walking
        each container once: simpleeval's own walk follows every reference, and a list of
        10,000 references to one list of 10,000 items took it 10**8 steps."""
        seen: set[int] = set()
        stack = [item]
        while stack:
            value = stack.pop()
            if type(value) in _SCALARS:
                continue
            if isinstance(value, list | tuple | set | frozenset | dict):
                if id(value) in seen:
                    continue
                seen.add(id(value))
                stack.extend(value.values() if isinstance(value, dict) else value)
            else:
                super()._check_disallowed_items(value)

    # -- attributes and calls -----------------------------------------------------------------

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        name = node.attr
        if name.startswith(tuple(simpleeval.DISALLOW_PREFIXES)):
            raise simpleeval.FeatureNotAvailable(f"access to private attribute {name!r}")
        if name in simpleeval.DISALLOW_METHODS:
            raise simpleeval.FeatureNotAvailable(f"method {name!r} is not available")
        owner = self._eval(node.value)
        try:
            item = getattr(owner, name)
        except (AttributeError, TypeError):
            try:  # simpleeval's fallback: a mapping's key read as an attribute
                item = owner[name]
            except (KeyError, TypeError, IndexError):
                raise simpleeval.AttributeDoesNotExist(name, self.expr) from None
        else:
            if callable(item):
                _check_method(owner, name)
        if isinstance(item, ModuleType):
            raise simpleeval.FeatureNotAvailable("modules are not available in a condition")
        if callable(item) and item in simpleeval.DISALLOW_FUNCTIONS:
            raise simpleeval.FeatureNotAvailable("this function is not available")
        return item

    def _eval_call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Attribute):
            return super()._eval_call(node)
        method = self._eval(node.func)
        args = [self._eval(a) for a in node.args]
        kwargs = dict(self._eval(k) for k in node.keywords)
        if kwargs.get("inplace"):
            raise simpleeval.FeatureNotAvailable("inplace= changes a result")
        owner = getattr(method, "__self__", None)
        if isinstance(owner, _TEXT):
            args = self._charge_text(owner, node.func.attr, args, kwargs)
        elif isinstance(owner, Sized) and node.func.attr in ("copy", "union", "difference"):
            self._spend(len(owner) + sum(len(a) for a in args if hasattr(a, "__len__")), "copy")
        elif isinstance(owner, int) and node.func.attr == "to_bytes":
            length = args[0] if args else kwargs.get("length", 1)
            if isinstance(length, int):
                self._spend(length, "int.to_bytes()")
        return method(*args, **kwargs)

    def _charge_text(self, text: Any, name: str, args: list[Any], kw: dict[str, Any]) -> list[Any]:
        """Charge the output of ``text.name(*args)`` before it is made; ``join``'s iterable is
        read into a list here, to be measured, and that list is what the call receives."""
        if name == "join" and args:
            items = list(args[0])
            sizes = [len(i) for i in items if hasattr(i, "__len__")]
            self._spend(sum(sizes) + len(text) * max(len(items) - 1, 0), f"{name}()")
            return [items, *args[1:]]
        self._spend(_text_output(text, name, args, kw), f"{type(text).__name__}.{name}()")
        return args

    def _eval_formattedvalue(self, node: ast.FormattedValue) -> Any:
        value = self._eval(node.value)
        if node.format_spec is None:
            return self._text(value)
        spec = self._eval(node.format_spec)
        widths = [int(w) for w in _WIDTH.findall(str(spec))]
        self._spend(max(widths, default=0) + self._printed(value), "f-string")
        return format(value, spec)


def _check_method(owner: Any, name: str) -> None:
    allowed = READ_ONLY.get(type(owner))
    if allowed is not None and name not in allowed:
        raise simpleeval.FeatureNotAvailable(
            f"method {type(owner).__name__}.{name}() changes its value; a condition only reads "
            "results and variables"
        )
    if allowed is None and (name in MUTATORS or name == "partition"):
        # partition is read-only on strings (allowed above), in place on numpy arrays.
        raise simpleeval.FeatureNotAvailable(
            f"method {name!r} of {type(owner).__name__} may change its value; a condition only "
            "reads results and variables"
        )


def _check_bits(bits: int, what: str) -> None:
    if bits > MAX_BITS:
        raise simpleeval.NumberTooHigh(f"{what} is too large to compute (over {MAX_BITS:,} bits)")


def _text_output(text: Any, name: str, args: list[Any], kw: dict[str, Any]) -> int:
    """An upper bound of the length of ``text.name(*args, **kw)`` (a string method)."""
    size = len(text)
    first = args[0] if args else None
    if name in ("zfill", "ljust", "rjust", "center"):
        width = kw.get("width", first)
        return max(size, width) if isinstance(width, int) else size
    if name == "expandtabs":
        tab = kw.get("tabsize", 8 if first is None else first)
        tabs = text.count("\t" if isinstance(text, str) else b"\t")
        return size + tabs * max(tab, 0) if isinstance(tab, int) else size
    if name == "replace" and len(args) >= 2 and all(hasattr(a, "__len__") for a in args[:2]):
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kw.get("count", -1)
        try:
            found = text.count(old) if len(old) else size + 1
        except TypeError:
            return size  # the call itself raises the TypeError
        if isinstance(count, int) and count >= 0:
            found = min(found, count)
        return size + found * max(len(new) - len(old), 0)
    if name == "translate" and first is not None:
        values = first.values() if isinstance(first, Mapping) else first
        longest = 1
        if isinstance(values, Iterable) and not isinstance(values, _TEXT):
            longest = max((len(v) for v in values if isinstance(v, str)), default=1)
        return size * max(longest, 1)
    if name == "encode":
        return 4 * size
    if name == "hex":
        return 3 * size
    return size


def _printed_size(value: Any, limit: int) -> int | None:
    """About how many characters ``str(value)`` makes; stops counting past ``limit``.

    A list holding one large list a million times prints a million copies of it: shared
    values are counted each time they appear, as printing them would. None when the value
    has more than :data:`MAX_PRINTED_ITEMS` items (counting them would take too long).
    """
    total = 0
    stack = [value]
    steps = 0
    while stack and total <= limit:
        steps += 1
        if steps > MAX_PRINTED_ITEMS:
            return None
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 3
        elif isinstance(item, bool | float | complex) or item is None:
            total += 24
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:  # another object: its own __str__ decides; count its name
            total += 40
    return total
