"""The live dashboard, driven by real flow runs: widget values follow the run's state.

Counts, not timings: how many flushes and renders a run caused, never how long they took.
Widgets live outside a kernel here (ipywidgets uses a dummy comm), which is enough to read
their values and to count ``send_state`` calls.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from typing import Any

import ipywidgets
import pytest

import nbflow as nf
from nbflow.render import find_dot
from nbflow.widgets import Dashboard, layouts
from nbflow.widgets.dashboard import EAGER_ROWS

NODE = re.compile(r'<g class="nbflow-node[^"]*" data-task="([^"]+)" data-state="([^"]+)"')


def node_states(d: Dashboard) -> dict[str, str]:
    return dict(NODE.findall(d._dag))


def marker(d: Dashboard) -> dict[str, str]:
    """The attributes of the header's status marker."""
    tag = re.search(r'<div class="nbflow-status"([^>]*)>', d._header)
    assert tag is not None
    return dict(re.findall(r'data-([\w-]+)="([^"]*)"', tag[1]))


def bars(html: str) -> list[tuple[str, str, str]]:
    return re.findall(
        r'class="nbflow-bar"[^>]*data-task="([^"]+)" data-attempt="([^"]*)" '
        r'data-status="([^"]+)"',
        html,
    )


def subscribers_of(bus: Any) -> list[Any]:
    """The bus's subscriber list (``subscribers``; ``_subscribers`` in older versions)."""
    return bus.subscribers if hasattr(bus, "subscribers") else bus._subscribers


async def until(predicate: Any, steps: int = 2000) -> None:
    """Let the loop run until ``predicate()`` holds (a wait, not a timing assertion)."""
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never became true")


def gated_flow() -> tuple[nf.Flow, asyncio.Event]:
    gate = asyncio.Event()
    flow = nf.Flow("gated", max_workers=2)

    @flow.task
    async def first():
        await gate.wait()
        return 1

    @flow.task(priority=3)
    async def second(first):
        return first + 1

    return flow, gate


# -- values follow the run ---------------------------------------------------------------


def test_dashboard_values_follow_a_live_run_to_the_end():
    async def main() -> None:
        flow, gate = gated_flow()
        handle = flow.start()
        d = Dashboard(handle, interval=math.inf, heartbeat=None, prefer="python")
        assert marker(d)["nbflow-status"] in ("pending", "running")
        assert node_states(d) == {"first": "pending", "second": "pending"}

        await until(lambda: handle.run.states.get("first") == "running")
        d.sync()
        assert node_states(d) == {"first": "running", "second": "pending"}
        assert marker(d)["nbflow-status"] == "running"
        assert (marker(d)["done"], marker(d)["total"]) == ("0", "2")

        gate.set()
        await until(lambda: handle.run.done)
        # No sync(): the flush at RunFinished alone drew the final state.
        assert node_states(d) == {"first": "succeeded", "second": "succeeded"}
        assert marker(d)["nbflow-status"] == "succeeded"
        assert 'aria-valuenow="2"' in d._header
        assert 'aria-valuemax="2"' in d._header
        assert "p=3" in d._dag  # priority is visible on the node
        assert [b[0] for b in bars(d._gantt)] == ["first", "second"]
        assert 'data-row-task="second" data-row-state="succeeded"' in d._table
        await handle

    asyncio.run(main())


def test_dashboard_shows_failure_with_error_and_traceback():
    flow = nf.Flow("failing", on_error="continue")

    @flow.task
    def ok():
        return 1

    @flow.task
    def boom(ok):
        raise ValueError("column 'amount' is missing")

    @flow.task
    def after(boom):
        return boom

    run = flow.run()
    d = Dashboard(run, prefer="python")
    assert node_states(d) == {"ok": "succeeded", "boom": "failed", "after": "upstream_failed"}
    assert marker(d)["nbflow-status"] == "failed"
    assert "ValueError: column &#x27;amount&#x27; is missing" in d._dag  # tooltip
    table = d._table
    assert '<details class="nbflow-traceback">' in table
    assert "raise ValueError" in table
    assert 'engine.py"' not in table  # nbflow's own frames are left out


def test_fan_out_node_shows_done_over_total():
    flow = nf.Flow("fan")

    @flow.task
    def items():
        return [1, 2, 3, 4, 5]

    @flow.task(fan_out="items")
    def double(items):
        return 2 * items

    d = Dashboard(flow.run(), prefer="python")
    assert re.search(r'data-task="double".*?class="nbflow-counter"[^>]*>5/5<', d._dag, re.S)
    assert "5/5" in d._table


# -- coalescing ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::nbflow.errors.OverheadWarning")  # no-op tasks, on purpose
def test_a_live_dashboard_does_no_work_per_event():
    """It leaves the bus at the run's first event (the engine then publishes nothing at all)
    and redraws from its ticker, only when the state moved; the end is drawn at once."""

    async def main() -> tuple[Dashboard, float]:
        gate = asyncio.Event()
        flow = nf.Flow("burst", max_workers=None)

        @flow.task
        async def first():
            await gate.wait()

        for i in range(3000):
            flow.task(name=f"t{i}", after=["first"])(_noop)
        handle = flow.start()
        d = Dashboard(handle, interval=0.05, heartbeat=None, prefer="python")
        bus = handle.engine.bus
        assert d._subscriber in subscribers_of(bus)
        await until(lambda: handle.run.states.get("first") == "running")
        assert subscribers_of(bus) == []  # nobody listens: the engine skips publishing
        await asyncio.sleep(0.2)  # several ticks: the first draws the graph, then nothing new
        assert d.stats.flushes == 1 and d.stats.dag_renders == 1
        gate.set()
        started = time.perf_counter()
        await handle
        return d, time.perf_counter() - started

    d, elapsed = asyncio.run(main())
    # ~9,000 events: at most a flush per tick during the burst, and the final draw.
    assert d.stats.flushes <= 2 + math.ceil(elapsed / 0.05) + 1
    assert marker(d)["nbflow-status"] == "succeeded"
    assert marker(d)["done"] == "3001"


def test_arun_with_show_returns_with_its_dashboard_drawn_final(monkeypatch):
    """The end-of-run callback is in place before the engine awaits its end: the final draw
    happens before ``await flow.arun(show=True)`` returns, not on a later loop turn."""
    shown: list[Dashboard] = []
    monkeypatch.setattr(Dashboard, "display", lambda self: shown.append(self) or self)

    async def main() -> None:
        flow, gate = gated_flow()
        gate.set()
        await flow.arun(show=True)
        [d] = shown
        assert marker(d)["nbflow-status"] == "succeeded"
        assert node_states(d) == {"first": "succeeded", "second": "succeeded"}
        assert d._ticker is not None and not d._ticker.running

    asyncio.run(main())


def test_cancelling_the_task_that_awaits_a_run_still_draws_its_end(monkeypatch):
    shown: list[Dashboard] = []
    monkeypatch.setattr(Dashboard, "display", lambda self: shown.append(self) or self)

    async def main() -> Dashboard:
        flow, _gate = gated_flow()  # the gate never opens
        task = asyncio.ensure_future(flow.arun(show=True))
        await until(lambda: bool(shown) and shown[0].run.states.get("first") == "running")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return shown[0]

    d = asyncio.run(main())
    assert marker(d)["nbflow-status"] == "cancelled"
    assert node_states(d) == {"first": "cancelled", "second": "cancelled"}


@pytest.mark.filterwarnings("ignore::nbflow.errors.OverheadWarning")  # no-op tasks, on purpose
def test_real_run_of_10000_events_renders_a_bounded_number_of_times():
    flow = nf.Flow("many")
    for i in range(3000):
        flow.task(name=f"t{i}")(_noop)
    events = []
    flow.subscribe(events.append)

    async def main() -> Dashboard:
        handle = flow.start()
        d = Dashboard(handle, interval=0.25, heartbeat=None, prefer="python")
        started = time.perf_counter()
        await handle
        elapsed = time.perf_counter() - started
        # At most one flush per interval, one at the start and one at the end: however
        # many events there were (the bound is a count, whatever the machine's speed).
        assert d.stats.flushes <= 2 + math.ceil(elapsed / 0.25)
        return d

    d = asyncio.run(main())
    assert len(events) >= 9000
    assert d.stats.dag_renders <= d.stats.flushes + 3
    assert d.grouped


async def _noop() -> None:
    return None


def test_interval_inf_draws_only_at_start_and_end():
    async def main() -> Dashboard:
        flow = nf.Flow("quiet")
        for i in range(50):
            flow.task(name=f"t{i}")(_noop)
        d = Dashboard(flow.start(), interval=math.inf, heartbeat=None, prefer="python")
        await until(lambda: d._ended)  # the end drawn, not only reached
        return d

    d = asyncio.run(main())
    assert d.stats.dag_renders == 2  # construction + RunFinished


def test_a_live_dashboard_opens_its_one_widget_model_when_first_drawn_and_a_short_run_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a run pays for its dashboard: each widget model is a comm in a kernel."""
    from ipywidgets.widgets.widget import _instances

    from nbflow.widgets import dashboard

    monkeypatch.setattr(dashboard, "FIRST_FLUSH", 60.0)  # no redraw before the end, however slow
    shared = dashboard._shared_layout()  # made once per kernel and shared by every dashboard

    async def main() -> tuple[Dashboard, set[str]]:
        flow, gate = gated_flow()
        handle = flow.start()
        before = set(_instances)
        d = Dashboard(handle, heartbeat=None, prefer="python")
        assert set(_instances) == before  # nothing opened before the first drawing
        assert d.stats.dag_renders == 0 and d._widgets() == []
        gate.set()
        await until(lambda: d._ended)  # the end drawn, not only reached
        return d, set(_instances) - before

    d, opened = asyncio.run(main())
    assert d.stats.dag_renders == 1  # the run ended before the first redraw: drawn once
    assert node_states(d) == {"first": "succeeded", "second": "succeeded"}
    # One model, opened once, finished: as a small run draws every tab at its end (a big one
    # when opened), its comm_open carries the Tasks and Timeline panes too.
    assert opened == {d.model_id} and d._widgets() == [d]
    assert 'data-row-task="second"' in d._table and bars(d._gantt)
    d.close()
    assert d.comm is None and shared.comm is not None  # closing a dashboard keeps the shared


def test_a_big_live_run_opens_one_widget_model_and_draws_hidden_tabs_later():
    async def main() -> tuple[Dashboard, set[str]]:
        from ipywidgets.widgets.widget import _instances

        before = set(_instances)
        d = Dashboard(layered_flow(12, 50).start(), heartbeat=None, prefer="python")
        await until(lambda: d._ended)  # the end drawn, not only reached
        assert d._table == "" and d._gantt == ""  # drawn when opened: the page says "Drawing…"
        return d, set(_instances) - before

    d, opened = asyncio.run(main())
    assert opened == {d.model_id}
    assert "nbflow-node" in d._dag and "nbflow-status" in d._header


# -- layouts -------------------------------------------------------------------------------


def test_prefer_python_uses_the_builtin_layout():
    layouts.clear()
    flow, gate = gated_flow()
    flow.task(name="extra")(lambda: 1)
    run = _finished(flow, gate)
    d = Dashboard(run, prefer="python")
    assert d.stats.renderer == "python"
    assert d.stats.layouts == 1
    assert d._layout_task is None
    assert set(node_states(d)) == {"first", "second", "extra"}
    again = Dashboard(run, prefer="python")
    assert again.stats.layouts == 0  # same shape: the cached layout is reused


@pytest.mark.skipif(find_dot() is None, reason="Graphviz dot is not installed")
@pytest.mark.parametrize("in_kernel", [True, False], ids=["kernel-subprocess", "thread"])
def test_dot_layout_runs_once_asynchronously_and_replaces_the_builtin_one(
    monkeypatch: pytest.MonkeyPatch, in_kernel: bool
) -> None:
    layouts.clear()
    monkeypatch.setattr("nbflow.widgets.dashboard._in_kernel", lambda: in_kernel)

    async def main() -> tuple[Dashboard, Dashboard]:
        flow, gate = gated_flow()
        handle = flow.start()
        d = Dashboard(handle, heartbeat=None, prefer=None if in_kernel else "dot")
        assert d.stats.renderer == "python"  # shown at once, while dot works
        assert d._layout_task is not None
        await until(lambda: d._layout_task is None)
        gate.set()
        await handle
        return d, Dashboard(handle.run, prefer="dot")

    d, second = asyncio.run(main())
    assert d.stats.renderer == "dot"
    assert second.stats.renderer == "dot" and second.stats.layouts == 0
    assert node_states(d) == {"first": "succeeded", "second": "succeeded"}


@pytest.mark.skipif(find_dot() is None, reason="Graphviz dot is not installed")
def test_dashboards_of_one_shape_share_one_dot_layout_which_outlives_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing a dashboard (or two, made at once) leaves the layout to finish and be cached."""
    layouts.clear()
    started: list[str] = []
    original = layouts.dot_template_blocking

    def counted(structure: Any) -> Any:
        started.append("dot")
        return original(structure)

    monkeypatch.setattr(layouts, "dot_template_blocking", counted)

    async def main() -> None:
        flow, gate = gated_flow()
        gate.set()
        run = await flow.arun()
        first, second = Dashboard(run, prefer="dot"), Dashboard(run, prefer="dot")
        assert first._layout_task is not None and first._layout_task is second._layout_task
        first.close()
        second.close()
        await until(lambda: layouts.cached("dot", first._structure) is not None)
        assert first.stats.renderer == "python"  # closed: the layout is not applied to it

    asyncio.run(main())
    assert started == ["dot"]


def test_unknown_renderer_and_source_are_rejected():
    run = _finished(*gated_flow())
    with pytest.raises(ValueError, match="unknown renderer 'svg'"):
        Dashboard(run, prefer="svg")
    with pytest.raises(ValueError, match="lane_by must be 'task' or 'worker'"):
        Dashboard(run, lane_by="tag")
    with pytest.raises(
        TypeError,
        match=r"needs a Run or a RunHandle \(from flow.run\(\) or flow.start\(\)\), not int",
    ):
        Dashboard(42)


def _finished(flow: nf.Flow, gate: asyncio.Event) -> nf.Run:
    """Run a gated flow with its gate already open."""
    gate.set()
    return flow.run()


# -- big flows -----------------------------------------------------------------------------


def layered_flow(layers: int, width: int, tags: bool = False) -> nf.Flow:
    flow = nf.Flow("big")
    for layer in range(layers):
        for i in range(width):
            name = f"l{layer}_{i}"
            opts: dict[str, Any] = {"name": name}
            if layer:
                opts["after"] = [f"l{layer - 1}_{i}", f"l{layer - 1}_{(i + 1) % width}"]
            if tags:
                opts["tags"] = [f"stage{layer // 5}"]
            flow.task(**opts)(lambda: None)
    return flow


def test_1000_tasks_are_drawn_grouped_by_level():
    flow = layered_flow(20, 50)
    d = Dashboard(flow.run(), prefer="python")
    assert d.grouped
    states = node_states(d)
    assert len(states) == 20
    assert set(states.values()) == {"succeeded"}
    assert d._dag.count(">50/50<") == 20
    assert "1,000 tasks drawn as 20 groups" in d._dag


def test_tagged_big_flow_is_grouped_by_tag():
    d = Dashboard(layered_flow(20, 50, tags=True).run(), prefer="python")
    assert set(node_states(d)) == {"stage0", "stage1", "stage2", "stage3"}
    assert d._dag.count(">250/250<") == 4


def test_big_run_draws_hidden_tabs_only_when_opened():
    flow = layered_flow(12, 50)
    assert EAGER_ROWS < 12 * 50
    handle_holder: list[Dashboard] = []

    async def main() -> None:
        d = Dashboard(flow.start(), heartbeat=None, prefer="python")
        handle_holder.append(d)
        await until(lambda: d._ended)  # the end drawn, not only reached

    asyncio.run(main())
    d = handle_holder[0]
    assert d.stats.gantt_renders == 0 and d.stats.table_renders == 0
    d.tab = "gantt"  # what a click on the Timeline tab sets, from the page
    assert d.stats.gantt_renders == 1 and d.stats.table_renders == 0
    assert len(bars(d._gantt)) == 600
    d.tab = "dag"
    d.tab = "gantt"  # drawn already, and nothing happened since: not drawn again
    assert d.stats.gantt_renders == 1
    d.lane_by = "worker"
    assert d.stats.gantt_renders == 2
    d.sync()
    assert d.stats.table_renders == 1


# -- timeline ------------------------------------------------------------------------------


def test_gantt_has_one_bar_per_attempt_with_retries_and_fan_out():
    flow = nf.Flow("attempts")
    calls = {"flaky": 0, "elements": {}}

    @flow.task(retry=nf.Retry(max_retries=3, delay=0))
    def flaky():
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("try again")
        return [1, 2, 3, 4]

    @flow.task(fan_out="flaky", retry=nf.Retry(max_retries=1, delay=0))
    def per(flaky):
        seen = calls["elements"]
        seen[flaky] = seen.get(flaky, 0) + 1
        if flaky == 2 and seen[flaky] == 1:
            raise OSError("element 2 fails once")
        return flaky

    run = flow.run()
    assert run.status == "succeeded"
    d = Dashboard(run, prefer="python")
    drawn = bars(d._gantt)
    assert len(drawn) == len(run.timeline()) == 3 + 5
    assert sorted(a for t, a, _ in drawn if t == "flaky") == ["1", "2", "3"]
    assert sorted((a, s) for t, a, s in drawn if t == "per[1]") == [
        ("1", "failed"),
        ("2", "succeeded"),
    ]
    assert d.lane_by == "task" and not d._grouped  # the toggle says "Lane per task"
    d.lane_by = "worker"
    assert len(bars(d._gantt)) == 8
    assert 'class="nbflow-lane"' in d._gantt and "slot-0" in d._gantt


# -- robustness ----------------------------------------------------------------------------


def test_a_failing_dashboard_never_breaks_the_run(monkeypatch, caplog):
    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("drawing exploded")

    async def main() -> tuple[nf.Run, Dashboard]:
        flow, gate = gated_flow()
        handle = flow.start()
        d = Dashboard(handle, interval=0.01, heartbeat=None, prefer="python")
        monkeypatch.setattr("nbflow.widgets.panels.header_html", broken)
        gate.set()
        return await handle, d

    run, d = asyncio.run(main())
    assert run.status == "succeeded"
    assert d.stats.errors >= 1
    assert "drawing exploded" in caplog.text


def test_dashboard_leaves_the_bus_after_the_run_and_others_still_get_run_finished():
    def record(event: Any) -> None:
        kinds.append(event.kind)

    async def main() -> list[Any]:
        flow, gate = gated_flow()
        handle = flow.start()
        d = Dashboard(handle, heartbeat=None, prefer="python")
        bus = handle.engine.bus
        bus.subscribe(record)  # subscribed after the dashboard
        assert d._subscriber in subscribers_of(bus)
        gate.set()
        await handle
        await asyncio.sleep(0)
        return subscribers_of(bus)

    kinds: list[str] = []
    subscribers = asyncio.run(main())
    assert kinds[-1] == "RunFinished"
    assert subscribers == [record]  # the dashboard left; the store records through the engine


def test_sync_resends_every_widget_state(monkeypatch):
    sent: list[str] = []
    original = ipywidgets.Widget.send_state

    def spy(self: ipywidgets.Widget, key: Any = None) -> None:
        if key is None:  # the whole state (hold_sync sends only the keys that changed)
            sent.append(type(self).__name__)
        original(self, key)

    async def main() -> Dashboard:
        flow, gate = gated_flow()
        handle = flow.start()
        d = Dashboard(handle, heartbeat=None, prefer="python")
        monkeypatch.setattr(ipywidgets.Widget, "send_state", spy)
        gate.set()
        await handle  # waiting on the handle syncs its dashboards
        return d

    asyncio.run(main())
    assert sent == ["Dashboard"]  # one model: the whole dashboard


def test_run_in_a_thread_is_drawn_when_waited_for():
    flow = nf.Flow("threaded")

    @flow.task
    async def slow():
        await asyncio.sleep(0.05)
        return 1

    handle = flow.start()  # no running loop here: the run gets a thread of its own
    d = Dashboard(handle, prefer="python")
    assert d._ticker is None  # nothing is drawn from the run's thread
    run = handle.wait()
    assert run.status == "succeeded"
    assert node_states(d) == {"slow": "succeeded"}
    assert marker(d)["nbflow-status"] == "succeeded"


def test_simulated_run_with_show_displays_the_final_state(monkeypatch):
    shown: list[Dashboard] = []
    monkeypatch.setattr(Dashboard, "display", lambda self: shown.append(self) or self)
    flow = nf.Flow("sim")

    @flow.task
    async def wait_an_hour():
        await asyncio.sleep(3600)

    run = flow.run(simulate=True, show=True)
    assert run.status == "succeeded"
    [d] = shown
    assert marker(d)["nbflow-status"] == "succeeded"
    assert node_states(d) == {"wait_an_hour": "succeeded"}


def test_display_outside_a_kernel_is_a_no_op_and_repr_is_stable():
    assert nf.Dashboard is Dashboard
    d = Dashboard(_finished(*gated_flow()), prefer="python")
    assert d.display() is d
    assert repr(d) == "<nbflow.Dashboard flow='gated'>"
    bundle = d._repr_mimebundle_()
    assert bundle is not None
    assert bundle["text/plain"] == repr(d)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert 'data-nbflow-status="succeeded"' in bundle["text/html"]


def test_close_stops_listening():
    async def main() -> tuple[list[Any], Dashboard]:
        flow, gate = gated_flow()
        handle = flow.start()
        d = Dashboard(handle, heartbeat=0.01, prefer="python")
        d.close()
        await asyncio.sleep(0)
        gate.set()
        await handle
        return subscribers_of(handle.engine.bus), d

    subscribers, d = asyncio.run(main())
    assert d._subscriber not in subscribers
    assert d.stats.flushes == 0


def test_two_dashboards_of_one_flow_never_share_svg_ids():
    """``url(#id)`` finds the first id on the page, maybe in a hidden tab: ids must differ."""
    flow = nf.Flow("twice", on_error="continue")

    @flow.task
    def boom():
        raise ValueError("x")

    @flow.task
    def after(boom):
        return boom

    first, second = (Dashboard(flow.run(), prefer="python") for _ in range(2))
    ids = []
    for d in (first, second):
        html = d._dag + d._gantt
        defined = set(re.findall(r'id="([^"]+)"', html))
        used = set(re.findall(r"url\(#([^)]+)\)", html))
        assert used and used <= defined  # every reference resolves inside its own drawing
        ids.append(defined)
    assert not ids[0] & ids[1]


def test_cancelled_run_ends_cancelled_on_the_dashboard():
    async def main() -> Dashboard:
        flow, _gate = gated_flow()  # the gate never opens: only cancel() ends the run
        handle = flow.start()
        d = Dashboard(handle, heartbeat=None, prefer="python")
        await until(lambda: handle.run.states.get("first") == "running")
        handle.cancel()
        await handle
        return d

    d = asyncio.run(main())
    assert marker(d)["nbflow-status"] == "cancelled"
    assert node_states(d) == {"first": "cancelled", "second": "cancelled"}
    assert re.search(r'class="nbflow-pill".*?■</span> cancelled</span>', d._header, re.S)
