"""``Dashboard``: the live ipywidgets view of one run (DAG, task table, timeline).

The dashboard reads only the run's :class:`~nbflow.state.RunState`, and does no work per
event: a :class:`~nbflow.widgets.throttle.Ticker` wakes up on the kernel's event loop at most
``1 / interval`` times a second and redraws when the state's last event number moved. The end
of the run is drawn at once: the dashboard listens on the run's event bus only until the
run's first event, then waits on the engine's end-of-run future instead (the engine skips
publishing events while nobody listens, so a 2,000-task run saves ~6,000 calls). A flush
draws the header and the visible tab (traits set inside ``hold_sync()``: one message); hidden
tabs are drawn when they are opened, at the end of a small run, and by :meth:`Dashboard.sync`.

The dashboard is one widget model: an `anywidget <https://anywidget.dev>`_ whose front end
(``dashboard.js``, ``dashboard.css`` beside this module) places the HTML that the kernel drew
and switches tabs and Timeline lanes in the page. In a kernel every model is a comm with
messages of its own, so a short run costs one ``comm_open`` and one output, not one per part.

Widgets are only touched from the thread that created the dashboard (the kernel's). A run on
another thread (``simulate=True`` or a run on a private loop) is not drawn live: the final
state is drawn when the run finishes or is waited for (:meth:`sync`).

The DAG is laid out once per graph shape and restyled per update. With Graphviz ``dot``
available, the layout runs as an async subprocess while the built-in layout is shown; both
are cached per shape, so re-running a cell lays nothing out again.

Longer than 500 lines: :class:`Dashboard` is one widget whose parts share its state. The
event listener, the engine's end-of-run future, the ticker, the cell-end hook and the
layout subprocess's future all read and set the same run, engine, traits and last drawn
event number; the order they hand over in (listen, then wait, then draw the end once) is
the point of the class and is only checkable when read in one place. The kernel helpers at
the end are a few lines each, used only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets as widgets
import traitlets

from nbflow.events import RunFinished
from nbflow.render import DagTemplate, choose_renderer
from nbflow.widgets import layouts, panels
from nbflow.widgets.throttle import Ticker
from nbflow.widgets.views import MAX_NODES, Structure

if TYPE_CHECKING:
    from collections.abc import Callable

    from nbflow.engine import Engine
    from nbflow.events import Event, EventBus
    from nbflow.run import Run

log = logging.getLogger("nbflow.widgets")

#: Runs with at most this many attempt rows draw every tab at their end; bigger runs draw
#: hidden tabs only when opened or on :meth:`Dashboard.sync` (a 2,000-bar Gantt is ~10 ms
#: of SVG and ~0.5 MB sent to the browser: not worth paying for a tab nobody looks at).
EAGER_ROWS = 500

PANELS = ("dag", "table", "gantt")
LANES = ("task", "worker")
_ASSETS = Path(__file__).parent

#: A live dashboard starts with a skeleton graph; its first redraw comes this many seconds
#: after it is made (then at most every ``interval``). Runs shorter than this are drawn once.
FIRST_FLUSH = 0.1

#: The ``Layout`` model that every dashboard of the kernel shares (see ``_shared_layout``).
_LAYOUT: list[widgets.Layout] = []


@dataclass
class DashboardStats:
    """Counters of the work a dashboard did (for tests and benchmarks; no timings)."""

    flushes: int = 0
    header_renders: int = 0
    dag_renders: int = 0
    table_renders: int = 0
    gantt_renders: int = 0
    layouts: int = 0
    renderer: str = "python"
    errors: int = 0


def _resolve(source: Any, engine: Engine | None) -> tuple[Run, Engine | None, Any]:
    from nbflow.handle import RunHandle
    from nbflow.run import Run

    if isinstance(source, RunHandle):
        return source.run, engine or source.engine, source
    if isinstance(source, Run):
        return source, engine, None
    raise TypeError(
        f"Dashboard needs a Run or a RunHandle (from flow.run() or flow.start()), "
        f"not {type(source).__name__}"
    )


class Dashboard(anywidget.AnyWidget):
    """A live view of one run: status header, then tabs Graph / Tasks / Timeline.

    ``Dashboard(run_or_handle)`` subscribes to the run's events (through ``engine.bus``,
    the handle's engine, or ``bus``) until the run finishes, and redraws from the run's state
    at most ``1 / interval`` times a second. A finished run is drawn once. Display it with
    :meth:`display` (or as a cell's value); ``flow.run(show=True)`` and
    ``flow.start(show=True)`` do both. The header's root element carries
    ``data-nbflow-status`` (see :mod:`nbflow.widgets.panels`).

    Args:
        source: a :class:`~nbflow.run.Run` or :class:`~nbflow.handle.RunHandle`.
        engine: the run's engine, to subscribe to its events (a handle brings its own).
        bus: an :class:`~nbflow.events.EventBus` to listen on instead of ``engine.bus``.
        prefer: ``"python"`` for the built-in layout, ``"dot"`` or None for Graphviz when
            found (the built-in one otherwise).
        interval: seconds between redraws at most (``math.inf``: only at the end).
        max_nodes: flows with more tasks are drawn grouped (by tag, else by level).
        lane_by: initial Timeline lanes, ``"task"`` or ``"worker"`` (the trait of that
            name follows the toggle above the Timeline; setting it redraws the Timeline).
        max_rows: the task table of a bigger run lists this many tasks, most urgent first.
        heartbeat: seconds between redraws while nothing happens, so elapsed times grow
            (None: off).

    Attributes:
        tab: the open tab, ``"dag"``, ``"table"`` or ``"gantt"`` (a trait, synced with the
            page both ways: setting it opens that tab).
        lane_by: the Timeline's lanes, ``"task"`` or ``"worker"`` (a synced trait too).
        expanded: the tasks whose log is open in the Tasks view (a synced trait: the page
            sets it as the reader opens and closes logs; setting it opens them). A log is
            drawn only while it is open, so a run of many chatty tasks sends little.

    Raises:
        TypeError: ``source`` is neither a Run nor a RunHandle.
        ValueError: a bad ``prefer``, ``interval``, ``lane_by`` or ``max_nodes``.
    """

    # The front end. Class traits: AnyWidget.__init__ would add them to each instance, which
    # makes a new class per dashboard (traitlets' add_traits), ~0.25 ms and a reference cycle.
    _esm = traitlets.Unicode((_ASSETS / "dashboard.js").read_text("utf-8")).tag(sync=True)
    _css = traitlets.Unicode((_ASSETS / "dashboard.css").read_text("utf-8")).tag(sync=True)
    _anywidget_id = traitlets.Unicode("nbflow.widgets.Dashboard").tag(sync=True)
    # What the kernel drew (HTML), one trait per part; "" until drawn.
    _header = traitlets.Unicode("").tag(sync=True)
    _dag = traitlets.Unicode("").tag(sync=True)
    _table = traitlets.Unicode("").tag(sync=True)
    _gantt = traitlets.Unicode("").tag(sync=True)
    _grouped = traitlets.Bool(False).tag(sync=True)  # names the Timeline's lane toggle
    tab = traitlets.Enum(PANELS, default_value="dag").tag(sync=True)
    lane_by = traitlets.Enum(LANES, default_value="task").tag(sync=True)
    expanded = traitlets.List(traitlets.Unicode()).tag(sync=True)

    # Class-level defaults: ipywidgets calls close() from __del__, even on an instance
    # whose __init__ raised half way.
    _ticker: Ticker | None = None
    _unsubscribe: Callable[[], None] | None = None
    _engine: Engine | None = None
    _layout_task: asyncio.Future[Any] | None = None
    _closed = False
    _ended = False
    _deferred = False
    _cell_end: Any = None  # IPython's events while waiting to show at the cell's end

    def __init__(
        self,
        source: Any,
        *,
        engine: Engine | None = None,
        bus: EventBus | None = None,
        prefer: str | None = None,
        interval: float = 0.25,
        max_nodes: int = MAX_NODES,
        lane_by: str = "task",
        max_rows: int = panels.MAX_ROWS,
        heartbeat: float | None = 1.0,
    ) -> None:
        if lane_by not in LANES:
            raise ValueError(f"lane_by must be 'task' or 'worker', not {lane_by!r}")
        if not interval > 0:
            raise ValueError(f"interval must be positive seconds, not {interval!r}")
        # Outside a kernel nothing shows the DAG live: dot would only cost a subprocess.
        renderer = choose_renderer(prefer) if prefer or _in_kernel() else "python"
        run, engine, handle = _resolve(source, engine)
        plan = getattr(run, "_plan", None) or (engine.plan if engine is not None else None)
        structure = (
            layouts.structure_for(plan, max_nodes)
            if plan is not None
            else Structure.from_state(run.state, max_nodes)
        )
        self.run = run
        self.stats = DashboardStats()
        self._structure = structure
        self._max_rows = max_rows
        self._thread = threading.get_ident()
        self._loop = _running_loop()
        self._stale = set(PANELS)
        self._display: Any = None
        self._dag_memo: tuple[Any, str] = (None, "")
        self._shown: tuple[str | None, bool] = (None, False)  # (text/html, widget) displayed
        self._template = self._initial_template(renderer)
        self._run_id = engine.run_id if engine is not None else run.run_id
        live = not run.done and (engine is not None or bus is not None)
        # Drawn live only when the run's events come on our loop (not a run in a thread).
        here = live and self._loop is not None and not _elsewhere(engine, handle, self._loop)

        # Every widget model is a comm: in a kernel, opening one serialises and sends its
        # state (~0.3 ms with its share of the output), and comms are most of what a
        # dashboard costs a short run. So a dashboard is one model (its Layout is shared by
        # every dashboard of the kernel), opened only when first drawn (FIRST_FLUSH s from
        # now, or at the run's end if that comes first): until then its output is the static
        # header, and a short run's dashboard is sent once, finished, with its final values.
        lazy = here and math.isfinite(interval)
        self._deferred = True  # no comm yet: the first _draw opens it
        # Not AnyWidget.__init__ (see _esm above); it only adds those traits and, in Colab,
        # turns on the custom widget manager, which _colab_widgets() does once.
        widgets.DOMWidget.__init__(
            self,
            layout=_shared_layout(),
            _dom_classes=("nbflow-dashboard",),
            keys=list(_synced(type(self))),  # type: ignore[arg-type]  # (a subclass: more)
            lane_by=lane_by,
            _grouped=structure.grouped,
        )
        _colab_widgets()
        self.observe(self._on_tab, names="tab")
        self.observe(self._on_lanes, names="lane_by")
        self.observe(self._on_expanded, names="expanded")
        if not lazy:
            if run.done:
                self._draw(set(PANELS) if len(run.state.rows) <= EAGER_ROWS else {"dag"})
            else:  # nothing may draw it later but sync(): draw the pending graph now
                self._draw({"dag"})
        if here:
            assert self._loop is not None
            self._ticker = Ticker(
                self._flush,
                self._version,
                self._loop,
                interval,
                heartbeat,
                drawn=not lazy,
            )
            self._ticker.start(FIRST_FLUSH)
        if live:
            self._engine = engine
            self._bus = bus if bus is not None else engine.bus  # type: ignore[union-attr]
            self._subscriber = self._listener()
            self._unsubscribe = self._bus.subscribe(self._subscriber)
        if handle is not None and self not in handle._observers:
            handle._observers.append(self)

    # -- public ----------------------------------------------------------------------------

    def display(self) -> Dashboard:
        """Show the dashboard in the current notebook output (nothing outside a kernel).

        Returns self. A live run's dashboard appears with its first drawing: when the run
        ends, after ``FIRST_FLUSH`` seconds, or when the cell ends, whichever comes first
        (a short run is sent once, finished, not first as a skeleton). The output gets a
        display id, so :meth:`sync` can replace its static fallback (``text/html``, for
        frontends without widgets) with the final summary.
        """
        shell = _ipython() if "IPython" in sys.modules else None
        if shell is None or getattr(shell, "kernel", None) is None or self._closed:
            return self
        if not self._deferred:
            self._show()
        elif self._cell_end is None:
            self._cell_end = shell.events
            shell.events.register("post_run_cell", self._on_cell_end)
        return self

    def sync(self) -> Dashboard:
        """Draw the final (current) state in every tab; re-send all widget state and the output.

        Called when a run is waited for (``handle.wait()``, ``await handle``): notebook
        runners (nbclient, nbval) save only widget state changed by the executing cell, so
        this makes saved notebooks show the finished dashboard. Safe to call any time, from
        the dashboard's own thread (other threads: scheduled on its loop).
        """
        if threading.get_ident() != self._thread:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self.sync)
            return self
        if self._closed:
            return self
        if self.run.done:
            self._finish()
        self._guarded(self._draw, set(PANELS))
        for widget in self._widgets():
            widget.send_state()
        self._guarded(self._update_display, True)
        return self

    def close(self) -> None:
        """Stop listening, cancel timers, and close the widget (not the shared Layout)."""
        self._closed = True
        self._finish()
        self._forget_cell_end()
        if self._layout_task is not None:  # shared, and worth caching: let it finish
            self._layout_task.remove_done_callback(self._on_layout)
            self._layout_task = None
        super().close()

    @property
    def status(self) -> str:
        """The run's status as shown: pending, running, succeeded, failed or cancelled."""
        return self.run.status

    @property
    def grouped(self) -> bool:
        """Whether the DAG is drawn grouped (the flow has more than ``max_nodes`` tasks)."""
        return self._structure.grouped

    def __repr__(self) -> str:
        # Deterministic (no ids or timings): nbval compares the text/plain of widgets.
        return f"<nbflow.Dashboard flow={self.run.flow or self._flow_name()!r}>"

    # A dict, as ipywidgets' (AnyWidget declares a (data, metadata) pair; IPython takes both).
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:  # type: ignore[override]
        if self._deferred:  # shown as a cell's value before its first drawing: draw now
            self._guarded(self._draw, self._visible())
        return self._bundle(**kwargs)

    def _bundle(self, html: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """The output: the widget view (once its model is open), the static ``text/html``
        fallback (``html``, default: drawn now) and a stable ``text/plain``. Remembers what
        it showed."""
        # ipywidgets' bundle (a dict), not AnyWidget's (a (data, metadata) pair).
        data = {} if self._deferred else widgets.DOMWidget._repr_mimebundle_(self, **kwargs)
        data["text/plain"] = repr(self)
        if html is None:
            html = self._guarded(self._static_html)
        if html:
            data["text/html"] = html
        self._shown = (html, not self._deferred)
        return data

    # -- events ----------------------------------------------------------------------------

    def _listener(self) -> Callable[[Event], None]:
        """The bus subscriber: waits for this run's first event on our thread, then hands
        over to the engine's end-of-run future (:meth:`_hand_over`) and leaves the bus. Where
        that is not possible (a bare ``bus=``, a run elsewhere) it stays, for RunFinished."""
        run_id, thread = self._run_id, self._thread
        finished, hand_over, get_ident = self._on_finished, self._hand_over, threading.get_ident
        tried = False

        def on_event(event: Event) -> None:
            nonlocal tried
            if event.__class__ is RunFinished:
                if event.run_id == run_id:
                    finished()
            elif not tried and event.run_id == run_id and get_ident() == thread:
                tried = True
                hand_over()

        return on_event

    def _hand_over(self) -> None:
        """Leave the bus and learn of the run's end from the engine's end-of-run future.

        While anyone subscribes, the engine publishes each event (~0.15 µs of Python each,
        6,000 in a 2,000-task run: most of what a dashboard cost a short run). The ticker
        reads the state, so only the end needs telling: the engine calls back right after
        RunFinished (:meth:`~nbflow.engine.Engine.add_done_callback`), before the awaiting
        ``flow.arun()`` resumes.
        """
        engine = self._engine
        if (
            engine is not None
            and engine.loop is self._loop
            and self._ticker is not None
            and engine.add_done_callback(self._on_engine_done)
        ):
            self._detach()

    def _on_engine_done(self) -> None:
        if self._closed or self._ended:
            return
        if self.run.done:
            self._on_finished()
        elif self._engine is not None:
            # The future was cancelled with the task awaiting it: the run ends a moment
            # later (its tasks are being cancelled), and says so on the bus.
            self._unsubscribe = self._bus.subscribe(self._subscriber)

    def _on_finished(self) -> None:
        if threading.get_ident() == self._thread:
            self._final()
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._final)
        self._detach()

    def _final(self) -> None:
        self._finish()
        if self._closed:
            return
        self._ended = True
        small = len(self.run.state.rows) <= EAGER_ROWS
        self.stats.flushes += 1
        self._guarded(self._draw, set(PANELS) if small else {"dag"} | self._visible())
        self._guarded(self._update_display)

    def _finish(self) -> None:
        """Stop live updates: no more ticks, no subscription."""
        if self._ticker is not None:
            self._ticker.stop()
        self._detach()
        self._engine = None  # a finished dashboard keeps the run, not its engine

    def _detach(self) -> None:
        # At once, even from inside EventBus.publish: it calls a copy of its subscriber list.
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _version(self) -> int:
        """What the ticker compares: the number of the run's last event."""
        return self.run.state.last_seq

    def _on_tab(self, change: dict[str, Any]) -> None:
        if change["new"] in self._stale:
            self._guarded(self._draw, {change["new"]}, False)

    def _on_expanded(self, change: dict[str, Any]) -> None:
        if self._table or self.tab == "table":
            self._guarded(self._draw, {"table"}, False)
        else:
            self._stale.add("table")

    def _on_lanes(self, change: dict[str, Any]) -> None:
        if self._gantt or self.tab == "gantt":
            self._guarded(self._draw, {"gantt"}, False)
        else:
            self._stale.add("gantt")

    # -- drawing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        if self.run.done:  # ended without our hearing of it (a cancelled wait): draw the end
            self._on_finished()
            return
        self.stats.flushes += 1
        self._draw(self._visible())

    def _visible(self) -> set[str]:
        return {self.tab}

    def _render(self, wanted: set[str]) -> dict[str, str]:
        """The HTML of the header and of the ``wanted`` panels, from the run state."""
        s = self.stats
        out = {
            "header": panels.header_html(
                self.run.state, self._flow_name(), len(self._structure.names)
            )
        }
        s.header_renders += 1
        if "dag" in wanted:
            out["dag"] = self._dag_html()
            s.dag_renders += 1
        if "table" in wanted:
            out["table"] = self._table_html()
            s.table_renders += 1
        if "gantt" in wanted:
            out["gantt"] = self._gantt_html()
            s.gantt_renders += 1
        self._stale = set(PANELS) - wanted
        return out

    def _draw(self, wanted: set[str], news: bool = True) -> None:
        """Draw the header and the ``wanted`` panels into their traits, in one message.

        ``news``: the state changed since the last draw, so panels not drawn now are stale.
        """
        stale = self._stale
        values = self._render(wanted)
        if not news:
            self._stale = stale - wanted
        if self._deferred:  # the first drawing: its values ride on the comm_open
            values.setdefault("dag", panels.empty("Drawing the graph…"))
            for name, value in values.items():
                setattr(self, f"_{name}", value)
            self._deferred = False
            self.open()
            self._guarded(self._update_display)  # from the static header to the widget
            return
        with self.hold_sync():
            for name, value in values.items():
                setattr(self, f"_{name}", value)

    def open(self) -> None:
        """Open the dashboard's comm to the frontend (not before its first drawing)."""
        if not self._deferred:
            super().open()

    def _flow_name(self) -> str:
        plan = getattr(self.run, "_plan", None)
        return self.run.flow or (plan.flow_name if plan is not None else "")

    def _dag_html(self) -> str:
        state = self.run.state
        scope = panels.scope_of(state)
        if not self.run.done:  # live: elapsed times move even without events
            return panels.dag_html(self._template, self._structure, state, scope)
        # Finished: memoised per layout, so the final draw and the summary share one drawing.
        key = (state.last_seq, id(self._template))
        if self._dag_memo[0] != key:
            self._dag_memo = (
                key,
                panels.dag_html(self._template, self._structure, state, scope),
            )
        return self._dag_memo[1]

    def _table_html(self) -> str:
        if not self.run.state.tasks:
            return panels.empty("The run has not started yet.")
        return panels.frame(
            panels.table_html(
                self.run.state, self._max_rows, self._structure.priorities, self.expanded
            ),
            520,
        )

    def _gantt_html(self) -> str:
        state = self.run.state
        return panels.timeline_html(state, self._structure, self.lane_by, panels.scope_of(state))

    def _static_html(self) -> str:
        """The ``text/html`` fallback: the full summary once finished, the header before."""
        if not self.run.done:
            return panels.header_html(self.run.state, self._flow_name(), len(self._structure.names))
        from nbflow.summary import run_summary_html

        return run_summary_html(self.run, structure=self._structure, dag=self._dag_html())

    def _show(self) -> None:
        """Display the bundle, with a display id (see :meth:`display`)."""
        from IPython.display import display

        self._forget_cell_end()
        # The bundle as is: IPython's formatters would only find _repr_mimebundle_ anyway.
        self._display = display(self._bundle(), raw=True, display_id=True)

    def _on_cell_end(self, *_: Any) -> None:
        """The cell that displayed a live dashboard ended before its first drawing (e.g.
        ``flow.start(show=True)``): draw and show it now, while the cell's output is open."""
        self._forget_cell_end()
        if self._display is None and not self._closed:
            if self._deferred:
                self._guarded(self._draw, self._visible())  # shows it
            if self._display is None:  # the drawing failed: show what there is
                self._guarded(self._show)

    def _forget_cell_end(self) -> None:
        events, self._cell_end = self._cell_end, None
        if events is not None:
            with contextlib.suppress(ValueError):
                events.unregister("post_run_cell", self._on_cell_end)

    def _update_display(self, again: bool = False) -> None:
        """Show the dashboard at its first drawing (if :meth:`display` was called), then
        update the output when what it should show changed: the widget view once the model
        is open, the static fallback once the run has finished. ``again``: even if not
        (an update sent from a background run's callbacks belongs to the cell that started
        it, and a notebook runner that has moved on to the next cell does not save it)."""
        if self._display is None:
            if self._cell_end is not None and not self._deferred:
                self._show()
            return
        html = self._static_html()
        if again or self._shown != (html, not self._deferred):
            self._display.update(self._bundle(html), raw=True)

    def _widgets(self) -> list[widgets.Widget]:
        """The dashboard's own widget models: itself once drawn (not the shared Layout)."""
        return [] if self._deferred else [self]

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            self.stats.errors += 1
            log.exception("nbflow dashboard update failed; the run goes on")
            return None

    # -- layout ----------------------------------------------------------------------------

    def _initial_template(self, renderer: str) -> DagTemplate:
        structure = self._structure
        if renderer == "dot":
            template = layouts.cached("dot", structure)
            if template is not None:
                self.stats.renderer = "dot"
                return template
        template, computed = layouts.python_template(structure)
        self.stats.layouts += computed
        if renderer == "dot" and self._loop is not None:
            # Shown with the built-in layout meanwhile; dot's replaces it when ready. In a
            # kernel, whose loop lives on, dot is an async subprocess. Elsewhere the loop may
            # end first, and a subprocess being started then holds up the loop's shutdown
            # (asyncio waits for it), so dot runs in a worker thread there.
            task = layouts.dot_layout(structure, in_thread=not _in_kernel())
            task.add_done_callback(self._on_layout)
            self._layout_task = task
        return template

    def _on_layout(self, task: asyncio.Future[Any]) -> None:
        self._layout_task = None
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        if error is not None:
            log.info("Graphviz layout failed (%s); keeping the built-in layout", error)
            return
        self._template = task.result()
        self.stats.layouts += 1
        self.stats.renderer = "dot"
        if self._deferred:  # not drawn yet: the first drawing uses the new layout
            return
        if "dag" in self._visible() or self.run.done:
            self._guarded(self._draw, {"dag"}, False)
        else:
            self._stale.add("dag")


@functools.cache
def _synced(cls: type[widgets.Widget]) -> tuple[str, ...]:
    """The names of ``cls``'s synced traits (its ``keys``), listed once per class.

    ipywidgets lists them per widget, by introspecting every trait, when it first sends the
    widget's state: about a quarter of what opening a model costs. Widgets of one class
    have the same synced traits (nbflow adds none at run time), so the list is shared.
    """
    return tuple(cls.class_trait_names(sync=True))


def _shared_layout() -> widgets.Layout:
    """The kernel's one dashboard ``Layout``, made again if it was closed
    (``Widget.close_all()``): one comm for every dashboard, not one each."""
    if not _LAYOUT or _LAYOUT[0].comm is None:
        _LAYOUT[:] = [widgets.Layout()]
    return _LAYOUT[0]


@functools.cache
def _colab_widgets() -> None:
    """In Google Colab, turn on its custom widget manager (once), which third-party widgets
    such as this one need there; what ``anywidget.AnyWidget.__init__`` does."""
    output = sys.modules.get("google.colab.output")
    if output is not None:
        output.enable_custom_widget_manager()


def _elsewhere(engine: Engine | None, handle: Any, loop: asyncio.AbstractEventLoop) -> bool:
    """Whether the run runs on another loop than ``loop`` (e.g. ``flow.start()`` in a thread)."""
    if handle is not None and getattr(handle, "_thread", None) is not None:
        return True
    other = getattr(engine, "loop", None)
    return other is not None and other is not loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _in_kernel() -> bool:
    """Whether we run inside an IPython kernel (a notebook, Voila), whose loop lives on."""
    shell = sys.modules.get("IPython") and _ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _ipython() -> Any:
    from IPython import get_ipython

    return get_ipython()
