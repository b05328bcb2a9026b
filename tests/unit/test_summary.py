"""The App's notebook summary and the dashboard's rate line: what they show (input rate
and output rate under their own names), and that they survive missing data."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pandas as pd
from bokeh.models import ColumnDataSource

from wallaroo_nb.metrics.recorder import Recorder
from wallaroo_nb.metrics.store import MetricsStore
from wallaroo_nb.notebook.dashboard import rates_html
from wallaroo_nb.notebook.report import RATE_NAME, empty_history, make_plots, rate_title
from wallaroo_nb.notebook.summary import summary_html

RUNNING = {"name": "wc", "running": True, "workers": 2, "results": 90, "errors": 3,
           "uptime_s": 12.5, "events_in": 12345, "events_out": 9000}
STOPPED = {"name": "wc", "running": False, "workers": 2, "results": 90, "errors": 3,
           "uptime_s": 40.0}


class Tables(HTMLParser):
    """Every table as a list of rows of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: list = []
        self.cell: list | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def overview(text: str) -> dict:
    """The first table as {header: value}."""
    head, values = Tables(text).tables[0]
    return dict(zip(head, values, strict=True))


def store_with(pipelines: dict, now: float) -> MetricsStore:
    """A store with, per pipeline name, 1000 messages at the given latency (ns) in the
    last complete second, plus a computation series that must not count as a pipeline."""
    store = MetricsStore()
    for name, latency_ns in pipelines.items():
        r = Recorder()
        r.record("pipeline", name, latency_ns, 1000)
        r.record("computation", "split", 50_000_000, 10)
        store.add("0", r.take_delta(), now - 1)
    return store


def test_running_app_with_one_pipeline():
    now = time.time()
    frame = store_with({"words": 250_000}, now).frame("1min", now=now)
    cells = overview(summary_html(RUNNING, frame))
    assert cells == {
        "workers alive": "2 of 2", "events in": "12,345", "events out": "9,000",
        "input rate": "1,000 msg/s", "output rate": "–", "errors": "3", "p99 (1min)": "250 µs",
    }


def test_several_pipelines_show_the_worst_p99_and_a_row_each():
    now = time.time()
    frame = store_with({"a": 250_000, "b": 3_000_000}, now).frame("1min", now=now)
    text = summary_html(RUNNING, frame)
    cells = overview(text)
    assert cells["p99 (1min)"] == "3 ms" and cells["input rate"] == "2,000 msg/s"
    per_pipe = Tables(text).tables[1]
    assert per_pipe[0] == ["pipeline", "input rate", "p99 (1min)"]
    assert per_pipe[1:] == [["a", "1,000 msg/s", "250 µs"], ["b", "1,000 msg/s", "3 ms"]]


def test_empty_metrics_and_a_stopped_app():
    for frame in (MetricsStore().frame("1min"), pd.DataFrame(), None):
        text = summary_html(STOPPED, frame)
        cells = overview(text)
        assert "(stopped" in text
        assert cells["workers alive"] == "0 of 2"
        assert cells["events in"] == cells["events out"] == "–"
        assert cells["input rate"] == cells["output rate"] == cells["p99 (1min)"] == "–"
        assert cells["errors"] == "3"
        assert len(Tables(text).tables) == 1


def test_series_without_data_in_the_window_shows_no_p99():
    now = time.time()
    store = store_with({"words": 250_000}, now - 120)  # only data older than the window
    cells = overview(summary_html(RUNNING, store.frame("1min", now=now)))
    assert cells["p99 (1min)"] == "–"


def test_reported_alive_count_and_escaping():
    status = dict(RUNNING, name="<script>x</script>", workers_alive=1)
    text = summary_html(status, pd.DataFrame())
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert overview(text)["workers alive"] == "1 of 2"


def test_an_app_on_a_dask_cluster_links_its_dashboard():
    on_dask = dict(RUNNING, dask_dashboard="http://127.0.0.1:8787/status?a=1&b=2",
                   dask_scheduler="tcp://127.0.0.1:8786")
    html = summary_html(on_dask, None)
    assert "href='http://127.0.0.1:8787/status?a=1&amp;b=2'" in html
    assert "scheduler tcp://127.0.0.1:8786" in html and "Dask dashboard" in html
    assert "Dask" not in summary_html(RUNNING, None)  # local engines: no such line


def test_input_rate_and_output_rate_are_shown_apart():
    """A filtering pipeline: sources read 1,000 messages a second, sinks take 30 + 3."""
    now = time.time()
    store = MetricsStore()
    r = Recorder()
    r.record("pipeline", "readings", 100_000, 1000)
    r.record("sink", "alerts", 200_000, 30)
    r.record("sink", "log", 200_000, 3)
    store.add("0", r.take_delta(), now - 1)
    frame = store.frame("1min", now=now)
    cells = overview(summary_html(RUNNING, frame))
    assert (cells["input rate"], cells["output rate"]) == ("1,000 msg/s", "33 msg/s")
    assert "throughput" not in summary_html(RUNNING, frame)
    line = rates_html(frame)
    assert "<b>input rate</b> 1,000 msg/s" in line and "<b>output rate</b> 33 msg/s" in line
    assert "<b>input rate</b> – " in rates_html(None)


def test_the_dashboards_rate_plot_is_named_for_its_series():
    assert rate_title("pipeline").startswith("input rate")
    assert rate_title("sink").startswith("output rate")
    assert rate_title("computation") == "calls per second"
    history = ColumnDataSource(empty_history())
    bins = ColumnDataSource({"bin": [], "percent": [], "count": []})
    layout, _ = make_plots(history, bins, "sink")
    assert layout.select_one({"name": RATE_NAME}).title.text == rate_title("sink")
