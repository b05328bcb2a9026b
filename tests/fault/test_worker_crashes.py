"""kill -9 of random workers at random times: no message lost, none doubled, per-key order kept."""

from __future__ import annotations

import collections
import random

import pytest
from faults import run_crashes

import wallaroo_nb as w

N_EVENTS = 1_000_000
N_KEYS = 2_000


class Total:
    def __init__(self):
        self.total = 0


@w.key_extractor
def first(e):
    return e[0]


@w.state_computation("running sum", state=Total)
def running_sum(e, st):
    st.total += e[1]
    return (e[0], st.total)


def events():
    rnd = random.Random(11)
    return [(f"k{rnd.randrange(N_KEYS)}", rnd.randrange(100)) for _ in range(N_EVENTS)]


def reference(evs):
    per_key, totals = collections.defaultdict(list), collections.Counter()
    for k, v in evs:
        totals[k] += v
        per_key[k].append(totals[k])
    return dict(per_key), dict(totals)


@pytest.mark.parametrize("workers,seed", [(2, 1), (3, 2)])
def test_running_sum_survives_repeated_kills(start, tmp_path, workers, seed):
    p = (w.source("sums", w.IterableSourceConfig("events", events, rate=200_000))
         .key_by(first).to(running_sum).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=workers, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.25)
    log = run_crashes(app, seed)
    app.wait(timeout=240)
    expected_outputs, expected_totals = reference(events())
    got = collections.defaultdict(list)
    for k, total in app.results():
        got[k].append(total)
    assert sum(map(len, got.values())) == N_EVENTS, log
    assert dict(got) == expected_outputs, log
    state = app.state("running sum")
    assert dict(zip(state["key"], state["total"])) == expected_totals
    recoveries = [e for _, e in app.events() if e.startswith("recovered")]
    assert len(recoveries) >= 3, app.events()
