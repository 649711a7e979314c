"""What a fan-out maps over: its element parameters, their sources, cross product or zip.

``@flow.task(fan_out=...)`` takes one of these forms:

==================================  ======================================================
``fan_out="items"``                 parameter ``items`` takes each element of ``items``: an
                                    upstream task's result, or a run variable
``fan_out={"repo": "repos"}``       parameter ``repo`` takes each element of source
                                    ``repos`` (the parameter is named freely)
``fan_out=["a", "b"]``              the cross product of ``a`` and ``b`` (Airflow's
                                    ``expand`` over several arguments); also
                                    ``{"x": "xs", "y": "ys"}`` and ``nf.product(...)``
``fan_out=nf.zip("a", "b")``        pairs by position (Prefect's ``map`` over several
                                    iterables): sources of unequal lengths are an error;
                                    also ``nf.zip(repo="repos", day="days")``
==================================  ======================================================

A source is a task of the flow or a run variable (a task's parameter default counts, for the
one-name form). The one-name form stays a plain string in the spec, so a flow's version
does not change with this module; the others are a :class:`FanOut` value.

Everything here is definition-time data and pure functions; :mod:`nbflow.elements` combines
sources into elements at run time.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .errors import FanOutError

Mode = Literal["product", "zip"]


class FanOut(BaseModel):
    """A fan-out over renamed parameters or several sources: ``(parameter, source)`` pairs
    and how their elements combine (``"product"`` or ``"zip"``)."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = "product"
    params: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        inner = ", ".join(p if p == s else f"{p}={s!r}" for p, s in self.params)
        return f"nf.{self.mode}({inner})"


def _pairs_of(names: Iterable[Any], renamed: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    # A task object stands for its name (`nf.zip(repo=repos)`).
    pairs = [(_name(n), _name(n)) for n in names] + [(p, _name(s)) for p, s in renamed.items()]
    for param, source in pairs:
        for value in (param, source):
            if not isinstance(value, str) or not value.isidentifier():
                raise ValueError(
                    f"fan_out names parameters and sources by name (identifiers), got {value!r}"
                )
    params = [p for p, _ in pairs]
    twice = sorted({p for p in params if params.count(p) > 1})
    if twice:
        raise ValueError(f"fan_out names parameter {twice[0]!r} twice")
    if not pairs:
        raise ValueError("fan_out needs at least one parameter")
    return tuple(pairs)


def _name(value: Any) -> Any:
    found = getattr(value, "name", None)
    return found if isinstance(found, str) and not isinstance(value, str) else value


def zip(*names: str, **renamed: Any) -> FanOut:
    """Fan out over elements taken by position from each source (Prefect's ``map``):
    ``nf.zip("a", "b")`` gives ``(a[0], b[0]), (a[1], b[1]), ...``; ``nf.zip(repo="repos",
    day="days")`` names the parameters freely. Sources of unequal lengths are an error
    (:class:`~nbflow.errors.FanOutError`), raised before any task runs when the sources are
    run variables.

    Raises:
        ValueError: no name, a name that is no identifier, or a parameter given twice.
    """
    return FanOut(mode="zip", params=_pairs_of(names, renamed))


def product(*names: str, **renamed: Any) -> FanOut:
    """Fan out over every combination of the sources' elements (Airflow's ``expand`` over
    several arguments): ``nf.product("a", "b")``, also written ``fan_out=["a", "b"]``.

    Raises:
        ValueError: no name, a name that is no identifier, or a parameter given twice.
    """
    return FanOut(mode="product", params=_pairs_of(names, renamed))


def coerce(value: Any) -> str | FanOut | None:
    """The canonical form of a ``fan_out=`` value (see the module docstring): a plain
    string when one parameter takes its own source's elements, else a :class:`FanOut`.

    Raises:
        ValueError: a form that is none of the above (pydantic names the field).
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, FanOut):
        fan_out = value
    elif isinstance(value, Mapping):
        if set(value) == {"mode", "params"}:  # the JSON form of a FanOut (a spec read back)
            fan_out = FanOut(mode=value["mode"], params=tuple(map(tuple, value["params"])))
        else:
            fan_out = FanOut(params=_pairs_of((), dict(value)))
    elif isinstance(value, list | tuple):
        fan_out = FanOut(params=_pairs_of(value, {}))
    else:
        raise ValueError(
            f"fan_out must be a parameter name, a list of names (cross product), a mapping "
            f"{{parameter: source}}, or nf.zip(...)/nf.product(...), got {value!r}"
        )
    if len(fan_out.params) == 1:
        param, source = fan_out.params[0]
        if param == source:
            return param
        if fan_out.mode != "product":  # one source: zip and product are the same
            fan_out = FanOut(params=fan_out.params)
    return fan_out


def pairs(fan_out: str | FanOut) -> tuple[tuple[str, str], ...]:
    """``(element parameter, source)`` of each parameter the fan-out maps."""
    return ((fan_out, fan_out),) if isinstance(fan_out, str) else fan_out.params


def mode(fan_out: str | FanOut) -> Mode:
    """How the sources' elements combine: ``"product"`` or ``"zip"``."""
    return "product" if isinstance(fan_out, str) else fan_out.mode


def renamed(fan_out: str | FanOut | None) -> frozenset[str]:
    """Element parameters that are not named after their source: never a dependency."""
    if fan_out is None or isinstance(fan_out, str):
        return frozenset()
    return frozenset(p for p, s in fan_out.params if p != s)


def shown(fan_out: str | FanOut) -> str:
    """How messages write the fan-out: ``'items'`` or ``nf.zip(a, b)``."""
    return repr(fan_out) if isinstance(fan_out, str) else str(fan_out)


def check_source(task: str, fan_out: str | FanOut, source: str, value: Any, where: str) -> None:
    """Refuse a source value a fan-out cannot map over (``where``: "run variable",
    "upstream result"...).

    A run variable must be a collection that can be read more than once: a one-shot
    iterator could not be hashed for the cache nor read again on resume, and a string would
    fan out over its characters (say ``[text]`` for one element).

    Raises:
        FanOutError: it is not iterable, or (a run variable) it is a string, bytes or an
            iterator.
    """
    head = f"task {task!r} fan_out={shown(fan_out)}: {where} {source!r}"
    if isinstance(value, str | bytes) and where == "run variable":
        raise FanOutError(
            f"{head} is a {type(value).__name__}, which would fan out over its characters; "
            f"give a list, e.g. variables={{{source!r}: [{value!r}]}}"
        )
    if isinstance(value, Iterator) and where == "run variable":
        raise FanOutError(
            f"{head} is a one-shot iterator ({type(value).__name__}); pass a list "
            f"(variables={{{source!r}: list(...)}}) so the run can hash and record it"
        )
    try:
        iter(value)
    except TypeError:
        raise FanOutError(
            f"{head} ({type(value).__name__}) is not iterable; a fan-out maps over a list (or "
            "any iterable, or a task that yields its elements)"
        ) from None


def zip_mismatch(task: str, fan_out: str | FanOut, sizes: Mapping[str, int]) -> FanOutError:
    """The error of a zip whose sources have unequal lengths (``sizes``: source -> length,
    for those known)."""
    listed = ", ".join(f"{s!r} has {n} element{'s' if n != 1 else ''}" for s, n in sizes.items())
    return FanOutError(
        f"task {task!r} fan_out={shown(fan_out)}: zip needs sources of equal lengths, but "
        f"{listed}; use a cross product (fan_out=[...]) to combine every element, "
        "or make the sources equally long"
    )


def combine_lists(
    fan_out: str | FanOut, task: str, sources: list[list[Any]]
) -> builtins.zip[tuple[Any, ...]] | Iterator[tuple[Any, ...]]:
    """The elements of ``sources`` (lists, in ``pairs`` order) as value tuples, in order:
    row-major for a product, by position for a zip.

    Raises:
        FanOutError: a zip of unequal lengths.
    """
    if mode(fan_out) == "zip" and len({len(s) for s in sources}) > 1:
        names = [s for _, s in pairs(fan_out)]
        raise zip_mismatch(task, fan_out, dict(builtins.zip(names, map(len, sources), strict=True)))
    if len(sources) == 1:
        return builtins.zip(sources[0])
    if mode(fan_out) == "zip":
        return builtins.zip(*sources, strict=True)  # (lengths checked above)
    import itertools

    return itertools.product(*sources)
