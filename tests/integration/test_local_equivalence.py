"""One implementation of the semantics: the same pipeline gives the same results from
``testing.run_local`` (engine cores in this process), from ``run(workers=1)`` and from
``run(workers=3)`` (worker processes over ZeroMQ), over random pipelines of every step
kind: map, filter, multi, state, state_multi and the window kinds.

Every value is a (key, value) pair and keyed steps key by the pair's key, so each key's
messages keep one path and one order on any number of workers: the results are compared
per key, in order. Event times rise with each source's index, so no message is late
and windows are exact whatever the timing. A range window never follows a count or an
event window: their outputs carry their newest message's event time, which can be
older than the watermark by then (a partial window flushed at the end of the stream),
and where such an output lands downstream depends on how far the watermark had come:
on timing, not on the data.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import wallaroo_nb as w
from wallaroo_nb.testing import Sum, run_local

pytestmark = pytest.mark.timeout(600)


class Acc:
    def __init__(self):
        self.n = 0


@w.computation("add one")
def add_one(e):
    return (e[0], e[1] + 1)


@w.computation("drop thirds")
def drop_thirds(e):
    return None if e[1] % 3 == 0 else e


@w.computation_multi("twice")
def twice(e):
    return [] if e[1] % 4 == 0 else [e, (e[0], e[1] * 10)]


@w.state_computation("running sum", state=Acc)
def running_sum(e, acc):
    acc.n += e[1]
    return (e[0], acc.n)


@w.state_computation_multi("every other", state=Acc)
def every_other(e, acc):
    acc.n += 1
    return [e, (e[0], -acc.n)] if acc.n % 2 else None


def key(e):
    return e[0]


def value(e):
    return e[1]


WINDOWS = {
    "count": lambda: w.count_windows(3).over(Sum(value)),
    "range": lambda: w.range_windows(w.milliseconds(5)).over(Sum(value)),
    "sliding": lambda: w.range_windows(w.milliseconds(6)).with_slide(w.milliseconds(2))
    .over(Sum(value)),
    "event": lambda: w.event_windows().fire_when(lambda e: e[1] % 7 == 0).over(Sum(value)),
}
STEPS = ["map", "filter", "multi", "state", "state_multi", *WINDOWS]


def build(steps: list, events: list, second: list, sinks: int, seen: list):
    def src(name, data):
        return w.source(name, w.IterableSourceConfig(name, data,
                                                     event_time=lambda e: e[1] * 1_000_000))

    p = src("first", events)
    if second:
        p = p.merge(src("second", second))
    ranged = False
    for s in steps:
        if s == "map":
            p = p.to(add_one)
        elif s == "filter":
            p = p.to(drop_thirds)
        elif s == "multi":
            p = p.to(twice)
        elif s in ("state", "state_multi"):
            p = p.key_by(key).to(running_sum if s == "state" else every_other)
        elif s in ("range", "sliding") and ranged:
            continue  # one range step is enough (see the module docstring)
        else:
            ranged = True  # no range window after any window
            p = p.key_by(key).to(WINDOWS[s]())
    # a second sink calls back into `seen` (results() mixes collectors' batches)
    sink = [w.CollectorSinkConfig()] + [w.CallbackSinkConfig(seen.extend)] * (sinks - 1)
    return w.build_application("random", p.to_sinks(sink))


def per_key(results: list) -> dict:
    out = collections.defaultdict(list)
    for r in results:
        out[r[0]].append(r[1:])
    return dict(out)


events = st.lists(st.tuples(st.sampled_from("abcde"), st.integers(0, 3)), min_size=1,
                  max_size=120)


def timed(pairs: list, prefix: str) -> list:
    """(key, value) pairs with values that rise with the index (they are event times)."""
    return [(prefix + k, i * 4 + d) for i, (k, d) in enumerate(pairs)]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@example(steps=["count", "sliding"], first=[("a", 0)], second=[("a", 0)] * 4, sinks=1)
@given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=4), first=events,
       second=st.one_of(st.just([]), events), sinks=st.integers(1, 2))
def test_run_local_equals_one_and_three_workers(steps, first, second, sinks):
    seen: list = []
    app = build(steps, timed(first, "x"), timed(second, "y"), sinks, seen)
    local = run_local(app)
    local_seen, seen[:] = seen[:], []
    assert per_key(run_local(app, workers=3)) == per_key(local)
    assert per_key(seen) == per_key(local_seen)
    for n in (1, 3):
        seen.clear()
        with w.run(app, workers=n) as running:
            running.wait(timeout=60)
            assert per_key(running.results()) == per_key(local), (steps, n)
            assert per_key(seen) == per_key(local_seen), (steps, n)
            assert running.errors().empty
