"""Benchmark workloads as plain data: DAGs every engine builds its own way (issue 9).

A :class:`Workload` is engine-neutral: node names, each node's upstream indices, what each node
computes, and a concurrency limit. Every engine turns it into its native form (asyncio tasks,
dask graphs, Prefect futures, Hamilton functions, nbflow tasks), runs it, and returns the value
of every sink node, which the runner checks against :func:`expected_sinks` — so a benchmark
that silently skips work fails instead of looking fast.

Node semantics (all cheap, so that the engine's own cost dominates):

* ``depth``: ``1 + max(inputs)`` (``1`` for a source) — W2 chain, W3/W6 layers, W1 leaves;
* ``sum``: ``sum(inputs)`` — the W1 sink;
* ``sleep``: ``asyncio.sleep(0.01)`` (``time.sleep`` on thread engines), returns ``1`` — W4;
* ``flaky``: raises :class:`FlakyError` on the first two attempts, then returns ``1`` — W5.

This module imports only the standard library: the peers' virtualenv runs it too.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

SLEEP_S = 0.01
FLAKY_FAILURES = 2
DEFAULT_IN_FLIGHT = 64
#: Timed repeats at least, for workloads whose run takes a few milliseconds.
SHORT_REPEAT = 11
SEED = 20_260_809


class FlakyError(RuntimeError):
    """Raised by ``flaky`` nodes on their first attempts (W5)."""


@dataclass(frozen=True)
class Workload:
    """One benchmark DAG.

    Attributes:
        key: identifier used on the command line and in the results (``W1-1k``).
        title: what the row means, for the report.
        names: node names (valid Python identifiers, unique).
        deps: for each node, the indices of its upstream nodes (data dependencies).
        ops: for each node, ``depth``, ``sum``, ``sleep`` or ``flaky``.
        max_in_flight: concurrency limit an engine should apply (W4: 20).
        retries: retries each node needs to succeed (W5: 2, else 0).
        ideal_s: the ideal wall time when the workload is latency-bound (W4), else None.
        group: the family (``W1`` ... ``W7``, ``E`` for engine.py), for ``--workloads``.
        min_repeat: at least this many timed repeats, whatever ``--repeat`` says. A run of
            a few milliseconds (W1-1k, W2, W3, W5) is easily hit by the machine's other
            work, so its median needs more samples than three; W7's ratios between
            variants are a few percent. Repeats stop early once a cell's time budget is
            spent (slow peers).
    """

    key: str
    title: str
    names: tuple[str, ...]
    deps: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]
    max_in_flight: int = DEFAULT_IN_FLIGHT
    retries: int = 0
    ideal_s: float | None = None
    group: str = ""
    sinks: tuple[int, ...] = field(default=())
    min_repeat: int = 1

    @property
    def n_tasks(self) -> int:
        """Number of nodes (the denominator of µs per task)."""
        return len(self.names)

    def __repr__(self) -> str:
        return f"<Workload {self.key!r} tasks={self.n_tasks} in_flight={self.max_in_flight}>"


def _make(
    key: str,
    title: str,
    deps: Sequence[Sequence[int]],
    ops: Sequence[str],
    **extra: object,
) -> Workload:
    names = tuple(f"t{i}" for i in range(len(deps)))
    has_children = {d for ds in deps for d in ds}
    sinks = tuple(i for i in range(len(deps)) if i not in has_children)
    return Workload(
        key=key,
        title=title,
        names=names,
        deps=tuple(tuple(d) for d in deps),
        ops=tuple(ops),
        sinks=sinks,
        group=key.split("-")[0],
        **extra,  # type: ignore[arg-type]
    )


def wide(key: str, n: int, with_sum: bool = True) -> Workload:
    """``n`` independent no-op tasks, plus one task that sums them when ``with_sum``."""
    deps: list[tuple[int, ...]] = [() for _ in range(n)]
    ops = ["depth"] * n
    if with_sum:
        deps.append(tuple(range(n)))
        ops.append("sum")
    title = f"{n:,} independent no-op tasks" + (" + 1 sum" if with_sum else "")
    return _make(key, title, deps, ops)


def chain(key: str, n: int) -> Workload:
    """``n`` tasks, each taking the previous task's result."""
    deps = [()] + [(i - 1,) for i in range(1, n)]
    return _make(key, f"chain of {n:,}", deps, ["depth"] * n)


def layered(key: str, layers: int, width: int, fan_in: int = 3, seed: int = SEED) -> Workload:
    """``layers`` x ``width`` tasks, each depending on ``fan_in`` random tasks of the layer above.

    Seeded, so that every engine and every run gets the same graph.
    """
    rng = random.Random(seed)
    deps: list[tuple[int, ...]] = [() for _ in range(width)]
    for layer in range(1, layers):
        above = range((layer - 1) * width, layer * width)
        k = min(fan_in, width)
        deps.extend(tuple(sorted(rng.sample(above, k))) for _ in range(width))
    n = layers * width
    return _make(key, f"{layers} layers x {width} ({n:,} tasks, fan-in {fan_in})", deps,
                 ["depth"] * n)


def sleeps(key: str, n: int, limit: int) -> Workload:
    """``n`` tasks of a 10 ms sleep, at most ``limit`` at once (ideal: ceil(n/limit) x 10 ms)."""
    ideal = -(-n // limit) * SLEEP_S
    return _make(key, f"{n} x sleep 10 ms, {limit} at once", [()] * n, ["sleep"] * n,
                 max_in_flight=limit, ideal_s=ideal)


def flaky(key: str, n: int) -> Workload:
    """``n`` independent tasks that fail twice, then succeed (retry delay 0)."""
    return _make(key, f"{n} tasks failing twice then succeeding", [()] * n, ["flaky"] * n,
                 retries=FLAKY_FAILURES)


def _full() -> list[Workload]:
    return [
        dataclasses.replace(wide("W1-1k", 1_000), min_repeat=SHORT_REPEAT),
        dataclasses.replace(wide("W1-10k", 10_000), min_repeat=7),
        dataclasses.replace(chain("W2-1k", 1_000), min_repeat=SHORT_REPEAT),
        dataclasses.replace(layered("W3-1k", 20, 50), min_repeat=SHORT_REPEAT),
        sleeps("W4", 200, 20),
        dataclasses.replace(flaky("W5", 200), min_repeat=SHORT_REPEAT),
        layered("W6-10k", 100, 100),
        layered("W6-100k", 100, 1_000),
        dataclasses.replace(layered("W7-2k", 40, 50), min_repeat=21),
    ]


def _quick() -> list[Workload]:
    return [
        wide("W1-1k", 20),
        wide("W1-10k", 50),
        chain("W2-1k", 20),
        layered("W3-1k", 4, 5),
        sleeps("W4", 20, 5),
        flaky("W5", 10),
        layered("W6-10k", 10, 10),
        layered("W6-100k", 10, 30),
        layered("W7-2k", 5, 10),
    ]


def _engine_overhead(quick: bool) -> list[Workload]:
    """The issue-2 ``benchmarks/engine.py`` set: 10,000 no-op tasks in three shapes."""
    if quick:
        return [wide("E-indep", 50, with_sum=False), chain("E-chain", 50),
                layered("E-layered", 5, 10)]
    return [wide("E-indep", 10_000, with_sum=False), chain("E-chain", 10_000),
            layered("E-layered", 200, 50)]


def all_workloads(quick: bool = False) -> dict[str, Workload]:
    """Every workload the harness knows, by key (the W set and the engine.py E set)."""
    items = (_quick() if quick else _full()) + _engine_overhead(quick)
    return {w.key: w for w in items}


def select(keys: Sequence[str] | None, quick: bool = False) -> list[Workload]:
    """The W workloads named by ``--workloads`` (a key like ``W1-1k`` or a family like ``W1``).

    Raises:
        ValueError: a name that matches no workload.
    """
    known = all_workloads(quick)
    if not keys:
        return [w for w in known.values() if w.group.startswith("W")]
    chosen: list[Workload] = []
    for key in keys:
        hits = [w for w in known.values() if key in (w.key, w.group)]
        if not hits:
            raise ValueError(f"unknown workload {key!r}; known: {', '.join(known)}")
        chosen.extend(w for w in hits if w not in chosen)
    return chosen


def compute(op: str, inputs: Sequence[int]) -> int:
    """The pure value of a ``depth`` or ``sum`` node given its inputs."""
    if op == "sum":
        return sum(inputs)
    return 1 + max(inputs, default=0)


def expected_sinks(workload: Workload) -> dict[str, int]:
    """The reference value of every sink node, computed in plain Python."""
    values: list[int] = []
    for op, deps in zip(workload.ops, workload.deps, strict=True):
        values.append(1 if op in ("sleep", "flaky") else compute(op, [values[d] for d in deps]))
    return {workload.names[i]: values[i] for i in workload.sinks}


class FlakyCounter:
    """Per-node attempt counters for ``flaky`` nodes, reset before each repeat."""

    def __init__(self, n: int) -> None:
        self.attempts = [0] * n

    def attempt(self, index: int) -> int:
        """Count one attempt of node ``index``; raise :class:`FlakyError` while it must fail."""
        self.attempts[index] += 1
        if self.attempts[index] <= FLAKY_FAILURES:
            raise FlakyError(f"t{index} attempt {self.attempts[index]} fails on purpose")
        return 1


def topological_layers(workload: Workload) -> list[list[int]]:
    """Node indices grouped by depth (sources first); used by engines that build in order."""
    level: list[int] = []
    for deps in workload.deps:
        level.append(1 + max((level[d] for d in deps), default=-1))
    layers: list[list[int]] = [[] for _ in range(max(level, default=-1) + 1)]
    for i, lv in enumerate(level):
        layers[lv].append(i)
    return layers


NodeFn = Callable[..., object]
