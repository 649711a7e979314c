"""Safe ``${...}`` templates: dotted paths into run variables and upstream results, no eval.

A template is ``${root.seg.seg}``; ``root`` is one of a fixed set of names (``vars``,
``results`` and ``item`` in a flow's parameters) and each segment is a mapping key, a list
index (``${results.extract.rows.0}``) or a field of a plain data object: a dataclass, a
pydantic model, a namedtuple or a :class:`types.SimpleNamespace`. That is the whole language:
there are no operators, calls or expressions, so resolving a template can only read data.
Other objects' attributes are refused: a path through a generator's ``gi_frame`` reached a
module's globals, and from there ``os.environ``.

- A string that is exactly one template resolves to the value itself (a list stays a list).
- A template inside a longer string is interpolated with ``str()``: ``"s3://${vars.bucket}/x"``.
- ``$${`` is a literal ``${``.
- Mappings and lists are walked, so templates may sit anywhere inside ``parameters``.

Syntax is checked when a flow is loaded (:func:`compile_value` raises
:class:`TemplateSyntaxError`); a missing key is found at run time and raises
:class:`TemplateError`, whose message names the template, its place and the missing key.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel

from ..errors import DefinitionError, NbflowError

#: The roots a flow's task parameters may read.
TASK_ROOTS: tuple[str, ...] = ("vars", "results", "item")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateSyntaxError(DefinitionError):
    """A ``${...}`` template is malformed (found when the flow is loaded).

    ``where`` is the value's place, ``reason`` what is wrong with it.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where, self.reason = where, reason
        super().__init__(f"{where or 'value'}: {reason}")


class TemplateError(NbflowError, LookupError):
    """A template names something that does not exist when it is resolved.

    ``template`` is the template text, ``where`` its place (``tasks.load.parameters.table``),
    ``key`` the missing key or index.
    """

    def __init__(self, template: str, where: str, key: str, reason: str) -> None:
        self.template = template
        self.where = where
        self.key = key
        place = f" in {where}" if where else ""
        super().__init__(f"template {template!r}{place}: {reason}")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``${root.path}`` occurrence: what it reads and where it was written."""

    text: str
    root: str
    path: tuple[str, ...]
    where: str

    @property
    def name(self) -> str | None:
        """The first segment after the root (a task id or variable name), if any."""
        return self.path[0] if self.path else None

    def resolve(self, context: Mapping[str, Any]) -> Any:
        """Follow the path through ``context``.

        Raises:
            TemplateError: a root, key, index or field is missing, or a step would read an
                attribute of something that is not plain data.
        """
        if self.root not in context:
            raise TemplateError(self.text, self.where, self.root, f"{self.root!r} is not set here")
        value = context[self.root]
        walked = self.root
        for segment in self.path:
            value = _step(self, value, segment, walked)
            walked = f"{walked}.{segment}"
        return value


def _step(ref: Reference, value: Any, segment: str, walked: str) -> Any:
    names = _fields_of(value)
    if names is not None and not (isinstance(value, tuple) and _is_int(segment)):
        if segment in names:  # checked before Sequence: a namedtuple is one
            return getattr(value, segment)
        known = ", ".join(repr(n) for n in list(names)[:10]) or "none"
        reason = f"{walked} is a {type(value).__name__} with no field {segment!r}"
        raise TemplateError(ref.text, ref.where, segment, f"{reason} (its fields: {known})")
    if isinstance(value, Mapping):
        if segment in value:
            return value[segment]
        if _is_int(segment) and int(segment) in value:
            return value[int(segment)]
        keys = ", ".join(repr(k) for k in list(value)[:10]) or "none"
        raise TemplateError(
            ref.text, ref.where, segment, f"{walked} has no key {segment!r} (its keys: {keys})"
        )
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if not _is_int(segment):
            raise TemplateError(
                ref.text,
                ref.where,
                segment,
                f"{walked} is a {type(value).__name__}; use an index, not {segment!r}",
            )
        try:
            return value[int(segment)]
        except IndexError:
            raise TemplateError(
                ref.text,
                ref.where,
                segment,
                f"index {segment} is out of range: {walked} has {len(value)} items",
            ) from None
    raise TemplateError(
        ref.text,
        ref.where,
        segment,
        f"{walked} is {type(value).__name__} {_short(value)}, which has no key {segment!r}; "
        "templates read mapping keys, list indices and the fields of dataclasses, pydantic "
        "models, namedtuples and SimpleNamespace objects, nothing else",
    )


def _fields_of(value: Any) -> Collection[str] | None:
    """The fields a template may read of a plain data object, or None for anything else
    (classes, modules, functions, generators, frames and every other object)."""
    if isinstance(value, type):
        return None
    if dataclasses.is_dataclass(value):
        return [f.name for f in dataclasses.fields(value)]
    if isinstance(value, tuple) and isinstance(getattr(type(value), "_fields", None), tuple):
        return type(value)._fields  # type: ignore[attr-defined]
    if isinstance(value, SimpleNamespace):
        return [name for name in vars(value) if not name.startswith("_")]
    if isinstance(value, BaseModel):
        return list(type(value).model_fields)
    return None


def _is_int(text: str) -> bool:
    return text.isdigit() or (text.startswith("-") and text[1:].isdigit())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True, slots=True)
class Interpolation:
    """A string holding literal text and templates; resolves to a string."""

    parts: tuple[str | Reference, ...]

    def resolve(self, context: Mapping[str, Any]) -> str:
        """Join the literal parts and the resolved templates (``str()`` of each)."""
        return "".join(p if isinstance(p, str) else str(p.resolve(context)) for p in self.parts)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A parameter value with its templates parsed; :meth:`resolve` gives the real value."""

    value: Any  # literal | Reference | Interpolation | dict[str, Compiled] | list[Compiled]

    def resolve(self, context: Mapping[str, Any]) -> Any:
        """The value with every template replaced by what it reads in ``context``.

        Raises:
            TemplateError: a template reads a missing key.
        """
        value = self.value
        if isinstance(value, Reference | Interpolation):
            return value.resolve(context)
        if isinstance(value, dict):
            return {k: v.resolve(context) for k, v in value.items()}
        if isinstance(value, list):
            return [v.resolve(context) for v in value]
        return value

    def references(self) -> Iterator[Reference]:
        """Every template inside, in document order."""
        value = self.value
        if isinstance(value, Reference):
            yield value
        elif isinstance(value, Interpolation):
            yield from (p for p in value.parts if isinstance(p, Reference))
        elif isinstance(value, dict):
            for item in value.values():
                yield from item.references()
        elif isinstance(value, list):
            for item in value:
                yield from item.references()


def compile_value(value: Any, where: str = "", roots: Sequence[str] = TASK_ROOTS) -> Compiled:
    """Parse every template in ``value`` (walking mappings and lists).

    ``where`` names the value's place in error messages; ``roots`` are the names a template
    may start with.

    Raises:
        TemplateSyntaxError: a template is unclosed, empty, has an unknown root, an empty or
            private segment (``_x``), or names no key after its root.
    """
    if isinstance(value, str):
        return Compiled(_compile_string(value, where, tuple(roots)))
    if isinstance(value, Mapping):
        return Compiled(
            {
                str(k): compile_value(v, f"{where}.{k}" if where else str(k), roots)
                for k, v in value.items()
            }
        )
    if isinstance(value, list | tuple):
        return Compiled([compile_value(v, f"{where}[{i}]", roots) for i, v in enumerate(value)])
    return Compiled(value)


def _compile_string(text: str, where: str, roots: tuple[str, ...]) -> Any:
    parts: list[str | Reference] = []
    literal: list[str] = []
    position = 0
    while True:
        start = text.find("${", position)
        if start < 0:
            literal.append(text[position:])
            break
        if start > 0 and text[start - 1] == "$":  # `$${` escapes a literal `${`
            literal.append(text[position : start - 1] + "${")
            position = start + 2
            continue
        literal.append(text[position:start])
        end = text.find("}", start)
        if end < 0:
            raise TemplateSyntaxError(where, f"template {text[start:]!r} is not closed with '}}'")
        if "".join(literal):
            parts.append("".join(literal))
        literal = []
        parts.append(_parse_reference(text[start : end + 1], where, roots))
        position = end + 1
    if literal and "".join(literal):
        parts.append("".join(literal))
    if not any(isinstance(p, Reference) for p in parts):
        return "".join(p for p in parts if isinstance(p, str))
    if len(parts) == 1:
        return parts[0]  # exactly one template: keep the value's type
    return Interpolation(tuple(parts))


def _parse_reference(text: str, where: str, roots: tuple[str, ...]) -> Reference:
    inner = text[2:-1].strip()
    allowed = ", ".join(f"${{{r}...}}" for r in roots)
    if not inner:
        raise TemplateSyntaxError(where, f"empty template {text!r}; use one of {allowed}")
    root, *path = inner.split(".")
    if root not in roots:
        raise TemplateSyntaxError(
            where,
            f"template {text!r} starts with {root!r}; a template here starts with "
            f"one of {', '.join(roots)} (e.g. ${{vars.region}}, ${{results.extract.rows}})",
        )
    for segment in path:
        if not _SEGMENT.fullmatch(segment):
            raise TemplateSyntaxError(
                where,
                f"template {text!r} has an invalid part {segment!r} "
                "(parts are keys or indices of letters, digits, '_' and '-')",
            )
        if segment.startswith("_"):
            raise TemplateSyntaxError(
                where, f"template {text!r} reads a private name {segment!r}, which is not allowed"
            )
    if root in ("vars", "results") and not path:
        what = "a variable" if root == "vars" else "a task id"
        raise TemplateSyntaxError(where, f"template {text!r} must name {what}: ${{{root}.NAME}}")
    if root in ("vars", "results") and not _IDENTIFIER.fullmatch(path[0]):
        raise TemplateSyntaxError(
            where,
            f"template {text!r}: {path[0]!r} is not a valid name "
            "(letters, digits and '_', not starting with a digit)",
        )
    return Reference(text, root, tuple(path), where)


def resolve(value: Any, context: Mapping[str, Any], where: str = "") -> Any:
    """Compile and resolve ``value`` against ``context`` in one step (any root allowed).

    Raises:
        TemplateSyntaxError: a template is malformed.
        TemplateError: a template reads a missing key.
    """
    return compile_value(value, where, roots=tuple(context)).resolve(context)
