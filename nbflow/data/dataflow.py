"""``DataFlow``: a :class:`~nbflow.flow.Flow` built from a document, with default variables.

A document's ``variables`` are defaults: a run's own variables override them, and conditions
(``vars['mode']``) and templates (``${vars.region}``) see the merged values. The defaults are
part of the definition, so they are covered by ``flow_version`` (a flow without defaults
hashes exactly like the same flow written with decorators).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..flow import Flow
from ..graph import Plan
from ..spec import FlowSpec


class DataFlowSpec(FlowSpec):
    """A :class:`~nbflow.spec.FlowSpec` with the document's default ``variables``."""

    variables: dict[str, Any] = {}


class DataFlow(Flow):
    """A flow loaded from YAML/JSON (see :func:`nbflow.load_flow`); a :class:`Flow` otherwise.

    Args:
        variables: default run variables (a run's ``variables=`` override them).
        description: free text from the document.
        **options: as for :class:`~nbflow.flow.Flow`.
    """

    def __init__(
        self,
        name: str,
        *,
        variables: Mapping[str, Any] | None = None,
        description: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(name, **options)
        self.variables: dict[str, Any] = dict(variables or {})
        self.description = description

    def run_variables(self, variables: Mapping[str, Any] | None) -> dict[str, Any]:
        """The defaults overridden by ``variables``."""
        return {**self.variables, **dict(variables or {})}

    def validate(self, variables: Mapping[str, Any] | None = None) -> Plan:
        """As :meth:`Flow.validate`, with the default variables applied."""
        return super().validate(self.run_variables(variables))

    def _engine(self, variables: Mapping[str, Any] | None, *args: Any, **kwargs: Any) -> Any:
        return super()._engine(self.run_variables(variables), *args, **kwargs)

    def _version_extra(self) -> str:
        # The defaults are read at each run, like the tasks' identities: changing them
        # changes the version without making a new plan.
        return _canonical(self.variables) if self.variables else ""

    def spec(self) -> FlowSpec:
        """The definition; with defaults, a :class:`DataFlowSpec` that carries them."""
        base = super().spec()
        if not self.variables:
            return base
        return DataFlowSpec.model_construct(**base.__dict__, variables=dict(self.variables))


def _canonical(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):  # mixed-type keys cannot be sorted
        return repr(value)
