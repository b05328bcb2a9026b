"""The latency plots as bokeh figures, and a standalone HTML report of them.

The live dashboard builds its plots with `make_plots`; `write_report` writes
the same plots for every pipeline, computation and worker, and an App's
dataflow picture (as the live graph view draws it), into one HTML file with
BokehJS inline, for runs without Jupyter (no CDN, no server).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from bokeh.embed import file_html
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, FactorRange, LayoutDOM
from bokeh.plotting import figure
from bokeh.resources import INLINE

from .graph_plot import GraphPlot
from .graph_stats import edge_labels, look, node_stats
from .topology import topology

PERCENTILES = (  # column, legend, colour
    ("p50_us", "p50", "#1f77b4"),
    ("p95_us", "p95", "#2ca02c"),
    ("p99_us", "p99", "#ff7f0e"),
    ("p999_us", "p99.9", "#d62728"),
    ("p9999_us", "p99.99", "#9467bd"),
)
HISTORY_KEYS = ("time", "rate", *(c for c, _, _ in PERCENTILES))
RATE_TITLES = {  # what one message per second of each category's series is
    "pipeline": "input rate: messages read by the source per second",
    "sink": "output rate: messages reaching the sink per second",
    "computation": "calls per second",
    "worker": "messages handed on per second",
    "visible": "outputs handed to the driver per second",
    "source": "messages read per second",
}
RATE_NAME = "wallaroo-rate"
MIN_PLOT_US = 0.001  # 1 ns: the log axis cannot show 0
WIDTH = 760


def empty_history() -> dict[str, list]:
    """Columns of an empty history ColumnDataSource."""
    return {k: [] for k in HISTORY_KEYS}


def history_columns(df: pd.DataFrame) -> dict[str, list]:
    """A history DataFrame (store.history) as ColumnDataSource columns.

    `time` becomes milliseconds since the epoch of the naive wall-clock time,
    which bokeh's datetime axis shows as that wall-clock time.
    """
    out = {"time": [float(t) for t in (df["time"] - pd.Timestamp(0)) / pd.Timedelta(milliseconds=1)]}
    out["rate"] = [float(r) for r in df["rate"]]
    for col, _, _ in PERCENTILES:
        out[col] = [v if math.isnan(v) else max(v, MIN_PLOT_US) for v in map(float, df[col])]
    return out


def bins_columns(df: pd.DataFrame) -> dict[str, list]:
    """A bins DataFrame (store.bins) as ColumnDataSource columns."""
    return {
        "bin": [str(b) for b in df["bin"]],
        "percent": [float(p) for p in df["percent"]],
        "count": [int(c) for c in df["count"]],
    }


def rate_title(category: str | None) -> str:
    """The rate plot's title for a series of `category`: input rate for a pipeline,
    output rate for a sink, what is counted for the others."""
    return RATE_TITLES.get(category or "", "messages per second")


def make_plots(history: ColumnDataSource, bins: ColumnDataSource,
               category: str | None = None) -> tuple[LayoutDOM, FactorRange]:
    """Percentiles over time, the rate over time (titled for `category`, see
    `rate_title`; the figure is named RATE_NAME) and percent by bin, stacked.

    Returns the layout and the bin chart's FactorRange, whose factors must be
    set to the bin labels whenever `bins` changes.
    """
    tools = "pan,box_zoom,wheel_zoom,reset,save"
    lat = figure(
        height=260, width=WIDTH, x_axis_type="datetime", y_axis_type="log", tools=tools,
        title="latency percentiles", y_axis_label="µs",
    )
    for col, label, colour in PERCENTILES:
        lat.line("time", col, source=history, legend_label=label, color=colour, line_width=2)
    lat.legend.location = "top_left"
    lat.legend.orientation = "horizontal"
    lat.legend.click_policy = "hide"

    rate = figure(
        height=180, width=WIDTH, x_axis_type="datetime", x_range=lat.x_range, tools=tools,
        title=rate_title(category), y_axis_label="messages/s", name=RATE_NAME,
    )
    rate.line("time", "rate", source=history, color="#444444", line_width=2)
    rate.y_range.start = 0

    factors = FactorRange(factors=list(bins.data.get("bin", [])))
    by_bin = figure(
        height=220, width=WIDTH, x_range=factors, tools="save,hover",
        title="percent of messages by latency bin", y_axis_label="%",
        tooltips=[("latency", "@bin"), ("percent", "@percent{0.00}%"), ("messages", "@count")],
    )
    by_bin.vbar(x="bin", top="percent", source=bins, width=0.8, color="#1f77b4")
    by_bin.y_range.start = 0
    by_bin.xaxis.major_label_orientation = 0.8
    return column(lat, rate, by_bin), factors


def write_report(source: Any, path: str | Path, window: str = "5min", title: str = "") -> Path:
    """Write the plots for every series (all workers) and a summary table to one HTML file.

    `source` is an App (metrics, metrics_history, ...; its dataflow picture comes
    first) or a MetricsStore.
    """
    frame, history, bins, names = _queries(source)
    summary = frame(window=window)
    title = title or f"wallaroo_nb latency report ({window})"
    parts: list[LayoutDOM] = [
        Div(text=f"<h1>{html.escape(title)}</h1>"),
        Div(text=summary.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–")),
    ]
    if hasattr(source, "plan"):  # an App: the dataflow picture with its numbers
        parts.append(Div(text="<h2>dataflow</h2>"))
        parts.append(dataflow_figure(source, window))
    for category, name in names():
        hist_src = ColumnDataSource(history_columns(history(category, name, "all", window=window)))
        bins_src = ColumnDataSource(bins_columns(bins(category, name, "all", window=window)))
        plots, _ = make_plots(hist_src, bins_src, category)
        parts.append(Div(text=f"<h2>{html.escape(category)}: {html.escape(str(name))}</h2>"))
        parts.append(plots)
    out = Path(path)
    out.write_text(file_html(column(*parts), resources=INLINE, title=title), encoding="utf-8")
    return out


def dataflow_figure(app: Any, window: str) -> LayoutDOM:
    """The live view's dataflow picture with how many messages went over `window`."""
    flow = None
    if getattr(app, "running", False):
        try:
            flow = app.flow()
        except Exception:  # a report of a stopping app goes without flow counts
            flow = None
    plot = GraphPlot(topology(app.plan), title=f"{app.name}: messages, p99 and errors "
                     f"over the last {window}")
    seen = look(app, window, flow=flow)
    plot.set_numbers(node_stats(plot.topo, seen), edge_labels(plot.topo, seen, live=False))
    return plot.figure


def _queries(source: Any) -> tuple[Callable, ...]:
    if hasattr(source, "metrics_history"):
        return source.metrics, source.metrics_history, source.metrics_bins, source.metrics_names
    return source.frame, source.history, source.bins, source.series_names
