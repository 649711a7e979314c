"""Load a flow defined as data: ``nf.load_flow("etl.yaml")`` and ``nf.Flow.from_dict(d)``.

Loading validates the whole document and raises one error listing every problem with its
path (:class:`~nbflow.data.schema.FlowValidationError`; a
:class:`~nbflow.data.schema.FlowReferenceError`, which is also a
:class:`~nbflow.errors.MissingDependencyError`, when a task names no task). It then builds the
flow and plans it, so cycles and bad conditions are raised here too, before any run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..strategies import BUILTIN
from .agents import AgentRegistry
from .agents import agents as default_agents
from .build import build_flow, check_all
from .dataflow import DataFlow
from .export import to_dict, to_yaml
from .schema import Parsed, Problem, parse, raise_problems

__all__ = ["from_dict", "load_flow", "loads_flow", "to_dict", "to_yaml"]


def load_flow(
    source: str | os.PathLike[str], *, agents: AgentRegistry | None = None, **options: Any
) -> DataFlow:
    """Load a flow from a ``.yaml``/``.yml``/``.json`` file (or from document text).

    A string containing a newline is read as the document itself (YAML or JSON).
    ``agents`` is the registry that resolves agent and action names (default ``nf.agents``).
    Other keyword arguments go to :class:`~nbflow.flow.Flow` (``store=``, ``pool=``,
    ``executor=``): what a run needs that is not part of the definition.

    Raises:
        FileNotFoundError: the file does not exist.
        FlowValidationError: the document has problems (all are listed, with paths).
        FlowReferenceError: some task names a task that does not exist.
        CycleError, ConditionError: the tasks form a cycle / a condition reads an unknown name.
    """
    if isinstance(source, str) and "\n" in source:
        return loads_flow(source, agents=agents, **options)
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    as_json = path.suffix.lower() == ".json"
    kind = "json" if as_json else "yaml"
    return loads_flow(text, agents=agents, source=str(path), format=kind, **options)


def loads_flow(
    text: str,
    *,
    agents: AgentRegistry | None = None,
    source: str | None = None,
    format: str = "yaml",
    **options: Any,
) -> DataFlow:
    """Load a flow from YAML (``format="yaml"``, also reads JSON) or JSON text.

    ``options`` go to :class:`~nbflow.flow.Flow`, as for :func:`load_flow`.

    Raises:
        FlowValidationError: the text does not parse, or the document has problems.
    """
    try:
        document = json.loads(text) if format == "json" else _safe_yaml(text)
    except ValueError as error:
        raise_problems([Problem("(document)", f"cannot parse {format.upper()}: {error}")], source)
        raise  # unreachable: raise_problems raised
    return from_dict(document, agents=agents, source=source, **options)


def _safe_yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: builds plain data only
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"{problem}{where}") from None


_LOADER: Any = None


def _yaml_loader() -> Any:
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false, so ``on:`` (as in
    ``retry: {on: [ConnectionError]}``) stays the string "on" instead of becoming True."""
    global _LOADER
    if _LOADER is None:
        import re

        import yaml

        # libyaml's parser when PyYAML has it (several times faster), else pure Python.
        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class Loader(base):  # type: ignore[valid-type,misc]
            pass

        Loader.yaml_implicit_resolvers = {
            first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:bool",
            re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
            list("tTfF"),
        )
        _LOADER = Loader
    return _LOADER


def from_dict(
    document: Mapping[str, Any],
    *,
    agents: AgentRegistry | None = None,
    source: str | None = None,
    **options: Any,
) -> DataFlow:
    """Build a flow from a document mapping (the parsed YAML/JSON).

    ``options`` go to :class:`~nbflow.flow.Flow` (``store=``, ``pool=``, ``executor=``).

    Raises:
        FlowValidationError: every problem of the document, with its path.
        FlowReferenceError: as above, when a task names a task that does not exist.
        CycleError, ConditionError: found when the built flow is planned.
    """
    registry = agents if agents is not None else default_agents
    parsed = parse(document)
    _check_flow_fields(parsed)
    plans, problems = check_all(parsed, registry)
    every = sorted([*parsed.problems, *problems], key=_document_order)
    raise_problems(every, source)
    flow = build_flow(parsed, plans, **options)
    flow.plan()  # cycles, and names conditions cannot see, are definition errors too
    return flow


def _check_flow_fields(parsed: Parsed) -> None:
    doc = parsed.flow
    if doc is not None and doc.strategy not in BUILTIN:
        parsed.problems.append(
            Problem("strategy", f"unknown strategy {doc.strategy!r}; use one of {sorted(BUILTIN)}")
        )
    if doc is not None:
        for name in doc.variables:
            if name in parsed.ids:
                parsed.problems.append(
                    Problem(f"variables.{name}", f"{name!r} is also a task id; rename one")
                )


def _document_order(problem: Problem) -> tuple[int, int]:
    path = problem.path
    for rank, section in ((1, "tasks["), (2, "branches[")):
        if path.startswith(section):
            return rank, int(path[len(section) : path.index("]")])
    return 0, 0
