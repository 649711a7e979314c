"""A Gantt chart of task attempts as SVG: one lane per task (or worker), one bar per attempt.

Bars that overlap in time inside a lane (fan-out elements, parallel work on one worker) are
packed onto sub-tracks, so none hides another. Everything is O(n log n) in the rows.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from nbflow.render.palette import FONT_FAMILY, STATES, style_for
from nbflow.render.svg import clip, esc, fmt_duration

_ELEMENT = re.compile(r"^(.+)\[[^\[\]]*\]$")  # "task[3]" -> lane "task"
_MAX_TRACKS = 8  # beyond this, bars in a lane overlap rather than grow the lane without bound
_BAR_H, _TRACK_GAP, _LANE_PAD, _TOP, _BOTTOM = 14.0, 3.0, 5.0, 30.0, 14.0
#: The narrowest bar, in px: an instant attempt (a cached result, a 1 ms task in a long run)
#: stays visible and clickable for its tooltip instead of a 1-2 px sliver.
MIN_BAR_W = 6.0
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200)


class _Bar(NamedTuple):
    start: float
    end: float | None  # None: still running
    lane: str
    task: str
    status: str
    row: Mapping[str, Any]


def _seconds(value: Any) -> float | None:
    """Seconds from a datetime, pandas Timestamp, ISO string or number; None for None/NaN/NaT."""
    if value is None or value != value:  # NaN and NaT are the values unequal to themselves
        return None
    if isinstance(value, datetime):  # includes pandas.Timestamp
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value)


def _tick_step(span: float) -> float:
    raw = span / 8
    if raw < 1:
        base = 10 ** math.floor(math.log10(raw))
        return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)
    return next((s for s in _STEPS if s >= raw), 86400 * math.ceil(raw / 86400))


def _tick_label(t: float, step: float) -> str:
    if step < 1:
        return f"{t:.{max(0, -math.floor(math.log10(step)))}f}s"
    if step < 60:
        return f"{t:.0f}s"
    if step < 3600:
        m, s = divmod(round(t), 60)
        return f"{m}m" + (f"{s:02d}s" if s else "")
    h, m = divmod(round(t) // 60, 60)
    return f"{h}h" + (f"{m:02d}" if m else "")


def gantt_svg(
    rows: Iterable[Mapping[str, Any]] | Any,
    lane_by: str = "task",
    width: int = 900,
    now: float | datetime | None = None,
) -> str:
    """Draw task attempts as a Gantt chart and return the SVG string.

    ``rows``: dicts (or a pandas DataFrame) with keys ``task, attempt, status, start, end,
    duration_s, worker, error`` (all but ``task`` and ``start`` optional). Times are datetimes,
    Timestamps, ISO strings or seconds. A row with no ``end`` (None/NaT) is still running: it
    is drawn up to ``now`` (else the latest time seen) and its status defaults to "running".
    Rows without ``start`` have not started and are not drawn. ``lane_by="task"`` puts
    fan-out elements ``t[3]`` in lane ``t``; ``lane_by="worker"`` lanes by worker (None is
    "local"). Each row is one ``<rect class="nbflow-bar">`` with ``data-task``,
    ``data-attempt`` and ``data-status``; the time axis counts seconds from the first start.

    Raises:
        ValueError: unknown ``lane_by``, or a time that cannot be read.
    """
    if lane_by not in ("task", "worker"):
        raise ValueError(f"lane_by must be 'task' or 'worker', not {lane_by!r}")
    bars = _read(rows, lane_by)
    t0 = min((b.start for b in bars), default=0.0)
    latest = max((max(b.start, b.end or b.start) for b in bars), default=t0)
    now_s = _seconds(now)
    open_end = max(now_s, latest) if now_s is not None else latest
    span = max(open_end - t0, 1e-3)

    # Lanes in order of first start (ties: first seen), each packed onto sub-tracks.
    lanes: dict[str, list[int]] = {}
    for i in sorted(range(len(bars)), key=lambda i: bars[i].start):
        lanes.setdefault(bars[i].lane, []).append(i)
    label_w = min(max(6.8 * max((len(k) for k in lanes), default=4) + 20, 64.0), 220.0)
    x0 = label_w + 12
    plot_w = max(width - x0 - 18, 50.0)
    scale = plot_w / span
    gap = 4 / scale

    parts: list[str] = []
    y = _TOP
    for n, (lane, members) in enumerate(lanes.items()):
        track_of = _pack([bars[i] for i in members], open_end, gap, MIN_BAR_W / scale)
        tracks = max(track_of) + 1
        lane_h = 2 * _LANE_PAD + tracks * _BAR_H + (tracks - 1) * _TRACK_GAP
        if n % 2 == 0:
            parts.append(
                f'<rect class="nbflow-lane-bg" x="0" y="{y:.1f}" width="{width}" '
                f'height="{lane_h:.1f}" fill="currentColor" fill-opacity="0.04"/>'
            )
        parts.append(
            f'<text class="nbflow-lane" x="{label_w:.1f}" y="{y + lane_h / 2 + 4:.1f}" '
            f'text-anchor="end" font-size="12" fill="currentColor"><title>{esc(lane)}</title>'
            f"{esc(clip(lane, int((label_w - 8) / 6.8)))}</text>"
        )
        for i, track in zip(members, track_of, strict=True):
            by = y + _LANE_PAD + track * (_BAR_H + _TRACK_GAP)
            parts.append(_bar(bars[i], by, x0, t0, scale, open_end, lane_by))
        y += lane_h

    height = y + _BOTTOM
    axis = _axis(span, scale, x0, height, now_s, t0)
    statuses = {b.status for b in bars}
    legend, height = _legend(statuses, x0, height), height + 22
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="nbflow-gantt" width="{width}" '
        f'height="{height:.0f}" viewBox="0 0 {width} {height:.1f}" '
        f'font-family="{esc(FONT_FAMILY)}" role="img" aria-label="Gantt chart of {len(bars)} '
        f'attempts"><defs><pattern id="nbflow-gantt-hatch" width="6" height="6" '
        'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{style_for("failed").stroke}"/>'
        '<rect width="2" height="6" fill="#FFFFFF" fill-opacity="0.35"/></pattern></defs>'
        f'{axis}<g class="nbflow-bars">{"".join(parts)}</g>{legend}</svg>'
    )


def _bar(
    bar: _Bar, y: float, x0: float, t0: float, scale: float, open_end: float, lane_by: str
) -> str:
    start, end, lane, task, status, row = bar
    running = end is None
    s = style_for(status)
    stop = open_end if end is None else end
    x = x0 + (start - t0) * scale
    w = max((max(stop, start) - start) * scale, MIN_BAR_W)
    dur = row.get("duration_s")
    dur = stop - start if dur is None or dur != dur else float(dur)
    attempt = row.get("attempt")
    attempt = "" if attempt is None or attempt != attempt else attempt
    worker = row.get("worker")
    tip = f"{task} · attempt {attempt} · {s.label} · {fmt_duration(dur)}"
    if worker is not None and worker == worker:
        tip += f"\nworker: {worker}"
    error = row.get("error")
    if error is not None and error == error and str(error):
        tip += f"\n{error}"
    fill, ink, extra = _bar_look(status, running)
    # A bar says what it is when there is room: the element index in a task lane, else the task.
    inner = (
        task[len(lane) :]
        if lane_by == "task" and task != lane
        else (task if lane_by != "task" else "")
    )
    if attempt not in ("", 1, "1"):
        inner = f"{inner} #{attempt}".strip()
    text = ""
    if inner and w > 24:
        text = (
            f'<text x="{x + 5:.1f}" y="{y + _BAR_H - 3.5:.1f}" font-size="10" fill="{ink}" '
            f'pointer-events="none">{esc(clip(inner, int((w - 8) / 5.8)))}</text>'
        )
    return (
        f'<rect class="nbflow-bar" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{_BAR_H}" '
        f'rx="3" fill="{fill}"{extra} data-task="{esc(task)}" data-attempt="{esc(attempt)}" '
        f'data-status="{esc(status)}"><title>{esc(tip)}</title></rect>{text}'
    )


def _read(rows: Iterable[Mapping[str, Any]] | Any, lane_by: str) -> list[_Bar]:
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame; pandas not imported
        rows = rows.to_dict("records")
    bars = []
    for row in rows:
        start = _seconds(row.get("start"))
        if start is None:
            continue
        task, end = str(row.get("task", "?")), _seconds(row.get("end"))
        if lane_by == "task":
            m = _ELEMENT.match(task)
            lane = m[1] if m else task
        else:
            worker = row.get("worker")
            lane = "local" if worker is None or worker != worker else str(worker)
        status = str(row.get("status") or ("running" if end is None else "succeeded"))
        bars.append(_Bar(start, end, lane, task, status, row))
    return bars


def _pack(bars: list[_Bar], open_end: float, gap: float, least: float = 0.0) -> list[int]:
    """Sub-track of each bar (bars sorted by start): greedy interval colouring with a heap.

    ``least``: the shortest drawn duration (a bar is at least :data:`MIN_BAR_W` wide), so
    a widened instant bar does not cover the next one on its track.
    """
    heap: list[tuple[float, int]] = []  # (end, track): the track that frees up first on top
    tracks = []
    for bar in bars:
        end = open_end if bar.end is None else max(bar.end, bar.start)
        end = max(end, bar.start + least)
        # A track is free again a few pixels after its bar ends, so bars never touch.
        if heap and (heap[0][0] + gap <= bar.start or len(heap) >= _MAX_TRACKS):
            _, track = heapq.heappop(heap)
        else:
            track = len(heap)
        heapq.heappush(heap, (end, track))
        tracks.append(track)
    return tracks


def _bar_look(status: str, running: bool) -> tuple[str, str, str]:
    """(fill, text colour, extra attributes) of a bar: strong solid fill for running, succeeded
    and failed (hatched); pale fill with the state's dashed border for the in-between states."""
    s = style_for(status)
    if s.hatch:
        return "url(#nbflow-gantt-hatch)", "#FFFFFF", ""
    if s.dash:
        return (
            s.fill,
            s.text,
            f' stroke="{s.stroke}" stroke-width="1.2" stroke-dasharray="{s.dash}"',
        )
    # An open-ended attempt gets a dashed outline: "still going" without relying on colour.
    live = f' stroke="{s.text}" stroke-width="1" stroke-dasharray="3 2"' if running else ""
    return s.stroke, "#FFFFFF", live


def _legend(statuses: set[str], x: float, y: float) -> str:
    out = ['<g class="nbflow-gantt-legend" font-size="11" fill="currentColor">']
    for status in [*STATES, *sorted(statuses - set(STATES))]:
        if status in statuses:
            s = style_for(status)
            fill, _, extra = _bar_look(status, False)
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="10" height="10" rx="2" '
                f'fill="{fill}"{extra}/>'
                f'<text x="{x + 14:.1f}" y="{y + 9:.1f}" fill-opacity="0.8">{esc(s.label)}</text>'
            )
            x += 26 + 6.3 * len(s.label)
    return "".join(out) + "</g>"


def _axis(
    span: float, scale: float, x0: float, height: float, now_s: float | None, t0: float
) -> str:
    step = _tick_step(span)
    out = ['<g class="nbflow-axis" font-size="10.5" fill="currentColor">']
    k = 0
    while k * step <= span + 1e-9:
        t = k * step
        x = x0 + t * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 6:.1f}" x2="{x:.1f}" y2="{height - _BOTTOM:.1f}" '
            f'stroke="currentColor" stroke-opacity="0.13"/>'
            f'<text x="{x:.1f}" y="{_TOP - 10:.1f}" text-anchor="middle" fill-opacity="0.7">'
            f"{_tick_label(t, step)}</text>"
        )
        k += 1
    if now_s is not None:
        x = x0 + (now_s - t0) * scale
        out.append(
            f'<line class="nbflow-now" x1="{x:.1f}" y1="{_TOP - 4:.1f}" x2="{x:.1f}" '
            f'y2="{height - _BOTTOM:.1f}" stroke="{style_for("running").stroke}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    out.append("</g>")
    return "".join(out)
