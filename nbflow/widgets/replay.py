"""``Replay``: a dashboard that plays a finished run again (``nf.replay``).

It is a :class:`~nbflow.widgets.Dashboard` over the state a :class:`~nbflow.replay.Replayer`
folds from the run's events, plus four synced traits that the page shows as controls above
the tabs (``dashboard.js`` draws them when the model has ``_replay``): ``position`` (the
moment shown, run seconds from the start: a time slider), ``playing`` (a play/pause
button), ``speed`` (run seconds per second) and ``duration``. Setting ``position`` (the
slider, or Python) redraws the header and the open tab as the run stood then. Playing is
driven from the kernel: every ``tick`` seconds on its event loop, ``position`` moves on by
``speed`` times the time that passed, and the slider follows.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import traitlets

from nbflow.replay import Replayer
from nbflow.run import Run
from nbflow.widgets.dashboard import Dashboard, _running_loop

if TYPE_CHECKING:
    from collections.abc import Iterable

    from nbflow.events import Event
    from nbflow.graph import Plan

#: Speeds offered (run seconds per second); the default is the one that plays the run in
#: about :data:`PLAY_SECONDS`.
SPEEDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
PLAY_SECONDS = 10.0


def default_speed(duration: float) -> float:
    """The offered speed that plays ``duration`` run seconds in about ten seconds."""
    if duration <= 0:
        return 1.0
    wanted = duration / PLAY_SECONDS
    return min(SPEEDS, key=lambda s: abs(math.log(s / wanted)))


class Replay(Dashboard):
    """A finished run, played again: the dashboard with play/pause, speed and a time slider.

    Made by :func:`nbflow.replay`; ``events`` are the run's (see
    :func:`nbflow.replay.recorded_events`).

    Args:
        events: the run's events, from its ``RunStarted`` on.
        plan: the flow's plan, for the graph's edges (None: the tasks, unconnected, unless
            the run's flow is known).
        speed: run seconds per second of playing (default: :func:`default_speed`).
        at: the moment shown first, in run seconds from the start (default: the end).
        tick: seconds between frames while playing.
        **options: for :class:`Dashboard` (``prefer``, ``max_nodes``, ``lane_by``...).

    Attributes:
        position: the moment shown (synced; setting it redraws).
        playing: whether it plays (synced: the play button).
        speed: run seconds per second (synced: the speed menu).
        duration: the run's length in seconds.
        replayer: the :class:`~nbflow.replay.Replayer` it draws from.

    Raises:
        ValueError: ``events`` is not a run's, or a bad ``speed``, ``at`` or ``tick``.
    """

    _replay = traitlets.Bool(True).tag(sync=True)
    _speeds = traitlets.List(traitlets.Float()).tag(sync=True)
    position = traitlets.Float(0.0).tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    playing = traitlets.Bool(False).tag(sync=True)
    speed = traitlets.Float(1.0).tag(sync=True)

    _handle: asyncio.TimerHandle | None = None

    def __init__(
        self,
        events: Iterable[Event],
        *,
        plan: Plan | None = None,
        speed: float | None = None,
        at: float | None = None,
        tick: float = 0.1,
        **options: Any,
    ) -> None:
        replayer = Replayer(events)
        duration = replayer.duration
        if speed is None:
            speed = default_speed(duration)
        if not (isinstance(speed, int | float) and speed > 0 and math.isfinite(speed)):
            raise ValueError(f"replay speed must be a positive number, not {speed!r}")
        if not tick > 0:
            raise ValueError(f"tick must be positive seconds, not {tick!r}")
        position = duration if at is None else at
        if not (isinstance(position, int | float) and 0 <= position <= duration):
            raise ValueError(f"at must be within the run's 0..{duration:g} s, not {at!r}")
        self.replayer = replayer
        self._tick_s = tick
        self._last = 0.0
        replayer.seek(replayer.start + position)
        super().__init__(Run(replayer.state, plan), **options)
        self._play_loop = _running_loop()
        with self.hold_trait_notifications():
            self.duration = duration
            self.speed = float(speed)
            self._speeds = sorted({*SPEEDS, float(speed)})
            self.position = float(position)
        self.observe(self._on_position, names="position")
        self.observe(self._on_playing, names="playing")
        if not self.run.done:  # the base drew the graph only: draw what is open too
            self._show_at(position)

    def __repr__(self) -> str:
        # Deterministic (no ids or timings): nbval compares the text/plain of widgets.
        return f"<nbflow.Replay flow={self.run.flow!r}>"

    def _flow_name(self) -> str:
        return f"{super()._flow_name()} · replay"  # the header says it is not live

    # -- the moment shown --------------------------------------------------------------------

    def seek(self, position: float) -> Replay:
        """Show the run as it stood ``position`` run seconds after its start; returns self."""
        self.position = min(max(float(position), 0.0), self.duration)
        return self

    def _on_position(self, change: dict[str, Any]) -> None:
        self._guarded(self._show_at, change["new"])

    def _show_at(self, position: float) -> None:
        self.replayer.seek(self.replayer.start + position)
        self._draw(self._visible())

    # -- playing -----------------------------------------------------------------------------

    def play(self) -> Replay:
        """Start playing (from the start if at the end); returns self."""
        self.playing = True
        return self

    def pause(self) -> Replay:
        """Stop playing where it is; returns self."""
        self.playing = False
        return self

    def _on_playing(self, change: dict[str, Any]) -> None:
        if not change["new"]:
            self._stop_playing()
            return
        loop = self._play_loop
        if loop is None or loop.is_closed():  # no loop to play on (a plain script)
            self.playing = False
            return
        if self.position >= self.duration:
            self.position = 0.0
        self._last = loop.time()
        self._handle = loop.call_later(self._tick_s, self._tick)

    def _tick(self) -> None:
        self._handle = None
        loop = self._play_loop
        if not self.playing or self._closed or loop is None:
            return
        now = loop.time()
        step, self._last = (now - self._last) * self.speed, now
        ahead = min(self.position + step, self.duration)
        self.position = ahead  # draws (see _on_position), and moves the slider
        if ahead >= self.duration:
            self.playing = False
        else:
            self._handle = loop.call_later(self._tick_s, self._tick)

    def _stop_playing(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """Stop playing and close the widget."""
        self._stop_playing()
        super().close()
