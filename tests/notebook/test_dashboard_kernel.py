"""The live dashboard in a real kernel, the echo guard, and the standalone HTML report.

The App is a small fake over a real MetricsStore fed synthetic worker deltas:
the dashboard only ever talks to an App through these seven members.
"""

from __future__ import annotations

import json
import re
import time

from bokeh.core.serialization import Serializer
from bokeh.document.events import ColumnsStreamedEvent, ModelChangedEvent
from bokeh.models import ColumnDataSource, Range1d
from bokeh.plotting import figure
from jupyter_bokeh import BokehModel
from nbkernel import code_notebook

from wallaroo_nb.metrics.recorder import Recorder
from wallaroo_nb.metrics.store import MetricsStore
from wallaroo_nb.notebook.bokeh_widget import EchoSafeBokehModel
from wallaroo_nb.notebook.report import write_report

FAKE_APP = '''
import random, threading, time
from wallaroo_nb.metrics.recorder import Recorder
from wallaroo_nb.metrics.store import MetricsStore

class FakeApp:
    """The App members the dashboard uses, over a real MetricsStore."""
    name = "fake"
    def __init__(self):
        self.store = MetricsStore()
        self.running = True
    def workers(self):  # the columns the keys-per-worker bars read (app.workers())
        import pandas as pd
        return pd.DataFrame([(i, 100 + i, "here", 128, 10 * i, 0, 0, 0, "", 0.0)
                             for i in range(2)], columns=["worker", "pid", "host", "slots",
                             "keys", "state_bytes", "events_in", "events_out", "busy_step",
                             "busy_s"])
    def metrics(self, window="5min"):
        return self.store.frame(window)
    def metrics_history(self, category, name, worker="all", window="5min"):
        return self.store.history(category, name, worker, window)
    def metrics_bins(self, category, name, worker="all", window="5min"):
        return self.store.bins(category, name, worker, window)
    def metrics_names(self):
        return self.store.series_names()

def feed(store, stop):
    """Two fake workers sending deltas five times a second until `stop` is set."""
    recorders = {"w1": Recorder(), "w2": Recorder()}
    while not stop.wait(0.2):
        for worker, r in recorders.items():
            for _ in range(40):
                r.record("pipeline", "wc", int(random.lognormvariate(11, 1)))
            r.record("computation", "split", 2_000, 40)
            store.add(worker, r.take_delta(), time.time())

app = FakeApp()
stop_feeding = threading.Event()
feeder = threading.Thread(target=feed, args=(app.store, stop_feeding), daemon=True)
feeder.start()
time.sleep(1.2)  # at least one complete second of data
'''


def test_dashboard_streams_while_running_and_stops_with_the_app(run_notebook):
    nb = run_notebook(code_notebook(
        FAKE_APP,
        "from wallaroo_nb.notebook.dashboard import dashboard\n"
        "box = dashboard(app)\n"
        "box",
        # This cell blocks the kernel for 3 s; the dashboard thread must keep streaming.
        "rows = lambda: len(box.history_source.data['time'])\n"
        "n0 = rows()\n"
        "time.sleep(3.2)\n"
        "n1 = rows()\n"
        "assert box.updating\n"
        "assert n1 >= n0 + 2, (n0, n1)\n"
        "t = list(box.history_source.data['time'])\n"
        "assert t == sorted(set(t)), 'rows must be unique seconds, in order'\n"
        "assert box.selector.value == ('pipeline', 'wc', 'all')\n"
        "assert len(box.selector.options) == 6  # 2 series x (all, w1, w2)\n"
        "assert box.bins_source.data['bin'] and abs(sum(box.bins_source.data['percent']) - 100) < 1e-6\n"
        "assert box.workers.source.data['label'] == ['0 keys · 128 slots', '10 keys · 128 slots']\n"
        "print('grew', n0, n1)\n"
        # choosing another series in the dropdown reloads the plots with its history
        "box.selector.value = ('computation', 'split', 'w1')\n"
        "time.sleep(1.5)\n"
        "p50 = [p for p in box.history_source.data['p50_us'] if p == p]\n"
        "assert p50 and set(p50) == {2.0}, p50",
        "app.running = False\n"
        "assert box.wait_stopped(5), 'the update thread must exit once the app stops'\n"
        "n2 = rows()\n"
        "time.sleep(1.5)\n"
        "assert rows() == n2, 'no updates after the app stopped'\n"
        "assert 'app stopped' in box.status.value\n"
        "print('stopped at', n2)",
        "stop_feeding.set(); feeder.join(5)\n"
        "box.close()\n"
        "assert not feeder.is_alive() and not box.updating",
        kernel_name="wallaroo_nb",
    ))
    setup, show, grow, stop, _ = nb.cells
    outputs = [o for o in show.outputs if o.output_type == "display_data"]
    scripts = [o.data.get("application/javascript", "") for o in outputs]
    bokehjs = max(scripts, key=len)
    assert len(bokehjs) > 500_000, "BokehJS itself must be published inline"
    assert "cdn.bokeh.org" not in bokehjs
    widget = [o for o in show.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widget, "the dashboard displays as a widget"
    assert "grew" in grow.outputs[0].text and "stopped at" in stop.outputs[0].text


def test_dashboard_close_stops_it_and_it_never_keeps_the_app_alive(run_notebook):
    run_notebook(code_notebook(
        FAKE_APP,
        "import gc, weakref\n"
        "from wallaroo_nb.notebook.dashboard import dashboard\n"
        "box = dashboard(app, interval=0.2)\n"
        "time.sleep(1)\n"
        "assert box.updating\n"
        "box.close()\n"
        "assert box.wait_stopped(3), 'close() must stop the thread'\n"
        "n = len(box.history_source.data['time'])\n"
        "time.sleep(1)\n"
        "assert len(box.history_source.data['time']) == n\n",
        "box2 = dashboard(app, interval=0.2)\n"
        "time.sleep(0.5)\n"
        "alive = weakref.ref(app)\n"
        "store = app.store\n"
        "del app\n"
        "deadline = time.monotonic() + 3\n"
        "while alive() is not None and time.monotonic() < deadline:\n"
        "    gc.collect(); time.sleep(0.05)\n"
        "assert alive() is None, 'the dashboard must not keep the app alive'\n"
        "assert box2.wait_stopped(3)\n"
        "assert 'app gone' in box2.status.value, box2.status.value\n"
        "stop_feeding.set(); feeder.join(5); box2.close()",
        kernel_name="wallaroo_nb",
    ))


def echo(doc, event) -> dict:
    """An event as jupyter_bokeh's browser view sends it back: encoded, as JSON."""
    rep = Serializer(references=doc.models).encode(event)
    return json.loads(json.dumps({**rep, "event": "jsevent"}))


def test_echoed_stream_and_data_changes_are_ignored():
    source = ColumnDataSource({"x": [1.0, 2.0]})
    other = Range1d(0, 1)
    fig = figure(x_range=other)
    fig.line("x", "x", source=source)

    plain = BokehModel(fig)  # what jupyter_bokeh does without the guard
    source.stream({"x": [3.0]})
    plain._sync_model(plain, echo(source.document, ColumnsStreamedEvent(
        source.document, source, "data", {"x": [3.0]}, None)), [])
    assert list(source.data["x"]) == [1.0, 2.0, 3.0, 3.0], "the echo doubles unguarded data"
    source.document.remove_on_change(plain)  # detach it (BokehModel.close cannot run twice)

    source.data = {"x": [1.0, 2.0]}
    guarded = EchoSafeBokehModel(fig, kernel_owned={source: ["data"]})
    source.stream({"x": [3.0]})
    streamed = echo(source.document, ColumnsStreamedEvent(
        source.document, source, "data", {"x": [3.0]}, None))
    guarded._sync_model(guarded, streamed, [])
    assert list(source.data["x"]) == [1.0, 2.0, 3.0]
    # a late echo of an earlier `data` value must not roll the kernel's data back
    stale = echo(source.document, ModelChangedEvent(
        source.document, source, "data", {"x": [1.0]}))
    guarded._sync_model(guarded, stale, [])
    assert list(source.data["x"]) == [1.0, 2.0, 3.0]
    # changes the browser really makes (here a range) still apply
    moved = echo(other.document, ModelChangedEvent(other.document, other, "start", -5.0))
    guarded._sync_model(guarded, moved, [])
    assert other.start == -5.0
    guarded.close()
    guarded.close()  # idempotent, unlike BokehModel.close


def test_a_view_that_drew_the_document_asks_once_for_all_the_data():
    fig = figure()
    fig.line([0, 1], [0, 1])
    model = EchoSafeBokehModel(fig)
    assert not model.take_redraw()
    # what BokehJS sends once a view has drawn the document (seen from jupyter_bokeh 4.1)
    ready = {"kind": "MessageSent", "msg_type": "bokeh_event", "event": "jsevent",
             "msg_data": {"type": "event", "name": "document_ready", "values": {"type": "map"}}}
    model._sync_model(model, ready, [])
    assert model.take_redraw() and not model.take_redraw()
    model.close()


def test_report_is_one_standalone_html_file_with_the_data(tmp_path):
    store = MetricsStore()
    now = time.time()
    for i in range(9):  # rates 100..108 in the last nine complete seconds
        r = Recorder()
        r.record("pipeline", "wc", 1_000 + 1_000 * i, 100 + i)
        store.add("w1", r.take_delta(), now - 9 + i)
    path = write_report(store, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "cdn.bokeh.org" not in text
    assert not re.search(r"<(script|link)[^>]+(src|href)=[\"']?https?:", text), "no remote resources"
    assert len(text) > 500_000, "BokehJS is inline"
    assert "pipeline: wc" in text
    docs = [json.loads(m) for m in re.findall(
        r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>', text, re.S)]
    rates = [v for d in docs for k, v in map_entries(d) if k == "rate"]
    assert rates and rates[0][:9] == [float(100 + i) for i in range(9)]


def map_entries(node):
    """Every (key, value) of every bokeh-serialized map inside node."""
    if isinstance(node, dict):
        if node.get("type") == "map":
            for k, v in node.get("entries", []):
                yield k, v
        for v in node.values():
            yield from map_entries(v)
    elif isinstance(node, list):
        for v in node:
            yield from map_entries(v)
