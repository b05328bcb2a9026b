"""The window runners against the plain reference model in tests/window_model.py.

Hypothesis makes streams with disorder, lateness and update errors; the runner's
outputs must equal the model's exactly, per key and in order (the order between
keys is not defined). Snapshots are restored into fresh runners mid-stream, and
keys migrate between two runners, without changing the answer.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from window_model import count_model, event_model, range_model, session_model  # noqa: E402

import wallaroo_nb.windows as w  # noqa: E402
from wallaroo_nb.engine.windowing import INFINITY, Window, make_window_runner  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None)
KEYS = [0, "a", ("t", 1)]  # keys that do not compare with each other


def bad(v):
    """Values whose update raises in the tests' aggregations."""
    return v % 7 == 3


class Boom(Exception):
    pass


class TupleAgg(w.Aggregation):
    """Immutable accumulator: updated in place (nothing to protect)."""

    def initial_accumulator(self):
        return ()

    def update(self, v, acc):
        if bad(v):
            raise Boom(v)
        return acc + (v,)

    def combine(self, a, b):
        return a + b

    def output(self, key, acc, window):
        return (window.start, window.end, sorted(acc))


class ListAgg(w.Aggregation):
    """Mutable accumulator whose update half-mutates before raising."""

    def initial_accumulator(self):
        return []

    def update(self, v, acc):
        acc.append(v)
        if bad(v):
            raise Boom(v)
        return acc

    def combine(self, a, b):
        return a + b

    def output(self, key, acc, window):
        return (window.start, window.end, sorted(acc))


class AtomicListAgg(ListAgg):
    atomic_update = True

    def update(self, v, acc):
        if bad(v):
            raise Boom(v)
        acc.append(v)
        return acc


class SumAgg(w.Aggregation):
    """Two-parameter output that filters (None) even sums."""

    def initial_accumulator(self):
        return 0

    def update(self, v, acc):
        if bad(v):
            raise Boom(v)
        return acc + v

    def combine(self, a, b):
        return a + b

    def output(self, key, acc):
        return None if acc % 2 == 0 else acc


AGGS = [TupleAgg, ListAgg, AtomicListAgg, SumAgg]


def expected_outputs(agg_cls, windows):
    """Map the model's windows to what ``agg_cls.output`` returns."""
    out = {}
    for key, ws in windows.items():
        if agg_cls is SumAgg:
            vals = [sum(vs) for _, _, vs in ws if sum(vs) % 2]
        else:
            vals = [(s, e, sorted(vs)) for s, e, vs in ws]
        if vals:
            out[key] = vals
    return out


@st.composite
def streams(draw, max_size=40):
    """Messages with mostly-advancing event times, some far behind; watermark =
    max event time seen minus a lag, sent after each message."""
    lag = draw(st.integers(0, 4))
    clock = top = 0
    events = []
    for i in range(draw(st.integers(0, max_size))):
        clock += draw(st.integers(0, 3))
        back = draw(st.sampled_from([0, 0, 0, 1, 2, 5, 12]))
        t = max(0, clock - back)
        events.append(("m", draw(st.sampled_from(KEYS)), i, t))
        top = max(top, t)
        if draw(st.booleans()):
            events.append(("w", top - lag))
    return events


@st.composite
def range_params(draw):
    r = draw(st.integers(1, 8))
    return dict(range_=r, slide=draw(st.integers(1, r)), delay=draw(st.integers(0, 4)),
                policy=draw(st.sampled_from(w.LATE_DATA_POLICIES)))


def range_spec(agg_cls, p):
    return (w.range_windows(p["range_"]).with_slide(p["slide"]).with_delay(p["delay"])
            .with_late_data_policy(p["policy"]).over(agg_cls))


def feed(runner, ev, out):
    """Feed one event; a rejected message is what the engine would record as an error."""
    if ev[0] == "w":
        got = runner.on_watermark(ev[1])
    elif ev[0] == "t":
        got = runner.on_trigger(ev[1])
    else:
        try:
            got = runner.on_message(ev[1], ev[2], ev[3] if len(ev) > 3 else None)
        except Boom:
            assert bad(ev[2])
            return
    out.extend(got)


def run_keyed(runner, events, flush=True):
    out = []
    for ev in events:
        feed(runner, ev, out)
    if flush:
        out.extend(runner.flush_all())
    return group(out)


def group(triples):
    by_key = defaultdict(list)
    for key, value, _ in triples:
        by_key[key].append(value)
    return dict(by_key)


@SETTINGS
@given(events=streams(), p=range_params(), agg=st.sampled_from(AGGS))
def test_range_windows_match_the_model(events, p, agg):
    windows, late, dropped = range_model(events, rejects=bad, **p)
    runner = make_window_runner(range_spec(agg, p), with_keys=True)
    assert run_keyed(runner, events) == expected_outputs(agg, windows)
    assert (runner.late, runner.dropped) == (late, dropped)
    assert runner.keys() == [] and runner.take_errors() == []


def key_aligned(spec):
    return dataclasses.replace(spec, align="key")


@SETTINGS
@given(events=streams(), p=range_params(), agg=st.sampled_from(AGGS), cut=st.floats(0, 1))
def test_key_aligned_range_windows_match_the_model(events, p, agg, cut):
    """Wallaroo's alignment: each key's windows start at the watermark its first
    message sees (modulo the slide); a snapshot/restore mid-stream changes nothing."""
    windows, late, dropped = range_model(events, rejects=bad, align="key", **p)
    spec = key_aligned(range_spec(agg, p))
    i = int(cut * len(events))
    first, out = make_window_runner(spec, with_keys=True), []
    for ev in events[:i]:
        feed(first, ev, out)
    second = make_window_runner(spec, with_keys=True)
    second.restore(pickle.loads(pickle.dumps(first.snapshot())))
    out.extend(second.on_watermark(first.watermark))
    for ev in events[i:]:
        feed(second, ev, out)
    out.extend(second.flush_all())
    assert group(out) == expected_outputs(agg, windows)
    assert (first.late + second.late, first.dropped + second.dropped) == (late, dropped)


def test_key_aligned_windows_by_hand():
    """Tumbling 10 ns. Key a's first message comes at 13: [13, 23). At watermark 25 it
    fires and a holds nothing more, so a's next message (31) anchors anew: [31, 41).
    b's first message comes at 27, after watermark 25: [27, 37). A message at 14,
    after watermark 25, belongs to a window closed whatever the alignment: late."""
    r = make_window_runner(key_aligned(w.range_windows(10).over(TupleAgg)), with_keys=True)
    r.on_message("a", 1, 13)
    r.on_message("a", 2, 22)
    fired = list(r.on_watermark(25))
    r.on_message("b", 4, 27)
    r.on_message("a", 5, 31)
    r.on_message("c", 6, 14)
    got = [(k, v) for k, v, _ in fired + list(r.flush_all())]
    assert got == [("a", (13, 23, [1, 2])), ("b", (27, 37, [4])), ("a", (31, 41, [5]))]
    assert (r.late, r.dropped) == (1, 1)


@SETTINGS
@given(events=streams(), p=range_params(), agg=st.sampled_from([TupleAgg, ListAgg]),
       cut=st.floats(0, 1))
def test_range_restore_from_a_snapshot_changes_nothing(events, p, agg, cut):
    """Checkpoint mid-stream, pickle, restore into a fresh runner with the step's
    watermark, go on: same outputs as never stopping."""
    windows, late, _ = range_model(events, rejects=bad, **p)
    spec = range_spec(agg, p)
    i = int(cut * len(events))
    first = make_window_runner(spec, with_keys=True)
    out = []
    for ev in events[:i]:
        feed(first, ev, out)
    saved = pickle.dumps((first.snapshot(), first.watermark))
    second = make_window_runner(spec, with_keys=True)
    states, wm = pickle.loads(saved)
    second.restore(states)
    out.extend(second.on_watermark(wm))
    for ev in events[i:]:
        feed(second, ev, out)
    out.extend(second.flush_all())
    assert group(out) == expected_outputs(agg, windows)
    assert first.late + second.late == late


@SETTINGS
@given(events=streams(), p=range_params(), cut=st.floats(0, 1),
       moved=st.sets(st.sampled_from(KEYS)), lagging=st.booleans())
def test_range_keys_migrate_between_runners(events, p, cut, moved, lagging):
    """Keys move from runner A to runner B mid-stream. B's watermark may lag A's
    (it only sees the next watermark): the snapshot's floor keeps fired windows shut."""
    windows, _, _ = range_model(events, rejects=bad, **p)
    spec = range_spec(TupleAgg, p)
    a, b = make_window_runner(spec, with_keys=True), make_window_runner(spec, with_keys=True)
    i = int(cut * len(events))
    out = []
    for ev in events[:i]:
        feed(a, ev, out)
    snap = pickle.loads(pickle.dumps(a.snapshot(moved)))
    a.drop_keys(moved)
    assert not set(a.keys()) & moved
    b.restore(snap)
    if not lagging:
        out.extend(b.on_watermark(a.watermark))
    for ev in events[i:]:
        if ev[0] == "w":
            feed(a, ev, out)
            feed(b, ev, out)
        else:
            feed(b if ev[1] in moved else a, ev, out)
    out.extend(a.flush_all())
    out.extend(b.flush_all())
    got, want = group(out), expected_outputs(TupleAgg, windows)
    if lagging:
        # a key with no state at the move has no floor: under a lagging watermark
        # it may accept what A would call late; keys with state must be exact
        got = {k: v for k, v in got.items() if k not in moved or k in snap}
        want = {k: v for k, v in want.items() if k not in moved or k in snap}
    assert got == want


@SETTINGS
@given(events=streams(), p=range_params())
def test_plain_outputs_and_event_times(events, p):
    """Without with_keys the runner returns output values only; with it, each
    output's event time is its window's end - 1."""
    plain = make_window_runner(range_spec(TupleAgg, p))
    keyed = make_window_runner(range_spec(TupleAgg, p), with_keys=True)
    a, b = [], []
    for ev in events:
        feed(plain, ev, a)
        feed(keyed, ev, b)
    a.extend(plain.flush_all())
    b.extend(keyed.flush_all())
    assert a == [v for _, v, _ in b]
    assert all(ts == v[1] - 1 for _, v, ts in b)


@st.composite
def seq_events(draw, triggers=True):
    events = []
    for i in range(draw(st.integers(0, 40))):
        if triggers and draw(st.integers(0, 5)) == 0:
            events.append(("t", draw(st.sampled_from(KEYS + [None]))))
        events.append(("m", draw(st.sampled_from(KEYS)), i))
    return events


@SETTINGS
@given(events=seq_events(triggers=False), n=st.integers(1, 5),
       agg=st.sampled_from([TupleAgg, ListAgg, AtomicListAgg, SumAgg]), cut=st.floats(0, 1))
def test_count_windows_match_the_model(events, n, agg, cut):
    spec = w.count_windows(n).over(agg)
    i = int(cut * len(events))
    first, out = make_window_runner(spec, with_keys=True), []
    for ev in events[:i]:
        feed(first, ev, out)
    second = make_window_runner(spec, with_keys=True)
    second.restore(pickle.loads(pickle.dumps(first.snapshot())))
    for ev in events[i:]:
        feed(second, ev, out)
    out.extend(second.flush_all())
    assert group(out) == expected_outputs(agg, count_model(events, n, rejects=bad))


@st.composite
def timed_seq_events(draw):
    """Messages with watermarks that move forward in uneven steps."""
    events, wm = [], draw(st.integers(-20, 20))
    for i in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 2)) == 0:
            wm += draw(st.integers(0, 7))
            events.append(("w", wm))
        events.append(("m", draw(st.sampled_from(KEYS)), i))
    return events


@SETTINGS
@given(events=timed_seq_events(), n=st.integers(1, 5), timeout=st.integers(1, 12),
       agg=st.sampled_from([TupleAgg, ListAgg, SumAgg]))
def test_count_window_timeouts_match_the_model(events, n, timeout, agg):
    """Partial count windows fire at each timeout tick of the watermark (Wallaroo's
    step timer), for every key at once."""
    runner = make_window_runner(w.count_windows(n).with_timeout(timeout).over(agg),
                                with_keys=True)
    got = run_keyed(runner, events)
    assert got == expected_outputs(agg, count_model(events, n, rejects=bad, timeout=timeout))


def test_count_windows_time_out_after_wallaroos_five_seconds():
    """Wallaroo's count windows fire what they hold every 5 s; so do these."""
    spec = w.count_windows(3).over(TupleAgg)
    assert spec.timeout_ns == 5_000_000_000 == w.COUNT_TIMEOUT_NS
    r = make_window_runner(spec, with_keys=True)
    t0 = 1_700_000_000_000_000_000
    assert list(r.on_watermark(t0)) == []
    r.on_message("a", 1, None)
    r.on_message("b", 2, None)
    assert list(r.on_watermark(t0 + 4_999_999_999)) == []
    assert sorted(v for _, v, _ in r.on_watermark(t0 + 5_000_000_000)) == [
        (0, 1, [1]), (0, 1, [2])]
    r.on_message("a", 4, None)
    assert list(r.on_watermark(t0 + 9_000_000_000)) == []  # next tick: 5 s after the last
    assert [v for _, v, _ in r.on_watermark(t0 + 10_000_000_000)] == [(1, 2, [4])]
    none = make_window_runner(w.count_windows(3).with_timeout(None).over(TupleAgg))
    none.on_watermark(0)
    none.on_message("a", 1, None)
    assert list(none.on_watermark(10**12)) == [] and list(none.flush_all()) == [(0, 1, [1])]


def is_marker(v):
    return v % 4 == 1


@SETTINGS
@given(events=seq_events(), use_pred=st.booleans(), include=st.booleans(),
       agg=st.sampled_from([TupleAgg, ListAgg, SumAgg]))
def test_event_windows_match_the_model(events, use_pred, include, agg):
    builder = w.event_windows()
    if use_pred:
        builder = builder.fire_when(is_marker, include=include)
    runner = make_window_runner(builder.over(agg), with_keys=True)
    got = run_keyed(runner, events)
    want = event_model(events, is_marker if use_pred else None, include, rejects=bad)
    assert got == expected_outputs(agg, want)


@SETTINGS
@given(events=seq_events(), include=st.booleans())
def test_event_windows_hold_every_message_exactly_once(events, include):
    """Concatenating a key's windows gives back its accepted messages, in order."""
    runner = make_window_runner(w.event_windows().fire_when(is_marker, include).over(ListAgg),
                                with_keys=True)
    got = run_keyed(runner, events)
    for key in KEYS:
        accepted = [ev[2] for ev in events if ev[0] == "m" and ev[1] == key and not bad(ev[2])]
        windows = got.get(key, [])
        assert [v for _, _, vs in windows for v in vs] == accepted
        assert all(vs for _, _, vs in windows), "an empty window fired"
        assert [s for s, _, _ in windows] == [sum(len(x) for *_, x in windows[:j])
                                              for j in range(len(windows))]


# --- examples that pin the documented decisions -------------------------------------


class Collect(w.Aggregation):
    def initial_accumulator(self):
        return []

    def update(self, v, acc):
        acc.append(v)
        return acc

    def combine(self, a, b):
        return a + b

    def output(self, key, acc, window):
        return (key, window.start, window.end, list(acc))


def test_tumbling_windows_fire_on_the_watermark_after_the_delay():
    r = make_window_runner(w.range_windows(10).with_delay(5).over(Collect))
    assert r.on_message("k", "a", 3) == ()
    assert r.on_message("k", "b", 12) == ()
    assert not r.on_watermark(12)
    assert not r.on_watermark(14)
    assert r.on_watermark(15) == [("k", 0, 10, ["a"])]  # end 10 + delay 5
    assert r.state_rows() == [{"key": "k", "window_start": 10, "window_end": 20,
                               "accumulator": ["b"]}]
    assert r.flush_all() == [("k", 10, 20, ["b"])]


def test_sliding_windows_share_panes():
    r = make_window_runner(w.range_windows(6).with_slide(4).over(Collect))  # panes of 2
    for t in (5, 9, 11):
        r.on_message("k", t, t)
    rows = r.state_rows()
    assert [(x["window_start"], x["window_end"], x["accumulator"]) for x in rows] == [
        (0, 6, [5]), (4, 10, [5, 9]), (8, 14, [9, 11])]
    assert r.on_watermark(9) == [("k", 0, 6, [5])]
    assert r.flush_all() == [("k", 4, 10, [5, 9]), ("k", 8, 14, [9, 11])]


def test_late_policies():
    def run(policy):
        r = make_window_runner(
            w.range_windows(10).with_late_data_policy(policy).over(Collect))
        r.on_message("k", "early", 25)
        r.on_watermark(30)  # closes [20, 30)
        now = r.on_message("k", "late", 5)
        return now, list(r.flush_all()), (r.late, r.dropped)

    now, rest, counts = run("drop")
    assert (now, counts) == ((), (1, 1)) and rest == []
    now, rest, counts = run("fire_per_message")
    assert now == [("k", 0, 10, ["late"])] and rest == [] and counts == (1, 0)
    now, rest, counts = run("place_in_oldest_window")
    assert now == () and rest == [("k", 30, 40, ["late"])] and counts == (1, 0)


def test_a_failed_update_leaves_the_window_unharmed():
    r = make_window_runner(w.range_windows(10).over(ListAgg), with_keys=True)
    r.on_message("k", 1, 0)
    with pytest.raises(Boom):
        r.on_message("k", 3, 1)  # ListAgg appends 3, then raises
    with pytest.raises(Boom):
        r.on_message("j", 10, 1)  # first message of a window: no window is made
    assert r.keys() == ["k"]
    assert r.flush_all() == [("k", (0, 10, [1]), 9)]


def test_output_errors_are_kept_and_other_windows_fire():
    class Picky(Collect):
        def output(self, key, acc, window):
            if key == "bad":
                raise RuntimeError("no")
            return key

    r = make_window_runner(w.range_windows(10).over(Picky))
    r.on_message("bad", 1, 1)
    r.on_message("good", 1, 1)
    assert r.flush_all() == ["good"]
    [(key, err)] = r.take_errors()
    assert key == "bad" and isinstance(err, RuntimeError) and r.take_errors() == []


def test_two_parameter_output_gets_no_window():
    seen = []

    class Two(Collect):
        def output(self, key, acc):
            seen.append((key, acc))
            return len(acc)

    r = make_window_runner(w.count_windows(2).over(Two))
    assert r.on_message("k", 1) == ()
    assert r.on_message("k", 2) == [2]
    assert seen == [("k", [1, 2])]


def test_count_windows_pass_message_ordinals():
    r = make_window_runner(w.count_windows(2).over(Collect))
    outs = [o for v in range(5) for o in r.on_message("k", v)]
    assert outs == [("k", 0, 2, [0, 1]), ("k", 2, 4, [2, 3])]
    assert r.flush_all() == [("k", 4, 5, [4])]


def test_event_windows_triggers():
    r = make_window_runner(w.event_windows().over(Collect))
    r.on_message("a", 1)
    r.on_message("b", 2)
    r.on_message("a", 3)
    assert r.on_trigger("a") == [("a", 0, 2, [1, 3])]
    assert not r.on_trigger("a")  # an empty window does not fire
    assert not r.on_trigger("nobody")
    r.on_message("a", 4)
    assert sorted(r.on_trigger(None)) == [("a", 2, 3, [4]), ("b", 0, 1, [2])]


def test_fire_when_places_the_triggering_message():
    closing = make_window_runner(w.event_windows().fire_when(lambda v: v == "end").over(Collect))
    assert closing.on_message("k", "x") == ()
    assert closing.on_message("k", "end") == [("k", 0, 2, ["x", "end"])]
    opening = make_window_runner(
        w.event_windows().fire_when(lambda v: v == "start", include=False).over(Collect))
    assert not opening.on_message("k", "start")  # nothing before it: nothing fires
    assert opening.on_message("k", "x") == ()
    assert opening.on_message("k", "start") == [("k", 0, 2, ["start", "x"])]
    assert opening.flush_all() == [("k", 2, 3, ["start"])]


def test_triggers_and_event_times_are_checked():
    r = make_window_runner(w.range_windows(10).over(Collect))
    with pytest.raises(ValueError, match="event_windows"):
        r.on_trigger(None)
    with pytest.raises(TypeError, match="event time"):
        r.on_message("k", 1, None)


def test_watermarks_do_not_scan_keys():
    """The heap holds one live entry per key with open windows, plus at most the
    stale entries left by out-of-order panes; a watermark that fires nothing pops nothing."""
    r = make_window_runner(w.range_windows(10).over(SumAgg))
    for i in range(1000):
        r.on_message(i, 1, 5)
    assert len(r._heap) == 1000
    assert not r.on_watermark(9)
    assert len(r._heap) == 1000
    assert len(r.on_watermark(10)) == 1000 and r.keys() == []


def test_window_is_a_named_pair():
    assert Window(1, 2).start == 1 and Window(1, 2).end == 2
    r = make_window_runner(w.range_windows(10).over(Collect))
    r.on_message("k", 1, 1)
    assert r.on_watermark(INFINITY) == [("k", 0, 10, [1])]
    assert r.on_message("k", 2, 10**12) == () and r.dropped == 1  # after the end, all is late


def test_a_restored_key_keeps_fired_windows_shut_under_a_lagging_watermark():
    spec = w.range_windows(10).with_late_data_policy("place_in_oldest_window").over(Collect)
    old = make_window_runner(spec)
    old.on_message("k", 1, 5)
    old.on_message("k", 2, 35)
    assert old.on_watermark(30) == [("k", 0, 10, [1])]
    new = make_window_runner(spec)  # its watermark has not arrived yet
    new.restore(pickle.loads(pickle.dumps(old.snapshot(["k", "absent"]))))
    assert new.on_message("k", 3, 15) == () and new.late == 1  # [10, 20) closed on `old`
    assert new.flush_all() == [("k", 30, 40, [2, 3])]


# -- session windows ----------------------------------------------------------------


@st.composite
def session_params(draw):
    return dict(gap=draw(st.integers(1, 8)),
                policy=draw(st.sampled_from(w.LATE_DATA_POLICIES)))


def session_spec(agg_cls, p):
    return w.session_windows(p["gap"]).with_late_data_policy(p["policy"]).over(agg_cls)


@SETTINGS
@given(events=streams(), p=session_params(), agg=st.sampled_from(AGGS))
def test_session_windows_match_the_model(events, p, agg):
    windows, late, dropped = session_model(events, rejects=bad, **p)
    runner = make_window_runner(session_spec(agg, p), with_keys=True)
    assert run_keyed(runner, events) == expected_outputs(agg, windows)
    assert (runner.late, runner.dropped) == (late, dropped)
    assert runner.keys() == [] and runner.take_errors() == []


@SETTINGS
@given(events=streams(), p=session_params(), cut=st.floats(0, 1),
       moved=st.sets(st.sampled_from(KEYS)))
def test_session_keys_restore_and_migrate(events, p, cut, moved):
    """A snapshot of some keys, pickled and restored into a fresh runner that only
    hears the next watermark, changes no output: restored keys keep their floor."""
    windows, _, _ = session_model(events, rejects=bad, **p)
    spec = session_spec(TupleAgg, p)
    a, b = make_window_runner(spec, with_keys=True), make_window_runner(spec, with_keys=True)
    i = int(cut * len(events))
    out = []
    for ev in events[:i]:
        feed(a, ev, out)
    snap = pickle.loads(pickle.dumps(a.snapshot(moved)))
    a.drop_keys(moved)
    b.restore(snap)
    for ev in events[i:]:
        if ev[0] == "w":
            feed(a, ev, out)
            feed(b, ev, out)
        else:
            feed(b if ev[1] in moved else a, ev, out)
    out.extend(a.flush_all())
    out.extend(b.flush_all())
    got, want = group(out), expected_outputs(TupleAgg, windows)
    # a moved key with no state at the move has no floor (as for range windows)
    got = {k: v for k, v in got.items() if k not in moved or k in snap}
    want = {k: v for k, v in want.items() if k not in moved or k in snap}
    assert got == want


def test_sessions_by_hand():
    """A hand-checked case, so the model is not its own oracle: gap 10."""
    r = make_window_runner(w.session_windows(10).over(TupleAgg), with_keys=True)
    out = []
    for t, v in ((0, 1), (5, 2), (30, 8), (22, 4)):
        out.extend(r.on_message("k", v, t))
    # sessions: [0, 15) holds 1, 2; [22, 40) holds 8, 4 (22 is within 10 of 30)
    assert r.state_rows() == [
        {"key": "k", "window_start": 0, "window_end": 15, "accumulator": (1, 2)},
        {"key": "k", "window_start": 22, "window_end": 40, "accumulator": (8, 4)}]
    out.extend(r.on_watermark(15))
    assert out == [("k", (0, 15, [1, 2]), 14)]
    out.extend(r.on_message("k", 5, 14))  # [14, 24) touches [22, 40): joins it
    assert r.state_rows()[0]["window_start"] == 14
    out.extend(r.on_message("k", 6, 2))  # [2, 12) closed at 15 and touches nothing open
    assert (r.late, r.dropped) == (1, 1)
    out.extend(r.on_message("k", 7, 60))  # a new session
    out.extend(r.flush_all())
    assert out[1:] == [("k", (14, 40, [4, 5, 8]), 39), ("k", (60, 70, [7]), 69)]


def test_session_bridge_merges_two_sessions_older_first():
    r = make_window_runner(w.session_windows(10).over(TupleAgg))
    for t, v in ((0, 1), (20, 2), (10, 4)):  # [10, 20) touches [0, 10) and [20, 30) only
        r.on_message("k", v, t)
    assert len(r.state_rows()) == 3
    r.on_message("k", 5, 9)  # [9, 19) overlaps [0, 10) and [10, 20): they merge
    r.on_message("k", 6, 19)  # [19, 29) overlaps [0, 20) and [20, 30): one session
    assert r.state_rows() == [{"key": "k", "window_start": 0, "window_end": 30,
                               "accumulator": (1, 4, 5, 2, 6)}]


def test_session_late_policies():
    def run(policy):
        r = make_window_runner(w.session_windows(5).with_late_data_policy(policy).over(TupleAgg))
        r.on_message("k", 1, 100)
        r.on_watermark(100)
        now = list(r.on_message("k", 2, 50))  # [50, 55) closed long ago, touches nothing
        return now, list(r.flush_all()), (r.late, r.dropped)

    assert run("drop") == ([], [(100, 105, [1])], (1, 1))
    assert run("fire-per-message") == ([(50, 55, [2])], [(100, 105, [1])], (1, 0))
    assert run("place-in-oldest-window") == ([], [(100, 105, [1, 2])], (1, 0))


def test_session_spec_is_checked():
    with pytest.raises(ValueError, match=r"'TupleAgg'.*gap \(ns\) must be positive"):
        w.session_windows(0).over(TupleAgg)
    with pytest.raises(ValueError, match="unknown late data policy 'later'"):
        w.session_windows(5).with_late_data_policy("later").over(TupleAgg)
    with pytest.raises(TypeError, match="session windows need each message's event time"):
        make_window_runner(w.session_windows(5).over(TupleAgg)).on_message("k", 1, None)


@settings(max_examples=25, deadline=None)
@given(stream=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 60)),
                       max_size=30),
       gap=st.integers(1, 9), workers=st.sampled_from([1, 2]))
def test_session_windows_in_the_engine_core_match_the_model(stream, gap, workers):
    """The same app through wallaroo_nb.testing.run_local (the engine core in this
    process, routing between cores as workers do): the model's sessions, per key."""
    import wallaroo_nb as wnb
    from wallaroo_nb.testing import run_local

    class Ids(w.Aggregation):
        def initial_accumulator(self):
            return ()

        def update(self, e, acc):
            return acc + (e[2],)

        def combine(self, a, b):
            return a + b

        def output(self, key, acc, window):
            return (key, window.start, window.end, tuple(sorted(acc)))

    events = [(k, t, i) for i, (k, t) in enumerate(stream)]
    p = (wnb.source("s", wnb.IterableSourceConfig("s", events, event_time=lambda e: e[1]))
         .key_by(lambda e: e[0]).to(w.session_windows(gap).over(Ids))
         .to_sink(wnb.CollectorSinkConfig()))
    got = defaultdict(list)
    for key, start, end, ids in run_local(p, workers=workers):
        got[key].append((start, end, ids))
    model_events, wm = [], None
    for k, t, i in events:  # each message after the watermark its source had before it
        if wm is not None:
            model_events.append(("w", wm))
        model_events.append(("m", k, i, t))
        wm = t if wm is None else max(wm, t)
    fired, _, _ = session_model(model_events, gap)
    assert dict(got) == {k: [(s, e, tuple(sorted(v))) for s, e, v in wins]
                         for k, wins in fired.items()}
