"""Metrics that count what they claim (docs/metrics.md):

- the pipeline row counts every message once, filtered, raised, split, absorbed by a
  window or sent to two sinks;
- its clock starts when the message came to exist (a paced source: when it was due),
  so an overloaded pipeline shows its queueing;
- a window output is timed from the newest message it holds;
- "visible" includes the commit hold under resilience.
"""

from __future__ import annotations

import time

import pytest

import wallaroo_nb as w
from wallaroo_nb.testing import Count

pytestmark = pytest.mark.timeout(180)


def settled(app, category: str, name: str, count: int, worker: str = "all") -> dict:
    """app.metrics()'s row once its count reached ``count`` (deltas come each second)."""
    deadline = time.monotonic() + 20
    while True:
        df = app.metrics()
        rows = df[(df.category == category) & (df.name == name) & (df.worker == worker)]
        got = int(rows["count"].iloc[0]) if len(rows) else 0
        if got >= count or time.monotonic() > deadline:
            assert got == count, f"{category} {name}: {got} != {count}\n{df}"
            return rows.iloc[0].to_dict()
        time.sleep(0.2)


@w.computation("odd only")
def odd_only(x):
    return x if x % 2 else None


@w.computation_multi("words")
def words(line):
    return line.split()


class Seen:
    def __init__(self):
        self.n = 0


@w.state_computation("fragile", state=Seen)
def fragile(x, seen):
    if x % 7 == 0:
        raise ValueError("sevens")
    return x


def test_each_message_counts_once_whatever_becomes_of_it():
    n = 3000
    lines = [" ".join(["w"] * (i % 4)) for i in range(n)]  # 0 to 3 words a line
    p_filter = w.source("filtering", w.IterableSourceConfig("f", range(n))).to(odd_only)
    p_split = w.source("splitting", w.IterableSourceConfig("s", lines)).to(words)
    p_raise = (w.source("raising", w.IterableSourceConfig("r", range(n)))
               .key_by(lambda x: x % 5).to(fragile))
    p_window = (w.source("windowing", w.IterableSourceConfig("c", range(n)))
                .key_by(lambda x: x % 10).to(w.count_windows(7).over(Count)))
    app = w.build_application(
        "counts", p_filter.to_sinks([w.CollectorSinkConfig("first"), w.CollectorSinkConfig("second")]),
        p_split.to_sink(w.CollectorSinkConfig("words out")),
        p_raise.to_sink(w.CollectorSinkConfig("raised out")),
        p_window.to_sink(w.CollectorSinkConfig("windows out")))
    with w.run(app, workers=2) as running:
        running.wait(timeout=60)
        for pipeline in ("filtering", "splitting", "raising", "windowing"):
            settled(running, "pipeline", pipeline, n)
        settled(running, "sink", "first", n // 2)
        settled(running, "sink", "second", n // 2)
        settled(running, "sink", "words out", sum(len(x.split()) for x in lines))
        settled(running, "sink", "raised out", n - len(range(0, n, 7)))
        settled(running, "sink", "windows out", sum(-(-(n // 10) // 7) for _ in range(10)))


@w.computation("one ms of work")
def one_ms(x):
    t = time.perf_counter() + 0.001
    while time.perf_counter() < t:
        pass
    return x


def test_an_overloaded_pipeline_shows_its_queueing():
    """2,000 messages/s into a step that does 1,000/s, for 3 s: a message is due 3 s in,
    it waits ~1.5 s in the source before it is read; the pipeline says so."""
    p = (w.source("overloaded", w.IterableSourceConfig("paced", range(6000), rate=2000))
         .to(one_ms).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=1) as app:
        app.wait(timeout=60)
        row = settled(app, "pipeline", "overloaded", 6000)
        step = settled(app, "computation", "one ms of work", 6000)
    assert row["p99_us"] > 1_000_000, row  # seconds of queueing, not microseconds
    assert row["p50_us"] > 500_000, row
    assert 900 <= step["p50_us"] <= 5_000, step  # the step itself takes about a ms


def test_a_window_output_is_timed_from_its_newest_message():
    """Key a's messages come in the first 0.3 s (then only key b's); a's event window is
    closed 2 s later: its output at the sink is ~2 s old, not the microseconds since the
    trigger."""
    class Ticks:
        def initial_value(self):
            return 0

        def apply(self, v):
            return v + 1

    p = (w.source("ticks", w.GenSourceConfig(Ticks(), rate=1000))
         .key_by(lambda v: "a" if v < 300 else "b").to(w.event_windows().over(Count))
         .to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2) as app:
        time.sleep(2.3)
        assert app.trigger("Count", key="a") == 1
        app.wait(count=1, timeout=30)
        assert app.results() == [("a", 300)]
        row = settled(app, "sink", "collector", 1)
    assert row["p50_us"] > 1_500_000, row


def test_visible_latency_includes_the_commit_hold(tmp_path):
    p = (w.source("held", w.IterableSourceConfig("paced", range(4000), rate=2000))
         .key_by(lambda x: x % 10).to(fragile).to_sink(w.CollectorSinkConfig()))
    with w.run(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
               checkpoint_interval=1.0) as app:
        app.wait(timeout=60)
        pipe = settled(app, "pipeline", "held", 4000)
        visible = settled(app, "visible", "held", 4000 - len(range(0, 4000, 7)))
    assert visible["p50_us"] > 200_000, visible  # results wait for their epoch's commit
    assert pipe["p50_us"] < visible["p50_us"] / 5, (pipe, visible)
