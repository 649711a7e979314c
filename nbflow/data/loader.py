"""Load a flow defined as data: ``nf.load_flow("etl.yaml")`` and ``nf.Flow.from_dict(d)``.

Loading validates the whole document and raises one error listing every problem with its
path (:class:`~nbflow.data.schema.FlowValidationError`; a
:class:`~nbflow.data.schema.FlowReferenceError`, which is also a
:class:`~nbflow.errors.MissingDependencyError`, when a task names no task). It then builds the
flow and plans it, so cycles and bad conditions are raised here too, before any run.
"""

from __future__ import annotations

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
from .safeyaml import TextProblem, load_text
from .schema import FlowValidationError, Parsed, Problem, parse, raise_problems

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
        FlowValidationError: the file is not UTF-8, or the document has problems (all are
            listed, with paths).
        FlowReferenceError: some task names a task that does not exist.
        CycleError, ConditionError: the tasks form a cycle / a condition reads an unknown name.
    """
    if isinstance(source, str) and "\n" in source:
        return loads_flow(source, agents=agents, **options)
    path = Path(source)
    text = _decode(path.read_bytes(), str(path))
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
        FlowValidationError: the text does not parse, has duplicate keys, an alias bomb or
            too deep a nesting (see :mod:`nbflow.data.safeyaml`), or the document has problems.
    """
    try:
        document = load_text(text, format)
    except TextProblem as problem:
        raise FlowValidationError([Problem(problem.path, problem.message)], source) from None
    return from_dict(document, agents=agents, source=source, **options)


def _decode(data: bytes, source: str) -> str:
    """The text of a document file, which must be UTF-8 (a byte-order mark is allowed)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        message = (
            f"is not UTF-8 text: byte {data[error.start : error.start + 1]!r} at line {line}, "
            f"column {column} ({error.reason}); save the file as UTF-8"
        )
        raise FlowValidationError([Problem("(document)", message)], source) from None


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
