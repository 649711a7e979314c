"""Subflows (nbflow.subflows, nbflow.children): a Flow used as a task of another flow runs
as a child run. Its states nested under the parent's run (live state, the store, the
dashboard's table), its inputs, recursion with and without a depth limit, cancellation
with the parent, failures and retries, slots, versions; on the simulated clock, and with a
real SQLite store."""

from __future__ import annotations

import asyncio
import json

import pandas as pd
import pytest

import nbflow as nf
from nbflow.widgets import panels
from nbflow.widgets.views import Structure

pytestmark = pytest.mark.timeout(60)


def etl_flow(store=None, log: list | None = None) -> nf.Flow:
    etl = nf.Flow("etl", store=store)

    @etl.task
    async def extract(source, limit=2):
        await asyncio.sleep(1)
        return [source] * limit

    @etl.task
    async def load(extract):
        try:
            await asyncio.sleep(2)
        finally:
            if log is not None:
                log.append("load cleanup")
        return len(extract)

    return etl


def parent_flow(etl: nf.Flow, store=None) -> nf.Flow:
    main = nf.Flow("main", store=store)
    main.task(name="source")(lambda: "db")
    main.task(name="etl")(etl)
    main.task(name="report")(lambda etl: etl["load"])
    return main


def test_a_subflow_runs_as_a_child_run_nested_under_its_task():
    run = parent_flow(etl_flow()).run({"limit": 3}, simulate=True)
    assert run.status == "succeeded"
    assert run.results["etl"] == {"extract": ["db"] * 3, "load": 3}  # the child's results
    assert run.results["report"] == 3
    (child,) = run.children["etl"]
    assert child.parent_run == run.run_id and child.flow == "etl" and child.status == "succeeded"
    assert child.states == {"extract": "succeeded", "load": "succeeded"}
    # the child's clock starts when its task does; the parent's row spans it
    assert child.state.wall_start == run.state.wall_start
    assert [(r.task, r.start, r.end) for r in run.state.rows] == [
        ("source", 0.0, 0.0), ("etl", 0.0, 3.0), ("report", 3.0, 3.0),
    ]  # fmt: skip
    assert [(r.task, r.start, r.end) for r in child.state.rows] == [
        ("extract", 0.0, 1.0), ("load", 1.0, 3.0),
    ]  # fmt: skip


def test_the_child_reads_upstream_results_and_variables_it_uses_renamed_by_inputs():
    child = nf.Flow("child", store=None)
    child.task(name="use")(lambda n, mode="quick": (n, mode))
    assert child.as_task().__signature__.parameters.keys() == {"n", "mode"}
    parent = nf.Flow("parent", store=None)
    parent.task(name="step")(lambda: 41)
    parent.task(name="sub")(child.as_task(inputs={"n": "step"}))
    run = parent.run({"mode": "full", "unrelated": 1}, simulate=True)
    assert run.results["sub"] == {"use": (41, "full")}
    assert run.children["sub"][0].state.variables == {"n": 41, "mode": "full"}
    assert parent.plan().upstream["sub"] == ("step",)
    with pytest.raises(nf.DefinitionError, match=r"no task of 'child' reads 'm'; its inputs"):
        child.as_task(inputs={"m": "step"})


def test_an_input_the_parent_cannot_give_is_refused_before_any_task_runs():
    ran = []
    child = nf.Flow("needs", store=None)
    child.task(name="use")(lambda region: region)
    parent = nf.Flow("gives-nothing", store=None)
    parent.task(name="first")(lambda: ran.append(1))
    parent.task(name="sub")(child)
    with pytest.raises(nf.MissingInputError, match=r"task 'sub' parameter 'region'"):
        parent.run(simulate=True)
    assert ran == []


def test_bounded_recursion_works_and_the_limit_is_a_clear_failure():
    countdown = nf.Flow("countdown", store=None)
    countdown.task(name="level")(lambda n: n)
    countdown.task(name="below")(lambda level: level - 1)
    deeper = countdown.as_task(max_depth=5, inputs={"n": "below"})
    countdown.task(name="deeper", when="below > 0")(deeper)
    run = countdown.run({"n": 3}, simulate=True)
    assert run.status == "succeeded"
    assert run.results["deeper"] == {
        "level": 2, "below": 1, "deeper": {"level": 1, "below": 0},
    }  # fmt: skip
    depth = [run]
    while "deeper" in depth[-1].children:
        depth.append(depth[-1].children["deeper"][0])
    assert [r.state.variables for r in depth] == [{"n": 3}, {"n": 2}, {"n": 1}]
    assert depth[-1].states["deeper"] == "skipped"

    too_deep = countdown.run({"n": 9}, simulate=True)
    assert too_deep.status == "failed"
    error = too_deep.errors["deeper"]
    assert isinstance(error, nf.SubflowError)
    # the innermost run that tried: depth 6 > 5, the chain of flows named
    innermost = too_deep
    while innermost.children.get("deeper"):
        innermost = innermost.children["deeper"][0]
    message = str(innermost.errors["deeper"])
    assert message.startswith("task 'deeper': subflow 'countdown' would run at depth 6")
    assert "countdown -> countdown -> countdown -> countdown -> countdown -> countdown" in message


def test_a_subflow_cycle_without_a_depth_limit_is_refused_before_any_task_runs():
    ran = []
    a, b = nf.Flow("A", store=None), nf.Flow("B", store=None)
    a.task(name="x")(lambda: ran.append("x"))
    b.task(name="y")(lambda: ran.append("y"))
    a.task(name="b")(b)
    b.task(name="a")(a)
    with pytest.raises(
        nf.DefinitionError,
        match=r"subflows form a cycle without a depth limit: flow 'A' -> task 'b' \(flow 'B'\)"
        r" -> task 'a' \(flow 'A'\)",
    ):
        a.run(simulate=True)
    with pytest.raises(nf.DefinitionError, match=r"cycle without a depth limit"):
        b.validate()
    selfish = nf.Flow("self", store=None)
    selfish.task(name="again")(selfish)
    with pytest.raises(nf.DefinitionError, match=r"flow 'self' -> task 'again' \(flow 'self'\)"):
        selfish.run(simulate=True)
    assert ran == []
    b.task(name="a")(a.as_task(max_depth=2))  # bounded: accepted
    b.validate()


def test_cancelling_the_parent_cancels_the_child_run_and_its_cleanup_runs():
    log: list = []
    main = parent_flow(etl_flow(log=log))

    @main.task
    async def stopper():
        await asyncio.sleep(2)
        raise RuntimeError("stop everything")  # on_error="stop": the run is stopped

    run = main.run(simulate=True)
    assert run.status == "failed" and run.states["etl"] == "cancelled"
    (child,) = run.children["etl"]
    assert child.status == "cancelled" and child.states == {
        "extract": "succeeded", "load": "cancelled",
    }  # fmt: skip
    assert log == ["load cleanup"] and child.state.finished_t == 2.0  # began with its task


def test_handle_cancel_of_a_background_run_reaches_its_child_run():
    async def scenario():
        log: list = []
        main = parent_flow(etl_flow(log=log))
        handle = main.start()
        while "etl" not in handle.run.state.children:
            await asyncio.sleep(0.001)
        child = handle.run.state.children["etl"][0]
        while child.tasks.get("extract") is None or child.tasks["extract"].state != "running":
            await asyncio.sleep(0.001)
        handle.cancel()  # as Kernel -> Interrupt does (engine.cancel)
        run = await handle
        return run, log

    run, log = asyncio.run(scenario())
    assert log == []  # load never began
    assert run.status == "cancelled" and run.children["etl"][0].status == "cancelled"
    assert run.children["etl"][0].states == {"extract": "cancelled", "load": "cancelled"}


def test_cancelling_the_subflow_task_alone_cancels_its_child_and_the_parent_goes_on():
    main = parent_flow(etl_flow())

    @main.task
    async def stopper():
        await asyncio.sleep(1.5)
        nf.context().cancel("etl")
        return "ok"

    run = main.run(simulate=True)
    assert run.status == "succeeded"
    assert run.states == {
        "source": "succeeded", "etl": "cancelled", "report": "skipped", "stopper": "succeeded",
    }  # fmt: skip
    assert run.children["etl"][0].status == "cancelled"


def test_a_failed_child_fails_the_task_and_a_retry_starts_a_new_child_run():
    attempts = []
    child = nf.Flow("flaky-child", store=None)

    @child.task
    def work():
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first try")
        return "done"

    parent = nf.Flow("retrying-parent", store=None)
    parent.task(name="sub", retry=1)(child)
    run = parent.run(simulate=True)
    assert run.status == "succeeded" and run.results["sub"] == {"work": "done"}
    assert [c.status for c in run.children["sub"]] == ["failed", "succeeded"]
    once = nf.Flow("no-retry", store=None)
    once.task(name="sub")(child)
    attempts.clear()
    failed = once.run(simulate=True)
    error = failed.errors["sub"]
    assert isinstance(error, nf.SubflowError) and isinstance(error.__cause__, ValueError)
    assert str(error).startswith("task 'sub': subflow 'flaky-child' (run ")
    assert str(error).endswith("ended failed; task 'work': ValueError: first try")


def test_a_subflow_task_holds_no_slot_of_its_parent():
    parent = nf.Flow("one-slot", max_workers=1, store=None)
    parent.task(name="sub")(etl_flow())
    parent.task(name="source")(lambda: "x")

    @parent.task
    async def beside():
        await asyncio.sleep(1)
        return "ran meanwhile"

    run = parent.run(simulate=True)
    assert run.status == "succeeded"
    assert run.state.tasks["beside"].started_t == 0.0  # with one slot: the child holds none
    assert run.state.tasks["sub"].ended_t == 3.0


def test_the_parent_s_version_follows_the_child_s_code():
    child = nf.Flow("versioned-child", store=None)
    child.task(name="a")(lambda: 1)
    parent = nf.Flow("versioned-parent", store=None)
    parent.task(name="sub")(child)
    before = parent.flow_version
    assert parent.flow_version == before  # stable
    child.task(name="a")(lambda: 2)  # the child's code changed
    assert parent.flow_version != before
    assert parent.identify().tasks["sub"].parts[0].path == "subflow versioned-child"


def test_a_child_redefined_with_a_new_input_is_seen_by_the_parent_s_next_plan():
    child = nf.Flow("growing", store=None)
    child.task(name="a")(lambda: 1)
    parent = nf.Flow("watching", store=None)
    parent.task(name="region")(lambda: "eu")
    parent.task(name="sub")(child)
    assert parent.plan().upstream["sub"] == ()
    child.task(name="b")(lambda region: region)
    assert parent.plan().upstream["sub"] == ("region",)
    assert parent.run(simulate=True).results["sub"] == {"a": 1, "b": "eu"}


def test_signals_reach_a_child_run_from_its_parent():
    child = nf.Flow("approval-child", store=None)
    child.task(name="publish", wait_for="approved")(lambda approved: approved)
    parent = nf.Flow("approval-parent", store=None)

    @parent.task
    async def early():
        nf.context().send("approved", "kept")  # before the child starts: inherited

    @parent.task
    async def late():
        await asyncio.sleep(3)
        nf.context().send("approved", "late")

    parent.task(name="one", after=["early"])(child)
    gate = nf.Flow("gate-child", store=None)
    gate.task(name="gated", wait_for="go")(lambda go: go)

    @parent.task
    async def go_later():
        await asyncio.sleep(5)
        nf.context().send("go", 5)

    parent.task(name="two")(gate)
    run = parent.run(simulate=True)
    assert run.status == "succeeded", run.errors
    assert run.results["one"] == {"publish": "kept"}
    assert run.results["two"] == {"gated": 5} and run.state.tasks["two"].ended_t == 5.0


# -- the store and the dashboard ---------------------------------------------------------------


def test_the_store_records_the_child_run_under_its_parent(tmp_path):
    store = tmp_path / "s.db"
    main = parent_flow(etl_flow(store=store), store=store)

    async def scenario():
        return await main.arun({"limit": 1})

    run = asyncio.run(scenario())
    assert run.status == "succeeded"
    child_id = run.children["etl"][0].run_id
    history = nf.history(store=store)
    rows = {r.run_id: r for r in history.itertuples()}
    assert rows[child_id].parent_run == run.run_id and rows[child_id].flow == "etl"
    assert pd.isna(rows[run.run_id].parent_run)
    db = main.state_store
    started = [e for e in db.event_objects(run.run_id) if e.kind == "SubflowStarted"]
    assert [(e.task, e.child_run, e.flow) for e in started] == [("etl", child_id, "etl")]
    replayed = db.state(child_id)
    assert replayed.parent_run == run.run_id
    assert {n: r.state.value for n, r in replayed.tasks.items()} == {
        "extract": "succeeded", "load": "succeeded",
    }  # fmt: skip
    assert json.loads(db.run(child_id)["variables"]) == {"source": "db", "limit": 1}


def test_the_dashboard_nests_the_child_run_under_its_task():
    run = parent_flow(etl_flow()).run(simulate=True)
    html = panels.table_html(run.state)
    child = run.children["etl"][0]
    assert html.count('class="nbflow-subflow"') == 1
    assert f'data-child-run="{child.run_id}"' in html
    nested = html[html.index('class="nbflow-subflow"') :]
    assert 'data-row-task="extract"' in nested and 'data-row-task="load"' in nested
    assert "subflow <b>etl</b> · run" in nested and "2/2 done" in nested
    nodes = Structure.from_plan(parent_flow(etl_flow()).plan()).nodes(run.state)
    assert nodes["etl"].counter == "2/2"
    assert nodes["etl"].note == f"child run {child.run_id[:8]} of flow 'etl': succeeded"


def test_a_resumed_parent_reuses_its_subflow_unless_the_child_changed(tmp_path):
    store = tmp_path / "s.db"
    calls: list[str] = []
    failures = [True]

    def child_flow(factor: int) -> nf.Flow:
        child = nf.Flow("resumable-child", store=store)

        @child.task
        def work():
            calls.append(f"work x{factor}")
            return 21 * factor

        return child

    def parent_of(child: nf.Flow) -> nf.Flow:
        parent = nf.Flow("resumable-parent", store=store)
        parent.task(name="sub")(child)

        @parent.task
        def after(sub):
            if failures[0]:
                raise RuntimeError("not yet")
            return sub["work"]

        return parent

    first = parent_of(child_flow(2)).run()
    assert first.states == {"sub": "succeeded", "after": "failed"} and calls == ["work x2"]
    failures[0] = False
    second = parent_of(child_flow(2)).run(resume="last")
    assert second.states == {"sub": "cached", "after": "succeeded"}
    assert calls == ["work x2"] and second.children == {}  # no new child run
    third = parent_of(child_flow(3)).run(resume=first.run_id)  # the child's code changed
    assert third.states == {"sub": "succeeded", "after": "succeeded"}
    assert calls == ["work x2", "work x3"] and third.results["after"] == 63
