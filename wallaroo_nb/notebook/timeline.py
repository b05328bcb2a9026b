"""Why a range window fired when it did: event time against processing time, live.

`window_timeline(app, step)` plots, for a range-window step, processing time
(seconds since the view started) across and event time up:

- the step's watermark on each worker, a line that climbs as data arrives
  (a range window fires once the watermark reaches its end plus the delay);
- each window as a box: its event-time span [start, end) from bottom to top,
  from when a key first held it to when it fired (open windows reach "now");
- the end of the stream, when the watermark jumps to infinity and every window
  still open fires.

A daemon thread asks the app every `interval` seconds for the step's open
windows (`app.state(step)`) and then the watermarks (`app.flow()`, asked
second so a watermark is never older than the firing it explains). A window
that opens and fires between two looks is not drawn. `timeline.fired` is a
DataFrame of the windows seen firing.
"""

from __future__ import annotations

import html
import math
import threading
import time
from typing import Any

import ipywidgets as widgets
import pandas as pd
from bokeh.models import ColumnDataSource, Legend
from bokeh.plotting import figure

from . import bokeh_widget
from .bokeh_widget import FIRST_CHANGE_AFTER_S, EchoSafeBokehModel
from .live import LiveBox

INTERVAL = 0.25
ROLLOVER = 4000  # watermark samples kept: over 16 minutes at the default interval
NS = 1_000_000_000
ABSOLUTE_NS = 10**18  # event times beyond this (2001 on) are wall-clock: shown from an origin
WORKER_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#bcbd22")
WORKER_DASHES = ("solid", "dashed", "dotdash", "dotted")  # lines of equal workers stay apart
WINDOWS_NAME, WATERMARK_NAME = "wallaroo-timeline-windows", "wallaroo-timeline-watermark"
FIRED_COLUMNS = ["start_s", "end_s", "opened_s", "fired_s", "watermark_s", "keys"]


class WindowTimeline(LiveBox):
    """The live plot; `close()` stops its thread. Build it with `window_timeline`."""

    _thread_name = "wallaroo_nb-window-timeline"
    # It looks from the start (a window may open early) but changes the plot only
    # after FIRST_CHANGE_AFTER_S (see EchoSafeBokehModel).

    def __init__(self, app: Any, step: str, interval: float = INTERVAL) -> None:
        spec = range_spec(app, step)
        self.step = step
        self._sid = app.plan.step_named(step).id
        self._delay_ns = int(getattr(spec, "delay_ns", 0) or 0)
        self._workers = int(app.worker_count)
        self._t0 = time.monotonic()
        self._origin: int | None = None  # ns subtracted from event times, once known
        self._open: dict = {}  # (start, end) ns -> {"opened": s, "keys": n}
        self._fired: list = []  # {"span", "opened", "fired", "wm", "keys"}, in firing order
        self._lock = threading.RLock()
        self._last_wm: list = []
        self._ended_at: float | None = None  # when the watermark became infinite
        self._wm_rows: list = []  # watermark samples not yet in the plot
        self._drawing = False  # the plot has had its first data
        self.watermarks = ColumnDataSource(self._empty_watermarks(), name=WATERMARK_NAME)
        self.windows = ColumnDataSource(_window_columns([]), name=WINDOWS_NAME)
        self.ends = ColumnDataSource({"t": []})
        self.figure = self._figure(step)
        self.plot = EchoSafeBokehModel(self.figure, lock=self._lock, kernel_owned={
            self.watermarks: ["data"], self.windows: ["data"], self.ends: ["data"]})
        self.status = widgets.HTML("starting…")
        super().__init__([self.plot, self.status])
        self._start_live(app, interval)

    @property
    def fired(self) -> pd.DataFrame:
        """The windows seen firing, oldest first: span and times in seconds."""
        with self._lock:
            rows = [self._row(w) for w in self._fired]
        return pd.DataFrame(rows, columns=FIRED_COLUMNS).sort_values(
            ["fired_s", "start_s"], kind="stable").reset_index(drop=True)

    def _parts(self) -> list:
        return [self.plot, self.status]

    # -- the thread ---------------------------------------------------------------------

    def _tick(self, app: Any, running: bool, tick: int) -> None:
        if not running:
            self._set_status()
            return
        spans = _open_spans(app.state(self.step))  # first: see the docstring
        wms = app.flow()["watermarks"].get(self._sid, [])
        now = time.monotonic() - self._t0
        with self._lock:
            self._note(spans, wms, now)
            self._wm_rows.append(self._watermark_row(now, wms))
            if now >= FIRST_CHANGE_AFTER_S:
                self._draw(now)
        self._set_status()

    def _draw(self, now: float) -> None:
        """Put what the looks found into the plot (under the lock); all of it the first
        time and when a browser view has just drawn the plot."""
        self.windows.data = _window_columns([self._row(w) for w in self._fired] + [
            self._row(dict(w, span=span), now) for span, w in self._open.items()])
        rows = {k: [r[k] for r in self._wm_rows] for k in self._wm_rows[0]}
        self._wm_rows.clear()
        redraw = self.plot.take_redraw() or not self._drawing
        self._drawing = True
        if redraw:
            self.watermarks.data = {k: (list(v) + rows[k])[-ROLLOVER:]
                                    for k, v in self.watermarks.data.items()}
        else:
            self.watermarks.stream(rows, rollover=ROLLOVER)
        ends = {"t": [] if self._ended_at is None else [self._ended_at]}
        if redraw or ends != dict(self.ends.data):
            self.ends.data = ends

    def _note(self, spans: dict, wms: list, now: float) -> None:
        """Open what is new, close what is gone (it fired), mark the end of the stream."""
        if self._origin is None:
            self._origin = _origin(list(spans) + [(w, w) for w in wms if math.isfinite(w)])
        top = max(wms, default=-math.inf)
        for span in [s for s in self._open if s not in spans]:
            w = self._open.pop(span)
            self._fired.append(dict(w, span=span, fired=now, wm=top))
        for span, keys in spans.items():
            w = self._open.setdefault(span, {"opened": now, "keys": keys})
            w["keys"] = max(w["keys"], keys)
        if self._ended_at is None and wms and all(w == math.inf for w in wms):
            self._ended_at = now
        self._last_wm = list(wms)

    def _watermark_row(self, now: float, wms: list) -> dict:
        row = {"t": now}
        for i in range(self._workers):
            wm = wms[i] if i < len(wms) else -math.inf
            row[f"w{i}"] = self._seconds(wm) if math.isfinite(wm) else math.nan
        return row

    def _row(self, w: dict, now: float | None = None) -> dict:
        """A window's row in seconds; an open one (no "fired") reaches `now`."""
        start, end = w["span"]
        fired, wm = w.get("fired"), w.get("wm")
        return {
            "start_s": self._seconds(start), "end_s": self._seconds(end),
            "opened_s": round(w["opened"], 2),
            "fired_s": None if fired is None else round(fired, 2),
            "watermark_s": None if wm is None else (
                math.inf if wm == math.inf else self._seconds(wm)),
            "keys": w["keys"],
            "right": now if fired is None and now is not None else fired,
            "fire_at": self._seconds(end + self._delay_ns),
        }

    def _seconds(self, ns: float) -> float:
        return (ns - (self._origin or 0)) / NS

    def _set_status(self, note: str = "") -> None:
        if self._closed:
            return
        with self._lock:
            n_open, n_fired, wms = len(self._open), len(self._fired), list(self._last_wm)
        marks = ", ".join(_wm_text(self._seconds(w) if math.isfinite(w) else w) for w in wms)
        parts = [f"watermark {marks or '–'}", f"{n_open} window(s) open", f"{n_fired} fired"]
        if self._origin:
            since = time.strftime("%H:%M:%S", time.localtime(self._origin / NS))
            parts.append(f"event time in s since {since}")
        parts += [t for t in (note, time.strftime("%H:%M:%S")) if t]
        self.status.value = f"<small>{html.escape(' · '.join(parts))}</small>"

    # -- drawing ------------------------------------------------------------------------

    def _empty_watermarks(self) -> dict:
        return {"t": [], **{f"w{i}": [] for i in range(self._workers)}}

    def _figure(self, step: str) -> Any:
        fig = figure(height=380, width=980, tools="pan,box_zoom,wheel_zoom,reset,save",
                     title=f"{step}: event time against processing time",
                     x_axis_label="processing time (s since this view started)",
                     y_axis_label="event time (s)")
        boxes = fig.quad(left="opened_s", right="right", bottom="start_s", top="end_s",
                         source=self.windows, fill_color="fill", fill_alpha=0.35,
                         line_color="line", line_dash="dashed")
        fire = fig.segment(x0="opened_s", x1="right", y0="fire_at", y1="fire_at",
                           source=self.windows, line_color="#d62728", line_width=2)
        fig.text(x="opened_s", y="end_s", text="label", source=self.windows, x_offset=3,
                 y_offset=3, text_font_size="9px", text_baseline="top")
        items = [("window: its span, from open to fired", [boxes]),
                 ("fires when the watermark reaches this", [fire])]
        for i in range(self._workers):
            line = fig.line("t", f"w{i}", source=self.watermarks, line_width=2,
                            color=WORKER_COLOURS[i % len(WORKER_COLOURS)],
                            line_dash=WORKER_DASHES[i % len(WORKER_DASHES)])
            items.append((f"watermark on worker {i}", [line]))
        end = fig.vspan(x="t", source=self.ends, line_color="#444444", line_dash="dotted",
                        line_width=2)
        items.append(("end of stream: every window still open fires", [end]))
        fig.add_layout(Legend(items=items, label_text_font_size="9px"), "right")
        fig.x_range.range_padding = 0.15  # room for the last window's label
        return fig


def _window_columns(rows: list) -> dict:
    cols: dict = {k: [] for k in ("opened_s", "right", "start_s", "end_s", "fire_at", "fill",
                                  "line", "label")}
    for r in rows:
        for k in ("opened_s", "right", "start_s", "end_s", "fire_at"):
            cols[k].append(r[k])
        fired = r["fired_s"] is not None
        cols["fill"].append("#2ca02c" if fired else "#cccccc")
        cols["line"].append("#2ca02c" if fired else "#777777")
        span = f"[{r['start_s']:g}, {r['end_s']:g})"
        cols["label"].append(f"{span} fired" if fired else f"{span} open")
    return cols


def _open_spans(state: pd.DataFrame) -> dict:
    """(start, end) ns -> number of keys holding that window, from app.state(step)."""
    if not len(state) or "window_start" not in state:
        return {}
    spans: dict = {}
    for s, e in zip(state["window_start"], state["window_end"]):
        spans[(int(s), int(e))] = spans.get((int(s), int(e)), 0) + 1
    return spans


def _origin(spans: list) -> int | None:
    """0 for event times that look relative; else the first one's whole second."""
    if not spans:
        return None
    first = min(s for s, _ in spans)
    return (int(first) // NS) * NS if first >= ABSOLUTE_NS else 0


def _wm_text(s: float) -> str:
    return "∞ (stream over)" if s == math.inf else ("–" if s == -math.inf else f"{s:g} s")


def range_spec(app: Any, step: str) -> Any:
    """The range-window spec of `step`; a ValueError that says why for any other step."""
    s = app.plan.step_named(step)  # KeyError naming the steps
    spec = getattr(s, "spec", None)
    if s.kind != "window" or getattr(spec, "kind", None) != "range":
        what = f"{spec.kind} window" if s.kind == "window" else f"{s.kind} step"
        raise ValueError(f"step {step!r} is a {what}; window_timeline() shows range windows "
                         "(range_windows(...)), whose windows fire on event time")
    return spec


def window_timeline(app: Any, step: str, interval: float = INTERVAL,
                    load_bokehjs: bool = True) -> WindowTimeline:
    """The live event-time plot of the range-window step `step`; display it."""
    if load_bokehjs:
        bokeh_widget.load_bokehjs()
    return WindowTimeline(app, step, interval=interval)
