"""The engine on real worker processes over real ZeroMQ sockets."""

from __future__ import annotations

import collections
import random
import time

import pytest
from apps import Total, first, running_sum  # noqa: F401

import wallaroo_nb as w


@w.computation_multi("split")
def split(line):
    return line.split()


@w.key_extractor
def identity(x):
    return x


class Count:
    def __init__(self):
        self.n = 0


@w.state_computation("count word", state=Count)
def count_word(word, c):
    c.n += 1
    return (word, c.n)




def word_count_pipeline(lines):
    return (w.source("word count", w.IterableSourceConfig("lines", lines))
            .to(split).key_by(identity).to(count_word).to_sink(w.CollectorSinkConfig()))


def sum_pipeline(events, **kw):
    return (w.source("sums", w.IterableSourceConfig("events", events, **kw))
            .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig()))


def reference_counts(lines):
    out, counts = [], collections.Counter()
    for line in lines:
        for word in line.split():
            counts[word] += 1
            out.append((word, counts[word]))
    return out, counts


def per_key(outputs):
    by = collections.defaultdict(list)
    for k, v in outputs:
        by[k].append(v)
    return dict(by)


LINES = [" ".join(random.Random(i).choice("a b c d e f g h i j k l".split()) for _ in range(8))
         for i in range(3000)]


@pytest.mark.parametrize("workers", [2, 3])
def test_word_count_matches_reference(start, workers):
    app = start(word_count_pipeline(LINES), workers=workers)
    app.wait(timeout=60)
    expected, counts = reference_counts(LINES)
    got = app.results()
    assert sorted(got) == sorted(expected)
    # per-key order: each key's counts arrive as 1, 2, 3, ...
    assert per_key(got) == per_key(expected)
    state = app.state("count word")
    assert dict(zip(state["key"], state["n"], strict=False)) == dict(counts)
    assert set(state["worker"]) <= set(range(workers))


def test_results_independent_of_worker_count(start):
    rnd = random.Random(7)
    events = [(f"k{rnd.randrange(500)}", rnd.randrange(1000)) for _ in range(50_000)]
    finals = []
    for n in (1, 2, 3):
        app = start(sum_pipeline(events), workers=n)
        app.wait(timeout=60)
        finals.append(per_key(app.results()))
        app.stop()
    expected = collections.defaultdict(list)
    totals = collections.Counter()
    for k, v in events:
        totals[k] += v
        expected[k].append(totals[k])
    assert finals[0] == finals[1] == finals[2] == dict(expected)


def test_keys_spread_over_workers(start):
    events = [(f"k{i}", 1) for i in range(2000)]
    app = start(sum_pipeline(events), workers=3)
    app.wait(timeout=60)
    df = app.state("running sum")
    assert len(df) == 2000 and df["total"].eq(1).all()
    assert set(df["worker"]) == {0, 1, 2}
    # the same key always lands on the same slot, and a slot has one owner
    assert df.groupby("slot")["worker"].nunique().eq(1).all()


def test_stateless_chain_merge_and_collect(start):
    @w.computation("double")
    def double(x):
        return x * 2

    @w.computation("drop odd thirds")
    def keep(x):
        return None if x % 3 == 0 else x

    class Sum:
        def __init__(self):
            self.s = 0

    @w.state_computation("global sum", state=Sum)
    def gsum(x, st):
        st.s += x
        return st.s

    a = w.source("a", w.IterableSourceConfig("a", range(0, 1000))).to(double)
    b = w.source("b", w.IterableSourceConfig("b", range(1000, 2000))).to(keep)
    p = a.merge(b).collect().to(gsum).to_sink(w.CollectorSinkConfig())
    app = start(p, workers=2)
    app.wait(timeout=60)
    res = app.results()
    expected_total = sum(x * 2 for x in range(1000)) + sum(x for x in range(1000, 2000) if x % 3)
    assert len(res) == 1000 + sum(1 for x in range(1000, 2000) if x % 3)
    assert max(res) == expected_total and res == sorted(res)
    assert app.status()["results"] == len(res)


def test_to_sinks_fan_out_and_callback(start):
    got = []
    p = (w.source("n", w.IterableSourceConfig("n", lambda: range(500)))
         .to_sinks([w.CollectorSinkConfig(), w.CallbackSinkConfig(got.extend)]))
    app = start(p, workers=2)
    app.wait(timeout=60)
    assert app.results() == list(range(500))
    assert got == list(range(500))


def test_wait_count_and_results_frame(start):
    app = start(sum_pipeline([("a", 1), ("b", 2), ("a", 3)]), workers=2)
    app.wait(count=3, timeout=30)
    df = app.results_frame(columns=["key", "total"])
    assert sorted(map(tuple, df.values.tolist())) == [("a", 1), ("a", 4), ("b", 2)]


def test_dataframe_source(start):
    import pandas as pd

    df = pd.DataFrame({"k": ["x", "y", "x"], "v": [1, 2, 3]})

    @w.state_computation("sum v", state=Total)
    def sum_v(row, st):
        st.total += row["v"]
        return {"k": row["k"], "total": st.total}

    p = (w.source("df", w.DataFrameSourceConfig("rows", df)).key_by(lambda r: r["k"])
         .to(sum_v).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app.wait(timeout=30)
    out = app.results_frame()
    assert sorted(out.itertuples(index=False, name=None)) == [("x", 1), ("x", 4), ("y", 2)]


def test_rate_paces_the_source(start):
    app = start(sum_pipeline([("a", 1)] * 300, rate=1000), workers=1)
    app._driver.ready.wait(30)
    t = time.monotonic()
    app.wait(timeout=30)
    assert time.monotonic() - t >= 0.25  # 300 events at 1000/s


def test_gen_source_unbounded_needs_count(start):
    class Counter:
        def initial_value(self):
            return 0

        def apply(self, v):
            return v + 1

    p = w.source("gen", w.GenSourceConfig(Counter())).to_sink(w.CollectorSinkConfig())
    app = start(p, workers=1)
    with pytest.raises(ValueError, match="never end"):
        app.wait()
    app.wait(count=100, timeout=30)
    assert app.results()[:100] == list(range(100))


def test_wait_timeout_names_what_is_in_flight(start):
    p = sum_pipeline([("a", 1)] * 100_000, rate=100)
    app = start(p, workers=2)
    with pytest.raises(TimeoutError, match="source 'events' on worker 0 has read"):
        app.wait(timeout=1.0)


def test_stop_is_idempotent_and_leaves_no_process(start):
    from proctools import pid_alive

    app = start(word_count_pipeline(LINES), workers=2)
    app.wait(timeout=30)
    pids = app.pids
    app.stop()
    app.stop()
    assert not app.running
    assert not any(pid_alive(p) for p in pids)
    assert len(app.results()) > 0  # results outlive the workers


def test_none_items_of_a_multi_list_are_dropped_and_counted(start):
    """As in Wallaroo, a ``*_multi`` computation's list may hold None: those items
    are no messages (counted as filtered), the others go on in order."""
    @w.computation_multi("halves")
    def halves(x):
        return [x, None, x + 0.5] if x % 2 else [None]

    class Seen:
        def __init__(self):
            self.n = 0

    @w.state_computation_multi("tag", state=Seen)
    def tag(x, seen):
        seen.n += 1
        return [None, (x, seen.n)]

    p = (w.source("p", w.IterableSourceConfig("s", range(6))).to(halves)
         .key_by(lambda x: int(x)).to(tag).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    app.wait(timeout=30)
    assert sorted(app.results()) == [(1, 1), (1.5, 2), (3, 1), (3.5, 2), (5, 1), (5.5, 2)]
    app.stop()
    df = app.metrics_counters()
    filtered = df[(df.event == "filtered") & (df.worker == "all")].set_index("name")["count"]
    assert filtered.to_dict() == {"halves": 6, "tag": 6}


@pytest.mark.parametrize("transport", ["unix", "zmq"])
def test_both_local_transports_give_exact_results(start, monkeypatch, transport):
    """On one machine data goes over Unix stream sockets; WALLAROO_NB_LOCAL_TRANSPORT=zmq
    (bench/latency.py's baseline) sends it over ZeroMQ ipc:// as before: same results."""
    monkeypatch.setenv("WALLAROO_NB_LOCAL_TRANSPORT", transport)
    rnd = random.Random(11)
    events = [(f"k{rnd.randrange(300)}", rnd.randrange(100)) for _ in range(30_000)]
    app = start(sum_pipeline(events), workers=3)
    app.wait(timeout=60)
    scheme = "unix://" if transport == "unix" else "ipc://"
    assert all(a.startswith(scheme) for a in app._driver.data_addrs)
    assert (app._driver.stream_addr is not None) == (transport == "unix")
    expected, totals = collections.defaultdict(list), collections.Counter()
    for k, v in events:
        totals[k] += v
        expected[k].append(totals[k])
    assert per_key(app.results()) == dict(expected)
    app.stop()  # the workers' last metrics come as they stop
    rows = app.metrics().query("category == 'pipeline' and worker == 'all'")
    assert rows["count"].sum() == len(events)
