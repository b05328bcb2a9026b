"""The live picture of a running app: its dataflow graph, with numbers that move.

`app.graph()` is the picture alone; displaying the App itself (the last
expression of a cell, `%wallaroo show NAME`) shows the summary table above it and
the keys per worker below it (workers_plot.py).
A daemon thread (see live.py) asks the App about once a second for metrics,
counters and flow counts and rewrites the labels: edges their messages per
second, steps their p99 latency and errors over the window (see graph_stats.py).
It stops when the app stops (after a last update with the final numbers), is
garbage collected, or the view is closed.
"""

from __future__ import annotations

import html
import threading
import time
from typing import Any, Optional

import ipywidgets as widgets

from . import bokeh_widget
from .bokeh_widget import FIRST_CHANGE_AFTER_S, EchoSafeBokehModel
from .graph_plot import GraphPlot
from .graph_stats import CountRates, edge_labels, look, node_stats
from .live import LiveBox
from .summary import summary_html
from .topology import topology
from .workers_plot import workers_view

INTERVAL = 1.0
WINDOW = "1min"
SETTLE_S = 0.5  # before the last look at a stopped app
LEGEND = ("<small>solid arrow: a direct call in the same process · dashed red: "
          "<b>key_by</b>, each message goes to the worker that owns its key · dashed "
          "purple: one partition · numbers on arrows: messages per second</small>")


class GraphView(LiveBox):
    """The live dataflow picture; `close()` stops its thread. Build with `graph_view`."""

    _thread_name = "wallaroo_nb-graph"
    _first_wait = FIRST_CHANGE_AFTER_S  # see EchoSafeBokehModel

    def __init__(self, app: Any, interval: float = INTERVAL, window: str = WINDOW,
                 summary: bool = False) -> None:
        self._window = window
        self._lock = threading.RLock()
        self._rates = CountRates()
        self._last_flow: Optional[dict] = None
        self.graph = GraphPlot(topology(app.plan),
                               title=f"{app.name}: p99 and errors over the last {window}")
        self.plot = EchoSafeBokehModel(self.graph.figure, lock=self._lock, kernel_owned={
            self.graph.nodes: ["data"], self.graph.edge_labels: ["data"]})
        self.summary = widgets.HTML(_safe_summary(app) if summary else "")
        self.status = widgets.HTML("starting…")
        parts = [self.summary] if summary else []
        super().__init__(parts + [self.plot, widgets.HTML(LEGEND), self.status])
        self._with_summary = summary
        self._start_live(app, interval)

    def _parts(self) -> list:
        return [self.summary, self.plot, self.status]

    def _tick(self, app: Any, running: bool, tick: int) -> None:
        """Running: rates on the edges. Stopped: how many messages went (a last look)."""
        if running:
            self._last_flow = _flow(app) or self._last_flow
        else:  # the workers' last metrics reach the App while it stops: give them a moment
            self._wake.wait(SETTLE_S)
            self._last_flow = final_flow(app, self._last_flow)
        seen = look(app, self._window, self._rates if running else None, time.monotonic(),
                    self._last_flow)
        topo = self.graph.topo
        stats, labels = node_stats(topo, seen), edge_labels(topo, seen, live=running)
        with self._lock:  # whole columns each time: a view drawn late catches up at once
            self.plot.take_redraw()
            self.graph.set_numbers(stats, labels)
        if self._with_summary and not self._closed:
            self.summary.value = _safe_summary(app)
        self._set_status()


class AppView(widgets.VBox):
    """The App's display: its live views one above the other; `close()` closes them
    all (each also stops by itself when the app stops)."""

    def close(self) -> None:
        for view in self.children:
            view.close()
        super().close()


def _flow(app: Any) -> Optional[dict]:
    try:
        return app.flow()
    except Exception:  # stopping, or a worker busy: this look goes without flow counts
        return None


def final_flow(app: Any, last: Optional[dict]) -> Optional[dict]:
    """A stopped app's flow counts: the last look's, made exact where the app's final
    status says (it counts what all sources read and all sinks took when it stopped: the
    exact totals of an app with one source or one sink)."""
    try:
        status = app.status()
    except Exception:
        return last
    flow = {"sources": dict((last or {}).get("sources", {})),
            "sinks": dict((last or {}).get("sinks", {}))}
    sinks = [s.id for s in app.plan.steps if s.kind == "sink"]
    if len(app.plan.sources) == 1 and status.get("events_in") is not None:
        flow["sources"][app.plan.sources[0].id] = status["events_in"]
    if len(sinks) == 1 and status.get("events_out") is not None:
        flow["sinks"][sinks[0]] = status["events_out"]
    return flow


def _safe_summary(app: Any) -> str:
    try:
        metrics = app.metrics("1min")
    except Exception:
        metrics = None
    try:
        return summary_html(app.status(), metrics)
    except Exception as e:
        return f"<small>no status: {html.escape(str(e))}</small>"


def graph_view(app: Any, interval: float = INTERVAL, window: str = WINDOW,
               summary: bool = False, load_bokehjs: bool = True) -> GraphView:
    """A live dataflow picture of `app`; display it (last expression of a cell)."""
    if load_bokehjs:
        bokeh_widget.load_bokehjs()
    return GraphView(app, interval=interval, window=window, summary=summary)


def app_view_bundle(app: Any) -> Optional[dict]:
    """The App's display in a kernel: live views (summary and graph, keys per worker
    below), as a mime bundle with the static summary as HTML for frontends without
    widgets. Outside a kernel, None: IPython then uses the App's _repr_html_ and repr."""
    if not bokeh_widget.in_kernel():
        return None
    view = graph_view(app, summary=True)
    box = AppView([view, workers_view(app, load_bokehjs=False)])
    bundle = box._repr_mimebundle_()
    data = dict(bundle[0] if isinstance(bundle, tuple) else bundle)
    data["text/html"] = view.summary.value
    data["text/plain"] = repr(app)
    return data
