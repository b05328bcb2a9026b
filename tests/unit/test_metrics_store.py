"""Recorder deltas and the driver's MetricsStore: windows, aggregation, queries, threads."""

import math
import threading

import msgpack
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallaroo_nb.metrics import histogram as hg
from wallaroo_nb.metrics.recorder import Recorder
from wallaroo_nb.metrics.store import (
    FRAME_COLUMNS,
    HISTORY_COLUMNS,
    MetricsStore,
    parse_window,
)

T0 = 1_700_000_000.25  # a wall-clock time, a quarter past a second


def wire(delta):
    """What the driver receives: the delta after a trip through msgpack."""
    return msgpack.unpackb(msgpack.packb(delta))


def delta_of(latencies, category="pipeline", name="p", events=()):
    r = Recorder()
    for v in latencies:
        r.record(category, name, v)
    for event, n in events:
        r.count(category, name, event, n)
    return wire(r.take_delta())


def row(df, **match):
    sel = df
    for k, v in match.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, f"expected one row for {match}, got {len(sel)}"
    return sel.iloc[0]


# -- Recorder -------------------------------------------------------------------------


def test_recorder_delta_holds_what_was_recorded_since_last_time():
    r = Recorder()
    r.record("computation", "split", 1500, count=3)
    r.record("pipeline", "wc", 20_000)
    r.count("computation", "split", "filtered", 2)
    d = wire(r.take_delta())
    hists = {(c, n): hg.from_wire(w) for c, n, w in d["hist"]}
    assert hists[("computation", "split")] == hg.from_values([1500] * 3)
    assert hists[("pipeline", "wc")] == hg.from_values([20_000])
    assert d["events"] == [["computation", "split", "filtered", 2]]
    assert wire(r.take_delta()) == {"hist": [], "events": []}  # nothing new since


def test_recorder_histogram_reference_survives_take_delta():
    r = Recorder()
    h = r.histogram("worker", "w1")
    hg.record(h, 100, 5)
    assert hg.from_wire(r.take_delta()["hist"][0][2]).count == 5
    hg.record(h, 7)  # the engine keeps using its cached reference
    assert hg.from_wire(r.take_delta()["hist"][0][2]) == hg.from_values([7])


def test_recorder_rejects_unknown_category_and_paces_deltas():
    r = Recorder(interval=1.0)
    with pytest.raises(ValueError):
        r.record("pipelines", "x", 1)
    with pytest.raises(ValueError):
        r.count("nope", "x", "late")
    r.take_delta(now=100.0)
    assert not r.due(now=100.5)
    assert r.due(now=101.0)


# -- MetricsStore ---------------------------------------------------------------------


def test_frame_has_worker_rows_and_all_aggregate():
    s = MetricsStore()
    s.add("w1", delta_of([1_000] * 90 + [50_000] * 10), T0)
    s.add("w2", delta_of([2_000] * 100), T0 + 0.5)
    df = s.frame(now=T0 + 0.6)
    assert list(df.columns) == list(FRAME_COLUMNS)
    assert sorted(df["worker"]) == ["all", "w1", "w2"]
    w1, w2, agg = (row(df, worker=w) for w in ("w1", "w2", "all"))
    assert (w1["count"], w2["count"], agg["count"]) == (100, 100, 200)
    assert agg["min_us"] == 1.0 and agg["max_us"] == 50.0  # exact
    assert w1["p50_us"] == 1.0 and w1["p95_us"] == pytest.approx(50.0, rel=hg.MAX_RELATIVE_ERROR)
    assert agg["p50_us"] == pytest.approx(2.0, rel=hg.MAX_RELATIVE_ERROR)  # 90x1µs,100x2µs,...
    # 200 messages support p99 (100 needed) but not p99.9 or p99.99: those are NaN, not
    # the maximum under another name
    assert agg["p99_us"] == pytest.approx(50.0, rel=hg.MAX_RELATIVE_ERROR)
    assert math.isnan(agg["p999_us"]) and math.isnan(agg["p9999_us"])
    assert w1["p99_us"] == pytest.approx(50.0, rel=hg.MAX_RELATIVE_ERROR)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**9), max_size=60), min_size=1, max_size=4))
def test_all_row_is_the_merge_of_every_worker(per_worker):
    s = MetricsStore()
    for i, values in enumerate(per_worker):
        s.add(f"w{i}", delta_of(values), T0 + i)
    everything = [v for values in per_worker for v in values]
    if not everything:
        assert s.frame(now=T0 + 10).empty
        return
    agg = row(s.frame(now=T0 + 10), worker="all")
    merged = hg.from_values(everything)
    qs = [0.5, 0.95, 0.99, 0.999, 0.9999]
    want = [p / 1000 if q <= 0.5 or len(everything) * (1 - q) >= 1 - 1e-9 else None
            for q, p in zip(qs, hg.percentiles(merged, qs))]
    got = [None if math.isnan(v) else v for v in agg[["p50_us", "p95_us", "p99_us", "p999_us",
                                                      "p9999_us"]]]
    assert got == want
    assert agg["count"] == len(everything)
    assert agg["min_us"] == min(everything) / 1000 and agg["max_us"] == max(everything) / 1000


def test_window_limits_count_and_percentiles():
    s = MetricsStore()
    s.add("w1", delta_of([10**6] * 10), T0 - 100)  # 1 ms, 100 s ago
    s.add("w1", delta_of([10**3] * 5), T0 - 10)  # 1 µs, 10 s ago
    five, half, one = (s.frame(w, now=T0) for w in ("5min", "30s", "1min"))
    assert row(five, worker="w1")["count"] == 15
    assert row(five, worker="w1")["max_us"] == 1000.0
    assert row(half, worker="w1")["count"] == 5
    assert row(half, worker="w1")["max_us"] == 1.0
    assert row(one, worker="w1")["count"] == 5
    # a series without data in the window still has its row, with count 0
    s.add("w2", delta_of([5], name="other"), T0 - 100)
    idle = row(s.frame("30s", now=T0), worker="w2")
    assert idle["count"] == 0 and math.isnan(idle["p50_us"])


def test_rates():
    s = MetricsStore()
    for i in range(10):  # 100 messages a second for 10 seconds
        s.add("w1", delta_of([1_000] * 100), T0 + i)
    df = s.frame(now=T0 + 10)
    w1 = row(df, worker="w1")
    assert w1["rate_1s"] == 100.0
    assert w1["rate_5m"] == pytest.approx(1000 / 10.25)  # since the series began
    s.add("w1", delta_of([1_000] * 5), T0 + 400)  # long pause: older data is gone
    w1 = row(s.frame(now=T0 + 400.5), worker="w1")
    assert w1["count"] == 5
    assert w1["rate_1s"] == 0.0  # nothing in the last complete second


def test_data_older_than_five_minutes_is_dropped():
    s = MetricsStore()
    s.add("w1", delta_of([1_000], name="old"), T0)
    s.add("w1", delta_of([1_000], name="new"), T0 + 301)
    assert s.series_names() == [("pipeline", "new")]
    assert set(s.frame(now=T0 + 301)["name"]) == {"new"}


def test_history_one_row_per_complete_second_with_gaps():
    s = MetricsStore()
    s.add("w1", delta_of([1_000] * 10), T0)
    s.add("w1", delta_of([4_000] * 20), T0 + 2)
    s.add("w1", delta_of([9_000] * 7), T0 + 3)  # the current second: not in history yet
    h = s.history("pipeline", "p", "w1", now=T0 + 3.5)
    assert list(h.columns) == list(HISTORY_COLUMNS)
    assert list(h["rate"]) == [10.0, 0.0, 20.0]
    assert math.isnan(h["p50_us"][1])
    assert h["p95_us"][2] == 4.0 and math.isnan(h["p99_us"][2])  # 20 messages: p95, not p99
    assert pd.api.types.is_datetime64_any_dtype(h["time"])
    assert list(h["time"].diff().dropna().dt.total_seconds()) == [1.0, 1.0]
    assert h["time"][0] == pd.Timestamp.fromtimestamp(int(T0))
    # windows: only the last 2 complete seconds; unknown series -> empty frame
    assert list(s.history("pipeline", "p", "all", window="2s", now=T0 + 3.5)["rate"]) == [0.0, 20.0]
    empty = s.history("pipeline", "nope", now=T0)
    assert empty.empty and list(empty.columns) == list(HISTORY_COLUMNS)


def test_bins_percent_by_power_of_two():
    s = MetricsStore()
    s.add("w1", delta_of([1_000] * 3 + [60_000] * 1), T0)
    b = s.bins("pipeline", "p", now=T0)
    assert b["percent"].sum() == pytest.approx(100.0)
    assert b["bin"].iloc[0] == "≤ 1.02 µs" and b["percent"].iloc[0] == 75.0  # 1000 < 2**10
    assert b["bin"].iloc[-1] == "≤ 65.5 µs" and b["percent"].iloc[-1] == 25.0  # < 2**16
    assert len(b) == 7 and (b["count"].iloc[1:-1] == 0).all()  # empty bins in between kept
    assert s.bins("pipeline", "nope", now=T0).empty


def test_counters_per_worker_and_all():
    s = MetricsStore()
    s.add("w1", delta_of([], events=[("late", 3), ("dropped", 1)]), T0)
    s.add("w2", delta_of([], events=[("late", 4)]), T0)
    c = s.counters(now=T0)
    assert row(c, worker="all", event="late")["count"] == 7
    assert row(c, worker="w1", event="dropped")["count"] == 1
    assert s.counters("1s", now=T0 + 5).empty


def test_parse_window():
    assert [parse_window(w) for w in ("5min", "1min", "30s", "2m", "90", 12.5)] == [
        300, 60, 30, 120, 90, 13,
    ]
    for bad in ("6min", "0s", "soon", "5 parsecs", -1):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_add_rejects_the_reserved_worker_name():
    with pytest.raises(ValueError):
        MetricsStore().add("all", delta_of([1]), T0)


def test_queries_while_another_thread_adds():
    s = MetricsStore()
    d = delta_of([1_000, 2_000, 3_000])
    errors, stop = [], threading.Event()

    def query():
        try:
            while not stop.is_set():
                s.frame(now=T0 + 1)
                s.history("pipeline", "p", now=T0 + 1)
                s.bins("pipeline", "p", now=T0 + 1)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=query)
    t.start()
    try:
        for i in range(3000):
            s.add(f"w{i % 3}", d, T0 + i / 3000)
    finally:
        stop.set()
        t.join(10)
    assert not errors and not t.is_alive()
    assert row(s.frame(now=T0 + 1), worker="all")["count"] == 9000
