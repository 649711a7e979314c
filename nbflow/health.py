"""``nf.health()``: what is running right now, across every flow in this process."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .lifecycle import TaskState

if TYPE_CHECKING:
    from .engine import Engine

_active: weakref.WeakSet[Engine] = weakref.WeakSet()


@contextlib.contextmanager
def tracking(engine: Engine) -> Iterator[None]:
    """Register ``engine`` as active while the block runs."""
    _active.add(engine)
    try:
        yield
    finally:
        _active.discard(engine)


class Health(dict[str, Any]):
    """A dict of health figures whose ``str`` is a one-line summary."""

    def __str__(self) -> str:
        oldest = self.get("oldest_task")
        age = f", oldest {oldest} running {self['oldest_age_s']:.1f}s" if oldest else ""
        runs, tasks = self["active_runs"], self["tasks_in_flight"]
        return f"nbflow: {runs} active run(s), {tasks} task(s) in flight{age}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def health(flow: Any = None) -> Health:
    """Active runs, tasks in flight, and the oldest running task with its age in seconds.

    ``flow`` limits the figures to one flow (a :class:`Flow` or its name).
    """
    name = getattr(flow, "name", flow)
    engines = [e for e in list(_active) if name is None or e.plan.flow_name == name]
    in_flight = 0
    oldest: tuple[float, str, str] | None = None
    runs = []
    for engine in engines:
        now = engine.loop.time() - engine._t0 if engine.loop is not None else 0.0
        running = [
            r
            for r in engine.state.tasks.values()
            if r.state in (TaskState.RUNNING, TaskState.RETRYING)
        ]
        in_flight += len(running)
        for record in running:
            age = now - (record.started_t or now)
            if oldest is None or age > oldest[0]:
                oldest = (age, record.name, engine.run_id)
        runs.append(
            {"flow": engine.plan.flow_name, "run_id": engine.run_id, "in_flight": len(running)}
        )
    return Health(
        active_runs=len(engines),
        tasks_in_flight=in_flight,
        oldest_task=oldest[1] if oldest else None,
        oldest_run=oldest[2] if oldest else None,
        oldest_age_s=oldest[0] if oldest else 0.0,
        runs=runs,
    )
