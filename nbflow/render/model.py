"""What the renderers draw: plain, frozen views of a flow's tasks, with no engine knowledge.

The dashboard builds these from run state; the renderers only read them. Both are hashable
values, so a caller can cheaply tell whether anything changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from nbflow.errors import DefinitionError
from nbflow.render.palette import STATES


@dataclass(frozen=True, slots=True)
class NodeView:
    """One task as the renderers see it.

    ``state`` must be one of :data:`~nbflow.render.palette.STATES` (a ``StrEnum`` member is
    accepted and stored as its plain string value). ``counter`` is free text such as
    ``"37/100"``; when it has the form ``done/total`` a progress bar is drawn as well.
    ``progress`` is the running attempt's own progress (``nf.track``), a fraction from 0 to
    1, drawn as the bar instead (with ``counter`` saying it in words).

    Raises:
        ValueError: ``state`` is not a known state, or ``name`` is empty.
    """

    name: str
    state: str
    priority: int = 0
    attempts: int = 0
    duration_s: float | None = None
    error: str | None = None
    tags: tuple[str, ...] = ()
    counter: str | None = None
    group: str | None = None
    #: why the task is in its state, for the tooltip: a skip's reason, where a cached
    #: result came from ("resumed from run 4f2c1a9e").
    note: str | None = None
    progress: float | None = None

    def __post_init__(self) -> None:
        # str() turns a StrEnum member into its value so attributes read "failed", not an enum.
        state = str(self.state)
        if state not in STATES:
            raise ValueError(
                f"task {self.name!r} has unknown state {state!r}; expected one of {STATES}"
            )
        if not self.name:
            raise ValueError("a task name must not be empty")
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True, slots=True)
class GraphView:
    """A flow's DAG: nodes in definition order (used to break ties) and (upstream, downstream).

    Raises:
        DefinitionError: two nodes share a name, or an edge names a node that is not there.
    """

    nodes: tuple[NodeView, ...]
    edges: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "edges", tuple((u, v) for u, v in self.edges))
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise DefinitionError(f"two nodes are named {node.name!r}; names must be unique")
            seen.add(node.name)
        for u, v in self.edges:
            for end in (u, v):
                if end not in seen:
                    raise DefinitionError(
                        f"edge {(u, v)!r} names {end!r}, which is not a node of this graph"
                    )

    @property
    def names(self) -> list[str]:
        """Node names in definition order."""
        return [n.name for n in self.nodes]

    def by_name(self) -> dict[str, NodeView]:
        """Return ``{name: node}`` (a new dict, in definition order)."""
        return {n.name: n for n in self.nodes}
