"""The Kafka sink's exactly-once protocol against a real broker: hold, checkpoint,
commit, and restore after a crash that came before or after the commit's delivery."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the fixture module
from kafka_broker import kafka_broker_fixture, read_topic  # noqa: E402,F401 (registers the fixture)

from wallaroo_nb.connectors.kafka import KafkaSinkConfig  # noqa: E402

pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.timeout(60)


def encode(x):
    return (x.encode(), x.encode(), None)


def sink_for(broker, topic, worker=0):
    s = KafkaSinkConfig(topic, broker.bootstrap, encode).make_sink()
    s.open(worker)
    s.hold()
    return s


def read_all(broker, topic, want):
    return read_topic(broker.bootstrap, topic, want, timeout=20)


def test_outputs_wait_for_their_commit(kafka_broker):
    topic = kafka_broker.create_topic(partitions=2)
    s = sink_for(kafka_broker, topic)
    s.write(["a1", "a2"])
    s.epoch_state(1)
    s.write(["b1"])  # epoch 2, never committed here
    s.commit(1)
    s.close()
    assert sorted(read_all(kafka_broker, topic, 2)) == ["a1", "a2"]


def test_restore_after_delivered_commit_sends_nothing_twice(kafka_broker):
    topic = kafka_broker.create_topic(partitions=2)
    s = sink_for(kafka_broker, topic)
    s.write(["x1"])
    s.epoch_state(1)
    s.commit(1)
    s.write(["y1", "y2", "y3"])
    state = s.epoch_state(2)  # the checkpoint of epoch 2...
    s.commit(2)  # ...committed, delivered, and then the worker dies
    s.close()
    fresh = sink_for(kafka_broker, topic)
    fresh.restore(state)  # recovery from epoch 2 re-offers y1..y3
    fresh.close()
    assert sorted(read_all(kafka_broker, topic, 4)) == ["x1", "y1", "y2", "y3"]
    assert fresh.stats().get("skipped_delivered") == 3


def test_restore_after_crash_before_commit_delivers(kafka_broker):
    topic = kafka_broker.create_topic(partitions=2)
    s = sink_for(kafka_broker, topic)
    s.write(["p1", "p2"])
    state = s.epoch_state(1)
    s.close()  # died before commit(1) reached it; the driver had committed epoch 1
    fresh = sink_for(kafka_broker, topic)
    fresh.restore(state)
    fresh.close()
    assert sorted(read_all(kafka_broker, topic, 2)) == ["p1", "p2"]


def test_restore_skips_only_what_arrived(kafka_broker):
    topic = kafka_broker.create_topic(partitions=1)
    s = sink_for(kafka_broker, topic)
    s.write(["q1", "q2", "q3"])
    state = s.epoch_state(1)
    # a commit cut short: only the first output reached the broker
    s.pending = [(1, ["q1"])]
    s.commit(1)
    s.close()
    fresh = sink_for(kafka_broker, topic)
    fresh.restore(state)
    fresh.close()
    assert read_all(kafka_broker, topic, 3) == ["q1", "q2", "q3"]
