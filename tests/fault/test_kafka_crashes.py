"""Kafka in, kill -9 of workers, Kafka out: exactly once on both sides.

The source (parallel: each worker reads a share of the partitions) replays from
checkpointed offsets and commits them to its consumer group; the collector and the
Kafka sink release only committed epochs (the Kafka sink delivers in the background
and re-sends, after a recovery, only committed outputs it cannot find in the topic).
Both outputs must equal the reference exactly: nothing lost, nothing doubled,
per-key order kept.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for kafka_broker
from faults import run_crashes, wait_until  # noqa: E402
from kafka_broker import kafka_broker_fixture, read_topic  # noqa: E402,F401 (registers the fixture)

import wallaroo_nb as w  # noqa: E402
from wallaroo_nb.connectors.kafka import KafkaSinkConfig, KafkaSourceConfig  # noqa: E402

pytest.importorskip("confluent_kafka")
pytestmark = pytest.mark.timeout(300)

N = 60_000
KEYS = 60
PARTITIONS = 3


def messages():
    return [(f"k{i % KEYS}", i % 11) for i in range(N)]


def encode_in(m):
    key, value = m
    return (f"{key},{value}".encode(), key.encode(), int(key[1:]) % PARTITIONS)


def decode_in(b):
    key, value = b.decode().split(",")
    return (key, int(value))


class Total:
    def __init__(self):
        self.total = 0


@w.state_computation("running sum", state=Total)
def running_sum(m, st):
    st.total += m[1]
    return (m[0], st.total)


def encode_out(out):
    return (f"{out[0]},{out[1]}".encode(), out[0].encode(), None)


def reference():
    per_key, totals = collections.defaultdict(list), collections.Counter()
    for k, v in messages():
        totals[k] += v
        per_key[k].append(totals[k])
    return dict(per_key)


def produce_all(bootstrap, topic, items, encoder):
    sink = KafkaSinkConfig(topic, bootstrap, encoder).make_sink()
    sink.open(0)
    for i in range(0, len(items), 5000):
        sink.write(items[i:i + 5000])
    sink.close()
    assert sink.stats()["delivered"] == len(items), sink.drain_errors()


def test_kafka_source_replays_exactly_after_kills(start, tmp_path, kafka_broker):
    t_in = kafka_broker.create_topic(partitions=PARTITIONS)
    t_out = kafka_broker.create_topic(partitions=PARTITIONS)
    produce_all(kafka_broker.bootstrap, t_in, messages(), encode_in)

    @w.computation("slow down")
    def pace(m):  # ~20 us a message, so crashes land mid-stream
        t = time.perf_counter() + 20e-6
        while time.perf_counter() < t:
            pass
        return m

    group = f"g-{t_in}"
    source = KafkaSourceConfig(t_in, kafka_broker.bootstrap, decoder=decode_in, group=group)
    p = (w.source("kafka sums", source)
         .to(pace).key_by(lambda m: m[0]).to(running_sum)
         .to_sinks([w.CollectorSinkConfig(), KafkaSinkConfig(t_out, kafka_broker.bootstrap, encode_out)]))
    app = start(p, workers=2, resilience=True, checkpoint_dir=str(tmp_path),
                checkpoint_interval=0.2)
    log = run_crashes(app, seed=7, crashes=3, gap=(0.2, 0.5))
    app.wait(count=N, timeout=180)
    time.sleep(0.5)  # nothing more may come: the count must stay exact
    expected = reference()
    got = collections.defaultdict(list)
    for k, total in app.results():
        got[k].append(total)
    assert dict(got) == expected, log
    assert sum(e.startswith("recovered") for _, e in app.events()) >= 2, app.events()

    written = read_topic(kafka_broker.bootstrap, t_out, N)
    in_kafka = collections.defaultdict(list)
    for s in written:  # one partition per key: the topic keeps each key's order
        k, total = s.split(",")
        in_kafka[k].append(int(total))
    assert len(written) == N, f"{len(written)} messages in Kafka for {N} outputs; {log}"
    assert dict(in_kafka) == expected, log

    # every worker read its share of the partitions and committed the checkpoints' replay
    # points to the group, where Kafka's admin API (what lag tools use) finds them
    per_partition = collections.Counter(int(k[1:]) % PARTITIONS for k, _ in messages())
    assert wait_until(lambda: group_offsets(kafka_broker, group, t_in) == per_partition, 10,
                      0.2), (group_offsets(kafka_broker, group, t_in), per_partition)


def group_offsets(broker, group, topic) -> dict:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    got = admin.list_consumer_group_offsets([req])[group].result(10)
    return {tp.partition: tp.offset for tp in got.topic_partitions if tp.offset >= 0}
