"""The definition of a flow as data: pydantic models and content hashes.

:class:`TaskOptions` is the one source of truth for what ``@flow.task(...)`` accepts (a test
checks the decorator's signature against it). :class:`TaskSpec` adds what introspection of the
function finds. :class:`FlowSpec` is the whole definition; ``model_dump_json()`` exports it.

``flow_version`` is a SHA-256 over the canonical JSON of the spec plus every task's source
code, so it is stable across processes and changes with any change of code or options.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import textwrap
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .retry import Retry, coerce_retry

TriggerRule = Literal["all_success", "all_done", "none_failed", "one_success", "one_failed"]
WeightRule = Literal["absolute", "downstream", "upstream"]
OnError = Literal["stop", "continue"]
TRIGGER_RULES: tuple[str, ...] = TriggerRule.__args__  # type: ignore[attr-defined]

_SIMPLE_DEFAULTS = (str, int, float, bool, type(None))


class TaskOptions(BaseModel):
    """Options of one task, exactly those of ``flow.task(...)`` (all optional)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    name: str | None = None
    after: tuple[str, ...] = ()
    priority: int = 0
    weight_rule: WeightRule = "absolute"
    retry: Retry | None = None
    timeout: float | None = Field(default=None, gt=0)
    when: str | None = None
    when_fn: Callable[..., Any] | None = Field(default=None, exclude=True)
    trigger: TriggerRule = "all_success"
    fan_out: str | None = None
    concurrency: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0)
    allow_partial: bool = False
    critical: bool = False
    tags: tuple[str, ...] = ()
    worker: str | None = None
    cache: bool = False
    cache_key: Callable[..., Any] | None = Field(default=None, exclude=True)
    cache_ttl: float | None = Field(default=None, gt=0)
    persist: bool | None = None
    estimate: float | None = Field(default=None, gt=0)
    #: free JSON-like data kept with the task and covered by ``flow_version`` (flows defined
    #: as data keep their agent, action, parameters and title here).
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("meta", mode="before")
    @classmethod
    def _jsonable_meta(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(f"meta must be a mapping, got {type(value).__name__}")
        try:
            to_jsonable_python(value)
        except PydanticSerializationError as error:
            raise ValueError(f"meta must hold JSON-like data (it is hashed): {error}") from None
        return dict(value)

    @field_validator("retry", mode="before")
    @classmethod
    def _coerce_retry(cls, value: Any) -> Retry | None:
        return coerce_retry(value)

    @field_validator("after", "tags", mode="before")
    @classmethod
    def _tuple_of_names(cls, value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or callable(value):
            value = (value,)
        # `after=` also accepts task objects: anything with a `.name`.
        return tuple(v if isinstance(v, str) else getattr(v, "name", v) for v in value)

    @model_validator(mode="after")
    def _fan_out_options(self) -> TaskOptions:
        if (self.concurrency is not None or self.rate is not None or self.allow_partial) and (
            self.fan_out is None
        ):
            raise ValueError("concurrency, rate and allow_partial need fan_out='<parameter>'")
        return self


class ParamSpec(BaseModel):
    """One parameter of a task function, as introspected."""

    model_config = ConfigDict(frozen=True)

    name: str
    has_default: bool
    default: Any = None  # repr-safe only for simple values; see `_jsonable_default`
    kind: str = "positional_or_keyword"


class TaskSpec(TaskOptions):
    """A task: its options plus what the function's signature and source tell."""

    name: str
    params: tuple[ParamSpec, ...] = ()
    is_async: bool = False
    source_hash: str = ""
    index: int = 0  # definition order; ties between equal priorities break on it


class BranchSpec(BaseModel):
    """``flow.branch(expr, then=..., otherwise=...)``: exactly one group runs."""

    model_config = ConfigDict(frozen=True)

    name: str
    expression: str
    then: tuple[str, ...]
    otherwise: tuple[str, ...] = ()


class FlowSpec(BaseModel):
    """A whole flow definition; JSON-exportable and hashed into ``flow_version``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    max_workers: int | None = Field(default=None, ge=1)
    on_error: OnError = "stop"
    strategy: str = "priority"
    tasks: tuple[TaskSpec, ...] = ()
    branches: tuple[BranchSpec, ...] = ()

    def version(self) -> str:
        """Content hash of this definition (options, dependencies and task source code)."""
        payload = self.model_dump(mode="json")
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _jsonable_default(value: Any) -> Any:
    # An object's default repr holds its memory address, which differs in every process;
    # only simple values are kept verbatim so the hash stays stable.
    if isinstance(value, _SIMPLE_DEFAULTS):
        return value
    if isinstance(value, tuple | list) and all(isinstance(v, _SIMPLE_DEFAULTS) for v in value):
        return list(value)
    return f"<{type(value).__qualname__}>"


def introspect_params(fn: Callable[..., Any]) -> tuple[ParamSpec, ...]:
    """The parameters of ``fn`` that can be filled by name (``*args``/``**kwargs`` are skipped)."""
    params = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        has_default = p.default is not p.empty
        params.append(
            ParamSpec(
                name=p.name,
                has_default=has_default,
                default=_jsonable_default(p.default) if has_default else None,
                kind=p.kind.name.lower(),
            )
        )
    return tuple(params)


def source_of(fn: Callable[..., Any]) -> str:
    """The source text of ``fn``, or a stable stand-in built from its code object."""
    target = inspect.unwrap(fn)
    try:
        return textwrap.dedent(inspect.getsource(target))
    except Exception:  # no file (OSError), a builtin (TypeError), or a non-Python file
        # that inspect tries to tokenize (tokenize.TokenError on 3.12+, SyntaxError)
        code = getattr(target, "__code__", None)
        if code is None:
            return f"<{type(target).__qualname__}>"
        return repr((code.co_code, code.co_consts, code.co_names, code.co_varnames))


def hash_source(fn: Callable[..., Any]) -> str:
    """A short SHA-256 of the function's source (see :func:`source_of`)."""
    return hashlib.sha256(source_of(fn).encode()).hexdigest()[:16]


# -- code the task calls ------------------------------------------------------------------------

_code_hashes: dict[Any, str] = {}


def _code_hash(fn: Callable[..., Any]) -> str:
    # Keyed by code object: 10,000 closures of one factory read its source once.
    key = getattr(inspect.unwrap(fn), "__code__", None)
    if key is None:
        return hash_source(fn)
    found = _code_hashes.get(key)
    if found is None:
        found = _code_hashes[key] = hash_source(fn)
    return found


def _global_names(code: Any) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:  # nested functions, lambdas and comprehensions
        if hasattr(const, "co_names"):
            names.extend(_global_names(const))
    return names


def helper_functions(fn: Callable[..., Any]) -> list[tuple[str, Callable[..., Any]]]:
    """The plain functions ``fn`` calls by global name from its own module, recursively.

    A global name of ``fn``'s code (``co_names``, nested code included) counts when it is
    bound, at the time of the call, to a Python function (or a wrapper of one, such as a
    task) defined in the same module as ``fn`` (``__main__`` for a notebook). Helpers of
    helpers are followed, each function once (cycles end). Library code in other modules is
    not followed. Returns ``(global name, function)`` pairs sorted by name.
    """
    root = inspect.unwrap(fn)
    module = getattr(root, "__module__", None)
    seen = {getattr(root, "__code__", None)}
    found: dict[str, Callable[..., Any]] = {}
    stack = [root]
    while stack:
        current = stack.pop()
        code = getattr(current, "__code__", None)
        namespace = getattr(current, "__globals__", None)
        if code is None or not isinstance(namespace, dict):
            continue
        for name in _global_names(code):
            value = namespace.get(name)
            if value is None or not callable(value):
                continue
            target = inspect.unwrap(value) if hasattr(value, "__wrapped__") else value
            if not inspect.isfunction(target) or target.__module__ != module:
                continue
            if target.__code__ in seen:
                continue
            seen.add(target.__code__)
            found.setdefault(name, target)
            stack.append(target)
    return sorted(found.items())


def deep_source_hash(fn: Callable[..., Any]) -> str:
    """A short SHA-256 of ``fn``'s source and of every helper it calls (see
    :func:`helper_functions`), so editing a notebook helper changes the hash of the tasks
    that call it. Equal to :func:`hash_source` for a function that calls no helper."""
    own = _code_hash(fn)
    helpers = helper_functions(fn)
    if not helpers:
        return own
    joined = own + "".join(f"|{name}:{_code_hash(helper)}" for name, helper in helpers)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
