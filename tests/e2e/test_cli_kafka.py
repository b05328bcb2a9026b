"""examples/alerts_kafka.py through the real CLI and a real Kafka-protocol broker.

Transactions go into a topic before the runner starts; the runner reads them with
the Kafka CLI parsers' options and writes windowed alerts to another topic, which
is compared with a plain-Python computation of the same windows.
"""

from __future__ import annotations

import random
import re
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for kafka_broker

from cli_procs import EXAMPLES, pid_alive, procs  # noqa: E402, F401 (procs: a fixture)
from kafka_broker import kafka_broker_fixture  # noqa: E402, F401 (a fixture)

pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.timeout(240)

USERS = {"alice": 300, "bob": -300, "carol": 0, "dave": 0, "erin": 0}  # name -> bias
T0_MS = 1_700_000_000_000  # a multiple of the 5 s slide
STEP_MS = 100
RANGE_MS, SLIDE_MS = 10_000, 5_000
THRESHOLD = 2000


def make_transactions(n: int, seed: int = 3) -> list:
    """(user, amount, timestamp_ms), users in turn, one every STEP_MS."""
    rng = random.Random(seed)
    names = list(USERS)
    return [(names[i % len(names)], USERS[names[i % len(names)]] + rng.randint(-900, 900),
             T0_MS + i * STEP_MS) for i in range(n)]


def windowed_alerts(transactions: list) -> dict:
    """user -> the alerts of their windows, oldest window first. Under `import wallaroo`
    range windows align as Wallaroo's do: a user's windows start at their first
    transaction's time (the watermark it sees is older), plus multiples of the slide."""
    totals: dict = {}
    offsets: dict = {}
    for user, amount, ts in transactions:
        off = offsets.setdefault(user, ts % SLIDE_MS)
        k = (ts - off) // SLIDE_MS
        while k * SLIDE_MS + off > ts - RANGE_MS:  # every window [k*slide + off, + range) with ts
            totals.setdefault((user, k), 0)
            totals[(user, k)] += amount
            k -= 1
    out: dict = {}
    for (user, _k), total in sorted(totals.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if total > THRESHOLD:
            out.setdefault(user, []).append(f"Deposit Alert for {user}: {total}")
        elif total < -THRESHOLD:
            out.setdefault(user, []).append(f"Withdrawal Alert for {user}: {total}")
    return out


def produce(bootstrap: str, topic: str, values: list) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        producer.produce(topic, v.encode())
    assert producer.flush(30) == 0


def consume(bootstrap: str, topic: str, want: int, timeout: float) -> list:
    """(key, value) pairs from partition 0, until ``want`` arrived or ``timeout``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-check",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append((msg.key().decode(), msg.value().decode()))
    finally:
        consumer.close()
    return got


def test_windowed_kafka_alerts_match_reference(procs, kafka_broker, tmp_path):  # noqa: F811
    transactions = make_transactions(400)  # 40 s of transactions
    # far ahead on the same clock: moves event time past every window above
    tick = ("tick", 0, T0_MS + 3600_000)
    expected = windowed_alerts(transactions)
    n_expected = sum(len(v) for v in expected.values())
    assert "alice" in expected and "bob" in expected and n_expected < len(transactions)
    src, dst = kafka_broker.create_topic(partitions=1), kafka_broker.create_topic(partitions=1)
    produce(kafka_broker.bootstrap, src,
            [f"{u},{a},{ts}" for u, a, ts in transactions + [tick]])

    runner = procs.start(
        "run", "--application-module", EXAMPLES / "alerts_kafka.py", "--workers", "2",
        "--kafka_source_topic", src, "--kafka_source_brokers", kafka_broker.bootstrap,
        "--kafka_sink_topic", dst, "--kafka_sink_brokers", kafka_broker.bootstrap,
        "--status-interval", "0.5")
    # The source read every transaction and the decoder took them all.
    runner.wait_for(rf"in {len(transactions) + 1:,} \(", timeout=60)
    got = consume(kafka_broker.bootstrap, dst, n_expected, timeout=15)
    runner.signal(signal.SIGTERM)
    assert runner.wait(20) == 0, runner.stderr()
    assert not [p for p in runner.worker_pids() if pid_alive(p)]
    assert "error:" not in runner.stderr(), runner.stderr()
    by_user: dict = {}
    for key, value in got:
        assert re.fullmatch(rf"(Deposit|Withdrawal) Alert for {key}: -?\d+", value), value
        by_user.setdefault(key, []).append(value)
    assert by_user == expected
