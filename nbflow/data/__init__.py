"""Flows as data: YAML/JSON definitions run by registered agents.

- :func:`load_flow` / :func:`from_dict` build a :class:`DataFlow` from a document
  (:mod:`nbflow.data.schema` describes it), validated with every problem listed by path.
- :mod:`nbflow.data.agents` is the agent registry (``nf.agents``, ``@nf.agent``).
- :mod:`nbflow.data.templates` resolves ``${vars.x}`` / ``${results.task.field}`` safely.
- :func:`to_yaml` / :func:`to_dict` export a flow back (see :mod:`nbflow.data.export` for the
  round-trip guarantee).
"""

from __future__ import annotations

from .agents import AgentRegistry, UnknownActionError, UnknownAgentError, agent
from .dataflow import DataFlow
from .export import to_dict, to_yaml
from .loader import from_dict, load_flow, loads_flow
from .schema import FlowReferenceError, FlowValidationError, Problem
from .templates import TemplateError, TemplateSyntaxError

__all__ = [
    "AgentRegistry",
    "DataFlow",
    "FlowReferenceError",
    "FlowValidationError",
    "Problem",
    "TemplateError",
    "TemplateSyntaxError",
    "UnknownActionError",
    "UnknownAgentError",
    "agent",
    "from_dict",
    "load_flow",
    "loads_flow",
    "to_dict",
    "to_yaml",
]
