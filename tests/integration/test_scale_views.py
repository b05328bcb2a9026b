"""Scaling as the notebook sees it, on real worker processes: the keys-per-worker bars
(`app.workers_view()`, also in the App's display and the dashboard) change when the
app scales, and `%wallaroo scale` (run through a real IPython shell) scales an app."""

from __future__ import annotations

import time

import pytest
from bokeh.models import HoverTool
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import wallaroo_nb as w
from wallaroo_nb.notebook import extension

KEYS = 100


class Ticks:
    def initial_value(self):
        return 0

    def apply(self, v):
        return v + 1


class Count:
    def __init__(self):
        self.n = 0


@w.state_computation("count", state=Count)
def count(x, c):
    c.n += 1
    return c.n


def keyed(name: str):
    """A paced, endless keyed count over KEYS keys (its source can move: it replays)."""
    return w.build_application(name, w.source("ticks", w.GenSourceConfig(Ticks(), rate=2000))
                               .key_by(lambda x: x % KEYS).to(count)
                               .to_sink(w.CollectorSinkConfig(keep=10)))


def wait_until(cond, what: str, limit: float = 15.0):
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def bars(view) -> list:
    return list(zip(view.source.data["worker"], view.source.data["label"], strict=True))


def expected_bars(app) -> list:
    frame = app.workers().sort_values("worker")
    return [(f"worker {i}", f"{k:,} keys · {s} slots")
            for i, k, s in zip(frame["worker"], frame["keys"], frame["slots"], strict=True)]


def wait_bars(view, app, n: int) -> list:
    """Wait until the view shows n bars holding all KEYS keys; they must be what
    app.workers() says."""
    wait_until(lambda: len(bars(view)) == n and sum(view.source.data["keys"]) == KEYS,
               f"never {n} bars with {KEYS} keys: {bars(view)}")
    assert list(view.x_range.factors) == [f"worker {i}" for i in range(n)]
    assert sum(view.source.data["slots"]) == 256
    shown = bars(view)
    assert shown == expected_bars(app)
    return shown


def test_keys_per_worker_bars_follow_app_scale_and_stop_with_the_app(start):
    app = start(keyed("bars"), workers=2)
    app.wait(count=3 * KEYS, timeout=30)  # every key has its state
    view = app.workers_view(interval=0.2)
    two = wait_bars(view, app, 2)
    assert [label for _, label in two] == ["50 keys · 128 slots"] * 2  # x % 100: 50 each
    app.scale(3)
    three = wait_bars(view, app, 3)
    assert [int(s) for s in view.source.data["slots"]] == [86, 85, 85]  # the fewest moved
    app.scale(1)
    assert wait_bars(view, app, 1) == [("worker 0", "100 keys · 256 slots")] != three
    app.stop()
    assert view.wait_stopped(5), "the view's thread ends with the app"
    assert bars(view) == [("worker 0", "100 keys · 256 slots")], "the last picture stays"
    assert "app stopped" in view.status.value
    hover = next(t for t in view.figure.tools if isinstance(t, HoverTool))
    assert [name for name, _ in hover.tooltips] == [
        "", "keys", "slots", "pid", "host", "state", "read", "to sinks", "busy"]
    view.close()


@pytest.fixture
def shell():
    ip = InteractiveShell.instance()
    extension.load_ipython_extension(ip)
    yield ip
    extension.unload_ipython_extension(ip)


def test_wallaroo_scale_magic_scales_the_named_or_only_app(start, shell, capsys):
    app = start(keyed("scaled"), workers=1)
    app.wait(count=KEYS, timeout=30)
    shell.run_line_magic("wallaroo", "scale 2")  # the only app: no name needed
    assert "scaled scaled to 2 workers: 128 slots moved" in capsys.readouterr().out
    assert app.worker_count == 2 and len(app.workers()) == 2
    shell.run_line_magic("wallaroo", "scale scaled 1")
    assert "scaled scaled to 1 worker: 128 slots moved" in capsys.readouterr().out
    assert list(app.workers()["worker"]) == [0] and app.running

    for line, message in [("scale", "takes \\[NAME\\] N, got nothing"),
                          ("scale scaled two", "N must be a whole number .* got 'two'"),
                          ("scale 0", "N must be a whole number .* got '0'"),
                          ("scale nope 2", "no running app named 'nope'; running: \\['scaled'\\]")]:
        with pytest.raises(UsageError, match=message):
            shell.run_line_magic("wallaroo", line)
    other = start(keyed("other"), workers=1)
    with pytest.raises(UsageError, match="2 apps are running \\(other, scaled\\): name the one"):
        shell.run_line_magic("wallaroo", "scale 2")
    assert app.worker_count == other.worker_count == 1, "a refused scale changes nothing"
    shell.run_line_magic("wallaroo", "help")
    assert "%wallaroo scale [NAME] N" in capsys.readouterr().out
