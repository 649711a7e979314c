"""One task of a flow definition: :class:`Task`, and how a function becomes one.

:func:`build_task` checks a function and its validated options (every definition error that
needs no spec is raised here, by the decorator) and makes the :class:`Task`;
:func:`build_specs` gives tasks their :class:`~nbflow.spec.TaskSpec`, all at once, working
out what depends only on a code object or an options object once. :mod:`nbflow.dsl`'s
``Definition`` holds the tasks of a flow.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from types import FunctionType
from typing import TYPE_CHECKING, Any

from . import mapping
from .checks import check_task_name
from .conditions import Condition, parse_condition
from .element_keys import parse_key
from .errors import DefinitionError
from .identity import source_digest
from .joins import check_join
from .loops import check_loop
from .signals import WaitFor, check_wait_for
from .spec import ParamSpec, TaskOptions, TaskSpec, introspect_params, task_spec, unwrapped
from .subflows import Subflow

# What functools.update_wrapper copies; a plain function's are set one by one (and on 3.12+
# __type_params__ is read through).
_WRAPPER_ASSIGNMENTS = functools.WRAPPER_ASSIGNMENTS
_MISSING = object()


class Task:
    """A function registered as a task: still callable as the plain function.

    ``task(...)`` calls the original function, so one task can be unit-tested on its own.
    ``task.spec`` is its :class:`~nbflow.spec.TaskSpec`.

    Like :func:`functools.update_wrapper`, a task has the function's ``__name__``,
    ``__doc__``, ``__wrapped__`` and the other wrapper attributes; the function's own
    attributes (its ``__dict__``) are read through the task rather than copied.
    """

    # A flow of 100,000 tasks keeps 100,000 of these alive, so a task is one object: its
    # attributes are stored inline (no instance dict is made until someone reads __dict__),
    # nothing is copied from the function's __dict__, and the TaskSpec, a pydantic model of
    # some thirty fields, is built when first needed (the flow builds all of them at once,
    # in validate(), with the garbage collector paused). Every definition error that can be
    # found without the spec is still raised by the decorator.
    def __init__(
        self,
        fn: Callable[..., Any],
        options: TaskOptions,
        name: str,
        index: int,
        condition: Condition | None = None,
        params: dict[Any, ParamSpec] | None = None,
    ) -> None:
        self.fn = fn
        self.condition = condition
        self._options = options
        self._name = name
        self._index = index
        self._params = params  # the flow's shared ParamSpecs (see introspect_params)
        self._spec: TaskSpec | None = None
        if type(fn) is FunctionType:  # the usual case, with the same attributes in order
            self.__module__ = fn.__module__
            self.__name__ = fn.__name__
            self.__qualname__ = fn.__qualname__
            self.__doc__ = fn.__doc__
            self.__annotations__ = fn.__annotations__
        else:
            for attr in _WRAPPER_ASSIGNMENTS:
                value = getattr(fn, attr, _MISSING)
                if value is not _MISSING:
                    setattr(self, attr, value)
        self.__wrapped__ = fn

    if not TYPE_CHECKING:  # for the type checker, a task has only the attributes above

        def __getattr__(self, attr: str) -> Any:
            # Only called when normal lookup fails: the function's own attributes, which
            # functools.update_wrapper would have copied (read live here).
            try:
                fn = object.__getattribute__(self, "fn")
                if attr in _WRAPPER_ASSIGNMENTS:  # one the fast path of __init__ skips
                    return getattr(fn, attr)
                return fn.__dict__[attr]
            except (AttributeError, KeyError):  # no function yet (copy, unpickling)...
                raise AttributeError(
                    f"{type(self).__name__!r} object has no attribute {attr!r}"
                ) from None

    @property
    def name(self) -> str:
        """The task's name in its flow."""
        return self._name

    @property
    def spec(self) -> TaskSpec:
        """The task's :class:`~nbflow.spec.TaskSpec` (built on first use, then kept)."""
        if self._spec is None:
            build_specs((self,))
        return self._spec  # type: ignore[return-value]  # built just now

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        kind = "async " if self.spec.is_async else ""
        return f"<{kind}Task {self._name!r} priority={self._options.priority}>"


def build_specs(tasks: Iterable[Task]) -> None:
    """Give each of ``tasks`` that has none its spec: what introspection of its function
    finds (parameters, source hash, sync or async) with its options.

    What depends only on a code object or an options object is worked out once per call:
    10,000 tasks made by one factory with one set of options are hashed once.
    """
    facts: dict[Any, tuple[str, bool]] = {}
    for task in tasks:
        if task._spec is not None:
            continue
        fn = task.fn
        try:
            params = introspect_params(fn, task._params)
        except (ValueError, TypeError) as error:  # a builtin with no signature to read
            raise DefinitionError(
                f"task {task._name!r}: its function's parameters cannot be read ({error}); "
                "wrap the call in a function of your own, e.g. lambda: ... or def "
                f"{task._name}(...): ..."
            ) from None
        if type(fn) is FunctionType and "__wrapped__" not in fn.__dict__:
            # Tasks defined in a loop share one code object: its facts are read once.
            found = facts.get(fn.__code__)
            if found is None:
                found = facts[fn.__code__] = _code_facts(fn)
        else:
            found = _code_facts(fn)
        source_hash, is_async = found
        # `options` is validated already: assemble the spec without a second validation pass.
        task._spec = task_spec(
            task._options, task._name, params, is_async, source_hash, task._index
        )


def _code_facts(fn: Callable[..., Any]) -> tuple[str, bool]:
    """``(source digest, is async)`` of ``fn`` (what it wraps decides both).

    The digest is of the function's own code only, as it was defined: what a run's result
    depends on (defaults, globals, helpers, the options' callables) is the task's
    identity, worked out at each run (see :mod:`nbflow.identity`).
    """
    target = unwrapped(fn)
    is_async = (
        bool(target.__code__.co_flags & inspect.CO_COROUTINE)
        if type(target) is FunctionType
        else inspect.iscoroutinefunction(target)
    ) or (not inspect.isfunction(target) and inspect.iscoroutinefunction(type(target).__call__))
    return source_digest(fn), is_async


def build_task(
    fn: Callable[..., Any],
    options: TaskOptions,
    index: int,
    name: str | None = None,
    params: dict[Any, Any] | None = None,
) -> Task:
    """Check ``fn`` and ``options`` and make them a :class:`Task` (its spec is built later).

    ``name`` overrides ``options.name`` (options shared between tasks carry none);
    ``params`` is the flow's dict of shared parameter specs (see ``introspect_params``).

    Raises:
        DefinitionError: ``fn`` is not callable, its name is reserved (``vars``, ``results``...:
            see :data:`~nbflow.checks.RESERVED_TASK_NAMES`), or ``fan_out`` names no parameter
            (or a source the task itself).
            A join option that does not fit the task (see :func:`~nbflow.joins.check_join`).
        ConditionError: the ``when``, ``complete_when`` or ``key`` string does not parse or
            uses a forbidden construct.
    """
    if not callable(fn):
        raise DefinitionError(f"@flow.task needs a function, got {fn!r}")
    name = name or options.name or getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise DefinitionError("a lambda or callable object needs a task name: flow.task(name=...)")
    check_task_name(name)
    if options.fan_out is not None:
        check_fan_out(name, options, [p.name for p in introspect_params(fn, params)])
    condition = parse_condition(name, options.when) if options.when is not None else None
    if options.cancel_rest or options.complete_when is not None:
        check_join(name, options)
    if options.max_iterations is not None or options.until is not None or options.until_fn:
        check_loop(name, options)
    if options.wait_for is not None:
        check_signal_params(name, options.wait_for, fn, params)
    return Task(fn, options, name, index, condition, params)


def check_fan_out(name: str, options: TaskOptions, params: list[str]) -> None:
    """The rules of ``fan_out=`` and ``key=`` that the function alone decides.

    Raises:
        DefinitionError: an element parameter that is not a parameter of the function, or a
            source that is the task itself.
        ConditionError: the ``key`` expression does not parse or uses an unknown name.
    """
    assert options.fan_out is not None
    pairs = mapping.pairs(options.fan_out)
    for param, source in pairs:
        if param not in params:
            raise DefinitionError(
                f"task {name!r} fan_out={mapping.shown(options.fan_out)}: {param!r} is not a "
                f"parameter of the function; parameters are {params}"
            )
        if source == name:
            raise DefinitionError(
                f"task {name!r} fan_out={mapping.shown(options.fan_out)}: a task cannot fan "
                "out over its own result"
            )
    if options.key is not None:
        parse_key(name, options.key, [p for p, _ in pairs])


def check_signal_params(
    name: str, wait: WaitFor, fn: Callable[..., Any], params: dict[Any, Any] | None
) -> None:
    """Each signal ``name`` waits for must be a parameter of ``fn`` (a subflow passes its
    signals on to its child run, which checks them itself).

    Raises:
        DefinitionError: a signal that is no parameter (see :func:`~nbflow.signals.check_wait_for`).
    """
    if isinstance(fn, Subflow):
        return
    check_wait_for(name, wait, [p.name for p in introspect_params(fn, params)], ())
