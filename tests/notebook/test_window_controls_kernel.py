"""app.window_controls(step) on a real app in a real kernel: clicking "close window"
emits the open windows (all keys, or the chosen one) and the live table shows them;
the refresh thread ends with the app and no worker outlives the notebook."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from types import SimpleNamespace

import pandas as pd
import pytest
from nbkernel import code_notebook, text_output
from proctools import pid_alive

import wallaroo_nb as w
from wallaroo_nb.notebook.window_controls import newest_first, window_controls
from wallaroo_nb.windows import Aggregation, range_windows

START = '''
import time
import wallaroo_nb as w
from wallaroo_nb.windows import Aggregation, event_windows

class Ticks:
    def initial_value(self):
        return 0
    def apply(self, v):
        return v + 1

class Window(Aggregation):
    """Defined in a cell: travels to the workers by value."""
    def name(self):
        return "per key"
    def initial_accumulator(self):
        return 0
    def update(self, v, n):
        return n + 1
    def combine(self, a, b):
        return a + b
    def output(self, key, n, window):
        return {"key": key, "start": window.start, "end": window.end, "messages": n}

p = (w.source("ticks", w.GenSourceConfig(Ticks(), rate=200))
     .key_by(lambda v: f"k{v % 3}").to(event_windows().over(Window))
     .to_sink(w.CollectorSinkConfig()))
app = w.run(p, workers=2)
print("PIDS", *app.pids)

def wait_until(cond, what, limit=30):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
'''

SHOW = '''
wait_until(lambda: len(app.state("per key")) == 3, "three keys with open windows")
controls = app.window_controls("per key")
'''

# The clicks run in this cell, which then blocks the kernel while it waits: the
# trigger and the refresh happen on the controls' own threads.
CLICK = '''
wait_until(lambda: len(controls.key.options) == 4, f"keys in the chooser: {controls.key.options}")
assert controls.key.value == "all keys"
assert app.results() == [] and "no output yet" in controls.table.value
controls.button.click()
wait_until(lambda: len(controls.frame) == 3, "the table shows the three closed windows")
assert controls.last_trigger == (None, 3), controls.last_trigger
assert sorted(controls.frame["key"]) == ["k0", "k1", "k2"]
assert (controls.frame["start"] == 0).all() and (controls.frame["messages"] > 0).all()
assert "closed 3 windows" in controls.status.value, controls.status.value

wait_until(lambda: "'k1'" in controls.key.options, "k1 has an open window again")
controls.key.value = "'k1'"
controls.button.click()
wait_until(lambda: len(controls.frame) == 4, "the table shows k1's second window")
newest = controls.frame.iloc[0]
assert controls.last_trigger == ("k1", 1), controls.last_trigger
assert (newest["#"], newest["key"]) == (3, "k1")
assert newest["start"] == controls.frame[controls.frame.key == "k1"].iloc[1]["end"]
assert "<td>k1</td>" in controls.table.value
print("clicked", len(app.results()))
'''

STOPS = '''
app.stop()
assert controls.wait_stopped(5), "the refresh thread must exit once the app stops"
assert "app stopped" in controls.status.value, controls.status.value
assert controls.button.disabled
controls.close()
print("stopped")
'''


def guarded(src: str) -> str:
    """``src`` stopping the app if it fails: nbclient leaves a kernel it did not start
    running after a failing cell, and with it the app's workers."""
    body = "".join(f"    {line}\n" for line in src.strip("\n").splitlines())
    return f"try:\n{body}except BaseException:\n    app.stop()\n    raise\n"


def test_close_window_button_emits_windows_into_the_live_table(run_notebook):
    nb = code_notebook(START, guarded(SHOW) + "controls", guarded(CLICK), guarded(STOPS),
                       kernel_name="wallaroo_nb")
    try:
        run_notebook(nb, timeout=120)
    finally:
        leftover = wait_gone(pids_from(nb.cells[0]), limit=10)
        assert not leftover, f"worker processes {leftover} outlived the notebook"
    _start, show, click, stops = nb.cells
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for o in show.outputs), "the controls display as a widget"
    assert "clicked 4" in click.outputs[-1].text
    assert "stopped" in stops.outputs[-1].text


def test_controls_outside_a_kernel_range_windows_and_wrong_steps(start):
    """No kernel needed for the plumbing: range windows get no button, a state step
    or an unknown name is refused, close() ends the thread, the app is not kept alive."""
    class Count(Aggregation):
        def initial_accumulator(self):
            return 0

        def update(self, v, n):
            return n + 1

        def combine(self, a, b):
            return a + b

        def output(self, key, n):
            return {"key": key, "n": n}

    class Total:
        def __init__(self):
            self.n = 0

    @w.state_computation("running total", state=Total)
    def total(v, st):
        st.n += 1
        return v

    data = [(f"k{i % 2}", i) for i in range(20)]
    p = (w.source("p", w.IterableSourceConfig("s", data, event_time=lambda e: e[1]))
         .key_by(lambda e: e[0]).to(total).to(range_windows(5).over(Count))
         .to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app.wait(timeout=30)
    controls = window_controls(app, "Count", interval=0.05)
    assert controls.button.disabled and "range windows" in controls.button.tooltip
    deadline = time.monotonic() + 10
    while len(controls.frame) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(controls.frame.columns) == ["#", "key", "n"]
    assert list(controls.frame["#"]) == list(range(len(app.results()) - 1, -1, -1))[:20]
    controls.close()
    assert controls.wait_stopped(2)
    with pytest.raises(ValueError, match="state step"):
        window_controls(app, "running total")
    with pytest.raises(KeyError, match="no step named"):
        window_controls(app, "nope")
    again = window_controls(app, "Count", interval=0.05)
    app.stop()
    assert again.wait_stopped(5) and "app stopped" in again.status.value
    again.close()

    df = newest_first([("a", 1), ("b", 2), ("c", 3)], rows=2)
    assert df.values.tolist() == [[2, "c", 3], [1, "b", 2]]
    assert newest_first([1, "x"]).to_dict("list") == {"#": [1, 0], "output": ["x", 1]}


def pids_from(cell) -> list:
    """The worker pids the first cell printed (none if it failed before printing)."""
    for line in text_output(cell).splitlines():
        if line.startswith("PIDS "):
            return [int(p) for p in line.split()[1:]]
    return []


def wait_gone(pids: list, limit: float) -> list:
    """The pids still alive after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if pid_alive(p)]


class FakeApp:
    """The App members the controls use; one open event window per key."""

    def __init__(self):
        spec = SimpleNamespace(kind="event")
        step = SimpleNamespace(kind="window", spec=spec)
        self.plan = SimpleNamespace(step_named=lambda name: step)
        self.running = True
        self.out = []
        self.open = {"x": 2, "y": 5}
        self.calls = []

    def results(self, start=0):
        return self.out[start:]

    def state(self, step):
        return pd.DataFrame({"key": list(self.open)})

    def trigger(self, step, key=None):
        self.calls.append((key, threading.current_thread().name))
        keys = list(self.open) if key is None else [key] if key in self.open else []
        for k in keys:
            self.out.append({"key": k, "n": self.open.pop(k)})
        return len(keys)


def test_controls_trigger_off_the_main_thread_and_never_keep_the_app_alive():
    app = FakeApp()
    controls = window_controls(app, "w", interval=0.05)
    until(lambda: controls.key.options == ("all keys", "'x'", "'y'"), "keys listed")
    controls.key.value = "'y'"
    controls.button.click()
    until(lambda: len(controls.frame) == 1, "y's window in the table")
    assert app.calls == [("y", "wallaroo_nb-trigger")]
    assert controls.frame.to_dict("records") == [{"#": 0, "key": "y", "n": 5}]
    until(lambda: controls.key.options == ("all keys", "'x'", "'y'"), "the choice stays")
    assert controls.key.value == "'y'"
    controls.key.value = "all keys"
    controls.button.click()
    until(lambda: len(controls.frame) == 2, "x's window in the table")
    assert controls.frame["key"].tolist() == ["x", "y"], "newest first"
    until(lambda: controls.key.options == ("all keys",), "no key holds a window")
    ref = weakref.ref(app)
    del app
    gc.collect()
    assert ref() is None, "the controls must not keep the app alive"
    assert controls.wait_stopped(2) and "app gone" in controls.status.value
    controls.close()


def until(cond, what, limit=5.0):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)
