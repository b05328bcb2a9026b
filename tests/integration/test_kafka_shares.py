"""The parallel Kafka source on real workers: every worker reads its share of the
partitions, and with event time a window closes only when every share has passed it."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for apps and kafka_broker
from apps import WindowSum  # noqa: E402
from kafka_broker import kafka_broker_fixture  # noqa: E402,F401 (registers the fixture)

import wallaroo_nb as w  # noqa: E402
from wallaroo_nb.connectors.kafka import KafkaSinkConfig, KafkaSourceConfig  # noqa: E402
from wallaroo_nb.windows import range_windows  # noqa: E402

pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.timeout(60)

SECOND = 1_000_000_000


class Sum(WindowSum):
    def output(self, key, acc, window):
        return (key, window.start // SECOND, acc)


def produce(broker, topic, items):
    """(partition, key, value, event second) items, each to its partition."""
    sink = KafkaSinkConfig(topic, broker.bootstrap,
                           lambda i: (f"{i[1]},{i[2]},{i[3]}".encode(), None, i[0])).make_sink()
    sink.open(0)
    sink.write(items)
    sink.close()
    assert sink.stats()["delivered"] == len(items)


def decode(b):
    k, v, t = b.decode().split(",")
    return (k, int(v), int(t) * SECOND)


def messages_read(app) -> int:
    df = app.metrics_counters()
    rows = df[(df.category == "pipeline") & (df.event == "messages") & (df.worker != "all")]
    return int(rows["count"].sum()) if len(set(rows.worker)) == 2 else 0


def test_windows_wait_for_the_slowest_share(start, kafka_broker):
    topic = kafka_broker.create_topic(partitions=2)
    # partition 0 (worker 0's share) runs far ahead; partition 1 has one early message
    produce(kafka_broker, topic, [(0, "a", 1, 1), (0, "a", 2, 5), (0, "a", 4, 100),
                                  (1, "a", 8, 2)])
    src = KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=decode, group=f"g-{topic}",
                            event_time=lambda e: e[2])
    p = (w.source("shares", src).key_by(lambda e: e[0])
         .to(range_windows(10 * SECOND).over(Sum)).to_sink(w.CollectorSinkConfig()))
    app = start(p, workers=2)
    deadline = time.monotonic() + 20
    while messages_read(app) < 4:  # both shares read all: share 1 is still at second 2
        assert time.monotonic() < deadline, app.metrics_counters()
        time.sleep(0.1)
    time.sleep(0.3)
    assert app.results() == []  # window [0, 10) must wait: share 1 may still send into it
    produce(kafka_broker, topic, [(1, "a", 16, 50)])  # share 1 moves past it
    app.wait(count=1, timeout=20)
    assert app.results() == [("a", 0, 1 + 2 + 8)]  # nothing of share 1 came too late
    stats = app.metrics_counters()
    assert stats[stats.event == "late"]["count"].sum() == 0
