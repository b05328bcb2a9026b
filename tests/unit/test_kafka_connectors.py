"""The Kafka source and sink against a real Kafka-protocol broker (Tansu) on 127.0.0.1."""

import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the fixture module
from kafka_broker import kafka_broker_fixture  # noqa: E402,F401 (registers the fixture)

from wallaroo_nb.connectors.kafka import (  # noqa: E402
    KafkaSinkConfig,
    KafkaSourceConfig,
    bootstrap_servers,
    split_encoded,
)
from wallaroo_nb.testing import read_source as read_n  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def opened():
    """Open sources/sinks and close them all after the test, pass or fail."""
    made = []

    def open_(config, share=None):
        live = config.make_source() if hasattr(config, "make_source") else config.make_sink()
        if share:
            live.set_share(*share)
        live.open(0)
        made.append(live)
        return live

    yield open_
    for live in reversed(made):
        live.close()


def produce(opened, broker, topic, items, encoder=None):
    enc = encoder or (lambda x: (x.encode(), None, int(x.split("-")[0])))
    sink = opened(KafkaSinkConfig(topic, broker.bootstrap, enc))
    sink.write(items)
    sink.close()
    assert sink.stats()["delivered"] == len(items), sink.drain_errors()
    return sink


def items_for(partitions, per):
    return [f"{p}-{i}" for i in range(per) for p in range(partitions)]


def by_partition(msgs):
    out = {}
    for m in msgs:
        p, i = m.split("-")
        out.setdefault(int(p), []).append(int(i))
    return out


def test_round_trip_and_position(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=3)
    produce(opened, kafka_broker, topic, items_for(3, 10))
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode))
    assert src.position() == {0: -2, 1: -2, 2: -2}  # nothing read yet: from the start
    got = read_n(src, 30)
    assert by_partition(got) == {p: list(range(10)) for p in range(3)}  # order per partition
    assert src.position() == {0: 10, 1: 10, 2: 10}
    assert src.read(100) == []


def test_seek_replays_from_a_position(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=2)
    produce(opened, kafka_broker, topic, items_for(2, 8))
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode))
    read_n(src, 16)
    src.seek({0: 5, "1": 6})  # str keys too: positions may come back through msgpack
    again = read_n(src, 5)
    assert by_partition(again) == {0: [5, 6, 7], 1: [6, 7]}
    assert src.position() == {0: 8, 1: 8}


def test_seek_before_open_starts_there(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=1)
    produce(opened, kafka_broker, topic, items_for(1, 6))
    src = KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode).make_source()
    src.seek({0: 4})
    src.open(0)
    try:
        assert read_n(src, 2) == ["0-4", "0-5"]
    finally:
        src.close()


@pytest.mark.parametrize("start, expect", [(3, [3, 4]), ({0: 1}, [1, 2, 3, 4])])
def test_explicit_start_offsets(kafka_broker, opened, start, expect):
    topic = kafka_broker.create_topic(partitions=1)
    produce(opened, kafka_broker, topic, items_for(1, 5))
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode,
                                   start_offset=start))
    assert by_partition(read_n(src, len(expect)))[0] == expect


def test_committed_offsets_resume_a_group(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=1)
    produce(opened, kafka_broker, topic, items_for(1, 5))
    cfg = KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode,
                            group=f"g-{topic}", start_offset="committed")
    first = opened(cfg)
    assert len(read_n(first, 5)) == 5  # no commit yet: from the start
    first.commit({0: 3})
    second = opened(cfg)
    assert read_n(second, 2) == ["0-3", "0-4"]


def test_shares_split_partitions_between_workers(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=4)
    produce(opened, kafka_broker, topic, items_for(4, 3))
    cfg = KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode)
    a, b = opened(cfg, share=(0, 2)), opened(cfg, share=(1, 2))
    assert set(a.position()) == {0, 2} and set(b.position()) == {1, 3}
    assert set(by_partition(read_n(a, 6))) == {0, 2}
    assert set(by_partition(read_n(b, 6))) == {1, 3}


def test_decoder_drops_and_errors_still_advance_offsets(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=1)

    def decode(b):
        if b == b"0-1":
            return None
        if b == b"0-2":
            raise ValueError("bad record")
        return b.decode()

    produce(opened, kafka_broker, topic, items_for(1, 4))
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=decode))
    assert read_n(src, 2) == ["0-0", "0-3"]
    assert src.position() == {0: 4}
    stats = src.stats()
    assert stats["messages"] == 4 and stats["dropped"] == 1 and stats["errors_decoder"] == 1
    (err,) = src.drain_errors()
    assert err["where"] == "decoder" and err["input"] == repr(b"0-2")


def test_read_does_not_block(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=1)
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap))
    t0 = time.monotonic()
    for _ in range(10):
        assert src.read(100) == []
    assert time.monotonic() - t0 < 0.5
    assert src.wait_hint() == src.config.poll_interval and src.fds() == []


def test_raw_bytes_without_decoder_and_keys(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=2)
    sink = opened(KafkaSinkConfig(topic, kafka_broker.bootstrap,
                                  lambda x: (x, "k" + x, None)))  # str -> UTF-8; partitioner picks
    sink.write(["a", "b", "c"])
    sink.close()
    assert sink.stats()["delivered"] == 3
    before = time.time_ns()
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap))
    assert sorted(read_n(src, 3)) == [b"a", b"b", b"c"]
    created = src.created_ns()  # the broker's timestamp: the "source" metrics category
    assert created is not None and before - 60e9 < created <= time.time_ns() + 1e9


def test_sink_counts_too_large_and_encoder_errors(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=1)

    def enc(x):
        if x == "boom":
            raise RuntimeError("cannot encode")
        return x.encode()

    sink = opened(KafkaSinkConfig(topic, kafka_broker.bootstrap, enc, max_message_size=10))
    sink.write(["ok", "x" * 11, "boom", "fine"])
    sink.close()
    stats = sink.stats()
    assert stats["delivered"] == 2 and stats["too_large"] == 1 and stats["errors_encoder"] == 1
    assert [e["where"] for e in sink.drain_errors()] == ["size", "encoder"]
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap))
    assert read_n(src, 2) == [b"ok", b"fine"]


def test_missing_partition_is_an_error_at_open(kafka_broker):
    topic = kafka_broker.create_topic(partitions=1)
    src = KafkaSourceConfig(topic, kafka_broker.bootstrap, partitions=[0, 5]).make_source()
    with pytest.raises(RuntimeError, match=r"no partitions \[5\]"):
        src.open(0)
    assert src.consumer is None  # closed on the way out


@pytest.mark.parametrize("bad, match", [
    (dict(topic=""), "topic"),
    (dict(brokers=""), "brokers"),
    (dict(start_offset="soon"), "start_offset"),
    (dict(log_level="Loud"), "log_level"),
])
def test_source_check_names_the_problem(bad, match):
    args = dict(topic="t", brokers="127.0.0.1:9092") | bad
    with pytest.raises(ValueError, match=match):
        KafkaSourceConfig(**args).check()


def test_sink_check_names_the_problem():
    with pytest.raises(ValueError, match="max_message_size"):
        KafkaSinkConfig("t", "h:1", bytes, max_message_size=0).check()
    with pytest.raises(ValueError, match="not callable"):
        KafkaSinkConfig("t", "h:1", 42).check()


def test_broker_lists_and_encoded_shapes():
    assert bootstrap_servers([("a", "9092"), "b:1"]) == "a:9092,b:1"
    assert bootstrap_servers(" a:1 , b:2 ") == "a:1,b:2"
    assert split_encoded(b"v") == (b"v", None, None)
    assert split_encoded(("v", "k")) == (b"v", b"k", None)
    assert split_encoded((b"v", None, 2)) == (b"v", None, 2)
    with pytest.raises(TypeError):
        split_encoded((b"v", None, "p"))


def test_undeliverable_messages_are_counted_as_failed():
    with socket.socket() as s:  # a port where no broker listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = KafkaSinkConfig("t", f"127.0.0.1:{port}", lambda x: x, flush_timeout=5,
                           config={"message.timeout.ms": 300}).make_sink()
    sink.open(0)
    sink.write(["a", "b", "c"])
    sink.close()
    stats = sink.stats()
    assert stats["accepted"] == 3 and stats["failed"] == 3 and stats["delivered"] == 0
    assert {e["where"] for e in sink.drain_errors()} >= {"delivery"}


def group_offsets(broker, group, topic, partitions):
    """The group's committed offsets as Kafka's admin API (what lag tools use) reports them."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    got = admin.list_consumer_group_offsets([req])[group].result(10)
    return {tp.partition: tp.offset for tp in got.topic_partitions if tp.offset >= 0}


def wait_for(cond, src, timeout=5.0):
    """Keep the source's loop going (its reads serve commit reports) until ``cond()``."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        src.read(100)
        time.sleep(0.02)
    return cond()


def test_the_source_is_parallel_and_a_share_may_be_empty(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=2)
    produce(opened, kafka_broker, topic, items_for(2, 2))
    cfg = KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode)
    assert cfg.parallel and cfg.replayable
    idle = opened(cfg, share=(2, 3))  # three workers, two partitions: worker 2 has none
    assert idle.position() == {} and idle.read(10) is None  # ends: holds no watermark back
    assert sorted(read_n(opened(cfg, share=(0, 3)), 2)) == ["0-0", "0-1"]


def test_checkpoint_commits_reach_the_group_without_blocking(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=2)
    produce(opened, kafka_broker, topic, items_for(2, 5))
    group = f"g-{topic}"
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode,
                                   group=group, commit_interval=0.05))
    read_n(src, 10)
    src.committed({0: 3, 1: -2})  # a checkpoint's replay point (partition 1 not yet read)
    assert wait_for(lambda: src.stats()["offset_commits"] == 1, src)
    assert group_offsets(kafka_broker, group, topic, [0, 1]) == {0: 3}
    time.sleep(0.1)
    src.read(10)  # with resilience on, no periodic commit of the read position follows
    assert group_offsets(kafka_broker, group, topic, [0, 1]) == {0: 3}


def test_without_resilience_the_read_position_is_committed_periodically(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=2)
    produce(opened, kafka_broker, topic, items_for(2, 5))
    group = f"g-{topic}"
    cfg = KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode, group=group,
                            commit_interval=0.2)
    src = opened(cfg)
    assert len(read_n(src, 10)) == 10
    assert wait_for(lambda: src.stats()["offset_commits"] >= 1, src)
    assert group_offsets(kafka_broker, group, topic, [0, 1]) == {0: 5, 1: 5} == src.position()
    produce(opened, kafka_broker, topic, ["1-5"])
    assert read_n(src, 1) == ["1-5"]
    src.close()  # and once more at close
    assert group_offsets(kafka_broker, group, topic, [0, 1]) == {0: 5, 1: 6}
    again = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode,
                                     group=group, start_offset="committed"))
    produce(opened, kafka_broker, topic, ["0-5"])
    assert read_n(again, 1) == ["0-5"]


def test_sink_write_never_waits_for_a_full_queue(kafka_broker, opened):
    topic = kafka_broker.create_topic(partitions=1)
    sink = opened(KafkaSinkConfig(topic, kafka_broker.bootstrap, lambda x: x,
                                  config={"queue.buffering.max.messages": 300}))
    items = [f"0-{i}" for i in range(3000)]
    sink.write(items)  # returns with most of it waiting in the sink, not in librdkafka
    assert sink.stats()["waiting"] > 0 and not sink.ready()
    deadline = time.monotonic() + 20
    while not (sink.ready() and sink.stats()["delivered"] == len(items)):
        assert time.monotonic() < deadline, sink.stats()
        time.sleep(max(sink.wait_hint() or 0, 0.001))
        sink.flush()
    src = opened(KafkaSourceConfig(topic, kafka_broker.bootstrap, decoder=bytes.decode))
    assert read_n(src, len(items)) == items  # all, once, in order
