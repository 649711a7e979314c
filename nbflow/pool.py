"""Worker pools: named workers with capacities, and policies that place tasks on them.

``nf.Pool({"cpu-a": 2, "cpu-b": 2}, policy="least_loaded")`` declares two workers that run at
most two tasks each. When a task is ready, the engine asks the pool for a worker; the policy
chooses among the workers that have a free slot (and match the task's ``worker=`` request, by
name or tag). ``least_loaded`` reads the live number of tasks in flight on each worker at that
moment, so a worker busy with a long task is passed over. A task that asks for a parameter
named ``worker`` receives the chosen name.

Runs that share a pool share its capacities. A run that finds no free worker for a task
waits in the pool's line; a worker that frees up goes to the first run in line that can use
it (see :mod:`nbflow.limits`), so runs never wait forever on each other.

A policy is ``"round_robin"``, ``"least_loaded"``, a callable
``policy(task_name, candidates) -> worker_name``, or an object with such a ``select`` method.
``candidates`` are :class:`WorkerLoad` snapshots, in declaration order.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import DefinitionError


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """A worker as a policy sees it: its load at the moment of the decision."""

    name: str
    capacity: int
    in_flight: int
    tags: tuple[str, ...] = ()
    index: int = 0

    @property
    def free(self) -> int:
        """Slots left."""
        return self.capacity - self.in_flight


Policy = Callable[[str, Sequence[WorkerLoad]], str]


def round_robin() -> Policy:
    """Cycle through the workers in declaration order, skipping those without a free slot."""
    last = [-1]

    def select(task: str, candidates: Sequence[WorkerLoad]) -> str:
        after = [c for c in candidates if c.index > last[0]]
        chosen = min(after or candidates, key=lambda c: c.index)
        last[0] = chosen.index
        return chosen.name

    return select


def least_loaded(task: str, candidates: Sequence[WorkerLoad]) -> str:
    """The worker with the smallest share of its capacity in use; ties by declaration order."""
    return min(candidates, key=lambda c: (c.in_flight / c.capacity, c.in_flight, c.index)).name


class Pool:
    """Named workers with capacities and a placement policy.

    Args:
        workers: ``{"name": capacity}``, a list of names (capacity 1 each), or an int n
            (workers ``w0 .. w{n-1}``).
        policy: ``"round_robin"`` (default), ``"least_loaded"``, or a custom policy.
        tags: optional ``{"worker": ["gpu", ...]}``; a task's ``worker="gpu"`` matches them.

    Raises:
        DefinitionError: no workers, a capacity below 1, or an unknown policy name.
    """

    def __init__(
        self,
        workers: Mapping[str, int] | Sequence[str] | int,
        policy: str | Policy | Any = "round_robin",
        *,
        tags: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if isinstance(workers, int):
            workers = {f"w{i}": 1 for i in range(workers)}
        elif not isinstance(workers, Mapping):
            workers = dict.fromkeys(workers, 1)
        if not workers:
            raise DefinitionError("a Pool needs at least one worker")
        for name, capacity in workers.items():
            if not isinstance(capacity, int) or capacity < 1:
                raise DefinitionError(
                    f"worker {name!r} capacity must be an int >= 1, got {capacity!r}"
                )
        self.capacity: dict[str, int] = dict(workers)
        self.tags: dict[str, tuple[str, ...]] = {n: tuple((tags or {}).get(n, ())) for n in workers}
        self.in_flight: dict[str, int] = dict.fromkeys(workers, 0)
        self._order = {name: i for i, name in enumerate(workers)}
        self.policy_name, self._select = _resolve_policy(policy)
        # Runs waiting for a worker, in the order they first waited: claimant -> the worker
        # names or tags its waiting tasks want (None: any).
        self._line: OrderedDict[Any, set[str | None]] = OrderedDict()
        # Runs on several loops (threads) may share the pool. Re-entrant: a custom policy
        # runs under it and may read the pool.
        self._lock = threading.RLock()

    @property
    def total_capacity(self) -> int:
        """Sum of all workers' capacities."""
        return sum(self.capacity.values())

    def candidates(self, want: str | None = None) -> list[WorkerLoad]:
        """Workers with a free slot that match ``want`` (a worker name or tag), as snapshots."""
        result = []
        for name, capacity in self.capacity.items():
            used = self.in_flight[name]
            if used >= capacity:
                continue
            if want is not None and want != name and want not in self.tags[name]:
                continue
            result.append(WorkerLoad(name, capacity, used, self.tags[name], self._order[name]))
        return result

    def check_request(self, task: str, want: str | None) -> None:
        """Raise when ``want`` matches no worker at all (a definition error)."""
        if want is None:
            return
        if not any(want == n or want in self.tags[n] for n in self.capacity):
            raise DefinitionError(
                f"task {task!r} worker={want!r} matches no worker of the pool; workers are "
                f"{sorted(self.capacity)} with tags {sorted(set().union(*self.tags.values()))}"
            )

    def acquire(self, task: str, want: str | None = None) -> str | None:
        """Place ``task``: the chosen worker's name, or None when no matching slot is free."""
        with self._lock:
            candidates = self.candidates(want)
            if not candidates:
                return None
            name = self._select(task, candidates)
            if name not in self.in_flight or all(c.name != name for c in candidates):
                raise DefinitionError(
                    f"pool policy {self.policy_name!r} chose {name!r} for task {task!r}, which "
                    f"is not one of the free candidates {[c.name for c in candidates]}"
                )
            self.in_flight[name] += 1
            return name

    def claim(self, claimant: Any, task: str, want: str | None = None) -> str | None:
        """:meth:`acquire`, or else put ``claimant`` in line for a worker, in one step: a
        worker released by another thread in between would otherwise go back to the pool,
        free, while ``claimant`` waits in line for the next release, maybe forever."""
        with self._lock:
            worker = self.acquire(task, want)
            if worker is None:
                self.wait_for(claimant, want)
            return worker

    def matches(self, worker: str, want: str | None) -> bool:
        """Whether ``worker`` suits a task asking for ``want`` (a name, a tag, or None)."""
        return want is None or want == worker or want in self.tags[worker]

    def wait_for(self, claimant: Any, want: str | None) -> None:
        """Put ``claimant`` (a run's :class:`~nbflow.limits.Slots`) in line for a worker
        that suits ``want``; a claimant in line already keeps its place and adds the want."""
        with self._lock:
            self._line.setdefault(claimant, set()).add(want)

    def forget(self, claimant: Any) -> None:
        """Take ``claimant`` out of the line (its run is over)."""
        with self._lock:
            self._line.pop(claimant, None)

    def release(self, worker: str) -> None:
        """Free the slot a task held on ``worker``: it goes to the first run in line that
        can use it (handed over, still counted as in flight), else back to the pool."""
        with self._lock:
            for claimant, wants in self._line.items():
                if any(self.matches(worker, want) for want in wants):
                    del self._line[claimant]
                    break
            else:
                self.in_flight[worker] -= 1
                return
        claimant.hand_over(worker)

    def __repr__(self) -> str:
        load = ", ".join(f"{n}={self.in_flight[n]}/{c}" for n, c in self.capacity.items())
        return f"<Pool {self.policy_name} {load}>"


def _resolve_policy(policy: Any) -> tuple[str, Policy]:
    if policy == "round_robin":
        return "round_robin", round_robin()
    if policy == "least_loaded":
        return "least_loaded", least_loaded
    if isinstance(policy, str):
        raise DefinitionError(
            f"unknown pool policy {policy!r}; use 'round_robin', 'least_loaded' or a callable"
        )
    select = getattr(policy, "select", None)
    if callable(select):
        return type(policy).__name__, select
    if callable(policy):
        return getattr(policy, "__name__", "custom"), policy
    raise DefinitionError(f"pool policy {policy!r} is neither a name nor a callable")
