"""The decorator DSL: ``@flow.task`` turns functions into tasks of a flow definition.

:class:`Definition` holds the tasks and branches of a flow, in definition order, and builds
the :class:`~nbflow.spec.FlowSpec`. Defining a task again under the same name replaces it in
place (re-running a notebook cell), keeping its position so ordering stays stable.
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FunctionType
from typing import TYPE_CHECKING, Any, overload

from . import mapping
from .checks import check_options, check_task_name
from .collector import paused_gc
from .conditions import Condition, parse_condition
from .element_keys import parse_key
from .errors import DefinitionError
from .identity import source_digest
from .joins import check_join
from .loops import check_loop
from .retry import Retry
from .signals import WaitFor, check_wait_for
from .spec import (
    BranchSpec,
    FlowSpec,
    OnError,
    ParamSpec,
    TaskOptions,
    TaskSpec,
    TriggerRule,
    WeightRule,
    introspect_params,
    task_spec,
    unwrapped,
)
from .spec_hash import spec_version
from .subflows import Subflow
from .switch import Switch, make_switch

# What functools.update_wrapper copies; a plain function's are set one by one (and on 3.12+
# __type_params__ is read through).
_WRAPPER_ASSIGNMENTS = functools.WRAPPER_ASSIGNMENTS
_MISSING = object()
_BY_INDEX = operator.attrgetter("_index")


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
            _build_specs((self,))
        return self._spec  # type: ignore[return-value]  # built just now

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        kind = "async " if self.spec.is_async else ""
        return f"<{kind}Task {self._name!r} priority={self._options.priority}>"


def _build_specs(tasks: Iterable[Task]) -> None:
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
        params = introspect_params(fn, task._params)
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


def _names(items: Iterable[str | Task] | str | Task | None) -> tuple[str, ...]:
    if items is None:
        return ()
    if isinstance(items, str | Task):
        items = [items]
    return tuple(i.name if isinstance(i, Task) else str(i) for i in items)


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


class Definition:
    """The mutable definition of a flow: tasks and branches, in definition order."""

    def __init__(
        self,
        name: str,
        *,
        max_workers: int | None = None,
        on_error: OnError = "stop",
        strategy: str = "priority",
    ) -> None:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"a flow needs a non-empty name, got {name!r}")
        check_options(max_workers=max_workers, on_error=on_error)
        self.name = name
        self.max_workers = max_workers
        self.on_error: OnError = on_error
        self.strategy = strategy
        self.tasks: dict[str, Task] = {}
        self.branches: dict[str, BranchSpec] = {}
        self.switches: dict[str, Switch] = {}  # each also one branch per group (nbflow.switch)
        self._next_index = 0
        #: Bumped by every change to the tasks or branches: a plan made at one revision is
        #: valid until the next (see ``Flow.plan``).
        self.revision = 0
        # Validated options by option set (the name aside): 10,000 tasks defined in a loop
        # with the same options are validated once and share one TaskOptions.
        self._options: dict[Any, TaskOptions] = {}
        self._params: dict[Any, Any] = {}  # shared ParamSpecs, see introspect_params

    # -- definition -------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        after: Sequence[str | Task] | str | Task | None = None,
        priority: int = 0,
        weight_rule: WeightRule = "absolute",
        retry: Retry | int | None = None,
        timeout: float | None = None,
        when: str | Callable[..., Any] | None = None,
        trigger: TriggerRule | str = "all_success",
        fan_out: str | Sequence[str] | Mapping[str, Any] | mapping.FanOut | None = None,
        key: str | Callable[[Any], Any] | None = None,
        concurrency: int | None = None,
        rate: float | None = None,
        allow_partial: bool = False,
        cancel_rest: bool = False,
        complete_when: str | None = None,
        lock: str | None = None,
        wait_for: str | Sequence[str] | WaitFor | None = None,
        transient: bool = False,
        until: str | Callable[..., Any] | None = None,
        max_iterations: int | None = None,
        critical: bool = False,
        tags: Sequence[str] | None = None,
        worker: str | None = None,
        cache: bool = False,
        cache_key: Callable[..., Any] | None = None,
        cache_ttl: float | None = None,
        cache_ignore: Sequence[str] | str | None = None,
        persist: bool | None = None,
        estimate: float | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(self, fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Register a function as a task; usable bare (``@flow.task``) or with options.

        Options are those of :class:`~nbflow.spec.TaskOptions` (see the API table):
        ``name, after, priority, weight_rule, retry, timeout, when, trigger, fan_out, key,
        concurrency, rate, allow_partial, cancel_rest, complete_when, lock, wait_for,
        transient, until, max_iterations, critical, tags, worker, cache, cache_key,
        cache_ttl, cache_ignore, persist, estimate, meta``. Parameters named like other
        tasks receive their results. Decorating a flow (``flow.task(name="etl")(other)``)
        makes it a subflow task (see :mod:`nbflow.subflows`).

        Raises:
            DefinitionError: an unknown option or a bad value (the message names the field).
            ConditionError: ``when`` does not parse.
        """
        when = options.get("when")
        if callable(when):
            options["when_fn"], options["when"] = when, None
        key = options.get("key")
        if callable(key):
            options["key_fn"], options["key"] = key, None
        until = options.get("until")
        if callable(until):
            options["until_fn"], options["until"] = until, None
        if "after" in options:
            options["after"] = _names(options["after"])

        def decorate(func: Callable[..., Any]) -> Task:
            if isinstance(func, Definition):  # a flow as a task: a child run (nbflow.subflows)
                func = Subflow(func)
            parsed, name = self._parse_options(func, options)
            return self._add(func, parsed, name)

        return decorate(fn) if fn is not None else decorate

    def _parse_options(
        self, fn: Callable[..., Any], options: dict[str, Any]
    ) -> tuple[TaskOptions, str | None]:
        """Validated options and the task name; validation runs once per distinct option set.

        Raises:
            DefinitionError: an unknown option or a bad value (the message names the field).
        """
        name = options.get("name")
        key: Any = None
        if len(options) == ("name" in options) and (name is None or type(name) is str):
            key = ()  # the usual case, tasks defined in a loop: nothing but a name
            found = self._options.get(key)
            if found is not None:
                return found, name
        elif name is None or type(name) is str:
            # The value's type is in the key: 1, 1.0 and True are equal but may validate apart.
            key = tuple(sorted((k, type(v), v) for k, v in options.items() if k != "name"))
            try:
                found = self._options.get(key)
            except TypeError:  # an unhashable value (a list, a dict): validate every time
                key = found = None
            if found is not None:
                return found, name
        try:
            parsed = TaskOptions(**options)
        except Exception as error:  # pydantic's ValidationError: name the task and field
            raise DefinitionError(_describe_option_error(fn, options, error)) from None
        name = parsed.name
        if name is not None:  # the shared object carries no name: tasks differ by it
            parsed = parsed.model_copy(update={"name": None})
        if key is not None:
            self._options[key] = parsed
        return parsed, name

    def _add(self, fn: Callable[..., Any], options: TaskOptions, name: str | None = None) -> Task:
        if not name:
            name = str(options.name or getattr(fn, "__name__", ""))
        elif type(name) is not str:
            name = str(name)
        old = self.tasks.get(name)
        index = old._index if old is not None else self._next_index
        task = build_task(fn, options, index, name, self._params)
        if old is None:
            self._next_index += 1
        self.tasks[name] = task
        self.revision += 1
        return task

    def remove(self, name: str | Task) -> None:
        """Remove a task from the definition (re-running a notebook that dropped a cell)."""
        if self.tasks.pop(name.name if isinstance(name, Task) else name, None) is not None:
            self.revision += 1

    def loop(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        until: str | Callable[..., Any],
        max_iterations: int,
        **options: Any,
    ) -> Any:
        """Register a loop task: it runs again, receiving the previous iteration's result as
        its parameter ``previous``, until ``until`` holds on an iteration's ``result``, at
        most ``max_iterations`` times (see :mod:`nbflow.loops`). ``fn`` may be a flow (a
        subflow run once per iteration). Other options are those of :meth:`task`.

        Raises:
            DefinitionError: no ``max_iterations`` (a loop without a bound), or a bad option.
            ConditionError: ``until`` does not parse.
        """
        decorate = self.task(until=until, max_iterations=max_iterations, **options)
        return decorate(fn) if fn is not None else decorate

    def as_task(
        self, *, max_depth: int | None = None, inputs: Mapping[str, str] | None = None
    ) -> Subflow:
        """This flow as a task of another: ``parent.task(name="etl")(flow.as_task(...))``.

        ``max_depth`` bounds a recursion (needed on a cycle of subflows); ``inputs`` maps
        this flow's input names to the parent's (``{"n": "step"}``). See
        :mod:`nbflow.subflows`.

        Raises:
            DefinitionError: a bad ``max_depth``, or ``inputs`` names nothing this flow reads.
        """
        return Subflow(self, max_depth=max_depth, inputs=inputs)

    def branch(
        self,
        expression: str,
        then: Sequence[str | Task] | str | Task,
        otherwise: Sequence[str | Task] | str | Task | None = None,
        *,
        name: str | None = None,
    ) -> BranchSpec:
        """Run the ``then`` tasks when ``expression`` is true, else the ``otherwise`` ones.

        Exactly one group runs; the other is ``skipped`` (and so are its dependants, under
        the default trigger rule). The expression is a condition, like ``when=``.

        Raises:
            ConditionError: the expression does not parse.
            DefinitionError: a task is in both groups.
        """
        then_names, otherwise_names = _names(then), _names(otherwise)
        both = set(then_names) & set(otherwise_names)
        if both:
            raise DefinitionError(f"task {sorted(both)[0]!r} is in both branches of {expression!r}")
        branch_name = name or f"branch{len(self.branches) + 1}"
        parse_condition(branch_name, expression)
        spec = BranchSpec(
            name=branch_name, expression=expression, then=then_names, otherwise=otherwise_names
        )
        self.branches[branch_name] = spec
        self.revision += 1
        return spec

    def switch(
        self,
        expression: str,
        cases: Mapping[Any, Sequence[str | Task] | str | Task],
        default: Sequence[str | Task] | str | Task | None = None,
        *,
        name: str | None = None,
    ) -> Switch:
        """Run the tasks of the one case whose key equals ``expression``'s value, or the
        ``default`` tasks when no key does; the other groups are ``skipped`` (see
        :mod:`nbflow.switch`). Defining a switch of the same ``name`` again replaces it.

        Raises:
            ConditionError: the expression does not parse.
            DefinitionError: no cases, a key that is no literal, a task in two groups.
        """
        name = name or f"switch{len(self.switches) + 1}"
        switch = make_switch(
            name, expression, {k: _names(v) for k, v in cases.items()} if isinstance(
                cases, Mapping) else cases, _names(default),
        )  # fmt: skip
        old = self.switches.get(name)
        for branch in old.branches() if old is not None else ():
            self.branches.pop(branch.name, None)
        self.switches[name] = switch
        for branch in switch.branches():
            self.branches[branch.name] = branch
        self.revision += 1
        return switch

    # -- export ------------------------------------------------------------------------------

    def _built_tasks(self) -> list[Task]:
        """The tasks in definition order, each with its spec built.

        Tasks build their specs here, all at once, with the garbage collector paused (see
        :func:`~nbflow.collector.paused_gc`).
        """
        tasks = sorted(self.tasks.values(), key=_BY_INDEX)
        if any(task._spec is None for task in tasks):
            with paused_gc():
                _build_specs(tasks)
        return tasks

    def spec(self) -> FlowSpec:
        """The definition as a :class:`~nbflow.spec.FlowSpec` (tasks in definition order)."""
        tasks = self._built_tasks()
        return FlowSpec.model_construct(
            name=self.name,
            max_workers=self.max_workers,
            on_error=self.on_error,
            strategy=self.strategy
            if isinstance(self.strategy, str)
            else getattr(self.strategy, "name", type(self.strategy).__name__),
            tasks=tuple([task._spec for task in tasks]),
            branches=tuple(self.branches.values()),
        )

    def _version(self, tasks: list[Task]) -> str:
        """``spec().version()``; ``tasks`` are those of :meth:`_built_tasks`.

        Each spec was assembled from its task's options object, so the hash tells option
        sets apart by that object alone instead of comparing every shared value.
        """
        spec = Definition.spec(self)  # a subclass's additions count at each run instead
        own = [task._spec for task in tasks]
        same = len(own) == len(spec.tasks) and all(map(operator.is_, spec.tasks, own))
        return spec_version(spec, [task._options for task in tasks] if same else None)

    @property
    def spec_version(self) -> str:
        """Content hash of the definition: names, options, dependencies and each task's own
        code as written (``Flow.flow_version`` adds what the tasks depend on now)."""
        return self._version(self._built_tasks())


def _describe_option_error(fn: Any, options: dict[str, Any], error: Exception) -> str:
    name = options.get("name") or getattr(fn, "__name__", None) or "<task>"
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return f"task {name!r}: {error}"
    parts = []
    for item in errors():
        field = ".".join(str(p) for p in item.get("loc", ())) or "options"
        if item.get("type") == "extra_forbidden":
            known = ", ".join(
                sorted(set(TaskOptions.model_fields) - {"when_fn", "until_fn", "key_fn"})
            )
            parts.append(f"{field}: unknown option; known options are {known}")
        else:
            parts.append(f"{field}: {item.get('msg')}")
    return f"task {name!r}: " + "; ".join(parts)
