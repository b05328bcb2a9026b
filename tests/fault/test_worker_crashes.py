"""kill -9 of random workers at random times: no message lost, none doubled, per-key order kept."""

from __future__ import annotations

import collections
import random

import pytest
from apps import WindowSum, first, running_sum, sum_reference
from faults import run_crashes

import wallaroo_nb as w
from wallaroo_nb.windows import range_windows

N_EVENTS = 1_000_000
N_KEYS = 2_000




def events():
    rnd = random.Random(11)
    return [(f"k{rnd.randrange(N_KEYS)}", rnd.randrange(100)) for _ in range(N_EVENTS)]


@pytest.mark.parametrize("workers,seed", [(2, 1), (3, 2)])
def test_running_sum_survives_repeated_kills(start, tmp_path, workers, seed):
    p = (w.source("sums", w.IterableSourceConfig("events", events, rate=200_000))
         .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=workers, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.25)
    log = run_crashes(app, seed)
    app.wait(timeout=240)
    expected_outputs, expected_totals = sum_reference(events())
    got = collections.defaultdict(list)
    for k, total in app.results():
        got[k].append(total)
    assert sum(map(len, got.values())) == N_EVENTS, log
    assert dict(got) == expected_outputs, log
    state = app.state("running sum")
    assert dict(zip(state["key"], state["total"])) == expected_totals
    recoveries = [e for _, e in app.events() if e.startswith("recovered")]
    assert len(recoveries) >= 3, app.events()


def timed_events():
    """(key, value, event time): time advances 1 us per event, with some disorder."""
    rnd = random.Random(5)
    return [(f"k{rnd.randrange(200)}", rnd.randrange(100), i * 1000 - rnd.randrange(50_000))
            for i in range(N_EVENTS)]


def window_reference(evs, size):
    sums = collections.Counter()
    wm = float("-inf")
    late = 0
    for k, v, t in evs:
        if (t // size) * size + size <= wm:  # its only window closed before it came
            late += 1
        else:
            sums[(k, (t // size) * size)] += v
        wm = max(wm, t)
    return dict(sums), late


@pytest.mark.parametrize("workers,seed", [(2, 3), (3, 4)])
def test_windowed_sum_survives_repeated_kills(start, tmp_path, workers, seed):
    size = 10_000_000  # 10 ms of event time: 10,000 events per window
    spec = range_windows(size).over(WindowSum)
    p = (w.source("windows", w.IterableSourceConfig("events", timed_events, rate=200_000,
                                                    event_time=lambda e: e[2]))
         .key_by(first).to(spec).to_sink(w.CollectorSinkConfig(keep=None)))
    app = start(p, workers=workers, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.25)
    log = run_crashes(app, seed)
    app.wait(timeout=240)
    expected, late = window_reference(timed_events(), size)
    got = collections.Counter()
    for k, start_ns, total in app.results():
        assert (k, start_ns) not in got, f"window {(k, start_ns)} emitted twice; {log}"
        got[(k, start_ns)] = total
    assert dict(got) == expected, log
    assert late > 0  # the stream really was disordered enough to test lateness
