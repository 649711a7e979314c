"""The quickstart flow, shared by ``python -m nbflow demo`` and notebooks/01-quickstart.

A small, realistic pipeline: two sources fetched concurrently (one flaky, retried with
backoff), a join, a fan-out over regions with a sliding window, and a report. It sleeps a
little so a person can watch it run.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from .errors import describe
from .flow import Flow
from .retry import Retry

REGIONS = ["north", "south", "east", "west", "centre"]


def build_quickstart_flow(
    name: str = "quickstart", *, seed: int = 7, pace: float = 1.0, **flow_options: Any
) -> Flow:
    """Build the quickstart flow; ``pace`` scales its sleeps (0 for no waiting)."""
    flow = Flow(name, max_workers=4, **flow_options)
    rng = random.Random(seed)
    failures = {"orders": 1}  # the first call of `orders` fails: watch it retry

    @flow.task(tags=["source"])
    async def users() -> list[dict[str, Any]]:
        await asyncio.sleep(0.3 * pace)
        return [{"id": i, "region": REGIONS[i % len(REGIONS)]} for i in range(20)]

    @flow.task(
        priority=10,
        tags=["source"],
        retry=Retry(max_retries=3, delay=0.2 * pace, backoff=2.0, on=(ConnectionError,)),
    )
    async def orders() -> list[dict[str, Any]]:
        await asyncio.sleep(0.2 * pace)
        if failures["orders"] > 0:
            failures["orders"] -= 1
            raise ConnectionError("orders API timed out")
        return [{"user": rng.randrange(20), "amount": rng.randrange(5, 500)} for _ in range(60)]

    @flow.task
    def joined(users: list[dict[str, Any]], orders: list[dict[str, Any]]) -> dict[str, int]:
        region_of = {u["id"]: u["region"] for u in users}
        totals: dict[str, int] = dict.fromkeys(REGIONS, 0)
        for order in orders:
            totals[region_of[order["user"]]] += order["amount"]
        return totals

    @flow.task
    def regions(joined: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(joined.items())

    @flow.task(fan_out="regions", concurrency=2)
    async def enrich(regions: tuple[str, int]) -> dict[str, Any]:
        region, total = regions
        await asyncio.sleep(0.15 * pace)
        return {"region": region, "total": total, "band": "high" if total > 2000 else "normal"}

    @flow.task(when="len(enrich) > 0")
    def report(enrich: list[dict[str, Any]]) -> str:
        lines = [f"{r['region']:>7}: {r['total']:>6}  {r['band']}" for r in enrich]
        return "\n".join(["revenue by region", *lines])

    return flow


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart in a terminal, printing each state change as it happens."""
    import argparse

    from . import events as ev

    parser = argparse.ArgumentParser(prog="python -m nbflow demo", description=main.__doc__)
    parser.add_argument(
        "--pace", type=float, default=1.0, help="scale the demo's sleeps (0 = no waiting)"
    )
    parser.add_argument("--resume", default=None, help='resume a run: "last" or a run id')
    args = parser.parse_args(argv)

    flow = build_quickstart_flow(pace=args.pace)
    symbols = {
        ev.TaskStarted: "▶",
        ev.TaskRetrying: "↻",
        ev.TaskSucceeded: "✔",
        ev.TaskFailed: "✘",
        ev.TaskSkipped: "·",
        ev.TaskCancelled: "■",
    }

    def show(event: ev.Event) -> None:
        symbol = symbols.get(type(event))
        if symbol is None:
            return
        task = getattr(event, "task", "")
        element = getattr(event, "element", None)
        label = f"{task}[{element}]" if element is not None else task
        detail = ""
        if isinstance(event, ev.TaskRetrying):
            detail = (
                f"  attempt {event.attempt} failed ({describe(event.error)}); "
                f"retrying in {event.delay:.2f}s"
            )
        elif isinstance(event, ev.TaskFailed):
            detail = f"  {describe(event.error)}"
        elif isinstance(event, ev.TaskSucceeded) and event.cached:
            detail = "  (from store)"
        print(f"{event.t:7.3f}s {symbol} {label}{detail}", flush=True)

    flow.subscribe(show)
    size, version = len(flow.tasks), flow.flow_version
    print(f"nbflow demo: running flow {flow.name!r} ({size} tasks, version {version})")
    kwargs = {"resume": args.resume} if args.resume else {}
    run = flow.run(**kwargs)
    print()
    print(run.results.get("report", ""))
    print()
    print(run)
    frame = run.timeline()
    print(frame[["task", "attempt", "status", "duration_s", "worker"]].to_string(index=False))
    store = flow.state_store
    location = getattr(store, "location", None)
    if location:
        print(f"\nrun {run.run_id} recorded in {location}")
        print("`python -m nbflow demo --resume last` resumes it")
    return 0 if run.status == "succeeded" else 1
