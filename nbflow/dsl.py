"""The decorator DSL: ``@flow.task`` turns functions into tasks of a flow definition.

:class:`Definition` holds the tasks and branches of a flow, in definition order, and builds
the :class:`~nbflow.spec.FlowSpec`. Defining a task again under the same name replaces it in
place (re-running a notebook cell), keeping its position so ordering stays stable. One task,
and how a function becomes one, is :mod:`nbflow.tasks`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, overload

from . import mapping
from .checks import check_options
from .collector import paused_gc
from .conditions import parse_condition
from .errors import DefinitionError
from .retry import Retry
from .signals import WaitFor
from .spec import BranchSpec, FlowSpec, OnError, TaskOptions, TriggerRule, WeightRule
from .spec_hash import spec_version
from .subflows import Subflow
from .switch import Switch, make_switch
from .tasks import Task, build_specs, build_task

_BY_INDEX = operator.attrgetter("_index")


def _names(items: Iterable[str | Task] | str | Task | None) -> tuple[str, ...]:
    if items is None:
        return ()
    if isinstance(items, str | Task):
        items = [items]
    return tuple(i.name if isinstance(i, Task) else str(i) for i in items)


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
                build_specs(tasks)
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
