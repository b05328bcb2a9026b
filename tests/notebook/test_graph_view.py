"""The dataflow picture: its layout from the plan, the numbers on it, `app.flow()` (the
worker op behind the counts), the live view and the App's display in a real kernel,
and the same picture in the HTML report."""

from __future__ import annotations

import math
import time

import pandas as pd
import pytest
from bokeh.models import Arrow
from nbkernel import code_notebook, text_output

import wallaroo_nb as w
from wallaroo_nb.notebook.graph_plot import ERROR_LINE, GraphPlot
from wallaroo_nb.notebook.graph_stats import CountRates, Look, edge_labels, node_stats
from wallaroo_nb.notebook.topology import topology
from wallaroo_nb.windows import Aggregation, count_windows, range_windows

WIDGET = "application/vnd.jupyter.widget-view+json"


class Count(Aggregation):
    def initial_accumulator(self):
        return 0

    def update(self, value, acc):
        return acc + 1

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return (key, acc)


class Total:
    def __init__(self):
        self.n = 0


@w.computation("parse")
def parse(x):
    return x


@w.computation_multi("twice")
def twice(x):
    return [x, x]


@w.state_computation("total", state=Total)
def total(x, t):
    t.n += x
    return t.n


def merged_plan():
    """Two sources merged; a key_by into a count window with two sinks; a collect into a
    state step."""
    a = w.source("a", w.IterableSourceConfig("numbers a", [1, 2])).to(parse)
    b = w.source("b", w.IterableSourceConfig("numbers b", [3])).to(twice)
    both = a.merge(b)
    windows = both.key_by(lambda x: x % 2).to(count_windows(2).over(Count)).to_sinks(
        [w.CollectorSinkConfig(), w.CallbackSinkConfig(lambda values: None)])
    totals = both.collect().to(total).to_sink(w.CollectorSinkConfig())
    return w.build_application("merged", windows, totals)


def test_topology_lays_the_plan_out_left_to_right_and_marks_routing_hops():
    topo = topology(merged_plan())
    by_name = {n.name: n for n in topo.nodes}
    assert {n: by_name[n].column for n in by_name} == {
        "numbers a": 0, "numbers b": 0, "parse": 1, "twice": 1, "Count": 2, "total": 2,
        "collector": 3, "callback": 3, "collector (2)": 3}
    assert by_name["Count"].label == "count window" and by_name["twice"].label == (
        "computation (multi)")
    hops = {(topo.node(e.src).name, topo.node(e.dst).name): e.hop for e in topo.edges}
    assert hops == {
        ("numbers a", "parse"): "fused", ("numbers b", "twice"): "fused",
        ("parse", "Count"): "key_by", ("twice", "Count"): "key_by",
        ("parse", "total"): "one partition", ("twice", "total"): "one partition",
        ("Count", "collector"): "fused", ("Count", "callback"): "fused",
        ("total", "collector (2)"): "fused"}
    # within a column, rows are one apart and centred; children follow their parents' order
    rows = sorted(by_name[n].row for n in ("collector", "callback", "collector (2)"))
    assert rows == [-1.0, 0.0, 1.0]
    assert by_name["Count"].row > by_name["total"].row


def test_the_picture_draws_routing_hops_dashed_and_boxes_with_errors_red():
    plot = GraphPlot(topology(merged_plan()))
    arrows = {(a.line_color, a.line_dash): len(a.source.data["x0"])
              for a in plot.figure.center if isinstance(a, Arrow)}
    assert arrows == {("#777777", "solid"): 5, ("#d62728", "dashed"): 2, ("#9467bd", "dashed"): 2}
    total = next(n.key for n in plot.topo.nodes if n.name == "total")
    plot.set_numbers({total: ("p99 1 µs\n2 errors", 2)}, {})
    lines = dict(zip(plot.nodes.data["name"], plot.nodes.data["line"]))
    assert lines["total"] == ERROR_LINE and lines["parse"] != ERROR_LINE


def frame(rows: list) -> pd.DataFrame:
    cols = ["category", "name", "worker", "count", "rate_1s", "p99_us"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows], columns=cols)


def test_numbers_come_from_metrics_counters_and_flow_counts():
    topo = topology(merged_plan())
    key = {n.name: n.key for n in topo.nodes}
    seen = Look(
        metrics=frame([
            ("computation", "parse", "all", 20, 10.0, 3.0),
            ("computation", "twice", "all", 8, 4.0, 1500.0),
            ("computation", "total", "all", 40, 20.0, 2.5),
            ("pipeline", "a", "all", 30, 15.0, 800.0),
            ("pipeline", "b", "all", 30, 15.0, 2000.0),
            ("sink", "collector", "all", 7, 3.0, 900.0)]),
        counters=pd.DataFrame([("computation", "total", "all", "errors", 3),
                               ("computation", "Count", "all", "late", 2)],
                              columns=["category", "name", "worker", "event", "count"]),
        totals={key["numbers a"]: 21, key["collector"]: 7},
        rates={key["numbers a"]: 10.5, key["collector"]: 3.5})
    stats = node_stats(topo, seen)
    assert stats[key["numbers a"]] == ("21 read", 0)
    assert stats[key["twice"]] == ("p99 1.5 ms\n0 errors", 0)
    assert stats[key["total"]] == ("p99 2.5 µs\n3 errors", 3)
    assert stats[key["Count"]] == ("0 errors\n2 late", 0)
    # a sink shows its own p99 (the sink category); 7 taken since the start
    assert stats[key["collector"]] == ("p99 900 µs from source\n7 out", 0)
    # without a sink row, its pipeline's: a merged pipeline's slower part
    assert stats[key["collector (2)"]][0] == "p99 2 ms from source"

    live = {(topo.node(s).name, topo.node(d).name): t for (s, d), t in
            edge_labels(topo, seen).items()}
    assert live[("numbers a", "parse")] == "10/s"  # parse's calls: its only input
    assert live[("numbers b", "twice")] == "4/s"
    assert live[("parse", "Count")] == "key_by"  # a window counts no input: no number
    assert live[("parse", "total")] == "one partition"  # two inputs: no share known
    assert live[("Count", "collector")] == "3.5/s"  # the sink's count, from flow
    assert live[("Count", "callback")] == ""  # no flow count for it in this look
    done = {(topo.node(s).name, topo.node(d).name): t for (s, d), t in
            edge_labels(topo, seen, live=False).items()}
    assert done[("numbers a", "parse")] == "20 msgs" and done[("Count", "collector")] == "7 msgs"


def test_rates_from_counts_span_a_few_seconds():
    rates = CountRates(span=3.0)
    assert rates.update(0.0, {"s": 0}) == {}
    assert rates.update(1.0, {"s": 100}) == {"s": 100.0}
    rates.update(2.0, {"s": 300})
    assert rates.update(4.0, {"s": 700}) == {"s": 200.0}  # from t=2: (700-300)/2


def test_flow_counts_what_sources_read_and_sinks_took_and_window_watermarks():
    readings = [{"k": i % 2, "t": w.seconds(i)} for i in range(20)]
    with w.run(w.source("r", w.IterableSourceConfig("readings", readings,
                                                    event_time=lambda r: r["t"]))
               .key_by(lambda r: r["k"]).to(range_windows(w.seconds(5)).over(Count))
               .to_sink(w.CollectorSinkConfig()), workers=2) as app:
        app.wait(timeout=60)
        flow = app.flow()
        n_out = len(app.results())
    sink = next(s.id for s in app.plan.steps if s.kind == "sink")
    window = next(s.id for s in app.plan.steps if s.kind == "window")
    assert flow["sources"] == {0: 20}
    assert flow["sinks"] == {sink: n_out} and n_out == 8  # 2 keys x 4 windows of 5 s
    assert flow["watermarks"] == {window: [math.inf, math.inf]}  # the stream is over


def test_report_has_the_dataflow_picture_with_its_numbers(tmp_path):
    p = (w.source("words", w.IterableSourceConfig("lines", ["a b", "b c", "c"]))
         .to(twice).key_by(lambda x: x).to(total_words).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2) as app:
        app.wait(timeout=60)
        time.sleep(1.5)  # the last metrics deltas (about one a second) reach the driver
        html = app.report(tmp_path / "report.html").read_text()
    assert "wallaroo-graph-nodes" in html and "wallaroo-graph-edges" in html
    for text in ('"lines"', '"twice"', '"count words"', '"3 read"', '"6 msgs"',
                 '"key_by\\n6 msgs"', 'from source\\n6 out"'):
        assert text in html, text


@w.state_computation("count words", state=Total)
def total_words(word, t):
    t.n += 1
    return (word, t.n)


LIVE_APP = '''
import time
import wallaroo_nb as w

class Total:
    def __init__(self):
        self.n = 0

@w.computation("parse")
def parse(x):
    return x

@w.state_computation("total", state=Total)
def total(x, t):
    t.n += 1
    return t.n

app = w.run(w.source("numbers", w.IterableSourceConfig("numbers", list(range(400)), rate=100))
            .to(parse).key_by(lambda x: x % 4).to(total).to_sink(w.CollectorSinkConfig()),
            workers=2)
print("PIDS", *app.pids)
'''

SHOW_APP = '''
%load_ext wallaroo_nb
%wallaroo show app
'''

WATCH = '''
from ipywidgets.widgets.widget import _instances
shown = _instances[app._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]]
graph_part, workers_part = shown.children  # the App's display: summary and graph, then bars
g = app.graph()
display(g)
labels = lambda: list(g.graph.edge_labels.data["text"])
deadline = time.monotonic() + 30
while not any("/s" in t for t in labels()):
    assert time.monotonic() < deadline, labels()
    time.sleep(0.1)
first = labels()
while labels() == first:  # this cell blocks the kernel: the view's thread goes on
    assert time.monotonic() < deadline, first
    time.sleep(0.1)
print("moved", first, labels())
keys = lambda: dict(zip(workers_part.source.data["worker"], workers_part.source.data["keys"]))
while keys() != {"worker 0": 2, "worker 1": 2}:  # x % 4: two keys on each worker
    assert time.monotonic() < deadline, keys()
    time.sleep(0.1)
print("bars", workers_part.source.data["label"])
app.wait(timeout=60)
time.sleep(1.5)  # the last metrics deltas (about one a second) and a last look
app.stop()
assert g.wait_stopped(10), "the view's thread must end with the app"
final = labels()
print("final", final)
assert final == ["400 msgs", "key_by\\n400 msgs", "400 msgs"], final
assert "app stopped" in g.status.value
assert workers_part.wait_stopped(5) and graph_part.wait_stopped(5)
shown.close()
'''

CLOSE = '''
again = w.run(w.source("n", w.IterableSourceConfig("n", list(range(100)), rate=50))
              .to_sink(w.CollectorSinkConfig()), workers=1)
g2 = again.graph()
assert g2.updating
g2.close()
assert g2.wait_stopped(3) and again.running, "close() stops the view, not the app"
again.stop()
'''


def test_app_display_is_a_live_picture_that_moves_then_stops(run_notebook):
    nb = run_notebook(code_notebook(LIVE_APP, SHOW_APP, WATCH, CLOSE, kernel_name="python3"),
                      timeout=120)
    start, show, watch, close = nb.cells
    data = [o.data for o in show.outputs if o.output_type == "execute_result"][0]
    assert WIDGET in data, "the App (here from %wallaroo show) displays as a live widget"
    assert "wallaroo_nb app" in data["text/html"]  # the summary, for frontends without widgets
    assert data["text/plain"].startswith("<App 'app'")
    assert "moved" in text_output(watch) and "final" in text_output(watch)
    assert "bars ['2 keys · 128 slots', '2 keys · 128 slots']" in text_output(watch)
    assert any(WIDGET in o.get("data", {}) for o in watch.outputs)


def test_app_repr_outside_a_kernel_stays_plain():
    with w.run(w.source("s", w.IterableSourceConfig("s", [1])).to_sink(w.CollectorSinkConfig()),
               workers=1) as app:
        assert app._repr_mimebundle_() is None  # IPython then uses _repr_html_ and repr
        assert "wallaroo_nb app" in app._repr_html_()


def test_graph_of_an_unknown_or_wrong_step_kind_for_the_timeline_says_why():
    with w.run(w.source("s", w.IterableSourceConfig("s", [1, 2])).key_by(lambda x: x)
               .to(count_windows(2).over(Count)).to_sink(w.CollectorSinkConfig()),
               workers=1) as app:
        with pytest.raises(ValueError, match="'Count' is a count window; window_timeline"):
            app.window_timeline("Count")
        with pytest.raises(KeyError, match="no step named 'nope'"):
            app.window_timeline("nope")
