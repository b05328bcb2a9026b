"""Delivery guarantees of the worker-side sinks under kill -9 (docs/resilience.md,
"Delivery guarantees"), each against plain Python:

- the TCP sink is at least once, also when its receiver is away while a worker is
  killed (what the dead worker held for it is sent again after the recovery);
- the JSON-lines file sink of examples/custom_connectors.py is exactly once.

The Kafka sink's row is proven in test_kafka_crashes.py.
"""

from __future__ import annotations

import collections
import json
import random
import sys
import time
from pathlib import Path

import pytest
from apps import first, running_sum, sum_reference
from faults import crash_any, run_crashes, wait_until
from receivers import encode_json, free_port, receiver_fixture  # noqa: F401 (the fixture)

import wallaroo_nb as w

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from custom_connectors import JSONLinesSinkConfig  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def events(n: int, keys: int) -> list:
    return [(f"k{i % keys}", i % 7) for i in range(n)]


def expected_outputs(evs) -> collections.Counter:
    per_key, _ = sum_reference(evs)
    return collections.Counter((k, t) for k, totals in per_key.items() for t in totals)


def recoveries(app) -> int:
    return sum(e.startswith("recovered") for _, e in app.events())


def test_tcp_sink_is_at_least_once_with_its_receiver_away_during_a_kill(receiver, start, tmp_path):
    evs = events(40_000, 300)
    expected = expected_outputs(evs)
    port = free_port()
    rx = receiver(port)
    sink = w.TCPSinkConfig("127.0.0.1", port, encode_json, reconnect_max=0.2)
    p = (w.source("sums", w.IterableSourceConfig("events", evs, rate=8_000))
         .key_by(first).to(running_sum).to_sink(sink))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.2)
    d = app._driver
    log = run_crashes(app, seed=3, crashes=1, gap=(0.4, 0.6))  # the receiver is there
    assert wait_until(lambda: recoveries(app) == 1 and d.ready.is_set(), 30), app.events()
    time.sleep(0.3)
    rx.leave()
    time.sleep(0.5)  # outputs committed meanwhile wait in the workers for the receiver
    log.append(crash_any(app, random.Random(4)) + " (receiver away)")
    assert wait_until(lambda: recoveries(app) == 2 and d.ready.is_set(), 30), app.events()
    time.sleep(0.5)
    rx.start()  # back on the same port
    app.wait(timeout=120)
    assert wait_until(lambda: not expected - collections.Counter(rx.messages()), 60, 0.05), (
        f"{sum((expected - collections.Counter(rx.messages())).values())} outputs never "
        f"arrived; {log}")
    got = collections.Counter(rx.messages())
    assert set(got) == set(expected), "outputs that were never made arrived"
    duplicates = sum((got - expected).values())
    print(f"TCP sink: {sum(expected.values())} outputs, {duplicates} duplicates; {log}")


def test_jsonl_file_sink_is_exactly_once_across_kills(start, tmp_path):
    evs = events(60_000, 500)
    per_key, _ = sum_reference(evs)
    out = tmp_path / "out"
    out.mkdir()
    p = (w.source("sums", w.IterableSourceConfig("events", evs, rate=30_000))
         .key_by(first).to(running_sum)
         .to_sink(JSONLinesSinkConfig(str(out / "sums-{worker}.jsonl"))))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path / "ckpt"),
                checkpoint_interval=0.2)
    log = run_crashes(app, seed=9, crashes=3, gap=(0.2, 0.4))
    app.wait(timeout=120)

    def lines() -> list:
        return [line for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]

    assert wait_until(lambda: len(lines()) >= len(evs), 30, 0.05), (len(lines()), log)
    app.stop()
    written = collections.defaultdict(list)
    for line in lines():
        k, total = json.loads(line)  # a torn line would not parse
        written[k].append(total)
    assert dict(written) == per_key, log  # nothing lost, nothing doubled, per-key order kept
    assert sum(e.startswith("recovered") for _, e in app.events()) >= 2, app.events()
