"""Wallaroo's behaviours on real worker processes: count windows time out while the
stream runs, and `import wallaroo`'s key conversion reaches the windows' output (and
its refusals reach app.errors())."""

from __future__ import annotations

import time

import wallaroo_nb as w
from wallaroo_nb import compat
from wallaroo_nb.windows import Aggregation, count_windows

wallaroo = compat.install_alias()


class Ids(Aggregation):
    def initial_accumulator(self):
        return ()

    def update(self, e, acc):
        return acc + (e[1],)

    def combine(self, a, b):
        return a + b

    def output(self, key, acc, window):
        return (key, acc)


class Ticks:
    """Three messages of key "a", then key "b" forever (b's windows never fill)."""

    def initial_value(self):
        return ("a", 0)

    def apply(self, previous):
        i = previous[1] + 1
        return ("a" if i < 3 else "b", i)


def test_a_partial_count_window_fires_on_the_timeout_while_the_stream_runs(start):
    """Ingest time: the watermark follows the clock, so a's three messages come out
    (without a fourth, and before the never-ending source stops) one timeout later."""
    spec = count_windows(1000).with_timeout(w.milliseconds(300)).over(Ids)
    app = start(w.source("ticks", w.GenSourceConfig(Ticks(), rate=50))
                .key_by(lambda e: e[0]).to(spec).to_sink(w.CollectorSinkConfig()), workers=2)
    t0 = time.monotonic()
    deadline = t0 + 20
    while ("a", (0, 1, 2)) not in app.results() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("a", (0, 1, 2)) in app.results()
    assert app.status()["running"]  # the source is still going: this was the timeout
    b = [ids for key, ids in app.results() if key == "b"]
    assert b and all(len(ids) < 1000 for ids in b)  # b's partial windows fire too
    assert [i for ids in b for i in ids] == list(range(3, 3 + sum(map(len, b))))


class Sums(wallaroo.Aggregation):
    def initial_accumulator(self):
        return [0]

    def update(self, e, acc):
        acc[0] += e[1]

    def combine(self, a, b):
        return [a[0] + b[0]]

    def output(self, key, acc):
        return (key, acc[0])


@wallaroo.key_extractor
def code_of(e):
    return e[0]


def test_wallaroo_keys_reach_the_window_output_converted(start):
    """An int key n is the key chr(n), bytes and str the same key; a float key is an
    error naming what Wallaroo accepts, and the other messages go on."""
    events = [(97, 1), ("a", 2), (b"a", 4), (98, 8), (1.5, 16), (b"b", 32)]
    p = (wallaroo.source("codes", w.IterableSourceConfig("codes", events))
         .key_by(code_of).to(wallaroo.count_windows(100).over(Sums))
         .to_sink(w.CollectorSinkConfig()))
    app = start(wallaroo.build_application("codes", p), workers=2)
    app.wait(timeout=30)
    assert sorted(app.results()) == [("a", 7), ("b", 40)]
    errors = app.errors()
    assert len(errors) == 1 and errors.iloc[0]["where"] == "key extractor"
    assert "must return str, bytes or int" in errors.iloc[0]["error"]
