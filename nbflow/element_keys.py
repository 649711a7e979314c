"""``key=`` on a fan-out task: a name for each element, unique within the task.

``@flow.task(fan_out="repos", key="item['name']")`` (a safe expression, evaluated like a
condition) or ``key=lambda item: item["name"]`` (a callable): ``item`` is the element, or for
a fan-out over several parameters a dict ``{parameter: value}``; an expression may also use
each element parameter by its name. The key must be a ``str`` or an ``int``; it is shown as
text.

The key names the element everywhere an index would: timeline rows (``fetch[alpha]``), its
errors (``run.element_errors``), the dashboard, ``run.elements(task)``, and the store (a
cached element's result is recorded under it). Two elements with the same key are an error
(:class:`~nbflow.errors.DuplicateKeyError`): raised before any task runs when the elements
are known then (run variables), otherwise the task fails as the second one arrives, before
it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .conditions import Condition, parse_condition
from .errors import ConditionError, DuplicateKeyError, FanOutError, closest, describe


def parse_key(task: str, expression: str, params: Iterable[str]) -> Condition:
    """Parse the ``key=`` expression of ``task``, whose element parameters are ``params``.

    Raises:
        ConditionError: it does not parse, uses a forbidden construct, or a name other than
            ``item`` and the element parameters (with a close match when there is one).
    """
    try:
        condition = parse_condition(task, expression)
    except ConditionError as error:
        raise ConditionError(task, error.expression, error.reason, field="key") from None
    allowed = ("item", *params)
    unknown = sorted(condition.names - set(allowed))
    if unknown:
        hint = closest(unknown[0], allowed)
        raise ConditionError(
            task,
            expression,
            f"unknown name {unknown[0]!r}" + (f" (did you mean {hint!r}?)" if hint else "")
            + f"; a key can use item (the element) and {', '.join(map(repr, allowed[1:]))}",
            field="key",
        )  # fmt: skip
    return condition


def item_of(params: tuple[str, ...], values: tuple[Any, ...]) -> Any:
    """What ``key=`` sees as ``item``: the element's value, or a dict of them by parameter."""
    return values[0] if len(params) == 1 else dict(zip(params, values, strict=True))


class Keys:
    """The keys of one fan-out task's elements in one run (see the module docstring).

    Args:
        task: the task's name.
        expression: its ``key=`` string, or None when ``key`` is a callable.
        key: the callable, or None.
        params: the element parameters, in ``fan_out`` order.
    """

    def __init__(
        self,
        task: str,
        expression: str | None,
        key: Callable[[Any], Any] | None,
        params: tuple[str, ...],
    ) -> None:
        self.task, self.params = task, params
        self._callable = key
        self.shown = repr(expression) if expression is not None else _name_of(key)
        self._condition = parse_key(task, expression, params) if expression is not None else None
        self._seen: dict[str, int] = {}

    def key(self, index: int, values: tuple[Any, ...]) -> str:
        """The key of element ``index`` (its element parameters' ``values``), checked unique.

        Raises:
            DuplicateKeyError: an earlier element has this key.
            FanOutError: the key is not a str or int, or computing it raised.
        """
        item = item_of(self.params, values)
        try:
            if self._condition is not None:
                found = self._condition.value(
                    {"item": item, **dict(zip(self.params, values, strict=True))}
                )
            else:
                assert self._callable is not None
                found = self._callable(item)
        except ConditionError as error:
            raise FanOutError(
                f"task {self.task!r} key={self.shown} failed for element {index}: {error.reason}"
            ) from error
        except Exception as error:
            raise FanOutError(
                f"task {self.task!r} key={self.shown} raised {describe(error)} for element {index}"
            ) from error
        if isinstance(found, bool) or not isinstance(found, str | int):
            raise FanOutError(
                f"task {self.task!r} key={self.shown} gave {type(found).__name__} {found!r} "
                f"for element {index}; a key must be a str or an int"
            )
        text = str(found)
        first = self._seen.setdefault(text, index)
        if first != index:
            raise DuplicateKeyError(self.task, text, first, index, self.shown)
        return text


def _name_of(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)
