"""Live latency dashboard of a running app: its input and output rates, percentiles,
rate and percent-by-bin of a chosen series, and the keys per worker.

`dashboard(app)` returns an ipywidgets VBox (a line with the app's input rate and
output rate, series dropdown, bokeh plots, status line, then the keys-per-worker
bars of workers_plot.py). A daemon thread polls the App about once a second and
streams new seconds into the plots' ColumnDataSource, so it keeps going while
another cell blocks the kernel; the workers' bars have their own thread. Both stop
when the app stops, the app is garbage collected (they hold only a weak reference)
or the box is closed.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any

import ipywidgets as widgets
import pandas as pd
from bokeh.models import ColumnDataSource

from . import bokeh_widget
from .bokeh_widget import FIRST_CHANGE_AFTER_S, EchoSafeBokehModel
from .live import LiveBox
from .report import RATE_NAME, bins_columns, empty_history, history_columns, make_plots, rate_title
from .summary import io_rates, rate_text
from .workers_plot import WorkersView

INTERVAL = 1.0  # seconds between updates
ROLLOVER = 300  # rows kept in the plots: five minutes of seconds
NAMES_EVERY = 10  # ticks between full refreshes of the worker list
CATEGORY_ORDER = {"pipeline": 0, "computation": 1, "worker": 2}
RATES_WINDOW = "5s"  # the rates are of the last complete second: a short window will do


class Dashboard(LiveBox):
    """The live view; `close()` stops its thread. Build it with `dashboard(app)`."""

    _thread_name = "wallaroo_nb-dashboard"
    _first_wait = FIRST_CHANGE_AFTER_S  # see EchoSafeBokehModel
    def __init__(self, app: Any, interval: float = INTERVAL, window: str = "5min") -> None:
        self._window = window
        self._lock = threading.RLock()
        self._closed = False
        self._selection: tuple[str, str, str] | None = None
        self._reset = True  # reload the whole history on the next tick
        self._last_ms = float("-inf")  # plot time of the newest streamed row
        self._last_tick = 0.0  # time.monotonic() of the last successful update
        self._names: list = []
        self._quiet = False  # set while the thread rewrites the dropdown

        self.history_source = ColumnDataSource(empty_history())
        self.bins_source = ColumnDataSource(bins_columns(pd.DataFrame(columns=["bin", "percent", "count"])))
        layout, self._bin_range = make_plots(self.history_source, self.bins_source)
        self._rate_title = layout.select_one({"name": RATE_NAME}).title
        self.plot = EchoSafeBokehModel(layout, lock=self._lock, kernel_owned={
            self.history_source: ["data"], self.bins_source: ["data"], self._bin_range: ["factors"],
            self._rate_title: ["text"],
        })
        self.rates = widgets.HTML(rates_html(None))
        self.selector = widgets.Dropdown(description="series", options=[], layout={"width": "480px"})
        self.selector.observe(self._on_select, "value")
        self.status = widgets.HTML("starting…")
        self.workers = WorkersView(app)
        super().__init__([self.rates, self.selector, self.plot, self.status, self.workers])
        self._start_live(app, interval)

    def _parts(self) -> list:
        return [self.rates, self.selector, self.status, self.plot, self.workers]

    # -- the update thread ---------------------------------------------------------

    def _on_select(self, change: dict) -> None:
        if self._quiet or change["new"] is None:
            return
        with self._lock:
            self._selection = tuple(change["new"])
            self._reset = True
        self._wake.set()

    def _tick(self, app: Any, running: bool, tick: int) -> None:
        if not self._closed:
            self.rates.value = rates_html(app.metrics(window=RATES_WINDOW))
        names = sorted(app.metrics_names())
        if names != self._names or tick % NAMES_EVERY == 0 or self._selection is None:
            self._names = names
            self._refresh_options(app.metrics(window=self._window))
        redraw = self.plot.take_redraw()  # a browser view has just drawn: send it all
        with self._lock:
            selection, reset = self._selection, self._reset or redraw
            self._reset = False
        if selection is None:
            self._set_status("waiting for metrics…")
            return
        category, name, worker = selection
        since = time.monotonic() - self._last_tick
        if reset or since > 290:
            reset, window = True, self._window
        else:  # just enough to cover what is new since the last update
            window = f"{int(since) + 3}s"
        hist = app.metrics_history(category, name, worker, window=window)
        bins = bins_columns(app.metrics_bins(category, name, worker, window=self._window))
        cols = history_columns(hist)
        with self._lock:
            if reset:
                self._rate_title.text = rate_title(category)
                self.history_source.data = cols
                self._last_ms = cols["time"][-1] if cols["time"] else float("-inf")
            else:
                new = [i for i, t in enumerate(cols["time"]) if t > self._last_ms]
                if new:
                    self.history_source.stream(
                        {k: [v[i] for i in new] for k, v in cols.items()}, rollover=ROLLOVER
                    )
                    self._last_ms = cols["time"][new[-1]]
            self._last_tick = time.monotonic()
            if redraw or bins != dict(self.bins_source.data):
                self._bin_range.factors = bins["bin"]
                self.bins_source.data = bins
        self._set_status(_summary(hist, selection))

    def _refresh_options(self, frame: pd.DataFrame) -> None:
        keys = [
            (str(c), str(n), str(w)) for c, n, w in zip(
                frame["category"], frame["name"], frame["worker"], strict=True
            )
        ]
        keys.sort(key=lambda k: (CATEGORY_ORDER.get(k[0], 9), k[0], k[1], k[2] != "all", k[2]))
        options = [(f"{c}: {n} ({'all workers' if w == 'all' else w})", (c, n, w)) for c, n, w in keys]
        if options == list(self.selector.options):
            return
        with self._lock:
            current = self._selection
            if current not in keys:
                current = keys[0] if keys else None
                self._selection, self._reset = current, True
        self._quiet = True
        try:
            self.selector.options = options
            self.selector.value = current
        finally:
            self._quiet = False

    def _set_status(self, text: str) -> None:
        if not self._closed:
            self.status.value = f"<small>{text} · {time.strftime('%H:%M:%S')}</small>"


def rates_html(metrics: pd.DataFrame | None) -> str:
    """The app's input rate and output rate (the last complete second) as one line."""
    rate_in, rate_out = io_rates(metrics)
    return (f"<b>input rate</b> {html.escape(rate_text(rate_in))} (read by sources) · "
            f"<b>output rate</b> {html.escape(rate_text(rate_out))} (reaching sinks)")


def _summary(hist: pd.DataFrame, selection: tuple[str, str, str]) -> str:
    category, name, worker = selection
    label = html.escape(f"{category} {name} ({worker})")
    if hist.empty:
        return f"{label}: no complete second yet"
    last = hist.iloc[-1]
    p99 = "–" if pd.isna(last["p99_us"]) else f"{last['p99_us']:.1f} µs"
    what = {"pipeline": "input rate ", "sink": "output rate "}.get(category, "")
    return f"{label}: {what}{last['rate']:.0f} msg/s, p99 {p99} (last second)"


def dashboard(
    app: Any, interval: float = INTERVAL, window: str = "5min", load_bokehjs: bool = True
) -> Dashboard:
    """A live latency dashboard for `app`; display it (last expression of a cell).

    BokehJS is published inline into the notebook once per kernel (no CDN).
    """
    if load_bokehjs:
        bokeh_widget.load_bokehjs()
    return Dashboard(app, interval=interval, window=window)
