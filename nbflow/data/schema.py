"""The shape of a flow document (YAML or JSON) and its errors, with exact paths.

A document is a mapping::

    name: etl                      # required
    description: ...               # optional, free text
    variables: {region: eu}        # defaults of run variables
    on_error: stop                 # stop | continue
    max_workers: 4
    strategy: priority
    tasks:                         # in order; each one:
      - id: extract                # required; a Python identifier (it names a parameter)
        name: Extract rows         # optional title
        agent: python              # required: a registered agent
        action: load_rows          # python: the function's registered name; others: a method
        parameters: {region: "${vars.region}"}
        dependencies: [other]      # ordering dependencies (data flows through templates)
        priority: 0                # ... and every other task option of @flow.task that is
        retry: {max_retries: 3, on: [ConnectionError]}   # data, validated by TaskOptions
        timeout: 10
        when: "vars['mode'] == 'full'"
        trigger: all_success
        fan_out: extract           # an upstream task id; the element is ${item}
    branches:                      # optional: flow.branch(...) as data
      - {when: "...", then: [a], otherwise: [b]}

:func:`parse` validates the structure of every task independently, so one bad task does not
hide the problems of another, and returns every problem found as a :class:`Problem` whose
path is exact (``tasks[3].retry.max_retries``). Checks that need the agent registry or the
other tasks live in :mod:`nbflow.data.build`.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..checks import RESERVED_TASK_NAMES
from ..errors import DefinitionError, MissingDependencyError, closest, describe
from ..retry import Retry
from ..spec import OnError, TaskOptions

#: Task ids that would clash with names templates and conditions give a meaning to (the
#: DSL's list: one list, so a flow and its YAML export accept the same names).
RESERVED_IDS = RESERVED_TASK_NAMES
#: ``meta`` keys the loader writes itself.
RESERVED_META = ("agent", "action", "parameters", "title")
#: TaskOptions fields that cannot come from data, with the reason.
NOT_DATA = {
    "after": "use 'dependencies'",
    "when_fn": "a Python callable cannot be given as data; write 'when' as an expression",
    "cache_key": "a Python callable cannot be given as data",
    "key_fn": "a Python callable cannot be given as data; write 'key' as an expression",
    "until_fn": "a Python callable cannot be given as data; write 'until' as an expression",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a document: where (``tasks[3].retry.max_retries``) and what."""

    path: str
    message: str
    task: str | None = None
    #: ``missing_dependency`` for a reference to no task, else ``invalid``.
    kind: str = "invalid"
    #: for ``missing_dependency``: the name that is no task, and the closest task id.
    ref: str | None = None
    suggestion: str | None = None

    def __str__(self) -> str:
        owner = (
            f" [task {self.task!r}]" if self.task and f"{self.task!r}" not in self.message else ""
        )
        return f"{self.path}: {self.message}{owner}"


class FlowValidationError(DefinitionError):
    """A flow document has problems; ``problems`` lists every one, in document order."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        count = len(self.problems)
        where = f" {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        # Not super(): in FlowReferenceError the next class is MissingDependencyError,
        # whose __init__ formats a single reference.
        DefinitionError.__init__(
            self, f"flow definition{where} has {count} problem{'s' if count != 1 else ''}:\n{lines}"
        )


class FlowReferenceError(FlowValidationError, MissingDependencyError):
    """Problems that include a reference to no task (also a ``MissingDependencyError``).

    ``task``, ``missing`` and ``suggestion`` describe the first such reference.
    """

    def __init__(
        self, problems: Iterable[Problem], source: str | None, first: tuple[str, str, str | None]
    ) -> None:
        FlowValidationError.__init__(self, problems, source)
        self.task, self.missing, self.suggestion = first


class TaskDoc(BaseModel):
    """The fields of a task that only documents have (the rest are ``TaskOptions``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str | None = None
    agent: str = Field(min_length=1)
    action: str | None = Field(default=None, min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENTIFIER.fullmatch(value) or keyword.iskeyword(value):
            raise ValueError(
                f"{value!r} is not a valid id: ids name parameters of other tasks, so use "
                "letters, digits and '_', not starting with a digit (e.g. 'load_rows')"
            )
        if value in RESERVED_IDS:
            raise ValueError(f"{value!r} is reserved; choose another id")
        return value

    @field_validator("dependencies", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("meta")
    @classmethod
    def _meta_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted(set(value) & set(RESERVED_META))
        if taken:
            raise ValueError(f"keys {taken} are set by the loader; use other names")
        return value


class BranchDoc(BaseModel):
    """``flow.branch(when, then=..., otherwise=...)`` as data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    when: str = Field(min_length=1)
    then: tuple[str, ...]
    otherwise: tuple[str, ...] = ()


class FlowDoc(BaseModel):
    """The flow-level fields of a document; ``tasks`` are validated one by one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    on_error: OnError = "stop"
    max_workers: int | None = Field(default=None, ge=1)
    strategy: str = "priority"
    tasks: list[Any]
    branches: tuple[BranchDoc, ...] = ()


#: Task option fields a document may set (TaskOptions is their one source of truth).
OPTION_FIELDS = tuple(
    f for f in TaskOptions.model_fields if f not in NOT_DATA and f not in TaskDoc.model_fields
)
TASK_FIELDS = (*TaskDoc.model_fields, *OPTION_FIELDS)


@dataclass(slots=True)
class ParsedTask:
    """A task whose structure is valid: its document fields and its options."""

    index: int
    doc: TaskDoc
    options: dict[str, Any]  # validated TaskOptions fields that were set

    @property
    def path(self) -> str:
        """``tasks[i]``."""
        return f"tasks[{self.index}]"


@dataclass(slots=True)
class Parsed:
    """The result of :func:`parse`: what validated, and every problem found."""

    flow: FlowDoc | None
    tasks: list[ParsedTask] = field(default_factory=list)
    #: every id that is a string, valid or not, so references to a broken task still resolve.
    ids: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def parse(document: Any) -> Parsed:
    """Validate the structure of ``document`` and collect every problem.

    Never raises for a bad document; the caller decides (see :func:`raise_problems`).
    """
    if not isinstance(document, Mapping):
        kind = type(document).__name__
        return Parsed(None, problems=[Problem("(document)", f"must be a mapping, got {kind}")])
    flow, problems = validate(FlowDoc, dict(document), "")
    parsed = Parsed(flow, problems=problems)
    raw_tasks = document.get("tasks")
    if not isinstance(raw_tasks, list):
        return parsed
    for index, raw in enumerate(raw_tasks):
        task, problems = parse_task(index, raw)
        task_id = raw.get("id") if isinstance(raw, Mapping) else None
        if isinstance(task_id, str):
            first = parsed.ids.setdefault(task_id, index)
            if first != index:
                problems.append(
                    Problem(f"tasks[{index}].id", f"duplicate id {task_id!r} (also tasks[{first}])")
                )
                task = None
        parsed.problems.extend(problems)
        if task is not None:
            parsed.tasks.append(task)
    return parsed


def parse_task(index: int, raw: Any) -> tuple[ParsedTask | None, list[Problem]]:
    """Validate one task mapping: its document fields with :class:`TaskDoc`, its options
    with :class:`~nbflow.spec.TaskOptions`; return the task (None if invalid) and problems."""
    path = f"tasks[{index}]"
    if not isinstance(raw, Mapping):
        return None, [Problem(path, f"must be a mapping, got {type(raw).__name__}")]
    task_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    problems: list[Problem] = []
    doc_part = {k: v for k, v in raw.items() if k in TaskDoc.model_fields}
    option_part: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TaskDoc.model_fields:
            continue
        if key in NOT_DATA:
            problems.append(Problem(f"{path}.{key}", f"not allowed: {NOT_DATA[key]}", task_id))
        elif key in OPTION_FIELDS:
            option_part[key] = value
        else:
            problems.append(Problem(f"{path}.{key}", _unknown(str(key), TASK_FIELDS), task_id))
    doc, found = validate(TaskDoc, doc_part, path, task_id)
    problems.extend(found)
    retry = option_part.get("retry")
    if isinstance(retry, Mapping):
        # Validated here, not in TaskOptions' coercion: that would call Retry(**mapping),
        # which a non-string key (YAML 1.1's `on:` read as True) breaks with a TypeError.
        fields = [f for f in Retry.model_fields if f != "retry_if"]
        for key in [k for k in retry if not isinstance(k, str)]:
            problems.append(Problem(f"{path}.retry.{key}", _unknown(str(key), fields), task_id))
        policy, found = validate(
            Retry, {k: v for k, v in retry.items() if isinstance(k, str)}, f"{path}.retry", task_id
        )
        problems.extend(found)
        if policy is None:
            del option_part["retry"]
        else:
            option_part["retry"] = policy
    options: dict[str, Any] = {}
    validated, found = validate(TaskOptions, option_part, path, task_id)
    problems.extend(found)
    if validated is not None:
        options = {k: getattr(validated, k) for k in option_part}
    # Report in the order the fields are written in the document.
    order = {str(key): i for i, key in enumerate(raw)}
    problems.sort(key=lambda p: order.get(p.path[len(path) + 1 :].split(".")[0], len(order)))
    if doc is None or problems:
        return None, problems
    return ParsedTask(index, doc, options), problems


def validate(
    model: type[_Model], data: dict[str, Any], path: str, task: str | None = None
) -> tuple[_Model | None, list[Problem]]:
    """``model.model_validate(data)``, or None and every problem with its path.

    pydantic turns a validator's ValueError into a located error, but lets a TypeError
    (``tags: 5`` iterated) escape with no path: each field is then validated alone to find
    the fields that raise, and the rest are validated without them.
    """
    try:
        return model.model_validate(data), []
    except ValidationError as error:
        return None, translate(error, path, task)
    except Exception as error:
        culprits: list[Problem] = []
        for key, value in data.items():
            try:
                model.model_validate({key: value})
            except ValidationError:
                continue  # a problem of its own or of the whole: reported below
            except Exception as failure:
                culprits.append(
                    Problem(
                        format_path(path, (key,)),
                        f"invalid value {_short(value)} ({describe(failure)})",
                        task,
                    )
                )
        if not culprits:
            return None, [Problem(path or "(document)", f"invalid ({describe(error)})", task)]
        bad = {p.path for p in culprits}
        rest = {k: v for k, v in data.items() if format_path(path, (k,)) not in bad}
        _, others = validate(model, rest, path, task)
        return None, culprits + [p for p in others if p.path not in bad]


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(key: str, known: Iterable[str]) -> str:
    names = list(known)
    close = closest(key, names)
    hint = f" (did you mean {close!r}?)" if close else ""
    if key.lower() in ("true", "false"):
        hint = " (a YAML 1.1 parser reads on/off/yes/no as booleans: quote the key, as 'on')"
    return f"unknown field{hint}; known fields are {', '.join(names)}"


def format_path(prefix: str, loc: Iterable[Any]) -> str:
    """``("retry", "max_retries")`` under ``tasks[3]`` -> ``tasks[3].retry.max_retries``."""
    path = prefix
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(document)"


def translate(error: ValidationError, prefix: str, task: str | None = None) -> list[Problem]:
    """Turn pydantic's errors into :class:`Problem` objects with short, exact messages."""
    problems = []
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        problems.append(Problem(format_path(prefix, loc), _message(item, loc, prefix), task))
    return problems


_TYPES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "missing": "required",
    "callable_type": "must be a Python callable (cannot be given as data)",
}


def _message(item: Mapping[str, Any], loc: tuple[Any, ...], prefix: str) -> str:
    kind = item.get("type", "")
    ctx = item.get("ctx") or {}
    if kind in _TYPES:
        return _TYPES[kind]
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        symbol, key = bounds[kind]
        return f"must be {symbol} {ctx.get(key)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "extra_forbidden":
        return _unknown(str(loc[-1]), _known_fields(loc, prefix))
    message = str(item.get("msg", "invalid"))
    for lead in ("Value error, ", "Assertion failed, "):
        if message.startswith(lead):
            return message[len(lead) :]
    return message[:1].lower() + message[1:]


def _known_fields(loc: tuple[Any, ...], prefix: str) -> list[str]:
    parent = [p for p in loc[:-1] if isinstance(p, str)]
    if parent and parent[-1] == "retry":
        return [f for f in Retry.model_fields if f != "retry_if"]
    if parent and parent[-1] == "branches":
        return list(BranchDoc.model_fields)
    if prefix.startswith("tasks["):
        return list(TASK_FIELDS)
    return list(FlowDoc.model_fields)


def raise_problems(problems: list[Problem], source: str | None = None) -> None:
    """Raise one error listing every problem (no-op when there are none).

    Raises:
        FlowReferenceError: some problem is a reference to no task (it is a
            ``MissingDependencyError`` too).
        FlowValidationError: otherwise.
    """
    if not problems:
        return
    missing = [p for p in problems if p.kind == "missing_dependency"]
    if missing:
        first = missing[0]
        raise FlowReferenceError(
            problems, source, (first.task or "", first.ref or "", first.suggestion)
        )
    raise FlowValidationError(problems, source)
