"""The TCP sink on a real worker, without resilience: a receiver that is not there
pauses the pipeline (nothing dropped, memory bounded); once it comes, every output
arrives exactly once, in order."""

from __future__ import annotations

import time

import pytest
from apps import first, running_sum, sum_reference
from receivers import encode_json, free_port, receiver_fixture  # noqa: F401 (the fixture)

import wallaroo_nb as w
from wallaroo_nb.engine.endpoints import CHUNK

pytestmark = pytest.mark.timeout(120)

MAX_BUFFER = 20_000


def sink_counters(app, name: str) -> dict:
    df = app.metrics_counters()
    rows = df[(df.category == "pipeline") & (df.name == name) & (df.worker == "all")]
    return {ev: int(rows[rows.event == ev]["count"].sum()) for ev in set(rows.event)}


def wait_counter(app, name, event, cond, timeout=20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        c = sink_counters(app, name)
        if cond(c.get(event, 0)) or time.monotonic() > deadline:
            return c
        time.sleep(0.1)


def test_an_absent_receiver_pauses_the_pipeline_and_nothing_is_dropped(receiver, start):
    n = 30_000
    evs = [(f"k{i % 100}", i % 5) for i in range(n)]
    port = free_port()
    sink = w.TCPSinkConfig("127.0.0.1", port, encode_json, max_buffer=MAX_BUFFER,
                           reconnect_max=0.1, name="out")
    p = w.source("sums", w.IterableSourceConfig("events", evs)).key_by(first).to(running_sum)
    app = start(p.to_sink(sink), workers=1)
    c = wait_counter(app, "out", "backpressure", lambda v: v >= 1)
    assert c.get("backpressure", 0) >= 1, c
    time.sleep(1.5)  # counters travel about once a second
    before = sink_counters(app, "out")
    time.sleep(1.5)
    after = sink_counters(app, "out")
    assert after["accepted"] == before["accepted"] < n, (before, after)  # paused
    assert after.get("dropped", 0) == 0
    # bounded: max_buffer plus what one chunk of the source made before the pause
    assert after["buffered_bytes"] < MAX_BUFFER + CHUNK * 40, after

    rx = receiver(port)
    app.wait(timeout=60)
    deadline = time.monotonic() + 20
    while len(rx.messages()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    per_key, _ = sum_reference(evs)
    got: dict = {}
    for k, total in rx.messages():
        got.setdefault(k, []).append(total)
    assert got == per_key  # every output once, in per-key order
    c = wait_counter(app, "out", "acked", lambda v: v == n)
    assert c["acked"] == n and c.get("dropped", 0) == 0, c
