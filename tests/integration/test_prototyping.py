"""Hot reload: app.update(new_fn) swaps a running step's function and keeps its state."""

from __future__ import annotations

import time

import pytest

import wallaroo_nb as w


class Count:
    def __init__(self):
        self.n = 0


class Ticks:
    def initial_value(self):
        return 0

    def apply(self, v):
        return v + 1


def counter(version: str, step: int = 1):
    """A "count" state step answering (key, count, version): the same step in two versions,
    as a notebook cell redefines it."""
    @w.state_computation("count", state=Count)
    def count(x, c):
        c.n += step
        return (x % 3, c.n, version)

    return count


def count_app(start, rate: int, limit=None):
    p = (w.source("g", w.GenSourceConfig(Ticks(), rate=rate, limit=limit))
         .key_by(lambda x: x % 3).to(counter("v1")).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app.wait(count=300, timeout=30)
    return app


def test_update_swaps_the_function_and_keeps_state(start):
    app = count_app(start, rate=3000)
    app.update(counter("v2", step=1000))
    before = len(app.results())
    app.wait(count=before + 300, timeout=30)
    res = app.results()
    for key in range(3):  # each worker swaps between two of its chunks: per key, a clean cut
        versions = [v for k, _, v in res if k == key]
        cut = versions.index("v2")
        assert set(versions[:cut]) == {"v1"} and set(versions[cut:]) == {"v2"}
        seq = [n for k, n, _ in res if k == key]
        steps = {b - a for a, b in zip(seq, seq[1:])}
        assert steps == {1, 1000}, (key, steps)  # state went on from where v1 left it
    assert any("updated" in e for _, e in app.events())


def test_every_call_is_timed_across_an_update(start):
    """The computation's latency count is all its calls, before and after the swap."""
    n = 2000
    app = count_app(start, rate=1000, limit=n)
    app.update(counter("v2"))
    app.wait(timeout=60)
    res = app.results()
    assert {v for _, _, v in res} == {"v1", "v2"} and len(res) == n
    deadline = time.monotonic() + 20
    while True:  # workers send their deltas about once a second
        df = app.metrics()
        rows = df[(df.category == "computation") & (df.name == "count") & (df.worker == "all")]
        got = int(rows["count"].iloc[0]) if len(rows) else 0
        if got == n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == n, df


def test_update_rejects_a_different_kind_or_state(start):
    @w.state_computation("count", state=Count)
    def count(x, c):
        c.n += 1
        return c.n

    p = w.source("s", w.IterableSourceConfig("x", [1, 2])).key_by(lambda x: x).to(count)
    app = start(p.to_sink(w.CollectorSinkConfig()), workers=1)
    app.wait(timeout=30)
    with pytest.raises(ValueError, match="is a state step"):
        app.update(w.computation("count")(lambda x: x))

    class Other:
        def __init__(self):
            self.m = 0

    with pytest.raises(ValueError, match="state class must stay the same"):
        app.update(w.state_computation("count", state=Other)(lambda x, s: x))
    with pytest.raises(KeyError, match="no step named 'nope'"):
        app.update(w.computation("nope")(lambda x: x))
