"""One style table for task states, shared by the DAG, the Gantt chart and the legend.

Colours come from the Okabe-Ito palette, which stays distinguishable under the common
colour-vision deficiencies. Colour is never the only cue: every state also has a glyph and
a stroke style (solid, dashed, dotted, thick), and failed tasks get a hatched fill, so
"succeeded" and "failed" differ in a greyscale print too.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

#: What a node, a table row or a bar can show: the task states of
#: :class:`~nbflow.lifecycle.TaskState`, "partial", a fan-out task that succeeded with
#: ``allow_partial=True`` while some of its elements failed, and "waiting", a queued task
#: that waits for signals (``wait_for=``); those two are drawn, never a task's state.
STATES: tuple[str, ...] = (
    "pending",
    "queued",
    "waiting",
    "running",
    "retrying",
    "succeeded",
    "partial",
    "cached",
    "failed",
    "skipped",
    "upstream_failed",
    "cancelled",
)

#: States after which a task no longer changes; "done" in group counters.
TERMINAL: frozenset[str] = frozenset(
    {"succeeded", "partial", "cached", "failed", "skipped", "upstream_failed", "cancelled"}
)

#: Most urgent first: the state a collapsed group shows is its members' earliest here.
#: Failures win (the user must see them), then activity, then waiting, then done.
URGENCY: tuple[str, ...] = (
    "failed",
    "retrying",
    "running",
    "queued",
    "waiting",
    "upstream_failed",
    "cancelled",
    "pending",
    "partial",
    "skipped",
    "cached",
    "succeeded",
)

FONT_FAMILY = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'

# Okabe-Ito base colours.
_ORANGE, _SKY, _GREEN = "#E69F00", "#56B4E9", "#009E73"
_BLUE, _VERMILLION, _PURPLE, _GREY = "#0072B2", "#D55E00", "#CC79A7", "#8A8F98"


@dataclass(frozen=True, slots=True)
class StateStyle:
    """How one state is drawn.

    ``fill`` is the pale node background, ``stroke`` the strong Okabe-Ito colour (node border,
    Gantt bar), ``text`` the label colour on ``fill``; ``dash`` is an SVG ``stroke-dasharray``
    ("" for solid); ``hatch`` asks for a diagonal-stripe fill as a non-colour cue.
    """

    label: str
    glyph: str
    fill: str
    stroke: str
    text: str
    stroke_width: float = 1.5
    dash: str = ""
    hatch: bool = False

    @property
    def dashed(self) -> bool:
        """Whether the border is dashed or dotted rather than solid."""
        return bool(self.dash)

    def dot_attrs(self) -> dict[str, str]:
        """The Graphviz node attributes that draw this state (fill, border, text colour)."""
        return {
            "style": "rounded,filled" + (",dashed" if self.dash else ""),
            "fillcolor": self.fill,
            "color": self.stroke,
            "fontcolor": self.text,
            "penwidth": str(self.stroke_width),
        }


STATE_STYLE: dict[str, StateStyle] = {
    "pending": StateStyle("pending", "○", "#F3F4F6", "#9CA3AF", "#374151", 1.25, "4 3"),
    "queued": StateStyle("queued", "◔", "#E4F2FB", _SKY, "#0B4F6C", 1.5, "4 3"),
    # Queued, but for a signal rather than a slot: the same blue, dotted, a clock face.
    "waiting": StateStyle("waiting", "◷", "#EEF6FC", _SKY, "#0B4F6C", 2.0, "1.5 2.5"),
    "running": StateStyle("running", "▶", "#D3E6F5", _BLUE, "#06385A", 3.0),
    "retrying": StateStyle("retrying", "↻", "#FCEBC8", _ORANGE, "#6B4700", 3.0, "6 3"),
    "succeeded": StateStyle("succeeded", "✓", "#D5EFE6", _GREEN, "#04533D", 1.5),
    # Succeeded, but not every element did: amber, a solid thick border, a half-full glyph.
    "partial": StateStyle("partial", "◐", "#FDF1D3", _ORANGE, "#6B4700", 2.5),
    "cached": StateStyle("cached", "≡", "#E9F6F1", _GREEN, "#04533D", 1.5, "1.5 2.5"),
    "failed": StateStyle("failed", "✕", "#F9DCCB", _VERMILLION, "#7A2E00", 2.5, "", True),
    "skipped": StateStyle("skipped", "»", "#F5F5F4", "#A8A29E", "#57534E", 1.25, "1.5 2.5"),
    "upstream_failed": StateStyle(
        "upstream failed", "⊘", "#F8E4EF", _PURPLE, "#6B2150", 1.5, "4 3"
    ),
    "cancelled": StateStyle("cancelled", "■", "#ECEDEF", _GREY, "#3F434A", 1.5, "6 3"),
}

#: Used for a status string that is not one of STATES (e.g. from an older store).
UNKNOWN_STYLE = StateStyle("unknown", "?", "#F3F4F6", "#9CA3AF", "#374151", 1.25, "2 2")

EDGE_COLOUR = "#9AA5B5"


def style_for(state: str) -> StateStyle:
    """Return the style of ``state``; unknown states get :data:`UNKNOWN_STYLE`, never KeyError."""
    return STATE_STYLE.get(state, UNKNOWN_STYLE)


def hatch_pattern(pattern_id: str, state: str = "failed") -> str:
    """Return an SVG ``<pattern>`` of diagonal stripes over the state's fill, id ``pattern_id``.

    Callers put it in their ``<defs>`` and use ``fill="url(#pattern_id)"``.
    """
    s = style_for(state)
    return (
        f'<pattern id="{pattern_id}" width="7" height="7" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="7" height="7" fill="{s.fill}"/>'
        f'<rect width="2.2" height="7" fill="{s.stroke}" fill-opacity="0.22"/></pattern>'
    )


def legend_svg(states: tuple[str, ...] = STATES) -> str:
    """Return a small standalone horizontal legend (one swatch per state) as an SVG string."""
    x, items = 8.0, []
    for state in states:
        s = style_for(state)
        # Rough text width (7 px per character at 11.5 px): good enough for spacing.
        w = 40 + 6.6 * len(s.label)
        fill = "url(#nbflow-legend-hatch)" if s.hatch else s.fill
        items.append(
            f'<g class="nbflow-legend-item" data-state="{state}" transform="translate({x:.0f},6)">'
            f'<rect width="18" height="18" rx="5" fill="{fill}" stroke="{s.stroke}" '
            f'stroke-width="{min(s.stroke_width, 2.5)}" stroke-dasharray="{s.dash or "none"}"/>'
            f'<text x="9" y="13" text-anchor="middle" font-size="11" fill="{s.text}">'
            f"{s.glyph}</text>"
            f'<text x="24" y="13.5" font-size="11.5" fill="currentColor">'
            f"{html.escape(s.label)}</text></g>"
        )
        x += w
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="nbflow-legend" width="{x:.0f}" '
        f'height="30" viewBox="0 0 {x:.0f} 30" font-family=\'{FONT_FAMILY}\'>'
        f"<defs>{hatch_pattern('nbflow-legend-hatch')}</defs>{''.join(items)}</svg>"
    )


def legend_html(states: tuple[str, ...] = STATES) -> str:
    """Return the legend as an HTML ``<div>`` of inline swatches (wraps on narrow outputs)."""
    items = []
    for state in states:
        s = style_for(state)
        border = "dashed" if s.dash else "solid"
        if s.dash.startswith("1.5"):
            border = "dotted"
        bg = (
            f"repeating-linear-gradient(45deg,{s.fill} 0 3px,{s.stroke}38 3px 5px)"
            if s.hatch
            else s.fill
        )
        items.append(
            f'<span class="nbflow-legend-item" data-state="{state}" style="display:inline-flex;'
            f'align-items:center;gap:5px;margin:2px 12px 2px 0;white-space:nowrap">'
            f'<span style="display:inline-block;width:16px;height:16px;line-height:16px;'
            f"text-align:center;font-size:10px;border-radius:4px;box-sizing:border-box;"
            f"background:{bg};border:{min(s.stroke_width, 2.5)}px {border} {s.stroke};"
            f'color:{s.text}">{s.glyph}</span>{html.escape(s.label)}</span>'
        )
    return (
        f'<div class="nbflow-legend" style="font-family:{html.escape(FONT_FAMILY)};'
        f'font-size:12px;display:flex;flex-wrap:wrap">{"".join(items)}</div>'
    )
