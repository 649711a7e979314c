"""``Run`` and ``RunHandle`` as a user reads them: the timeline's columns and the reprs."""

from __future__ import annotations

import asyncio

import pandas as pd

import nbflow as nf
from nbflow.demo import build_quickstart_flow


def _fan_out_flow(name: str = "fan") -> nf.Flow:
    flow = nf.Flow(name)

    @flow.task
    def items():
        return [1, 2, 3]

    @flow.task(fan_out="items")
    def double(items):
        return 2 * items

    @flow.task
    def total(double):
        return sum(double)

    return flow


def test_timeline_element_is_a_nullable_integer():
    frame = _fan_out_flow().run().timeline()
    assert str(frame["element"].dtype) == "Int64"
    by_task = dict(zip(frame["task"], frame["element"], strict=True))
    assert [by_task[f"double[{i}]"] for i in range(3)] == [0, 1, 2]
    assert by_task["items"] is pd.NA and by_task["total"] is pd.NA


def test_timeline_of_a_resumed_run_has_a_row_per_task_fan_out_included():
    # The demo's `--resume last` printed 6 tasks "from store" and 5 timeline rows: the
    # fan-out task `enrich` had none (issue #22).
    first = build_quickstart_flow(pace=0).run()
    assert first.status == "succeeded"
    resumed = build_quickstart_flow(pace=0).run(resume="last")
    assert set(resumed.states.values()) == {"cached"}
    frame = resumed.timeline()
    assert sorted(frame["task"]) == sorted(resumed.states)
    assert set(frame["status"]) == {"cached"}
    enrich = frame[frame["task"] == "enrich"]
    assert enrich["base_task"].tolist() == ["enrich"] and enrich["element"].isna().all()


def test_repr_of_a_started_run_names_its_flow_before_the_first_event():
    flow = _fan_out_flow("nightly")

    async def main() -> tuple[str, str, str]:
        handle = flow.start()  # on the running loop: nothing has happened yet
        before, run_before = repr(handle), repr(handle.run)
        await handle
        return before, run_before, repr(handle)

    before, run_before, after = asyncio.run(main())
    assert before.startswith("<RunHandle 'nightly' pending run_id=")
    assert run_before == "<Run 'nightly' pending done=0/0 failed=0>"
    assert after.startswith("<RunHandle 'nightly' succeeded run_id=")
