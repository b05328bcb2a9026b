"""app.dashboard() on a real app in a real kernel: it grows while the app runs and
stops (thread gone, data frozen) once app.stop() is called."""

from __future__ import annotations

import time

from nbkernel import code_notebook, text_output

START = '''
import time
import wallaroo_nb as w

class Ticks:
    def initial_value(self):
        return 0
    def apply(self, v):
        return v + 1

@w.computation("double")
def double(x):
    return 2 * x

p = (w.source("ticks", w.GenSourceConfig(Ticks(), rate=500))
     .to(double).to_sink(w.CollectorSinkConfig()))
app = w.run(p, workers=2)
print("PIDS", *app.pids)
app.wait(count=50, timeout=60)
'''

SHOW = '''
box = app.dashboard(interval=0.2)
box
'''

# This cell blocks the kernel while it watches: the dashboard's thread must not care.
GROWS = '''
def rows():
    return len(box.history_source.data["time"])

def wait_until(cond, what, limit=20):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)

wait_until(lambda: rows() > 0, "the dashboard never showed a second of data")
n0 = rows()
wait_until(lambda: rows() > n0 + 1, f"the dashboard stopped growing at {n0} rows")
assert box.updating
assert box.selector.value == ("pipeline", "ticks", "all"), box.selector.value
labels = [label for label, _ in box.selector.options]
assert any("computation: double" in s for s in labels), labels
assert any(r > 0 for r in box.history_source.data["rate"]), "the source runs at 500/s"
assert box.bins_source.data["bin"], "percent by bin has data"
import re
wait_until(lambda: re.search(r"input rate</b> [1-9][0-9,]* msg/s .*<b>output rate</b> [1-9]",
                             box.rates.value), f"no input and output rate: {box.rates.value}")
assert box._rate_title.text.startswith("input rate"), box._rate_title.text  # a pipeline's
wait_until(lambda: box.workers.source.data["worker"] == ["worker 0", "worker 1"],
           "the keys-per-worker bars never showed the two workers")
print("grew from", n0, "to", rows())
'''

STOPS = '''
app.stop()
assert box.wait_stopped(5), "the update thread must exit once the app stops"
n2 = rows()
time.sleep(1.0)
assert rows() == n2, "no updates after the app stopped"
assert "app stopped" in box.status.value, box.status.value
assert box.workers.wait_stopped(5), "the bars' thread ends with the app too"
assert not app.running
box.close()
print("stopped at", n2)
'''


def test_dashboard_of_a_running_app_grows_then_stops_with_it(run_notebook):
    nb = code_notebook(START, SHOW, GROWS, STOPS, kernel_name="wallaroo_nb")
    try:
        run_notebook(nb, timeout=120)
    finally:
        # the kernel is gone by now; its workers must be too (they exit with their driver)
        leftover = wait_gone(pids_from(nb.cells[0]), limit=10)
        assert not leftover, f"worker processes {leftover} outlived the notebook"
    start, show, grows, stops = nb.cells
    widgets = [o for o in show.outputs
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the dashboard displays as a widget"
    assert "grew from" in grows.outputs[-1].text
    assert "stopped at" in stops.outputs[-1].text


def pids_from(cell) -> list:
    """The worker pids the first cell printed (none if it failed before printing)."""
    for line in text_output(cell).splitlines():
        if line.startswith("PIDS "):
            return [int(p) for p in line.split()[1:]]
    return []


def pid_alive(pid: int) -> bool:
    """True if `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list, limit: float) -> list:
    """The pids still alive after `limit` seconds."""
    deadline = time.monotonic() + limit
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if pid_alive(p)]
