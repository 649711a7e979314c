"""Tests of nbflow.render.gantt."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

import pandas as pd
import pytest

from nbflow.render import gantt_svg
from nbflow.render.gantt import MIN_BAR_W

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 1, 1, 12, 0, 0)


def row(task, start, end, attempt=1, status="succeeded", worker=None, error=None):
    return {
        "task": task,
        "attempt": attempt,
        "status": status,
        "start": T0 + timedelta(seconds=start),
        "end": None if end is None else T0 + timedelta(seconds=end),
        "duration_s": None if end is None else end - start,
        "worker": worker,
        "error": error,
    }


ROWS = [
    row("load", 0, 1, worker="w1"),
    row("fetch", 1, 3, status="failed", worker="w1", error="ConnectionError <x> & y"),
    row("fetch", 4, 6, attempt=2, worker="w2"),
    row("t", 6, 7, worker="w1"),
    row("t[0]", 7, 9, worker="w1"),
    row("t[1]", 7, 8, worker="w2"),
    row("report", 9, None, status="running", worker=None),
]


def bars(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall(f".//{NS}rect[@class='nbflow-bar']")


def lanes(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return [
        t.find(f"{NS}title").text for t in root.iter(f"{NS}text") if t.get("class") == "nbflow-lane"
    ]


def test_gantt_one_bar_per_row_with_data():
    found = bars(gantt_svg(ROWS))
    assert len(found) == len(ROWS)
    assert [(b.get("data-task"), b.get("data-attempt"), b.get("data-status")) for b in found][
        :3
    ] == [
        ("load", "1", "succeeded"),
        ("fetch", "1", "failed"),
        ("fetch", "2", "succeeded"),
    ]
    tip = found[1].find(f"{NS}title").text
    assert "fetch" in tip and "attempt 1" in tip and "ConnectionError <x> & y" in tip


def test_gantt_lanes_by_task_put_elements_under_their_task():
    svg = gantt_svg(ROWS)
    assert lanes(svg) == ["load", "fetch", "t", "report"]
    ys = {b.get("data-task"): float(b.get("y")) for b in bars(svg)}
    t_lane = [ys["t"], ys["t[0]"], ys["t[1]"]]
    assert (
        max(t_lane) - min(t_lane) < 40 and min(t_lane) > ys["fetch"] and max(t_lane) < ys["report"]
    )


def test_gantt_lanes_by_worker():
    assert lanes(gantt_svg(ROWS, lane_by="worker")) == ["w1", "w2", "local"]


def test_gantt_running_row_drawn_to_now():
    svg = gantt_svg(ROWS, now=T0 + timedelta(seconds=20))
    report = next(b for b in bars(svg) if b.get("data-task") == "report")
    load = next(b for b in bars(svg) if b.get("data-task") == "load")
    assert report.get("data-status") == "running"
    assert float(report.get("width")) == pytest.approx(11 * float(load.get("width")), rel=0.01)
    assert ET.fromstring(svg).find(f".//{NS}line[@class='nbflow-now']") is not None


def test_gantt_running_row_without_now_ends_at_latest_time():
    svg = gantt_svg([row("a", 0, 5), row("b", 2, None, status=None)])
    b = next(b for b in bars(svg) if b.get("data-task") == "b")
    assert b.get("data-status") == "running" and float(b.get("width")) > 2


def test_gantt_accepts_dataframe_with_nat_and_float_times():
    df = pd.DataFrame(ROWS)
    assert len(bars(gantt_svg(df))) == len(ROWS)
    floats = pd.DataFrame(
        {
            "task": ["a", "b"],
            "start": [0.0, 1.5],
            "end": [1.0, float("nan")],
            "status": ["succeeded", "running"],
        }
    )
    assert [b.get("data-status") for b in bars(gantt_svg(floats))] == ["succeeded", "running"]


def test_gantt_escapes_names_and_skips_unstarted_rows():
    svg = gantt_svg([row('x<&"y', 0, 1), {"task": "queued", "start": None}])
    assert [b.get("data-task") for b in bars(svg)] == ['x<&"y']


def test_gantt_empty_and_bad_lane():
    assert bars(gantt_svg([])) == []
    with pytest.raises(ValueError, match="lane_by must be 'task' or 'worker', not 'host'"):
        gantt_svg(ROWS, lane_by="host")


def test_gantt_5000_rows():
    rows = [
        row(f"task{i % 400}[{i}]", i * 0.01, i * 0.01 + 0.5, worker=f"w{i % 8}")
        for i in range(5000)
    ]
    assert len(bars(gantt_svg(rows))) == 5000
    assert len(lanes(gantt_svg(rows, lane_by="worker"))) == 8


def test_instant_attempts_get_a_visible_bar_that_does_not_cover_the_next():
    # A cached result (0 s) or a 1 ms task in a 100 s run was a 1-2 px sliver (issue #22).
    rows = [
        row("slow", 0, 100),
        row("cached", 50, 50, status="cached"),
        row("quick[0]", 10, 10.001),
        row("quick[1]", 10.6, 10.601),  # ~5 px later: clear of a 1 px bar, not of a 6 px one
    ]
    bars = {
        b.get("data-task"): b
        for b in ET.fromstring(gantt_svg(rows, width=900)).iter(f"{NS}rect")
        if b.get("class") == "nbflow-bar"
    }
    assert all(float(b.get("width")) >= MIN_BAR_W for b in bars.values())
    assert float(bars["cached"].get("width")) == MIN_BAR_W
    # Two instant elements of one lane, closer than a widened bar: stacked on two tracks,
    # not drawn over each other.
    first, second = bars["quick[0]"], bars["quick[1]"]
    assert float(first.get("x")) + MIN_BAR_W > float(second.get("x"))
    assert first.get("y") != second.get("y")
