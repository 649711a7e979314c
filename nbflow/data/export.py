"""Export a flow as data: ``flow.to_yaml()`` / :func:`to_dict`, the inverse of loading.

A task can be exported when what it runs has a name: a task loaded from a document (its
agent call is kept on its function), or a decorator task whose function is registered with
the ``python`` agent (``nf.agents.register_function``). Options that are Python callables
(a callable ``when``, ``cache_key``, ``retry_if``) cannot be data and are refused.

The round trip, precisely: for such a flow ``f``,

- ``to_yaml(f)`` is deterministic, and ``to_yaml(load_flow(to_yaml(f))) == to_yaml(f)``;
- ``load_flow(to_yaml(f)).flow_version == f.flow_version``: the loaded tasks have the same
  names, order, options, parameters (the function's signature), source hash and ``meta``.
  One exception: a flow from which tasks were removed keeps gaps in its definition order
  (hashed), which its export numbers afresh, so its version differs.

Only options that differ from their defaults are written, in ``TaskOptions`` field order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from ..dsl import Definition, Task
from ..errors import DefinitionError
from ..retry import Retry
from ..spec import TaskOptions, TaskSpec
from .agents import AgentRegistry
from .agents import agents as default_agents
from .safeyaml import dump_text
from .schema import OPTION_FIELDS, RESERVED_META

_FLOW_DEFAULTS = {"on_error": "stop", "max_workers": None, "strategy": "priority"}


def to_dict(flow: Definition, *, agents: AgentRegistry | None = None) -> dict[str, Any]:
    """The flow as a document mapping (what :func:`~nbflow.data.loader.from_dict` reads).

    Raises:
        DefinitionError: a task runs a function no agent knows (the message says how to
            register it), or has an option that is a Python callable.
    """
    registry = agents if agents is not None else default_agents
    spec = flow.spec()
    document: dict[str, Any] = {"name": flow.name}
    description = getattr(flow, "description", None)
    if description:
        document["description"] = description
    variables = getattr(flow, "variables", None)
    if variables:
        document["variables"] = _plain(dict(variables))
    for key, default in _FLOW_DEFAULTS.items():
        value = getattr(spec, key)
        if key == "on_error" or value != default:
            document[key] = value
    tasks = sorted(flow.tasks.values(), key=lambda t: t.spec.index)
    document["tasks"] = [_task(task, registry) for task in tasks]
    if spec.branches:
        document["branches"] = [
            {
                "name": b.name,
                "when": b.expression,
                "then": list(b.then),
                **({"otherwise": list(b.otherwise)} if b.otherwise else {}),
            }
            for b in spec.branches
        ]
    return document


def to_yaml(
    flow: Definition,
    path: str | os.PathLike[str] | None = None,
    *,
    agents: AgentRegistry | None = None,
) -> str:
    """The flow as YAML text (also written to ``path`` when given).

    Raises:
        DefinitionError: as :func:`to_dict`.
    """
    text = dump_text(to_dict(flow, agents=agents))
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _task(task: Task, registry: AgentRegistry) -> dict[str, Any]:
    spec = task.spec
    call = getattr(task.fn, "nbflow_call", None)
    meta = dict(spec.meta)
    if call is not None:
        agent, action, parameters = call.agent, call.action, dict(call.parameters)
    else:
        action_name = registry.python.name_of(task.fn, prefer=task.name)
        if action_name is None:
            raise DefinitionError(
                f"task {task.name!r} cannot be exported: its function is not registered with "
                f"an agent; register it first: nf.agents.register_function({task.name!r}, fn)"
            )
        agent, action, parameters = "python", action_name, dict(meta.get("parameters") or {})
    entry: dict[str, Any] = {"id": task.name}
    if meta.get("title") is not None:
        entry["name"] = meta["title"]
    entry["agent"], entry["action"] = agent, action
    if parameters:
        entry["parameters"] = _plain(parameters)
    if spec.after:
        entry["dependencies"] = list(spec.after)
    entry.update(_options(spec))
    extra = {k: v for k, v in meta.items() if k not in RESERVED_META}
    if extra:
        entry["meta"] = _plain(extra)
    return entry


def _options(spec: TaskSpec) -> dict[str, Any]:
    if spec.fan_out is not None and not isinstance(spec.fan_out, str):
        raise DefinitionError(
            f"task {spec.name!r} cannot be exported: fan_out={spec.fan_out} maps renamed or "
            "several parameters, which a flow document cannot say yet (it fans out over one "
            "upstream task id)"
        )
    for field, what in (
        ("when_fn", "a callable `when`"),
        ("cache_key", "a callable cache_key"),
        ("until_fn", "a callable `until`"),
        ("key_fn", "a callable `key`"),
    ):
        if getattr(spec, field) is not None:
            raise DefinitionError(
                f"task {spec.name!r} cannot be exported: {what} is Python code, not data; "
                "write `when` as an expression string"
            )
    if spec.retry is not None and spec.retry.retry_if is not None:
        raise DefinitionError(
            f"task {spec.name!r} cannot be exported: retry_if is a Python callable; "
            "use `on`/`not_on` exception names instead"
        )
    options: dict[str, Any] = {}
    for field in OPTION_FIELDS:
        value = getattr(spec, field)
        if value == _default(field):
            continue
        if field == "retry":
            value = _retry(value)
        elif field == "wait_for":
            value = value.model_dump(exclude_defaults=True)  # read back by coerce_wait_for
        options[field] = _plain(value)
    return options


def _retry(policy: Retry) -> dict[str, Any]:
    """The fields of ``policy`` that differ from their defaults, exceptions as names."""
    dumped = policy.model_dump(mode="json")
    return {
        name: dumped[name]
        for name, info in Retry.model_fields.items()
        if name in dumped and getattr(policy, name) != info.default
    }


def _default(field: str) -> Any:
    info = TaskOptions.model_fields[field]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return None if info.default is PydanticUndefined else info.default


def _plain(value: Any) -> Any:
    """Tuples to lists, mappings to dicts, recursively: what a YAML safe dumper accepts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
