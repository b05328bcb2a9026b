"""Window steps on real worker processes, against tests/window_model.py.

Range windows: hypothesis makes event streams with disorder and lateness; each
example runs one app with a pipeline (its own source, its own window step) per
window configuration, on 1 and 2 workers. The engine's watermark rule for one
source feeding a window is "a value is judged against the largest event time its
source read before it", so the model is fed ("w", max of the earlier event times)
before each message. Outputs must equal the model's per key and in order, and the
late/dropped counts must reach app.metrics_counters().

Session windows: the same, against the session model.

Count and event windows, triggers (from the notebook and from the stream), update
errors and the end of the stream are checked on 2 workers.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from window_model import count_model, event_model, range_model, session_model  # noqa: E402

import wallaroo_nb as w  # noqa: E402
from wallaroo_nb.windows import (  # noqa: E402
    Aggregation,
    count_windows,
    event_windows,
    range_windows,
    session_windows,
)

SETTINGS = settings(max_examples=8, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
KEYS = ["a", "b", ("t", 1)]  # keys of different types; 2 workers split them
TIMEOUT = 30


class Gather(Aggregation):
    """Collects message ids (e[1]); outputs (label, key, start, end, ids)."""

    def __init__(self, label: str = "gather"):
        self.name = label  # the step's name: one step per configuration
        self.label = label

    def initial_accumulator(self):
        return ()

    def update(self, e, acc):
        return acc + (e[1],)

    def combine(self, a, b):
        return a + b

    def output(self, key, acc, window):
        return (self.label, key, window.start, window.end, acc)


# (label, range, slide, delay, late-data policy, alignment): tumbling, sliding and
# delayed, aligned to the epoch; two aligned to each key's first message (Wallaroo's way)
RANGE_CONFIGS = [
    (f"{shape} {policy}", r, s, d, policy, "epoch")
    for shape, r, s, d in [("tumbling", 10, 10, 0), ("sliding", 10, 4, 0),
                           ("delayed", 10, 10, 7), ("sliding-delayed", 9, 3, 5)]
    for policy in ("drop", "fire_per_message", "place_in_oldest_window")
] + [("key-aligned tumbling", 10, 10, 0, "drop", "key"),
     ("key-aligned sliding", 9, 3, 3, "place-in-oldest-window", "key")]


@st.composite
def streams(draw, max_size=40):
    """[(key, id, event time)]: a clock that moves forward, with some events early
    or late by up to 25 ns (late ones cross closed windows)."""
    n = draw(st.integers(0, max_size))
    clock = draw(st.integers(-15, 15))
    out = []
    for i in range(n):
        clock += draw(st.integers(0, 6))
        skew = draw(st.one_of(st.just(0), st.integers(-25, 3)))
        out.append((draw(st.sampled_from(KEYS)), i, clock + skew))
    return out


def model_events(stream):
    """The model's event list: each message after the watermark its source had before it."""
    events, wm = [], None
    for key, i, t in stream:
        if wm is not None:
            events.append(("w", wm))
        events.append(("m", key, i, t))
        wm = t if wm is None else max(wm, t)
    return events


def by_label_and_key(results):
    """label -> key -> [(start, end, sorted ids)], in arrival order."""
    out = defaultdict(lambda: defaultdict(list))
    for label, key, start, end, ids in results:
        out[label][key].append((start, end, tuple(sorted(ids))))
    return out


def model_by_key(fired):
    return {k: [(s, e, tuple(sorted(v))) for s, e, v in wins] for k, wins in fired.items()}


def counters(app, step):
    """{"late": n, "dropped": n} for ``step``, all workers."""
    df = app.metrics_counters()
    df = df[(df.category == "computation") & (df.name == step) & (df.worker == "all")]
    got = dict(zip(df.event, df["count"]))
    return {e: int(got.get(e, 0)) for e in ("late", "dropped")}


def wait_counters(app, expected, timeout=5.0):
    """Poll metrics_counters until every step's late/dropped counts are as expected."""
    deadline = time.monotonic() + timeout
    while True:
        got = {step: counters(app, step) for step in expected}
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def range_app(stream):
    pipes = []
    for i, (label, r, s, d, policy, align) in enumerate(RANGE_CONFIGS):
        spec = dataclasses.replace(range_windows(r).with_slide(s).with_delay(d)
                                   .with_late_data_policy(policy).over(Gather(label)),
                                   align=align)
        src = w.IterableSourceConfig(f"events {i}", stream, event_time=lambda e: e[2])
        pipes.append(w.source(label, src).key_by(lambda e: e[0]).to(spec)
                     .to_sink(w.CollectorSinkConfig()))
    return w.build_application("range windows", *pipes)


@pytest.mark.parametrize("workers", [1, 2])
@SETTINGS
@given(stream=streams())
def test_range_windows_match_the_model(start, workers, stream):
    app = start(range_app(stream), workers=workers)
    app.wait(timeout=TIMEOUT)
    got = by_label_and_key(app.results())
    expected_counts = {}
    for label, r, s, d, policy, align in RANGE_CONFIGS:
        fired, late, dropped = range_model(model_events(stream), r, s, d, policy, align=align)
        assert dict(got[label]) == model_by_key(fired), label
        expected_counts[label] = {"late": late, "dropped": dropped}
    wait_counters(app, expected_counts)
    app.stop()  # workers send their last counters as they stop
    seen = {label: counters(app, label) for label in expected_counts}
    assert seen == expected_counts


# (label, gap, late-data policy)
SESSION_CONFIGS = [(f"session {gap} {policy}", gap, policy)
                   for gap in (3, 8) for policy in ("drop", "fire-per-message",
                                                    "place-in-oldest-window")]


def session_app(stream):
    pipes = []
    for i, (label, gap, policy) in enumerate(SESSION_CONFIGS):
        spec = session_windows(gap).with_late_data_policy(policy).over(Gather(label))
        src = w.IterableSourceConfig(f"events {i}", stream, event_time=lambda e: e[2])
        pipes.append(w.source(label, src).key_by(lambda e: e[0]).to(spec)
                     .to_sink(w.CollectorSinkConfig()))
    return w.build_application("session windows", *pipes)


@pytest.mark.parametrize("workers", [1, 2])
@SETTINGS
@given(stream=streams())
def test_session_windows_match_the_model(start, workers, stream):
    app = start(session_app(stream), workers=workers)
    app.wait(timeout=TIMEOUT)
    got = by_label_and_key(app.results())
    expected_counts = {}
    for label, gap, policy in SESSION_CONFIGS:
        fired, late, dropped = session_model(model_events(stream), gap, policy)
        assert dict(got[label]) == model_by_key(fired), label
        expected_counts[label] = {"late": late, "dropped": dropped}
    app.stop()  # workers send their last counters as they stop
    assert {label: counters(app, label) for label in expected_counts} == expected_counts


def test_late_counts_on_a_fixed_stream(start):
    """A hand-checked case, so the property test above is not its own oracle."""
    stream = [("a", 0, 5), ("a", 1, 25), ("a", 2, 3), ("a", 3, 14), ("a", 4, 26)]
    spec = range_windows(10).over(Gather("t"))
    src = w.IterableSourceConfig("s", stream, event_time=lambda e: e[2])
    app = start(w.source("p", src).key_by(lambda e: e[0]).to(spec)
                .to_sink(w.CollectorSinkConfig()), workers=2)
    app.wait(timeout=TIMEOUT)
    # id 2 (t=3) comes after the watermark reached 25: [0, 10) has fired; so has
    # [10, 20) by the time id 3 (t=14) comes
    assert sorted(app.results()) == [("t", "a", 0, 10, (0,)), ("t", "a", 20, 30, (1, 4))]
    assert wait_counters(app, {"t": {"late": 2, "dropped": 2}}) == {
        "t": {"late": 2, "dropped": 2}}


class Ids(Aggregation):
    """Two-parameter output: (key, ids)."""

    def initial_accumulator(self):
        return ()

    def update(self, e, acc):
        return acc + (e[1],)

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return (key, acc)


@SETTINGS
@given(stream=streams(max_size=60), count=st.integers(1, 5))
def test_count_windows_match_the_model(start, stream, count):
    spec3 = count_windows(count).over(Gather("count"))
    spec2 = count_windows(count).over(Ids)
    src = w.IterableSourceConfig("s", stream)
    keyed = w.source("p", src).key_by(lambda e: e[0])
    app = start(w.build_application("counts", keyed.to(spec3).to_sink(w.CollectorSinkConfig()),
                                    keyed.to(spec2).to_sink(w.CollectorSinkConfig())),
                workers=2)
    app.wait(timeout=TIMEOUT)
    fired = count_model([("m", k, i, t) for k, i, t in stream], count)
    expected = {k: [(s, e, tuple(v)) for s, e, v in wins] for k, wins in fired.items()}
    assert dict(by_label_and_key([r for r in app.results() if len(r) == 5])["count"]) == expected
    got2 = defaultdict(list)
    for key, ids in (r for r in app.results() if len(r) == 2):
        got2[key].append(ids)
    assert dict(got2) == {k: [v for _s, _e, v in wins] for k, wins in expected.items()}
    app.stop()  # hypothesis runs many examples in one test: do not keep them all running


def test_end_of_stream_fires_every_open_window(start):
    """When the bounded source ends, partial count windows and open event windows fire
    (Wallaroo's documented behaviour; the runners' flush_all)."""
    stream = [(KEYS[i % 3], i, i) for i in range(10)]
    src = w.IterableSourceConfig("s", stream, event_time=lambda e: e[2])
    keyed = w.source("p", src).key_by(lambda e: e[0])
    app = start(w.build_application(
        "ends",
        keyed.to(count_windows(3).over(Gather("count"))).to_sink(w.CollectorSinkConfig()),
        keyed.to(event_windows().over(Gather("event"))).to_sink(w.CollectorSinkConfig()),
        keyed.to(range_windows(100).over(Gather("range"))).to_sink(w.CollectorSinkConfig())),
        workers=2)
    app.wait(timeout=TIMEOUT)
    got = by_label_and_key(app.results())
    ids = {k: tuple(i for kk, i, _t in stream if kk == k) for k in KEYS}
    assert {k: v for k, v in got["range"].items()} == {k: [(0, 100, ids[k])] for k in KEYS}
    assert {k: v for k, v in got["event"].items()} == {
        k: [(0, len(ids[k]), ids[k])] for k in KEYS}, "open event windows must fire at the end"
    assert {k: sum(len(x[2]) for x in v) for k, v in got["count"].items()} == {
        k: len(ids[k]) for k in KEYS}, "partial count windows must fire at the end"
    with pytest.raises(ValueError, match="event_windows"):
        app.trigger("count")  # triggers close event windows only


# -- event-driven windows ----------------------------------------------------------


def check_partition(results, stream, label="event"):
    """Every message in exactly one emitted window; windows of a key are consecutive
    ordinal ranges holding the key's messages in order."""
    per_key = by_label_and_key(results)[label]
    for key in KEYS:
        mine = [i for k, i, _t in stream if k == key]
        wins = per_key.get(key, [])
        assert all(e > s for s, e, _ in wins), f"an empty window fired for {key!r}"
        assert [x for _s, _e, ids in wins for x in ids] == mine, key
        ends = 0
        for s, e, ids in wins:
            assert (s, e) == (ends, ends + len(ids)), (key, wins)
            ends = e
    assert sum(len(r[4]) for r in results if r[0] == label) == len(stream)


def test_triggers_interleaved_with_data_on_two_workers(start):
    n = 1500  # 1.5 s of data: longer than the five triggers below
    stream = [(KEYS[i % 3], i, 0) for i in range(n)]
    src = w.IterableSourceConfig("paced", stream, rate=1000)
    app = start(w.source("p", src).key_by(lambda e: e[0])
                .to(event_windows().over(Gather("event"))).to_sink(w.CollectorSinkConfig()),
                workers=2)
    fired = []
    for _ in range(5):
        time.sleep(0.1)
        before = len(app.results())
        k = app.trigger("event")
        # a trigger's windows reach the driver before trigger() returns (on a slow
        # machine the end of the stream may have fired more meanwhile)
        assert len(app.results()) >= before + k
        fired.append(k)
    app.wait(timeout=TIMEOUT)
    results = app.results()
    assert sum(k > 0 for k in fired) >= 3, f"triggers should meet open windows: {fired}"
    at_end = len(results) - sum(fired)
    assert 0 <= at_end <= len(KEYS), "the end of the stream fires at most one window per key"
    check_partition(results, stream)
    assert app.trigger("event") == 0, "nothing is open after the end; empty windows never fire"
    assert app.state("event").empty


class GatedSource(w.Source):
    """Reads ``first``, then nothing until the file ``gate`` exists, then ``rest``."""

    def __init__(self, first, rest, gate):
        self.parts, self.gate = [list(first), list(rest)], gate

    def read(self, max_n):
        if self.parts[0]:
            out, self.parts[0] = self.parts[0][:max_n], self.parts[0][max_n:]
            return out
        if not os.path.exists(self.gate):
            return []
        if self.parts[1]:
            out, self.parts[1] = self.parts[1][:max_n], self.parts[1][max_n:]
            return out
        return None

    def wait_hint(self):
        return 0.01


class GatedSourceConfig(w.SourceConfig):
    def __init__(self, name, first, rest, gate):
        self.name, self.first, self.rest, self.gate = name, first, rest, str(gate)

    def make_source(self):
        return GatedSource(self.first, self.rest, self.gate)


def wait_for(cond, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def open_keys(app, step="event"):
    df = app.state(step)
    return sorted(map(repr, df["key"])) if len(df) else []


def test_trigger_for_one_key_closes_only_its_window(start, tmp_path):
    first = [(KEYS[i % 3], i, 0) for i in range(30)]
    rest = [(KEYS[i % 3], i, 0) for i in range(30, 36)]
    gate = tmp_path / "gate"
    app = start(w.source("p", GatedSourceConfig("s", first, rest, gate)).key_by(lambda e: e[0])
                .to(event_windows().over(Gather("event"))).to_sink(w.CollectorSinkConfig()),
                workers=2)
    wait_for(lambda: app.state("event")["window_end"].sum() == 30 if open_keys(app) else False,
             what="30 messages in open windows")
    assert open_keys(app) == sorted(map(repr, KEYS))
    assert app.trigger("event", key="b") == 1
    assert app.results() == [("event", "b", 0, 10, tuple(range(1, 30, 3)))]
    assert open_keys(app) == sorted(map(repr, ["a", ("t", 1)]))
    assert app.trigger("event", key="b") == 0, "b's window is empty"
    assert app.trigger("event", key="nobody") == 0
    assert app.trigger("event", key=("t", 1)) == 1
    assert open_keys(app) == ["'a'"]
    gate.touch()
    app.wait(timeout=TIMEOUT)
    check_partition(app.results(), first + rest)
    assert sorted(repr(r[1:4]) for r in app.results() if r[1] != "a") == sorted(map(repr, [
        ("b", 0, 10), ("b", 10, 12), (("t", 1), 0, 10), (("t", 1), 10, 12)]))
    with pytest.raises(KeyError, match="no step named 'p'"):
        app.trigger("p")


@pytest.mark.parametrize("include", [True, False])
def test_fire_when_triggers_from_the_stream(start, include):
    stream = [(KEYS[i % 3], i, 0) for i in range(120)]
    pred = lambda e: e[1] % 7 == 0  # noqa: E731
    spec = event_windows().fire_when(pred, include=include).over(Gather("event"))
    app = start(w.source("p", w.IterableSourceConfig("s", stream)).key_by(lambda e: e[0])
                .to(spec).to_sink(w.CollectorSinkConfig()), workers=2)
    app.wait(timeout=TIMEOUT)
    events = [("m", e[0], e, e[2]) for e in stream]
    model = event_model(events, pred=pred, include=include)  # its flush: the end of stream
    assert dict(by_label_and_key(app.results())["event"]) == {
        k: [(s, x, tuple(e[1] for e in vals)) for s, x, vals in wins]
        for k, wins in model.items()}
    check_partition(app.results(), stream)


# -- errors ----------------------------------------------------------------------------


class Fragile(Aggregation):
    """A list accumulator whose update mutates it, then raises on ids % 5 == 3."""

    def initial_accumulator(self):
        return []

    def update(self, e, acc):
        acc.append(e[1])
        if e[1] % 5 == 3:
            raise ValueError(f"bad id {e[1]}")
        return acc

    def combine(self, a, b):
        return a + b

    def output(self, key, acc, window):
        return ("fragile", key, window.start, window.end, tuple(acc))


def test_update_that_raises_is_recorded_and_the_window_goes_on(start):
    stream = [(KEYS[i % 3], i, 3 * i) for i in range(40)]
    src = w.IterableSourceConfig("s", stream, event_time=lambda e: e[2])
    app = start(w.source("p", src).key_by(lambda e: e[0]).to(range_windows(30).over(Fragile))
                .to_sink(w.CollectorSinkConfig()), workers=2)
    app.wait(timeout=TIMEOUT)
    bad = [i for _k, i, _t in stream if i % 5 == 3]
    errs = app.errors()
    assert len(errs) == len(bad)
    assert set(errs["step"]) == {"Fragile"}
    assert errs["error"].str.contains("ValueError: bad id").all()
    assert sorted(errs["input"]) == sorted(repr(e) for e in stream if e[1] % 5 == 3)
    fired, _late, _dropped = range_model(model_events(stream), 30, 30,
                                         rejects=lambda i: i % 5 == 3)
    assert dict(by_label_and_key(app.results())["fragile"]) == model_by_key(fired)
    assert sum(len(r[4]) for r in app.results()) == len(stream) - len(bad)


# -- the trigger between chunks, with two sources on two workers -------------------------


def test_triggers_with_two_sources_on_two_workers_lose_and_double_nothing(start):
    a = [(KEYS[i % 3], i, 0) for i in range(0, 800, 2)]
    b = [(KEYS[i % 3], i, 0) for i in range(1, 800, 2)]
    pa = w.source("a", w.IterableSourceConfig("a", a, rate=800))
    pb = w.source("b", w.IterableSourceConfig("b", b, rate=800))
    app = start(pa.merge(pb).key_by(lambda e: e[0]).to(event_windows().over(Gather("event")))
                .to_sink(w.CollectorSinkConfig()), workers=2)
    stop = threading.Event()
    counts = []

    def trigger_often():
        while not stop.wait(0.05):
            for key in (None, "a"):
                counts.append(app.trigger("event", key=key))

    t = threading.Thread(target=trigger_often, daemon=True)
    t.start()
    try:
        app.wait(timeout=TIMEOUT)
    finally:
        stop.set()
        t.join(10)
    results = app.results()
    assert 0 <= len(results) - sum(counts) <= len(KEYS)  # the rest fired at the end
    assert sum(counts) > 0
    ids = sorted(i for r in results for i in r[4])
    assert ids == list(range(800)), "every message in exactly one window"
    for key in KEYS:  # per key, windows are consecutive and ordered per source
        wins = by_label_and_key(results)["event"][key]
        ends = 0
        for s, e, _ in wins:
            assert s == ends
            ends = e
        got = [i for r in results if r[1] == key for i in r[4]]
        assert [i for i in got if i % 2 == 0] == [i for _k, i, _t in a if _k == key]
        assert [i for i in got if i % 2 == 1] == [i for _k, i, _t in b if _k == key]


# -- idle sources ----------------------------------------------------------------------


def test_an_idle_event_time_source_holds_windows_back_until_it_ends(start, tmp_path):
    gate = tmp_path / "gate"
    busy = [("a", i, 10 * i) for i in range(50)]
    idle = GatedSourceConfig("idle", [], [("a", 50, 10_000)], gate)
    idle.event_time = lambda e: e[2]
    p = (w.source("busy", w.IterableSourceConfig("busy", busy, event_time=lambda e: e[2]))
         .merge(w.source("idle", idle)).key_by(lambda e: e[0])
         .to(range_windows(100).over(Gather("range"))).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    wait_for(lambda: len(app.state("range")) == 5, what="the busy source's windows to fill")
    time.sleep(0.5)
    assert app.results() == [], "the idle source's watermark is still -inf"
    gate.touch()
    app.wait(timeout=TIMEOUT)
    assert sorted(r[2:] for r in app.results()) == [
        (s, s + 100, tuple(range(s // 10, s // 10 + 10))) for s in range(0, 500, 100)] + [
        (10_000, 10_100, (50,))]


def test_ingest_time_windows_fire_while_the_source_runs(start):
    # 500 messages at 100/s take 5 s; 100 ms windows of ingest time fire long before
    stream = [("a", i, 0) for i in range(500)]
    p = (w.source("p", w.IterableSourceConfig("s", stream, rate=100)).key_by(lambda e: e[0])
         .to(range_windows(w.milliseconds(100)).over(Gather("range")))
         .to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app.wait(count=2, timeout=TIMEOUT)
    assert app.status()["events_in"] < len(stream), "windows fired before the source ended"
    results = app.results()
    ids = [i for r in results for i in r[4]]
    assert ids == list(range(len(ids))), "one key, one source: windows in order, no gaps"
    assert all(r[3] - r[2] == w.milliseconds(100) for r in results)
