"""From a parsed document to a :class:`~nbflow.data.dataflow.DataFlow` of generated tasks.

Each document task becomes one nbflow task whose function calls the agent's action. The
function is generated without ``exec``: it is a closure with a precise ``__signature__``, and
nbflow reads a task's inputs from its signature (parameter name = edge), so the signature lists

- for the ``python`` agent, the registered function's own parameters that the task does not
  set in ``parameters``: they are filled exactly as in a decorator task (an upstream task of
  that name, a run variable, or the default);
- every upstream task id that a ``${results.<id>...}`` template reads (a data dependency);
- every variable that a ``${vars.<name>...}`` template reads (required: a run variable or a
  document default must supply it, checked before the run starts);
- the ``fan_out`` task id, whose elements arrive one by one as ``${item}``.

``__wrapped__`` is the action, so the task's ``source_hash`` and sync/async nature are the
action's, and so is its identity (``__nbflow_identity__``, see :mod:`nbflow.identity`);
``meta`` (in the spec, so in ``flow_version``) holds the agent, action, raw
parameters and title. For the ``python`` agent the function itself is hashed (source and
signature), so its agent and action names are left out of ``meta``: a decorator flow and its
YAML export then have the same ``flow_version``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..conditions import parse_condition
from ..errors import ConditionError, DefinitionError, closest
from ..identity import IDENTITY_OF
from .agents import AgentRegistry, UnknownActionError, UnknownAgentError
from .dataflow import DataFlow
from .schema import Parsed, ParsedTask, Problem
from .templates import Compiled, Reference, TemplateSyntaxError, compile_value

_KEYWORD = inspect.Parameter.KEYWORD_ONLY
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True, slots=True)
class AgentCall:
    """What a generated task calls, kept on its function for export (``to_yaml``)."""

    agent: str
    action: str
    parameters: dict[str, Any]
    title: str | None = None


@dataclass(slots=True)
class TaskPlan:
    """A checked document task, ready to become an nbflow task."""

    task: ParsedTask
    call: AgentCall
    action: Callable[..., Any]
    parameters: dict[str, Compiled]
    natural: tuple[inspect.Parameter, ...]
    results: tuple[str, ...]
    variables: tuple[str, ...]


def check_task(
    task: ParsedTask, ids: Mapping[str, int], registry: AgentRegistry
) -> tuple[TaskPlan | None, list[Problem]]:
    """Check one task against the registry and the other tasks; plan it if it is sound."""
    doc, path, problems = task.doc, task.path, []

    def problem(where: str, message: str, ref: str | None = None) -> None:
        kind = "missing_dependency" if ref is not None else "invalid"
        suggestion = closest(ref, [i for i in ids if i != doc.id]) if ref else None
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        problems.append(Problem(f"{path}{where}", message + hint, doc.id, kind, ref, suggestion))

    action_name = doc.action or (doc.id if doc.agent == "python" else None)
    action: Callable[..., Any] | None = None
    try:
        action = registry.action(doc.agent, action_name)
        action_name = action_name or "run"
    except UnknownAgentError as error:
        problem(".agent", str(error))
    except UnknownActionError as error:
        problem(".action", str(error))

    fan_out = task.options.get("fan_out")
    for i, dep in enumerate(doc.dependencies):
        if dep == doc.id:
            problem(f".dependencies[{i}]", "a task cannot depend on itself")
        elif dep not in ids:
            problem(f".dependencies[{i}]", f"{dep!r} is not a task of this flow", ref=dep)
    if fan_out is not None and not isinstance(fan_out, str):
        problem(".fan_out", "a flow document fans out over one upstream task: give its id")
    elif fan_out is not None and fan_out == doc.id:
        problem(".fan_out", "a task cannot fan out over itself")
    elif fan_out is not None and fan_out not in ids:
        problem(
            ".fan_out",
            f"{fan_out!r} is not a task of this flow (fan_out names an "
            "upstream task whose result is a list)",
            ref=fan_out,
        )
    if task.options.get("when") is not None:
        try:
            parse_condition(doc.id, task.options["when"])
        except ConditionError as error:
            problem(".when", error.reason)

    compiled: dict[str, Compiled] = {}
    for key, value in doc.parameters.items():
        try:
            compiled[key] = compile_value(value, f"tasks.{doc.id}.parameters.{key}")
        except TemplateSyntaxError as error:
            problem(f".parameters.{key}", error.reason)
    results: dict[str, None] = {}
    variables: dict[str, None] = {}
    for key, value in compiled.items():
        for ref in value.references():
            _check_reference(ref, key, doc.id, fan_out, ids, problem, results, variables)

    natural: tuple[inspect.Parameter, ...] = ()
    if action is not None:
        natural = _check_signature(doc.agent, action_name or "", action, doc.parameters, problem)
    if problems or action is None:
        return None, problems
    meta_call = AgentCall(doc.agent, action_name or "", dict(doc.parameters), doc.name)
    plan = TaskPlan(task, meta_call, action, compiled, natural, tuple(results), tuple(variables))
    return plan, problems


def _check_reference(
    ref: Reference,
    key: str,
    task_id: str,
    fan_out: str | None,
    ids: Mapping[str, int],
    problem: Callable[..., None],
    results: dict[str, None],
    variables: dict[str, None],
) -> None:
    where = f".parameters.{key}"
    name = ref.name
    if ref.root == "item":
        if fan_out is None:
            problem(where, f"{ref.text} is the element of a fan-out; set fan_out: <task id>")
    elif ref.root == "results" and name is not None:
        if name == task_id:
            problem(where, f"{ref.text} reads the task's own result")
        elif name not in ids:
            problem(where, f"{ref.text} reads {name!r}, which is not a task of this flow", ref=name)
        elif name == fan_out:
            problem(where, f"{ref.text}: {name!r} is fanned out; read the element as ${{item}}")
        else:
            results[name] = None
    elif ref.root == "vars" and name is not None:
        if name in ids:
            problem(where, f"{ref.text}: variable {name!r} has the name of a task; rename it")
        else:
            variables[name] = None


def _check_signature(
    agent: str,
    action_name: str,
    action: Callable[..., Any],
    parameters: Mapping[str, Any],
    problem: Callable[..., None],
) -> tuple[inspect.Parameter, ...]:
    """Check ``parameters`` against the action; return the parameters left to nbflow."""
    try:
        signature = inspect.signature(action)
    except (TypeError, ValueError):
        return ()
    params = signature.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = [p.name for p in params.values() if p.kind not in _VARIADIC]
    label = f"{agent}.{action_name}"
    for key in parameters:
        if key not in params and not takes_any:
            problem(
                f".parameters.{key}",
                f"{label} takes no parameter {key!r}; it takes {', '.join(named) or 'none'}",
            )
    left = tuple(p for p in params.values() if p.kind not in _VARIADIC and p.name not in parameters)
    if agent == "python":
        return left  # filled like a decorator task's parameters
    for p in left:
        if p.default is p.empty:
            problem(".parameters", f"{label} needs parameter {p.name!r}")
    return ()


def make_function(plan: TaskPlan, fan_out: str | None) -> Callable[..., Any]:
    """The generated task function of ``plan`` (see the module docstring)."""
    action = plan.action
    natural_names = tuple(p.name for p in plan.natural)
    extra = [n for n in (*plan.results, *plan.variables) if n not in natural_names]
    if fan_out is not None and fan_out not in natural_names and fan_out not in extra:
        extra.append(fan_out)
    signature = inspect.Signature(
        [*plan.natural, *(inspect.Parameter(n, _KEYWORD) for n in dict.fromkeys(extra))]
    )
    compiled, results, variables = plan.parameters, plan.results, plan.variables

    def arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
        context: dict[str, Any] = {
            "vars": {v: kwargs[v] for v in variables},
            "results": {r: kwargs[r] for r in results},
        }
        if fan_out is not None:
            context["item"] = kwargs[fan_out]
        given = {n: kwargs[n] for n in natural_names if n in kwargs}
        return {**given, **{k: v.resolve(context) for k, v in compiled.items()}}

    function: Any  # a plain function given the attributes nbflow reads
    if _is_async(action):

        async def call_async(**kwargs: Any) -> Any:
            return await action(**arguments(kwargs))

        function = call_async
    else:

        def call_sync(**kwargs: Any) -> Any:
            return action(**arguments(kwargs))

        function = call_sync
    task_id = plan.task.doc.id
    function.__name__ = function.__qualname__ = task_id
    function.__signature__ = signature
    function.__wrapped__ = action
    # The task's identity (nbflow.identity) is the action's: the templates and parameters
    # are in the spec's meta, so a decorator flow and its YAML export have one version.
    setattr(function, IDENTITY_OF, action)
    function.__doc__ = f"{plan.call.agent}.{plan.call.action} (task {task_id!r} of a data flow)"
    function.nbflow_call = plan.call
    return function


def _is_async(action: Callable[..., Any]) -> bool:
    # The same test nbflow.tasks.build_task applies to the unwrapped function.
    target = inspect.unwrap(action)
    return inspect.iscoroutinefunction(target) or (
        not inspect.isfunction(target) and inspect.iscoroutinefunction(type(target).__call__)
    )


def task_meta(plan: TaskPlan) -> dict[str, Any]:
    """What goes into the task's ``meta`` (and so into ``flow_version``)."""
    doc, call = plan.task.doc, plan.call
    meta: dict[str, Any] = dict(doc.meta)
    if call.agent != "python":
        meta["agent"], meta["action"] = call.agent, call.action
    if call.parameters:
        meta["parameters"] = call.parameters
    if call.title is not None:
        meta["title"] = call.title
    return meta


def check_all(parsed: Parsed, registry: AgentRegistry) -> tuple[list[TaskPlan], list[Problem]]:
    """Check every task and branch; return the plans of sound tasks and all problems."""
    plans, problems = [], []
    for task in parsed.tasks:
        plan, found = check_task(task, parsed.ids, registry)
        problems.extend(found)
        if plan is not None:
            plans.append(plan)
    if parsed.flow is not None:
        for b, branch in enumerate(parsed.flow.branches):
            try:
                parse_condition(branch.name or f"branch{b + 1}", branch.when)
            except ConditionError as error:
                problems.append(Problem(f"branches[{b}].when", error.reason))
            for group in ("then", "otherwise"):
                for i, member in enumerate(getattr(branch, group)):
                    if member not in parsed.ids:
                        suggestion = closest(member, parsed.ids)
                        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
                        problems.append(
                            Problem(
                                f"branches[{b}].{group}[{i}]",
                                f"{member!r} is not a task of this flow{hint}",
                                kind="missing_dependency",
                                ref=member,
                                suggestion=suggestion,
                            )
                        )
    return plans, problems


def build_flow(parsed: Parsed, plans: list[TaskPlan], **options: Any) -> DataFlow:
    """Create the :class:`DataFlow` of a document whose problems are all fixed.

    ``options`` are extra :class:`~nbflow.flow.Flow` arguments (``store``, ``pool``...).

    Raises:
        DefinitionError: nbflow refused an option (should have been caught earlier).
    """
    doc = parsed.flow
    if doc is None:
        raise DefinitionError("build_flow needs a valid document")
    flow = DataFlow(
        doc.name,
        variables=doc.variables,
        description=doc.description,
        max_workers=doc.max_workers,
        on_error=doc.on_error,
        strategy=doc.strategy,
        **options,
    )
    for plan in plans:
        options = dict(plan.task.options)
        fan_out = options.get("fan_out")
        flow.task(
            name=plan.task.doc.id,
            after=list(plan.task.doc.dependencies),
            meta=task_meta(plan),
            **options,
        )(make_function(plan, fan_out))
    for b, branch in enumerate(doc.branches):
        flow.branch(
            branch.when,
            then=list(branch.then),
            otherwise=list(branch.otherwise),
            name=branch.name or f"branch{b + 1}",
        )
    return flow
