"""The Kafka sink's exactly-once protocol against a real broker: hold, checkpoint,
commit, and restore after a crash that came before or after the commit's delivery."""

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the fixture module
from kafka_broker import kafka_broker_fixture, read_topic  # noqa: E402,F401 (registers the fixture)

from wallaroo_nb.connectors.kafka import KafkaSinkConfig  # noqa: E402

pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.timeout(60)


def encode(x):
    return (x.encode(), x.encode(), None)


def sink_for(broker, topic, worker=0, **kw):
    s = KafkaSinkConfig(topic, broker.bootstrap, encode, **kw).make_sink()
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
    fresh.restore(state)  # recovery from epoch 2 re-offers y1..y3 (and x1 if unacknowledged)
    fresh.close()
    assert sorted(read_all(kafka_broker, topic, 4)) == ["x1", "y1", "y2", "y3"]
    unacked = sum(len(items) for _, items in state["unsent"])
    assert fresh.stats().get("skipped_delivered") == 3 + unacked


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


SMALL_QUEUE = {"queue.buffering.max.messages": 500}  # librdkafka's queue fills at once


def drive(sink, until, timeout=20.0):
    """Run the sink as the worker loop does: flush when wait_hint says so."""
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        hint = sink.wait_hint()
        time.sleep(min(hint if hint is not None else 0.01, 0.01))
        sink.flush()
    return until()


def test_a_commit_returns_at_once_and_delivers_in_the_background(kafka_broker):
    topic = kafka_broker.create_topic(partitions=2)
    s = sink_for(kafka_broker, topic, config=SMALL_QUEUE)
    outs = [f"m{i}" for i in range(5000)]
    s.write(outs)
    s.epoch_state(1)
    s.commit(1)  # no flush of the epoch here: it returns with most of it still waiting
    stats = s.stats()
    assert stats["waiting"] > 0 and not s.ready()  # the worker stops reading meanwhile
    assert stats["delivered"] < len(outs)
    assert drive(s, lambda: s.ready() and s.stats()["delivered"] == len(outs))
    assert not s.delivering  # every id acknowledged: nothing left to checkpoint
    s.close()
    assert sorted(read_all(kafka_broker, topic, len(outs))) == sorted(outs)


def test_a_crash_mid_delivery_is_exactly_once_after_restore(kafka_broker):
    topic = kafka_broker.create_topic(partitions=2)
    s = sink_for(kafka_broker, topic, config=SMALL_QUEUE)
    first = [f"a{i}" for i in range(3000)]
    s.write(first)
    s.epoch_state(1)
    s.commit(1)
    drive(s, lambda: s.stats()["delivered"] >= 1000)  # part of epoch 1 is in Kafka
    s.write(["b1", "b2"])
    state = s.epoch_state(2)  # keeps what of epoch 1 is not known to be in Kafka
    assert state["unsent"] and state["unsent"][0][0] == 1
    s.producer.purge()  # the worker dies: what it had queued is gone, in flight may land
    s.producer = None
    fresh = sink_for(kafka_broker, topic)
    fresh.restore(state)  # epoch 2 committed: both epochs must be in Kafka exactly once
    assert drive(fresh, lambda: fresh.ready() and not fresh.delivering)
    fresh.close()
    got = read_all(kafka_broker, topic, len(first) + 2)
    assert sorted(got) == sorted(first + ["b1", "b2"])


def test_the_producer_is_idempotent():
    cfg = KafkaSinkConfig("t", "127.0.0.1:9", encode)
    assert cfg.producer_config(None)["enable.idempotence"] is True
    off = KafkaSinkConfig("t", "127.0.0.1:9", encode, config={"enable.idempotence": False})
    assert off.producer_config(None)["enable.idempotence"] is False  # the user's config wins


def test_a_big_commit_goes_out_over_several_loop_turns(kafka_broker):
    from wallaroo_nb.connectors.kafka_sink import PRODUCE_PER_TURN

    topic = kafka_broker.create_topic(partitions=1)
    s = sink_for(kafka_broker, topic)
    outs = [f"n{i}" for i in range(PRODUCE_PER_TURN * 2 + 10)]
    s.write(outs)
    s.epoch_state(1)
    s.commit(1)  # one loop turn's worth is produced, the rest waits for the next turns
    assert s.stats()["waiting"] == len(outs) - PRODUCE_PER_TURN
    assert drive(s, lambda: s.ready() and not s.delivering)
    s.close()
    assert read_all(kafka_broker, topic, len(outs)) == outs  # one partition: in order
