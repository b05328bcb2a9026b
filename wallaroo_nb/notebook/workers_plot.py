"""Keys per worker, live: one bar per worker process that changes when the app scales.

`workers_view(app)` draws a bokeh bar chart of the keys each worker holds, each bar
labelled with its keys and slots (hover for pid, host, state size and counts). A
daemon thread (see live.py) asks `app.workers()` about once a second (a round trip
to every worker, so no faster) and redraws when the answer changed: after
`app.scale(n)` there are n bars. It stops when the app stops, keeping the last
picture, is garbage collected, or the view is closed. The App's display and
`app.dashboard()` include it.
"""

from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets
import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.plotting import figure

from . import bokeh_widget
from .bokeh_widget import FIRST_CHANGE_AFTER_S, EchoSafeBokehModel
from .live import LiveBox

INTERVAL = 1.0  # app.workers() asks every worker: about once a second is enough
BARS_NAME, SOURCE_NAME = "wallaroo-workers-bars", "wallaroo-workers"
COLUMNS = ("worker", "keys", "slots", "label", "pid", "host", "state_bytes", "events_in",
           "events_out", "busy")


def workers_columns(frame: pd.DataFrame) -> dict[str, list]:
    """`app.workers()` as the chart's columns: one bar per worker, in worker order."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    if frame is None or frame.empty:
        return cols
    for row in frame.sort_values("worker").itertuples(index=False):
        keys, slots = int(row.keys), int(row.slots)
        cols["worker"].append(f"worker {int(row.worker)}")
        cols["keys"].append(keys)
        cols["slots"].append(slots)
        cols["label"].append(f"{keys:,} keys · {slots} slots")
        cols["pid"].append(int(row.pid))
        cols["host"].append(str(row.host))
        cols["state_bytes"].append(int(row.state_bytes))
        cols["events_in"].append(int(row.events_in))
        cols["events_out"].append(int(row.events_out))
        cols["busy"].append(f"{row.busy_step} for {row.busy_s:.0f} s" if row.busy_step else "")
    return cols


def workers_figure(source: ColumnDataSource, x_range: FactorRange, title: str) -> Any:
    """Bars of keys per worker from `source`, with a keys-and-slots label on each."""
    fig = figure(title=title, x_range=x_range, height=220, width=520, tools="save",
                 toolbar_location=None, y_axis_label="keys")
    bars = fig.vbar(x="worker", top="keys", source=source, width=0.6, color="#1f77b4",
                    name=BARS_NAME)
    fig.text(x="worker", y="keys", text="label", source=source, text_align="center",
             text_baseline="bottom", y_offset=-2, text_font_size="10px")
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[
        ("", "@worker"), ("keys", "@keys{0,0}"), ("slots", "@slots"), ("pid", "@pid"),
        ("host", "@host"), ("state", "@state_bytes{0,0} bytes"), ("read", "@events_in{0,0}"),
        ("to sinks", "@events_out{0,0}"), ("busy", "@busy")]))
    fig.y_range.start = 0
    fig.yaxis.ticker.min_interval = 1  # whole keys
    fig.y_range.range_padding = 0.25  # room for the labels above the highest bar
    fig.xgrid.grid_line_color = None
    return fig


class WorkersView(LiveBox):
    """The live bar chart; `close()` stops its thread. Build it with `workers_view`."""

    _thread_name = "wallaroo_nb-workers"
    _first_wait = FIRST_CHANGE_AFTER_S  # see EchoSafeBokehModel

    def __init__(self, app: Any, interval: float = INTERVAL) -> None:
        self._lock = threading.RLock()
        self._shown: dict | None = None  # the columns last sent
        self.source = ColumnDataSource(workers_columns(None), name=SOURCE_NAME)
        self.x_range = FactorRange(factors=[])
        self.figure = workers_figure(self.source, self.x_range, f"{app.name}: keys per worker")
        self.plot = EchoSafeBokehModel(self.figure, lock=self._lock, kernel_owned={
            self.source: ["data"], self.x_range: ["factors"]})
        self.status = widgets.HTML("starting…")
        super().__init__([self.plot, self.status])
        self._start_live(app, interval)

    def _parts(self) -> list:
        return [self.plot, self.status]

    def _tick(self, app: Any, running: bool, tick: int) -> None:
        """Redraw when the workers' answer changed (or a browser view drew afresh)."""
        if not running:
            return  # a stopped app has no workers to ask: the last picture stays
        frame = app.workers()
        if frame.empty and not app.running:
            return  # it stopped between the two questions
        cols = workers_columns(frame)
        redraw = self.plot.take_redraw()
        with self._lock:
            if redraw or cols != self._shown:
                self.x_range.factors = list(cols["worker"])
                self.source.data = cols
                self._shown = cols
        self._set_status(f"{len(cols['worker'])} workers, {sum(cols['keys']):,} keys")


def workers_view(app: Any, interval: float = INTERVAL, load_bokehjs: bool = True) -> WorkersView:
    """A live picture of the keys per worker of `app`; display it (last expression of a
    cell). BokehJS is published inline into the notebook once per kernel (no CDN)."""
    if load_bokehjs:
        bokeh_widget.load_bokehjs()
    return WorkersView(app, interval=interval)
