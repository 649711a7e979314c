"""The definition of a flow as data: pydantic models and content hashes.

:class:`TaskOptions` is the one source of truth for what ``@flow.task(...)`` accepts (a test
checks the decorator's signature against it). :class:`TaskSpec` adds what introspection of the
function finds. :class:`FlowSpec` is the whole definition; ``model_dump_json()`` exports it.

``flow_version`` is a SHA-256 over the canonical JSON of the spec plus every task's source
code, so it is stable across processes and changes with any change of code or options.

Flows of 100,000 tasks are defined in a loop, so the per-task path avoids pydantic work that
gives nothing new: a task's options are validated once per distinct option set (see
:mod:`nbflow.dsl`), :func:`task_spec` assembles a TaskSpec from validated parts, equal
parameters are one shared :class:`ParamSpec`, and :meth:`FlowSpec.version` (:mod:`nbflow.spec_hash`)
serialises each distinct option set once and streams the tasks into the hash.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticSerializationError, to_jsonable_python

from .joins import check_trigger
from .locks import check_lock_name
from .mapping import FanOut, coerce
from .retry import Retry, coerce_retry
from .signals import WaitFor, coerce_wait_for

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
    #: one of :data:`TRIGGER_RULES`, or ``at_least(n)`` (:func:`nbflow.joins.at_least`)
    trigger: str = "all_success"
    #: what the task maps over: a parameter name, or a :class:`~nbflow.mapping.FanOut`
    #: (renamed parameters, a cross product, a zip; see :mod:`nbflow.mapping`)
    fan_out: str | FanOut | None = None
    #: with ``fan_out``: each element's name, a safe expression over ``item`` (see
    #: :mod:`nbflow.element_keys`); ``key_fn`` holds a callable ``key=`` instead
    key: str | None = None
    key_fn: Callable[..., Any] | None = Field(default=None, exclude=True)
    concurrency: int | None = Field(default=None, ge=1)
    rate: float | None = Field(default=None, gt=0)
    allow_partial: bool = False
    #: with ``trigger=at_least(n)``/``"one_success"`` or ``complete_when``: cancel what the
    #: join no longer needs once it fires (see :mod:`nbflow.joins`)
    cancel_rest: bool = False
    #: on a fan-out task: a safe expression over done, succeeded, failed, total
    complete_when: str | None = None
    #: tasks holding the same lock never run at the same time (see :mod:`nbflow.locks`)
    lock: str | None = None
    #: signals the task waits for before it starts (see :mod:`nbflow.signals`)
    wait_for: WaitFor | None = None
    #: with ``wait_for``: a signal sent while the task is not waiting yet is not kept for it
    transient: bool = False
    #: a loop: run again with the previous result until this holds (see :mod:`nbflow.loops`)
    until: str | None = None
    until_fn: Callable[..., Any] | None = Field(default=None, exclude=True)
    max_iterations: int | None = Field(default=None, ge=1)
    critical: bool = False
    tags: tuple[str, ...] = ()
    worker: str | None = None
    cache: bool = False
    cache_key: Callable[..., Any] | None = Field(default=None, exclude=True)
    cache_ttl: float | None = Field(default=None, gt=0)
    #: global, closure or default names the task's identity leaves out (see nbflow.identity)
    cache_ignore: tuple[str, ...] = ()
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

    @field_validator("trigger")
    @classmethod
    def _known_trigger(cls, value: str) -> str:
        return check_trigger(value, TRIGGER_RULES)

    @field_validator("fan_out", mode="before")
    @classmethod
    def _fan_out_form(cls, value: Any) -> str | FanOut | None:
        return coerce(value)

    @field_validator("wait_for", mode="before")
    @classmethod
    def _wait_for(cls, value: Any) -> WaitFor | None:
        return coerce_wait_for(value)

    @field_validator("lock", mode="before")
    @classmethod
    def _lock_name(cls, value: Any) -> str | None:
        return check_lock_name(value)

    @field_validator("after", "tags", "cache_ignore", mode="before")
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
        if (
            self.concurrency is not None
            or self.rate is not None
            or self.allow_partial
            or self.key is not None
            or self.key_fn is not None
        ) and self.fan_out is None:
            raise ValueError("concurrency, rate, allow_partial and key need fan_out='<parameter>'")
        if self.transient and self.wait_for is None:
            raise ValueError("transient=True needs wait_for=... (the signals it applies to)")
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
        """Content hash of this definition (options, dependencies and task source code).

        The SHA-256 of ``json.dumps(self.model_dump(mode="json"), sort_keys=True,
        separators=(",", ":"), default=str)``, computed without building that document.
        """
        from .spec_hash import spec_version  # spec_hash reads this module's models

        return spec_version(self)


# -- building specs without re-validation --------------------------------------------------------

#: ``model_fields_set`` of every TaskSpec built here: all fields are given. Shared (pydantic
#: copies it before any change), so 100,000 tasks do not hold 100,000 equal sets.
_ALL_TASK_FIELDS = set(TaskSpec.model_fields)
_new_task_spec = TaskSpec.__new__

# The setters of the slots pydantic gives every model (``__dict__`` and its three
# ``__pydantic_*__`` attributes), called directly: object.__setattr__ looks each one up
# through the class's ancestors first, which is a third of assembling a spec. A model made
# with ``cls.__new__`` and these four set is what ``model_construct`` makes, without its
# per-field work (the values are of the right types already).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


class _SharedKeys:
    """Holds a TaskSpec's fields as attributes, only for its ``__dict__``.

    Instance dicts of one class share one table of keys (PEP 412), and copies of such a
    dict share it too: a TaskSpec's dict copied from one of these holds ~30 values and no
    keys, a third of the memory of an ordinary dict of the same fields, which 100,000 tasks
    feel (and which they allocate faster).
    """


def _template_of(options: TaskOptions) -> dict[str, Any]:
    """``options``' values widened to every TaskSpec field, in a key-sharing dict."""
    holder = _SharedKeys()
    given = options.__dict__
    for key in TaskSpec.model_fields:  # always this order, so that every holder shares keys
        setattr(holder, key, given.get(key))
    return holder.__dict__


#: The last options seen by task_spec and its template: tasks defined in a loop share one
#: options object, so their dicts are copies of one template.
_template: tuple[dict[str, Any], dict[str, Any]] = ({}, {})


def task_spec(
    options: TaskOptions,
    name: str,
    params: tuple[ParamSpec, ...],
    is_async: bool,
    source_hash: str,
    index: int,
) -> TaskSpec:
    """A :class:`TaskSpec` from validated ``options`` plus the fields introspection found.

    The other arguments are already of the right types: nothing is validated again (that is
    ~20 µs a task in pydantic). ``meta`` gets its own copy: options objects are shared.
    Every value but those arguments and ``meta`` is ``options``' own object (the version
    hash relies on it: see :meth:`FlowSpec.version`).
    """
    global _template
    given, template = _template
    if given is not options.__dict__:
        given = options.__dict__
        template = _template_of(options)
        _template = (given, template)
    values = template.copy()
    values["name"] = name
    values["params"] = params
    values["is_async"] = is_async
    values["source_hash"] = source_hash
    values["index"] = index
    meta = given["meta"]
    values["meta"] = dict(meta) if meta else {}  # {}: an empty dict the GC does not track
    # Constructed as model_construct would, inlined (see _set_dict): 100,000 of these.
    spec = _new_task_spec(TaskSpec)
    _set_dict(spec, values)
    _set_fields_set(spec, _ALL_TASK_FIELDS)
    _set_extra(spec, None)
    _set_private(spec, None)
    return spec


def _jsonable_default(value: Any) -> Any:
    # An object's default repr holds its memory address, which differs in every process;
    # only simple values are kept verbatim so the hash stays stable.
    if isinstance(value, _SIMPLE_DEFAULTS):
        return value
    if isinstance(value, tuple | list) and all(isinstance(v, _SIMPLE_DEFAULTS) for v in value):
        return list(value)
    return f"<{type(value).__qualname__}>"


_PARAM_FIELDS_SET = set(ParamSpec.model_fields)
_new_param_spec = ParamSpec.__new__
_KIND_NAMES: dict[Any, str] = {
    kind: kind.name.lower()
    for kind in type(inspect.Parameter.POSITIONAL_ONLY)  # type: ignore[attr-defined]
}
_VAR_POSITIONAL, _VAR_KEYWORD = inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
_EMPTY = inspect.Parameter.empty
_POSITIONAL_ONLY, _POSITIONAL_OR_KEYWORD, _KEYWORD_ONLY = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


#: A Parameter's name, kind and default, read from its slots in C: the public properties
#: are three Python calls, per parameter, and one task may have 10,000 (a fan-in).
_name_kind_default = operator.attrgetter("_name", "_kind", "_default")


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """``(name, kind, default or Parameter.empty)`` of each parameter, as in ``inspect.signature``.

    A plain function is read from its code object and defaults (or its ``__signature__``):
    ``inspect.signature`` costs several µs a call, a tenth of a task's define-time budget.
    Functions with ``__wrapped__`` or a partialmethod marker, and other callables, go to
    ``inspect.signature``.
    """
    own: dict[str, Any] = getattr(fn, "__dict__", None) or {}
    if (
        type(fn) is FunctionType
        and "__wrapped__" not in own
        and "_partialmethod" not in own
        and "__partialmethod__" not in own
    ):
        signature = own.get("__signature__")
        if signature is None:
            return _code_parameters(fn)
        if isinstance(signature, inspect.Signature):
            return list(map(_name_kind_default, signature.parameters.values()))
    return list(map(_name_kind_default, inspect.signature(fn).parameters.values()))


def _code_parameters(fn: FunctionType) -> list[tuple[str, Any, Any]]:
    # What inspect._signature_from_function finds (positional args come first in co_varnames,
    # then keyword-only ones; *args and **kwargs are not needed here).
    code = fn.__code__
    names, count, positional_only = code.co_varnames, code.co_argcount, code.co_posonlyargcount
    defaults = fn.__defaults__ or ()
    first_default = count - len(defaults)
    found: list[tuple[str, Any, Any]] = [
        (
            names[i],
            _POSITIONAL_ONLY if i < positional_only else _POSITIONAL_OR_KEYWORD,
            defaults[i - first_default] if i >= first_default else _EMPTY,
        )
        for i in range(count)
    ]
    keyword_defaults = fn.__kwdefaults__ or {}
    for name in names[count : count + code.co_kwonlyargcount]:
        found.append((name, _KEYWORD_ONLY, keyword_defaults.get(name, _EMPTY)))
    return found


def _param_spec(name: str, has_default: bool, default: Any, kind: str) -> ParamSpec:
    # Constructed as model_construct would, inlined (see _set_dict): a fan-in task may have
    # 10,000 parameters.
    spec = _new_param_spec(ParamSpec)
    _set_dict(spec, {"name": name, "has_default": has_default, "default": default, "kind": kind})
    _set_fields_set(spec, _PARAM_FIELDS_SET)
    _set_extra(spec, None)
    _set_private(spec, None)
    return spec


def introspect_params(
    fn: Callable[..., Any], shared: dict[Any, Any] | None = None
) -> tuple[ParamSpec, ...]:
    """The parameters of ``fn`` that can be filled by name (``*args``/``**kwargs`` are skipped).

    ``shared`` (a flow's own dict) interns equal parameters: in a flow of 100,000 tasks the
    parameter ``t5`` of every reader of task ``t5`` is one object.
    """
    found = parameters(fn)
    if not found:
        return ()
    if shared is None:
        shared = {}
    params: list[ParamSpec] = []
    append = params.append
    last_kind: Any = None
    by_name: dict[str, ParamSpec] = {}
    for name, kind, value in found:
        if value is _EMPTY:  # the usual parameter: a task name or a run variable
            if kind is not last_kind:
                if kind is _VAR_POSITIONAL or kind is _VAR_KEYWORD:
                    continue
                # One table by kind, keyed by name: no key tuple per parameter.
                by_name = shared.setdefault(kind, {})
                last_kind = kind
            param = by_name.get(name)
            if param is None:
                param = by_name[name] = _param_spec(name, False, None, _KIND_NAMES[kind])
            append(param)
            continue
        default = _jsonable_default(value)
        if not isinstance(default, _SIMPLE_DEFAULTS):
            append(_param_spec(name, True, default, _KIND_NAMES[kind]))
            continue
        # The type is part of the key: 1, 1.0 and True are equal but dump differently.
        key = (name, kind, type(default), default)
        param = shared.get(key)
        if param is None:
            param = shared[key] = _param_spec(name, True, default, _KIND_NAMES[kind])
        append(param)
    return tuple(params)


def unwrapped(fn: Any) -> Any:
    """``inspect.unwrap(fn)``, with no call for the usual function that wraps nothing."""
    return inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
